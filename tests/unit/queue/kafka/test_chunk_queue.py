"""The Kafka chunk queue without a broker: retry backoff, the in-process order of buffered
deliveries, acks after rebalances, and back-pressure (a held queue pauses every partition:
the consumer stays in its group but fetches nothing)."""

from __future__ import annotations

import asyncio

from aiokafka.structs import TopicPartition

from control_plane.queue.base import ChunkMessage
from control_plane.queue.kafka import KafkaChunkQueue
from control_plane.queue.kafka.chunk_queue import _Record, retry_delay
from control_plane.queue.kafka.offsets import OffsetTracker
from control_plane.settings import Settings


def test_retry_delay_is_exponential_and_capped():
    assert [retry_delay(1.0, a) for a in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert retry_delay(1.0, 50) == 60.0


def test_worker_subscribes_to_its_priorities_in_the_shared_group():
    q = KafkaChunkQueue(Settings(worker_priorities="high,retry"), consume=True)
    assert q.consumer.topics == ["mtb.chunks.high", "mtb.chunks.retry"]
    assert q.consumer.group_id == "mtb-workers"


def _queue(aging_s: float = 30.0) -> KafkaChunkQueue:
    q = KafkaChunkQueue(Settings(aging_s=aging_s), consume=True)
    return q


def _buffer(q: KafkaChunkQueue, priority: str, job: str, words: int = 100, offset: int = 0):
    tp = TopicPartition(q.topics.chunks(priority), 0)
    tracker = q.consumer.trackers.setdefault(tp, OffsetTracker())
    tracker.add(offset)
    msg = ChunkMessage(job, 0, priority, "en", "pt", words)
    q.consumer.buffer.add(_Record(tp, offset, tracker, msg, seq=offset))
    return tp, tracker


async def test_buffered_deliveries_most_urgent_first_and_ack_commits():
    q = _queue()
    tp_n, tr_n = _buffer(q, "normal", "n1", offset=0)
    _buffer(q, "critical", "c1", offset=0)
    _buffer(q, "high", "h1", offset=0)
    got = await q.consume(100, timeout=0.1)
    assert [d.message.job_id for d in got] == ["c1"]
    got = await q.consume(1000, timeout=0.1)
    assert [d.message.job_id for d in got] == ["h1", "n1"]  # word budget holds both
    assert tr_n.committable() is None  # delivered but not acked: not committable
    await q.ack(got[1])
    assert tr_n.committable() == 1


async def test_urgent_lane_never_takes_normal_work():
    q = _queue()
    _buffer(q, "normal", "n1")
    urgent = ("critical", "high")
    assert await q.consume(1000, timeout=0.05, levels=urgent) == []
    _buffer(q, "critical", "c1")
    got = await q.consume(1000, timeout=0.1, levels=urgent)
    assert [d.message.job_id for d in got] == ["c1"]


async def test_acks_from_revoked_partitions_are_ignored():
    q = _queue()
    tp, tracker = _buffer(q, "normal", "n1", offset=7)
    (d,) = await q.consume(100, timeout=0.1)
    q.consumer.trackers[tp] = OffsetTracker()  # revoked and assigned again: a new tracker
    await q.ack(d)
    assert tracker.committable() is None


async def test_consume_waits_then_times_out():
    q = _queue()
    t0 = asyncio.get_running_loop().time()
    assert await q.consume(100, timeout=0.2) == []
    assert asyncio.get_running_loop().time() - t0 >= 0.19


def _msg(job: str, priority: str = "normal") -> ChunkMessage:
    return ChunkMessage(job, 0, priority, "en", "pt", 100)


class FakeConsumer:
    def __init__(self) -> None:
        self._paused: set = set()

    def paused(self) -> set:
        return set(self._paused)

    def pause(self, *tps) -> None:
        self._paused |= set(tps)

    def resume(self, *tps) -> None:
        self._paused -= set(tps)

    def highwater(self, tp) -> int:
        return 0


async def test_kafka_queue_pauses_every_partition_while_held():
    q = KafkaChunkQueue(Settings(aging_s=0), consume=True)
    q.consumer.client = FakeConsumer()
    tps = {p: TopicPartition(q.topics.chunks(p), 0) for p in ("critical", "high", "normal")}
    retry = TopicPartition(q.topics.retry, 0)
    for tp in [*tps.values(), retry]:
        q.consumer.trackers[tp] = OffsetTracker()
        q.consumer.next_offset[tp] = 0
    tracker = q.consumer.trackers[tps["normal"]]
    tracker.add(0)
    q.consumer.buffer.add(_Record(tps["normal"], 0, tracker, _msg("n"), seq=0))
    q.consumer.update_pause()
    assert q.consumer.client.paused() == set()  # only normal work: nothing to pause
    await q.hold("w", True)
    q.consumer.update_pause()
    assert q.consumer.client.paused() == {*tps.values(), retry}  # nothing new is fetched
    assert await q.consume(1000, timeout=0.05) == []  # nor handed out
    await q.hold("w", False)
    q.consumer.update_pause()
    assert q.consumer.client.paused() == set()
    got = await q.consume(1000, timeout=0.1)
    assert [d.message.job_id for d in got] == ["n"]
