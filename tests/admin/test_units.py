"""The admin page's sans-I/O pieces and file handling, on injected clocks and real files."""

from __future__ import annotations

import datetime as dt
import os
import socket
import stat
import tomllib
from pathlib import Path

import pytest

from edgebox.admin import charts, settings
from edgebox.admin.app import _csv_cell
from edgebox.admin.backend import SettingsInvalid
from edgebox.admin.listen import activated_socket
from edgebox.admin.records import AdminRecords, SetupCodes, check_new_password
from edgebox.admin.security import LoginThrottle, SessionPolicy, SessionTable, ThrottlePolicy
from edgebox.admin.tls import RENEW_BEFORE_S, ensure_certificate, read_fingerprint
from edgebox.store import Store
from edgebox.store.keys import DatabaseKey


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_sessions_idle_absolute_and_anonymous_timeouts() -> None:
    table = SessionTable(SessionPolicy(idle_timeout_s=60, absolute_timeout_s=300, anonymous_timeout_s=30))
    token, s = table.create(0, authenticated=True, source="a")
    assert table.lookup(token, 59) is s
    assert table.lookup(token, 59 + 59, touch=False) is s  # a poll does not refresh the idle timer
    assert table.lookup(token, 59 + 60) is None  # idle since 59
    token, s = table.create(0, authenticated=True, source="a")
    for t in range(50, 300, 50):
        assert table.lookup(token, t) is s
    assert table.lookup(token, 300) is None  # absolute limit even when active
    anon, _ = table.create(0, authenticated=False, source="a")
    assert table.lookup(anon, 29) is not None and table.lookup(anon, 30) is None
    assert table.lookup("forged", 0) is None and table.lookup(None, 0) is None


def test_session_table_keeps_only_token_digests_and_is_bounded() -> None:
    table = SessionTable(SessionPolicy(max_sessions=8))
    token, _ = table.create(0, authenticated=True, source="admin")
    for _ in range(50):
        table.create(1, authenticated=False, source="flood")
    assert len(table._by_digest) <= 8
    assert table.lookup(token, 2) is not None  # anonymous floods evict anonymous sessions first
    assert all(token.encode() not in d for d in table._by_digest)
    table.end_all()
    assert table.lookup(token, 2) is None


def test_csrf_tokens_are_per_session_and_compared_exactly() -> None:
    table = SessionTable()
    _, a = table.create(0, authenticated=True, source="x")
    _, b = table.create(0, authenticated=True, source="x")
    assert a.csrf != b.csrf and len(a.csrf) >= 40
    assert a.check_csrf(a.csrf) and not a.check_csrf(b.csrf)
    assert not a.check_csrf(None) and not a.check_csrf("") and not a.check_csrf(a.csrf[:-1])


def test_throttle_locks_a_source_out_then_lets_it_back() -> None:
    th = LoginThrottle(ThrottlePolicy(max_failures=3, window_s=100, lockout_s=50, global_per_minute=1000))
    assert th.check("a", 0).allowed
    assert not th.failed("a", 0) and not th.failed("a", 1)
    assert th.failed("a", 2)  # third failure in the window locks
    v = th.check("a", 10)
    assert not v.allowed and v.reason == "locked" and v.retry_after_s == pytest.approx(42)
    assert th.check("b", 10).allowed  # another source is not locked
    assert th.check("a", 52).allowed
    # failures outside the window do not add up
    th.failed("c", 0)
    th.failed("c", 1)
    assert not th.failed("c", 200)
    th.succeeded("c")
    assert not th.locked("c", 201)


def test_throttle_global_budget_bounds_guessing_from_many_addresses() -> None:
    th = LoginThrottle(ThrottlePolicy(global_per_minute=5))
    assert all(th.check(f"10.0.0.{i}", 0).allowed for i in range(5))
    v = th.check("10.0.0.99", 1)
    assert not v.allowed and v.reason == "busy"
    assert th.check("10.0.0.99", 61).allowed


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "box.db", DatabaseKey.generate(), create=True)
    yield s  # type: ignore[misc]
    s.close()


