"""The device certificate authority: issues short-lived box certificates from CSRs.

Theory of operation: the operator creates one device CA (EC P-256 key, self-signed, 10 years) in a
directory (`ca.key` mode 0600, `ca.crt`). A box makes its own key pair and sends a CSR; the CA signs
a client certificate whose *only* identity is the SAN URI `urn:edgebox:box:<box id>` (the box id is
chosen by the operator at issue time, or taken from the verified current certificate at renewal — never
from the CSR's own subject, which the requester controls). Certificates are short-lived (24 h by
default) so a stolen one is worth little; boxes renew over mTLS while still valid. The same CA also
signs the gateway's TLS server certificate so boxes need to trust one root. Every issued certificate
is recorded in the `CertStore` (edgebox.pki.store), which also holds revocations.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgebox.errors import EdgeboxError

BOX_URI_PREFIX = "urn:edgebox:box:"
DEFAULT_LIFETIME = dt.timedelta(hours=24)
CLOCK_SKEW = dt.timedelta(minutes=5)
_BOX_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
MAX_CSR_BYTES = 8192


class PkiError(EdgeboxError):
    code = "pki_error"


class CsrInvalid(PkiError):
    code = "csr_invalid"


def check_box_id(box_id: str) -> str:
    if not _BOX_ID.fullmatch(box_id):
        raise PkiError(
            "box id must be 1-63 chars of a-z, 0-9 and '-', starting with a letter or digit",
            code="box_id_invalid",
        )
    return box_id


def box_uri(box_id: str) -> str:
    return BOX_URI_PREFIX + check_box_id(box_id)


def serial_hex(serial: int) -> str:
    """Canonical serial text: lowercase hex, no leading zeros (matches ssl.getpeercert() lowercased)."""
    return format(serial, "x")


@dataclass(frozen=True, slots=True)
class IssuedCert:
    pem: bytes
    serial: str
    box_id: str
    not_after: dt.datetime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_csr(key: ec.EllipticCurvePrivateKey, common_name: str = "edgebox box") -> bytes:
    """A CSR as a box makes it (the subject is informational; the CA ignores it)."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class DeviceCA:
    """A loaded CA (certificate + key)."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, directory: Path) -> None:
        self.cert = cert
        self.key = key
        self.directory = directory

    @property
    def cert_path(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def create(cls, directory: Path, name: str = "edgebox device CA", *, days: int = 3650) -> DeviceCA:
        directory.mkdir(parents=True, exist_ok=True)
        if (directory / "ca.key").exists():
            raise PkiError(f"a CA already exists in {directory}", code="ca_exists")
        key = new_private_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(directory / "ca.key", key_pem(key))
        _write_public(directory / "ca.crt", cert.public_bytes(serialization.Encoding.PEM))
        return cls(cert, key, directory)

    @classmethod
    def load(cls, directory: Path) -> DeviceCA:
        try:
            cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
            key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
        except FileNotFoundError:
            raise PkiError(
                f"no device CA in {directory} (run `edgebox pki init`)", code="ca_missing"
            ) from None
        except ValueError:
            raise PkiError(f"the CA files in {directory} are not valid PEM", code="ca_invalid") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError("the CA key must be an EC key", code="ca_invalid")
        return cls(cert, key, directory)

    def _builder(
        self, public_key: object, subject: x509.Name, lifetime: dt.timedelta, not_before: dt.datetime | None
    ) -> x509.CertificateBuilder:
        now = _now()
        start = not_before if not_before is not None else now - CLOCK_SKEW
        end = (not_before if not_before is not None else now) + lifetime
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(secrets.randbits(127) | (1 << 126))
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )

    def issue_box(
        self,
        csr_pem: bytes,
        box_id: str,
        *,
        lifetime: dt.timedelta = DEFAULT_LIFETIME,
        not_before: dt.datetime | None = None,
    ) -> IssuedCert:
        """Sign a box client certificate for `box_id` from a CSR (its signature must verify)."""
        check_box_id(box_id)
        if len(csr_pem) > MAX_CSR_BYTES:
            raise CsrInvalid("CSR is too large")
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError:
            raise CsrInvalid("CSR is not a valid PEM certificate signing request") from None
        try:
            if not csr.is_signature_valid:
                raise CsrInvalid("CSR signature does not verify")
        except InvalidSignature:
            raise CsrInvalid("CSR signature does not verify") from None
        public_key = csr.public_key()
        if isinstance(public_key, rsa.RSAPublicKey):
            if public_key.key_size < 2048:
                raise CsrInvalid("RSA keys must be at least 2048 bits")
        elif not isinstance(public_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
            raise CsrInvalid("CSR key type not supported (use EC P-256, Ed25519 or RSA >= 2048)")
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, box_id)])
        cert = (
            self._builder(public_key, subject, lifetime, not_before)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(box_uri(box_id))]), critical=False
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return IssuedCert(
            cert.public_bytes(serialization.Encoding.PEM),
            serial_hex(cert.serial_number),
            box_id,
            cert.not_valid_after_utc,
        )

    def issue_server(self, hostnames: list[str], *, days: int = 90) -> tuple[bytes, bytes]:
        """A TLS server certificate + key (PEM) for the gateway, for the given DNS names / IP addresses."""
        key = new_private_key()
        names: list[x509.GeneralName] = []
        for h in hostnames:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                names.append(x509.DNSName(h))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (hostnames or ["gateway"])[0][:64])])
        cert = (
            self._builder(key.public_key(), subject, dt.timedelta(days=days), None)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)

    def write_server_cert(self, hostnames: list[str], *, days: int = 90) -> tuple[Path, Path]:
        cert_pem, k_pem = self.issue_server(hostnames, days=days)
        cert_path, key_path = self.directory / "server.crt", self.directory / "server.key"
        _write_private(key_path, k_pem)
        _write_public(cert_path, cert_pem)
        return cert_path, key_path


def box_id_from_cert(cert: x509.Certificate) -> str | None:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(BOX_URI_PREFIX):
            return uri[len(BOX_URI_PREFIX) :]
    return None
