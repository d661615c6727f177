"""The local control socket: operator commands (`edgebox box invite|phones|revoke|docs ...`) reach
the running daemon, which alone holds the store key (on a real box it exists only as the unit's sealed
credential, so the CLI cannot open the store itself).

Theory of operation: an AF_UNIX stream socket (default `<state_dir>/control.sock`, mode 0600, in the
0700 state directory). Each connection's peer is checked with SO_PEERCRED before anything is read:
only root, the daemon's own uid, and uids listed in `[box] control_uids` are served; anyone else gets
`control_forbidden` and the connection is closed. Under the unit's `PrivateUsers=yes` the
daemon sees every uid other than root and its own as the overflow uid 65534, so only those two
can be told apart there: `control_uids` is for development and unsandboxed runs, and 65534 is
refused in it. The protocol is JSON lines: one request
`{"op": NAME, "args": {...}}`, then zero or more `{"progress": {...}}` lines and one final
`{"ok": RESULT}` or `{"error": {"code": ..., "message": ...}}`. Requests map 1:1 onto `BoxControl`
(the same facade the admin page uses). Document contents travel in the request (base64), so the
daemon never needs read access to the operator's files. Errors are the typed `EdgeboxError` codes and
messages, which are safe to show; an unexpected failure is `internal` without details.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgebox.box.control import BoxControl, as_json
from edgebox.errors import EdgeboxError
from edgebox.log import get_logger

log = get_logger("edgebox.box.control")

MAX_REQUEST_BYTES = 48 * 1024 * 1024


class ControlError(EdgeboxError):
    code = "control_failed"


class ControlUnavailableError(ControlError):
    code = "box_not_running"


class ControlForbiddenError(ControlError):
    code = "control_forbidden"


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class ControlServer:
    def __init__(self, control: BoxControl, path: Path, *, allowed_uids: list[int] | None = None) -> None:
        self.control = control
        self.path = path
        self.allowed = {0, os.geteuid(), *(allowed_uids or [])}
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._handle, path=str(self.path), limit=MAX_REQUEST_BYTES
            )
        finally:
            os.umask(old)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        try:
            # The peer is checked before a single byte is read: a refused peer cannot make the
            # daemon buffer a request (up to MAX_REQUEST_BYTES) or hold a reader open.
            writer.transport.pause_reading()  # type: ignore[attr-defined]
            uid = peer_uid(sock)
            if uid not in self.allowed:
                log.warning("control_refused", uid=uid)
                await _refuse(reader, writer)
                return
            writer.transport.resume_reading()  # type: ignore[attr-defined]
            line = await asyncio.wait_for(reader.readline(), 30)
            if not line:
                return
            try:
                req = json.loads(line)
                op = str(req["op"])
                args = req.get("args") or {}
                if not isinstance(args, dict):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                await _send(writer, {"error": {"code": "control_invalid", "message": "malformed request"}})
                return

            async def progress(doc: dict[str, Any]) -> None:
                await _send(writer, {"progress": doc})

            try:
                result = await self._dispatch(op, args, progress)
                await _send(writer, {"ok": as_json(result)})
            except EdgeboxError as exc:
                await _send(writer, {"error": {"code": exc.code, "message": str(exc)}})
            except Exception as exc:
                log.error("control_failed", op=op[:32], error=type(exc).__name__)
                await _send(writer, {"error": {"code": "internal", "message": "internal error"}})
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, TimeoutError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _dispatch(
        self, op: str, args: dict[str, Any], progress: Callable[[dict[str, Any]], Any]
    ) -> Any:
        c = self.control
        if op == "status":
            return await c.status()
        if op == "invite":
            invite = await c.create_invite(args.get("ttl"))
            return {"code": invite.encode(), "expires_at": invite.expires_at}
        if op == "phones":
            return await c.list_phones()
        if op == "rename":
            await c.rename_phone(str(args["phone_id"]), str(args["name"]))
            return {}
        if op == "revoke":
            dropped = await c.revoke_phone(str(args["phone_id"]))
            return {"dropped_sessions": dropped}
        if op == "docs_list":
            return await c.list_documents()
        if op == "docs_remove":
            return await c.remove_document(str(args["ref"]))
        if op == "docs_add":
            return await self._docs_add(args, progress)
        if op == "enroll":
            return await c.enroll(str(args["gateway"]), Path(str(args["ca"])), str(args["token"]))
        if op == "log":
            return await c.prompt_log(int(args.get("limit", 50)), args.get("phone_id"))
        if op == "admin_fingerprint":
            return {"fingerprint": c.admin_fingerprint()}
        if op == "admin_setup_code":
            ttl = args.get("ttl")
            if not isinstance(ttl, int) or isinstance(ttl, bool):
                raise ControlError("ttl must be an integer number of seconds", code="control_invalid")
            return {"code": c.admin_setup_code(ttl)}
        raise ControlError(f"unknown control operation {op[:32]!r}", code="control_invalid")

    async def _docs_add(self, args: dict[str, Any], progress: Callable[[dict[str, Any]], Any]) -> Any:
        files = args.get("files") or []
        loop = asyncio.get_running_loop()
        with tempfile.TemporaryDirectory(prefix="edgebox-docs-") as tmp:
            paths = []
            for i, f in enumerate(files):
                name = Path(str(f["name"])).name
                if name in ("", ".", ".."):
                    name = "document"
                # One folder per file: two files of the same name (from different folders) must
                # not overwrite each other before they are read.
                p = Path(tmp) / str(i) / name
                p.parent.mkdir()
                p.write_bytes(base64.b64decode(f["data"], validate=True))
                paths.append((p, str(f.get("source") or name)))
            updates: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

            def report(name: str, done: int, total: int) -> None:  # called on the store thread
                loop.call_soon_threadsafe(updates.put_nowait, {"file": name, "done": done, "total": total})

            async def relay() -> None:
                while (doc := await updates.get()) is not None:
                    await progress(doc)

            relaying = asyncio.create_task(relay())
            try:
                docs = await self.control.add_documents(
                    [p for p, _ in paths], report, sources=[s for _, s in paths]
                )
            finally:
                updates.put_nowait(None)
                await relaying
            return docs


REFUSED_DISCARD_BYTES = 64 * 1024


async def _refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer a refused peer, then drop (unread, bounded in bytes and time) what it sends until it
    hangs up: closing on its unread request would reset the connection and lose the answer."""
    await _send(writer, {"error": {"code": "control_forbidden", "message": "not allowed"}})
    with contextlib.suppress(Exception):
        writer.write_eof()
    writer.transport.resume_reading()  # type: ignore[attr-defined]
    left = REFUSED_DISCARD_BYTES
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2):
            while left > 0 and (chunk := await reader.read(min(left, 4096))):
                left -= len(chunk)


