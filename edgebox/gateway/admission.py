"""Admission of one chat request: decode → anomaly → classify → estimate → reserve.

Theory of operation: `plan(body, default_max_tokens)` is the pure part — bytes in, a `Plan` out (or
`RequestInvalid`): the strict decode, every text a model will read (for the classifier), the request
exactly as it will be forwarded (completion cap set, the usage chunk forced on streams) and its token
estimate. The estimate is a true upper bound: the UTF-8 size of everything the upstream tokenizes
(a byte-level BPE tokenizer never makes more tokens than bytes), plus chat-template framing per
message, plus the completion cap times `n`. `Admission.admit` then runs the stages that consult
shared state, each in its own span: the anomaly watch (prompt digest and rate), the classifier (all
texts, batched), and the quota reservation (which also bounds how many requests of one device are in
flight). Every stage either passes or raises the `GatewayError` the client receives, and records what
it learned in the request's `Outcome` for the audit record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import msgspec

from edgebox.gateway.anomaly import AnomalyVerdict, AnomalyWatch
from edgebox.gateway.errors import GatewayError
from edgebox.gateway.identity import DeviceIdentity
from edgebox.pipeline.classifier import Decision, InjectionPolicy
from edgebox.pipeline.openai_schema import (
    ChatCompletionRequest,
    RequestInvalid,
    StreamOptions,
    completion_cap,
    decode_request,
    request_texts,
)
from edgebox.pipeline.quota import (
    QuotaBackend,
    QuotaExceeded,
    QuotaInFlight,
    QuotaLimit,
    QuotaRequestTooLarge,
    Reservation,
)
from edgebox.telemetry import Telemetry

FRAMING_TOKENS_PER_MESSAGE = 8
_ENC = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Plan:
    request: ChatCompletionRequest  # as it will be forwarded
    texts: list[str]
    estimate: int
    client_wants_usage: bool
    digest_source: bytes  # what the anomaly watch digests (the encoded messages)


def upper_bound_tokens(req: ChatCompletionRequest, cap: int) -> int:
    tokenized = len(_ENC.encode(req.messages))
    if req.tools:
        tokenized += len(_ENC.encode(req.tools))
    if req.response_format is not None:
        tokenized += len(_ENC.encode(req.response_format))
    n = int(req.n or 1)
    return tokenized + FRAMING_TOKENS_PER_MESSAGE * (len(req.messages) + 1) + cap * n


def plan(body: bytes, *, default_max_tokens: int) -> Plan:
    """The pure part of admission (raises RequestInvalid)."""
    req = decode_request(body)
    cap = completion_cap(req)
    if cap is None:
        cap = default_max_tokens
        req = msgspec.structs.replace(req, max_tokens=cap)
    wants = req.stream_options is not None and req.stream_options.include_usage
    if req.stream and not wants:
        req = msgspec.structs.replace(req, stream_options=StreamOptions(include_usage=True))
    return Plan(
        request=req,
        texts=request_texts(req),
        estimate=upper_bound_tokens(req, cap),
        client_wants_usage=wants,
        digest_source=_ENC.encode(req.messages),
    )


class Outcome:
    """Mutable per-request facts for the audit record and the metrics."""

    __slots__ = (
        "completion_tokens",
        "decision",
        "estimate",
        "model",
        "phone",
        "prompt_tokens",
        "score",
        "stream",
    )

    def __init__(self) -> None:
        self.decision = "reject"
        self.model: str | None = None
        self.stream = False
        self.score: float | None = None
        self.estimate: int | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.phone: str | None = None


@dataclass(frozen=True, slots=True)
class Admitted:
    plan: Plan
    reservation: Reservation


# What admission does with a verdict (revoke the box / suspend the phone, alert, audit): the app's job.
OnVerdict = Callable[[DeviceIdentity, AnomalyVerdict], Awaitable[None]]
Scorer = Callable[[Sequence[str]], Awaitable[list[float]]]


class Admission:
    def __init__(
        self,
        *,
        anomaly: AnomalyWatch,
        score: Scorer,
        policy: InjectionPolicy,
        quota: Callable[[], QuotaBackend],
        limit: QuotaLimit,
        default_max_tokens: int,
        telemetry: Telemetry,
        on_verdict: OnVerdict,
        on_score: Callable[[float, Decision], None] = lambda s, d: None,
    ) -> None:
        self.anomaly = anomaly
        self._score = score
        self.policy = policy
        self._quota = quota
        self.limit = limit
        self.default_max_tokens = default_max_tokens
        self._tel = telemetry
        self._on_verdict = on_verdict
        self._on_score = on_score

    async def _verdict(self, ident: DeviceIdentity, verdict: AnomalyVerdict | None) -> None:
        if verdict is not None:
            await self._on_verdict(ident, verdict)

    async def admit(self, body: bytes, ident: DeviceIdentity, phone: str | None, out: Outcome) -> Admitted:
        tel = self._tel
        box = ident.box_id
        with tel.span("gateway.admission") as span:
            try:
                p = plan(body, default_max_tokens=self.default_max_tokens)
            except RequestInvalid as exc:
                span.set_attribute("edgebox.code", exc.code)
                await self._verdict(ident, await self.anomaly.observe_validation_failure(box, phone))
                raise GatewayError(exc.code, str(exc), param=exc.path) from None
            req = p.request
            out.model = req.model
            out.stream = req.stream
            digest = self.anomaly.prompt_digest(p.digest_source) if self.anomaly.cfg.enabled else None
            verdict = await self.anomaly.observe_request(box, digest)
            if verdict is not None:
                await self._verdict(ident, verdict)
                raise GatewayError("certificate_revoked", "client certificate has been revoked")

        with tel.span("gateway.classifier", attributes={"edgebox.texts": len(p.texts)}) as span:
            scores = await self._score(p.texts) if p.texts else []
            out.score = score = max(scores) if scores else 0.0
            decision = self.policy.decide(score)
            span.set_attribute("edgebox.score", score)
            span.set_attribute("edgebox.decision", decision.value)
            self._on_score(score, decision)
        if decision is Decision.block:
            out.decision = "block"
            await self._verdict(ident, await self.anomaly.observe_blocked_injection(box, phone))
            raise GatewayError("prompt_blocked", "the prompt was blocked by the injection policy")

        out.estimate = p.estimate
        with tel.span("gateway.quota", attributes={"edgebox.estimate_tokens": p.estimate}) as span:
            try:
                reservation = await self._quota().reserve(box, p.estimate, self.limit)
            except QuotaExceeded as exc:
                out.decision = "quota"
                span.set_attribute("edgebox.code", "quota_exceeded")
                raise GatewayError("quota_exceeded", str(exc), retry_after=exc.retry_after) from None
            except QuotaInFlight as exc:
                out.decision = "quota"
                span.set_attribute("edgebox.code", "quota_exceeded")
                raise GatewayError("quota_exceeded", str(exc), retry_after=exc.retry_after) from None
            except QuotaRequestTooLarge as exc:
                out.decision = "quota"
                raise GatewayError(exc.code, str(exc), param="$.max_tokens") from None
        out.decision = decision.value
        return Admitted(p, reservation)
