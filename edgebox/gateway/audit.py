"""The gateway's audit log: one JSON line per decision, independent of the log level.

Theory of operation: every request that reaches the gateway's request path produces exactly one
audit record — device (box id + cert serial), the phone the box names, trace id, decision (allow,
flag, block, reject, quota, replay, renew, enrol, error; anomaly records: throttle_phone,
suspend_phone, revoke_box), status, classifier score and token counts (estimate, prompt, completion). Prompt
text is never a field. Revocations by the anomaly watch add a record whose `explanation` says which
threshold was crossed. Records go to a file (appended, line-buffered) or stderr ("-"), encoded by
msgspec so the writer is cheap enough for the hot path.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

import msgspec


class AuditRecord(msgspec.Struct, omit_defaults=True):
    ts: float
    event: str
    device: str
    serial: str
    trace_id: str
    decision: str
    status: int
    phone: str | None = None
    code: str | None = None
    model: str | None = None
    stream: bool = False
    score: float | None = None
    estimate_tokens: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    explanation: str | None = None


class AuditLog:
    def __init__(self, target: str = "-") -> None:
        self._encoder = msgspec.json.Encoder()
        self._own = target != "-"
        self._out: IO[bytes] = open(target, "ab", buffering=0) if self._own else sys.stderr.buffer  # noqa: SIM115

    def write(self, record: AuditRecord) -> None:
        self._out.write(self._encoder.encode(record) + b"\n")

    def record(self, **fields: Any) -> None:
        self.write(AuditRecord(ts=round(time.time(), 3), **fields))

    def close(self) -> None:
        if self._own:
            self._out.close()
