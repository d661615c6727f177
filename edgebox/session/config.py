"""One configuration object for the secure session, passed in (like aioquic's QuicConfiguration).

Theory of operation: every limit, threshold, timeout and the padding policy of a session lives in
one frozen `SessionConfig`, built once (from the box's TOML file or by a test) and handed to the
sans-I/O connections, the framer and the async drivers. Nothing reads module constants at run
time, so a test that wants a 2-second rekey builds a config instead of patching a module.

The defaults are the protocol's (docs/protocol.md, section 8). The *hard* limits are what a receiver
enforces on its peer; a sender rekeys at the *soft* ones, which must stay below them.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgebox.errors import ConfigError

PROTOCOL_VERSION = 2  # framing capabilities, HELLO and the "edgebox v2 " labels
MAX_RECORD_COUNTER = 1 << 48


@dataclass(frozen=True, slots=True)
class SessionConfig:
    # handshake
    handshake_timeout_s: float = 30.0
    # record layer: rekey (soft, sender) and refuse (hard, receiver)
    rekey_after_records: int = 1 << 20
    rekey_after_s: float = 600.0
    hard_records: int = (1 << 20) + 1024
    hard_s: float = 900.0
    max_records: int = MAX_RECORD_COUNTER
    keepalive_s: float = 120.0  # an empty KEEPALIVE record after this long without sending
    pad_block: int = 128  # inner plaintext is padded to a multiple of this (1 = no padding)
    # framing
    window: int = 96
    open_timeout_s: float = 15.0  # capabilities exchange
    ack_timeout_s: float = 15.0  # no ack progress while fragments are in flight
    recv_queue: int = 8  # complete messages buffered for the application
    # box-side admission of handshakes that have not authenticated anyone yet
    max_unauthenticated: int = 8  # at once, across all links
    handshake_rate_per_s: float = 1.0  # sustained new handshakes per second ...
    handshake_burst: int = 10  # ... with bursts up to this many

    def __post_init__(self) -> None:
        if not 0 < self.rekey_after_records < self.hard_records <= self.max_records <= MAX_RECORD_COUNTER:
            raise ConfigError("record limits must satisfy 0 < rekey_after < hard <= max <= 2^48")
        if not 0 < self.rekey_after_s < self.hard_s:
            raise ConfigError("rekey_after_s must be positive and below hard_s")
        if self.keepalive_s <= 0 or self.handshake_timeout_s <= 0:
            raise ConfigError("keepalive_s and handshake_timeout_s must be positive")
        if not 1 <= self.pad_block <= 4096:
            raise ConfigError("pad_block must be in 1..4096")
        if not 2 <= self.window <= 127:
            raise ConfigError("window must be in 2..127")
        if min(self.open_timeout_s, self.ack_timeout_s) <= 0 or self.recv_queue < 1:
            raise ConfigError("framing timeouts and recv_queue must be positive")
        if self.max_unauthenticated < 1 or self.handshake_burst < 1 or self.handshake_rate_per_s <= 0:
            raise ConfigError("handshake admission limits must be positive")


DEFAULT_CONFIG = SessionConfig()