def test_password_is_argon2id_and_verified(store: Store) -> None:
    clock = Clock()
    records = AdminRecords(store.db, clock=clock)
    assert not records.has_password() and not records.verify_password("anything at all")
    records.set_password("a long enough password")
    assert records.has_password()
    assert records.verify_password("a long enough password")
    assert not records.verify_password("a long enough passworD")
    stored = store.db.query_one("SELECT password_hash FROM admin_account")[0]
    assert stored.startswith("$argon2id$")
    # the tables survive a reopen of the same store (idempotent creation)
    AdminRecords(store.db)
    assert AdminRecords(store.db).verify_password("a long enough password")
    with pytest.raises(Exception, match="do not match"):
        check_new_password("a long enough password", "another one")
    with pytest.raises(Exception, match="repetitive"):
        check_new_password("aaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaa")


def test_audit_entries_are_stored_encrypted_and_truncated(store: Store, tmp_path: Path) -> None:
    records = AdminRecords(store.db, clock=Clock())
    records.audit("phone_revoked", source="192.0.2.7", target="phone-1", detail="x" * 2000)
    (e,) = records.audit_entries()
    assert (e.action, e.source, e.target, e.outcome, len(e.detail)) == (
        "phone_revoked",
        "192.0.2.7",
        "phone-1",
        "ok",
        500,
    )
    store.db.checkpoint("TRUNCATE")
    assert b"phone_revoked" not in (tmp_path / "box.db").read_bytes()  # SQLCipher: nothing in the clear


def test_setup_code_single_use_expiry_and_private_file(tmp_path: Path) -> None:
    clock = Clock()
    codes = SetupCodes(tmp_path / "admin", clock=clock)
    assert not codes.pending() and not codes.consume("anything")
    code = codes.create(ttl_s=60)
    assert codes.pending()
    assert stat.S_IMODE(codes.path.stat().st_mode) == 0o600
    assert code not in codes.path.read_text() and code.replace("-", "") not in codes.path.read_text()
    assert not codes.consume("WRONG-WRONG-WRONG")
    assert codes.consume(code.lower())
    assert not codes.consume(code)  # single use
    code = codes.create(ttl_s=60)
    clock.t += 61
    assert not codes.pending() and not codes.consume(code)
    first = codes.create()
    second = codes.create()
    assert not codes.consume(first) and codes.consume(second)  # a new code replaces the old one


def test_boot_partition_code_is_read_once_and_deleted(tmp_path: Path) -> None:
    boot = tmp_path / "boot" / "edgebox-admin-setup.txt"
    boot.parent.mkdir()
    boot.write_text("PROVISIONED-CODE-1234\n")
    codes = SetupCodes(tmp_path / "admin")
    assert codes.import_boot_file(boot)
    assert not boot.exists()
    assert not codes.import_boot_file(boot)
    assert codes.consume("provisioned-code-1234")
    boot.write_text("short")
    assert not codes.import_boot_file(boot) and not boot.exists()  # too short: ignored, still deleted
    assert not codes.import_boot_file(None)


def test_certificate_is_kept_renewed_near_expiry_and_key_private(tmp_path: Path) -> None:
    a = ensure_certificate(tmp_path, ["box.local"])
    assert stat.S_IMODE(a.key_path.stat().st_mode) == 0o600
    assert ensure_certificate(tmp_path).fingerprint == a.fingerprint == read_fingerprint(tmp_path)
    assert len(a.fingerprint.split(":")) == 32
    late = dt.datetime.fromtimestamp(a.not_after - RENEW_BEFORE_S + 60, dt.UTC)
    b = ensure_certificate(tmp_path, ["box.local"], now=late)
    assert b.fingerprint != a.fingerprint and b.not_after > a.not_after
    a.ssl_context()


def test_activated_socket_only_for_this_process_and_the_admin_name() -> None:
    pid = str(os.getpid())
    assert activated_socket("admin", {}) is None
    assert activated_socket("admin", {"LISTEN_PID": "1", "LISTEN_FDS": "1"}) is None
    assert (
        activated_socket("admin", {"LISTEN_PID": pid, "LISTEN_FDS": "1", "LISTEN_FDNAMES": "other"}) is None
    )
    assert activated_socket("admin", {"LISTEN_PID": pid, "LISTEN_FDS": "2"}) is None  # unnamed, ambiguous
    assert activated_socket("admin", {"LISTEN_PID": "x", "LISTEN_FDS": "1"}) is None


