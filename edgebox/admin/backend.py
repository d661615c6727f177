"""What the admin page needs from the box: one small typed interface.

Theory of operation: the web app (`edgebox.admin.app`) talks to the box only through
`AdminBackend`. The box daemon's `BoxDaemon.control` facade satisfies it; `LibraryBackend`
(`edgebox.admin.library`) implements it directly over the store, the phone registry and a
`BoxServer`, so the page and its tests run against real components without the daemon. Every
method is async (a backend may do blocking store work in a thread). Values are plain frozen
dataclasses, already safe to show: no key material, no pairing secret except inside `Invite`
(whose payload is rendered into the QR code and nowhere else).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from edgebox.errors import EdgeboxError


class AdminError(EdgeboxError):
    """A request the admin page cannot carry out; the message is shown to the operator."""

    code = "admin_error"


class NotFound(AdminError):
    code = "admin_not_found"


class InvalidInput(AdminError):
    code = "admin_invalid_input"


class SettingsInvalid(InvalidInput):
    """Settings failed validation: `problems` maps "section.key" to a message for that field."""

    code = "admin_settings_invalid"

    def __init__(self, problems: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))
        self.problems = dict(problems)


@dataclass(frozen=True)
class CertificateInfo:
    subject: str
    not_after: float  # unix seconds


@dataclass(frozen=True)
class StatusSnapshot:
    box_id: str
    ble_state: str  # "advertising", "adapter off", "no adapter", "not used (socket transport)", ...
    adapter: str | None
    phones_connected: int
    phones_enrolled: int
    uplink_url: str | None
    uplink_state: str  # "connected", "unreachable", "not configured", ...
    certificate: CertificateInfo | None
    outbox_depth: int
    cache_hit_rate: float | None  # over the last 24 h, None when there were no requests
    model_versions: Mapping[str, str]
    disk_used_bytes: int
    disk_total_bytes: int
    state_bytes: int  # the box state directory (store, WAL, keys)
    # The renewal loop's view (edgebox.box.renewal `CertificateRenewal.status()`): state
    # (valid | renewal_due | expiring | expired | missing), failures, last_error (a code, never a
    # message), next_renewal. None where nothing renews (the development admin server).
    certificate_state: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Activity:
    """Per-hour counts over the last 24 h, oldest first (24 buckets; the last one is this hour)."""

    bucket_start: float
    bucket_s: float
    requests: Sequence[int]
    refusals: Sequence[int]
    cache_hits: Sequence[int]


@dataclass(frozen=True)
class Invite:
    invite_id: int
    payload: str  # the pairing code: holds the one-time secret. Rendered into the QR only.
    expires_at: float


class InviteStatus(StrEnum):
    pending = "pending"
    paired = "paired"
    expired = "expired"
    locked = "locked"
    unknown = "unknown"


@dataclass(frozen=True)
class InviteState:
    status: InviteStatus
    expires_at: float | None = None
    phone_id: str | None = None
    phone_name: str | None = None


@dataclass(frozen=True)
class PhoneView:
    phone_id: str
    name: str
    enrolled_at: float
    last_seen_at: float | None
    revoked_at: float | None
    connected: int  # live sessions now
    standing: str = ""  # "throttled" / "suspended" by the box's pipeline, else ""


@dataclass(frozen=True)
class DocumentView:
    doc_id: int
    title: str
    source: str
    chunks: int
    added_at: float


@dataclass(frozen=True)
class DocumentProgress:
    stage: str  # "reading", "chunking", "embedding", "storing", "done", "failed"
    done: int = 0
    total: int = 0
    message: str = ""


ProgressCallback = Callable[[DocumentProgress], None]


@dataclass(frozen=True)
class LogQuery:
    phone_id: str | None = None
    decision: str | None = None
    trace_id: str | None = None
    limit: int = 200


@dataclass(frozen=True)
class LogRow:
    trace_id: str
    phone_id: str | None
    created_at: float
    decision: str
    model: str | None
    timings_ms: Mapping[str, float] = field(default_factory=dict)


SettingValue = str | int | float | bool


@dataclass(frozen=True)
class SettingField:
    """One editable setting: where it lives in the config file, its type and bounds."""

    section: str
    key: str
    label: str
    kind: type[str] | type[int] | type[float] | type[bool]
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    default: SettingValue | None = None  # what the box uses when the file does not set it

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"


class AdminBackend(Protocol):
    async def status(self) -> StatusSnapshot: ...

    async def activity(self, now: float) -> Activity: ...

    async def create_invite(self, ttl_s: int) -> Invite: ...

    async def invite_state(self, invite_id: int) -> InviteState: ...

    async def phones(self) -> list[PhoneView]: ...

    async def rename_phone(self, phone_id: str, name: str) -> PhoneView: ...

    async def revoke_phone(self, phone_id: str) -> int:
        """Revoke and drop its live sessions at once; returns how many sessions were dropped."""
        ...

    async def documents(self) -> list[DocumentView]: ...

    async def add_document(
        self, filename: str, content_type: str, data: bytes, progress: ProgressCallback
    ) -> DocumentView: ...

    async def remove_document(self, doc_id: int) -> bool: ...

    async def prompt_log(self, query: LogQuery) -> list[LogRow]: ...

    def setting_fields(self) -> Sequence[SettingField]: ...

    async def settings(self) -> dict[str, SettingValue]:
        """Current values by "section.key"."""
        ...

    async def write_settings(self, values: Mapping[str, SettingValue]) -> None:
        """Validate (SettingsInvalid with per-field messages) and write the config file atomically."""
        ...
