"""(3) The Web Bluetooth code path in Chromium, with the DevTools Bluetooth emulation: a simulated
adapter and a peripheral carrying the box's GATT service (edgebox/ble/layout.py), the test answering
every GATT operation and bridging the peripheral to the real box server.

What Chromium 156's emulation cannot do is push a notification to the page
(shared/notes/browser-and-cluster.md). Every box->phone datagram is therefore delivered the one way
it allows: the test calls readValue() on the page's own TX characteristic and answers the read with
the tagged datagram, which fires `characteristicvaluechanged` -- the same event and the same handler
(tag check, queue) a real notification goes through. For that the emulated TX also has `read`; the
box's real TX is notify-only. Everything else (chooser, connect, discovery, INFO read, subscribe,
RX writes of at most the negotiated size) is the page's production code against the emulation.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from pathlib import Path
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import expect

from edgebox.ble import layout
from edgebox.box.server import BoxServer
from edgebox.box.state import init_state
from edgebox.transport.loopback import LoopbackListener, link_pair
from tests.phone_web.support import SlowEcho, launch, serve_static

ADDRESS = "09:09:09:09:09:09"
CCCD = "00002902-0000-1000-8000-00805f9b34fb"
ATT_MTU = 69  # a small MTU so that every handshake message is fragmented
DATAGRAM = layout.datagram_size(ATT_MTU)


class Peripheral:
    """The emulated box: answers GATT operations, forwards RX writes to the box, pushes box
    datagrams through TX reads."""

    def __init__(self, cdp: Any, page: Any, info: bytes, tag: bytes, box_end: Any) -> None:
        self.cdp = cdp
        self.page = page
        self.info = info
        self.tag = tag
        self.box_end = box_end  # the phone side of a loopback link whose other end the box serves
        self.ids: dict[str, str] = {}
        self.ops: list[str] = []
        self.writes: list[bytes] = []
        self.subscribed = asyncio.Event()
        self._to_box: asyncio.Queue[bytes] = asyncio.Queue()
        self._pending: bytes | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._answers: set[asyncio.Future[Any]] = set()

    async def build(self) -> None:
        send = self.cdp.send
        await send("BluetoothEmulation.enable", {"state": "powered-on", "leSupported": True})
        name = layout.ble_name(self.info_box_id)
        await send(
            "BluetoothEmulation.simulatePreconnectedPeripheral",
            {
                "address": ADDRESS,
                "name": name,
                "manufacturerData": [],
                "knownServiceUuids": [layout.SERVICE_UUID],
            },
        )
        service = (
            await send(
                "BluetoothEmulation.addService", {"address": ADDRESS, "serviceUuid": layout.SERVICE_UUID}
            )
        )["serviceId"]
        for key, uuid, props in (
            ("rx", layout.RX_UUID, {"write": True, "writeWithoutResponse": True}),
            ("tx", layout.TX_UUID, {"notify": True, "read": True}),
            ("info", layout.INFO_UUID, {"read": True}),
        ):
            r = await send(
                "BluetoothEmulation.addCharacteristic",
                {"serviceId": service, "characteristicUuid": uuid, "properties": props},
            )
            self.ids[r["characteristicId"]] = key
        tx = next(k for k, v in self.ids.items() if v == "tx")
        await send("BluetoothEmulation.addDescriptor", {"characteristicId": tx, "descriptorUuid": CCCD})
        self.cdp.on("BluetoothEmulation.gattOperationReceived", self._on_gatt)
        self.cdp.on("BluetoothEmulation.characteristicOperationReceived", self._on_char)
        self.cdp.on("BluetoothEmulation.descriptorOperationReceived", self._on_desc)
        self._tasks = [asyncio.create_task(self._forward()), asyncio.create_task(self._push())]

    @property
    def info_box_id(self) -> str:
        return layout.decode_info(self.info).box.box_id

    def _answer(self, method: str, params: dict[str, Any]) -> None:
        task = asyncio.ensure_future(self.cdp.send(method, params))
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    def _on_gatt(self, ev: dict[str, Any]) -> None:
        self.ops.append(ev["type"])
        self._answer("BluetoothEmulation.simulateGATTOperationResponse", {**ev, "code": 0})

    def _on_desc(self, ev: dict[str, Any]) -> None:
        self.ops.append(f"descriptor-{ev['type']}")
        if ev["type"] == "write":
            self.subscribed.set()
        self._answer(
            "BluetoothEmulation.simulateDescriptorOperationResponse",
            {"descriptorId": ev["descriptorId"], "type": ev["type"], "code": 0},
        )

    def _on_char(self, ev: dict[str, Any]) -> None:
        which = self.ids[ev["characteristicId"]]
        kind = ev["type"]
        self.ops.append(f"{which}-{kind}")
        reply: dict[str, Any] = {"characteristicId": ev["characteristicId"], "type": kind, "code": 0}
        if which == "info" and kind == "read":
            reply["data"] = base64.b64encode(self.info).decode()
        elif which == "tx" and kind == "read":
            assert self._pending is not None, "the page read TX with nothing pending"
            reply["data"] = base64.b64encode(self.tag + self._pending).decode()
            self._pending = None
        elif which == "tx" and kind == "subscribe-to-notifications":
            self.subscribed.set()
        elif which == "rx" and kind == "write":
            data = base64.b64decode(ev.get("data", ""))
            self.writes.append(data)
            self._to_box.put_nowait(data)
            if ev.get("writeType") == "write-without-response":
                return
        self._answer("BluetoothEmulation.simulateCharacteristicOperationResponse", reply)

    async def _forward(self) -> None:
        while True:
            await self.box_end.send(await self._to_box.get())

    async def _push(self) -> None:
        while True:
            datagram = await self.box_end.recv()
            await self.subscribed.wait()
            self._pending = datagram
            await self.page.evaluate("() => window.edgeboxPhone.link.tx.readValue().then(() => true)")

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def test_pair_and_ask_over_emulated_web_bluetooth(tmp_path: Path) -> None:
    state = init_state(tmp_path / "box")
    server = BoxServer(state.identity, state.registry, SlowEcho(pause=0.0))
    listener = LoopbackListener()
    serving = asyncio.create_task(server.serve(listener))
    box_end, phone_end = link_pair(mtu=244)  # (the side the emulated peripheral drives, the box's)
    listener.attach(phone_end)
    ident = state.identity
    tag = os.urandom(layout.TAG_LEN)
    info = layout.encode_info(layout.BoxInfo(1, ident.box_id_hex, ident.key_hash), tag, DATAGRAM)
    runner, base = await serve_static()
    pw, browser = await launch(bluetooth=True)
    peripheral: Peripheral | None = None
    crashes: list[str] = []
    chooser_task: asyncio.Task[None] | None = None
    try:
        context = await browser.new_context()
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("crash", lambda _p: crashes.append("page"))
        browser.on("disconnected", lambda _b: crashes.append("browser"))
        await page.goto(base + "/phone/")
        await expect(page.locator("body")).to_have_attribute("data-ready", "1")
        assert await page.evaluate("'bluetooth' in navigator")
        assert await page.evaluate("document.querySelector('input[value=bluetooth]').checked")

        peripheral = Peripheral(await browser.new_browser_cdp_session(), page, info, tag, box_end)
        await peripheral.build()
        chooser = await context.new_cdp_session(page)
        prompts: list[list[dict[str, str]]] = []

        latest: dict[str, Any] = {}

        def on_prompt(ev: dict[str, Any]) -> None:
            prompts.append(ev["devices"])
            if ev["devices"]:
                latest.update(ev=ev, at=time.monotonic())

        async def choose() -> None:
            # The chooser is announced more than once while it fills; answering while it is still
            # being updated has crashed Chromium here, so answer the newest announcement once it has
            # been quiet for a moment, and again if that answer was refused, until the page connects.
            answered: set[str] = set()
            while "connection" not in peripheral.ops:
                await asyncio.sleep(0.3)
                ev = latest.get("ev")
                if ev is None or ev["id"] in answered or time.monotonic() - latest["at"] < 0.3:
                    continue
                try:
                    await chooser.send(
                        "DeviceAccess.selectPrompt", {"id": ev["id"], "deviceId": ev["devices"][0]["id"]}
                    )
                    answered.add(ev["id"])
                except PlaywrightError as exc:
                    if "Cannot find request" in str(exc):
                        answered.add(ev["id"])

        chooser_task = asyncio.create_task(choose())
        chooser.on("DeviceAccess.deviceRequestPrompted", on_prompt)
        await chooser.send("DeviceAccess.enable")

        invite = state.registry.create_invite(ident.box_id, ident.key_hash, time.time())
        await page.fill("#payload", invite.encode())
        await page.click("#pair")
        try:
            await expect(page.locator("#status")).to_have_text("Connected", timeout=60_000)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nprompts={prompts} ops={peripheral.ops} crashes={crashes}") from None

        # The page found and selected the box, connected, discovered, read INFO, subscribed.
        # (the emulated chooser lists the device by address; its name is empty there)
        assert [d["id"] for d in prompts[-1]] == [ADDRESS]
        assert peripheral.ops[:2] == ["connection", "discovery"]
        assert "info-read" in peripheral.ops
        assert peripheral.subscribed.is_set()
        assert await page.evaluate("window.edgeboxPhone.link.mtu") == DATAGRAM
        # Every RX write is one datagram no larger than the negotiated size, and messages larger
        # than one datagram (HELLO: 108 bytes) were fragmented.
        assert peripheral.writes[0][0] == 0x20  # the capabilities request opens the link
        assert max(len(w) for w in peripheral.writes) <= DATAGRAM
        assert sum(1 for w in peripheral.writes if w[0] & 0x08) >= 3
        assert state.store.phones.list_phones(include_revoked=True)

        # A question and its answer over the same GATT path.
        await page.fill("#question", "hello over bluetooth")
        await page.click("#ask")
        await expect(page.locator("#answer")).to_have_attribute("data-state", "stop", timeout=60_000)
        assert (await page.text_content("#answer") or "").split() == ["hello", "over", "bluetooth"]
        assert max(len(w) for w in peripheral.writes) <= DATAGRAM
        assert errors == [] and crashes == []
    finally:
        if chooser_task is not None:
            chooser_task.cancel()
        if peripheral is not None:
            await peripheral.close()
        await browser.close()
        await pw.stop()
        await runner.cleanup()
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        state.close()
