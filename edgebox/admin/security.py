"""Admin page security core (sans-I/O): sessions, CSRF tokens, login throttling, response headers.

Theory of operation
-------------------
Nothing here does I/O or reads a clock by itself: every call takes `now` (seconds, from the
injected clock of the web app), so tests drive expiry and lock-out without sleeping.

*Sessions.* `SessionTable` maps an opaque 256-bit token (the cookie value) to a `Session`. The
table keeps only SHA-256(token), so a memory dump of the table does not yield usable cookies. A
session is either anonymous (made on the first visit of the login or set-up page, it carries only
the CSRF token that protects those forms) or authenticated (made afresh at login: the token always
changes on privilege change, so a planted anonymous cookie cannot be lifted into an admin one).
A session ends after `idle_timeout_s` without a request or `absolute_timeout_s` after login,
whichever comes first, on logout, and for every session when the password changes.

*CSRF.* Each session has its own random token; every form carries it in a hidden field and every
state-changing request must present it (compared in constant time). The web layer also refuses a
state-changing request whose `Origin` (or, without one, `Referer`) is not the box's own origin,
and the cookie is `SameSite=Strict`: three independent layers.

*Login throttling.* `LoginThrottle` counts failures per source address in a sliding window; at
`max_failures` the source is locked out for `lockout_s` (a correct password is refused too while
locked). A global budget (`global_per_minute`) bounds guessing spread over many addresses. A
success clears that source's failures.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import deque
from dataclasses import dataclass, field

TOKEN_BYTES = 32
COOKIE_NAME = "__Host-edgebox-admin"  # __Host-: Secure, Path=/, no Domain -- enforced by browsers

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "Strict-Transport-Security": "max-age=31536000",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), bluetooth=(), usb=()",
}


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def tokens_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


@dataclass
class Session:
    csrf: str
    created_at: float
    last_seen: float
    authenticated: bool
    source: str

    def check_csrf(self, presented: str | None) -> bool:
        return presented is not None and tokens_equal(self.csrf, presented)


@dataclass(frozen=True)
class SessionPolicy:
    idle_timeout_s: float = 15 * 60
    absolute_timeout_s: float = 12 * 3600
    anonymous_timeout_s: float = 15 * 60
    max_sessions: int = 256  # anonymous sessions are cheap to make: bound the table

    def __post_init__(self) -> None:
        if min(self.idle_timeout_s, self.absolute_timeout_s, self.anonymous_timeout_s) <= 0:
            raise ValueError("session timeouts must be positive")


class SessionTable:
    def __init__(self, policy: SessionPolicy | None = None) -> None:
        self.policy = policy or SessionPolicy()
        self._by_digest: dict[bytes, Session] = {}

    def _expired(self, s: Session, now: float) -> bool:
        p = self.policy
        if not s.authenticated:
            return now - s.created_at >= p.anonymous_timeout_s
        return now - s.last_seen >= p.idle_timeout_s or now - s.created_at >= p.absolute_timeout_s

    def _prune(self, now: float) -> None:
        for d, s in list(self._by_digest.items()):
            if self._expired(s, now):
                del self._by_digest[d]
        while len(self._by_digest) >= self.policy.max_sessions:
            # drop the oldest anonymous session first, then the least recently used
            victim = min(self._by_digest.items(), key=lambda kv: (kv[1].authenticated, kv[1].last_seen))
            del self._by_digest[victim[0]]

    def create(self, now: float, *, authenticated: bool, source: str) -> tuple[str, Session]:
        self._prune(now)
        token = new_token()
        session = Session(new_token(), now, now, authenticated, source)
        self._by_digest[_digest(token)] = session
        return token, session

    def lookup(self, token: str | None, now: float, *, touch: bool = True) -> Session | None:
        """The live session for a cookie value, or None; `touch` refreshes its idle timer (a user
        action does, background polling does not)."""
        if not token:
            return None
        d = _digest(token)
        s = self._by_digest.get(d)
        if s is None:
            return None
        if self._expired(s, now):
            del self._by_digest[d]
            return None
        if touch:
            s.last_seen = now
        return s

    def end(self, token: str | None) -> None:
        if token:
            self._by_digest.pop(_digest(token), None)

    def end_all(self) -> None:
        self._by_digest.clear()

    def count(self, now: float, *, authenticated: bool = True) -> int:
        return sum(
            1
            for s in self._by_digest.values()
            if s.authenticated == authenticated and not self._expired(s, now)
        )


@dataclass(frozen=True)
class ThrottlePolicy:
    max_failures: int = 5
    window_s: float = 15 * 60
    lockout_s: float = 15 * 60
    global_per_minute: int = 30

    def __post_init__(self) -> None:
        if self.max_failures <= 0 or self.global_per_minute <= 0:
            raise ValueError("throttle limits must be positive")


@dataclass(frozen=True)
class ThrottleVerdict:
    allowed: bool
    retry_after_s: float = 0.0
    reason: str = ""  # "locked" (this source) or "busy" (global budget)


@dataclass
class _Source:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


class LoginThrottle:
    def __init__(self, policy: ThrottlePolicy | None = None) -> None:
        self.policy = policy or ThrottlePolicy()
        self._sources: dict[str, _Source] = {}
        self._recent: deque[float] = deque()  # every attempt, for the global budget

    def check(self, source: str, now: float) -> ThrottleVerdict:
        """May `source` try a password now? (Call before verifying; counts toward the global budget.)"""
        s = self._sources.get(source)
        if s is not None and s.locked_until > now:
            return ThrottleVerdict(False, s.locked_until - now, "locked")
        while self._recent and self._recent[0] <= now - 60:
            self._recent.popleft()
        if len(self._recent) >= self.policy.global_per_minute:
            return ThrottleVerdict(False, self._recent[0] + 60 - now, "busy")
        self._recent.append(now)
        return ThrottleVerdict(True)

    def failed(self, source: str, now: float) -> bool:
        """Count a failure; True when this failure locked the source out."""
        s = self._sources.setdefault(source, _Source())
        while s.failures and s.failures[0] <= now - self.policy.window_s:
            s.failures.popleft()
        s.failures.append(now)
        if len(s.failures) >= self.policy.max_failures:
            s.locked_until = now + self.policy.lockout_s
            s.failures.clear()
            return True
        if len(self._sources) > 4096:  # bound memory: forget sources with nothing pending
            for k in [k for k, v in self._sources.items() if not v.failures and v.locked_until <= now]:
                del self._sources[k]
        return False

    def succeeded(self, source: str) -> None:
        self._sources.pop(source, None)

    def locked(self, source: str, now: float) -> bool:
        s = self._sources.get(source)
        return s is not None and s.locked_until > now
