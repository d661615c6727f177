"""BLE transport over the real Linux stack: raw DatagramLink behaviour between the box and phones."""

from __future__ import annotations

import asyncio
import os

import pytest
from conftest import need_phones, restart_bluetoothd, wait_spacer
from phones import BLAST, blast, echo, echo_stream, open_link, stats

from edgebox.ble.layout import INFO_UUID, RX_UUID, SERVICE_UUID, TX_UUID
from edgebox.transport.base import LinkClosed


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


async def box_event(box, predicate, timeout=30.0):
    return await asyncio.to_thread(box.wait_event, predicate, timeout)


async def test_bulk_20k_both_directions(hil, box):
    link = await open_link(hil, hil.phone_adapters[0])
    try:
        sent = await echo_stream(link, 20 * 1024)
        assert sent * (link.mtu - 1) >= 20 * 1024
        count = -(-20 * 1024 // link.mtu)
        assert await blast(link, count, link.mtu) == count * link.mtu
    finally:
        await link.close()


async def test_two_phones_at_once_no_crosstalk(hil, box, spacer):
    a = await open_link(hil, hil.phone_adapters[0])
    # The second phone discovers the box while the first is connected: advertising continues.
    b = await open_link(hil, hil.phone_adapters[1])
    try:
        assert a.info.tag != b.info.tag
        count = -(-20 * 1024 // b.mtu)
        _, got = await asyncio.gather(echo_stream(a, 20 * 1024, seed=0xA1), blast(b, count, b.mtu))
        assert got == count * b.mtu
        assert (await stats(a))["open"] == 2
    finally:
        await a.close()
        await b.close()


async def test_four_phones_at_once_box_keeps_advertising(hil, box, spacer):
    links = []
    try:
        for adapter in need_phones(hil, 4):
            # each phone discovers the box while the others are connected
            links.append(await open_link(hil, adapter))
        assert len({link.info.tag for link in links}) == 4
        await asyncio.gather(*(echo_stream(link, 4 * 1024, seed=0x10 + i) for i, link in enumerate(links)))
        assert (await stats(links[0]))["open"] == 4
    finally:
        for link in links:
            await link.close()


async def test_disconnect_mid_transfer_then_reconnect(hil, box):
    box.forget()
    a = await open_link(hil, hil.phone_adapters[0])
    opened = await box_event(box, lambda e: e["event"] == "link")
    await a.send(BLAST.pack(ord("B"), 1500, a.mtu))
    for _ in range(20):
        await asyncio.wait_for(a.recv(), 20)
    await a.close()  # mid-transfer: the box is still sending
    closed = await box_event(box, lambda e: e["event"] == "closed" and e["peer"] == opened["peer"])
    assert closed["reason"] == "link_closed"
    again = await open_link(hil, hil.phone_adapters[0])
    try:
        assert await echo(again, b"after reconnect") == b"Eafter reconnect"
        assert again.info.tag != a.info.tag
        assert (await stats(again))["open"] == 1
    finally:
        await again.close()


async def test_garbage_flood_leaves_other_phone_working(hil, box, spacer):
    flooder = await open_link(hil, hil.phone_adapters[0])
    good = await open_link(hil, hil.phone_adapters[1])
    flood_sent = 0

    async def flood() -> None:
        nonlocal flood_sent
        try:
            for _ in range(1200):
                await flooder.send(b"\xff" + os.urandom(flooder.mtu - 1))
                flood_sent += 1
        except LinkClosed:
            pass  # the box may cut a phone off that overruns its queue

    async def keep_working() -> None:
        for i in range(20):
            payload = f"still here {i}".encode()
            assert await echo(good, payload) == b"E" + payload
        await echo_stream(good, 5 * 1024, seed=0x5A)

    try:
        await asyncio.gather(flood(), keep_working())
        assert flood_sent > 100
        info = await stats(good)
        assert info["state"] == "advertising"
        assert info["garbage"] + info["overruns"] > 0
    finally:
        await flooder.close()
        await good.close()


async def test_bluetoothd_restart_box_reregisters_phone_reconnects(hil, box, spacer):
    link = await open_link(hil, hil.phone_adapters[0])
    box.forget()
    await asyncio.to_thread(restart_bluetoothd, hil)
    with pytest.raises(LinkClosed):
        while True:
            await asyncio.wait_for(link.recv(), 30)
    if box.proc is not None:
        await box_event(box, lambda e: e["event"] == "state" and e["state"] == "bluez_missing")
        await box_event(box, lambda e: e["event"] == "state" and e["state"] == "advertising")
    await link.close()
    again = await open_link(hil, hil.phone_adapters[0])
    await asyncio.to_thread(wait_spacer, spacer)
    other = await open_link(hil, hil.phone_adapters[1])
    try:
        assert await echo(again, b"after restart") == b"Eafter restart"
        assert await echo(other, b"second phone too") == b"Esecond phone too"
    finally:
        await again.close()
        await other.close()
