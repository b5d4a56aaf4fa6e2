"""The production chunk queue: Kafka priority topics through aiokafka (``MTB_QUEUE=kafka``).

``KafkaChunkQueue`` is the ``ChunkQueue`` the API, ingest, reconciler and workers use; it
puts together a ``Publisher`` (every process), a ``ChunkConsumer`` (``mtctl worker``,
``consume=True``) and, in a process that only publishes, a ``LagMonitor`` for its depth.

Consuming: one consumer in group ``MTB_KAFKA_GROUP`` subscribed to the three priority
topics and the retry topic, or the subset in ``MTB_WORKER_PRIORITIES`` (``GroupConsumer``:
manual commits of finished offsets only).
Its poll loop fills a ``PriorityBuffer``; worker tasks take deliveries from it with
``consume`` (most urgent first, with aging). Strict priority at the broker: while a more
urgent level has backlog, the partitions of every less urgent level are paused, and resumed
when it drains (``buffer.levels_to_pause``). Offsets are committed only for deliveries that
were ``ack``ed, i.e. after the chunk's result transaction committed: at-least-once
delivery; the (job_id, chunk_index) upsert makes the effect exactly-once.

``nack(requeue=True)`` publishes the chunk to the retry topic with ``attempt + 1`` and a
``mtb-not-before`` header (exponential backoff); ``nack(requeue=False)`` publishes it to
the dead-letter topic with the reason found in ``message.headers["error"]``. Either way the
original offset is committed only once that publish was acknowledged by the broker.

Back-pressure (``hold``): while a worker waits for a dependency that is down (database,
Triton), ``consume`` hands out nothing and every assigned partition is paused, so the
consumer stays in its group (heartbeats, polls) but fetches no new work.

Rebalances: finished offsets of revoked partitions are committed, their buffered records
dropped (the new owner fetches them again), and acks of deliveries from them are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from control_plane.domain import PRIORITIES
from control_plane.queue.base import ChunkMessage, Delivery
from control_plane.queue.buffer import PriorityBuffer, levels_to_pause
from control_plane.queue.kafka.client import quiet_aiokafka_logs
from control_plane.queue.kafka.consumer import GroupConsumer, tp_names
from control_plane.queue.kafka.lag import LagMonitor
from control_plane.queue.kafka.offsets import OffsetTracker
from control_plane.queue.kafka.publisher import Publisher
from control_plane.queue.kafka.topics import (
    MessageError,
    Topics,
    decode_chunk,
    encode_chunk,
    headers_to_dict,
    trace_id_of,
)
from control_plane.security import kafka_client_kwargs

log = logging.getLogger(__name__)

MAX_BUFFERED = 2000  # fetched records per level before its partitions are paused anyway
MAX_RETRY_DELAY_S = 60.0


@dataclass
class _Record:
    """A fetched chunk record: its message and where to mark it done."""

    tp: Any  # aiokafka TopicPartition
    offset: int
    tracker: OffsetTracker
    message: ChunkMessage
    due: float = 0.0  # wall-clock time a retry may run (mtb-not-before)
    seq: int = 0
    since: float = field(default_factory=time.monotonic)  # fetched at (aging)

    def __lt__(self, other: _Record) -> bool:  # heap order of delayed retries
        return (self.due, self.seq) < (other.due, other.seq)


def retry_delay(base_s: float, attempt: int) -> float:
    """Seconds before retry number ``attempt`` (1, 2, ...): exponential, capped."""
    return min(base_s * 2 ** max(0, attempt - 1), MAX_RETRY_DELAY_S)


class ChunkConsumer(GroupConsumer):
    """The consuming side: fetched records into the priority buffer (retries only once
    due), partitions paused for strict priority and back-pressure, malformed records
    dead-lettered."""

    def __init__(self, settings: Any, topics: Topics, publisher: Publisher, **kwargs: Any):
        super().__init__(
            settings,
            topics=topics.consumed(settings.worker_priorities),
            group_id=settings.kafka_group,
            **kwargs,
        )
        self.chunk_topics = topics
        self.publisher = publisher
        self.aging_s = float(settings.aging_s)
        self.buffer: PriorityBuffer[_Record] = PriorityBuffer(self.aging_s)
        self.delayed: list[_Record] = []  # retries not yet due (heap by due time)
        self.next_offset: dict[Any, int] = {}
        self._waiting_since: dict[str, float | None] = {p: None for p in PRIORITIES}
        self._seq = itertools.count()
        self._poller: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        await super().start()
        self._poller = asyncio.create_task(self.run(), name="kafka-poll")

    def live(self, record: _Record) -> bool:
        """False for a record of a partition revoked since it was fetched."""
        return self.trackers.get(record.tp) is record.tracker

    # -- backlog and pausing ---------------------------------------------------------

    def _level_of(self, tp: Any) -> str | None:
        return self.chunk_topics.priority_of(tp.topic)

    def _lag(self, level: str) -> int:
        if self.client is None:
            return 0
        lag = 0
        for tp in self.trackers:
            if self._level_of(tp) != level:
                continue
            high = self.client.highwater(tp)
            nxt = self.next_offset.get(tp)
            if high is None or nxt is None:
                lag += 1  # unknown: assume something waits (an empty partition costs one fetch)
            else:
                lag += max(0, high - nxt)
        return lag

    def backlog(self) -> dict[str, int]:
        """Per priority: records buffered here plus the lag of our partitions."""
        depth = self.buffer.depth()
        return {p: depth[p] + self._lag(p) for p in PRIORITIES}

    def update_pause(self) -> None:
        """Pause what should not be fetched now (less urgent levels, full buffers, all of
        it while held), resume the rest."""
        client = self.client
        assigned = set(self.trackers)
        if client is None or not assigned:
            return
        backlog = self.backlog()
        now = time.monotonic()
        for level in PRIORITIES:
            if backlog[level] <= 0:
                self._waiting_since[level] = None
            elif self._waiting_since[level] is None:
                self._waiting_since[level] = now
        paused_levels = levels_to_pause(backlog, self._waiting_since, now, self.aging_s)
        held = self.buffer.held()
        if held:  # a dependency is down: fetch nothing new, retries included
            paused_levels = set(PRIORITIES)
        depth = self.buffer.depth()
        for level in PRIORITIES:
            if depth[level] >= MAX_BUFFERED:
                paused_levels.add(level)
        want = set()
        for tp in assigned:
            level = self._level_of(tp)
            if level in paused_levels:
                want.add(tp)
            elif level is None and (held or len(self.delayed) >= MAX_BUFFERED):
                want.add(tp)
        have = set(client.paused())
        if want - have:
            client.pause(*(want - have))
        resume = (have - want) & assigned
        if resume:
            client.resume(*resume)

    # -- the poll loop's hooks -------------------------------------------------------

    async def before_poll(self) -> None:
        await self._refresh_positions()
        self.update_pause()

    async def on_records(self, data: dict[Any, list[Any]]) -> None:
        got = False
        for tp, records in data.items():
            for rec in records:
                got |= self._accept(tp, rec)
        got |= self._release_due()
        if got:
            await self.buffer.wake()

    async def on_revoked(self, revoked: set[Any]) -> None:
        for tp in revoked:
            self.next_offset.pop(tp, None)
        self.buffer.drop(lambda r: r.tp in revoked)
        self.delayed = [r for r in self.delayed if r.tp not in revoked]
        heapq.heapify(self.delayed)
        log.info("partitions revoked", extra={"partitions": tp_names(revoked)})

    async def on_assigned(self, assigned: set[Any]) -> None:
        for tp in assigned:
            self.next_offset.pop(tp, None)
        log.info("partitions assigned", extra={"partitions": tp_names(assigned)})

    async def _refresh_positions(self) -> None:
        from aiokafka.errors import KafkaError

        for tp in [tp for tp in self.trackers if tp not in self.next_offset]:
            with contextlib.suppress(TimeoutError, KafkaError):
                self.next_offset[tp] = await asyncio.wait_for(self.client.position(tp), 0.5)

    def _accept(self, tp: Any, rec: Any) -> bool:
        tracker = self.trackers.get(tp)
        if tracker is None:  # not ours any more
            return False
        tracker.add(rec.offset)
        self.next_offset[tp] = rec.offset + 1
        try:
            msg, not_before = decode_chunk(rec.value, rec.headers)
        except MessageError as exc:
            self._spawn(self._dead_letter_record(tp, rec, tracker, exc.reason, str(exc)))
            return False
        r = _Record(tp, rec.offset, tracker, msg, due=not_before or 0.0, seq=next(self._seq))
        if not_before and not_before > time.time():
            heapq.heappush(self.delayed, r)
            return False
        self.buffer.add(r)
        return True

    def delay(self, record: _Record, due: float) -> None:
        """Hand ``record`` out again at wall-clock time ``due``."""
        record.due = due
        heapq.heappush(self.delayed, record)

    def _release_due(self) -> bool:
        now = time.time()
        moved = False
        while self.delayed and self.delayed[0].due <= now:
            r = heapq.heappop(self.delayed)
            if self.live(r):
                self.buffer.add(r)
                moved = True
        return moved

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dead_letter_record(
        self, tp: Any, rec: Any, tracker: OffsetTracker, reason: str, message: str
    ) -> None:
        for attempt in range(5):
            try:
                await self.publisher.dead_letter(
                    reason,
                    message,
                    key=rec.key,
                    source_topic=tp.topic,
                    partition=tp.partition,
                    offset=rec.offset,
                    value=rec.value,
                    headers=headers_to_dict(rec.headers),
                )
                tracker.done(rec.offset)
                return
            except Exception as exc:  # noqa: BLE001
                log.warning("dead-letter publish failed", extra={"error": repr(exc)})
                await asyncio.sleep(min(2**attempt, 10))

    # -- handing out -----------------------------------------------------------------

    async def take(
        self, max_words: int, timeout: float | None, levels: tuple[str, ...] | None
    ) -> list[Delivery]:
        got = await self.buffer.wait_take(max_words, timeout, levels, self.live)
        for delivery, record in got:
            self._waiting_since[record.message.priority] = None  # served: aging restarts
            m = delivery.message
            log.debug(
                "chunk delivered",
                extra={"job_id": m.job_id, "chunk": m.chunk_index,
                       "priority": m.priority, "trace_id": trace_id_of(m.headers)},
            )  # fmt: skip
        return [delivery for delivery, _ in got]

    async def stop(self) -> None:
        self.closed = True
        await self.buffer.close()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._poller
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)
        await super().stop()


class KafkaChunkQueue:
    in_process = False  # the broker keeps messages across process restarts

    def __init__(self, settings: Any, *, consume: bool = False, client_id: str | None = None):
        self.settings = settings
        self.topics = Topics.from_settings(settings)
        self.bootstrap = settings.kafka_bootstrap
        # SASL/TLS per MTB_KAFKA_SECURITY_PROTOCOL etc., for every client made here
        self.client_kwargs = kafka_client_kwargs(settings)
        self.consuming = consume
        self.client_id = client_id or f"mtb-{socket.gethostname()}-{os.getpid()}"
        self.publisher = Publisher(
            settings, self.topics, client_id=self.client_id, client_kwargs=self.client_kwargs
        )
        self.stats = self.publisher.stats
        self.consumer: ChunkConsumer | None = None
        self.lag: LagMonitor | None = None
        if consume:
            self.consumer = ChunkConsumer(
                settings,
                self.topics,
                self.publisher,
                client_id=self.client_id,
                client_kwargs=self.client_kwargs,
            )
        else:  # the API: queue depth = the workers' consumer-group lag
            self.lag = LagMonitor(settings, self.topics, self.client_kwargs)
        self._closed = False

    async def start(self) -> None:
        quiet_aiokafka_logs()
        if self.consumer is not None:
            self.consumer.buffer.condition()
        await self.publisher.start()
        if self.consumer is not None:
            await self.consumer.start()
        elif self.lag is not None:
            self.lag.start()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.lag is not None:
            await self.lag.stop()
        if self.consumer is not None:
            await self.consumer.stop()
        await self.publisher.stop()

    # -- producing -------------------------------------------------------------------

    async def publish(self, message: ChunkMessage) -> None:
        """Hand a chunk to the producer; never raises for broker trouble (``Publisher``)."""
        await self.publisher.publish(message)

    async def publish_wait(self, message: ChunkMessage) -> None:
        """Publish and wait for the broker's acknowledgement (raises on failure)."""
        await self.publisher.publish_wait(message)

    async def dead_letter(self, reason: str, message: str, **meta: Any) -> None:
        """See ``Publisher.dead_letter`` (used by the ingest consumer)."""
        await self.publisher.dead_letter(reason, message, **meta)

    async def publish_result(self, job_id: str, event: dict[str, Any]) -> None:
        """A completion event on the results topic (best effort)."""
        await self.publisher.publish_result(job_id, event)

    # -- consuming -------------------------------------------------------------------

    async def consume(
        self, max_words: int, timeout: float | None = None, levels: tuple[str, ...] | None = None
    ) -> list[Delivery]:
        if self.consumer is None:
            raise RuntimeError("this KafkaChunkQueue was opened for publishing only")
        return await self.consumer.take(max_words, timeout, levels)

    async def hold(self, holder: str, held: bool) -> None:
        """``holder`` (a worker task) waits for a dependency (``held``) or no longer does;
        while any holder waits, nothing new is handed out or fetched."""
        if self.consumer is not None:  # a publishing process has nothing to hold
            await self.consumer.buffer.hold(holder, held)

    def held(self) -> bool:
        return self.consumer is not None and self.consumer.buffer.held()

    async def ack(self, delivery: Delivery) -> None:
        consumer = self.consumer
        r = None if consumer is None else consumer.buffer.settle(delivery)
        if r is not None and consumer.live(r):
            r.tracker.done(r.offset)

    async def nack(self, delivery: Delivery, requeue: bool = True) -> None:
        consumer = self.consumer
        r = None if consumer is None else consumer.buffer.settle(delivery)
        if r is None:
            return
        msg = delivery.message
        try:
            if requeue:
                msg.attempt += 1
                delay = retry_delay(self.settings.retry_backoff_s, msg.attempt)
                await self.publisher.retry(msg, not_before=time.time() + delay)
            else:
                error = msg.headers.pop("error", "") or "chunk failed"
                key, value, headers = encode_chunk(msg)
                await self.publisher.dead_letter(
                    "chunk_failed",
                    error,
                    key=key,
                    source_topic=r.tp.topic,
                    partition=r.tp.partition,
                    offset=r.offset,
                    value=value,
                    headers=headers_to_dict(headers),
                )
        except Exception as exc:  # noqa: BLE001 - keep the offset; try again locally
            log.warning(
                "retry/dead-letter publish failed; keeping the chunk",
                extra={"job_id": msg.job_id, "chunk": msg.chunk_index, "error": repr(exc)},
            )  # fmt: skip
            consumer.delay(r, time.time() + 1.0)
            return
        if consumer.live(r):
            r.tracker.done(r.offset)

    def depth(self) -> dict[str, int]:
        """Chunk messages waiting per priority: in a worker, its buffer plus its partitions'
        lag; in the API (publish only), the lag of the whole consumer group."""
        if self.consumer is not None:
            return self.consumer.backlog()
        assert self.lag is not None
        return dict(self.lag.lag)

    def inflight(self) -> int:
        return 0 if self.consumer is None else self.consumer.buffer.inflight()
