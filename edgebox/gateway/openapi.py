"""The gateway's OpenAPI 3.1 document, generated from the same msgspec schema that validates requests.

Theory of operation: the request schema is not written twice — `request_schema()` derives it from
`ChatCompletionRequest`, so the document (served at /openapi.json and kept in docs/gateway-openapi.json,
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


@functools.cache
def openapi_document() -> dict[str, Any]:
    rs = request_schema()
    components: dict[str, Any] = dict(rs["components"])  # type: ignore[call-overload]
    components["Error"] = _ERROR
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "edgebox gateway",
            "version": "1",
            "description": "OpenAI-compatible chat completions for edgebox boxes. mTLS (TLS 1.3, device CA "
            "client certificate) is required on every connection; identity comes from the certificate.",
        },
        "paths": {
            "/v1/chat/completions": {
                "post": {
                    "operationId": "createChatCompletion",
                    "parameters": [
                        {
                            "name": "traceparent",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": rs["schema"]}},
                    },
                    "responses": {
                        "200": {
                            "description": "completion (JSON) or SSE stream when `stream` is true",
                            "content": {
                                "application/json": {"schema": {"type": "object"}},
                                "text/event-stream": {"schema": {"type": "string"}},
                            },
                        },
                        "400": _err("invalid request or prompt blocked"),
                        "403": _err("certificate revoked, expired or not a box certificate"),
                        "408": _err("request body too slow"),
                        "413": _err("request body too large"),
                        "415": _err("not JSON"),
                        "429": {
                            **_err("token quota exhausted"),
                            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        },
                        "502": _err("upstream unreachable or failed"),
                        "503": _err("upstream busy"),
                        "504": _err("upstream timeout"),
                    },
                }
            },
            "/v1/pki/renew": {
                "post": {
                    "operationId": "renewCertificate",
                    "requestBody": {
                        "required": True,
                        "content": {"application/pkcs10": {"schema": {"type": "string"}}},
                    },
                    "responses": {
                        "200": {
                            "description": "new certificate (PEM)",
                            "content": {"application/x-pem-file": {"schema": {"type": "string"}}},
                        },
                        "400": _err("CSR invalid"),
                        "403": _err("certificate revoked or expired"),
                    },
                }
            },
        },
        "components": {"schemas": components},
    }


if __name__ == "__main__":
    import json

    print(json.dumps(openapi_document(), indent=2, sort_keys=True))
