"""``mtctl worker``: the Kafka side of the production stack (``MTB_QUEUE=kafka``).

One process = one member of the consumer group ``MTB_KAFKA_GROUP`` on the chunk topics
(critical, high, normal, retry) plus, unless ``--no-ingest``, one member of
``<group>-ingest`` on the ingest topic, plus a reconciler. Inside, ``MTB_WORKERS`` worker
tasks take chunks of any priority and ``MTB_KAFKA_URGENT_WORKERS`` more take only
critical and high ones, so urgent work never waits for a free task; their inference
calls go through a priority gate (most urgent first). Results are written per
(job, chunk) and offsets committed after that transaction; completed and failed jobs are
announced on the results topic and by webhook.

SIGTERM / SIGINT: stop taking work, let running batches finish (up to
``--grace`` seconds), commit, leave the group. Everything a killed worker held is
redelivered to the others.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

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
        help="extra tasks for critical/high only (MTB_KAFKA_URGENT_WORKERS)",
    )
    p.add_argument("--group", default=None, help="consumer group (MTB_KAFKA_GROUP)")
    p.add_argument("--no-ingest", action="store_true", help="do not consume the ingest topic")
    p.add_argument("--no-reconciler", action="store_true", help="do not re-publish stale chunks")
    p.add_argument("--grace", type=float, default=30.0, help="seconds to finish running work")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from control_plane import logs
    from control_plane.settings import Settings

    overrides = {
        k: v
        for k, v in (
            ("workers", args.workers),
            ("kafka_urgent_workers", args.urgent_workers),
            ("kafka_group", args.group),
        )
        if v is not None
    }
    settings = Settings.from_env(**overrides)
    if settings.queue != "kafka":
        log.warning("MTB_QUEUE is %r; `mtctl worker` always uses Kafka", settings.queue)
        settings.queue = "kafka"
    logs.configure("DEBUG" if args.verbose else settings.log_level, settings.log_format)
    return asyncio.run(serve(settings, ingest=not args.no_ingest,
                             reconcile=not args.no_reconciler, grace_s=args.grace))  # fmt: skip


async def serve(settings, *, ingest: bool = True, reconcile: bool = True, grace_s: float = 30.0):  # noqa: ANN001, ANN201
    from control_plane.api.app import build_services
    from control_plane.queue.ingest import IngestConsumer
    from control_plane.queue.kafka import KafkaChunkQueue
    from control_plane.queue.reconciler import Reconciler
    from control_plane.workers import Worker
    from control_plane.workers.gate import PriorityGate

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    queue = KafkaChunkQueue(settings, consume=True)
    svc = build_services(settings, queue=queue)
    log.info(
        "worker starting",
        extra={"bootstrap": settings.kafka_bootstrap, "group": settings.kafka_group,
               "inference": settings.inference, "workers": settings.workers,
               "urgent_workers": settings.kafka_urgent_workers,
               "database": settings.effective_database_url.split("@")[-1]},
    )  # fmt: skip
    tasks: list[asyncio.Task] = []
    workers: list = []
    ingest_consumer = None
    try:
        await svc.db.run(svc.db.migrate)
        await svc.client.start()
        # the local engine runs one batch at a time: order the waiting ones by priority
        client = PriorityGate(svc.client, 1 if settings.inference == "local" else 8)
        await queue.start()
        await svc.callbacks.start()
        announce = svc.jobs.on_finished

        async def on_finished(job) -> None:  # noqa: ANN001
            if announce is not None:
                await announce(job)
            if job.status in ("completed", "failed"):
                await queue.publish_result(job)

        svc.jobs.on_finished = on_finished
        urgent = queue.lane(("critical", "high"))
        for i in range(max(1, settings.workers)):
            workers.append(Worker(f"worker-{i}", queue, svc.jobs, client, svc.metrics, settings))
        for i in range(max(0, settings.kafka_urgent_workers)):
            workers.append(Worker(f"urgent-{i}", urgent, svc.jobs, client, svc.metrics, settings))
        tasks += [asyncio.create_task(w.run(), name=w.name) for w in workers]
        if reconcile:
            rec = Reconciler(svc.db, queue, settings.reconcile_interval_s, settings.requeue_after_s)
            tasks.append(asyncio.create_task(rec.run(), name="reconciler"))
        if ingest:
            ingest_consumer = IngestConsumer(settings, queue, svc)
            await ingest_consumer.start()
            tasks.append(asyncio.create_task(ingest_consumer.run(), name="ingest"))
        log.info("worker ready", extra={"pairs": str(svc.client.pairs())})
        await stop.wait()
        log.info("worker stopping")
    finally:
        for w in workers:
            w.stop()
        worker_tasks = [t for t in tasks if t.get_name().startswith(("worker-", "urgent-"))]
        if worker_tasks:
            _, pending = await asyncio.wait(worker_tasks, timeout=grace_s)
            for t in pending:
                t.cancel()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if ingest_consumer is not None:
            await ingest_consumer.close()
        await queue.close()
        with contextlib.suppress(Exception):
            await svc.callbacks.close()
        with contextlib.suppress(Exception):
            await svc.client.close()
        svc.db.close()
        log.info("worker stopped")
    return 0
