"""edgebox.telemetry: W3C propagation and export (in-memory exporter; OTLP over HTTP in tests/gateway)."""

from __future__ import annotations

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from edgebox.telemetry import (
    Telemetry,
    TelemetryConfig,
    context_from_traceparent,
    extract,
    inject,
    traceparent,
)

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_spans_continue_the_incoming_trace_and_propagate() -> None:
    mem = InMemorySpanExporter()
    tel = Telemetry.create(TelemetryConfig(service_name="t", batch=False), exporter=mem)
    with tel.span("outer", parent=extract({"Traceparent": TP})) as span:
        assert traceparent(span)[3:35] == TP[3:35]
        headers: dict[str, str] = {}
        inject(headers)
        assert headers["traceparent"] == traceparent(span)
    (done,) = mem.get_finished_spans()
    assert done.parent is not None and f"{done.parent.span_id:016x}" == TP[36:52]
    assert done.resource.attributes["service.name"] == "t"
    tel.shutdown()


def test_bad_or_missing_header_is_a_fresh_root() -> None:
    tel = Telemetry.create()
    assert not tel.exporting
    for ctx in (extract({"traceparent": "garbage"}), context_from_traceparent(None)):
        with tel.span("s", parent=ctx) as span:
            assert span.get_span_context().is_valid
            assert traceparent(span)[3:35] != TP[3:35]


def test_exception_marks_error_with_type_only() -> None:
    mem = InMemorySpanExporter()
    tel = Telemetry.create(TelemetryConfig(batch=False), exporter=mem)
    try:
        with tel.span("boom"):
            raise ValueError("secret prompt text")
    except ValueError:
        pass
    (s,) = mem.get_finished_spans()
    assert s.status.description == "ValueError" and not s.events
