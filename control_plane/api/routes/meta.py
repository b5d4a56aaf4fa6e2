"""Languages, health, readiness and metrics."""

from __future__ import annotations

import asyncio

from aiohttp import web

from control_plane.metrics import CONTENT_TYPE_LATEST

from ..openapi import json_spec, operation, ref
from ..protocol import LanguagePair, Languages
from ..state import runtime_of

routes = web.RouteTableDef()


@routes.get("/api/v1/languages")
@operation(
    {
        "summary": "Language pairs served",
        "operationId": "listLanguages",
        "responses": {"200": json_spec(ref("Languages"), "Pairs and model versions")},
    }
)
async def languages(request: web.Request) -> web.Response:
    svc = runtime_of(request)
    ready = svc.client.ready()
    pairs = (
        [LanguagePair(source=s, target=t, model_version=svc.client.model_version(s, t))
         for s, t in svc.client.pairs()]
        if ready else []
    )  # fmt: skip
    body = Languages(pairs=pairs, ready=ready)
    return web.Response(text=body.model_dump_json(), content_type="application/json")


@routes.get("/healthz")
@operation(
    {
        "summary": "Liveness",
        "operationId": "healthz",
        "responses": {"200": {"description": "The process is up"}},
    }
)
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
@operation(
    {
        "summary": "Readiness (database and engine)",
        "operationId": "readyz",
        "responses": {
            "200": {"description": "Ready"},
            "503": {"description": "Not ready (engine loading or database down)"},
        },
    }
)
async def readyz(request: web.Request) -> web.Response:
    svc = runtime_of(request)
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(svc.db.run(svc.db.ping), 5)
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        checks["database"] = f"error: {type(exc).__name__}"
    if svc.client.ready():
        checks["inference"] = "ok"
    elif svc.engine_error:
        checks["inference"] = f"error: {svc.engine_error}"
    else:
        checks["inference"] = "loading"
    checks["workers"] = f"{sum(1 for w in svc.workers if not w.done())} running"
    ok = checks["database"] == "ok" and checks["inference"] == "ok"
    return web.json_response(
        {"status": "ready" if ok else "not_ready", "checks": checks}, status=200 if ok else 503
    )


@routes.get("/metrics")
@operation(
    {
        "summary": "Prometheus metrics",
        "operationId": "metrics",
        "responses": {
            "200": {
                "description": "Text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
        },  # fmt: skip
    }
)
async def metrics(request: web.Request) -> web.Response:
    svc = runtime_of(request)
    body = svc.metrics.render(svc.queue.depth())
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