async def _send(writer: asyncio.StreamWriter, doc: dict[str, Any]) -> None:
    writer.write(json.dumps(doc, separators=(",", ":")).encode() + b"\n")
    await writer.drain()


# -- client (the CLI side) --------------------------------------------------------------------


async def call(
    path: Path,
    op: str,
    args: dict[str, Any] | None = None,
    *,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> Any:
    """One request to the running daemon; raises the daemon's typed error as a `ControlError`."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_REQUEST_BYTES)
    except (FileNotFoundError, ConnectionRefusedError):
        raise ControlUnavailableError(
            f"the box is not running (no control socket at {path}); start it or check [box] control_socket"
        ) from None
    except PermissionError:
        raise ControlForbiddenError(
            f"no permission to use {path} (run as root or the edgebox user)"
        ) from None
    try:
        try:
            writer.write(json.dumps({"op": op, "args": args or {}}).encode() + b"\n")
            await writer.drain()
        except ConnectionError:
            pass  # the daemon refused before reading (e.g. control_forbidden): its answer is still there
        while True:
            try:
                line = await reader.readline()
            except ConnectionError:
                line = b""
            if not line:
                raise ControlError("the box closed the control connection")
            doc = json.loads(line)
            if "progress" in doc:
                if on_progress is not None:
                    on_progress(doc["progress"])
                continue
            if "error" in doc:
                err = doc["error"]
                raise ControlError(
                    str(err.get("message", "failed")), code=str(err.get("code", "control_failed"))
                )
            return doc.get("ok")
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def encode_file(path: Path) -> dict[str, str]:
    return {"name": path.name, "source": str(path), "data": base64.b64encode(path.read_bytes()).decode()}
