"""The gateway's OpenAPI 3.1 document, generated from the same msgspec schema that validates requests.

Theory of operation: the request schema is not written twice — `request_schema()` derives it from
`ChatCompletionRequest`, the paths come from the route table (edgebox.gateway.routes), so the
document (served at /openapi.json and kept in docs/gateway-openapi.json,
checked by a test) can never drift from what the gateway enforces. Property-based tests generate
requests from it.
"""

from __future__ import annotations

import functools
from typing import Any

from edgebox.pipeline.codes import ErrorCode
from edgebox.pipeline.openai_schema import request_schema

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "type"],
            "properties": {
                "code": {"type": "string", "enum": sorted(c.value for c in ErrorCode)},
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": "string"},
            },
        }
    },
}


def _err(desc: str) -> dict[str, Any]:
    return {
        "description": desc,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


_CHUNK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["choices"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "chat.completion.chunk"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "delta"],
                "properties": {
                    "index": {"type": "integer"},
                    "delta": {
                        "type": "object",
                        "properties": {
                            "role": {"type": "string"},
                            "content": {"type": ["string", "null"]},
                            "refusal": {"type": ["string", "null"]},
                            "tool_calls": {"type": "array"},
                        },
                    },
                    "finish_reason": {
                        "enum": ["stop", "length", "tool_calls", "content_filter", "function_call", None]
                    },
                },
            },
        },
        "usage": {"anyOf": [{"$ref": "#/components/schemas/Usage"}, {"type": "null"}]},
    },
}
_USAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
    "properties": {
        "prompt_tokens": {"type": "integer", "minimum": 0},
        "completion_tokens": {"type": "integer", "minimum": 0},
        "total_tokens": {"type": "integer", "minimum": 0},
    },
}
_COMPLETION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["choices"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "chat.completion"},
        "model": {"type": "string"},
        "choices": {"type": "array", "items": {"type": "object"}},
        "usage": {"$ref": "#/components/schemas/Usage"},
    },
}
# One SSE event of the stream: its `data` is a JSON chat.completion.chunk, or the literal [DONE].
_SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string"},
        "id": {"type": "string"},
        "data": {
            "oneOf": [
                {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"$ref": "#/components/schemas/ChatCompletionChunk"},
                },
                {"const": "[DONE]"},
            ]
        },
    },
}
_TRACEPARENT = {"name": "traceparent", "in": "header", "required": False, "schema": {"type": "string"}}
_NO_RETRY = {
    "x-should-retry": {
        "description": "`false` when retrying the same request cannot help",
        "schema": {"type": "string", "enum": ["false"]},
    }
}


def _refusal(desc: str, *, retry_after: bool = False) -> dict[str, Any]:
    out = _err(desc)
    headers: dict[str, Any] = dict(_NO_RETRY)
    if retry_after:
        headers["Retry-After"] = {"schema": {"type": "integer"}}
    out["headers"] = headers
    return out


