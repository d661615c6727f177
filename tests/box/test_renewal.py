"""Certificate renewal on a simulated clock: renewal at ~2/3 of the lifetime with jitter, backoff on
failure (never past expiry), clear states (valid, renewal_due, expiring, expired, missing), and a real
renewal against the gateway over mTLS with the identity key (the new certificate is used at once)."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

from edgebox.box.config import GatewaySection
from edgebox.box.renewal import CertificateRenewal, CertInfo, RenewalSchedule, build_uplink, read_cert
from edgebox.box.responder import RequestContext
from edgebox.box.state import open_state
from edgebox.pki.ca import DeviceCA, make_csr
from edgebox.session import messages as app
from tests.box.support import box_config, gateway_section
from tests.gateway.support import GatewayFactory, StubUpstream

H = 3600.0


def test_schedule_renews_at_two_thirds_with_jitter_and_backs_off() -> None:
    cfg = GatewaySection()
    at = []
    for seed in range(50):
        s = RenewalSchedule(cfg, random.Random(seed))
        s.set_certificate(CertInfo(0.0, 24 * H, "1"))
        assert s.next_at is not None
        at.append(s.next_at)
    assert all(16 * H - 1.2 * H - 1 <= t <= 16 * H + 1.2 * H + 1 for t in at)
    assert len({round(t) for t in at}) > 40  # a fleet does not renew in the same second

    s = RenewalSchedule(cfg, random.Random(1))
    s.set_certificate(CertInfo(0.0, 24 * H, "1"))
    assert s.state(1 * H) == "valid" and not s.due(1 * H)
    now = s.next_at or 0.0
    assert s.due(now) and s.state(now) == "renewal_due"
    delays = []
    for _ in range(8):
        s.failed(now, "renewal_failed")
        assert s.next_at is not None
        delays.append(s.next_at - now)
        now = s.next_at
    assert delays[1] > delays[0] * 1.5 and max(delays) <= cfg.renew_retry_max_s * 1.11
    assert s.state(20 * H + 1) == "expiring"  # less than 4 h left, not renewed
    # However many failures, the next attempt never lands after the expiry.
    s.failed(24 * H - 100, "renewal_failed")
    assert s.next_at is not None and s.next_at < 24 * H
    assert s.state(24 * H) == "expired"
    s.set_certificate(None)
    assert s.state(0) == "missing"


async def test_renewal_against_the_gateway_on_a_simulated_clock(
    tmp_path: Path, pki: DeviceCA, upstream: StubUpstream, make_gateway: GatewayFactory
) -> None:
    gw = await make_gateway()
    cfg = box_config(tmp_path, gateway=gateway_section(pki, gw.port))
    state = open_state(cfg.state_dir, dev=True, create=True)
    ident = state.identity
    state.close()
    first = pki.issue_box(make_csr(ident.private_key), ident.box_id_hex, lifetime=dt.timedelta(hours=24))
    cfg.cert_path.write_bytes(first.pem)
    uplink = build_uplink(cfg, ident)
    info = read_cert(cfg.cert_path)
    assert info is not None
    clock = [info.not_before + 1 * H]
    renewal = CertificateRenewal(cfg, ident, uplink, clock=lambda: clock[0], rng=random.Random(2))
    try:
        await renewal.step()
        assert renewal.status()["state"] == "valid" and renewal.renewals == 0
        # Jump to just past the renewal point: the box renews over mTLS with its identity key.
        assert renewal.schedule.next_at is not None
        clock[0] = renewal.schedule.next_at + 1
        await renewal.step()
        assert renewal.renewals == 1
        new = read_cert(cfg.cert_path)
        assert new is not None and new.serial != first.serial
        assert renewal.status()["state"] == "valid" or renewal.status()["state"] == "renewal_due"
        # The uplink uses the new certificate for the next request.
        ctx = RequestContext(phone_id="", trace=None)
        prompt = app.Prompt(id="r1", messages=[_msg("hi")])
        items = [i async for i in uplink.respond(prompt, ctx)]
        assert "".join(i for i in items if isinstance(i, str)) == "Hello!"
        # The gateway goes away: renewal fails, backs off, and the state says so near the end.
        await gw.stop()
        clock[0] = new.not_before + 0.7 * new.lifetime
        renewal.schedule.next_at = clock[0]
        await renewal.step()
        st = renewal.status()
        assert st["failures"] == 1 and st["last_error"] == "renewal_failed"
        clock[0] = new.not_after - 1 * H
        assert renewal.status()["state"] == "expiring"
        clock[0] = new.not_after + 1
        assert renewal.status()["state"] == "expired"
    finally:
        await uplink.close()


def _msg(text: str) -> object:
    from edgebox.pipeline.chat import ChatMessage, Role

    return ChatMessage(role=Role.user, content=text)
