"""A process's parts, built, started and stopped in one place.

The API process (``mtctl serve``) and the worker process (``mtctl worker``) are made of the
same parts: database, chunk queue, inference client, segment cache, job service, auth,
metrics, webhook sender, and (where chunks are translated) worker tasks. The web layer
(``control_plane.api``) only serves HTTP on top of a ``Runtime``; ``mtctl worker`` uses one
without any web code.

    rt = build_runtime(settings)                  # engine per MTB_INFERENCE
    boot = await start(rt)                        # in-process workers iff the queue is
    ...                                           # in-process (or run_workers=True)
    await stop(rt, boot)

Startup: migrate the database, start the queue and the callback sender, then load the
engine in the background (``/healthz`` answers at once, ``/readyz`` says 503 until the
engine is loaded), re-publish unfinished chunks (in-process queue) and start the workers.
Shutdown drains the workers (in-flight chunks stay ``processing`` in the DB and are
re-published on the next start or redelivered by Kafka), closes the queue, the client and
the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from dataclasses import dataclass, field

from control_plane import tracing
from control_plane.auth import Authenticator, RateLimiter
from control_plane.cache import SegmentCache
from control_plane.callbacks import CallbackSender
from control_plane.db import Database, Job
from control_plane.domain import TIERS, URGENT_PRIORITIES
from control_plane.inference import open_inference
from control_plane.inference.base import InferenceClient
from control_plane.jobs.events import job_event
from control_plane.jobs.service import JobService
from control_plane.metrics import Metrics
from control_plane.queue import ChunkQueue, open_queue
from control_plane.security import (
    WordQuota,
    allow_hosts,
    production_mode,
    resolve_jwt_secret,
    webhook_secret_for,
)
from control_plane.settings import Settings
from control_plane.workers import Worker

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    db: Database
    queue: ChunkQueue
    client: InferenceClient
    cache: SegmentCache
    jobs: JobService
    auth: Authenticator
    limiter: RateLimiter
    quota: WordQuota  # words per user per minute/day (REST and ingest submissions)
    metrics: Metrics
    callbacks: CallbackSender
    workers: list = field(default_factory=list)  # asyncio tasks running Worker.run
    runners: list = field(default_factory=list)  # the Worker objects (stop() drains them)
    background: list = field(default_factory=list)  # other tasks, cancelled at stop
    engine_error: str | None = None


def build_runtime(
    settings: Settings,
    client: InferenceClient | None = None,
    queue: ChunkQueue | None = None,
) -> Runtime:
    """Every part of a process, built but not started (``start`` starts them)."""
    resolve_jwt_secret(settings)  # ConfigError before anything starts (mtctl: exit 2)
    db = Database(settings.effective_database_url)
    metrics = Metrics()
    queue = queue or open_queue(settings)
    cache = SegmentCache(
        db.engine, settings.cache_size, settings.cache_ttl_s, settings.cache_access_flush_s
    )
    client = client or open_inference(settings)
    client.bind_metrics(metrics.registry)  # Triton: retries, circuit, fallback on /metrics
    callbacks = CallbackSender(
        settings.effective_callback_secret,
        attempts=settings.callback_attempts,
        backoff_s=settings.callback_backoff_s,
        timeout_s=settings.callback_timeout_s,
        on_result=lambda ok: metrics.callbacks.labels("ok" if ok else "gave_up").inc(),
        allow_hosts=allow_hosts(settings),
        production=production_mode(settings),
    )
    return Runtime(
        settings=settings,
        db=db,
        queue=queue,
        client=client,
        cache=cache,
        jobs=JobService(
            db, queue, cache, settings, on_finished=_finisher(metrics, callbacks, db, queue)
        ),
        auth=Authenticator(db.engine, settings.jwt_secret, settings.auth_cache_s),
        limiter=RateLimiter({tier: getattr(settings, f"rate_limit_{tier}") for tier in TIERS}),
        quota=WordQuota(settings),
        metrics=metrics,
        callbacks=callbacks,
    )


def _finisher(metrics: Metrics, callbacks: CallbackSender, db: Database, queue: ChunkQueue):  # noqa: ANN202
    """What happens once per finished job in whichever process finished it: metrics, the
    log line with the design's fields, the signed webhook, the results topic."""

    async def on_finished(job: Job) -> None:
        # a span in the job's trace (the worker attaches the job's context): the log line
        # below carries its trace_id, the webhook's delivery spans are its children
        with tracing.tracer.start_as_current_span(
            "job.finish", attributes=tracing.job_attributes(job)
        ):
            await _finish(job)

    async def _finish(job: Job) -> None:
        m = metrics
        m.jobs_finished.labels(job.priority, job.status).inc()
        if job.status == "completed":
            if job.completed_at and job.created_at:
                latency = (job.completed_at - job.created_at).total_seconds()
                m.job_latency.labels(job.priority).observe(max(latency, 0.0))
            m.cost.inc(job.cost_usd or 0.0)
        log.info(
            f"job {job.status}",
            extra={"job_id": job.id, "correlation_id": job.id, "user_id": job.user_id,
                   "priority": job.priority, "status": job.status,
                   "source_language": job.source_lang,
                   "target_language": job.target_lang, "word_count": job.word_count,
                   "processing_time_ms": job.processing_time_ms,
                   "words_per_minute": job.words_per_minute, "cost_usd": job.cost_usd,
                   "model_version": job.model_version, "error": job.error,
                   "cache_hit": _all_cached(job), "cached_segments": job.cached_segments,
                   "segment_count": job.segment_count},
        )  # fmt: skip
        if job.callback_url and job.status in ("completed", "failed"):
            try:  # signed with the owner's own secret (control_plane.callbacks)
                secret = await db.run(webhook_secret_for, db.engine, job.user_id)
            except Exception as exc:  # noqa: BLE001 - DB away: the fallback, never the JWT secret
                log.warning("webhook secret lookup failed", extra={"error": repr(exc)})
                secret = None
            callbacks.send(
                job.callback_url,
                job_event(job),
                secret,
            )
        if job.status in ("completed", "failed"):  # Kafka: the results topic
            # from the process whose worker finished it
            await queue.publish_result(job.id, job_event(job))

    return on_finished


