"""Running the admin page: certificate, records, set-up code import, listener, aiohttp runner.

Theory of operation: `AdminService(backend, store_db, admin_dir, ...)` gathers what the page needs
from the box state -- the admin records in the encrypted store, the set-up code file (importing a
code left on the boot partition once, then deleting that file), the TLS certificate -- and
`start()` serves `AdminApp` over HTTPS on the socket systemd passed (`LISTEN_FDS`, fd named
`admin`) or on the configured host and port. `stop()` closes the listener and waits for requests
in flight. The box daemon owns one of these when `[admin] enabled`; tests and
`edgebox box admin serve` start one directly.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from edgebox.admin.app import AdminApp, AdminConfig
from edgebox.admin.backend import AdminBackend
from edgebox.admin.listen import activated_socket, bind_socket
from edgebox.admin.records import AdminRecords, SetupCodes
from edgebox.admin.tls import AdminCertificate, ensure_certificate
from edgebox.log import get_logger
from edgebox.store.db import Database

log = get_logger("edgebox.admin.service")

DEFAULT_BOOT_SETUP_FILE = Path("/boot/firmware/edgebox-admin-setup.txt")


def admin_dir(state_dir: Path) -> Path:
    return state_dir / "admin"


@dataclass(frozen=True)
class ListenConfig:
    host: str = "0.0.0.0"  # noqa: S104 (the branch LAN is where the manager's phone or laptop is)
    port: int = 8443


class AdminService:
    def __init__(
        self,
        backend: AdminBackend,
        db: Database,
        state_dir: Path,
        *,
        config: AdminConfig | None = None,
        boot_setup_file: Path | None = DEFAULT_BOOT_SETUP_FILE,
        clock: Callable[[], float] = time.time,
        tls_names: list[str] | None = None,
    ) -> None:
        directory = admin_dir(state_dir)
        self.records = AdminRecords(db, clock=clock)
        self.setup_codes = SetupCodes(directory, clock=clock)
        if not self.records.has_password():
            self.setup_codes.import_boot_file(boot_setup_file)
        self.certificate: AdminCertificate = ensure_certificate(directory, tls_names)
        self.app = AdminApp(backend, self.records, self.setup_codes, config, clock=clock)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.socket_activated = False

    async def start(self, listen: ListenConfig | None = None, *, sock: socket.socket | None = None) -> int:
        """Serve; returns the port. Socket order: `sock`, then systemd's `admin` fd, then `listen`."""
        chosen = sock or activated_socket("admin")
        activated = self.socket_activated = chosen is not None and sock is None
        if chosen is None:
            cfg = listen or ListenConfig()
            chosen = bind_socket(cfg.host, cfg.port)
        self._runner = web.AppRunner(self.app.web_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.SockSite(self._runner, chosen, ssl_context=self.certificate.ssl_context())
        await site.start()
        self.port = int(chosen.getsockname()[1])
        log.info(
            "admin_listening",
            port=self.port,
            socket_activated=activated,
            fingerprint=self.certificate.fingerprint,
        )
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
