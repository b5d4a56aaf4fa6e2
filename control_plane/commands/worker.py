"""``mtctl worker``: the Kafka side of the production stack (``MTB_QUEUE=kafka``).

One process = one member of the consumer group ``MTB_KAFKA_GROUP`` on the chunk topics
(critical, high, normal, retry; ``--priorities`` a subset: one Deployment per priority in
Kubernetes, each scaled on its topics' lag) plus, unless ``--no-ingest``, one member of
``<group>-ingest`` on the ingest topic, plus a reconciler. Inside, ``MTB_WORKERS`` worker
tasks take chunks of any priority and ``MTB_URGENT_WORKERS`` more take only critical and
high ones, so urgent work never waits for a free task; inference calls carry the chunk's
priority (the local engine and Triton serve the most urgent first). Results are written
per (job, chunk) and offsets committed after that transaction; completed and failed jobs
are announced on the results topic and by webhook.

SIGTERM / SIGINT: take no new chunks, finish the batch in hand (up to
``MTB_DRAIN_TIMEOUT_S``, default 30 s), commit the offsets of finished chunks, leave the
group. Chunks still running after that (and everything a killed worker held) are
redelivered to the others.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

log = logging.getLogger("control_plane.worker")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "worker",
        help="consume the Kafka chunk and ingest topics, translate, write results",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("--workers", type=int, default=None, help="worker tasks (MTB_WORKERS)")
    p.add_argument(
        "--urgent-workers",
        type=int,
        default=None,
        help="extra tasks for critical/high only (MTB_URGENT_WORKERS)",
    )
    p.add_argument("--group", default=None, help="consumer group (MTB_KAFKA_GROUP)")
    p.add_argument(
        "--priorities",
        default=None,
        help="chunk topics to consume, e.g. critical or high,retry (MTB_WORKER_PRIORITIES; "
        "default: critical,high,normal,retry)",
    )
    p.add_argument("--no-ingest", action="store_true", help="do not consume the ingest topic")
    p.add_argument("--no-reconciler", action="store_true", help="do not re-publish stale chunks")
    p.set_defaults(func=run, stdout_optional=True)  # logs go to stderr


def run(args: argparse.Namespace) -> int:
    from control_plane import logs, tracing
    from control_plane.settings import Settings

    overrides = {
        k: v
        for k, v in (
            ("workers", args.workers),
            ("urgent_workers", args.urgent_workers),
            ("kafka_group", args.group),
            ("worker_priorities", args.priorities),
        )
        if v is not None
    }
    settings = Settings.from_env(**overrides)
    if settings.queue != "kafka":
        log.warning("MTB_QUEUE is %r; `mtctl worker` always uses Kafka", settings.queue)
        settings.queue = "kafka"
    from control_plane.queue.kafka.topics import KafkaAuthError, Topics
    from control_plane.security import ConfigError, kafka_client_kwargs, resolve_jwt_secret

    try:  # Kafka: MTB_JWT_SECRET is required (the worker signs nothing with it, but one
        resolve_jwt_secret(settings)  # misconfigured process of the stack must not start)
        kafka_client_kwargs(settings)
        Topics.from_settings(settings).consumed(settings.worker_priorities)
    except (ConfigError, ValueError) as exc:
        print(f"mtctl worker: {exc}", file=sys.stderr)
        return 2
    logs.configure("DEBUG" if args.verbose else settings.log_level, settings.log_format)
    tracing.configure(settings)  # MTB_TRACING: chunk spans join the job's trace (Kafka headers)
    try:
        return asyncio.run(
            serve(settings, ingest=not args.no_ingest, reconcile=not args.no_reconciler)
        )
    except KafkaAuthError as exc:  # wrong SASL credentials: a message, not a traceback
        print(f"mtctl worker: {exc}", file=sys.stderr)
        return 2


async def serve(settings, *, ingest: bool = True, reconcile: bool = True) -> int:  # noqa: ANN001
    from control_plane import runtime
    from control_plane.jobs.ingest import IngestConsumer
    from control_plane.queue.kafka import KafkaChunkQueue
    from control_plane.queue.reconciler import Reconciler

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    queue = KafkaChunkQueue(settings, consume=True)
    # finished jobs: metrics, log, webhook, results topic
    rt = runtime.build_runtime(settings, queue=queue)
    log.info(
        "worker starting",
        extra={"bootstrap": settings.kafka_bootstrap, "group": settings.kafka_group,
               "inference": settings.inference, "workers": settings.workers,
               "urgent_workers": settings.urgent_workers,
               "database": settings.effective_database_url.split("@")[-1]},
    )  # fmt: skip
    tasks: list[asyncio.Task] = []
    metrics_runner = None
    ingest_consumer = None
    boot = None
    ready_file = None
    try:
        # migrate, start the queue (producer + consumer) and callbacks, load the client,
        # then MTB_WORKERS + MTB_URGENT_WORKERS (critical/high only) worker tasks
        boot = await runtime.start(rt, run_workers=True)
        await boot
        if rt.engine_error:
            log.error("inference backend failed", extra={"error": rt.engine_error})
            return 1
        if reconcile:
            rec = Reconciler(rt.jobs, settings.reconcile_interval_s, settings.requeue_after_s)
            tasks.append(asyncio.create_task(rec.run(), name="reconciler"))
        if ingest:
            ingest_consumer = IngestConsumer(settings, queue, rt)
            await ingest_consumer.start()
            tasks.append(asyncio.create_task(ingest_consumer.run(), name="ingest"))
        if settings.metrics_port:
            metrics_runner = await _serve_metrics(rt, queue, settings)
        log.info("worker ready", extra={"pairs": str(rt.client.pairs())})
        ready_file = _write_ready_file(settings.ready_file)
        await stop.wait()
        log.info("worker stopping")
    finally:
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)  # no longer taking work
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if ingest_consumer is not None:
            await ingest_consumer.close()
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        # the worker tasks finish the batch in hand (MTB_DRAIN_TIMEOUT_S), then the offsets
        # are committed; a chunk still running after that is not acked and is redelivered
        await runtime.stop(rt, boot)
        log.info("worker stopped")
    return 0


async def _serve_metrics(rt, queue, settings):  # noqa: ANN001, ANN202 - an AppRunner
    """GET /metrics of this worker process (Prometheus scrapes every worker: on Kafka the
    workers record finished jobs, latency and cost), on ``MTB_METRICS_PORT``."""
    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST

    async def metrics(_: web.Request) -> web.Response:
        body = rt.metrics.render(queue.depth())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.metrics_port).start()
    log.info("worker metrics", extra={"url": f"http://{settings.host}:{settings.metrics_port}"})
    return runner


def _write_ready_file(path: str) -> Path | None:
    """``MTB_READY_FILE`` (when set): created once the consumers are started, removed on
    exit, so launchers (tests, bench, a probe) see readiness without reading the log."""
    if not path:
        return None
    ready = Path(path)
    tmp = ready.with_name(f".{ready.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(ready)  # atomic: a reader never sees an empty file
    return ready
