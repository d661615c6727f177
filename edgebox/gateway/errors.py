"""Typed gateway errors and their HTTP mapping (OpenAI-style JSON error bodies).

Theory of operation: every refusal the gateway sends is a `GatewayError` with a stable `code`
(documented in docs/gateway.md) and an HTTP status chosen by meaning: 400 bad request content,
403 identity problems (revoked / expired / unknown device), 408 slow body, 413 body too large,
429 + Retry-After for quota (never 401: a quota is not an authentication failure), 502/503/504 for the
upstream. Messages are fixed texts or name JSON paths — never a value from the request, never the
upstream's own error text (which can quote the upstream key).
"""

from __future__ import annotations

import math

import msgspec

from edgebox.errors import EdgeboxError

STATUS_BY_CODE: dict[str, int] = {
    "malformed_json": 400,
    "malformed_http": 400,
    "invalid_request": 400,
    "unknown_field": 400,
    "missing_field": 400,
    "too_large": 400,
    "prompt_blocked": 400,
    "request_exceeds_quota": 400,
    "csr_invalid": 400,
    "unsupported_media_type": 415,
    "body_too_large": 413,
    "body_timeout": 408,
    "body_incomplete": 400,
    "certificate_revoked": 403,
    "certificate_expired": 403,
    "device_unknown": 403,
    "renewal_unavailable": 503,
    "quota_exceeded": 429,
    "not_found": 404,
    "method_not_allowed": 405,
    "upstream_unavailable": 502,
    "upstream_error": 502,
    "upstream_busy": 503,
    "upstream_timeout": 504,
    "internal_error": 500,
    "backend_unavailable": 503,
}

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    403: "permission_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


class GatewayError(EdgeboxError):
    def __init__(
        self, code: str, message: str, *, param: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.status = STATUS_BY_CODE.get(code, 400)
        self.param = param
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


class _ErrorBody(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    type: str
    param: str | None = None


class _Envelope(msgspec.Struct):
    error: _ErrorBody


_ENC = msgspec.json.Encoder()


def error_body(err: GatewayError) -> bytes:
    kind = _TYPE_BY_STATUS.get(err.status, "api_error")
    return _ENC.encode(_Envelope(_ErrorBody(err.code, str(err), kind, err.param)))
