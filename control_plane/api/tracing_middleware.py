"""A SERVER span per HTTP request, continuing the caller's W3C ``traceparent``: the job's
``job.submit`` span (and with it the whole job's trace) is a child of the request's span.

Our own middleware rather than opentelemetry-instrumentation-aiohttp-server: its newest
release (0.66b1) pins opentelemetry-api 1.45.1 while this project's SDK (1.45.2) needs
api 1.45.2, so installing it would break the SDK. The span follows the HTTP semantic
conventions' names (``http.request.method``, ``http.route``, ``url.path``,
``http.response.status_code``; named ``METHOD route``). Probes and scrapes (``/healthz``,
``/readyz``, ``/metrics``) get no span.
"""

from __future__ import annotations

from aiohttp import web
from opentelemetry.trace import SpanKind, Status, StatusCode

from control_plane import tracing

UNTRACED = frozenset({"/healthz", "/readyz", "/metrics"})


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


@web.middleware
async def tracing_middleware(request: web.Request, handler):  # noqa: ANN001, ANN201
    if request.path in UNTRACED:
        return await handler(request)
    route = _route(request)
    with tracing.tracer.start_as_current_span(
        f"{request.method} {route}",
        context=tracing.extract(request.headers),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": request.method, "http.route": route,
                    "url.path": request.path, "url.scheme": request.scheme},
        record_exception=True,
        set_status_on_exception=True,
    ) as span:  # fmt: skip
        try:
            resp = await handler(request)
        except web.HTTPException as exc:  # a response raised (404, 405, ...)
            span.set_attribute("http.response.status_code", exc.status)
            if exc.status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            raise
        span.set_attribute("http.response.status_code", resp.status)
        if resp.status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        return resp
