"""The upstream relay: send one validated request upstream and relay the answer back.

Theory of operation: the validated request is re-encoded (the upstream sees exactly what was
validated) and posted on one shared keep-alive session with the upstream key injected — the only
place the key is ever used — and the W3C `traceparent` of the upstream span. Answers go back with only
our own headers: nothing identifying the upstream. Upstream failures become typed gateway errors; the
upstream's error text is never relayed.
* JSON answers are read under `MAX_UPSTREAM_BODY`, counted as they arrive (a chunked answer without
  Content-Length is capped too), and their `usage` block is read.
* Streams go through the shared sans-I/O `SseParser` + `UsageFilter` (edgebox.pipeline.sse): every
  event is parsed, the forced usage-only chunk is dropped when the client did not ask for it, and the
  last usage block is kept for billing.
* `capture=True` keeps a copy of what the client received (bounded), so an idempotent retry can be
  answered with the stored outcome instead of a second upstream call.
`Relayed.charged` says what the reservation should be reconciled to: real usage, 0 when the upstream
certainly did no work, or None (keep the estimate) when that is unknown.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import aiohttp
import msgspec
from aiohttp import web

from edgebox.gateway.errors import GatewayError
from edgebox.gateway.secret import UpstreamKey
from edgebox.log import get_logger
from edgebox.pipeline.openai_schema import ChatCompletionRequest, encode_request
from edgebox.pipeline.sse import USAGE_DECODER, SseError, SseParser, Usage, UsageFilter

log = get_logger("edgebox.gateway")

MAX_UPSTREAM_BODY = 16 * 1024 * 1024
MAX_SSE_EVENT = 1024 * 1024
MAX_CAPTURE = 1024 * 1024
SERVER_HEADER = "edgebox"


@dataclass(slots=True)
class Relayed:
    response: web.StreamResponse | None = None
    usage: Usage | None = None
    charged: int | None = None  # None: keep the estimate
    forwarded: bool = False  # the upstream may have done work
    captured: list[bytes] | None = field(default=None)
    captured_size: int = 0

    def keep(self, data: bytes) -> None:
        if self.captured is not None:
            self.captured_size += len(data)
            if self.captured_size > MAX_CAPTURE:
                self.captured = None  # too large to replay: the retry is told it cannot be
            else:
                self.captured.append(data)


class UpstreamRelay:
    def __init__(self, session: aiohttp.ClientSession, url: str, key: UpstreamKey | None) -> None:
        self._session = session
        self._url = url.rstrip("/") + "/chat/completions"
        self._key = key

    async def forward(
        self,
        request: web.Request,
        req: ChatCompletionRequest,
        headers_out: dict[str, str],
        *,
        upstream_traceparent: str,
        client_wants_usage: bool,
        capture: bool,
        out: Relayed,
    ) -> Relayed:
        """Relay into `out` (filled in as it goes, so a caller's `finally` sees how far it got)."""
        headers = {"Content-Type": "application/json", "traceparent": upstream_traceparent}
        if self._key is not None:
            headers["Authorization"] = self._key.authorization()
        if capture:
            out.captured = []
        try:
            upstream = await self._session.post(self._url, data=encode_request(req), headers=headers)
        except TimeoutError:  # first: TimeoutError is an OSError; the upstream may have done the work
            out.forwarded = True
            log.warning("upstream_timeout")
            raise GatewayError("upstream_timeout", "the upstream did not answer in time") from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            out.charged = 0
            log.warning("upstream_unavailable", error=type(exc).__name__)
            raise GatewayError("upstream_unavailable", "the upstream could not be reached") from None
        out.forwarded = True
        async with upstream:
            if upstream.status != 200:
                out.charged = 0
                log.warning("upstream_status", status=upstream.status)
                if upstream.status == 429:
                    raise GatewayError(
                        "upstream_busy", "the upstream is rate limiting; retry later", retry_after=5
                    )
                raise GatewayError("upstream_error", f"the upstream answered with status {upstream.status}")
            if req.stream:
                await self._relay_stream(request, upstream, headers_out, client_wants_usage, out)
            else:
                await self._relay_json(upstream, headers_out, out)
        if out.usage is not None:
            out.charged = out.usage.total
        return out

    async def _relay_json(
        self, upstream: aiohttp.ClientResponse, headers_out: dict[str, str], out: Relayed
    ) -> None:
        if upstream.content_length is not None and upstream.content_length > MAX_UPSTREAM_BODY:
            raise GatewayError("upstream_error", "the upstream answer is too large")
        parts: list[bytes] = []
        size = 0
        try:
            # the cap holds for chunked answers too: counted as it is read, never buffered past it
            async for part in upstream.content.iter_any():
                size += len(part)
                if size > MAX_UPSTREAM_BODY:
                    raise GatewayError("upstream_error", "the upstream answer is too large")
                parts.append(part)
        except TimeoutError:
            log.warning("upstream_timeout")
            raise GatewayError("upstream_timeout", "the upstream did not answer in time") from None
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("upstream_body_broken", error=type(exc).__name__)
            raise GatewayError("upstream_error", "the upstream answer was cut short") from None
        data = b"".join(parts)
        try:
            out.usage = USAGE_DECODER.decode(data).usage
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise GatewayError("upstream_error", "the upstream answer was not valid JSON") from None
        out.keep(data)
        out.response = web.Response(body=data, content_type="application/json", headers=headers_out)

    async def _relay_stream(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        headers_out: dict[str, str],
        client_wants_usage: bool,
        out: Relayed,
    ) -> None:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **headers_out}
        )
        out.response = resp
        parser = SseParser(MAX_SSE_EVENT)
        relay = UsageFilter(client_wants_usage=client_wants_usage)
        client_gone = False
        try:
            await resp.prepare(request)
        except (ConnectionResetError, ConnectionAbortedError):
            # Gone while the upstream was still thinking: the same rule as mid-stream below.
            if out.captured is None:
                log.info("client_disconnected_before_stream")
                return
            client_gone = True
            log.info("client_disconnected_mid_stream_reading_on")

        async def send(data: bytes) -> None:
            # An idempotent request whose client went away mid-stream (a box killed or cut off) is
            # read to the end, so the stored outcome a retry gets is the whole answer, not a prefix
            # (box issue 11, contract 6). Without capture there is nobody to read it for: stop.
            nonlocal client_gone
            out.keep(data)
            if client_gone:
                return
            try:
                await resp.write(data)
            except (ConnectionResetError, ConnectionAbortedError):
                if out.captured is None:
                    raise
                client_gone = True
                log.info("client_disconnected_mid_stream_reading_on")

        try:
            try:
                async for chunk in upstream.content.iter_any():
                    forward = [b for ev in parser.feed(chunk) if (b := relay.forward(ev)) is not None]
                    out.usage = relay.usage
                    if forward:
                        await send(b"".join(forward))
                tail = [b for ev in parser.close() if (b := relay.forward(ev)) is not None]
                out.usage = relay.usage
                if tail:
                    await send(b"".join(tail))
            except SseError as exc:
                out.captured = None
                log.warning("upstream_stream_broken", error=exc.code)
            if not client_gone:
                await resp.write_eof()
        except (ConnectionResetError, ConnectionAbortedError):
            log.info("client_disconnected_mid_stream")
            out.usage = relay.usage if relay.usage is not None else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            out.captured = None
            log.warning("upstream_stream_broken", error=type(exc).__name__)
            with contextlib.suppress(ConnectionError):
                await resp.write_eof()
