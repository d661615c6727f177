"""`BoxControl`: what an operator can do to a running box (contract 2; the admin page and the CLI).

Theory of operation: one small async facade over the daemon's parts, so the admin web page (its own
issue), the local control socket (`edgebox box invite|phones|revoke|docs ...`) and tests all act the
same way. Every call runs store work on the store's worker thread. The facade returns plain
dataclasses / dicts (JSON-able) and raises typed `EdgeboxError`s; it never returns secrets (the
pairing invite is the exception: it *is* the secret the operator shows on the QR, once).

- `status()`: box id, uptime, transports (BLE degraded when there is no adapter), uplink, breaker and
  certificate state, outbox counts, phones, live sessions, cache and document counts.
- `create_invite(ttl)`, `list_phones()`, `rename_phone()`, `revoke_phone()` (drops its live session
  at once via `BoxServer.drop_phone`).
- `add_documents(paths, progress)`, `list_documents()`, `remove_document()`.
- `prompt_log(limit, phone_id)`.
- `settings()`, `validate_settings(doc)`, `write_settings(doc)` (atomic replace of the TOML file;
  takes effect at the next start).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from edgebox.box.config import BoxConfig, parse_box_config, to_toml
from edgebox.errors import ConfigError, EdgeboxError
from edgebox.keyfile import write_atomic
from edgebox.session.invite import PairingInvite

if TYPE_CHECKING:
    from edgebox.box.daemon import BoxDaemon


class UnknownPhoneError(EdgeboxError):
    code = "phone_unknown"


class UnknownDocumentError(EdgeboxError):
    code = "document_unknown"


@dataclass(frozen=True, slots=True)
class PhoneInfo:
    phone_id: str
    name: str
    status: str  # enrolled | revoked | suspended | throttled
    created_at: float
    last_seen_at: float | None
    connected: bool


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    doc_id: int
    source: str
    title: str
    chunks: int
    created_at: float


@dataclass(frozen=True, slots=True)
class LogEntry:
    trace_id: str
    phone_id: str | None
    created_at: float
    decision: str
    model: str | None
    timings_ms: dict[str, float]
    prompt_text: str | None
    answer_text: str | None


Progress = Callable[[str, int, int], None]  # (file name, chunks done, chunks total)


class BoxControl:
    def __init__(self, daemon: BoxDaemon) -> None:
        self._d = daemon

    # -- status --------------------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        d = self._d
        store = d.store
        counts = await d.worker.call(
            lambda: {
                "phones": len(store.phones.list_phones()),
                "outbox": store.outbox.counts(),
                "cache_entries": store.cache.count(),
                "documents": len(store.documents.list_documents()),
                "prompt_log": store.prompt_log.count(),
            }
        )
        return {
            "box_id": d.identity.box_id_hex,
            "identity_source": d.state.identity_source,
            "uptime_s": round(time.monotonic() - d.started_monotonic, 1),
            "transports": dict(d.transports),
            "live_phones": d.server.live_phones(),
            "inflight": d.server.inflight(),
            "uplink": d.uplink_status(),
            "certificate": d.certificate_status(),
            **counts,
        }

    # -- phones --------------------------------------------------------------------------------
    async def create_invite(self, ttl: int | None = None) -> PairingInvite:
        d = self._d
        ttl_s = d.cfg.box.invite_ttl_s if ttl is None else ttl
        if not 30 <= ttl_s <= 86_400:
            raise ConfigError("invite ttl must be within 30..86400 seconds")
        ident = d.identity
        return await d.worker.call(
            d.registry.create_invite, ident.box_id, ident.key_hash, time.time(), ttl=ttl_s
        )

    async def list_phones(self) -> list[PhoneInfo]:
        d = self._d
        phones = await d.worker.call(d.store.phones.list_phones, include_revoked=True)
        live = set(d.server.live_phones())
        out = []
        for ph in phones:
            status = "revoked" if ph.revoked else d.standing_of(ph.phone_id)
            out.append(
                PhoneInfo(ph.phone_id, ph.name, status, ph.created_at, ph.last_seen_at, ph.phone_id in live)
            )
        return out

    async def rename_phone(self, phone_id: str, name: str) -> None:
        d = self._d
        if not name.strip() or len(name) > 64:
            raise ConfigError("a phone name must be 1-64 characters")
        from edgebox.store.errors import NotFoundError

        try:
            await d.worker.call(d.store.phones.rename, phone_id, name.strip())
        except NotFoundError:
            raise UnknownPhoneError(f"no enrolled phone {phone_id}") from None

    async def revoke_phone(self, phone_id: str) -> int:
        """Revoke and drop its live sessions; returns how many live sessions were dropped."""
        d = self._d
        if not await d.worker.call(d.registry.revoke, phone_id):
            raise UnknownPhoneError(f"no enrolled phone {phone_id}")
        return await d.server.drop_phone(phone_id)

    # -- documents -----------------------------------------------------------------------------
    async def add_documents(
        self,
        paths: Sequence[Path],
        progress: Progress | None = None,
        *,
        sources: Sequence[str] | None = None,
        replace: bool = True,
    ) -> list[DocumentInfo]:
        """Add (or replace, same source) documents; `progress(file, chunks done, total)` is called
        from the store thread while chunking and embedding."""
        docs = await self._d.library.add_files(
            list(paths), progress=progress, sources=sources, replace=replace
        )
        return [_doc_info(doc) for doc in docs]

    async def list_documents(self) -> list[DocumentInfo]:
        docs = await self._d.worker.call(self._d.store.documents.list_documents)
        return [_doc_info(doc) for doc in docs]

    async def remove_document(self, ref: str) -> DocumentInfo:
        """Remove by id or by source (the path it was added from)."""
        store = self._d.store

        def remove() -> DocumentInfo | None:
            doc = store.documents.get(int(ref)) if ref.isdigit() else store.documents.find_by_source(ref)
            if doc is None:
                return None
            store.documents.delete_document(doc.doc_id)
            return _doc_info(doc)

        info = await self._d.worker.call(remove)
        if info is None:
            raise UnknownDocumentError(f"no document {ref[:200]!r}")
        return info

    # -- prompt log ----------------------------------------------------------------------------
    async def prompt_log(self, limit: int = 100, phone_id: str | None = None) -> list[LogEntry]:
        rows = await self._d.worker.call(self._d.store.prompt_log.recent, limit=limit, phone_id=phone_id)
        return [
            LogEntry(
                r.trace_id,
                r.phone_id,
                r.created_at,
                r.decision,
                r.model,
                dict(r.timings_ms),
                r.prompt_text,
                r.answer_text,
            )
            for r in rows
        ]

    # -- certificate ---------------------------------------------------------------------------
    async def enroll(self, gateway_url: str, ca_file: Path, token: str) -> dict[str, Any]:
        """First certificate with a one-time token (contract 7); installed in the running uplink."""
        from edgebox.box.renewal import enroll, read_cert

        d = self._d
        info = await enroll(gateway_url, ca_file, token, d.identity, d.cfg.cert_path)
        if d.renewal is not None:
            d.renewal.schedule.set_certificate(read_cert(d.cfg.cert_path))
            await d.uplink.reload()
        return {"not_after": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info.not_after))}

    # -- settings ------------------------------------------------------------------------------
    def _admin(self) -> Any:
        admin = self._d.admin
        if admin is None:
            raise EdgeboxError(
                "the admin page is not enabled on this box ([admin] enabled)", code="admin_disabled"
            )
        return admin

    def admin_fingerprint(self) -> str:
        """SHA-256 fingerprint of the certificate the running admin page serves."""
        return str(self._admin().certificate.fingerprint)

    def admin_setup_code(self, ttl_s: int) -> str:
        """A new one-time set-up code for the admin page, made by the daemon (its files, its user)."""
        if not 60 <= ttl_s <= 7 * 86400:
            raise ConfigError("ttl must be between 60 s and 7 days")
        return str(self._admin().setup_codes.create(ttl_s))

    def settings(self) -> dict[str, Any]:
        doc: dict[str, Any] = msgspec.to_builtins(self._d.cfg)
        return doc

    def validate_settings(self, doc: dict[str, Any]) -> BoxConfig:
        return parse_box_config(doc, origin="settings")

    def write_settings(self, doc: dict[str, Any]) -> BoxConfig:
        """Validate, then replace the config file atomically (temp file, fsync, rename)."""
        cfg = self.validate_settings(doc)
        path = self._d.config_path
        if path is None:
            raise ConfigError("this box was started without a config file; nothing to write")
        write_atomic(path, to_toml(cfg).encode(), 0o640)
        return cfg


def _doc_info(doc: Any) -> DocumentInfo:
    return DocumentInfo(doc.doc_id, doc.source, doc.title, doc.chunk_count, doc.created_at)


def as_json(obj: Any) -> Any:
    """Dataclasses -> dicts for the control socket."""
    if isinstance(obj, list):
        return [as_json(o) for o in obj]
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    return obj
