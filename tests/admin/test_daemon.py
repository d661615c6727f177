"""The admin page inside the real box daemon (`[admin] enabled`): set-up from the boot-partition code,
a document uploaded on the page answered locally (with its citation) to a phone paired from the QR on
the page, revoke, settings validated by the box's own config schema."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgebox.box.config import parse_box_config
from edgebox.box.daemon import BoxDaemon
from edgebox.box.notify import Notifier
from edgebox.box.textmodels import TextModels
from edgebox.phone import client
from edgebox.phone.keystore import PhoneKeystore
from edgebox.session.connection import phone_id
from edgebox.session.errors import SessionError
from edgebox.session.invite import PairingInvite
from edgebox.transport.base import LinkClosed
from edgebox.transport.loopback import LoopbackListener

from .conftest import PASSWORD, shot
from .test_browser_phones import decode_qr

BOOT_CODE = "BRANCH-0042-PROVISIONED"
HANDBOOK = """# Branch handbook

## Lost debit cards

A customer who lost a debit card calls the card hotline first. The teller then orders a replacement
debit card, which arrives by post within five working days.
"""


@dataclass
class DaemonBox:
    daemon: BoxDaemon
    listener: LoopbackListener
    url: str
    config_path: Path
    boot_file: Path


@pytest.fixture(scope="session")
def text_models() -> TextModels:
    from edgebox.models.config import default_models_dir

    if not (default_models_dir() / "manifest.json").exists():
        pytest.fail("the local models are missing: run `make models` (make test does)", pytrace=False)
    return TextModels.load("rules")  # the embedder is what documents need; the classifier is not tested here


@pytest.fixture
async def dbox(tmp_path: Path, text_models: TextModels) -> AsyncIterator[DaemonBox]:
    boot = tmp_path / "boot" / "edgebox-admin-setup.txt"
    boot.parent.mkdir()
    boot.write_text(BOOT_CODE + "\n")
    config_path = tmp_path / "box.toml"
    config_path.write_text(
        "# branch box\n"
        f'[box]\nstate_dir = "{tmp_path / "box"}"\ndev_key_files = true\n\n'
        "[ble]\nenabled = false\n\n"
        f'[admin]\nenabled = true\nlisten = "127.0.0.1"\nport = 0\nsetup_code_file = "{boot}"\n'
    )
    cfg = parse_box_config(tomllib.loads(config_path.read_text()))
    listener = LoopbackListener(mtu=244)
    daemon = BoxDaemon(
        cfg, config_path=config_path, listeners=[listener], models=text_models, notifier=Notifier({})
    )
    task = asyncio.create_task(daemon.run())
    ready = asyncio.create_task(daemon.ready.wait())
    await asyncio.wait({task, ready}, timeout=120, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    assert daemon.admin is not None and daemon.admin.port
    try:
        yield DaemonBox(daemon, listener, f"https://127.0.0.1:{daemon.admin.port}", config_path, boot)
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 60)


async def test_document_uploaded_on_the_page_is_answered_locally_with_its_citation(
    page: Any, dbox: DaemonBox, tmp_path: Path
) -> None:
    assert not dbox.boot_file.exists()  # read once at start, deleted
    await page.goto(dbox.url + "/")
    assert page.url.endswith("/setup")
    await page.fill("input[name=code]", BOOT_CODE)
    await page.fill("input[name=password]", PASSWORD)
    await page.fill("input[name=confirm]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/status")
    assert await page.inner_text("#ble-state") == "disabled"
    # upload the branch handbook
    doc = tmp_path / "handbook.md"
    doc.write_text(HANDBOOK)
    await page.goto(dbox.url + "/documents")
    await page.set_input_files("input[type=file]", str(doc))
    await page.click("#upload button[type=submit]")
    await page.wait_for_url("**/documents?notice=*", timeout=120_000)
    assert "handbook" in await page.inner_text("#documents-table")
    # pair a phone from the QR on the page, then ask
    await page.goto(dbox.url + "/pair")
    await page.click("main button:has-text('Show a pairing code')")
    await page.wait_for_selector("#pair-qr")
    invite = PairingInvite.decode(await decode_qr(page))
    ks = PhoneKeystore.load_or_create(tmp_path / "phone.json")
    session = await client.pair(dbox.listener.connect(), ks, invite)
    await page.wait_for_selector("#paired-name", timeout=30_000)
    answer = await session.ask("I lost my debit card. When will the replacement card arrive?")
    assert "five working days" in answer.text
    assert "[1]" in answer.text and "handbook" in answer.text  # cites the uploaded document
    await shot(page, "daemon-pair-done")
    # the page shows the phone connected; revoke drops the session
    pid = phone_id(ks.public_point)
    await page.goto(dbox.url + "/phones")
    card = page.locator(f"li[data-phone='{pid}']")
    assert "connected" in await card.inner_text()
    page.once("dialog", lambda d: d.accept())
    await card.locator("button:has-text('Revoke')").click()
    await page.wait_for_selector("text=1 live session dropped")
    with pytest.raises((LinkClosed, SessionError)):
        await session.ask("still there?")
    await page.goto(dbox.url + "/audit")
    actions = await page.inner_text("#admin-actions")
    assert "document_added" in actions and "phone_revoked" in actions and "setup" in actions


async def test_settings_are_checked_by_the_box_config_schema(page: Any, dbox: DaemonBox) -> None:
    # the daemon imported the boot-partition code at start: it is the set-up code
    await page.goto(dbox.url + "/setup")
    await page.fill("input[name=code]", BOOT_CODE)
    await page.fill("input[name=password]", PASSWORD)
    await page.fill("input[name=confirm]", PASSWORD)
    await page.click("button[type=submit]")
    await page.goto(dbox.url + "/settings")
    assert await page.input_value("input[name='pipeline.quota_tokens']") == "20000"  # the running default
    before = dbox.config_path.read_bytes()
    await page.fill("input[name='gateway.url']", "https://gw.branch.example:8443")
    await page.click("main button[type=submit]")
    assert "ca_file" in await page.inner_text(".msg.error")  # the daemon's own cross-check
    assert dbox.config_path.read_bytes() == before
    await page.fill("input[name='gateway.url']", "")
    await page.fill("input[name='pipeline.quota_tokens']", "5000")
    await page.click("main button[type=submit]")
    await page.wait_for_selector("text=Settings saved")
    text = dbox.config_path.read_text()
    assert text.startswith("# branch box")
    cfg = parse_box_config(tomllib.loads(text))
    assert cfg.pipeline.quota_tokens == 5000 and cfg.admin.enabled


async def test_admin_console_commands_ask_the_running_daemon(
    dbox: DaemonBox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`edgebox box admin fingerprint|setup-code` on a configured box go to the daemon over its
    control socket: the fingerprint is the one the page serves, the code is one the page accepts, and
    nothing is made in the working directory (they used to make a second, unrelated certificate in
    ./var/box, and a code the daemon never saw)."""
    from edgebox.cli import main

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    conf = str(dbox.config_path)
    assert await asyncio.to_thread(main, ["box", "--config", conf, "admin", "fingerprint"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]  # (the daemon's own log lines come first)
    assert printed == f"SHA-256 {dbox.daemon.admin.certificate.fingerprint}"
    assert (
        await asyncio.to_thread(main, ["box", "--config", conf, "admin", "setup-code", "--ttl", "600"]) == 0
    )
    code = capsys.readouterr().out.strip().splitlines()[-1].rsplit(" ", 1)[-1]
    assert dbox.daemon.admin.setup_codes.consume(code)
    assert not dbox.daemon.admin.setup_codes.consume(code)  # single use
    assert list(cwd.iterdir()) == []
    assert await asyncio.to_thread(main, ["box", "--config", conf, "admin", "setup-code", "--ttl", "5"]) == 2
    assert "ttl" in capsys.readouterr().err