def test_update_toml_keeps_comments_adds_missing_and_refuses_ambiguity() -> None:
    text = (
        '# top\n[gateway]\nurl = "https://a.example"  # the gateway\n\n'
        "[quota]\n# q\nrequests_per_phone_per_hour = 5\n"
    )
    out = settings.update_toml(
        text,
        {
            "gateway.url": 'https://b.example/"x',
            "quota.tokens_per_phone_per_day": 7,
            "cache.similarity_threshold": 0.9,
        },
    )
    doc = tomllib.loads(out)
    assert doc["gateway"]["url"] == 'https://b.example/"x'
    assert doc["quota"] == {"requests_per_phone_per_hour": 5, "tokens_per_phone_per_day": 7}
    assert doc["cache"]["similarity_threshold"] == 0.9
    assert "# top" in out and "# the gateway" in out and "# q" in out
    with pytest.raises(SettingsInvalid):
        settings.update_toml("[quota]\nx = 1\nx = 2\n", {"quota.x": 3})
    with pytest.raises(SettingsInvalid):
        settings.update_toml('[gateway]\nurl = """\nhttps://a\n"""\n', {"gateway.url": "https://b"})


def test_validate_reports_every_bad_field() -> None:
    fields = settings.DEFAULT_FIELDS
    good = {f.name: "1" for f in fields} | {
        "gateway.url": "https://gw.example:8443",
        "cache.threshold": "0.9",
        "pipeline.quota_window_s": "3600",
        "pipeline.log_text": "on",
    }
    values = settings.validate(fields, good)
    assert values["pipeline.quota_tokens"] == 1 and values["gateway.url"] == "https://gw.example:8443"
    assert values["pipeline.log_text"] is True
    bad = good | {
        "gateway.url": "https://user:pw@gw.example",
        "pipeline.quota_tokens": "1e3",
        "pipeline.log_retention_days": "nan",
        "pipeline.injection_block_threshold": "-0.1",
    }
    with pytest.raises(SettingsInvalid) as e:
        settings.validate(fields, bad)
    assert set(e.value.problems) == {
        "gateway.url",
        "pipeline.quota_tokens",
        "pipeline.log_retention_days",
        "pipeline.injection_block_threshold",
    }
    assert "pw" not in str(e.value)


def test_write_atomically_replaces_and_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "box.toml"
    path.write_text("a = 1\n")
    path.chmod(0o640)
    settings.write_atomically(path, "a = 2\n")
    assert path.read_text() == "a = 2\n" and stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["box.toml"]


def test_chart_svg_has_no_style_or_script_and_one_bar_per_hour() -> None:
    svg = charts.bar_chart(
        [0, 3, 1] + [0] * 21, title="Requests <b>", colour="#123456", bucket_start=0, bucket_s=3600
    )
    assert svg.count("<rect") == 24 and "style" not in svg and "<script" not in svg
    assert "Requests &lt;b&gt;" in svg and "max 3/h" in svg


def test_csv_cells_cannot_become_formulas() -> None:
    assert _csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert _csv_cell("+1") == "'+1" and _csv_cell("@x") == "'@x" and _csv_cell("ok") == "ok"
    assert _csv_cell(None) == ""


def test_bind_fallback_is_a_listening_socket() -> None:
    from edgebox.admin.listen import bind_socket

    s = bind_socket("127.0.0.1", 0)
    try:
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    finally:
        s.close()


def test_invite_lifetime_defaults_agree() -> None:
    """One pairing-code lifetime everywhere (docs/admin.md: 10 min): the box daemon's config, the
    admin page's own default, the protocol default of the registry and CLI."""
    from edgebox.admin.app import AdminConfig
    from edgebox.box.config import parse_box_config
    from edgebox.session.invite import DEFAULT_TTL_SECONDS

    assert parse_box_config({}).box.invite_ttl_s == AdminConfig().invite_ttl_s == DEFAULT_TTL_SECONDS == 600
