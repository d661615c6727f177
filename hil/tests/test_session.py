"""The secure session protocol (pairing, sessions, streamed prompts) over the real BLE stack."""

from __future__ import annotations

import asyncio
import os

import pytest
from conftest import restart_bluetoothd, wait_spacer
from phones import open_link

from edgebox.phone import client
from edgebox.phone.keystore import PhoneKeystore
from edgebox.session.errors import SessionError
from edgebox.session.invite import PairingInvite
from edgebox.transport.base import LinkClosed

BIG = "".join(chr(0x41 + i % 26) for i in range(24 * 1024))  # streamed back in many fragments


async def paired(hil, session_box, adapter, tmp_path, name):
    keystore = PhoneKeystore.load_or_create(tmp_path / f"{name}.json")
    link = await open_link(hil, adapter, box_id=session_box.box_id)
    session = await client.pair(link, keystore, PairingInvite.decode(session_box.invite()))
    return keystore, link, session


async def reconnect(hil, session_box, adapter, keystore):
    link = await open_link(hil, adapter, box_id=session_box.box_id)
    session = await client.connect(link, keystore, keystore.box(session_box.box_id))
    return link, session


async def test_pair_session_and_streamed_20k_prompt(hil, session_box, tmp_path):
    keystore, link, session = await paired(hil, session_box, hil.phone_adapters[0], tmp_path, "a")
    try:
        answer = await session.ask(BIG)
        assert answer.text == BIG and answer.done is not None
        await session.ping()
    finally:
        await session.close()
        await link.close()
    link, session = await reconnect(hil, session_box, hil.phone_adapters[0], keystore)
    try:
        assert (await session.ask("hello again over BLE")).text == "hello again over BLE"
    finally:
        await session.close()
        await link.close()


async def test_two_phones_sessions_at_once(hil, session_box, spacer, tmp_path):
    _, la, a = await paired(hil, session_box, hil.phone_adapters[0], tmp_path, "a")
    _, lb, b = await paired(hil, session_box, hil.phone_adapters[1], tmp_path, "b")
    try:
        text_a, text_b = BIG, BIG[::-1]
        ra, rb = await asyncio.gather(a.ask(text_a), b.ask(text_b))
        assert ra.text == text_a and rb.text == text_b
    finally:
        for s, link in ((a, la), (b, lb)):
            await s.close()
            await link.close()


async def test_disconnect_mid_message_then_reconnect(hil, session_box, tmp_path):
    keystore, link, session = await paired(hil, session_box, hil.phone_adapters[0], tmp_path, "a")
    got = 0
    with pytest.raises((LinkClosed, SessionError)):
        async for _piece in session.ask_stream(BIG):
            got += 1
            if got == 3:
                await link.close()  # drop the BLE connection mid-response
    await session.close()
    link, session = await reconnect(hil, session_box, hil.phone_adapters[0], keystore)
    try:
        assert (await session.ask(BIG)).text == BIG
    finally:
        await session.close()
        await link.close()


async def test_malformed_frame_flood_leaves_other_session_working(hil, session_box, spacer, tmp_path):
    _, good_link, good = await paired(hil, session_box, hil.phone_adapters[0], tmp_path, "good")
    bad = await open_link(hil, hil.phone_adapters[1], box_id=session_box.box_id)
    sent = 0

    async def flood() -> None:
        nonlocal sent
        try:
            for i in range(800):
                # random bytes, truncated headers, oversized lengths, zero windows
                frame = [os.urandom(bad.mtu), b"\x00", b"\xff" * 3, os.urandom(1 + i % 7)][i % 4]
                await bad.send(frame)
                sent += 1
        except LinkClosed:
            pass  # the box ends a link on a protocol error

    async def work() -> None:
        for i in range(3):
            text = f"{i}:" + BIG[: 4096 * (i + 1)]
            assert (await good.ask(text)).text == text
        await good.ping()

    try:
        await asyncio.gather(flood(), work())
        assert sent >= 1
        assert (await good.ask("still fine")).text == "still fine"
    finally:
        await bad.close()
        await good.close()
        await good_link.close()


async def test_bluetoothd_restart_then_new_session(hil, session_box, spacer, tmp_path):
    keystore, link, session = await paired(hil, session_box, hil.phone_adapters[0], tmp_path, "a")
    assert (await session.ask("before restart")).text == "before restart"
    await asyncio.to_thread(restart_bluetoothd, hil)
    with pytest.raises((LinkClosed, SessionError)):
        await asyncio.wait_for(session.ask("during restart"), 60)
    await session.close()
    await link.close()
    await asyncio.to_thread(
        session_box.proc.wait_event, lambda e: e["event"] == "state" and e["state"] == "advertising", 60
    )
    opened = []
    try:
        link, session = await reconnect(hil, session_box, hil.phone_adapters[0], keystore)
        opened.append((session, link))
        await asyncio.to_thread(wait_spacer, spacer)
        _, lb, b = await paired(hil, session_box, hil.phone_adapters[1], tmp_path, "b")
        opened.append((b, lb))
        assert (await session.ask("after restart")).text == "after restart"
        assert (await b.ask("second phone after restart")).text == "second phone after restart"
    finally:
        for s, lk in opened:
            await s.close()
            await lk.close()
