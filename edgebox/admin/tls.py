"""The admin page's own TLS certificate: made on the box, kept in the state directory, pinned by eye.

Theory of operation: `ensure_certificate(dir, names)` loads `<dir>/tls-cert.pem` + `tls-key.pem`
or, when missing, expired or within `RENEW_BEFORE_S` of expiry, makes a new P-256 key and a
self-signed certificate (subject and SAN: the host name, `<host>.local`, `localhost`, 127.0.0.1,
::1). The key file is written 0600 before any byte of key goes in, the pair is replaced atomically.
There is no CA: on the first visit the operator compares the browser's SHA-256 fingerprint with
the one `edgebox box admin fingerprint` prints on the box (`fingerprint(cert)`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_FILE = "tls-cert.pem"
KEY_FILE = "tls-key.pem"
VALIDITY_DAYS = 825
RENEW_BEFORE_S = 30 * 86_400


@dataclass(frozen=True)
class AdminCertificate:
    cert_path: Path
    key_path: Path
    fingerprint: str
    not_after: float

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx


def default_names() -> list[str]:
    host = socket.gethostname() or "edgebox"
    return sorted({host, f"{host}.local", "localhost"})


def fingerprint(cert: x509.Certificate) -> str:
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _load(directory: Path) -> x509.Certificate | None:
    try:
        cert = x509.load_pem_x509_certificate((directory / CERT_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    if not (directory / KEY_FILE).is_file():
        return None
    return cert


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _issue(directory: Path, names: list[str], now: dt.datetime) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])])
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_private(directory / KEY_FILE, pem_key)
    _write_private(directory / CERT_FILE, cert.public_bytes(serialization.Encoding.PEM))
    (directory / CERT_FILE).chmod(0o644)
    return cert


def ensure_certificate(
    directory: Path, names: list[str] | None = None, *, now: dt.datetime | None = None
) -> AdminCertificate:
    at = now or dt.datetime.now(dt.UTC)
    cert = _load(directory)
    if cert is None or cert.not_valid_after_utc.timestamp() - at.timestamp() < RENEW_BEFORE_S:
        cert = _issue(directory, names or default_names(), at)
    return AdminCertificate(
        directory / CERT_FILE, directory / KEY_FILE, fingerprint(cert), cert.not_valid_after_utc.timestamp()
    )


def read_fingerprint(directory: Path) -> str | None:
    cert = _load(directory)
    return None if cert is None else fingerprint(cert)
