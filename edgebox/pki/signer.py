"""The signing service: the only process that holds the device CA's private key.

Theory of operation: gateway replicas authenticate boxes and decide *what* to sign (the box id comes
from the verified certificate at renewal, from a one-time enrolment token at enrolment); the signing
service only signs. It listens on a Unix socket (`edgebox pki signer --socket PATH`; the socket file is
mode 0660, so only the gateway's user or group can reach it) and answers one request,
`POST /v1/sign` with JSON `{"csr": PEM, "box_id": str, "lifetime_s": float}` →
`{"certificate": PEM, "serial": hex, "not_after": RFC 3339}`. The CSR is checked by `DeviceCA`
(signature, key type) exactly as before. A replica configured with `signer_socket` never opens
`ca.key`; `SignerClient` is its side. `LocalSigner` (the CA key in this process) exists only for the
single-machine development set-up, where `edgebox gateway` logs that it holds the key itself.
Refusals are typed: `csr_invalid` (the CSR), `signer_unavailable` (the service cannot be reached).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path
from typing import Protocol

import aiohttp
import msgspec
from aiohttp import web

from edgebox.log import get_logger
from edgebox.pki.ca import CsrInvalid, DeviceCA, IssuedCert, PkiError, check_box_id

log = get_logger("edgebox.pki.signer")

MAX_REQUEST = 16 * 1024


class SignerUnavailable(PkiError):
    code = "signer_unavailable"


class Signer(Protocol):
    async def sign(self, csr: bytes, box_id: str, lifetime: dt.timedelta) -> IssuedCert: ...
    async def close(self) -> None: ...


class _SignRequest(msgspec.Struct, forbid_unknown_fields=True):
    csr: str
    box_id: str
    lifetime_s: float


class _SignResponse(msgspec.Struct):
    certificate: str
    serial: str
    box_id: str
    not_after: str


class LocalSigner:
    """The CA key in this process (single-machine development only)."""

    def __init__(self, ca: DeviceCA) -> None:
        self.ca = ca

    async def sign(self, csr: bytes, box_id: str, lifetime: dt.timedelta) -> IssuedCert:
        return self.ca.issue_box(csr, box_id, lifetime=lifetime)

    async def close(self) -> None:
        return None


class SignerClient:
    """A replica's side: asks the signing service over its Unix socket."""

    def __init__(self, socket_path: str, *, timeout_s: float = 10.0) -> None:
        self._path = socket_path
        self._timeout = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self._path),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            )
        return self._session

    async def sign(self, csr: bytes, box_id: str, lifetime: dt.timedelta) -> IssuedCert:
        body = msgspec.json.encode(
            _SignRequest(csr.decode("ascii", "replace"), box_id, lifetime.total_seconds())
        )
        try:
            async with self._client().post(
                "http://signer/v1/sign", data=body, headers={"Content-Type": "application/json"}
            ) as r:
                data = await r.read()
                if r.status == 400:
                    raise CsrInvalid("the signing service refused the CSR")
                if r.status != 200:
                    raise SignerUnavailable(f"the signing service answered {r.status}")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise SignerUnavailable(f"the signing service is unreachable ({type(exc).__name__})") from None
        resp = msgspec.json.decode(data, type=_SignResponse)
        return IssuedCert(
            resp.certificate.encode(), resp.serial, resp.box_id, dt.datetime.fromisoformat(resp.not_after)
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class SigningService:
    def __init__(self, ca: DeviceCA, socket_path: Path, *, max_lifetime_h: float = 72.0) -> None:
        self.ca = ca
        self.socket_path = socket_path
        self.max_lifetime = dt.timedelta(hours=max_lifetime_h)
        self._runner: web.AppRunner | None = None

    async def _sign(self, request: web.Request) -> web.Response:
        try:
            raw = await request.content.read(MAX_REQUEST + 1)
            if len(raw) > MAX_REQUEST:
                raise CsrInvalid("request too large")
            req = msgspec.json.decode(raw, type=_SignRequest)
            box_id = check_box_id(req.box_id)
            lifetime = min(dt.timedelta(seconds=max(60.0, req.lifetime_s)), self.max_lifetime)
            issued = self.ca.issue_box(req.csr.encode(), box_id, lifetime=lifetime)
        except (PkiError, msgspec.DecodeError, msgspec.ValidationError, UnicodeError) as exc:
            log.info("sign_refused", error=getattr(exc, "code", type(exc).__name__))
            return web.json_response({"error": {"code": "csr_invalid"}}, status=400)
        log.info("signed", device=issued.box_id, serial=issued.serial)
        body = _SignResponse(issued.pem.decode(), issued.serial, issued.box_id, issued.not_after.isoformat())
        return web.Response(body=msgspec.json.encode(body), content_type="application/json")

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_REQUEST * 2)
        app.router.add_post("/v1/sign", self._sign)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        if self.socket_path.exists():
            self.socket_path.unlink()
        old = os.umask(0o117)
        try:
            site = web.UnixSite(self._runner, str(self.socket_path))
            await site.start()
        finally:
            os.umask(old)
        log.info("signer_started", socket=str(self.socket_path))

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await asyncio.sleep(0)
