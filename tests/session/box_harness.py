"""A real box (BoxServer over loopback, memory or SQLCipher registry) and a raw attacker for tests.

The attacker speaks the protocol from below the phone client: framing, then handcrafted handshake
messages, so tests can do what an outsider in radio range can do (bare HELLOs, forged proofs,
rewritten capabilities) and look at exactly what the box answers.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from edgebox.box.identity import BoxIdentity
from edgebox.box.registry import MemoryRegistry, PhoneRegistry
from edgebox.box.responder import EchoResponder, Responder
from edgebox.box.server import BoxServer
from edgebox.box.state import BoxState, init_state
from edgebox.phone import client
from edgebox.phone.keystore import PhoneKeystore
from edgebox.session import crypto, handshake
from edgebox.session.config import SessionConfig
from edgebox.session.framing import Role
from edgebox.session.handshake import Hello, Mode
from edgebox.session.invite import PairingInvite
from edgebox.transport.base import DatagramLink
from edgebox.transport.channel import FramedChannel
from edgebox.transport.loopback import LoopbackListener


class Box:
    def __init__(
        self,
        tmp: Path,
        registry: str = "memory",
        *,
        responder: Responder | None = None,
        config: SessionConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        mtu: int = 244,
    ) -> None:
        self.tmp = tmp
        self.identity = BoxIdentity.generate()
        self.state: BoxState | None = None
        self.registry: PhoneRegistry
        if registry == "store":
            self.state = init_state(tmp / "box")
            self.identity = self.state.identity
            self.registry = self.state.registry
        else:
            self.registry = MemoryRegistry()
        self.server = BoxServer(
            self.identity,
            self.registry,
            responder or EchoResponder(),
            config=config or SessionConfig(),
            clock=clock,
        )
        self.listener = LoopbackListener(mtu=mtu)
        self.task = asyncio.create_task(self.server.serve(self.listener))

    def invite(self, max_attempts: int = 5) -> PairingInvite:
        return self.registry.create_invite(
            self.identity.box_id, self.identity.key_hash, time.time(), max_attempts=max_attempts
        )

    def phone(self, name: str = "phone") -> PhoneKeystore:
        return PhoneKeystore.load_or_create(self.tmp / f"{name}.json")

    async def pair(self, name: str = "phone", **kw: object) -> client.PhoneSession:
        return await client.pair(self.listener.connect(), self.phone(name), self.invite(), **kw)  # type: ignore[arg-type]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        if self.state is not None:
            self.state.close()


async def eventually(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


class Stranger:
    """Someone in radio range who knows a secret id at most (never the secret)."""

    def __init__(self, link: DatagramLink) -> None:
        self.channel = FramedChannel(link, Role.phone, SessionConfig())
        self.eph = crypto.generate_private_key()
        self.hello = b""

    async def __aenter__(self) -> Stranger:
        await self.channel.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.channel.close()

    async def hello_pairing(self, secret_id: bytes) -> bytes:
        """Send a pairing HELLO naming `secret_id`; return what the box answers."""
        self.hello = Hello(Mode.pairing, os.urandom(32), crypto.encode_public(self.eph), secret_id).encode()
        await self.channel.send(self.hello)
        async with asyncio.timeout(10):
            return await self.channel.recv()

    async def guess(self, box_auth: bytes, secret: bytes = bytes(16)) -> bytes:
        """A PHONE_AUTH built with a guessed secret (a failed proof); return the box's answer."""
        shared = crypto.ecdh(self.eph, crypto.decode_public(box_auth[41:106]))
        ms = handshake.master_secret(shared, handshake.pairing_psk(secret))
        th3 = crypto.sha256(self.channel.capabilities, self.hello, box_auth)
        key = crypto.generate_private_key()
        forged = bytes((0x03,)) + handshake.seal_identity(ms, b"phone", th3, key, crypto.encode_public(key))
        await self.channel.send(forged)
        async with asyncio.timeout(10):
            return await self.channel.recv()


async def with_stranger(box: Box, act: Callable[[Stranger], Awaitable[bytes]]) -> bytes:
    async with Stranger(box.listener.connect()) as s:
        return await act(s)
