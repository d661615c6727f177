"""One-time enrolment tokens (contract 7): how a new box gets its first certificate.

Theory of operation: the operator runs `edgebox pki enrol-token --box-id ID [--ttl 900]`, which prints
a random 256-bit token and stores only its SHA-256 digest with the box id and an expiry in the shared
`CertStore`. The box (`edgebox box enroll`) makes its key pair locally and sends
`POST /v1/pki/enrol` `{"token", "csr"}` over server-authenticated TLS (it has no client certificate
yet); the gateway takes the token (single use: deleted as it is read), asks the signer to sign the CSR
for that box id, and answers `{"certificate", "chain", "not_after"}`. An unknown, used or expired token
is `401 enrol_token_invalid`. The private key never leaves the box; the token is never logged.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Annotated

import msgspec

TOKEN_PREFIX = "ebt_"  # noqa: S105 (a prefix, not a secret)
DEFAULT_TTL_S = 900.0
MAX_TTL_S = 7 * 86_400.0


def new_token() -> str:
    return TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class EnrolRequest(msgspec.Struct, forbid_unknown_fields=True):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    csr: Annotated[str, msgspec.Meta(min_length=1, max_length=8192)]


class EnrolResponse(msgspec.Struct):
    certificate: str
    chain: str
    not_after: str
