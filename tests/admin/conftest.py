"""Admin page fixtures: a real box (encrypted store, BoxServer over loopback), the admin HTTPS
server on 127.0.0.1, and Debian's Chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgebox.admin.app import AdminConfig
from edgebox.admin.library import Embed, LibraryBackend
from edgebox.admin.listen import bind_socket
from edgebox.admin.security import SessionPolicy, ThrottlePolicy
from edgebox.admin.service import AdminService
from edgebox.box.responder import EchoResponder
from edgebox.box.server import BoxServer
from edgebox.box.state import BoxState, init_state
from edgebox.models.config import default_models_dir
from edgebox.transport.loopback import LoopbackListener

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "var" / "screenshots" / "admin"
MODELS = default_models_dir()  # var/models, or EDGEBOX_MODELS_DIR
PASSWORD = "correct horse battery staple"
IDLE_S = 600.0
LOCKOUT_S = 300.0
CONFIG_TEXT = """# edgebox box configuration (test copy)
[box]
state_dir = "var/box"

[gateway]
url = "https://gateway.example:8443"  # the AI gateway
ca_file = "/etc/edgebox/gateway-ca.pem"

[pipeline]
quota_tokens = 20000
quota_window_s = 3600.0
log_retention_days = 30.0
injection_flag_threshold = 0.5
injection_block_threshold = 0.8

[cache]
threshold = 0.92
"""


class OffsetClock:
    """Real time plus an offset the test moves forward (session expiry, lock-out)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Box:
    tmp: Path
    state: BoxState
    server: BoxServer
    listener: LoopbackListener
    backend: LibraryBackend
    service: AdminService
    clock: OffsetClock
    config_path: Path
    boot_file: Path
    url: str
    task: asyncio.Task[None] | None = None


_embedder: Any = None


def real_embed() -> Embed | None:
    """The local MiniLM embedder when `make models` has built it (it always has under `make test`)."""
    global _embedder
    if _embedder is None and (MODELS / "manifest.json").exists():
        from edgebox.models.config import ModelsConfig
        from edgebox.models.embedder import Embedder

        _embedder = Embedder(ModelsConfig(models_dir=MODELS))
    return None if _embedder is None else _embedder.embed


async def start_box(tmp: Path, *, boot_code: str | None = None, embed: Embed | None = None) -> Box:
    state = init_state(tmp / "box")
    server = BoxServer(state.identity, state.registry, EchoResponder())
    listener = LoopbackListener()
    config_path = tmp / "box.toml"
    config_path.write_text(CONFIG_TEXT)
    boot = tmp / "boot" / "edgebox-admin-setup.txt"
    if boot_code is not None:
        boot.parent.mkdir()
        boot.write_text(boot_code + "\n")
    backend = LibraryBackend(
        store=state.store,
        identity=state.identity,
        registry=state.registry,
        server=server,
        state_dir=tmp / "box",
        config_path=config_path,
        embed=embed,
        models_dir=MODELS,
    )
    clock = OffsetClock()
    config = AdminConfig(
        session=SessionPolicy(idle_timeout_s=IDLE_S),
        throttle=ThrottlePolicy(max_failures=3, lockout_s=LOCKOUT_S),
        live_refresh_s=1.0,
    )
    service = AdminService(
        backend, state.store.db, tmp / "box", config=config, boot_setup_file=boot, clock=clock
    )
    port = await service.start(sock=bind_socket("127.0.0.1", 0))
    box = Box(
        tmp, state, server, listener, backend, service, clock, config_path, boot, f"https://127.0.0.1:{port}"
    )
    box.task = asyncio.create_task(server.serve(listener))
    return box


async def stop_box(box: Box) -> None:
    await box.service.stop()
    assert box.task is not None
    box.task.cancel()
    await asyncio.gather(box.task, return_exceptions=True)
    box.state.close()


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[Box]:
    b = await start_box(tmp_path)
    yield b
    await stop_box(b)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed (make test installs it: APT_TEST)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield b
        await b.close()


async def new_page(browser: Any, *, width: int = 1280, height: int = 900) -> Any:
    context = await browser.new_context(
        ignore_https_errors=True, viewport={"width": width, "height": height}, accept_downloads=True
    )
    context.set_default_timeout(60_000)  # 2 cores shared by many jobs: generous, never a timing assertion
    page = await context.new_page()
    page.csp_violations = []
    page.js_errors = []
    page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
    await page.expose_function("reportViolation", lambda v: page.csp_violations.append(v))
    await context.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => "
        "window.reportViolation(e.violatedDirective + ' ' + e.blockedURI));"
    )
    return page


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    p = await new_page(browser)
    yield p
    await p.context.close()


async def shot(page: Any, name: str, *, full_page: bool = True) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path


async def set_up(page: Any, box: Box) -> None:
    """First set-up through the page with a fresh code; leaves the browser signed in on /status."""
    code = box.service.setup_codes.create()
    await page.goto(box.url + "/")
    assert page.url.endswith("/setup")
    await page.fill("input[name=code]", code)
    await page.fill("input[name=password]", PASSWORD)
    await page.fill("input[name=confirm]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/status")


async def sign_in(page: Any, box: Box, password: str = PASSWORD) -> None:
    await page.goto(box.url + "/login")
    await page.fill("input[name=password]", password)
    await page.click("main button[type=submit]")
