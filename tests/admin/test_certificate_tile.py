"""The status page's certificate tile shows the renewal loop's state (server-side render of
status_live.html on a simulated clock): valid / renewing / failed / expiring / expired with hours and
minutes left (a 24 h certificate is not "0 days"), the failed attempts and the last error *code* —
never an error message, which could carry secrets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgebox.admin.app import certificate_view, template_environment
from edgebox.admin.backend import CertificateInfo, StatusSnapshot
from edgebox.box.renewal import CertificateRenewal
from edgebox.pki.ca import DeviceCA
from tests.box.support import box_config, gateway_section
from tests.gateway.support import make_box, pki  # noqa: F401

H = 3600.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _render(renewal: CertificateRenewal, now: float) -> tuple[str, str]:
    cert = renewal.schedule.cert
    assert cert is not None
    snap = StatusSnapshot(
        box_id="0123456789abcdef",
        ble_state="advertising",
        adapter="hci0",
        phones_connected=0,
        phones_enrolled=0,
        uplink_url="https://gw.example:8443",
        uplink_state="connected",
        certificate=CertificateInfo("box", cert.not_after),
        outbox_depth=0,
        cache_hit_rate=None,
        model_versions={},
        disk_used_bytes=1,
        disk_total_bytes=2,
        state_bytes=1,
        certificate_state=renewal.status(),
    )
    html = (
        template_environment()
        .get_template("status_live.html")
        .render(
            s=snap,
            now=now,
            cert=certificate_view(snap, now),
            totals={"requests": 0, "refusals": 0, "hits": 0},
            charts=[],
        )
    )
    m = re.search(r'id="cert-state" data-state="([a-z_]+)"', html)
    assert m is not None, html
    text = re.sub(r"<[^>]+>", "", html)
    return m.group(1), " ".join(text.split())


def test_the_tile_follows_the_renewal_state(tmp_path: Path, pki: DeviceCA) -> None:  # noqa: F811
    cfg = box_config(tmp_path, gateway=gateway_section(pki, 1))
    cfg.state_dir.mkdir(parents=True)
    box = make_box(pki, "0123456789abcdef", tmp_path)  # a 24 h certificate, as the gateway issues
    cfg.cert_path.write_bytes(box.cert.read_bytes())
    clock = Clock(0.0)
    renewal = CertificateRenewal(cfg, identity=None, uplink=None, clock=clock)  # type: ignore[arg-type]
    cert = renewal.schedule.cert
    assert cert is not None and renewal.schedule.next_at is not None

    clock.now = cert.not_before + 61
    state, text = _render(renewal, clock.now)
    assert state == "valid" and "valid" in text
    assert re.search(r"2[34] h \d+ min left", text), text  # hours and minutes, not "0 days"
    assert "0 days" not in text and "next renewal" in text

    clock.now = renewal.schedule.next_at + 1  # due: the loop is renewing
    state, text = _render(renewal, clock.now)
    assert state == "renewing" and "renewing" in text

    renewal.schedule.failed(clock.now, "renewal_failed")  # what the loop records on a failure
    state, text = _render(renewal, clock.now)
    assert state == "failed" and "renewal failing" in text
    assert "1 failed attempt" in text and "last error renewal_failed" in text

    clock.now = cert.not_after - 2 * H + 30
    state, text = _render(renewal, clock.now)
    assert state == "expiring" and "expiring soon" in text and "1 h 59 min left" in text

    clock.now = cert.not_after + 5 * 60
    state, text = _render(renewal, clock.now)
    assert state == "expired" and "expired 5 min ago" in text


@pytest.mark.parametrize("error", ["Bearer sk-live-SECRET-1234", "gateway said: <b>no</b>"])
def test_only_an_error_code_is_shown(tmp_path: Path, pki: DeviceCA, error: str) -> None:  # noqa: F811
    cfg = box_config(tmp_path, gateway=gateway_section(pki, 1))
    cfg.state_dir.mkdir(parents=True)
    box = make_box(pki, "0123456789abcdef", tmp_path)
    cfg.cert_path.write_bytes(box.cert.read_bytes())
    clock = Clock(0.0)
    renewal = CertificateRenewal(cfg, identity=None, uplink=None, clock=clock)  # type: ignore[arg-type]
    assert renewal.schedule.cert is not None
    clock.now = renewal.schedule.cert.not_before + 60
    renewal.schedule.failed(clock.now, error)
    state, text = _render(renewal, clock.now)
    assert state == "failed" and "last error error" in text
    assert "SECRET" not in text and "gateway said" not in text


def test_no_certificate(tmp_path: Path) -> None:
    snap = StatusSnapshot(
        box_id="b",
        ble_state="disabled",
        adapter=None,
        phones_connected=0,
        phones_enrolled=0,
        uplink_url=None,
        uplink_state="not configured",
        certificate=None,
        outbox_depth=0,
        cache_hit_rate=None,
        model_versions={},
        disk_used_bytes=1,
        disk_total_bytes=2,
        state_bytes=1,
    )
    assert certificate_view(snap, 0.0) is None
    html = (
        template_environment()
        .get_template("status_live.html")
        .render(s=snap, now=0.0, cert=None, totals={"requests": 0, "refusals": 0, "hits": 0}, charts=[])
    )
    assert 'data-state="missing"' in html and "edgebox box enroll" in html
