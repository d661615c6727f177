"""Issue 10's attacks against a running box, each failing closed (v2). Real BoxServer, loopback links,
memory and SQLCipher registries; the attacker speaks raw framing + handshake (box_harness.Stranger).
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgebox.box.registry import MemoryRegistry, _Phone
from edgebox.box.responder import RequestContext
from edgebox.phone import client
from edgebox.phone.keystore import PairedBox
from edgebox.session import crypto, handshake
from edgebox.session import messages as app
from edgebox.session.config import SessionConfig
from edgebox.session.connection import phone_id
from edgebox.session.errors import ErrorCode, SessionError
from edgebox.transport.base import DatagramLink, LinkClosed
from edgebox.transport.channel import FramedChannel
from tests.session.box_harness import Box, Stranger, eventually, with_stranger

BOX_AUTH_LEN = 283
RECORD_145 = 1 + 128 + 16  # an empty or small record: one padding block


@pytest.fixture(params=["memory", "store"])
async def box(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Box]:
    b = Box(tmp_path, request.param)
    yield b
    await b.stop()


# -- 1. no lock-out by strangers, no oracle, random ids -------------------------------------------


async def test_bare_hellos_naming_the_newest_id_never_lock_it(box: Box) -> None:
    """v1: five bare HELLOs naming a live id locked it and the real phone then failed."""
    inv = box.invite(max_attempts=5)
    for _ in range(7):
        reply = await with_stranger(box, lambda s: s.hello_pairing(inv.secret_id))
        assert reply[0] == 0x02 and len(reply) == BOX_AUTH_LEN
    session = await client.pair(box.listener.connect(), box.phone(), inv)
    await session.ping()
    await session.close()
    assert box.server.stats.pairing_failures == 0


async def test_only_failed_proofs_count_and_they_lock_the_secret(box: Box) -> None:
    inv = box.invite(max_attempts=3)

    async def guess(s: Stranger) -> bytes:
        return await s.guess(await s.hello_pairing(inv.secret_id))

    for _ in range(3):
        answer = await with_stranger(box, guess)
        assert answer[0] == 0x17 and len(answer) == RECORD_145  # an encrypted ERROR record
    await eventually(lambda: box.server.stats.pairing_failures == 3)
    with pytest.raises(SessionError) as e:  # even the right secret is now refused
        await client.pair(box.listener.connect(), box.phone(), inv)
    assert e.value.code == "pairing_secret_invalid"


async def test_secret_ids_are_random_bytes_not_row_numbers(box: Box) -> None:
    ids = [box.invite().secret_id for _ in range(4)]
    assert len(set(ids)) == 4 and all(len(i) == 8 for i in ids)
    assert all(int.from_bytes(i, "big") > 2**32 for i in ids)  # v1's store gave 1, 2, 3, 4


async def _shape(box: Box, secret_id: bytes) -> tuple[int, int, int, int]:
    async def act(s: Stranger) -> bytes:
        auth = await s.hello_pairing(secret_id)
        answer = await s.guess(auth)
        return bytes((auth[0], answer[0])) + struct.pack(">HH", len(auth), len(answer))

    raw = await with_stranger(box, act)
    return raw[0], raw[1], *struct.unpack(">HH", raw[2:])  # type: ignore[return-value]


async def test_unknown_used_and_live_ids_are_answered_alike(box: Box) -> None:
    """No oracle: v1 answered an unknown id at once with an ERROR and a live one with BOX_AUTH."""
    live = box.invite()
    used = box.invite()
    await (await client.pair(box.listener.connect(), box.phone("other"), used)).close()
    shapes = {await _shape(box, sid) for sid in (live.secret_id, used.secret_id, bytes(range(8)))}
    assert shapes == {(0x02, 0x17, BOX_AUTH_LEN, RECORD_145)}


# -- 4. peer-supplied integers are range-checked before storage ------------------------------------


@pytest.mark.parametrize("secret_id", [b"\xff" * 8, b"\x80" + bytes(7), bytes(8), b"\x7f" + b"\xff" * 7])
async def test_any_secret_id_is_answered_never_crashes_the_link_task(box: Box, secret_id: bytes) -> None:
    """v1: a secret id >= 2^63 raised OverflowError inside SQLite, an unhandled task exception."""
    reply = await with_stranger(box, lambda s: s.hello_pairing(secret_id))
    assert reply[0] == 0x02 and len(reply) == BOX_AUTH_LEN
    assert box.server.stats.local_errors == 0


# -- 3. refusals are encrypted; a passive observer cannot tell unknown from revoked ---------------


async def test_refusals_are_encrypted_records_that_look_alike(
    box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real_recv = FramedChannel.recv

    async def tap(self: FramedChannel) -> bytes:
        message = await real_recv(self)
        seen.append(len(message))
        return message

    revoked_ks = box.phone("revoked")
    await (await client.pair(box.listener.connect(), revoked_ks, box.invite())).close()
    assert box.registry.revoke(phone_id(revoked_ks.public_point))
    stranger_ks = box.phone("stranger")
    pin = PairedBox(box.identity.box_id.hex(), box.identity.key_hash, 0)
    monkeypatch.setattr(FramedChannel, "recv", tap)
    codes, shapes = [], []
    for ks in (revoked_ks, stranger_ks):
        seen.clear()
        with pytest.raises(SessionError) as e:
            await client.connect(box.listener.connect(), ks, pin)
        codes.append(e.value.code)
        shapes.append(list(seen))
    assert codes == ["phone_revoked", "phone_unknown"]
    # Messages as both ends read them (HELLO, BOX_AUTH, PHONE_AUTH, the verdict): identical, and
    # the verdict record is exactly as long as an ACCEPT.
    assert shapes[0] == shapes[1] == [100, BOX_AUTH_LEN, 178, RECORD_145]
    seen.clear()
    pin_ok = box.phone("fine")
    await (await client.pair(box.listener.connect(), pin_ok, box.invite())).close()
    seen.clear()
    await (await client.connect(box.listener.connect(), pin_ok, pin)).close()
    assert seen[:4] == [100, BOX_AUTH_LEN, 178, RECORD_145]


# -- 5. a 64-bit phone id collision never rides on another key -------------------------------------


async def test_phone_id_collision_is_refused_and_keeps_the_secret(box: Box) -> None:
    holder, newcomer = box.phone("holder"), box.phone("newcomer")
    pid = phone_id(newcomer.public_point)
    # Another key already holds the newcomer's 8-byte id (a collision, planted directly).
    if isinstance(box.registry, MemoryRegistry):
        box.registry.phones[pid] = _Phone(holder.public_point, time.time())
    else:
        assert box.state is not None
        box.state.store.phones.enroll(pid, holder.public_point, "holder")
    inv = box.invite()
    with pytest.raises(SessionError) as e:
        await client.pair(box.listener.connect(), newcomer, inv)
    assert e.value.code == "phone_id_conflict"  # v1: "already enrolled", session accepted
    pin = PairedBox(box.identity.box_id.hex(), box.identity.key_hash, 0)
    with pytest.raises(SessionError) as e:
        await client.connect(box.listener.connect(), newcomer, pin)
    assert e.value.code == "phone_unknown"
    # The secret was not consumed by the refused pairing.
    await (await client.pair(box.listener.connect(), box.phone("third"), inv)).close()


# -- 6. the capabilities exchange is bound into the transcript ------------------------------------


class _Rewriter:
    """A man in the middle that lowers the window the phone offers (a downgrade of the framing)."""

    def __init__(self, link: DatagramLink) -> None:
        self.link = link
        self.first = True

    @property
    def mtu(self) -> int:
        return self.link.mtu

    @property
    def peer(self) -> str:
        return self.link.peer

    async def send(self, datagram: bytes) -> None:
        if self.first:
            self.first = False
            datagram = datagram[:-1] + bytes((datagram[-1] - 1,))
        await self.link.send(datagram)

    async def recv(self) -> bytes:
        return await self.link.recv()

    async def close(self) -> None:
        await self.link.close()


async def test_rewritten_capabilities_break_the_handshake(box: Box) -> None:
    inv = box.invite()
    with pytest.raises(SessionError) as e:
        await client.pair(_Rewriter(box.listener.connect()), box.phone(), inv)  # type: ignore[arg-type]
    assert e.value.code == "pairing_secret_invalid"  # BOX_AUTH no longer opens for the phone
    await (await client.pair(box.listener.connect(), box.phone(), inv)).close()  # nothing was spent


# -- an old-version peer gets a clear typed refusal ------------------------------------------------


async def test_v1_phone_gets_the_box_version_then_the_link_closes(box: Box) -> None:
    link = box.listener.connect()
    await link.send(struct.pack(">B2sBBHB", 0x20, b"EB", 1, 1, 244, 32))
    answer = await asyncio.wait_for(link.recv(), 10)
    assert struct.unpack(">B2sBHB", answer)[:3] == (0x20, b"EB", 2)  # what v1 reads, then refuses
    with pytest.raises(LinkClosed):
        await asyncio.wait_for(link.recv(), 10)
    session = await client.pair(box.listener.connect(), box.phone(), box.invite())
    await session.close()


async def test_v1_hello_gets_a_typed_refusal(box: Box) -> None:
    async with Stranger(box.listener.connect()) as s:
        await s.channel.send(bytes((0x01, 1, 1)) + bytes(32) + crypto.encode_public(s.eph))
        reply = await asyncio.wait_for(s.channel.recv(), 10)
    assert reply == handshake.encode_error(ErrorCode.unsupported_version)


# -- bounded unauthenticated handshakes ------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_unauthenticated_handshakes_are_bounded_at_once_and_over_time(tmp_path: Path) -> None:
    clock = FakeClock()
    cfg = SessionConfig(max_unauthenticated=2, handshake_burst=3, handshake_rate_per_s=0.01)
    box = Box(tmp_path, config=cfg, clock=clock)
    busy = handshake.encode_error(ErrorCode.busy)
    try:
        inv = box.invite()
        async with Stranger(box.listener.connect()) as s1, Stranger(box.listener.connect()) as s2:
            assert (await s1.hello_pairing(inv.secret_id))[0] == 0x02
            assert (await s2.hello_pairing(inv.secret_id))[0] == 0x02
            # Two strangers hold both slots: a third link is refused before the registry is asked.
            assert await with_stranger(box, lambda s: s.hello_pairing(inv.secret_id)) == busy
        await eventually(lambda: box.server.admission.pending == 0)
        # One token left of the burst of three...
        assert (await with_stranger(box, lambda s: s.hello_pairing(inv.secret_id)))[0] == 0x02
        # ...and then the bucket is empty: the real phone gets a typed, retryable refusal.
        with pytest.raises(SessionError) as e:
            await client.pair(box.listener.connect(), box.phone(), inv)
        assert e.value.code == "busy"
        clock.t += 200  # two tokens back
        session = await client.pair(box.listener.connect(), box.phone(), inv)
        await session.close()
        assert box.server.stats.busy == 2 and box.server.stats.pairing_failures == 0
    finally:
        await box.stop()


# -- 2. padding: a streamed answer's records reveal no per-token lengths ---------------------------


class TokenResponder:
    """Streams tokens of very different lengths, one at a time with a pause (an idle link)."""

    tokens = [("x" * n) + " " for n in (1, 9, 3, 24, 2, 15, 5, 30, 1, 12, 7, 20, 4, 11, 2, 18)]

    async def respond(self, prompt: app.Prompt, ctx: RequestContext) -> AsyncIterator[str | app.Done]:
        for token in self.tokens:
            await asyncio.sleep(0.03)
            yield token
        yield app.Done(id=prompt.id, source="echo")


async def test_streamed_answer_records_all_have_one_length(tmp_path: Path) -> None:
    box = Box(tmp_path, responder=TokenResponder())  # type: ignore[arg-type]
    try:
        session = await box.pair()
        lengths: list[int] = []
        real_recv = session.channel.recv

        async def tap() -> bytes:
            message = await real_recv()
            lengths.append(len(message))
            return message

        session.channel.recv = tap  # type: ignore[method-assign]
        answer = await session.ask("stream please")
        assert answer.text == "".join(TokenResponder.tokens)
        chunk_records = lengths[:-1]  # the last record is `done`
        assert len(chunk_records) >= len(TokenResponder.tokens) // 2  # mostly one token per record
        assert set(chunk_records) == {RECORD_145}  # v1: 17 + len(JSON): the token lengths, in order
        await session.close()
    finally:
        await box.stop()
