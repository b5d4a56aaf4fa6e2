"""OpenTelemetry: one trace per job, from the REST request (or the ingest producer) through
the queue, the workers, the database, the cache and Triton to the webhook.

- ``configure(settings)`` installs the tracer provider once per process
  (``MTB_TRACING=off|console|otlp``; OTLP goes to ``MTB_OTLP_ENDPOINT`` over gRPC;
  ``MTB_TRACING_SAMPLE_RATIO`` samples root spans, critical jobs always). Without it every
  span below is a no-op, which is what tests and benchmarks get.
- The context travels as W3C ``traceparent``: REST requests' headers (the API's server
  span, ``control_plane.api.tracing_middleware``), ingest records' Kafka headers,
  ``ChunkMessage.headers`` (the submit span's context; Kafka headers on the chunk topics),
  gRPC metadata on every Triton call (Triton's own spans join the trace).
- Span attributes carry the design's log fields as ``mtb.*`` (``mtb.job_id``,
  ``mtb.priority``, ``mtb.pair``, ``mtb.word_count``, ``mtb.chunk_index``,
  ``mtb.cache_hit``, ``mtb.model_version``, ``mtb.cost_usd``, ...).
- Log lines carry ``trace_id``/``span_id`` of the current span (``control_plane.logs``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Link, SpanKind

log = logging.getLogger(__name__)
tracer = trace.get_tracer("mt-backend")
_configured = False

PRIORITY = "mtb.priority"


def sampler(ratio: float):  # noqa: ANN201 - an opentelemetry.sdk.trace.sampling.Sampler
    """Parent-based sampling at ``ratio`` for root spans, except that a span started with
    ``mtb.priority=critical`` is always sampled (a critical job's trace is never lost, even
    under a request span that was not sampled: its trace then starts at ``job.submit``)."""
    from opentelemetry.sdk.trace.sampling import (
        Decision,
        ParentBased,
        Sampler,
        SamplingResult,
        TraceIdRatioBased,
    )

    class CriticalAlwaysSampler(Sampler):
        def __init__(self, ratio: float):
            self.ratio = min(max(float(ratio), 0.0), 1.0)
            self.base = ParentBased(TraceIdRatioBased(self.ratio))

        def should_sample(  # noqa: PLR0913 - the Sampler interface
            self,
            parent_context,  # noqa: ANN001
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes=None,  # noqa: ANN001
            links: Sequence[Link] | None = None,
            trace_state=None,  # noqa: ANN001
        ) -> SamplingResult:
            if attributes and attributes.get(PRIORITY) == "critical":
                parent = trace.get_current_span(parent_context).get_span_context()
                state = parent.trace_state if parent.is_valid else None
                return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, state)
            return self.base.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return f"CriticalAlways{{{self.base.get_description()}}}"

    return CriticalAlwaysSampler(ratio)


def configure(settings) -> None:  # noqa: ANN001
    global _configured
    mode = settings.tracing
    if _configured or mode == "off":
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(
        resource=Resource.create({"service.name": "mt-backend"}),
        sampler=sampler(settings.tracing_sample_ratio),
    )
    if mode == "console":
        exporter = ConsoleSpanExporter()
    elif mode == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint, insecure=True)
    else:
        raise ValueError(f"MTB_TRACING must be off, console or otlp, not {mode!r}")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured = True
    log.info(
        "tracing on",
        extra={"mode": mode, "sample_ratio": settings.tracing_sample_ratio,
               "otlp_endpoint": settings.otlp_endpoint if mode == "otlp" else None},
    )  # fmt: skip


def memory_exporter():  # noqa: ANN201 - an InMemorySpanExporter
    """For tests: every span of this process also goes to the returned in-memory exporter
    (installs an SDK provider sampling everything when none is installed yet; the global
    provider can be set only once per process, so tests share it and ``clear()`` it)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
    existing = getattr(provider, "_mtb_memory_exporter", None)
    if existing is not None:
        return existing
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider._mtb_memory_exporter = exporter  # noqa: SLF001
    return exporter


def inject(headers: dict[str, str] | None = None, ctx: context.Context | None = None) -> dict:
    """The current span's (or ``ctx``'s) context as message headers."""
    headers = {} if headers is None else headers
    propagate.inject(headers, context=ctx)
    return headers


def extract(headers: Mapping[str, str] | None) -> context.Context:
    return propagate.extract(dict(headers or {}))


def has_context(headers: Mapping[str, str] | None) -> bool:
    """True when ``headers`` carry a valid W3C trace context."""
    if not headers or "traceparent" not in headers:
        return False
    return trace.get_current_span(extract(headers)).get_span_context().is_valid


@contextlib.contextmanager
def attached(ctx: context.Context | None) -> Iterator[None]:
    """Make ``ctx`` the current context inside the block (None: no change)."""
    if ctx is None:
        yield
        return
    token = context.attach(ctx)
    try:
        yield
    finally:
        context.detach(token)


def span_context(span: trace.Span) -> context.Context:
    """A context whose current span is ``span`` (also after it ended: children may still
    point at it)."""
    return trace.set_span_in_context(span)


def trace_id() -> str | None:
    """The current trace id (hex) for log lines, or None."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the current span in hex, or None outside any span."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def job_attributes(job) -> dict:  # noqa: ANN001 - a db.Job
    """The design's log fields of a finished job as span attributes (None values left out)."""
    values = {
        "mtb.job_id": job.id,
        "mtb.priority": job.priority,
        "mtb.pair": f"{job.source_lang}-{job.target_lang}",
        "mtb.word_count": job.word_count,
        "mtb.status": job.status,
        "mtb.model_version": job.model_version,
        "mtb.cost_usd": job.cost_usd,
        "mtb.processing_time_ms": job.processing_time_ms,
        "mtb.words_per_minute": job.words_per_minute,
    }
    return {k: v for k, v in values.items() if v is not None}
