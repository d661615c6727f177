"""sd_notify(3) in a few lines: READY=1, WATCHDOG=1, STOPPING=1, STATUS=... over `$NOTIFY_SOCKET`.

Theory of operation: systemd (unit `Type=notify`, `NotifyAccess=main`) passes the path of a datagram
socket in `$NOTIFY_SOCKET` (a leading `@` means the abstract namespace) and, with `WatchdogSec=`,
the interval in `$WATCHDOG_USEC` (checked against `$WATCHDOG_PID` when set). `Notifier` sends one
datagram per state change and is a no-op when there is no socket, so the daemon runs the same under
systemd, in a test, or in a terminal. The watchdog ping goes out at half the interval, from the event
loop itself: a wedged loop stops pinging and systemd restarts the service.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping

from edgebox.log import get_logger

log = get_logger("edgebox.box.notify")


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        path = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if path.startswith("@"):
            self.address = "\0" + path[1:]
        elif path.startswith("/"):
            self.address = path
        self.watchdog_s: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            log.warning("sd_notify_failed", error=type(exc).__name__)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    async def watchdog_loop(self) -> None:
        """Ping at half the watchdog interval until cancelled (returns at once without a watchdog)."""
        if self.watchdog_s is None or not self.enabled:
            return
        while True:
            self.watchdog()
            await asyncio.sleep(self.watchdog_s / 2)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
