"""The production chunk queue: Kafka priority topics through aiokafka (``MTB_QUEUE=kafka``).

Publishing (API, ingest, reconciler): an idempotent producer (``enable_idempotence``,
``acks=all``), messages keyed by job id, W3C trace context in the headers. ``publish``
only hands the message to the producer: when the broker is away the REST call still
answers and the producer keeps retrying; if the message is lost anyway the chunk stays
``queued`` in the database and the reconciler publishes it again (the DB is the source of
truth).

Consuming (``mtctl worker``, ``consume=True``): one consumer in group ``MTB_KAFKA_GROUP``
subscribed to the three priority topics and the retry topic, manual commits. A background
task polls all the time (so a long document never holds polling past
``max.poll.interval.ms``) and fills per-priority buffers; worker tasks take deliveries from
them with ``consume`` (most urgent first, with aging). Strict priority at the broker: while
a more urgent level has backlog, the partitions of every less urgent level are paused, and
resumed when it drains (``priority.levels_to_pause``). Offsets are committed only for
deliveries that were ``ack``ed, i.e. after the chunk's result transaction committed, and
only as a contiguous prefix per partition (``priority.OffsetTracker``): at-least-once
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
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from control_plane.domain import PRIORITIES, PRIORITY_RANK
from control_plane.queue.base import ChunkMessage, Delivery
from control_plane.queue.kafka_topics import (
    KafkaAuthError,
    MessageError,
    Topics,
    dead_letter_value,
    decode_chunk,
    encode_chunk,
    ensure_topics,
    headers_to_dict,
    result_event,
    trace_id_of,
)
from control_plane.queue.priority import OffsetTracker, levels_to_pause
from control_plane.security import kafka_client_kwargs

log = logging.getLogger(__name__)

MAX_BUFFERED = 2000  # fetched records per level before its partitions are paused anyway
MAX_RETRY_DELAY_S = 60.0


@dataclass
class _Record:
    tp: Any  # aiokafka TopicPartition
    offset: int
    tracker: OffsetTracker
    message: ChunkMessage
    due: float = 0.0
    seq: int = 0
    fetched_at: float = field(default_factory=time.monotonic)

    def __lt__(self, other: _Record) -> bool:  # heap order of delayed retries
        return (self.due, self.seq) < (other.due, other.seq)


def retry_delay(base_s: float, attempt: int) -> float:
    """Seconds before retry number ``attempt`` (1, 2, ...): exponential, capped."""
    return min(base_s * 2 ** max(0, attempt - 1), MAX_RETRY_DELAY_S)


class _RateLimitFilter(logging.Filter):
    """At most one record per (logger, message template) every ``every_s`` seconds:
    aiokafka logs each failed reconnect, thousands per second while a broker is away."""

    def __init__(self, every_s: float = 10.0):
        super().__init__()
        self.every_s = every_s
        self._last: dict[tuple[str, object], float] = {}
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.msg)
        now = time.monotonic()
        if now - self._last.get(key, -1e9) < self.every_s:
            self.suppressed += 1
            return False
        self._last[key] = now
        return True


_AIOKAFKA_FILTER = _RateLimitFilter()


def quiet_aiokafka_logs() -> None:
    """Rate-limit aiokafka's warnings and errors (idempotent)."""
    import aiokafka  # noqa: F401 - registers its loggers

    names = [n for n in logging.root.manager.loggerDict if n.startswith("aiokafka")]
    for name in ["aiokafka", *names]:
        logger = logging.getLogger(name)
        if _AIOKAFKA_FILTER not in logger.filters:
            logger.addFilter(_AIOKAFKA_FILTER)


