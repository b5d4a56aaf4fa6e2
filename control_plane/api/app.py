"""``create_app(settings)``: the aiohttp application with every part wired in.

Usable from tests and benchmarks as well as ``mtctl serve``:

    app = create_app(settings)                       # engine per MTB_INFERENCE
    app = create_app(settings, client=my_client)     # any InferenceClient (fakes, Triton)

Outside a web app (``mtctl worker``, benchmarks): ``svc = build_services(settings)``,
``boot = await start_services(svc, run_workers=True)``, ``await stop_services(svc, boot)``.

Startup (``cleanup_ctx``): migrate the database, start the queue and the callback sender,
then load the engine in the background (``/healthz`` answers at once, ``/readyz`` says 503
until the engine is loaded), re-publish unfinished chunks and start the workers. Shutdown
stops the workers (in-flight chunks stay ``running`` in the DB and are re-published on the
next start), closes the queue, the client and the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import web

from control_plane.auth import Authenticator, RateLimiter
from control_plane.cache import SegmentCache
from control_plane.callbacks import CallbackSender
from control_plane.db import Database, Job
from control_plane.inference import open_inference
from control_plane.inference.base import InferenceClient
from control_plane.jobs.service import JobService
from control_plane.metrics import Metrics
from control_plane.queue import ChunkQueue, open_queue
from control_plane.security import (
    allow_hosts,
    production_mode,
    resolve_jwt_secret,
    webhook_secret_for,
)
from control_plane.settings import Settings
from control_plane.workers import Worker

from . import openapi
from .errors import error_middleware
from .routes import jobs, meta, translate
from .state import SERVICES, Services

log = logging.getLogger(__name__)


def build_services(
    settings: Settings,
    client: InferenceClient | None = None,
    queue: ChunkQueue | None = None,
) -> Services:
    resolve_jwt_secret(settings)  # ConfigError before anything starts (mtctl: exit 2)
    db = Database(settings.effective_database_url)
    metrics = Metrics()
    queue = queue or open_queue(settings)
    cache = SegmentCache(
        db.engine, settings.cache_size, settings.cache_ttl_s, settings.cache_access_flush_s
    )
    client = client or open_inference(settings)
    if hasattr(client, "bind_metrics"):  # Triton client: retries, circuit, fallback on /metrics
        client.bind_metrics(metrics.registry)
    svc = Services(
        settings=settings,
        db=db,
        queue=queue,
        client=client,
        cache=cache,
        jobs=JobService(db, queue, cache, settings),
        auth=Authenticator(db.engine, settings.jwt_secret, settings.auth_cache_s),
        limiter=RateLimiter(
            {
                "basic": settings.rate_limit_basic,
                "pro": settings.rate_limit_pro,
                "enterprise": settings.rate_limit_enterprise,
            }
        ),
        metrics=metrics,
        callbacks=CallbackSender(
            settings.effective_callback_secret,
            attempts=settings.callback_attempts,
            backoff_s=settings.callback_backoff_s,
            timeout_s=settings.callback_timeout_s,
            on_result=lambda ok: metrics.callbacks.labels("ok" if ok else "gave_up").inc(),
            allow_hosts=allow_hosts(settings),
            production=production_mode(settings),
        ),
    )
    svc.jobs.on_finished = _finisher(svc)
    return svc


def _finisher(svc: Services):  # noqa: ANN202
    async def on_finished(job: Job) -> None:
        m = svc.metrics
        m.jobs_finished.labels(job.priority, job.status).inc()
        if job.status == "completed":
            if job.completed_at and job.created_at:
                latency = (job.completed_at - job.created_at).total_seconds()
                m.job_latency.labels(job.priority).observe(max(latency, 0.0))
            m.cost.inc(job.cost_usd or 0.0)
        log.info(
            f"job {job.status}",
            extra={"job_id": job.id, "user_id": job.user_id, "priority": job.priority,
                   "status": job.status, "source_language": job.source_lang,
                   "target_language": job.target_lang, "word_count": job.word_count,
                   "processing_time_ms": job.processing_time_ms,
                   "words_per_minute": job.words_per_minute, "cost_usd": job.cost_usd,
                   "model_version": job.model_version, "error": job.error},
        )  # fmt: skip
        if job.callback_url and job.status in ("completed", "failed"):
            try:  # signed with the owner's own secret (control_plane.callbacks)
                secret = await svc.db.run(webhook_secret_for, svc.db.engine, job.user_id)
            except Exception as exc:  # noqa: BLE001 - DB away: the fallback, never the JWT secret
                log.warning("webhook secret lookup failed", extra={"error": repr(exc)})
                secret = None
            svc.callbacks.send(
                job.callback_url,
                {
                    "event": f"job.{job.status}",
                    "job_id": job.id,
                    "status": job.status,
                    "priority": job.priority,
                    "source_language": job.source_lang,
                    "target_language": job.target_lang,
                    "word_count": job.word_count,
                    "error": job.error,
                    "cost_usd": job.cost_usd,
                    "processing_time_ms": job.processing_time_ms,
                    "confidence_score": job.confidence_score,
                    "result_url": f"/api/v1/jobs/{job.id}/result",
                },
                secret,
            )
        publish = getattr(svc.queue, "publish_result", None)  # Kafka: the results topic
        if publish is not None and job.status in ("completed", "failed"):
            # from the process whose worker finished it
            await publish(job)

    return on_finished


async def _boot(svc: Services, run_workers: bool) -> None:
    try:
        await svc.client.start()
    except Exception as exc:  # noqa: BLE001 - reported by /readyz
        svc.engine_error = f"{type(exc).__name__}: {exc}"
        log.error("inference backend failed to start", extra={"error": svc.engine_error})
        return
    if svc.settings.queue == "memory":
        # the in-process queue died with the last process; with Kafka the messages survive
        # and the reconciler re-publishes what was lost
        await svc.jobs.recover()
    if run_workers:
        lanes: list[tuple[str, tuple[str, ...] | None]] = [
            (f"worker-{i}", None) for i in range(max(1, svc.settings.workers))
        ]
        lanes += [(f"urgent-{i}", ("critical", "high")) for i in range(svc.settings.urgent_workers)]
        for name, levels in lanes:
            w = Worker(name, svc.queue, svc.jobs, svc.client, svc.metrics, svc.settings, levels)
            svc.runners.append(w)
            svc.workers.append(asyncio.create_task(w.run(), name=name))
    else:  # chunks are translated by `mtctl worker` processes: estimates come from the DB
        svc.background.append(asyncio.create_task(_refresh_estimates(svc), name="estimates"))
    log.info("service ready", extra={"pairs": str(svc.client.pairs())})


async def _refresh_estimates(svc: Services) -> None:
    while True:
        try:
            await svc.jobs.refresh_estimates()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - DB away: keep the last estimates
            log.debug("estimates not refreshed", extra={"error": repr(exc)})
        await asyncio.sleep(svc.settings.estimate_refresh_s)


async def _maintain_cache(svc: Services) -> None:
    """Hit counts reach the cache table every ``cache_access_flush_s`` even when no lookup
    does it; expired entries are deleted every ``cache_purge_interval_s``."""
    s = svc.settings
    tick = max(0.5, s.cache_access_flush_s)
    next_purge = time.monotonic() + min(60.0, s.cache_purge_interval_s)  # soon after start
    while True:
        await asyncio.sleep(tick)
        try:
            await svc.db.run(svc.cache.flush_access)
            if s.cache_ttl_s > 0 and time.monotonic() >= next_purge:
                next_purge = time.monotonic() + max(1.0, s.cache_purge_interval_s)
                purged = await svc.db.run(svc.cache.purge_expired)
                if purged:
                    log.info("expired cache entries deleted", extra={"entries": purged})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - DB away: counts wait for the next tick
            log.warning("cache maintenance failed", extra={"error": repr(exc)})


async def start_services(svc: Services, run_workers: bool | None = None) -> asyncio.Task:
    """Migrate, start the queue and callbacks, then (in the background) the inference client
    and ``settings.workers`` workers. ``run_workers`` defaults to True for the memory queue
    (with Kafka, workers run as ``mtctl worker``, which can call this with True).
    Returns the boot task; pass it to ``stop_services``."""
    if run_workers is None:
        run_workers = svc.settings.queue == "memory"
    await svc.db.run(svc.db.migrate)
    await svc.queue.start()
    await svc.callbacks.start()
    svc.background.append(asyncio.create_task(_maintain_cache(svc), name="cache-maintenance"))
    return asyncio.create_task(_boot(svc, run_workers), name="boot")


async def stop_services(svc: Services, boot: asyncio.Task | None = None) -> None:
    """Workers first finish the batch in hand (up to ``MTB_DRAIN_TIMEOUT_S``) so a restart
    does not redo it; whatever still runs after that is cancelled, not acked, and so
    delivered again (Kafka) or recovered at the next start (memory queue)."""
    await drain_workers(svc)
    tasks = [t for t in [boot, *svc.workers, *svc.background] if t is not None]
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    await svc.queue.close()
    await svc.callbacks.close()
    await svc.client.close()
    with contextlib.suppress(Exception):  # the last hit counts; a DB that is away loses them
        await svc.db.run(svc.cache.flush_access)
    svc.db.close()


async def drain_workers(svc: Services) -> None:
    running = [t for t in svc.workers if not t.done()]
    if not running:
        return
    for w in svc.runners:
        w.stop()  # no new batch; the one in hand runs to its end
    timeout = max(0.0, svc.settings.drain_timeout_s)
    t0 = time.monotonic()
    _, pending = await asyncio.wait(running, timeout=timeout)
    log.info(
        "workers drained" if not pending else "drain timed out; the rest is redelivered",
        extra={"seconds": round(time.monotonic() - t0, 2), "still_running": len(pending)},
    )


async def _lifecycle(app: web.Application):  # noqa: ANN202
    svc = app[SERVICES]
    boot = await start_services(svc)
    yield
    await stop_services(svc, boot)


def create_app(
    settings: Settings | None = None,
    *,
    client: InferenceClient | None = None,
    queue: ChunkQueue | None = None,
) -> web.Application:
    settings = settings or Settings.from_env()
    svc = build_services(settings, client=client, queue=queue)
    app = web.Application(
        middlewares=[error_middleware(svc.metrics)],
        client_max_size=settings.max_body_bytes + 1024,
    )
    app[SERVICES] = svc
    app.add_routes(translate.routes)
    app.add_routes(jobs.routes)
    app.add_routes(meta.routes)
    app.add_routes(openapi.routes)
    app.cleanup_ctx.append(_lifecycle)
    return app
