"""`AdminBackend` over the running box daemon (`BoxDaemon.control`, contract 2), and the daemon hook.

Theory of operation: the daemon's `BoxControl` facade is the operator interface shared with the
control socket; `DaemonBackend` adapts it to what the page shows. Phones, invites, revoke (which
drops the live session through `BoxServer.drop_phone`), documents (through the daemon's document
library: the same chunking and embedding the pipeline searches) and settings validation go through
the facade; the read-only views the facade does not have -- 24 h activity, invite state, the prompt
log filtered by decision or trace id -- are the shared store queries of `edgebox.admin.library`.
Uploaded bytes are written to a private temporary file in the state directory, handed to the
library, and removed. Settings are validated by the box's own config schema (so the page refuses
exactly what the daemon would refuse at start) and written with the comment-keeping atomic writer.

`start_admin(daemon)` is what `BoxDaemon.start` calls when `[admin] enabled`: it builds the
`AdminService` (records in the daemon's store, certificate and set-up codes under
`<state>/admin/`) and serves it on the systemd socket or `[admin] listen:port`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgebox.admin import settings as settings_mod
from edgebox.admin.backend import (
    Activity,
    DocumentProgress,
    DocumentView,
    InvalidInput,
    Invite,
    InviteState,
    LogQuery,
    LogRow,
    NotFound,
    PhoneView,
    ProgressCallback,
    SettingField,
    SettingsInvalid,
    SettingValue,
    StatusSnapshot,
)
from edgebox.admin.library import (
    UPLOAD_SOURCE,
    _dir_bytes,
    activity_of,
    cache_hit_rate,
    check_upload,
    invite_state_of,
    model_versions,
    prompt_log_of,
    read_certificate,
)
from edgebox.errors import EdgeboxError
from edgebox.log import get_logger

log = get_logger("edgebox.admin.daemon")


def _get(doc: Mapping[str, Any], name: str) -> Any:
    node: Any = doc
    for part in name.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


class DaemonBackend:
    def __init__(self, daemon: Any, *, models_dir: Path | None = None) -> None:
        self.d = daemon
        self.control = daemon.control
        self.models_dir = models_dir
        self._config_lock = asyncio.Lock()

    @property
    def _store(self) -> Any:
        return self.d.store

    @property
    def _state_dir(self) -> Path:
        return Path(self.d.cfg.state_dir)

    async def _in_store(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    # -- status ---------------------------------------------------------------------------------

    async def status(self) -> StatusSnapshot:
        st = await self.control.status()
        now = time.time()
        cfg = self.d.cfg
        transports: Mapping[str, str] = st.get("transports", {})
        ble = transports.get("ble", "disabled" if not cfg.ble.enabled else "starting")
        uplink: Mapping[str, Any] = st.get("uplink", {})
        if not uplink.get("configured"):
            uplink_state = "not configured"
        else:
            breaker = uplink.get("breaker")
            uplink_state = {"closed": "connected", "open": "unreachable", "half_open": "retrying"}.get(
                str(breaker), str(breaker or "configured")
            )
        outbox: Mapping[str, int] = st.get("outbox", {})
        disk = shutil.disk_usage(self._state_dir)
        return StatusSnapshot(
            box_id=str(st.get("box_id", "")),
            ble_state=ble,
            adapter=cfg.ble.adapter if cfg.ble.enabled else None,
            phones_connected=len(st.get("live_phones", ())),
            phones_enrolled=int(st.get("phones", 0)),
            uplink_url=cfg.gateway.url or None,
            uplink_state=uplink_state,
            certificate=await asyncio.to_thread(read_certificate, Path(cfg.cert_path)),
            outbox_depth=int(outbox.get("pending", 0)) + int(outbox.get("inflight", 0)),
            cache_hit_rate=await asyncio.to_thread(cache_hit_rate, self._store, now),
            model_versions=model_versions(self.models_dir),
            disk_used_bytes=disk.used,
            disk_total_bytes=disk.total,
            state_bytes=await asyncio.to_thread(_dir_bytes, self._state_dir),
            certificate_state=self.d.certificate_status() if self.d.renewal is not None else None,
        )

    async def activity(self, now: float) -> Activity:
        result: Activity = await self._in_store(activity_of, self._store, now)
        return result

    # -- pairing and phones ----------------------------------------------------------------------------

    async def create_invite(self, ttl_s: int) -> Invite:
        invite = await self.control.create_invite(ttl_s)
        return Invite(int.from_bytes(invite.secret_id, "big"), invite.encode(), float(invite.expires_at))

    async def invite_state(self, invite_id: int) -> InviteState:
        result: InviteState = await self._in_store(invite_state_of, self._store, invite_id, time.time())
        return result

    async def phones(self) -> list[PhoneView]:
        infos = {p.phone_id: p for p in await self.control.list_phones()}
        rows = await self._in_store(lambda: self._store.phones.list_phones(include_revoked=True))
        out = []
        for p in rows:
            info = infos.get(p.phone_id)
            standing = info.status if info is not None and info.status not in ("enrolled", "revoked") else ""
            connected = 1 if info is not None and info.connected else 0
            out.append(
                PhoneView(p.phone_id, p.name, p.created_at, p.last_seen_at, p.revoked_at, connected, standing)
            )
        return out

    async def rename_phone(self, phone_id: str, name: str) -> PhoneView:
        try:
            await self.control.rename_phone(phone_id, name)
        except EdgeboxError as exc:
            if exc.code in ("phone_unknown", "store_not_found"):
                raise NotFound("no such active phone") from None
            raise InvalidInput(str(exc)) from None
        for p in await self.phones():
            if p.phone_id == phone_id:
                return p
        raise NotFound("no such phone")

    async def revoke_phone(self, phone_id: str) -> int:
        try:
            dropped: int = await self.control.revoke_phone(phone_id)
        except EdgeboxError as exc:
            if exc.code == "phone_unknown":
                raise NotFound("no such phone") from None
            raise
        return dropped

    # -- documents --------------------------------------------------------------------------------------

    async def documents(self) -> list[DocumentView]:
        return [
            DocumentView(d.doc_id, d.title, d.source, d.chunks, d.created_at)
            for d in await self.control.list_documents()
        ]

    async def add_document(
        self, filename: str, content_type: str, data: bytes, progress: ProgressCallback
    ) -> DocumentView:
        name = check_upload(filename, data)
        uploads = self._state_dir / "admin" / "uploads"
        uploads.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder = Path(tempfile.mkdtemp(dir=uploads))  # the file keeps its own name: the title is its stem
        path = folder / name
        progress(DocumentProgress("reading", 0, 1))

        def write() -> None:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)

        def on_progress(_file: str, done: int, total: int) -> None:
            progress(DocumentProgress("embedding", done, total))

        try:
            await asyncio.to_thread(write)
            try:
                docs = await self.control.add_documents(
                    [path], on_progress, sources=[f"{UPLOAD_SOURCE}/{name}"]
                )
            except EdgeboxError as exc:
                raise InvalidInput(str(exc)) from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        doc = docs[0]
        progress(DocumentProgress("done", doc.chunks, doc.chunks))
        return DocumentView(doc.doc_id, name, doc.source, doc.chunks, doc.created_at)

    async def remove_document(self, doc_id: int) -> bool:
        try:
            await self.control.remove_document(str(doc_id))
        except EdgeboxError as exc:
            if exc.code == "document_unknown":
                return False
            raise
        return True

    async def prompt_log(self, query: LogQuery) -> list[LogRow]:
        result: list[LogRow] = await self._in_store(prompt_log_of, self._store, query)
        return result

    # -- settings -----------------------------------------------------------------------------------------

    def setting_fields(self) -> Sequence[SettingField]:
        return settings_mod.DEFAULT_FIELDS

    def _config_text(self) -> str:
        path = self.d.config_path
        if path is None:
            return ""
        try:
            return str(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return ""

    async def settings(self) -> dict[str, SettingValue]:
        running = self.control.settings()  # the config the daemon runs with (defaults filled in)
        text = await asyncio.to_thread(self._config_text)
        in_file = tomllib.loads(text) if text else {}
        out: dict[str, SettingValue] = {}
        for f in self.setting_fields():
            value = _get(in_file, f.name)
            if value is None:
                value = _get(running, f.name)
            if isinstance(value, str | int | float | bool):
                out[f.name] = value
        return out

    async def write_settings(self, values: Mapping[str, SettingValue]) -> None:
        path = self.d.config_path
        if path is None:
            raise SettingsInvalid({"config": "this box was started without a config file"})
        async with self._config_lock:
            text = await asyncio.to_thread(self._config_text)
            new_text = settings_mod.update_toml(text, values)
            try:
                self.control.validate_settings(tomllib.loads(new_text))
            except EdgeboxError as exc:
                raise SettingsInvalid({"config": str(exc)}) from None
            await asyncio.to_thread(settings_mod.write_atomically, Path(path), new_text)


async def start_admin(daemon: Any) -> Any:
    """Build and start the admin page for a running daemon (`[admin] enabled`); returns the service."""
    from edgebox.admin.app import AdminConfig
    from edgebox.admin.service import DEFAULT_BOOT_SETUP_FILE, AdminService, ListenConfig
    from edgebox.models.config import ModelsConfig

    cfg = daemon.cfg
    section = cfg.admin
    boot = getattr(section, "setup_code_file", None)
    backend = DaemonBackend(daemon, models_dir=ModelsConfig.from_env().models_dir)
    from edgebox.admin.security import SessionPolicy

    idle = float(getattr(section, "idle_timeout_s", 900.0))
    config = AdminConfig(invite_ttl_s=int(cfg.box.invite_ttl_s), session=SessionPolicy(idle_timeout_s=idle))
    service = AdminService(
        backend,
        daemon.store.db,
        Path(cfg.state_dir),
        config=config,
        boot_setup_file=Path(boot) if boot else DEFAULT_BOOT_SETUP_FILE,
    )
    await service.start(ListenConfig(section.listen, section.port))
    return service
