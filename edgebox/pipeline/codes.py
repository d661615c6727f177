"""One table of the gateway's error codes, shared by the gateway (which sends them) and the box
(which maps them onto session errors for the phone).

Theory of operation: every refusal the gateway sends carries an `ErrorCode` (stable snake_case,
documented in docs/gateway.md). Each code has one row in `_TABLE`: its HTTP status, whether a client
retry can help (the gateway sends `x-should-retry: false` when it cannot, so the OpenAI SDK does not
retry a 5xx three times for nothing), and the session `ErrorKind` value the box reports to the phone.
Unknown codes from a newer gateway are `ErrorCode.parse(...) -> None`, and the box treats them as
`upstream_error`. No other module keeps its own list of codes or statuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorCode(StrEnum):
    # request content (400)
    malformed_json = "malformed_json"
    invalid_encoding = "invalid_encoding"
    malformed_http = "malformed_http"
    invalid_request = "invalid_request"
    unknown_field = "unknown_field"
    missing_field = "missing_field"
    unsupported_content = "unsupported_content"
    too_large = "too_large"
    prompt_blocked = "prompt_blocked"
    request_exceeds_quota = "request_exceeds_quota"
    csr_invalid = "csr_invalid"
    body_incomplete = "body_incomplete"
    unsupported_media_type = "unsupported_media_type"
    body_too_large = "body_too_large"
    body_timeout = "body_timeout"
    # identity and standing
    enrol_token_invalid = "enrol_token_invalid"  # noqa: S105 (an error code)
    certificate_revoked = "certificate_revoked"
    certificate_expired = "certificate_expired"
    device_unknown = "device_unknown"
    phone_suspended = "phone_suspended"
    # routing
    not_found = "not_found"
    method_not_allowed = "method_not_allowed"
    idempotency_in_progress = "idempotency_in_progress"
    # rate and quota
    quota_exceeded = "quota_exceeded"
    phone_throttled = "phone_throttled"
    # upstream and backends
    upstream_unavailable = "upstream_unavailable"
    upstream_error = "upstream_error"
    upstream_busy = "upstream_busy"
    upstream_timeout = "upstream_timeout"
    renewal_unavailable = "renewal_unavailable"
    backend_unavailable = "backend_unavailable"
    internal_error = "internal_error"

    @classmethod
    def parse(cls, value: object) -> ErrorCode | None:
        try:
            return cls(str(value))
        except ValueError:
            return None

    @property
    def status(self) -> int:
        return _TABLE[self].status

    @property
    def retryable(self) -> bool:
        """Whether the same request, retried unchanged, could succeed."""
        return _TABLE[self].retryable

    @property
    def session_kind(self) -> str:
        """The `edgebox.session.messages.ErrorKind` value the box reports to the phone."""
        return _TABLE[self].session_kind


@dataclass(frozen=True, slots=True)
class _Row:
    status: int
    retryable: bool = False
    session_kind: str = "upstream_error"


C = ErrorCode
_TABLE: dict[ErrorCode, _Row] = {
    C.malformed_json: _Row(400, session_kind="invalid_message"),
    C.invalid_encoding: _Row(400, session_kind="invalid_message"),
    C.malformed_http: _Row(400),
    C.invalid_request: _Row(400, session_kind="invalid_message"),
    C.unknown_field: _Row(400, session_kind="invalid_message"),
    C.missing_field: _Row(400, session_kind="invalid_message"),
    C.unsupported_content: _Row(400, session_kind="invalid_message"),
    C.too_large: _Row(400, session_kind="too_large"),
    C.prompt_blocked: _Row(400, session_kind="injection_blocked"),
    C.request_exceeds_quota: _Row(400, session_kind="too_large"),
    C.csr_invalid: _Row(400),
    C.body_incomplete: _Row(400, retryable=True),
    C.unsupported_media_type: _Row(415),
    C.body_too_large: _Row(413, session_kind="too_large"),
    C.body_timeout: _Row(408, retryable=True),
    C.enrol_token_invalid: _Row(401),
    C.certificate_revoked: _Row(403),
    C.certificate_expired: _Row(403),
    C.device_unknown: _Row(403),
    C.phone_suspended: _Row(403),
    C.not_found: _Row(404),
    C.method_not_allowed: _Row(405),
    C.idempotency_in_progress: _Row(409, retryable=True, session_kind="busy"),
    C.quota_exceeded: _Row(429, retryable=True, session_kind="quota_exceeded"),
    C.phone_throttled: _Row(429, retryable=True, session_kind="busy"),
    C.upstream_unavailable: _Row(502, retryable=True, session_kind="upstream_unavailable"),
    C.upstream_error: _Row(502),
    C.upstream_busy: _Row(503, retryable=True, session_kind="upstream_unavailable"),
    C.upstream_timeout: _Row(504, retryable=True, session_kind="upstream_unavailable"),
    C.renewal_unavailable: _Row(503, retryable=True),
    C.backend_unavailable: _Row(503, retryable=True, session_kind="upstream_unavailable"),
    C.internal_error: _Row(500),
}
del C

assert set(_TABLE) == set(ErrorCode), "every ErrorCode needs a row"

__all__ = ["ErrorCode"]
