"""Which phones may open sessions, and the one-time pairing secrets that enrol new ones.

Theory of operation: the session server asks a `PhoneRegistry` for the stored psk of a pairing
secret id (None once it is unknown, expired, used or locked), reports every pairing handshake that
named a secret and did not complete (`pairing_failed`: the secret locks after `max_attempts` of
those), completes a pairing atomically (consume the secret and enrol the phone key, exactly once),
and asks the status of a phone key. `MemoryRegistry` is the reference implementation (tests, demo);
the box service uses the SQLCipher-backed one. Secrets themselves are never stored: only
psk = pairing_psk(secret).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from edgebox.session.connection import phone_id
from edgebox.session.invite import DEFAULT_MAX_ATTEMPTS, PairingInvite


class PhoneStatus(StrEnum):
    enrolled = "enrolled"
    revoked = "revoked"
    unknown = "unknown"


class PhoneRegistry(Protocol):
    def add_invite(self, invite: PairingInvite, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None: ...

    def pairing_psk(self, secret_id: bytes, now: float) -> bytes | None: ...

    def pairing_failed(self, secret_id: bytes, now: float) -> None: ...

    def complete_pairing(self, secret_id: bytes, phone_key: bytes, now: float) -> bool: ...

    def phone_status(self, phone_key: bytes) -> PhoneStatus: ...

    def revoke(self, phone_id: str) -> bool: ...


@dataclass
class _Secret:
    psk: bytes
    expires_at: float
    max_attempts: int
    attempts: int = 0
    used: bool = False


@dataclass
class _Phone:
    key: bytes
    enrolled_at: float
    revoked: bool = False


@dataclass
class MemoryRegistry:
    secrets: dict[bytes, _Secret] = field(default_factory=dict)
    phones: dict[str, _Phone] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_invite(self, invite: PairingInvite, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
        with self._lock:
            self.secrets[invite.secret_id] = _Secret(invite.psk(), invite.expires_at, max_attempts)

    def pairing_psk(self, secret_id: bytes, now: float) -> bytes | None:
        with self._lock:
            s = self.secrets.get(secret_id)
            if s is None or s.used or now >= s.expires_at or s.attempts >= s.max_attempts:
                return None
            return s.psk

    def pairing_failed(self, secret_id: bytes, now: float) -> None:
        with self._lock:
            s = self.secrets.get(secret_id)
            if s is not None and not s.used:
                s.attempts += 1

    def complete_pairing(self, secret_id: bytes, phone_key: bytes, now: float) -> bool:
        with self._lock:
            s = self.secrets.get(secret_id)
            if s is None or s.used or now >= s.expires_at or s.attempts >= s.max_attempts:
                return False
            s.used = True
            pid = phone_id(phone_key)
            existing = self.phones.get(pid)
            if existing is None or existing.revoked:
                self.phones[pid] = _Phone(phone_key, time.time())
            return True

    def phone_status(self, phone_key: bytes) -> PhoneStatus:
        with self._lock:
            p = self.phones.get(phone_id(phone_key))
            if p is None or p.key != phone_key:
                return PhoneStatus.unknown
            return PhoneStatus.revoked if p.revoked else PhoneStatus.enrolled

    def revoke(self, pid: str) -> bool:
        with self._lock:
            p = self.phones.get(pid)
            if p is None:
                return False
            p.revoked = True
            return True
