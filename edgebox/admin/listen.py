"""Where the admin page listens: a socket handed over by systemd, else the configured address.

Theory of operation: under systemd, `edgebox-admin.socket` binds the HTTPS port (so the service
needs no capability) and passes it as an inherited fd (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`,
fds from 3, sd_listen_fds(3)). `activated_socket("admin")` returns the fd named `admin` as a socket
when the variables are meant for this process, else None; the caller then binds `[admin] listen`
and `port` itself.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

SD_LISTEN_FDS_START = 3


def activated_socket(name: str = "admin", environ: Mapping[str, str] | None = None) -> socket.socket | None:
    env = os.environ if environ is None else environ
    try:
        if int(env.get("LISTEN_PID", "-1")) != os.getpid():
            return None
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    if count <= 0:
        return None
    names = env.get("LISTEN_FDNAMES", "").split(":") if env.get("LISTEN_FDNAMES") else []
    if names:
        if name not in names[:count]:
            return None
        index = names.index(name)
    elif count == 1:
        index = 0  # one unnamed socket: it is ours
    else:
        return None
    fd = SD_LISTEN_FDS_START + index
    os.set_inheritable(fd, False)
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return sock


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(64)
    sock.setblocking(False)
    return sock
