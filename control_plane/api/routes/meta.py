"""Languages, health, readiness and metrics."""

from __future__ import annotations

import asyncio

from aiohttp import web

from control_plane.metrics import CONTENT_TYPE_LATEST

from ..protocol import LanguagePair, Languages
from ..state import runtime_of

routes = web.RouteTableDef()


@routes.get("/api/v1/languages")
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
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
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
async def metrics(request: web.Request) -> web.Response:
    svc = runtime_of(request)
    body = svc.metrics.render(svc.queue.depth())
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
