"""`BoxDaemon`: the running box, from one config file to a serving, supervised process.

Theory of operation (contract 2). `BoxDaemon(cfg)` owns every long-lived part and starts them in
dependency order in `start()`:

1. the state (identity + encrypted store; credentials first, see state.py) and its worker thread;
2. the local models (embedder + injection classifier), loaded once and shared by the pipeline and the
   document library;
3. the uplink to the gateway (when `[gateway] url` is set) with its certificate, the outbox forwarder
   (store-and-forward, circuit breaker) and the certificate renewal loop;
4. the pipeline (`BoxPipeline`, the `Responder` the session server calls for every prompt) and the
   session server with its transports: BLE (reported `degraded` when there is no adapter, the box
   still serves the other transports), the development Unix socket, the development WebSocket, and
   any listeners a test passes in;
5. the local control socket (operator CLI) and, when enabled, the admin page;
6. `READY=1` to systemd, and the watchdog pings.

`run()` serves until SIGTERM/SIGINT, then `stop()`: `STOPPING=1`; stop accepting (every listener's
`stop_accepting()`: BLE stops advertising, the sockets stop listening; live links go on, a new prompt
on them gets `busy`), the outbox replay sends nothing new; in-flight answers finish for up to
`[box] drain_timeout_s` (a request that may wait is already in the durable outbox, so one cut off
then goes back to the queue and loses nothing); only then the links end and the transports close
(BLE phones disconnected, adapter released), then the uplink and finally the store. `control` is
the operator facade (`BoxControl`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgebox.box.config import BoxConfig
from edgebox.box.control import BoxControl
from edgebox.box.notify import Notifier
from edgebox.box.server import BoxServer
from edgebox.box.state import BoxState, open_state
from edgebox.box.store_registry import StoreRegistry
from edgebox.errors import EdgeboxError
from edgebox.log import get_logger
from edgebox.store.aio import StoreWorker, run_purge_loop
from edgebox.store.prompt_log import DAY, PromptLogPolicy
from edgebox.transport.base import LinkListener

log = get_logger("edgebox.box.daemon")


class BoxDaemon:
    def __init__(
        self,
        cfg: BoxConfig,
        *,
        config_path: Path | None = None,
        listeners: Sequence[LinkListener] = (),
        notifier: Notifier | None = None,
        models: Any = None,
        dev: bool | None = None,
        store_clock: Callable[[], float] | None = None,
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.dev = cfg.box.dev_key_files if dev is None else dev
        self._extra_listeners = list(listeners)
        self._models_override = models
        self._store_clock = store_clock  # the store's wall clock (expiries); tests simulate it
        self.transports: dict[str, str] = {}
        self.control = BoxControl(self)
        self.started_monotonic = time.monotonic()
        self._listeners: list[LinkListener] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._stop = asyncio.Event()
        self.ready = asyncio.Event()  # set once serving (READY=1 sent)
        self.websocket_url: str | None = None  # the development WebSocket link, when serving
        self._stopped = False
        self.state: BoxState
        self.worker: StoreWorker
        self.server: BoxServer
        self.pipeline: Any = None
        self.library: Any = None
        self.uplink: Any = None
        self.forwarder: Any = None
        self.renewal: Any = None
        self.control_server: Any = None
        self.admin: Any = None
        from edgebox.telemetry import Telemetry, TelemetryConfig

        self.telemetry = Telemetry.create(
            TelemetryConfig(service_name="edgebox-box", otlp_endpoint=cfg.telemetry.otlp_endpoint or None)
        )

    # -- parts the facade reads ----------------------------------------------------------------
    @property
    def identity(self) -> Any:
        return self.state.identity

    @property
    def store(self) -> Any:
        return self.state.store

    @property
    def registry(self) -> StoreRegistry:
        return self.state.registry

    def standing_of(self, phone_id: str) -> str:
        if self.pipeline is None:
            return "enrolled"
        status: str = self.pipeline.standing.status(phone_id, time.monotonic())
        return status

    def uplink_status(self) -> dict[str, Any]:
        if self.uplink is None:
            return {"configured": False}
        out: dict[str, Any] = {"configured": True, "url": self.cfg.gateway.url}
        if self.forwarder is not None:
            out.update(self.forwarder.status())
        return out

    def certificate_status(self) -> dict[str, Any]:
        if self.renewal is None:
            return {"state": "none"}
        status: dict[str, Any] = self.renewal.status()
        return status

    # -- life cycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.cfg
        self.started_monotonic = time.monotonic()
        self.state = await asyncio.to_thread(
            open_state,
            cfg.state_dir,
            dev=self.dev,
            create=self.dev or not (cfg.state_dir / "box.db").exists(),
            clock=self._store_clock or time.time,
        )
        self.state.store.prompt_log.policy = PromptLogPolicy(
            keep_text=cfg.pipeline.log_text, retention_s=cfg.pipeline.log_retention_days * DAY
        )
        self.worker = StoreWorker(self.state.store)
        recovered = await self.worker.call(self.state.store.outbox.recover)
        if recovered:
            log.info("outbox_recovered", entries=recovered)
        await self._start_parts()
        self.server = BoxServer(self.state.identity, self.registry, self.pipeline)
        if self.forwarder is not None:
            self.server.on_established = self.forwarder.on_phone_connected
            self.forwarder.server = self.server
        await self._start_transports()
        from edgebox.box.control_socket import ControlServer

        self.control_server = ControlServer(
            self.control, cfg.control_socket_path, allowed_uids=cfg.box.control_uids
        )
        await self.control_server.start()
        if cfg.admin.enabled:  # the admin page (issue 13) over this daemon's control facade
            from edgebox.admin.daemon_backend import start_admin

            try:
                self.admin = await start_admin(self)
                self.transports["admin"] = "serving"
            except (OSError, EdgeboxError) as exc:
                self.transports["admin"] = f"failed ({getattr(exc, 'code', type(exc).__name__)})"
                log.error("admin_unavailable", error=str(getattr(exc, "code", type(exc).__name__)))
        self._tasks.append(asyncio.create_task(run_purge_loop(self.worker), name="store-purge"))
        self._tasks.append(asyncio.create_task(self.notifier.watchdog_loop(), name="watchdog"))
        status = ", ".join(f"{k} {v}" for k, v in self.transports.items())
        self.notifier.ready(f"serving ({status})")
        self.ready.set()
        log.info("box_ready", box=self.state.identity.box_id_hex, transports=self.transports)

    async def _start_parts(self) -> None:
        from edgebox.box.pipeline import build_pipeline

        parts = await build_pipeline(self, models=self._models_override)
        self.pipeline = parts.pipeline
        self.library = parts.library
        self.uplink = parts.uplink
        self.forwarder = parts.forwarder
        self.renewal = parts.renewal
        for task in parts.tasks:
            self._tasks.append(task)

    async def _start_transports(self) -> None:
        cfg = self.cfg
        for i, listener in enumerate(self._extra_listeners):
            self._serve(listener, f"extra-{i}")
        if cfg.dev.socket:
            from edgebox.transport.unix import SeqpacketListener

            self._serve(SeqpacketListener(Path(cfg.dev.socket)), "unix")
        if cfg.dev.websocket:
            from edgebox.transport.websocket import WebSocketListener  # development only (contract 11)

            ws = WebSocketListener(cfg.dev.websocket_listen, cfg.dev.websocket_port)
            try:
                await ws.start()
                self.websocket_url = ws.url
                self._serve(ws, "websocket")
            except OSError as exc:
                self.transports["websocket"] = f"failed ({type(exc).__name__})"
        if cfg.ble.enabled:
            await self._start_ble()

    async def _start_ble(self) -> None:
        cfg = self.cfg
        try:
            from edgebox.ble.layout import ble_name
            from edgebox.ble.links import box_listener
            from edgebox.session.handshake import PROTOCOL_VERSION

            ident = self.state.identity
            peripheral = box_listener(
                ident.box_id_hex,
                ident.key_hash,
                PROTOCOL_VERSION,
                adapter=cfg.ble.adapter,
                name=cfg.ble.name or ble_name(ident.box_id_hex),
                advertisement_instances=cfg.ble.adv_instances,
            )
            await peripheral.start()
        except Exception as exc:  # no bus, no BlueZ, no adapter: serve the rest, report it
            code = getattr(exc, "code", type(exc).__name__)
            self.transports["ble"] = f"degraded ({code})"
            log.warning("ble_unavailable", adapter=cfg.ble.adapter, error=str(code))
            return
        self._serve(peripheral, "ble")

    def _serve(self, listener: LinkListener, name: str) -> None:
        self._listeners.append(listener)
        self.transports[name] = "serving"
        self._tasks.append(asyncio.create_task(self.server.serve(listener), name=f"serve-{name}"))

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT (or `request_stop()`), stop gracefully."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.start()
            await self._stop.wait()
        finally:
            await self.stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.notifier.stopping()
        log.info("box_stopping")
        # 1. no new links, prompts, outbox sends or control requests; the live links go on
        if hasattr(self, "server"):
            self.server.stop_accepting()
        if self.forwarder is not None:
            self.forwarder.pause()
        for listener in self._listeners:
            with contextlib.suppress(Exception):
                await listener.stop_accepting()
        if self.control_server is not None:
            await self.control_server.close()
        if self.admin is not None:
            with contextlib.suppress(Exception):
                await self.admin.stop()
        # 2. in-flight answers finish (or, for requests that may wait, go back to the outbox)
        if hasattr(self, "server"):
            forwarder = self.forwarder
            finished = await self.server.drain(
                self.cfg.box.drain_timeout_s,
                also=(lambda: bool(forwarder.sending)) if forwarder is not None else None,
            )
            if not finished:
                log.warning("drain_timeout", inflight=self.server.inflight())
            # 3. then the links end and the transports are released (BLE: phones disconnected)
            await self.server.close_links()
        for listener in self._listeners:
            with contextlib.suppress(Exception):
                await listener.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # 4. the parts, then the store
        for part in (self.forwarder, self.renewal, self.uplink, self.pipeline):
            close = getattr(part, "aclose", None) or getattr(part, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
        if hasattr(self, "worker"):
            await self.worker.aclose()
        elif hasattr(self, "state"):
            self.state.close()
        self.notifier.close()
        with contextlib.suppress(Exception):
            self.telemetry.shutdown()
        log.info("box_stopped")
