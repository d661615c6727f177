"""Box server + phone client end to end over the loopback transport (real framing, crypto, asyncio)."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

import pytest

from edgebox.box.identity import BoxIdentity
from edgebox.box.registry import MemoryRegistry, PhoneRegistry
from edgebox.box.responder import EchoResponder, RequestContext
from edgebox.box.server import BoxServer
from edgebox.box.state import BoxState, init_state
from edgebox.keyfile import KeyFileError
from edgebox.phone import client
from edgebox.phone.keystore import PhoneKeystore
from edgebox.session import messages as app
from edgebox.session.connection import phone_id
from edgebox.session.errors import SessionError
from edgebox.session.invite import InviteError, PairingInvite
from edgebox.transport.base import LinkClosed
from edgebox.transport.loopback import LoopbackListener, link_pair


class Harness:
    def __init__(
        self, tmp: Path, mtu: int = 244, responder: object | None = None, registry: str = "memory"
    ) -> None:
        self.tmp = tmp
        self.box = BoxIdentity.generate()
        self.state: BoxState | None = None
        self.registry: PhoneRegistry
        if registry == "store":
            self.state = init_state(tmp / "box")
            self.box = self.state.identity
            self.registry = self.state.registry
        else:
            self.registry = MemoryRegistry()
        self.server = BoxServer(self.box, self.registry, responder or EchoResponder())  # type: ignore[arg-type]
        self.listener = LoopbackListener(mtu=mtu)
        self.task = asyncio.create_task(self.server.serve(self.listener))

    def invite(self, ttl: int = 300, max_attempts: int = 5) -> PairingInvite:
        return self.registry.create_invite(
            self.box.box_id, self.box.key_hash, time.time(), ttl=ttl, max_attempts=max_attempts
        )

    def phone(self, name: str = "phone") -> PhoneKeystore:
        return PhoneKeystore.load_or_create(self.tmp / f"{name}.json")

    async def paired_session(self, name: str = "phone") -> tuple[PhoneKeystore, client.PhoneSession]:
        ks = self.phone(name)
        s = await client.pair(self.listener.connect(), ks, self.invite())
        return ks, s

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        if self.state is not None:
            self.state.close()


@pytest.fixture(params=["memory", "store"])
async def h(tmp_path: Path, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    harness = Harness(tmp_path, registry=request.param)
    yield harness
    await harness.stop()


async def test_pair_then_session_then_prompt(h: Harness) -> None:
    ks, s = await h.paired_session()
    answer = await s.ask("hello box")
    assert answer.text == "hello box"
    assert answer.done is not None and answer.done.source == "echo"
    await s.close()
    s2 = await client.connect(h.listener.connect(), ks, ks.box(h.box.box_id_hex))
    assert (await s2.ask("again")).text == "again"
    await s2.ping()
    await s2.close()
    assert h.server.stats.pairings == 1 and h.server.stats.sessions == 2


async def test_streamed_multi_fragment_response_at_minimum_mtu(tmp_path: Path) -> None:
    h = Harness(tmp_path, mtu=20)
    try:
        _, s = await h.paired_session()
        text = "".join(chr(0x41 + i % 26) for i in range(24 * 1024))
        pieces = [p async for p in s.ask_stream(text) if isinstance(p, str)]
        # Deltas are coalesced up to 8,000 characters per chunk; each chunk spans hundreds of
        # 20-byte datagrams here.
        assert "".join(pieces) == text and len(pieces) >= 3
        await s.close()
    finally:
        await h.stop()


async def test_trace_id_round_trips(h: Harness) -> None:
    _, s = await h.paired_session()
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    answer = await s.ask("x", trace=trace)
    assert answer.done is not None and answer.done.trace == trace
    await s.close()


async def test_unknown_phone_is_refused(h: Harness) -> None:
    h.invite()
    stranger = h.phone("stranger")
    with pytest.raises(SessionError) as e:
        from edgebox.phone.keystore import PairedBox

        await client.connect(h.listener.connect(), stranger, PairedBox(h.box.box_id_hex, h.box.key_hash, 0))
    assert e.value.code == "phone_unknown"


async def test_revoked_phone_is_refused(h: Harness) -> None:
    ks, s = await h.paired_session()
    await s.close()
    assert h.registry.revoke(phone_id(ks.public_point))
    with pytest.raises(SessionError) as e:
        await client.connect(h.listener.connect(), ks, ks.box(None))
    assert e.value.code == "phone_revoked"


async def test_drop_phone_ends_its_live_session_at_once(h: Harness) -> None:
    ks, s = await h.paired_session()
    _, other = await h.paired_session("other")
    pid = phone_id(ks.public_point)
    await s.ping()
    assert h.server.connected_phones()[pid] == 1
    assert len(h.server.connected_phones()) == 2
    assert h.registry.revoke(pid)
    assert await h.server.drop_phone(pid) == 1
    assert pid not in h.server.connected_phones()
    with pytest.raises((LinkClosed, SessionError)):
        await s.ask("still there?")
    assert (await other.ask("unaffected")).text == "unaffected"
    assert await h.server.drop_phone(pid) == 0
    await other.close()


async def test_revoked_phone_cannot_re_pair_by_itself(h: Harness) -> None:
    ks, s = await h.paired_session()
    await s.close()
    assert h.registry.revoke(phone_id(ks.public_point))
    with pytest.raises(SessionError) as e:
        await client.pair(h.listener.connect(), ks, h.invite())
    assert e.value.code == "phone_revoked"


async def test_same_phone_pairing_again_keeps_its_enrolment(h: Harness) -> None:
    ks, s = await h.paired_session()
    await s.close()
    s = await client.pair(h.listener.connect(), ks, h.invite())
    assert (await s.ask("again")).text == "again"
    await s.close()


async def test_pairing_secret_is_single_use(h: Harness) -> None:
    inv = h.invite()
    s = await client.pair(h.listener.connect(), h.phone("a"), inv)
    await s.close()
    with pytest.raises(SessionError) as e:
        await client.pair(h.listener.connect(), h.phone("b"), inv)
    assert e.value.code == "pairing_secret_invalid"


async def test_expired_pairing_secret(h: Harness) -> None:
    inv = h.invite()
    stale = PairingInvite(inv.box_id, inv.box_key_hash, inv.secret_id, inv.secret, int(time.time()) - 1)
    with pytest.raises(InviteError):
        await client.pair(h.listener.connect(), h.phone(), stale)  # the phone notices first
    # Expire it on the box; a phone that ignores expiry is refused by the box.
    if h.state is not None:
        with h.state.store.db.transaction() as tx:
            tx.execute("UPDATE pairing_secrets SET expires_at = 1")
    else:
        assert isinstance(h.registry, MemoryRegistry)
        h.registry.secrets[inv.secret_id].expires_at = 1
    with pytest.raises(SessionError) as e:
        await client.pair(h.listener.connect(), h.phone(), inv)
    assert e.value.code == "pairing_secret_invalid"


async def test_a_phone_with_a_wrong_secret_proves_nothing_and_locks_nothing(h: Harness) -> None:
    """v2: a wrong secret cannot even open BOX_AUTH, so it never reaches a proof; only failed proofs
    count (tests/session/test_attacks.py), and the right phone still pairs afterwards."""
    inv = h.invite(max_attempts=3)
    wrong = PairingInvite(inv.box_id, inv.box_key_hash, inv.secret_id, bytes(16), inv.expires_at)
    for _ in range(5):
        with pytest.raises(SessionError) as e:
            await client.pair(h.listener.connect(), h.phone(), wrong)
        assert e.value.code == "pairing_secret_invalid"
    assert h.server.stats.pairing_failures == 0
    s = await client.pair(h.listener.connect(), h.phone(), inv)
    await s.ping()
    await s.close()


async def test_wrong_box_key_pin_is_mitm(h: Harness) -> None:
    inv = h.invite()
    pinned_elsewhere = PairingInvite(inv.box_id, bytes(32), inv.secret_id, inv.secret, inv.expires_at)
    with pytest.raises(SessionError) as e:
        await client.pair(h.listener.connect(), h.phone(), pinned_elsewhere)
    assert e.value.code == "box_key_mismatch"


async def test_invalid_app_message_gets_typed_error_and_session_continues(h: Harness) -> None:
    _, s = await h.paired_session()
    waiter = asyncio.create_task(s.next_unrouted_error())
    await asyncio.sleep(0)
    await s.send_raw(b'{"type":"prompt","id":"a","messages":[{"role":"user","content":"x","evil":1}]}')
    err = await waiter
    assert err.code is app.ErrorKind.invalid_message and "unknown field" in err.message
    waiter = asyncio.create_task(s.next_unrouted_error())
    await asyncio.sleep(0)
    await s.send_raw(b"not json at all")
    assert (await waiter).code is app.ErrorKind.invalid_message
    for deep in (b"[" * 20_000, b'{"type":"prompt","id":"d","messages":' + b"[" * 20_000):
        waiter = asyncio.create_task(s.next_unrouted_error())
        await asyncio.sleep(0)
        await s.send_raw(deep)
        assert (await waiter).code is app.ErrorKind.invalid_message
    assert (await s.ask("still alive")).text == "still alive"
    await s.close()


class Slow:
    """Yields a delta every 10 ms for 10 s: a stream that is surely still running."""

    async def respond(self, prompt: app.Prompt, ctx: RequestContext):  # type: ignore[no-untyped-def]
        for i in range(1000):
            yield f"{i} "
            await asyncio.sleep(0.01)


async def test_cancel_ends_with_cancelled_done(tmp_path: Path) -> None:
    h = Harness(tmp_path, responder=Slow())
    try:
        _, s = await h.paired_session()
        stream = s.ask_stream("go", request_id="slow1")
        first = await anext(stream)
        assert first == "0 "
        await s.cancel("slow1")
        items = [i async for i in stream]
        done = items[-1]
        assert isinstance(done, app.Done) and done.finish_reason == "cancelled"
        await s.close()
    finally:
        await h.stop()


async def test_malformed_frame_flood_leaves_other_phone_working(h: Harness) -> None:
    _, good = await h.paired_session("good")
    phone_end, box_end = link_pair(244)
    h.listener.attach(box_end)
    # Garbage datagrams on a fresh link: the box must drop that link only.
    for i in range(200):
        try:
            await phone_end.send(os.urandom(1 + i % 200))
        except LinkClosed:
            break
    assert (await good.ask("unaffected")).text == "unaffected"
    await good.close()
    assert h.server.stats.protocol_errors >= 1


async def test_coalesces_deltas_that_arrive_while_the_link_is_busy(tmp_path: Path) -> None:
    class Tokens:
        async def respond(self, prompt: app.Prompt, ctx: RequestContext):  # type: ignore[no-untyped-def]
            for i in range(3000):
                yield f"t{i} "
                if i % 100 == 0:
                    await asyncio.sleep(0)

    h = Harness(tmp_path, mtu=20, responder=Tokens())
    try:
        _, s = await h.paired_session()
        pieces = [p async for p in s.ask_stream("go") if isinstance(p, str)]
        assert "".join(pieces) == "".join(f"t{i} " for i in range(3000))
        assert len(pieces) < 300  # 3,000 tokens, far fewer chunk messages
    finally:
        await h.stop()


async def test_link_loss_mid_stream(tmp_path: Path) -> None:
    h = Harness(tmp_path, responder=Slow())
    try:
        await _link_loss_mid_stream(h)
    finally:
        await h.stop()


async def _link_loss_mid_stream(h: Harness) -> None:
    _, s = await h.paired_session()
    stream = s.ask_stream("y" * 20000)
    await anext(stream)
    await s.channel.link.close()  # radio gone
    with pytest.raises((LinkClosed, SessionError)):
        async for _ in stream:
            pass
    # The box survives and serves new sessions.
    _, s2 = await h.paired_session("other")
    await s2.ping()
    await s2.close()


async def test_replayed_session_datagrams_are_refused(h: Harness) -> None:
    """Record every datagram of one session, replay them on a new link: the box refuses."""
    ks, s = await h.paired_session()
    await s.close()
    captured: list[bytes] = []
    link = h.listener.connect()
    original_send = link.send

    async def tap(d: bytes) -> None:
        captured.append(d)
        await original_send(d)

    link.send = tap  # type: ignore[method-assign]
    s2 = await client.connect(link, ks, ks.box(None))
    await s2.ask("secret question")
    await s2.close()
    replay = h.listener.connect()
    errors_before = h.server.stats.protocol_errors
    for d in captured:
        try:
            await replay.send(d)
        except LinkClosed:
            break
    for _ in range(100):
        if h.server.stats.protocol_errors > errors_before:
            break
        await asyncio.sleep(0.01)
    assert h.server.stats.protocol_errors > errors_before
    assert h.server.stats.prompts == 1


async def test_keystore_is_private_and_refused_if_readable(tmp_path: Path) -> None:
    ks = PhoneKeystore.load_or_create(tmp_path / "k.json")
    assert stat.S_IMODE(os.stat(ks.path).st_mode) == 0o600
    os.chmod(ks.path, 0o644)
    with pytest.raises(KeyFileError):
        PhoneKeystore.load(ks.path)
    ident_path = tmp_path / "box.json"
    BoxIdentity.generate().save(ident_path)
    assert stat.S_IMODE(os.stat(ident_path).st_mode) == 0o600
    ident_path.write_text("{}")
    os.chmod(ident_path, 0o600)
    with pytest.raises(KeyFileError) as e:
        BoxIdentity.load(ident_path)
    assert "scalar" not in str(e.value)


async def test_no_secret_or_prompt_text_reaches_the_logs(tmp_path: Path) -> None:
    import io

    from edgebox.log import configure_logging
    from edgebox.session import crypto

    buf = io.StringIO()
    configure_logging("debug", stream=buf)
    h = Harness(tmp_path)
    try:
        inv = h.invite()
        ks = h.phone()
        s = await client.pair(h.listener.connect(), ks, inv)
        await s.ask("TOPSECRET-PROMPT-TEXT please")
        await s.send_raw(b'{"type":"prompt","id":"x","messages":[{"role":"TOPSECRET-ROLE","content":"c"}]}')
        await s.close()
        with pytest.raises(SessionError):
            await client.pair(h.listener.connect(), h.phone("b"), inv)  # reused: logged as refused
    finally:
        await h.stop()
        configure_logging("warning")
    logs = buf.getvalue()
    assert "session_established" in logs  # the capture worked
    forbidden = [
        "TOPSECRET",
        inv.secret.hex(),
        inv.encode()[9:],
        inv.psk().hex(),
        crypto.private_key_scalar(ks.identity).hex(),
        crypto.private_key_scalar(h.box.private_key).hex(),
    ]
    for needle in forbidden:
        assert needle not in logs
