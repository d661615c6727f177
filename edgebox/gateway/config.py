"""Gateway configuration: an embedded default, optionally overridden by a TOML file and CLI flags.

Theory of operation: one strict msgspec struct (unknown keys rejected, so a typo in a threshold is an
error, not a silently ignored setting). `GatewayConfig()` is the embedded default for a single
machine: in-memory quotas, sqlite revocation store next to the CA in ./var/pki, audit lines on
stderr. `--redis URL` switches quotas and revocations to Redis for any number of replicas.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

import msgspec

from edgebox.errors import ConfigError

Positive = Annotated[float, msgspec.Meta(gt=0)]
Count = Annotated[int, msgspec.Meta(ge=1)]


class AnomalyConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Per-device thresholds (edgebox.gateway.anomaly): phone-level ones throttle and then suspend one
    phone, box-level ones revoke the box; each verdict is audited and posted to `webhook_url`."""

    enabled: bool = True
    window_s: Positive = 60.0
    max_validation_failures: Count = 20
    max_blocked_injections: Count = 5
    max_identical_prompts: Count = 30
    rate_window_s: Positive = 10.0
    max_requests_per_rate_window: Count = 300
    phone_throttle_after: Count = 3  # bad events (validation failures + blocked) in window_s
    phone_throttle_s: Positive = 30.0
    phone_suspend_after: Count = 6
    phone_suspend_s: Positive = 86_400.0
    max_suspended_phones: Count = 3  # more phones suspended within phone_suspend_s: revoke the box
    webhook_url: str | None = None


class TelemetrySection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """OpenTelemetry: spans are always made (their ids are in the audit log); exported over OTLP/HTTP
    only when `otlp_endpoint` is set (e.g. "http://collector:4318")."""

    otlp_endpoint: str | None = None


class GatewayConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    listen_host: str = "127.0.0.1"
    listen_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8443
    pki_dir: str = "var/pki"
    server_cert: str | None = None  # default <pki_dir>/server.crt
    server_key: str | None = None  # default <pki_dir>/server.key
    redis_url: str | None = None
    upstream_url: str = "https://api.openai.com/v1"
    upstream_key_file: str | None = None
    upstream_key_credential: str = "upstream-key"  # systemd LoadCredential= name
    upstream_timeout_s: Positive = 120.0
    upstream_connections: Count = 256
    max_body_bytes: Count = 256 * 1024
    body_timeout_s: Positive = 10.0
    idle_timeout_s: Positive = 30.0  # idle keep-alive connections, and slow request headers
    quota_tokens: Count = 200_000
    quota_window_s: Positive = 3600.0
    quota_max_inflight: Count = 16  # unreconciled requests per device: bounds any quota overshoot
    default_max_tokens: Count = 1024
    classifier: str = "model"  # "model" (edgebox models build) or "rules" (built in)
    classifier_threads: Count = 2
    injection_flag_threshold: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5
    injection_block_threshold: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.8
    cert_lifetime_hours: Positive = 24.0
    revocation_sweep_s: Positive = 1.0
    audit_file: str = "-"  # "-" = stderr
    signer_socket: str | None = None  # the signing service (edgebox pki signer); None = CA key here (dev)
    max_connections: Count = 4096
    max_connections_per_source: Count = 256
    handshake_timeout_s: Positive = 3.0
    metrics_host: str = "127.0.0.1"
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] | None = None  # None = no /metrics
    idempotency_ttl_s: Positive = 86_400.0
    anomaly: AnomalyConfig = AnomalyConfig()
    telemetry: TelemetrySection = TelemetrySection()


def load_config(path: Path | None = None, **overrides: object) -> GatewayConfig:
    """The embedded default, then the TOML file (if any), then non-None overrides."""
    data: dict[str, object] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except OSError:
            raise ConfigError(f"cannot read gateway config {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"gateway config {path} is not valid TOML: {exc}") from None
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        cfg = msgspec.convert(data, GatewayConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"gateway config invalid: {exc}") from None
    if cfg.injection_flag_threshold > cfg.injection_block_threshold:
        raise ConfigError("gateway config invalid: injection_flag_threshold > injection_block_threshold")
    return cfg
