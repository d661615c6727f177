"""BLE transport over the real Linux stack: raw DatagramLink behaviour between the box and phones."""

from __future__ import annotations

import os

from edgebox.ble.layout import INFO_UUID, RX_UUID, SERVICE_UUID, TX_UUID
from phones import echo, open_link


async def test_echo_and_layout(hil, box):
    link = await open_link(hil, hil.phone_adapters[0])
    try:
        assert link.info.box.box_id == hil.box_id
        assert link.mtu >= 200, link.mtu
        service = link.client.services.get_service(SERVICE_UUID)
        props = {c.uuid: sorted(c.properties) for c in service.characteristics}
        assert props == {
            RX_UUID: ["write", "write-without-response"],
            TX_UUID: ["notify"],
            INFO_UUID: ["read"],
        }
        for size in (1, 17, link.mtu - 1):
            payload = os.urandom(size)
            assert await echo(link, payload) == b"E" + payload
        opened = box.wait_event(lambda e: e["event"] == "link")
        assert opened["mtu"] == link.mtu
    finally:
        await link.close()
    box.wait_event(lambda e: e["event"] == "closed")
