"""The web phone client: a static bundle (`static/`) of plain ES modules, and its aiohttp route.

Theory of operation: the page in `static/` is the whole phone (framing, handshake, records, UI,
WebCrypto keystore, Web Bluetooth and WebSocket links: see docs/phone-web.md). It needs no build
step and no server logic, so any HTTPS host can serve the folder as it is. `routes()` is how the
box's admin server serves it at `/phone/`: a fixed allow-list of the bundle's files taken once at
start-up (no path from the request ever reaches the file system), the right media types for ES
modules and the manifest, `no-cache` so the service worker sees updates, and a strict Content
Security Policy (scripts, styles and connections from the page's own origin only, plus ws/wss for
the development transport).

The JavaScript tooling (tsc, eslint) lives beside it in package.json; `node_modules/` is only for
`make lint` and is never served.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

BUNDLE = Path(__file__).resolve().parent / "static"
PREFIX = "/phone/"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".webmanifest": "application/manifest+json",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self' ws: wss:; worker-src 'self'; manifest-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)


def bundle_files(root: Path = BUNDLE) -> dict[str, Path]:
    """Relative URL path -> file, for every servable file of the bundle."""
    files: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in _TYPES:
            files[path.relative_to(root).as_posix()] = path
    return files


def routes(prefix: str = PREFIX, root: Path = BUNDLE) -> list[web.RouteDef]:
    """aiohttp routes serving the bundle under `prefix` (which must end with "/")."""
    if not prefix.startswith("/") or not prefix.endswith("/"):
        raise ValueError("prefix must start and end with '/'")
    files = {name: (path.read_bytes(), _TYPES[path.suffix]) for name, path in bundle_files(root).items()}

    def handler(body: bytes, ctype: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(_request: web.Request) -> web.StreamResponse:
            return web.Response(
                body=body,
                headers={
                    "Content-Type": ctype,
                    "Cache-Control": "no-cache",
                    "Content-Security-Policy": CSP,
                    "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer",
                    "Permissions-Policy": "camera=(self), microphone=()",
                },
            )

        return serve

    async def redirect(_request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect(prefix)

    out = [web.get(prefix.rstrip("/"), redirect)]
    if "index.html" in files:
        out.append(web.get(prefix, handler(*files["index.html"])))
    out.extend(web.get(prefix + name, handler(body, ctype)) for name, (body, ctype) in files.items())
    return out
