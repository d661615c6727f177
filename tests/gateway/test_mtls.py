"""mTLS with real TLS 1.3 on loopback: no cert, wrong CA, expired, revoked (live conns closed), renewed."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from edgebox.pki.ca import DeviceCA, box_id_from_cert, key_pem, make_csr, new_private_key
from tests.gateway.support import (
    Box,
    GatewayFactory,
    StubUpstream,
    chat_body,
    client_for,
    make_box,
    read_audit,
)


async def _post_with(ctx: ssl.SSLContext, port: int) -> int:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as c:
        r = await c.post(f"https://127.0.0.1:{port}/v1/chat/completions", json=chat_body())
        return r.status


async def test_no_client_certificate_is_refused(make_gateway: GatewayFactory, pki: DeviceCA) -> None:
    """TLS lets a certificate-less client in only for enrolment; every device route refuses it."""
    gw = await make_gateway()
    ctx = ssl.create_default_context(cafile=str(pki.cert_path))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as c:
        for path, body in (("/v1/chat/completions", chat_body()), ("/v1/pki/renew", None)):
            r = await c.post(f"https://127.0.0.1:{gw.port}{path}", json=body)
            assert r.status == 403 and (await r.json())["error"]["code"] == "device_unknown"


async def test_certificate_from_another_ca_is_refused(
    make_gateway: GatewayFactory, pki: DeviceCA, tmp_path: Path, boxes_dir: Path
) -> None:
    gw = await make_gateway()
    rogue = DeviceCA.create(tmp_path / "rogue")
    box = make_box(rogue, "box-1", boxes_dir)  # same box id, wrong CA
    ctx = ssl.create_default_context(cafile=str(pki.cert_path))
    ctx.load_cert_chain(str(box.cert), str(box.key))
    with pytest.raises(aiohttp.ClientError):
        await _post_with(ctx, gw.port)


async def test_tls12_is_refused(make_gateway: GatewayFactory, pki: DeviceCA, boxes_dir: Path) -> None:
    gw = await make_gateway()
    box = make_box(pki, "box-1", boxes_dir)
    ctx = box.ssl_context(pki)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(aiohttp.ClientError):
        await _post_with(ctx, gw.port)


async def test_expired_certificate_is_refused(
    make_gateway: GatewayFactory, pki: DeviceCA, boxes_dir: Path
) -> None:
    gw = await make_gateway()
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    box = make_box(pki, "box-old", boxes_dir, lifetime=dt.timedelta(hours=24), not_before=past)
    with pytest.raises(aiohttp.ClientError):
        await _post_with(box.ssl_context(pki), gw.port)


async def test_ca_signed_cert_without_box_identity_is_403(
    make_gateway: GatewayFactory, pki: DeviceCA, boxes_dir: Path
) -> None:
    gw = await make_gateway()
    # the gateway's own server certificate is CA-signed but names no box
    ctx = ssl.create_default_context(cafile=str(pki.cert_path))
    ctx.load_cert_chain(str(pki.directory / "server.crt"), str(pki.directory / "server.key"))
    try:
        status = await _post_with(ctx, gw.port)
    except aiohttp.ClientError:
        return  # OpenSSL may refuse a serverAuth-only certificate as a client certificate: also fine
    assert status == 403


async def test_revocation_refuses_next_request_and_closes_live_connections(
    make_gateway: GatewayFactory, pki: DeviceCA, boxes_dir: Path, upstream: StubUpstream, tmp_path: Path
) -> None:
    gw = await make_gateway()
    box = make_box(pki, "box-r", boxes_dir)
    other = make_box(pki, "box-ok", boxes_dir)
    async with client_for(gw, box, pki) as c, client_for(gw, other, pki) as c2:
        assert (await c.post("/v1/chat/completions", json=chat_body())).status == 200
        # an idle keep-alive connection is open; hold a raw streaming connection too
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", gw.port, ssl=box.ssl_context(pki), server_hostname="127.0.0.1"
        )
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n"
        )
        await writer.drain()
        await asyncio.sleep(0.05)
        # the operator revokes through the shared store (what `edgebox pki revoke` writes)
        await gw.store.revoke_box("box-r", "operator")
        async with client_for(gw, box, pki) as fresh:
            r = await fresh.post("/v1/chat/completions", json=chat_body())
            assert r.status == 403 and (await r.json())["error"]["code"] == "certificate_revoked"
        # the half-sent request's connection is aborted by the sweep
        data = await asyncio.wait_for(reader.read(), timeout=5)
        assert data == b"" or b"certificate_revoked" not in data
        assert reader.at_eof()
        writer.close()
        # other boxes are unaffected
        assert (await c2.post("/v1/chat/completions", json=chat_body())).status == 200
    assert any(a["code"] == "certificate_revoked" for a in read_audit(tmp_path) if "code" in a)


async def test_revoking_one_serial_leaves_the_box_renewed_cert_working(
    make_gateway: GatewayFactory, pki: DeviceCA, boxes_dir: Path
) -> None:
    gw = await make_gateway()
    old = make_box(pki, "box-x", boxes_dir)
    new = make_box(pki, "box-x", boxes_dir)
    await gw.store.revoke_serial(old.serial, "key compromised")
    async with client_for(gw, old, pki) as c:
        assert (await c.post("/v1/chat/completions", json=chat_body())).status == 403
    async with client_for(gw, new, pki) as c:
        assert (await c.post("/v1/chat/completions", json=chat_body())).status == 200


async def test_renewal_over_mtls(make_gateway: GatewayFactory, pki: DeviceCA, boxes_dir: Path) -> None:
    gw = await make_gateway(cert_lifetime_hours=2)
    box = make_box(pki, "box-n", boxes_dir, lifetime=dt.timedelta(hours=1))
    key = new_private_key()
    csr = make_csr(key, common_name="box-someone-else")  # the CSR's claimed subject is ignored
    async with client_for(gw, box, pki) as c:
        r = await c.post("/v1/pki/renew", data=csr, headers={"Content-Type": "application/pkcs10"})
        assert r.status == 200
        pem = await r.read()
        r = await c.post("/v1/pki/renew", data=b"not a csr", headers={"Content-Type": "application/pkcs10"})
        assert r.status == 400 and (await r.json())["error"]["code"] == "csr_invalid"
    cert = x509.load_pem_x509_certificate(pem)
    assert box_id_from_cert(cert) == "box-n"
    life = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=1, minutes=55) < life <= dt.timedelta(hours=2)
    renewed_cert = boxes_dir / "renewed.crt"
    renewed_key = boxes_dir / "renewed.key"
    renewed_cert.write_bytes(pem)
    renewed_key.write_bytes(key_pem(key))
    renewed = Box("box-n", renewed_cert, renewed_key, format(cert.serial_number, "x"))
    async with client_for(gw, renewed, pki) as c:
        assert (await c.post("/v1/chat/completions", json=chat_body())).status == 200
    assert any(x.serial == renewed.serial for x in await gw.store.list_certs())
    # a revoked box cannot renew its way out
    await gw.store.revoke_box("box-n", "operator")
    async with client_for(gw, renewed, pki) as c:
        r = await c.post("/v1/pki/renew", data=make_csr(new_private_key()))
        assert r.status == 403 and (await r.json())["error"]["code"] == "certificate_revoked"
