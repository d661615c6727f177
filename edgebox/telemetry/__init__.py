"""OpenTelemetry for edgebox: one set-up for every process, W3C propagation, OTLP/HTTP export off by default.

Theory of operation:
* `Telemetry.create(TelemetryConfig(...))` builds a private `TracerProvider` (never the process-global
  one, so a test can run a box and two gateway replicas in one process, each its own service) with the
  `service.name` resource attribute. Spans are always created — they carry the W3C trace context from
  hop to hop, and their ids are what the audit log and the prompt log record — but they are exported
  only when `otlp_endpoint` is set: then a `BatchSpanProcessor` posts OTLP/HTTP protobuf to
  `<otlp_endpoint>/v1/traces` (the collector's standard path). With no endpoint nothing leaves the process.
* `extract(headers)` reads a `traceparent` (and `tracestate`) into a parent `Context`;
  a missing or malformed header yields a fresh root — never an error. `inject(headers)` writes the
  current span's context; `traceparent(span)` formats one span's context; `context_from_traceparent`
  accepts the header text stored in a message (the phone's `Prompt.trace`).
* Span attributes never hold prompt text, keys or tokens: callers set ids, decisions, sizes and codes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "Context",
    "Span",
    "SpanKind",
    "Status",
    "StatusCode",
    "Telemetry",
    "TelemetryConfig",
    "context_from_traceparent",
    "extract",
    "inject",
    "span_ids",
    "traceparent",
]

_PROPAGATOR = TraceContextTextMapPropagator()


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    service_name: str = "edgebox"
    otlp_endpoint: str | None = None  # e.g. http://collector:4318 ; None = no export (default)
    otlp_headers: Mapping[str, str] = field(default_factory=dict)
    export_timeout_s: float = 5.0
    batch: bool = True  # False: export each span as it ends (tests, short-lived CLIs)


class Telemetry:
    """A tracer provider for one component; `shutdown()` flushes and stops its exporter."""

    def __init__(self, provider: TracerProvider, cfg: TelemetryConfig) -> None:
        self.provider = provider
        self.cfg = cfg
        self.tracer: Tracer = provider.get_tracer("edgebox")

    @classmethod
    def create(cls, cfg: TelemetryConfig | None = None, *, exporter: SpanExporter | None = None) -> Telemetry:
        cfg = cfg or TelemetryConfig()
        provider = TracerProvider(resource=Resource.create({"service.name": cfg.service_name}))
        if exporter is None and cfg.otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(
                endpoint=cfg.otlp_endpoint.rstrip("/") + "/v1/traces",
                headers=dict(cfg.otlp_headers),
                timeout=cfg.export_timeout_s,
            )
        if exporter is not None:
            processor = BatchSpanProcessor(exporter) if cfg.batch else SimpleSpanProcessor(exporter)
            provider.add_span_processor(processor)
        return cls(provider, cfg)

    @property
    def exporting(self) -> bool:
        return bool(self.cfg.otlp_endpoint)

    @contextmanager
    def span(
        self,
        name: str,
        *,
        parent: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, str | int | float | bool] | None = None,
    ) -> Iterator[Span]:
        """A span as a context manager; exceptions mark it as an error (type only, never the text)."""
        with self.tracer.start_as_current_span(
            name,
            context=parent,
            kind=kind,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except BaseException as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise

    def force_flush(self, timeout_s: float = 5.0) -> bool:
        return self.provider.force_flush(int(timeout_s * 1000))

    def shutdown(self) -> None:
        self.provider.shutdown()


def extract(headers: Mapping[str, str]) -> Context:
    """The parent context a request's `traceparent` names (an empty context when absent or bad)."""
    carrier = {k.lower(): v for k, v in headers.items() if k.lower() in ("traceparent", "tracestate")}
    return _PROPAGATOR.extract(carrier, context=Context())


def context_from_traceparent(value: str | None) -> Context:
    return extract({"traceparent": value} if value else {})


def inject(headers: MutableMapping[str, str], ctx: Context | None = None) -> MutableMapping[str, str]:
    """Write the current (or `ctx`'s) span context as `traceparent`/`tracestate` into `headers`."""
    _PROPAGATOR.inject(headers, context=ctx if ctx is not None else otel_context.get_current())
    return headers


def traceparent(span: Span) -> str:
    sc = span.get_span_context()
    return f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"


def span_ids(span: Span) -> tuple[str, str]:
    """(trace id, span id) of a span in the lowercase hex the logs and audit records use."""
    sc = span.get_span_context()
    return f"{sc.trace_id:032x}", f"{sc.span_id:016x}"
