"""Helpers to drive the sans-I/O machines against each other in tests."""

from __future__ import annotations

import time

from edgebox.session import crypto
from edgebox.session.connection import (
    BoxConnection,
    Event,
    PairingSecretRequested,
    PhoneAuthenticated,
    PhoneConnection,
)
from edgebox.session.framing import Framer, Role
from edgebox.session.invite import PairingInvite, new_invite


def capabilities(mtu: int = 244, window: int = 96) -> bytes:
    """The 15 bytes of a real capabilities exchange (the handshake transcript's first bytes)."""
    phone, box = Framer(Role.phone, mtu, window), Framer(Role.box, mtu, window)
    box.receive_datagram(phone.start())
    [rsp] = box.datagrams_to_send()
    phone.receive_datagram(rsp)
    return phone.capabilities


CAPS = capabilities()


def deliver(
    src: PhoneConnection | BoxConnection, dst: PhoneConnection | BoxConnection, now: float = 0.0
) -> list[Event]:
    events: list[Event] = []
    for message in src.data_to_send():
        events += dst.receive_message(message, now)
    return events


class Pair:
    """A box and a phone identity plus an invitation."""

    def __init__(self) -> None:
        self.box_key = crypto.generate_private_key()
        self.phone_key = crypto.generate_private_key()
        self.box_hash = crypto.key_hash(crypto.encode_public(self.box_key))
        self.invite: PairingInvite = new_invite(b"\x01" * 8, self.box_hash, time.time())

    def pairing(self) -> tuple[PhoneConnection, BoxConnection]:
        phone = PhoneConnection(
            self.phone_key,
            self.box_hash,
            capabilities=CAPS,
            pairing_secret=(self.invite.secret_id, self.invite.secret),
        )
        return phone, BoxConnection(self.box_key, capabilities=CAPS)

    def session(self) -> tuple[PhoneConnection, BoxConnection]:
        return (
            PhoneConnection(self.phone_key, self.box_hash, capabilities=CAPS),
            BoxConnection(self.box_key, capabilities=CAPS),
        )


def establish(phone: PhoneConnection, box: BoxConnection, psk: bytes | None = None, now: float = 0.0) -> None:
    """Run a full handshake; the box accepts whoever authenticates."""
    phone.start(now)
    events = deliver(phone, box, now)
    if events and isinstance(events[0], PairingSecretRequested):
        box.provide_secret(psk)
    deliver(box, phone, now)
    events = deliver(phone, box, now)
    assert isinstance(events[0], PhoneAuthenticated)
    box.accept(now)
    deliver(box, phone, now)
    assert phone.established and box.established
