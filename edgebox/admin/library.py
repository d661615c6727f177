"""`AdminBackend` implemented directly over the library: store, phone registry, a `BoxServer`.

Theory of operation: this is what the admin page runs on when it is not handed the daemon's
`control` facade (development, tests): every call goes to the real components -- the SQLCipher
`Store` (in a worker thread: SQLite calls block), the `PhoneRegistry` (pairing invites are the
same single-use, hashed secrets the session server checks), the live `BoxServer` (connected
phones; revoke drops the phone's sessions at once) and the TOML config file (settings).

Documents: an upload is checked (type, size, PDF magic), read and cut into passages by the box's own
document reader (`edgebox.box.library`: pypdf for PDF, UTF-8 text and markdown), embedded in batches
by the injected `embed` function (the local MiniLM embedder) and stored as one document in one
transaction; `progress` is called at each step
so the page can show it. Nothing about a document's text is logged.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from edgebox.admin import settings as settings_mod
from edgebox.admin.backend import (
    Activity,
    CertificateInfo,
    DocumentProgress,
    DocumentView,
    InvalidInput,
    Invite,
    InviteState,
    InviteStatus,
    LogQuery,
    LogRow,
    NotFound,
    PhoneView,
    ProgressCallback,
    SettingField,
    SettingValue,
    StatusSnapshot,
)
from edgebox.box.identity import BoxIdentity
from edgebox.box.registry import PhoneRegistry
from edgebox.box.server import BoxServer
from edgebox.errors import EdgeboxError
from edgebox.log import get_logger
from edgebox.store.documents import ChunkInput
from edgebox.store.errors import InvalidInputError, NotFoundError
from edgebox.store.store import Store

log = get_logger("edgebox.admin.library")

HOUR = 3600.0
CHUNK_CHARS = 900  # the box's [documents] defaults
CHUNK_OVERLAP = 150
EMBED_BATCH = 16
MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
REFUSAL_DECISIONS = frozenset({"block", "blocked", "refuse", "refused", "reject", "rejected", "deny"})
CACHE_DECISIONS = frozenset({"cached", "cache_hit", "cache"})

Embed = Callable[[Sequence[str]], Any]  # -> array (n, dim)


@dataclass
class BleInfo:
    state: str
    adapter: str | None = None


UPLOAD_SUFFIXES = (".pdf", ".txt", ".text", ".md", ".markdown")
UPLOAD_SOURCE = "admin-upload"  # document source of an upload: admin-upload/<file name>


def check_upload(filename: str, data: bytes) -> str:
    """The safe base name of an upload, or a typed refusal the page shows (type, size, PDF magic)."""
    name = os.path.basename(filename.replace("\\", "/"))[:200] or "document"
    if Path(name).suffix.lower() not in UPLOAD_SUFFIXES:
        raise InvalidInput("upload a PDF (.pdf), text (.txt) or markdown (.md) file")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InvalidInput(f"documents are limited to {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB")
    if name.lower().endswith(".pdf") and not data.startswith(b"%PDF-"):
        raise InvalidInput("the file is not a PDF")
    return name


def read_upload(name: str, data: bytes) -> tuple[str, str]:
    """(title, text) of an upload, through the box's document reader (`edgebox.box.library`): the
    bytes go to a private temporary file under their own name, which is removed afterwards."""
    from edgebox.box.library import extract_text

    folder = Path(tempfile.mkdtemp(prefix="edgebox-upload-"))
    try:
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            return extract_text(path, max_bytes=MAX_DOCUMENT_BYTES)
        except EdgeboxError as exc:
            raise InvalidInput(str(exc)) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _dir_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


def model_versions(models_dir: Path | None) -> dict[str, str]:
    if models_dir is None:
        return {}
    from edgebox.models.errors import ModelError
    from edgebox.models.manifest import Manifest

    try:
        manifest = Manifest.load(models_dir)
    except ModelError:
        return {"models": "not installed"}
    out: dict[str, str] = {}
    for name, section in sorted(manifest.data.items()):
        if isinstance(section, dict) and isinstance(section.get("model"), str):
            out[name] = section["model"][:96]
    out["build"] = manifest.input_hash[:12] or "unknown"
    return out


# -- store queries both backends share (the daemon's facade has no 24 h view or log filter) ----------


def cache_hit_rate(store: Store, now: float) -> float | None:
    row = store.db.query_one(
        "SELECT count(*), sum(decision IN ('cached', 'cache_hit', 'cache')) FROM prompt_log "
        "WHERE created_at >= ?",
        (now - 24 * HOUR,),
    )
    total, hits = (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)
    return (hits / total) if total else None


def activity_of(store: Store, now: float) -> Activity:
    start = (now // HOUR) * HOUR - 23 * HOUR
    requests, refusals, hits = [0] * 24, [0] * 24, [0] * 24
    for at, decision in store.db.query_all(
        "SELECT created_at, decision FROM prompt_log WHERE created_at >= ?", (start,)
    ):
        i = int((at - start) // HOUR)
        if not 0 <= i < 24:
            continue
        requests[i] += 1
        if decision in REFUSAL_DECISIONS:
            refusals[i] += 1
        elif decision in CACHE_DECISIONS:
            hits[i] += 1
    return Activity(start, HOUR, requests, refusals, hits)


def invite_state_of(store: Store, invite_id: int, now: float) -> InviteState:
    row = store.pairing.get(invite_id)
    if row is None:
        return InviteState(InviteStatus.unknown)
    if row.used_at is not None:
        phone = store.phones.get(row.phone_id) if row.phone_id else None
        return InviteState(InviteStatus.paired, row.expires_at, row.phone_id, phone.name if phone else None)
    if row.locked_at is not None:
        return InviteState(InviteStatus.locked, row.expires_at)
    if row.expires_at <= now:
        return InviteState(InviteStatus.expired, row.expires_at)
    return InviteState(InviteStatus.pending, row.expires_at)


def prompt_log_of(store: Store, q: LogQuery) -> list[LogRow]:
    rows = store.db.query_all(
        "SELECT trace_id, phone_id, created_at, decision, model, timings_json FROM prompt_log "
        "WHERE (? IS NULL OR phone_id = ?) AND (? IS NULL OR decision = ?) "
        "AND (? IS NULL OR trace_id = ?) "
        "ORDER BY created_at DESC, entry_id DESC LIMIT ?",
        (
            q.phone_id,
            q.phone_id,
            q.decision,
            q.decision,
            q.trace_id,
            q.trace_id,
            max(1, min(q.limit, 100_000)),
        ),
    )
    return [LogRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]


def read_certificate(path: Path | None) -> CertificateInfo | None:
    if path is None:
        return None
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None
    return CertificateInfo(cert.subject.rfc4514_string()[:120], cert.not_valid_after_utc.timestamp())


class LibraryBackend:
    def __init__(
        self,
        *,
        store: Store,
        identity: BoxIdentity,
        registry: PhoneRegistry,
        server: BoxServer | None,
        state_dir: Path,
        config_path: Path,
        embed: Embed | None = None,
        models_dir: Path | None = None,
        ble: Callable[[], BleInfo] | None = None,
        uplink_url: str | None = None,
        uplink_state: Callable[[], str] | None = None,
        client_cert: Path | None = None,
        fields: Sequence[SettingField] = settings_mod.DEFAULT_FIELDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.identity = identity
        self.registry = registry
        self.server = server
        self.state_dir = state_dir
        self.config_path = config_path
        self.embed = embed
        self.models_dir = models_dir
        self._ble = ble
        self._uplink_url = uplink_url
        self._uplink_state = uplink_state
        self.client_cert = client_cert
        self._fields = tuple(fields)
        self._clock = clock
        self._config_lock = asyncio.Lock()

    # -- status --------------------------------------------------------------------------------

    def _status_sync(self) -> StatusSnapshot:
        now = self._clock()
        counts = self.store.outbox.counts()
        depth = int(counts.get("pending", 0)) + int(counts.get("inflight", 0))
        disk = shutil.disk_usage(self.state_dir)
        ble = self._ble() if self._ble else BleInfo("not used (socket transport)")
        url = self._uplink_url
        if url is None:
            url = str(settings_mod.read_values(self.config_path, self._fields).get("gateway.url", "")) or None
        return StatusSnapshot(
            box_id=self.identity.box_id_hex,
            ble_state=ble.state,
            adapter=ble.adapter,
            phones_connected=sum(self.server.connected_phones().values()) if self.server else 0,
            phones_enrolled=len(self.store.phones.list_phones()),
            uplink_url=url,
            uplink_state=self._uplink_state()
            if self._uplink_state
            else ("configured" if url else "not configured"),
            certificate=read_certificate(self.client_cert),
            outbox_depth=depth,
            cache_hit_rate=cache_hit_rate(self.store, now),
            model_versions=model_versions(self.models_dir),
            disk_used_bytes=disk.used,
            disk_total_bytes=disk.total,
            state_bytes=_dir_bytes(self.state_dir),
        )

    async def status(self) -> StatusSnapshot:
        return await asyncio.to_thread(self._status_sync)

    async def activity(self, now: float) -> Activity:
        return await asyncio.to_thread(activity_of, self.store, now)

    # -- pairing ---------------------------------------------------------------------------------

    async def create_invite(self, ttl_s: int) -> Invite:
        ident = self.identity
        invite = await asyncio.to_thread(
            self.registry.create_invite, ident.box_id, ident.key_hash, self._clock(), ttl_s
        )
        return Invite(int.from_bytes(invite.secret_id, "big"), invite.encode(), float(invite.expires_at))

    async def invite_state(self, invite_id: int) -> InviteState:
        return await asyncio.to_thread(invite_state_of, self.store, invite_id, self._clock())

    # -- phones ------------------------------------------------------------------------------------

    def _phones_sync(self) -> list[PhoneView]:
        live = self.server.connected_phones() if self.server else {}
        return [
            PhoneView(p.phone_id, p.name, p.created_at, p.last_seen_at, p.revoked_at, live.get(p.phone_id, 0))
            for p in self.store.phones.list_phones(include_revoked=True)
        ]

    async def phones(self) -> list[PhoneView]:
        return await asyncio.to_thread(self._phones_sync)

    async def rename_phone(self, phone_id: str, name: str) -> PhoneView:
        try:
            await asyncio.to_thread(self.store.phones.rename, phone_id, name)
        except NotFoundError:
            raise NotFound("no such active phone") from None
        except InvalidInputError as exc:
            raise InvalidInput(str(exc)) from None
        for p in await self.phones():
            if p.phone_id == phone_id:
                return p
        raise NotFound("no such phone")

    async def revoke_phone(self, phone_id: str) -> int:
        if not await asyncio.to_thread(self.registry.revoke, phone_id):
            raise NotFound("no such phone")
        return await self.server.drop_phone(phone_id) if self.server else 0

    # -- documents ----------------------------------------------------------------------------------

    async def documents(self) -> list[DocumentView]:
        docs = await asyncio.to_thread(self.store.documents.list_documents)
        return [DocumentView(d.doc_id, d.title, d.source, d.chunk_count, d.created_at) for d in docs]

    async def add_document(
        self, filename: str, content_type: str, data: bytes, progress: ProgressCallback
    ) -> DocumentView:
        if self.embed is None:
            raise InvalidInput("local models are not installed: documents cannot be embedded")
        from edgebox.box.library import chunk_text

        name = check_upload(filename, data)
        progress(DocumentProgress("reading", 0, 1))
        title, text = await asyncio.to_thread(read_upload, name, data)
        progress(DocumentProgress("chunking", 1, 1))
        chunks = chunk_text(text, size=CHUNK_CHARS, overlap=CHUNK_OVERLAP)
        vectors: list[Any] = []
        for i in range(0, len(chunks), EMBED_BATCH):
            progress(DocumentProgress("embedding", i, len(chunks)))
            batch = chunks[i : i + EMBED_BATCH]
            vectors.extend(await asyncio.to_thread(self.embed, batch))
        progress(DocumentProgress("storing", len(chunks), len(chunks)))
        inputs = [ChunkInput(t, v) for t, v in zip(chunks, vectors, strict=True)]
        try:
            doc = await asyncio.to_thread(
                self.store.documents.add_document, f"{UPLOAD_SOURCE}/{name}", title, inputs, replace=True
            )
        except InvalidInputError as exc:
            raise InvalidInput(str(exc)) from None
        progress(DocumentProgress("done", len(chunks), len(chunks)))
        log.info("document_added", doc=doc.doc_id, chunks=doc.chunk_count)
        return DocumentView(doc.doc_id, doc.title, doc.source, doc.chunk_count, doc.created_at)

    async def remove_document(self, doc_id: int) -> bool:
        return await asyncio.to_thread(self.store.documents.delete_document, doc_id)

    # -- prompt log -----------------------------------------------------------------------------------

    async def prompt_log(self, query: LogQuery) -> list[LogRow]:
        return await asyncio.to_thread(prompt_log_of, self.store, query)

    # -- settings --------------------------------------------------------------------------------------

    def setting_fields(self) -> Sequence[SettingField]:
        return self._fields

    async def settings(self) -> dict[str, SettingValue]:
        return await asyncio.to_thread(settings_mod.read_values, self.config_path, self._fields)

    async def write_settings(self, values: Mapping[str, SettingValue]) -> None:
        async with self._config_lock:

            def write() -> None:
                try:
                    text = self.config_path.read_text(encoding="utf-8")
                except FileNotFoundError:
                    text = ""
                settings_mod.write_atomically(self.config_path, settings_mod.update_toml(text, values))

            await asyncio.to_thread(write)
