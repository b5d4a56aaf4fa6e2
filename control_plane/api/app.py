"""``create_app(settings)``: the aiohttp application over a process ``Runtime``.

Usable from tests and benchmarks as well as ``mtctl serve``:

    app = create_app(settings)                       # engine per MTB_INFERENCE
    app = create_app(settings, client=my_client)     # any InferenceClient (fakes, Triton)

The parts themselves are built, started and stopped by ``control_plane.runtime``; this
module only adds routes, the tracing and error middlewares and the app's lifecycle hook.
"""

from __future__ import annotations

from aiohttp import web

from control_plane import runtime
from control_plane.inference.base import InferenceClient
from control_plane.queue import ChunkQueue
from control_plane.settings import Settings

from . import openapi
from .errors import error_middleware
from .routes import documents, glossaries, jobs, meta, translate, webui
from .state import RUNTIME
from .tracing_middleware import tracing_middleware


async def _lifecycle(app: web.Application):  # noqa: ANN202
    rt = app[RUNTIME]
    boot = await runtime.start(rt)
    yield
    await runtime.stop(rt, boot)


def create_app(
    settings: Settings | None = None,
    *,
    client: InferenceClient | None = None,
    queue: ChunkQueue | None = None,
) -> web.Application:
    settings = settings or Settings.from_env()
    rt = runtime.build_runtime(settings, client=client, queue=queue)
    app = web.Application(
        # the request's span is outermost: it sees the error middleware's status codes
        middlewares=[tracing_middleware, error_middleware(rt.metrics)],
        client_max_size=settings.max_body_bytes + 1024,
    )
    app[RUNTIME] = rt
    app.add_routes(translate.routes)
    app.add_routes(documents.routes)
    app.add_routes(jobs.routes)
    app.add_routes(glossaries.routes)
    app.add_routes(meta.routes)
    app.add_routes(openapi.routes)
    app.add_routes(webui.routes)
    app.cleanup_ctx.append(_lifecycle)
    return app
