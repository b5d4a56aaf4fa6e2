"""Reconciler: the database is the source of truth, Kafka only a transport.

A chunk that stays ``queued`` (or ``running`` without progress) longer than
``MTB_REQUEUE_AFTER_S`` while its job is active is published again
(``JobService.requeue_stale``): a publish that never reached the broker, a broker that
lost messages on restart, a worker that died holding it. Every ``mtctl worker`` runs one
every ``MTB_RECONCILE_INTERVAL_S``; a stale chunk is touched when it is re-published, so
it waits another ``MTB_REQUEUE_AFTER_S`` before the next try. A duplicate message is
harmless: results are written once per (job, chunk).
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(self, jobs, interval_s: float, older_than_s: float):  # noqa: ANN001 - JobService
        self.jobs = jobs
        self.interval_s = max(0.5, interval_s)
        self.older_than_s = older_than_s
        self.republished = 0

    async def run_once(self) -> int:
        n = await self.jobs.requeue_stale(self.older_than_s)
        self.republished += n
        return n

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - DB away: try again next round
                log.exception("reconciler round failed")