def _all_cached(job: Job) -> bool | None:
    """Whether every segment of the job came from the segment cache (known at submit)."""
    if not job.segment_count:
        return None
    return (job.cached_segments or 0) >= job.segment_count


async def _boot(rt: Runtime, run_workers: bool) -> None:
    try:
        await rt.client.start()
    except Exception as exc:  # noqa: BLE001 - reported by /readyz
        rt.engine_error = f"{type(exc).__name__}: {exc}"
        log.error("inference backend failed to start", extra={"error": rt.engine_error})
        return
    if rt.queue.in_process:
        # the in-process queue died with the last process; with Kafka the messages survive
        # and the reconciler re-publishes what was lost
        await rt.jobs.recover()
    if run_workers:
        roles: list[tuple[str, tuple[str, ...] | None]] = [
            (f"worker-{i}", None) for i in range(max(1, rt.settings.workers))
        ]
        roles += [(f"urgent-{i}", URGENT_PRIORITIES) for i in range(rt.settings.urgent_workers)]
        for name, levels in roles:  # levels None: every priority
            w = Worker(name, rt.queue, rt.jobs, rt.client, rt.metrics, rt.settings, levels)
            rt.runners.append(w)
            rt.workers.append(asyncio.create_task(w.run(), name=name))
    else:  # chunks are translated by `mtctl worker` processes: estimates come from the DB
        rt.background.append(asyncio.create_task(_refresh_estimates(rt), name="estimates"))
    # what boot loaded (models, sessions, modules) lives as long as the process: keep it
    # out of the garbage collector's full passes, which otherwise stall the event loop
    # for tens of milliseconds during large submissions
    gc.collect()
    gc.freeze()
    log.info("service ready", extra={"pairs": str(rt.client.pairs())})


async def _refresh_estimates(rt: Runtime) -> None:
    while True:
        try:
            await rt.jobs.refresh_estimates()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - DB away: keep the last estimates
            log.debug("estimates not refreshed", extra={"error": repr(exc)})
        await asyncio.sleep(rt.settings.estimate_refresh_s)


async def _maintain_cache(rt: Runtime) -> None:
    """Hit counts reach the cache table every ``cache_access_flush_s`` even when no lookup
    does it; expired entries are deleted every ``cache_purge_interval_s``."""
    s = rt.settings
    tick = max(0.5, s.cache_access_flush_s)
    next_purge = time.monotonic() + min(60.0, s.cache_purge_interval_s)  # soon after start
    while True:
        await asyncio.sleep(tick)
        try:
            await rt.db.run(rt.cache.flush_access)
            if s.cache_ttl_s > 0 and time.monotonic() >= next_purge:
                next_purge = time.monotonic() + max(1.0, s.cache_purge_interval_s)
                purged = await rt.db.run(rt.cache.purge_expired)
                if purged:
                    log.info("expired cache entries deleted", extra={"entries": purged})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - DB away: counts wait for the next tick
            log.warning("cache maintenance failed", extra={"error": repr(exc)})


async def start(rt: Runtime, run_workers: bool | None = None) -> asyncio.Task:
    """Migrate, start the queue and callbacks, then (in the background) the inference client
    and ``settings.workers`` workers. ``run_workers`` defaults to True for the memory queue
    (with Kafka, workers run as ``mtctl worker``, which can call this with True).
    Returns the boot task; pass it to ``stop``."""
    if run_workers is None:
        run_workers = rt.queue.in_process
    await rt.db.run(rt.db.migrate)
    await rt.queue.start()
    await rt.callbacks.start()
    rt.background.append(asyncio.create_task(_maintain_cache(rt), name="cache-maintenance"))
    return asyncio.create_task(_boot(rt, run_workers), name="boot")


async def stop(rt: Runtime, boot: asyncio.Task | None = None) -> None:
    """Workers first finish the batch in hand (up to ``MTB_DRAIN_TIMEOUT_S``) so a restart
    does not redo it; whatever still runs after that is cancelled, not acked, and so
    delivered again (Kafka) or recovered at the next start (memory queue)."""
    await drain_workers(rt)
    tasks = [t for t in [boot, *rt.workers, *rt.background] if t is not None]
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    await rt.queue.close()
    await rt.callbacks.close()
    await rt.client.close()
    with contextlib.suppress(Exception):  # the last hit counts; a DB that is away loses them
        await rt.db.run(rt.cache.flush_access)
    rt.db.close()


async def drain_workers(rt: Runtime) -> None:
    running = [t for t in rt.workers if not t.done()]
    if not running:
        return
    for w in rt.runners:
        w.stop()  # no new batch; the one in hand runs to its end
    timeout = max(0.0, rt.settings.drain_timeout_s)
    t0 = time.monotonic()
    _, pending = await asyncio.wait(running, timeout=timeout)
    log.info(
        "workers drained" if not pending else "drain timed out; the rest is redelivered",
        extra={"seconds": round(time.monotonic() - t0, 2), "still_running": len(pending)},
    )
