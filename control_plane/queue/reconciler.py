"""Reconciler: the database is the source of truth, Kafka only a transport.

A chunk that stays ``queued`` (or ``running`` without progress) longer than
``MTB_REQUEUE_AFTER_S`` while its job is active is published again: a publish that never
reached the broker, a broker that lost messages on restart, a worker that died without
its partition being redelivered. Every ``mtctl worker`` runs one; they never publish the
same stale chunk twice in one round because the selection and the ``updated_at`` touch
happen in one transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL). A duplicate
message is harmless anyway: results are written once per (job, chunk).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import select, update

from control_plane.db import Chunk, Job, utcnow
from control_plane.queue.base import ChunkMessage

log = logging.getLogger(__name__)
ACTIVE = ("queued", "running")


def claim_stale(db, older_than_s: float, limit: int = 500) -> list[ChunkMessage]:  # noqa: ANN001
    """Blocking. Chunks of active jobs not touched for ``older_than_s`` seconds, marked as
    touched now, as messages to publish again."""
    now = utcnow()
    cutoff = now - timedelta(seconds=older_than_s)
    with db.session() as session:
        q = (
            select(
                Chunk.id,
                Chunk.job_id,
                Chunk.chunk_index,
                Chunk.word_count,
                Job.priority,
                Job.source_lang,
                Job.target_lang,
            )
            .join(Job, Job.id == Chunk.job_id)
            .where(Chunk.status.in_(ACTIVE), Job.status.in_(ACTIVE), Chunk.updated_at < cutoff)
            .order_by(Chunk.updated_at)
            .limit(limit)
        )
        if not db.is_sqlite:
            q = q.with_for_update(of=Chunk, skip_locked=True)
        rows = session.execute(q).all()
        if not rows:
            return []
        session.execute(
            update(Chunk).where(Chunk.id.in_([r.id for r in rows])).values(updated_at=now)
        )
        session.commit()
    return [
        ChunkMessage(
            r.job_id, r.chunk_index, r.priority, r.source_lang, r.target_lang, r.word_count
        )
        for r in rows
    ]


class Reconciler:
    def __init__(self, db, queue, interval_s: float, older_than_s: float):  # noqa: ANN001
        self.db = db
        self.queue = queue
        self.interval_s = max(0.5, interval_s)
        self.older_than_s = older_than_s
        self.republished = 0

    async def run_once(self) -> int:
        messages = await self.db.run(claim_stale, self.db, self.older_than_s)
        for m in messages:
            await self.queue.publish(m)
        if messages:
            self.republished += len(messages)
            log.info(
                "re-published stale chunks",
                extra={"chunks": len(messages), "jobs": len({m.job_id for m in messages})},
            )
        return len(messages)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - DB away: try again next round
                log.exception("reconciler round failed")
