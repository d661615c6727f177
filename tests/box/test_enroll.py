"""Enrolment (contract 7) with the real gateway: a one-time token from `edgebox pki enrol-token`, the
box makes its CSR with its identity key (the key never leaves it), the certificate is installed; a
used token is refused with a typed error; a running daemon enrols over its control socket and serves
through the new certificate at once; a token used after its expiry (a simulated gateway clock) is
refused with a typed error, no certificate is issued, nothing is written on the box, and the token
appears in no log line, audit record or error message."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import subprocess
import sys
import time
from asyncio.subprocess import PIPE
from pathlib import Path

import pytest
from cryptography import x509

from edgebox.box.control_socket import call
from edgebox.box.renewal import EnrolmentError, enroll
from edgebox.box.state import open_state
from edgebox.box.textmodels import TextModels
from edgebox.pki.ca import DeviceCA
from edgebox.pki.store import SqliteCertStore
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


async def _token(pki: DeviceCA, box_id: str, ttl: int = 300) -> str:
    r = await _edgebox(
        "pki", "enrol-token", "--box-id", box_id, "--dir", str(pki.directory), "--ttl", str(ttl)
    )
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


class GatewayClock:
    """The gateway's wall clock, moved on by the test (token expiry without waiting)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


async def test_an_expired_token_is_refused_and_leaves_nothing_behind(
    tmp_path: Path,
    pki: DeviceCA,
    upstream: StubUpstream,
    make_gateway: GatewayFactory,
    log_stream: io.StringIO,
) -> None:
    clock = GatewayClock()
    store = SqliteCertStore(pki.directory / "certs.sqlite", clock=clock)
    gw = await make_gateway(store=store)
    state_dir = tmp_path / "box"
    state = open_state(state_dir, dev=True, create=True)
    ident = state.identity
    state.close()
    before = _snapshot(state_dir)
    # The operator's tool makes a 60 s token; the box comes to use it a minute and a second later.
    tokens = [await _token(pki, ident.box_id_hex, ttl=60) for _ in range(2)]
    clock.offset = 61.0
    url = f"https://127.0.0.1:{gw.port}"
    r = await _edgebox(
        "--log-level", "debug", "box", "--state-dir", str(state_dir), "enroll",
        "--gateway", url, "--ca", str(pki.cert_path), "--token", tokens[0],
    )  # fmt: skip
    assert r.returncode == 2 and "error [enrol_token_invalid]" in r.stderr, r.stderr
    assert "enrolled" not in r.stdout
    # The library call the command uses: the same typed refusal.
    state = open_state(state_dir, dev=True)
    try:
        with pytest.raises(EnrolmentError) as err:
            await enroll(url, pki.cert_path, tokens[1], state.identity, state_dir / "box.crt")
    finally:
        state.close()
    assert err.value.code == "enrol_token_invalid"
    # No certificate was issued, and nothing was written on the box.
    assert await gw.store.list_certs() == []
    assert not (state_dir / "box.crt").exists()
    assert _snapshot(state_dir) == before
    audit = (tmp_path / "audit.jsonl").read_text()
    assert audit.count('"enrol_token_invalid"') == 2, audit
    # The token is in no log line, audit record or error message (nor a prefix of it).
    texts = {
        "cli stdout": r.stdout,
        "cli stderr": r.stderr,
        "gateway log": log_stream.getvalue(),
        "audit": audit,
        "error": f"{err.value} {err.value!r}",
    }
    assert "enrol_token_invalid" in log_stream.getvalue() + audit
    for token in tokens:
        secret = token.removeprefix("ebt_")
        for name, text in texts.items():
            assert secret[:16] not in text, f"the token appears in the {name}"
    # Expired tokens are gone for good: turning the clock back does not revive them.
    clock.offset = 0.0
    with pytest.raises(EnrolmentError):
        state = open_state(state_dir, dev=True)
        try:
            await enroll(url, pki.cert_path, tokens[0], state.identity, state_dir / "box.crt")
        finally:
            state.close()
    assert await gw.store.list_certs() == []
