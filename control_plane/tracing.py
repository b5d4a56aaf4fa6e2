"""OpenTelemetry: one trace per job, from the API through the queue to the worker and the
inference call.

- ``configure(settings)`` installs the tracer provider once per process
  (``MTB_TRACING=off|console|otlp``; OTLP goes to ``MTB_OTLP_ENDPOINT`` over gRPC).
  Without it every span below is a no-op, which is what tests and benchmarks get.
- The submit span's context travels in ``ChunkMessage.headers`` (W3C traceparent), the same
  headers the Kafka queue puts on its records, so the worker's spans join the job's trace.
"""

from __future__ import annotations

import logging

from opentelemetry import context, propagate, trace

log = logging.getLogger(__name__)
tracer = trace.get_tracer("mt-backend")
_configured = False


def configure(settings) -> None:  # noqa: ANN001
    global _configured
    mode = settings.tracing
    if _configured or mode == "off":
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": "mt-backend"}))
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
    log.info("tracing on", extra={"mode": mode})


def inject(headers: dict[str, str] | None = None) -> dict[str, str]:
    """The current span's context as message headers."""
    headers = {} if headers is None else headers
    propagate.inject(headers)
    return headers


def extract(headers: dict[str, str] | None) -> context.Context:
    return propagate.extract(headers or {})


def trace_id() -> str | None:
    """The current trace id (hex) for log lines, or None."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
