"""Prometheus figures for one gateway replica, served on their own loopback port (`metrics_port`).

Theory of operation: a private `CollectorRegistry` per replica (several replicas can live in one test
process) with the figures an operator alerts on: requests by route and status, refusals by code,
tokens estimated and charged, quota rejections, classifier decisions and scoring time, upstream
latency, open connections and connections refused by the caps. Labels carry codes and routes only —
never a device id, a phone id or any request content (unbounded label sets are a memory leak, and
device ids belong in the audit log). `/metrics` is plain HTTP on a port of its own so a scraper needs
no device certificate.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class GatewayMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "edgebox_gateway_requests", "Requests handled", ["route", "status"], registry=r
        )
        self.refusals = Counter("edgebox_gateway_refusals", "Refusals by error code", ["code"], registry=r)
        self.tokens_estimated = Counter(
            "edgebox_gateway_tokens_estimated", "Tokens reserved at admission", registry=r
        )
        self.tokens_charged = Counter(
            "edgebox_gateway_tokens_charged", "Tokens charged after usage", registry=r
        )
        self.quota_rejections = Counter("edgebox_gateway_quota_rejections", "Quota refusals", registry=r)
        self.classifier_decisions = Counter(
            "edgebox_gateway_classifier_decisions", "Classifier decisions", ["decision"], registry=r
        )
        self.classifier_seconds = Histogram(
            "edgebox_gateway_classifier_seconds",
            "Classifier time per batch",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "edgebox_gateway_upstream_seconds", "Upstream time to response headers and body", registry=r
        )
        self.anomaly_verdicts = Counter(
            "edgebox_gateway_anomaly_verdicts", "Anomaly verdicts", ["level", "reason"], registry=r
        )
        self.connections_open = Gauge("edgebox_gateway_connections_open", "Open TLS connections", registry=r)
        self.connections_refused = Gauge(
            "edgebox_gateway_connections_refused", "Connections refused by the caps (total)", registry=r
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    async def handle(self, request: web.Request) -> web.Response:
        resp = web.Response(body=self.exposition())
        resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return resp
