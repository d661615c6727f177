"""Which phones may open sessions, and the one-time pairing secrets that enrol new ones.

Theory of operation: the session server asks a `PhoneRegistry` for the stored psk of a pairing
secret id (None once it is unknown, expired, used or locked), reports every failed proof against a
secret (`pairing_failed`: a PHONE_AUTH that did not verify; the secret locks after `max_attempts` of
those), completes a pairing atomically (consume the secret and enrol the phone key, exactly once),
and asks the status of a phone key. Secret ids are 8 random bytes. Phones are identified by their
full public key: the 8-byte phone id is a label, and a pairing phone whose id is already held by a
different key is refused (`conflict`) without consuming the secret. `MemoryRegistry` is the
reference implementation (tests, demo); the box service uses the SQLCipher-backed one. Secrets
themselves are never stored: only psk = pairing_psk(secret).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from edgebox.session.connection import phone_id
from edgebox.session.handshake import SECRET_ID_LEN
from edgebox.session.invite import DEFAULT_MAX_ATTEMPTS, DEFAULT_TTL_SECONDS, PairingInvite, new_secret


class PhoneStatus(StrEnum):
    enrolled = "enrolled"
    revoked = "revoked"
    unknown = "unknown"


class PairingOutcome(StrEnum):
    enrolled = "enrolled"  # secret consumed, phone enrolled (or already enrolled with this key)
    secret_invalid = "secret_invalid"  # noqa: S105 (used by someone else meanwhile, expired or locked)
    revoked = "revoked"  # this phone key was revoked: re-enrolling needs an operator
    conflict = "conflict"  # another enrolled key has this phone id (64-bit collision)


class PhoneRegistry(Protocol):
    def create_invite(
        self,
        box_id: bytes,
        box_key_hash: bytes,
        now: float,
        ttl: int = DEFAULT_TTL_SECONDS,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> PairingInvite: ...

    def pairing_psk(self, secret_id: bytes, now: float) -> bytes | None: ...

    def pairing_failed(self, secret_id: bytes, now: float) -> None: ...

    def complete_pairing(self, secret_id: bytes, phone_key: bytes, now: float) -> PairingOutcome: ...

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

    def create_invite(
        self,
        box_id: bytes,
        box_key_hash: bytes,
        now: float,
        ttl: int = DEFAULT_TTL_SECONDS,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> PairingInvite:
        invite = PairingInvite(box_id, box_key_hash, os.urandom(SECRET_ID_LEN), new_secret(), int(now) + ttl)
        self.add_invite(invite, max_attempts)
        return invite

    def add_invite(self, invite: PairingInvite, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
        """Register an invitation made elsewhere (tests and benches that need a known secret)."""
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

    def complete_pairing(self, secret_id: bytes, phone_key: bytes, now: float) -> PairingOutcome:
        with self._lock:
            s = self.secrets.get(secret_id)
            if s is None or s.used or now >= s.expires_at or s.attempts >= s.max_attempts:
                return PairingOutcome.secret_invalid
            pid = phone_id(phone_key)
            existing = self.phones.get(pid)
            if existing is not None and existing.key != phone_key:
                return PairingOutcome.conflict
            if existing is not None and existing.revoked:
                return PairingOutcome.revoked
            s.used = True
            if existing is None:
                self.phones[pid] = _Phone(phone_key, time.time())
            return PairingOutcome.enrolled

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
