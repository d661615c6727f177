"""BLE throughput: raw max-size notifications vs application bytes through an established session.

    edgebox bench ble --json --adapter hci0 --phone-adapter hci1 [--btvirt]

Needs a Bluetooth stack with two adapters that can see each other (the vHIL guest runs it:
`hil/virtual/run --bench`). One process runs the box (BlePeripheral) on --adapter and the phone
(bleak) on --phone-adapter. Figures, same box, same connection setup, same run:

- raw_notify_kib_s: the box sends --raw-count datagrams of the full link size (TX notifications of
  ATT_MTU - 5 bytes incl. the 4-byte link tag), no protocol; bytes of notification values received
  by the phone per second, first to last.
- session_goodput_kib_s: after pairing (not timed), the box's BoxServer streams a --session-kib
  response through the secure session (framing window, AES-GCM records, app messages) in app
  messages of --chunk bytes; response text bytes per second from the first chunk to `done`.
- goodput_vs_raw: their ratio.

The guest's single emulated CPU is shared with the host's other work, so one phase can run at half
speed: raw and 16 KB-message session throughput are each measured --rounds times (raw rounds on one
link, session rounds on one session) and the figures are the medians.
- session_goodput_small_chunks_kib_s: the same with --small-chunk byte messages: the per-message
  cost (record, app encoding, dispatch) dominates there, so a responder should coalesce deltas.
- padding_goodput_cost / padding_goodput_cost_small_chunks: 1 - padded / unpadded goodput, the
  same two streams measured again on a new session whose box pads nothing (pad_block 1), same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from edgebox.ble.central import connect, find_box
from edgebox.ble.layout import TAG_LEN, BoxInfo
from edgebox.ble.peripheral import BlePeripheral, ListenerState, PeripheralConfig

BENCH_NAME = "ebx-bench"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapter", default="hci0", help="box adapter")
    parser.add_argument("--phone-adapter", default="hci1", help="phone (central) adapter")
    parser.add_argument("--btvirt", action="store_true", help="two rotating adverts (btvirt needs them)")
    parser.add_argument("--raw-count", type=int, default=800, help="raw notifications to send")
    parser.add_argument("--session-kib", type=int, default=256, help="session response size, KiB")
    parser.add_argument("--chunk", type=int, default=16000, help="response text per app message, bytes")
    parser.add_argument("--small-chunk", type=int, default=2000, help="second run with small messages")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions of the raw and 16 KB phases")


class _BulkResponder:
    """Answers a prompt whose text is a decimal byte count with that many bytes of text."""

    def __init__(self, piece: int) -> None:
        self.piece = piece

    async def respond(self, prompt: Any, ctx: Any) -> AsyncIterator[Any]:
        from edgebox.session.messages import Done

        total = int(prompt.messages[-1].content)
        block = "x" * self.piece
        for start in range(0, total, self.piece):
            yield block[: min(self.piece, total - start)]
        yield Done(id=prompt.id, source="echo")


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    from edgebox.box.identity import BoxIdentity
    from edgebox.box.registry import MemoryRegistry
    from edgebox.box.server import BoxServer
    from edgebox.phone import client
    from edgebox.phone.keystore import PhoneKeystore
    from edgebox.session.config import SessionConfig
    from edgebox.session.handshake import PROTOCOL_VERSION
    from edgebox.session.invite import new_invite

    identity = BoxIdentity.generate()
    registry = MemoryRegistry()
    responder = _BulkResponder(args.chunk)
    server = BoxServer(identity, registry, responder)
    config = PeripheralConfig(
        box=BoxInfo(PROTOCOL_VERSION, identity.box_id_hex, identity.key_hash),
        adapter=args.adapter,
        name=BENCH_NAME,
        advertisement_instances=2 if args.btvirt else 1,
    )
    result: dict[str, Any] = {}
    async with BlePeripheral(config) as peripheral:
        state = await peripheral.wait_state(ListenerState.ADVERTISING, ListenerState.FAILED, timeout=30)
        if state is not ListenerState.ADVERTISING:
            raise RuntimeError(f"peripheral not advertising: {state.value} {peripheral.last_error}")

        # --- raw notifications
        device = await find_box(adapter=args.phone_adapter, name=BENCH_NAME, timeout=30)
        phone = await connect(device, adapter=args.phone_adapter, timeout=30)
        box_link = await peripheral.accept()
        size = box_link.mtu
        payload = bytes(size)

        async def blast() -> None:
            for _ in range(args.raw_count):
                await box_link.send(payload)

        raw_rates: list[float] = []
        for _ in range(max(1, args.rounds)):
            sender = asyncio.create_task(blast())
            await phone.recv()
            first = time.perf_counter()
            for _ in range(args.raw_count - 1):
                await phone.recv()
            raw_s = time.perf_counter() - first
            await sender
            raw_bytes = (args.raw_count - 1) * (size + TAG_LEN)
            raw_rates.append(raw_bytes / raw_s / 1024)
        result["raw_notify_kib_s"] = round(statistics.median(raw_rates), 1)
        result["raw_notify_kib_s_rounds"] = [round(r, 1) for r in raw_rates]
        result["att_notification_bytes"] = size + TAG_LEN
        await phone.close()

        # --- session goodput
        serving = asyncio.create_task(server.serve(peripheral))
        invite = new_invite(identity.box_id, identity.key_hash, time.time(), ttl=600)
        registry.add_invite(invite)
        with tempfile.TemporaryDirectory() as tmp:
            keystore = PhoneKeystore.load_or_create(Path(tmp) / "phone.json")
            device = await find_box(adapter=args.phone_adapter, name=BENCH_NAME, timeout=30)
            link = await connect(device, adapter=args.phone_adapter, timeout=30)
            session = await client.pair(link, keystore, invite)
            total = args.session_kib * 1024

            async def goodput(chunk: int) -> float:
                responder.piece = chunk
                got = 0
                start: float | None = None
                async for item in session.ask_stream(str(total)):
                    if isinstance(item, str):
                        if start is None:
                            start = time.perf_counter()
                        else:
                            got += len(item)
                assert start is not None
                return got / (time.perf_counter() - start) / 1024

            big_rounds = [await goodput(args.chunk) for _ in range(max(1, args.rounds))]
            big = statistics.median(big_rounds)
            small = await goodput(args.small_chunk)
            await session.close()
            await link.close()
            # The same streams from a box that does not pad (the cost of the padding policy).
            server.config = SessionConfig(pad_block=1)
            device = await find_box(adapter=args.phone_adapter, name=BENCH_NAME, timeout=30)
            link = await connect(device, adapter=args.phone_adapter, timeout=30)
            session = await client.connect(link, keystore, keystore.box(identity.box_id_hex))
            big_unpadded = statistics.median([await goodput(args.chunk) for _ in range(max(1, args.rounds))])
            small_unpadded = await goodput(args.small_chunk)
            await session.close()
            await link.close()
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        result["session_goodput_kib_s"] = round(big, 1)
        result["session_goodput_kib_s_rounds"] = [round(r, 1) for r in big_rounds]
        result["session_goodput_small_chunks_kib_s"] = round(small, 1)
        result["goodput_vs_raw"] = round(result["session_goodput_kib_s"] / result["raw_notify_kib_s"], 3)
        result["unpadded_goodput_kib_s"] = round(big_unpadded, 1)
        result["unpadded_goodput_small_chunks_kib_s"] = round(small_unpadded, 1)
        result["padding_goodput_cost"] = round(1 - big / big_unpadded, 3)
        result["padding_goodput_cost_small_chunks"] = round(1 - small / small_unpadded, 3)
        result["link_mtu"] = size
        result["chunk_bytes"] = args.chunk
        result["small_chunk_bytes"] = args.small_chunk
        result["notify_path"] = "acquire_notify" if peripheral.stats["notify_fd"] else "properties_changed"
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    return asyncio.run(_bench(args))
