"""The box's configuration: one TOML file, one strict msgspec Struct per section, every key defaulted.

Theory of operation: `load_box_config(path)` reads the TOML file (the shipped one is
`/etc/edgebox/box.toml`), rejects unknown keys and wrong types with a message that names the section
and key (never a value: a config file may sit next to secrets), then applies the cross-field checks a
type cannot express (flag <= block threshold, a gateway URL needs a CA file, ...). Each component gets
its own section object passed in (`cfg.pipeline`, `cfg.outbox`, ...); no component reads the file or
the environment itself. `BoxConfig()` with no file is a complete development default. The schema and
every default are documented in docs/box.md; `edgebox box config --check FILE` validates a file and
`edgebox box config --show` prints the effective configuration.

Paths that are empty strings mean "derive from `box.state_dir`" (see the `*_path` helpers), so a
provisioning step only has to set the state directory.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from edgebox.errors import ConfigError

Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Count = Annotated[int, msgspec.Meta(ge=1)]
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]

DEFAULT_CONFIG_PATH = Path("/etc/edgebox/box.toml")
CONFIG_ENV = "EDGEBOX_BOX_CONFIG"


def default_config_path(env: Mapping[str, str] | None = None, system: Path | None = None) -> Path | None:
    """The config file a command uses when no `--config` is given.

    `$EDGEBOX_BOX_CONFIG` when set; else the installed `/etc/edgebox/box.toml` when it exists (a
    real box: the commands then reach the daemon over the control socket that file names); else
    None, the development default (`./var/box`, key files). A file that exists but cannot be read
    (not root) still counts: loading it then says so, instead of silently using another box.
    """
    env = os.environ if env is None else env
    value = env.get(CONFIG_ENV)
    if value:
        return Path(value)
    path = DEFAULT_CONFIG_PATH if system is None else system
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return path
    return path


class BoxSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    state_dir: str = "var/box"
    # Development only: key files (db.key, identity.json) in the state dir when there is no
    # $CREDENTIALS_DIRECTORY. The shipped config never sets it; the unit never can.
    dev_key_files: bool = False
    control_socket: str = ""  # default <state_dir>/control.sock
    # Unix uids (besides root and the daemon's own) allowed on the control socket.
    control_uids: list[Annotated[int, msgspec.Meta(ge=0)]] = []
    invite_ttl_s: Annotated[int, msgspec.Meta(ge=30, le=86_400)] = 600  # = invite.DEFAULT_TTL_SECONDS
    print_invite: bool = False  # print a pairing QR on stdout at start (development)
    drain_timeout_s: Positive = 20.0  # SIGTERM: in-flight answers get this long, then go to the outbox


class BleSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    enabled: bool = True
    adapter: str = "hci0"
    name: str = ""  # advertised name; default "edgebox-<box id prefix>"
    adv_instances: Annotated[int, msgspec.Meta(ge=1, le=4)] = 1


class GatewaySection(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    url: str = ""  # empty: no uplink (cache and local documents only; waiting requests queue)
    ca_file: str = ""  # the device CA (pins the gateway)
    cert_file: str = ""  # default <state_dir>/box.crt (written by `box enroll`, renewed in place)
    # The client key is the box's identity key (credential `edgebox-identity`); a separate PEM key
    # file is for development only.
    key_file: str = ""
    model: str = "default"
    connect_timeout_s: Positive = 10.0
    # Time allowed between two reads of a streamed answer (not a total: a long stream is never cut).
    read_timeout_s: Positive = 60.0
    renew_at_fraction: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 2 / 3
    renew_jitter_fraction: Annotated[float, msgspec.Meta(ge=0, le=0.2)] = 0.05
    renew_retry_base_s: Positive = 30.0
    renew_retry_max_s: Positive = 1800.0
    expiring_warning_s: Positive = 4 * 3600.0


class PipelineSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    classifier: Literal["model", "rules"] = "model"
    injection_flag_threshold: Fraction = 0.5
    injection_block_threshold: Fraction = 0.8
    quota_tokens: Count = 20_000  # per phone, sliding window
    quota_window_s: Positive = 3600.0
    max_completion_tokens: Count = 1024
    # Per-phone standing on the box: strikes (blocked prompts, quota refusals, floods) in a window.
    strike_window_s: Positive = 60.0
    throttle_after_strikes: Count = 3
    suspend_after_strikes: Count = 5
    throttle_s: Positive = 10.0
    suspend_s: Positive = 900.0
    flood_requests: Count = 30  # more prompts than this within flood_window_s is one strike each
    flood_window_s: Positive = 10.0
    log_text: bool = False  # prompt log keeps prompt/answer text only when set
    log_retention_days: Positive = 30.0


class CacheSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    enabled: bool = True
    # Cosine similarity of MiniLM embeddings at or above which a cached answer is reused.
    # Chosen on paraphrase data (docs/box.md, "Choosing the cache threshold").
    threshold: Annotated[float, msgspec.Meta(ge=0.5, le=1.0)] = 0.95
    ttl_s: Positive = 86_400.0


class DocumentsSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # A local answer is given when the best passage scores at least this (or whenever the WAN is down).
    answer_threshold: Fraction = 0.55
    offline_threshold: Fraction = 0.30
    top_k: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3
    chunk_chars: Annotated[int, msgspec.Meta(ge=200, le=8000)] = 900
    chunk_overlap_chars: Annotated[int, msgspec.Meta(ge=0, le=2000)] = 150
    max_file_bytes: Count = 32 * 1024 * 1024


class OutboxSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    enabled: bool = True
    ttl_s: Positive = 24 * 3600.0
    max_attempts: Count = 20
    backoff_base_s: Positive = 2.0
    backoff_max_s: Positive = 300.0
    backoff_jitter: Annotated[float, msgspec.Meta(ge=0, le=0.5)] = 0.2
    breaker_failures: Count = 3  # consecutive failures that open the circuit
    breaker_open_s: Positive = 15.0  # then one probe after this long
    poll_s: Positive = 1.0
    lease_s: Positive = 300.0


class AdminSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    enabled: bool = False
    listen: str = "127.0.0.1"
    port: Port = 8443
    # A one-time set-up code the installer may leave on the boot partition (read once, deleted).
    setup_code_file: str = "/boot/firmware/edgebox-admin-setup.txt"
    idle_timeout_s: Annotated[float, msgspec.Meta(ge=60, le=86_400)] = 900.0  # admin session idle timeout


class TelemetrySection(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    otlp_endpoint: str = ""  # off by default


class DevSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    websocket: bool = False  # development transport for the web phone client; never in the shipped file
    websocket_listen: str = "127.0.0.1"
    websocket_port: Port = 8765
    socket: str = ""  # a Unix SEQPACKET socket for phones (development and tests)
    echo: bool = False  # with no gateway configured, echo the question (transport tests only)


class BoxConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    box: BoxSection = BoxSection()
    ble: BleSection = BleSection()
    gateway: GatewaySection = GatewaySection()
    pipeline: PipelineSection = PipelineSection()
    cache: CacheSection = CacheSection()
    documents: DocumentsSection = DocumentsSection()
    outbox: OutboxSection = OutboxSection()
    admin: AdminSection = AdminSection()
    telemetry: TelemetrySection = TelemetrySection()
    dev: DevSection = DevSection()

    # -- derived paths ------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return Path(self.box.state_dir)

    @property
    def control_socket_path(self) -> Path:
        return Path(self.box.control_socket) if self.box.control_socket else self.state_dir / "control.sock"

    @property
    def cert_path(self) -> Path:
        return Path(self.gateway.cert_file) if self.gateway.cert_file else self.state_dir / "box.crt"

    @property
    def key_path(self) -> Path | None:
        return Path(self.gateway.key_file) if self.gateway.key_file else None


_PATH_IN_ERROR = re.compile(r" - at `\$((?:\.[A-Za-z0-9_]+|\[\d+\])*)`$")


def _explain(exc: msgspec.ValidationError) -> str:
    raw = str(exc)
    m = _PATH_IN_ERROR.search(raw)
    where = m.group(1).lstrip(".") if m else ""
    head = raw[: m.start()] if m else raw
    if head.startswith("Object contains unknown field"):
        # The unknown key is the user's own text and safe to show, but keep it short.
        name = head.split("`")[1][:64] if "`" in head else "?"
        section = f"[{where}] " if where else ""
        return f"unknown key {section}{name!r} (see docs/box.md for the keys)"
    label = where.replace(".", " ") if where else "(top level)"
    return f"{label}: {head}"


def _cross_checks(cfg: BoxConfig) -> None:
    p = cfg.pipeline
    if p.injection_flag_threshold > p.injection_block_threshold:
        raise ConfigError("box config invalid: pipeline injection_flag_threshold > injection_block_threshold")
    if p.throttle_after_strikes > p.suspend_after_strikes:
        raise ConfigError("box config invalid: pipeline throttle_after_strikes > suspend_after_strikes")
    if cfg.gateway.url:
        if not cfg.gateway.url.startswith("https://"):
            raise ConfigError("box config invalid: gateway url must start with https://")
        if not cfg.gateway.ca_file:
            raise ConfigError("box config invalid: gateway url is set but gateway ca_file is not")
    if cfg.gateway.renew_retry_base_s > cfg.gateway.renew_retry_max_s:
        raise ConfigError("box config invalid: gateway renew_retry_base_s > renew_retry_max_s")
    if cfg.outbox.backoff_base_s > cfg.outbox.backoff_max_s:
        raise ConfigError("box config invalid: outbox backoff_base_s > backoff_max_s")
    if cfg.documents.chunk_overlap_chars >= cfg.documents.chunk_chars:
        raise ConfigError("box config invalid: documents chunk_overlap_chars >= chunk_chars")
    if cfg.documents.offline_threshold > cfg.documents.answer_threshold:
        raise ConfigError("box config invalid: documents offline_threshold > answer_threshold")
    if 65534 in cfg.box.control_uids:
        # Under PrivateUsers=yes every unmapped user appears as the overflow uid: allowing it would
        # allow everyone on the box.
        raise ConfigError("box config invalid: box control_uids must not contain 65534 (nobody)")
    if not cfg.box.state_dir:
        raise ConfigError("box config invalid: box state_dir must not be empty")


def parse_box_config(data: dict[str, Any], *, origin: str = "box config") -> BoxConfig:
    try:
        cfg = msgspec.convert(data, BoxConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{origin} invalid: {_explain(exc)}") from None
    _cross_checks(cfg)
    return cfg


def load_box_config(path: Path | None = None) -> BoxConfig:
    """The defaults, overridden by the TOML file at `path` (if given)."""
    if path is None:
        return BoxConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"box config {path} does not exist") from None
    except (OSError, UnicodeDecodeError):
        raise ConfigError(f"cannot read box config {path}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"box config {path} is not valid TOML: {exc}") from None
    return parse_box_config(data, origin=f"box config {path}")


def to_toml(cfg: BoxConfig) -> str:
    """The configuration as a TOML document (every key, for `config --show` and atomic rewrites)."""
    doc = msgspec.to_builtins(cfg)
    lines: list[str] = []
    for section, values in doc.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    s = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def with_overrides(cfg: BoxConfig, **sections: dict[str, Any]) -> BoxConfig:
    """A copy with some keys replaced (CLI development flags), validated like a file."""
    doc = msgspec.to_builtins(cfg)
    for section, values in sections.items():
        doc.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    return parse_box_config(doc, origin="box config (with command-line flags)")
