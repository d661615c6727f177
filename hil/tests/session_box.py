"""The box for the session HIL tests: BoxServer (the lead's protocol) over the BLE peripheral.

    python hil/tests/session_box.py --adapter hci0 --name ebx-hil --invites DIR [--adv-instances 2]

Writes DIR/box.json (box id, key hash) and DIR/invite-N.txt pairing codes (0600; test material, never
logged), serves pairing/sessions/prompts with the EchoResponder, and prints JSON events (ready,
state) on stdout. On a real Pi the same is `edgebox box run` with the BLE transport.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edgebox.ble.layout import BoxInfo
from edgebox.ble.peripheral import BlePeripheral, ListenerState, PeripheralConfig
from edgebox.box.identity import BoxIdentity
from edgebox.box.registry import MemoryRegistry
from edgebox.box.responder import EchoResponder
from edgebox.box.server import BoxServer
from edgebox.log import configure_logging
from edgebox.session.handshake import PROTOCOL_VERSION
from edgebox.session.invite import new_invite


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}, sort_keys=True), flush=True)


async def amain(args: argparse.Namespace) -> None:
    identity = BoxIdentity.generate()
    registry = MemoryRegistry()
    out = Path(args.invites)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(args.count):
        invite = new_invite(identity.box_id, identity.key_hash, time.time(), ttl=3600)
        registry.add_invite(invite)
        path = out / f"invite-{i}.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(invite.encode())
    (out / "box.json").write_text(json.dumps({"box_id": identity.box_id_hex}))
    server = BoxServer(identity, registry, EchoResponder(piece=args.piece))
    config = PeripheralConfig(
        box=BoxInfo(PROTOCOL_VERSION, identity.box_id_hex, identity.key_hash),
        adapter=args.adapter,
        name=args.name,
        advertisement_instances=args.adv_instances,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    peripheral = BlePeripheral(config, on_state=lambda s: emit("state", state=s.value))
    async with peripheral:
        state = await peripheral.wait_state(ListenerState.ADVERTISING, ListenerState.FAILED, timeout=30)
        emit("ready", state=state.value, box_id=identity.box_id_hex)
        serving = asyncio.create_task(server.serve(peripheral))
        await stop.wait()
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
    emit("stats", **vars(server.stats))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--adapter", default="hci0")
    parser.add_argument("--name", default="ebx-hil")
    parser.add_argument("--invites", required=True)
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--piece", type=int, default=400)
    parser.add_argument("--adv-instances", type=int, default=1)
    args = parser.parse_args()
    configure_logging("info")
    asyncio.run(amain(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
