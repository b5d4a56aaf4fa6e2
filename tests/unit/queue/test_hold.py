"""Back-pressure while a dependency is down (issue 10, item 4): a worker that waits for
the database or Triton ``hold``s the queue; meanwhile no worker is handed new work, and a
Kafka consumer pauses every partition (it stays in its group but fetches nothing)."""

from __future__ import annotations

import asyncio

from aiokafka.structs import TopicPartition

from control_plane.queue import MemoryChunkQueue
from control_plane.queue.base import ChunkMessage
from control_plane.queue.kafka import KafkaChunkQueue, _Record
from control_plane.queue.priority import OffsetTracker
from control_plane.settings import Settings


def _msg(job: str, priority: str = "normal") -> ChunkMessage:
    return ChunkMessage(job, 0, priority, "en", "pt", 100)


async def test_memory_queue_hands_out_nothing_while_held():
    q = MemoryChunkQueue(aging_s=0)
    await q.publish(_msg("a"))
    await q.hold("w1", True)
    await q.hold("w2", True)
    assert q.held() and await q.consume(1000, timeout=0.05) == []
    await q.hold("w1", False)
    assert q.held() and await q.consume(1000, timeout=0.05) == []  # w2 still waits
    waiting = asyncio.create_task(q.consume(1000, timeout=5))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await q.hold("w2", False)  # released: the waiting consumer is woken at once
    got = await asyncio.wait_for(waiting, 1)
    assert [d.message.job_id for d in got] == ["a"] and not q.held()


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
    q._consumer = FakeConsumer()
    tps = {p: TopicPartition(q.topics.chunks(p), 0) for p in ("critical", "high", "normal")}
    retry = TopicPartition(q.topics.retry, 0)
    for tp in [*tps.values(), retry]:
        q._trackers[tp] = OffsetTracker()
        q._next_offset[tp] = 0
    tracker = q._trackers[tps["normal"]]
    tracker.add(0)
    q._ready["normal"].append(_Record(tps["normal"], 0, tracker, _msg("n"), seq=0))
    q._update_pause()
    assert q._consumer.paused() == set()  # only normal work: nothing to pause
    await q.hold("w", True)
    q._update_pause()
    assert q._consumer.paused() == {*tps.values(), retry}  # nothing new is fetched
    assert await q.consume(1000, timeout=0.05) == []  # nor handed out
    await q.hold("w", False)
    q._update_pause()
    assert q._consumer.paused() == set()
    got = await q.consume(1000, timeout=0.1)
    assert [d.message.job_id for d in got] == ["n"]