def _operations(request_body_schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        "chat": {
            "operationId": "createChatCompletion",
            "parameters": [
                _TRACEPARENT,
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "forwarded upstream at most once across replicas; a retry with the "
                    "same key and body gets the stored outcome",
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
                },
                {
                    "name": "X-Edgebox-Phone",
                    "in": "header",
                    "required": False,
                    "description": "the paired phone this request is for (hex id); audited, and the "
                    "unit of the graduated anomaly response",
                    "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{2,64}$"},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": request_body_schema}},
            },
            "responses": {
                "200": {
                    "description": "the completion (JSON), or with `stream: true` a stream of SSE events, "
                    "each described by `itemSchema` (data = one chat.completion.chunk, then [DONE])",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletion"}},
                        "text/event-stream": {
                            "schema": {"type": "string"},
                            "itemSchema": {"$ref": "#/components/schemas/ChatCompletionStreamEvent"},
                        },
                    },
                },
                "400": _refusal(
                    "invalid request (malformed_json, invalid_encoding = not UTF-8, unknown_field, "
                    "missing_field, unsupported_content = a non-text part, too_large) or prompt_blocked"
                ),
                "403": _refusal("certificate revoked, expired or not a box certificate; phone_suspended"),
                "408": _refusal("request body too slow"),
                "409": _refusal(
                    "idempotency_in_progress: a request with this key is in flight", retry_after=True
                ),
                "413": _refusal("request body too large"),
                "415": _refusal("not JSON"),
                "429": _refusal("quota_exceeded or phone_throttled", retry_after=True),
                "500": _refusal("internal error"),
                "502": _refusal("upstream unreachable or failed"),
                "503": _refusal("upstream busy or shared store unavailable", retry_after=True),
                "504": _refusal("upstream timeout"),
            },
        },
        "renew": {
            "operationId": "renewCertificate",
            "description": "mTLS with the current (valid, unrevoked) certificate. The body is a PKCS#10 "
            "CSR in PEM (or DER) for the same key or a new one; the new certificate names the box id "
            "of the presenting certificate, whatever the CSR's subject says.",
            "parameters": [_TRACEPARENT],
            "requestBody": {
                "required": True,
                "content": {
                    "application/pkcs10": {
                        "schema": {
                            "type": "string",
                            "maxLength": 8192,
                            "pattern": "^-----BEGIN CERTIFICATE REQUEST-----",
                        },
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "new certificate (PEM)",
                    "content": {"application/x-pem-file": {"schema": {"type": "string"}}},
                },
                "400": _refusal("csr_invalid"),
                "403": _refusal("certificate revoked or expired"),
                "503": _refusal("renewal_unavailable / backend_unavailable", retry_after=True),
            },
        },
        "enrol": {
            "operationId": "enrolBox",
            "description": "Server-authenticated TLS only (no client certificate yet). A one-time token "
            "from `edgebox pki enrol-token` and a CSR made on the box.",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EnrolRequest"}}},
            },
            "responses": {
                "200": {
                    "description": "the box's first certificate, the CA chain and its expiry",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/EnrolResponse"}}
                    },
                },
                "400": _refusal("csr_invalid or malformed body"),
                "401": _refusal("enrol_token_invalid: unknown, used or expired token"),
                "503": _refusal("renewal_unavailable / backend_unavailable", retry_after=True),
            },
        },
        "openapi": {
            "operationId": "openapi",
            "responses": {"200": {"description": "this document", "content": {"application/json": {}}}},
        },
        "health": {
            "operationId": "health",
            "responses": {"200": {"description": "ok", "content": {"application/json": {}}}},
        },
    }


@functools.cache
def openapi_document() -> dict[str, Any]:
    import msgspec

    from edgebox.gateway.routes import ROUTES
    from edgebox.pki.enrol import EnrolRequest, EnrolResponse

    rs = request_schema()
    components: dict[str, Any] = dict(rs["components"])  # type: ignore[call-overload]
    (_, _), enrol = msgspec.json.schema_components(
        [EnrolRequest, EnrolResponse], ref_template="#/components/schemas/{name}"
    )
    components.update(enrol)
    components["Error"] = _ERROR
    components["Usage"] = _USAGE_SCHEMA
    components["ChatCompletion"] = _COMPLETION_SCHEMA
    components["ChatCompletionChunk"] = _CHUNK_SCHEMA
    components["ChatCompletionStreamEvent"] = _SSE_EVENT_SCHEMA
    ops = _operations(rs["schema"])  # type: ignore[arg-type]
    paths: dict[str, Any] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = ops[route.handler]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "edgebox gateway",
            "version": "2",
            "description": "OpenAI-compatible chat completions for edgebox boxes. TLS 1.3; every route "
            "but enrolment, health and this document needs a device CA client certificate, and identity "
            "comes from the certificate only.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }


if __name__ == "__main__":
    import json

    print(json.dumps(openapi_document(), indent=2, sort_keys=True))