class KafkaChunkQueue:
    in_process = False  # the broker keeps messages across process restarts

    def __init__(self, settings, *, consume: bool = False, client_id: str | None = None):  # noqa: ANN001
        self.settings = settings
        self.topics = Topics.from_settings(settings)
        self.bootstrap = settings.kafka_bootstrap
        # SASL/TLS per MTB_KAFKA_SECURITY_PROTOCOL etc., for every client made here
        self.client_kwargs = kafka_client_kwargs(settings)
        self.consuming = consume
        self.client_id = client_id or f"mtb-{socket.gethostname()}-{os.getpid()}"
        self.aging_s = float(settings.aging_s)
        self._producer = None
        self._consumer = None
        self._poller: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._ready: dict[str, deque[_Record]] = {p: deque() for p in PRIORITIES}
        self._delayed: list[_Record] = []
        self._trackers: dict[Any, OffsetTracker] = {}
        self._next_offset: dict[Any, int] = {}
        self._waiting_since: dict[str, float | None] = {p: None for p in PRIORITIES}
        self._inflight: dict[int, _Record] = {}
        self._seq = itertools.count()
        self._cond: asyncio.Condition | None = None
        self._closed = False
        self._holders: set[str] = set()
        self.stats = {"published": 0, "publish_errors": 0, "retried": 0, "dead_lettered": 0}
        self._group_lag: dict[str, int] = {p: 0 for p in PRIORITIES}
        self._lag_task: asyncio.Task | None = None
        self.lag_interval_s = float(settings.kafka_lag_interval_s)

    # -- lifecycle -------------------------------------------------------------------

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        quiet_aiokafka_logs()
        self._condition()
        await self._ensure_topics()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            request_timeout_ms=30_000,
            retry_backoff_ms=200,
            **self.client_kwargs,
        )
        await self._producer.start()
        if self.consuming:
            await self._start_consumer()
        else:  # the API: queue depth = the workers' consumer-group lag, refreshed in the back
            self._lag_task = asyncio.create_task(self._lag_loop(), name="kafka-lag")

    async def _ensure_topics(self, wait_s: float = 60.0) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                created = await ensure_topics(
                    self.bootstrap, self.topics.all(), self.settings.kafka_partitions,
                    **self.client_kwargs,
                )  # fmt: skip
                if created:
                    log.info("created Kafka topics", extra={"topics": ",".join(created)})
                return
            except KafkaAuthError:  # wrong credentials: waiting cannot help
                raise
            except Exception as exc:  # noqa: BLE001 - broker not up yet
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"Kafka at {self.bootstrap} unreachable for {wait_s:.0f} s: {exc}"
                    ) from exc
                log.warning("waiting for Kafka", extra={"bootstrap": self.bootstrap})
                await asyncio.sleep(1.0)

    async def _start_consumer(self) -> None:
        from aiokafka import AIOKafkaConsumer

        s = self.settings
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            group_id=s.kafka_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=s.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(500, s.kafka_session_timeout_ms // 4),
            max_poll_interval_ms=s.kafka_max_poll_interval_ms,
            fetch_max_wait_ms=100,
            request_timeout_ms=max(40_000, s.kafka_session_timeout_ms + 5_000),
            **self.client_kwargs,
        )
        self._consumer.subscribe(
            [*self.topics.chunk_topics(), self.topics.retry], listener=_Rebalance(self)
        )
        await self._consumer.start()
        self._poller = asyncio.create_task(self._poll_loop(), name="kafka-poll")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        cond = self._condition()
        async with cond:
            cond.notify_all()
        for task in (self._poller, self._lag_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._commit()
            with contextlib.suppress(Exception):
                await self._consumer.stop()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.stop(), 15)

    # -- producing -------------------------------------------------------------------

    async def _send(
        self, topic: str, key: bytes, value: bytes, headers: list, *, wait: bool
    ) -> None:
        if self._producer is None:
            raise RuntimeError("KafkaChunkQueue.start() was not called")
        timeout = self.settings.kafka_publish_timeout_s
        fut = await asyncio.wait_for(
            self._producer.send(topic, value, key=key, headers=headers), timeout
        )
        if wait:
            await asyncio.wait_for(fut, timeout)
            self.stats["published"] += 1
            return

        def done(f: asyncio.Future) -> None:
            if f.cancelled() or f.exception() is not None:
                self.stats["publish_errors"] += 1
                log.warning(
                    "Kafka publish failed; the reconciler will publish it again",
                    extra={"topic": topic, "key": key.decode(errors="replace"),
                           "error": repr(None if f.cancelled() else f.exception())},
                )  # fmt: skip
            else:
                self.stats["published"] += 1

        fut.add_done_callback(done)

    async def publish(self, message: ChunkMessage) -> None:
        """Hand a chunk to the producer (delivery is confirmed asynchronously). Never
        raises for broker trouble: the chunk is in the DB and the reconciler re-publishes."""
        if message.priority not in PRIORITY_RANK:
            raise ValueError(f"unknown priority {message.priority!r}")
        key, value, headers = encode_chunk(message)
        try:
            await self._send(self.topics.chunks(message.priority), key, value, headers, wait=False)
        except Exception as exc:  # noqa: BLE001
            self.stats["publish_errors"] += 1
            log.warning(
                "Kafka publish failed; the reconciler will publish it again",
                extra={"job_id": message.job_id, "chunk": message.chunk_index,
                       "error": repr(exc)},
            )  # fmt: skip

    async def publish_wait(self, message: ChunkMessage) -> None:
        """Publish and wait for the broker's acknowledgement (raises on failure)."""
        key, value, headers = encode_chunk(message)
        await self._send(self.topics.chunks(message.priority), key, value, headers, wait=True)

    async def dead_letter(
        self,
        reason: str,
        message: str,
        *,
        key: bytes | None = None,
        source_topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        value: bytes | None = None,
        headers: dict[str, str] | None = None,
        details: Any = None,
    ) -> None:
        body = dead_letter_value(
            reason,
            message,
            source_topic=source_topic,
            partition=partition,
            offset=offset,
            key=key,
            value=value,
            headers=headers,
            details=details,
        )
        hdrs = [("mtb-dlq-reason", reason.encode())]
        hdrs += [(k, v.encode()) for k, v in (headers or {}).items() if k.startswith("trace")]
        await self._send(self.topics.dead_letter, key or b"", body, hdrs, wait=True)
        self.stats["dead_lettered"] += 1
        log.warning(
            "message dead-lettered",
            extra={"reason": reason, "detail": message[:500], "source_topic": source_topic,
                   "key": (key or b"").decode(errors="replace")},
        )  # fmt: skip

    async def publish_result(self, job) -> None:  # noqa: ANN001
        """A completion event on the results topic (best effort: logged on failure)."""
        try:
            await self._send(
                self.topics.results, job.id.encode(), result_event(job), [], wait=False
            )
        except Exception as exc:  # noqa: BLE001
            log.warning("results event not published", extra={"job_id": job.id, "error": repr(exc)})

    # -- consuming -------------------------------------------------------------------

    def _level_of(self, tp) -> str | None:  # noqa: ANN001
        return self.topics.priority_of(tp.topic)

    def _lag(self, level: str) -> int:
        if self._consumer is None:
            return 0
        lag = 0
        for tp in self._trackers:
            if self._level_of(tp) != level:
                continue
            high = self._consumer.highwater(tp)
            nxt = self._next_offset.get(tp)
            if high is None or nxt is None:
                lag += 1  # unknown: assume something waits (an empty partition costs one fetch)
            else:
                lag += max(0, high - nxt)
        return lag

    def backlog(self) -> dict[str, int]:
        return {p: len(self._ready[p]) + self._lag(p) for p in PRIORITIES}

    def depth(self) -> dict[str, int]:
        """Chunk messages waiting per priority: in a worker, its buffer plus its partitions'
        lag; in the API (publish only), the lag of the whole consumer group."""
        if self.consuming:
            return self.backlog()
        return dict(self._group_lag)

    async def group_lag(self, admin, probe) -> dict[str, int]:  # noqa: ANN001
        """Per priority: end offsets minus the group's committed offsets (all partitions).
        ``admin``: a started AIOKafkaAdminClient; ``probe``: a started group-less consumer."""
        from aiokafka.structs import TopicPartition

        tps = [
            TopicPartition(t["topic"], part["partition"])
            for t in await admin.describe_topics(self.topics.chunk_topics())
            for part in t.get("partitions", ())
        ]
        lag = {p: 0 for p in PRIORITIES}
        if not tps:
            return lag
        ends = await probe.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(
            self.settings.kafka_group, partitions=tps
        )
        for tp in tps:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            lag[self.topics.priority_of(tp.topic)] += max(0, ends.get(tp, 0) - done)
        return lag

    async def _lag_loop(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        sec = self.client_kwargs
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, request_timeout_ms=10_000, **sec
        )
        probe = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000, **sec)
        try:
            await admin.start()
            await probe.start()
            while True:
                try:
                    self._group_lag = await asyncio.wait_for(self.group_lag(admin, probe), 30)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - broker away: keep the last value
                    log.debug("group lag not refreshed", extra={"error": repr(exc)})
                await asyncio.sleep(self.lag_interval_s)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(probe.stop())
            with contextlib.suppress(Exception):
                await admin.close()

    def _update_pause(self) -> None:
        consumer = self._consumer
        assigned = set(self._trackers)
        if consumer is None or not assigned:
            return
        backlog = self.backlog()
        now = time.monotonic()
        for level in PRIORITIES:
            if backlog[level] <= 0:
                self._waiting_since[level] = None
            elif self._waiting_since[level] is None:
                self._waiting_since[level] = now
        paused_levels = levels_to_pause(backlog, self._waiting_since, now, self.aging_s)
        if self._holders:  # a dependency is down: fetch nothing new, retries included
            paused_levels = set(PRIORITIES)
        for level in PRIORITIES:
            if len(self._ready[level]) >= MAX_BUFFERED:
                paused_levels.add(level)
        want = set()
        for tp in assigned:
            level = self._level_of(tp)
            if level in paused_levels:
                want.add(tp)
            elif level is None and (self._holders or len(self._delayed) >= MAX_BUFFERED):
                want.add(tp)
        have = set(consumer.paused())
        if want - have:
            consumer.pause(*(want - have))
        resume = (have - want) & assigned
        if resume:
            consumer.resume(*resume)

    async def _poll_loop(self) -> None:
        from aiokafka.errors import KafkaError

        consumer = self._consumer
        assert consumer is not None
        last_commit = 0.0
        while not self._closed:
            try:
                await self._refresh_positions()
                self._update_pause()
                data = await consumer.getmany(timeout_ms=100, max_records=500)
                got = False
                for tp, records in data.items():
                    for rec in records:
                        got |= self._accept(tp, rec)
                got |= self._release_due()
                if got:
                    cond = self._condition()
                    async with cond:
                        cond.notify_all()
                now = time.monotonic()
                if now - last_commit >= 0.2:
                    last_commit = now
                    await self._commit()
            except asyncio.CancelledError:
                raise
            except KafkaError as exc:
                log.warning("Kafka poll failed; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(0.5)
            except Exception:  # never let the poller die
                log.exception("Kafka poll loop error")
                await asyncio.sleep(0.5)

    async def _refresh_positions(self) -> None:
        from aiokafka.errors import KafkaError

        for tp in [tp for tp in self._trackers if tp not in self._next_offset]:
            with contextlib.suppress(TimeoutError, KafkaError):
                self._next_offset[tp] = await asyncio.wait_for(self._consumer.position(tp), 0.5)

    def _accept(self, tp, rec) -> bool:  # noqa: ANN001
        tracker = self._trackers.get(tp)
        if tracker is None:  # not ours any more
            return False
        tracker.add(rec.offset)
        self._next_offset[tp] = rec.offset + 1
        try:
            msg, not_before = decode_chunk(rec.value, rec.headers)
        except MessageError as exc:
            self._spawn(self._dead_letter_record(tp, rec, tracker, exc.reason, str(exc)))
            return False
        r = _Record(tp, rec.offset, tracker, msg, due=not_before or 0.0, seq=next(self._seq))
        if not_before and not_before > time.time():
            heapq.heappush(self._delayed, r)
            return False
        self._ready[msg.priority].append(r)
        return True

    def _release_due(self) -> bool:
        now = time.time()
        moved = False
        while self._delayed and self._delayed[0].due <= now:
            r = heapq.heappop(self._delayed)
            if self._trackers.get(r.tp) is r.tracker:
                self._ready[r.message.priority].append(r)
                moved = True
        return moved

    def _spawn(self, coro) -> None:  # noqa: ANN001
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dead_letter_record(self, tp, rec, tracker, reason: str, message: str) -> None:  # noqa: ANN001
        for attempt in range(5):
            try:
                await self.dead_letter(
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

    def _pick(self, levels: tuple[str, ...] | None) -> str | None:
        now = time.monotonic()
        best = None
        best_level = None
        for level in levels or PRIORITIES:
            items = self._ready[level]
            if not items:
                continue
            head = items[0]
            eff = PRIORITY_RANK[level]
            if self.aging_s > 0:
                eff -= int((now - head.fetched_at) // self.aging_s)
            key = (max(eff, 0), head.fetched_at, head.seq)
            if best is None or key < best:
                best, best_level = key, level
        return best_level

    def _take(self, max_words: int, levels: tuple[str, ...] | None) -> list[Delivery]:
        out: list[Delivery] = []
        if self._holders:  # a dependency is down: take no new work
            return out
        words = 0
        while True:
            level = self._pick(levels)
            if level is None:
                break
            r = self._ready[level][0]
            if self._trackers.get(r.tp) is not r.tracker:  # partition revoked meanwhile
                self._ready[level].popleft()
                continue
            if out and words + r.message.word_count > max_words:
                break
            self._ready[level].popleft()
            self._waiting_since[level] = None
            token = next(self._seq)
            self._inflight[token] = r
            out.append(Delivery(r.message, token))
            words += r.message.word_count
            if words >= max_words:
                break
        return out

    async def consume(
        self, max_words: int, timeout: float | None = None, levels: tuple[str, ...] | None = None
    ) -> list[Delivery]:
        if not self.consuming:
            raise RuntimeError("this KafkaChunkQueue was opened for publishing only")
        cond = self._condition()
        deadline = None if timeout is None else time.monotonic() + timeout
        async with cond:
            while True:
                if self._closed:
                    return []
                got = self._take(max_words, levels)
                if got:
                    for d in got:
                        m = d.message
                        log.debug(
                            "chunk delivered",
                            extra={"job_id": m.job_id, "chunk": m.chunk_index,
                                   "priority": m.priority, "trace_id": trace_id_of(m.headers)},
                        )  # fmt: skip
                    return got
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return []
                try:
                    await asyncio.wait_for(cond.wait(), remaining)
                except TimeoutError:
                    return []

    async def hold(self, holder: str, held: bool) -> None:
        """``holder`` (a worker task) waits for a dependency (``held``) or no longer does;
        while any holder waits, nothing new is handed out or fetched."""
        if held:
            self._holders.add(holder)
            return
        self._holders.discard(holder)
        if not self._holders:
            cond = self._condition()
            async with cond:
                cond.notify_all()

    def held(self) -> bool:
        return bool(self._holders)

    async def ack(self, delivery: Delivery) -> None:
        r = self._inflight.pop(delivery.token, None)
        if r is not None and self._trackers.get(r.tp) is r.tracker:
            r.tracker.done(r.offset)

    async def nack(self, delivery: Delivery, requeue: bool = True) -> None:
        r = self._inflight.pop(delivery.token, None)
        if r is None:
            return
        msg = delivery.message
        try:
            if requeue:
                msg.attempt += 1
                delay = retry_delay(self.settings.retry_backoff_s, msg.attempt)
                key, value, headers = encode_chunk(msg, not_before=time.time() + delay)
                await self._send(self.topics.retry, key, value, headers, wait=True)
                self.stats["retried"] += 1
            else:
                error = msg.headers.pop("error", "") or "chunk failed"
                key, value, headers = encode_chunk(msg)
                await self.dead_letter(
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
            r.due = time.time() + 1.0
            heapq.heappush(self._delayed, r)
            return
        if self._trackers.get(r.tp) is r.tracker:
            r.tracker.done(r.offset)

    async def _commit(self, only=None) -> None:  # noqa: ANN001
        from aiokafka.errors import CommitFailedError, KafkaError

        consumer = self._consumer
        if consumer is None:
            return
        offsets = {}
        for tp, tracker in list(self._trackers.items()):
            if only is not None and tp not in only:
                continue
            pending = tracker.uncommitted
            nxt = tracker.committable()
            if nxt is not None:
                offsets[tp] = nxt
            elif pending is not None:
                offsets[tp] = pending
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
            for tp in offsets:
                tracker = self._trackers.get(tp)
                if tracker is not None:
                    tracker.uncommitted = None
        except CommitFailedError as exc:  # group rebalanced: the new owner redelivers
            log.info("offset commit rejected after a rebalance", extra={"error": repr(exc)})
        except KafkaError as exc:  # broker away: try again on the next round
            for tp, off in offsets.items():
                tracker = self._trackers.get(tp)
                if tracker is not None:
                    tracker.uncommitted = off
            log.warning("offset commit failed; will retry", extra={"error": repr(exc)})

    def inflight(self) -> int:
        return len(self._inflight)


class _Rebalance:
    """aiokafka ConsumerRebalanceListener (duck-typed subclass built lazily below)."""

    def __new__(cls, queue: KafkaChunkQueue):  # noqa: ANN204
        from aiokafka.abc import ConsumerRebalanceListener

        class Listener(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked):  # noqa: ANN001, ANN202
                revoked = set(revoked)
                if not revoked:  # the first join revokes nothing
                    return
                with contextlib.suppress(Exception):
                    await queue._commit(only=revoked)
                for tp in revoked:
                    queue._trackers.pop(tp, None)
                    queue._next_offset.pop(tp, None)
                for level in PRIORITIES:
                    kept = [r for r in queue._ready[level] if r.tp not in revoked]
                    queue._ready[level] = deque(kept)
                queue._delayed = [r for r in queue._delayed if r.tp not in revoked]
                heapq.heapify(queue._delayed)
                log.info(
                    "partitions revoked", extra={"partitions": ",".join(map(_tp, sorted(revoked)))}
                )

            async def on_partitions_assigned(self, assigned):  # noqa: ANN001, ANN202
                for tp in assigned:
                    queue._trackers[tp] = OffsetTracker()
                    queue._next_offset.pop(tp, None)
                log.info(
                    "partitions assigned",
                    extra={"partitions": ",".join(map(_tp, sorted(assigned)))},
                )

        return Listener()


def _tp(tp) -> str:  # noqa: ANN001
    return f"{tp.topic}[{tp.partition}]"
