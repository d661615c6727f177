"""Typed gateway errors and their HTTP mapping (OpenAI-style JSON error bodies).

Theory of operation: every refusal the gateway sends is a `GatewayError` with a stable `ErrorCode`
(edgebox.pipeline.codes, documented in docs/gateway.md) and the HTTP status that table gives it, chosen
by meaning: 400 bad request content,
403 identity problems (revoked / expired / unknown device), 408 slow body, 413 body too large,
429 + Retry-After for quota (never 401: a quota is not an authentication failure), 502/503/504 for the
upstream. Messages are fixed texts or name JSON paths — never a value from the request, never the
upstream's own error text (which can quote the upstream key).
"""

from __future__ import annotations

import math

import msgspec

from edgebox.errors import EdgeboxError
from edgebox.pipeline.codes import ErrorCode

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    409: "invalid_request_error",
    429: "rate_limit_error",
}


class GatewayError(EdgeboxError):
    def __init__(
        self,
        code: ErrorCode | str,
        message: str,
        *,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        known = ErrorCode.parse(code)
        super().__init__(message, code=str(known or ErrorCode.invalid_request))
        self.error_code = known or ErrorCode.invalid_request
        self.status = self.error_code.status
        self.param = param
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if not self.error_code.retryable:
            out["x-should-retry"] = "false"  # the OpenAI SDKs honour it: no blind retries of a 5xx
        if self.retry_after is not None:
            out["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return out


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
