"""The gateway's one route table: it generates the router, the known-path list (405 vs 404) and the
OpenAPI document's paths, so the three can never disagree.

`auth` says what a route needs before its handler runs (enforced by the app's one middleware):
`device` — a verified box certificate in good standing (audited); `enrol` — server-authenticated TLS
only, the body carries a one-time token (audited); `public` — nothing (the OpenAPI document, health).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CHAT_PATH = "/v1/chat/completions"
RENEW_PATH = "/v1/pki/renew"
ENROL_PATH = "/v1/pki/enrol"


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: str  # attribute of the Gateway
    auth: Literal["device", "enrol", "public"]
    audit_event: str | None = None


ROUTES: tuple[Route, ...] = (
    Route("POST", CHAT_PATH, "chat", "device", "request"),
    Route("POST", RENEW_PATH, "renew", "device", "renewal"),
    Route("POST", ENROL_PATH, "enrol", "enrol", "enrolment"),
    Route("GET", "/openapi.json", "openapi", "public"),
    Route("GET", "/healthz", "health", "public"),
)

KNOWN_PATHS: dict[str, str] = {r.path: r.method for r in ROUTES}
BY_PATH: dict[tuple[str, str], Route] = {(r.method, r.path): r for r in ROUTES}
