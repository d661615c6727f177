"""Enrolment (contract 7) with the real gateway: a one-time token from `edgebox pki enrol-token`, the
box makes its CSR with its identity key (the key never leaves it), the certificate is installed; a
used token is refused with a typed error; a running daemon enrols over its control socket and serves
through the new certificate at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

from cryptography import x509

from edgebox.box.control_socket import call
from edgebox.box.state import open_state
from edgebox.box.textmodels import TextModels
from edgebox.pki.ca import DeviceCA
from tests.box.support import box_config, gateway_section, running_box
from tests.gateway.support import GatewayFactory, StubUpstream

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


async def _edgebox(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess, without blocking the loop the in-process gateway runs on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgebox", *args, stdout=PIPE, stderr=PIPE, env=ENV
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return subprocess.CompletedProcess(list(args), proc.returncode or 0, out.decode(), err.decode())


async def _token(pki: DeviceCA, box_id: str) -> str:
    r = await _edgebox("pki", "enrol-token", "--box-id", box_id, "--dir", str(pki.directory), "--ttl", "300")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


async def test_enroll_from_the_cli_and_token_reuse(
    tmp_path: Path, pki: DeviceCA, upstream: StubUpstream, make_gateway: GatewayFactory
) -> None:
    gw = await make_gateway()
    state_dir = tmp_path / "box"
    state = open_state(state_dir, dev=True, create=True)
    ident = state.identity
    state.close()
    token = await _token(pki, ident.box_id_hex)
    url = f"https://127.0.0.1:{gw.port}"
    base = ["box", "--state-dir", str(state_dir), "enroll", "--gateway", url, "--ca", str(pki.cert_path)]
    r = await _edgebox(*base, "--token", token)
    assert r.returncode == 0, r.stderr
    assert "enrolled: certificate" in r.stdout and token not in r.stdout + r.stderr
    cert = x509.load_pem_x509_certificate((state_dir / "box.crt").read_bytes())
    assert cert.public_key().public_numbers() == ident.private_key.public_key().public_numbers()  # type: ignore[union-attr]
    assert not (state_dir / "box.key").exists()  # no key file: the identity key signed the CSR
    # single use
    r = await _edgebox(*base, "--token", token)
    assert r.returncode == 2 and "[enrol_token_invalid]" in r.stderr and token not in r.stderr


async def test_a_running_box_enrols_over_its_control_socket(
    tmp_path: Path,
    pki: DeviceCA,
    upstream: StubUpstream,
    make_gateway: GatewayFactory,
    text_models: TextModels,
) -> None:
    gw = await make_gateway()
    cfg = box_config(tmp_path, gateway=gateway_section(pki, gw.port))
    async with running_box(tmp_path, cfg, text_models) as box:
        assert (await box.daemon.control.status())["certificate"]["state"] == "missing"
        phone, _ = await box.pair()
        token = await _token(pki, box.daemon.identity.box_id_hex)
        result = await call(
            cfg.control_socket_path,
            "enroll",
            {"gateway": cfg.gateway.url, "ca": cfg.gateway.ca_file, "token": token},
        )
        assert result["not_after"].endswith("Z")
        st = (await box.daemon.control.status())["certificate"]
        assert st["state"] == "valid" and st["seconds_left"] > 3600
        answer = await phone.ask("What is the capital of France?")
        assert answer.text == "Hello!" and answer.done is not None and answer.done.source == "gateway"
        await phone.close()
