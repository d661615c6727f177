"""The box's gateway certificate: enrolment, renewal at ~2/3 of its lifetime, and a clear state.

Theory of operation (contract 7). The client key *is* the box identity key (credential
`edgebox-identity`): the box makes every CSR itself and the key never leaves it.

- `enroll(...)`: `POST /v1/pki/enrol` over server-authenticated TLS (the device CA pinned) with a
  one-time token the gateway operator made (`edgebox pki enrol-token --box-id ID`); the certificate is
  written atomically to `<state_dir>/box.crt`.
- `RenewalSchedule` (sans-I/O, time passed in): the next renewal is at `renew_at_fraction` of the
  lifetime with +-`renew_jitter_fraction` jitter (so a fleet enrolled together does not renew
  together); after a failure, exponential backoff from `renew_retry_base_s` up to
  `renew_retry_max_s`, never past the expiry. `state(now)` is `valid`, `renewal_due`, `expiring`
  (less than `expiring_warning_s` left and not yet renewed), `expired` or `missing`.
- `CertificateRenewal.run()` drives the schedule: `POST /v1/pki/renew` over mTLS with a CSR for the same
  key; the uplink reloads the new certificate for the next request. Every state change is logged
  (`certificate_state`) and reported by `status()` (admin page, `edgebox box status`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509

from edgebox.box.config import BoxConfig, GatewaySection
from edgebox.box.identity import BoxIdentity
from edgebox.box.uplink import GatewayResponder, UplinkConfig
from edgebox.errors import EdgeboxError
from edgebox.keyfile import write_atomic
from edgebox.log import get_logger
from edgebox.pki.ca import make_csr

log = get_logger("edgebox.box.renewal")


class EnrolmentError(EdgeboxError):
    code = "enrolment_failed"


def build_uplink(cfg: BoxConfig, identity: BoxIdentity) -> GatewayResponder:
    g = cfg.gateway
    key_path = cfg.key_path
    return GatewayResponder(
        UplinkConfig(
            g.url,
            Path(g.ca_file),
            cfg.cert_path,
            key_file=key_path,
            model=g.model,
            read_timeout_s=g.read_timeout_s,
            connect_timeout_s=g.connect_timeout_s,
            private_key=None if key_path is not None else identity.private_key,
        )
    )


@dataclass(frozen=True, slots=True)
class CertInfo:
    not_before: float
    not_after: float
    serial: str

    @property
    def lifetime(self) -> float:
        return max(1.0, self.not_after - self.not_before)


def read_cert(path: Path) -> CertInfo | None:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None
    return CertInfo(
        cert.not_valid_before_utc.timestamp(),
        cert.not_valid_after_utc.timestamp(),
        format(cert.serial_number, "x"),
    )


class RenewalSchedule:
    def __init__(self, cfg: GatewaySection, rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self.rng = rng or random.Random()  # jitter only  # noqa: S311
        self.cert: CertInfo | None = None
        self.failures = 0
        self.next_at: float | None = None
        self.last_error: str | None = None

    def set_certificate(self, cert: CertInfo | None) -> None:
        self.cert = cert
        self.failures = 0
        self.last_error = None
        if cert is None:
            self.next_at = None
            return
        jitter = self.rng.uniform(-1, 1) * self.cfg.renew_jitter_fraction * cert.lifetime
        self.next_at = cert.not_before + self.cfg.renew_at_fraction * cert.lifetime + jitter

    def failed(self, now: float, error: str) -> None:
        self.failures += 1
        self.last_error = error
        delay = min(self.cfg.renew_retry_base_s * 2 ** (self.failures - 1), self.cfg.renew_retry_max_s)
        delay *= 1 + self.rng.uniform(-0.1, 0.1)
        at = now + delay
        if self.cert is not None and at >= self.cert.not_after:  # one last try before it is too late
            at = max(now + 1.0, self.cert.not_after - 60.0)
        self.next_at = at

    def due(self, now: float) -> bool:
        return self.cert is not None and self.next_at is not None and now >= self.next_at

    def state(self, now: float) -> str:
        c = self.cert
        if c is None:
            return "missing"
        if now >= c.not_after:
            return "expired"
        if c.not_after - now <= self.cfg.expiring_warning_s:
            return "expiring"
        if self.next_at is not None and now >= self.next_at:
            return "renewal_due"
        return "valid"


class CertificateRenewal:
    def __init__(
        self,
        cfg: BoxConfig,
        identity: BoxIdentity,
        uplink: GatewayResponder,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self.identity = identity
        self.uplink = uplink
        self.clock = clock
        self.schedule = RenewalSchedule(cfg.gateway, rng)
        self.schedule.set_certificate(read_cert(cfg.cert_path))
        self._last_state = ""
        self.renewals = 0

    def status(self) -> dict[str, Any]:
        now = self.clock()
        s = self.schedule
        out: dict[str, Any] = {"state": s.state(now), "failures": s.failures}
        if s.cert is not None:
            out["not_after"] = _iso(s.cert.not_after)
            out["serial"] = s.cert.serial
            out["seconds_left"] = round(s.cert.not_after - now)
        if s.next_at is not None:
            out["next_renewal"] = _iso(s.next_at)
        if s.last_error:
            out["last_error"] = s.last_error
        return out

    def _report(self) -> None:
        state = self.schedule.state(self.clock())
        if state != self._last_state:
            level = log.warning if state in ("expiring", "expired", "missing") else log.info
            level(
                "certificate_state", state=state, **{k: v for k, v in self.status().items() if k != "state"}
            )
            self._last_state = state

    async def renew_once(self) -> None:
        """One renewal attempt (raises `EnrolmentError` on failure)."""
        csr = make_csr(self.identity.private_key, f"edgebox box {self.identity.box_id_hex}")
        try:
            session = self.uplink._client()
            async with session.post(
                "/v1/pki/renew", data=csr, headers={"Content-Type": "application/pkcs10"}
            ) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise EnrolmentError(f"renewal refused ({_code(body)})", code="renewal_failed")
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError, OSError) as exc:
            raise EnrolmentError(
                f"gateway not reachable for renewal ({type(exc).__name__})", code="renewal_failed"
            ) from None
        await self.install(body)

    async def install(self, pem: bytes) -> None:
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise EnrolmentError("the gateway returned no valid certificate", code="renewal_failed") from None
        mine = self.identity.private_key.public_key().public_numbers()
        if cert.public_key().public_numbers() != mine:  # type: ignore[union-attr]
            raise EnrolmentError("the certificate is not for this box's key", code="renewal_failed")
        await asyncio.to_thread(write_atomic, self.cfg.cert_path, pem, 0o644)
        self.schedule.set_certificate(read_cert(self.cfg.cert_path))
        await self.uplink.reload()
        self.renewals += 1
        log.info("certificate_installed", serial=self.schedule.cert.serial if self.schedule.cert else None)

    async def step(self) -> float:
        """Renew if due; returns seconds until the next check."""
        now = self.clock()
        if self.schedule.cert is None:
            self.schedule.set_certificate(read_cert(self.cfg.cert_path))  # enrolled meanwhile?
        if self.schedule.due(now):
            try:
                await self.renew_once()
            except EnrolmentError as exc:
                self.schedule.failed(self.clock(), exc.code)
                log.warning("certificate_renewal_failed", failures=self.schedule.failures, error=str(exc))
        self._report()
        nxt = self.schedule.next_at
        return 60.0 if nxt is None else min(60.0, max(0.5, nxt - self.clock()))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(await self.step())

    async def aclose(self) -> None:
        return None


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _code(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"]["code"])[:64]
    except (ValueError, KeyError, TypeError):
        return "error"


async def enroll(
    gateway_url: str, ca_file: Path, token: str, identity: BoxIdentity, cert_path: Path
) -> CertInfo:
    """One-time enrolment (contract 7): token + CSR -> certificate, written to `cert_path`."""
    if not gateway_url.startswith("https://"):
        raise EnrolmentError("the gateway URL must start with https://")
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    csr = make_csr(identity.private_key, f"edgebox box {identity.box_id_hex}").decode()
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=30)
    try:
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx), timeout=timeout) as http,
            http.post(gateway_url.rstrip("/") + "/v1/pki/enrol", json={"token": token, "csr": csr}) as resp,
        ):
            body = await resp.read()
            if resp.status != 200:
                raise EnrolmentError(
                    f"the gateway refused the enrolment ({_code(body)})",
                    code=_code(body) if resp.status == 401 else "enrolment_failed",
                )
            doc = json.loads(body)
            pem = str(doc["certificate"]).encode()
    except (aiohttp.ClientError, TimeoutError, ssl.SSLError, OSError) as exc:
        raise EnrolmentError(f"the gateway is not reachable ({type(exc).__name__})") from None
    except (ValueError, KeyError, TypeError):
        raise EnrolmentError("the gateway's enrolment answer is malformed") from None
    cert = x509.load_pem_x509_certificate(pem)
    if cert.public_key().public_numbers() != identity.private_key.public_key().public_numbers():  # type: ignore[union-attr]
        raise EnrolmentError("the certificate is not for this box's key")
    write_atomic(cert_path, pem, 0o644)
    info = read_cert(cert_path)
    assert info is not None
    return info
