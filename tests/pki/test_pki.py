"""Device CA, certificate store and the `edgebox pki` CLI."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgebox.cli import main
from edgebox.pki.ca import CsrInvalid, DeviceCA, PkiError, box_id_from_cert, make_csr, new_private_key
from edgebox.pki.store import SqliteCertStore


def test_issue_box_certificate(tmp_path: Path) -> None:
    ca = DeviceCA.create(tmp_path / "ca")
    assert (tmp_path / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    key = new_private_key()
    issued = ca.issue_box(make_csr(key, common_name="admin"), "box-17")
    cert = x509.load_pem_x509_certificate(issued.pem)
    assert box_id_from_cert(cert) == "box-17"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "box-17"  # not "admin"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    life = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=23, minutes=59) < life <= dt.timedelta(hours=24)  # short-lived by default
    cert.verify_directly_issued_by(ca.cert)
    assert issued.serial == format(cert.serial_number, "x")
    with pytest.raises(PkiError):
        DeviceCA.create(tmp_path / "ca")  # never overwrite a CA


@pytest.mark.parametrize(
    "bad",
    [b"", b"garbage", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"],
)
def test_bad_csr_is_typed(tmp_path: Path, bad: bytes) -> None:
    ca = DeviceCA.create(tmp_path / "ca")
    with pytest.raises(CsrInvalid):
        ca.issue_box(bad, "box-1")


def test_weak_or_forged_csr_is_refused(tmp_path: Path) -> None:
    ca = DeviceCA.create(tmp_path / "ca")
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(weak, hashes.SHA256())
    from cryptography.hazmat.primitives.serialization import Encoding

    with pytest.raises(CsrInvalid):
        ca.issue_box(csr.public_bytes(Encoding.PEM), "box-1")
    # a CSR whose signature does not match its key: splice another key's CSR body
    good = x509.load_pem_x509_csr(make_csr(new_private_key()))
    other = x509.load_pem_x509_csr(make_csr(ec.generate_private_key(ec.SECP256R1())))
    der = bytearray(good.public_bytes(Encoding.DER))
    sig = other.signature
    der[-len(sig) :] = sig if len(sig) == len(good.signature) else der[-len(sig) :]
    try:
        forged = x509.load_der_x509_csr(bytes(der))
    except ValueError:
        return
    if forged.signature != good.signature:
        with pytest.raises(CsrInvalid):
            ca.issue_box(forged.public_bytes(Encoding.PEM), "box-1")


@pytest.mark.parametrize("box_id", ["", "Box", "a" * 64, "box 1", "../x", "-box"])
def test_box_id_rules(tmp_path: Path, box_id: str) -> None:
    ca = DeviceCA.create(tmp_path / "ca")
    with pytest.raises(PkiError):
        ca.issue_box(make_csr(new_private_key()), box_id)


async def test_sqlite_store(tmp_path: Path) -> None:
    s = SqliteCertStore(tmp_path / "certs.sqlite")
    other = SqliteCertStore(tmp_path / "certs.sqlite")  # the CLI and the gateway share the file
    now = dt.datetime.now(dt.UTC)
    await s.record_issued("abc1", "box-1", now)
    await s.record_issued("abc2", "box-1", now)
    await s.record_issued("abc3", "box-2", now)
    assert not await other.is_revoked("abc1", "box-1")
    await other.revoke_serial("ABC1", "lost")
    assert await s.is_revoked("abc1", "box-1") and not await s.is_revoked("abc2", "box-1")
    await other.revoke_box("box-1", "stolen")
    assert await s.is_revoked("abc2", "box-1") and not await s.is_revoked("abc3", "box-2")
    assert [c.revoked for c in await s.list_certs()] == [True, True, False]
    assert await s.reinstate_box("box-1") and not await s.is_revoked("abc2", "box-1")
    assert [r.subject for r in await s.list_revoked()] == ["serial:abc1"]
    await s.close()
    await other.close()


def test_cli_init_issue_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path / "pki")
    assert main(["pki", "init", "--dir", d]) == 0
    assert (tmp_path / "pki" / "server.crt").exists()
    csr = tmp_path / "box.csr"
    csr.write_bytes(make_csr(new_private_key()))
    out = tmp_path / "box.crt"
    assert (
        main(
            [
                "pki",
                "issue",
                "--dir",
                d,
                "--box-id",
                "box-9",
                "--csr",
                str(csr),
                "--out",
                str(out),
                "--hours",
                "12",
            ]
        )
        == 0
    )
    cert = x509.load_pem_x509_certificate(out.read_bytes())
    assert box_id_from_cert(cert) == "box-9"
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(hours=12, minutes=5)
    capsys.readouterr()
    assert main(["pki", "revoke", "--dir", d, "box-9", "--reason", "lost"]) == 0
    assert main(["pki", "list", "--dir", d]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["certs"][0]["box_id"] == "box-9" and listing["certs"][0]["revoked"] is True
    assert listing["revoked"][0]["subject"] == "box:box-9"
    assert main(["pki", "reinstate", "--dir", d, "box-9"]) == 0
    assert main(["pki", "revoke", "--dir", d]) == 2  # typed usage error, no traceback
    assert main(["pki", "issue", "--dir", d, "--box-id", "BAD ID", "--csr", str(csr)]) == 2
    assert "box_id_invalid" in capsys.readouterr().err
