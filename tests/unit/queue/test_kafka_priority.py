"""Strict priority over Kafka: which partitions to pause, which offsets may be committed,
and the in-process order of buffered deliveries (no broker needed)."""

from __future__ import annotations

import asyncio

from aiokafka.structs import TopicPartition

from control_plane.queue.base import ChunkMessage
from control_plane.queue.kafka import KafkaChunkQueue, _Record, retry_delay
from control_plane.queue.priority import OffsetTracker, levels_to_pause
from control_plane.settings import Settings

NONE = {"critical": None, "high": None, "normal": None}


def test_nothing_paused_without_backlog():
    assert levels_to_pause({"critical": 0, "high": 0, "normal": 0}, NONE, 100.0, 30.0) == set()


def test_critical_backlog_pauses_high_and_normal():
    backlog = {"critical": 3, "high": 5, "normal": 9}
    assert levels_to_pause(backlog, NONE, 100.0, 30.0) == {"high", "normal"}


def test_high_backlog_pauses_only_normal():
    backlog = {"critical": 0, "high": 1, "normal": 9}
    assert levels_to_pause(backlog, NONE, 100.0, 30.0) == {"normal"}


def test_lower_levels_paused_even_when_empty_and_resumed_when_drained():
    assert levels_to_pause({"critical": 1, "high": 0, "normal": 0}, NONE, 0, 30) == {
        "high",
        "normal",
    }
    # the critical backlog drained: everything resumes
    assert levels_to_pause({"critical": 0, "high": 0, "normal": 4}, NONE, 0, 30) == set()


def test_aging_resumes_a_starving_level():
    backlog = {"critical": 10, "high": 2, "normal": 7}
    waiting = {"critical": None, "high": 50.0, "normal": 50.0}
    # high waited 30 s (one aging step): resumed; normal needs two steps (60 s)
    assert levels_to_pause(backlog, waiting, 80.0, 30.0) == {"normal"}
    assert levels_to_pause(backlog, waiting, 110.0, 30.0) == set()
    # aging off: strict forever
    assert levels_to_pause(backlog, waiting, 1e9, 0.0) == {"high", "normal"}


def test_offsets_commit_only_the_finished_prefix():
    t = OffsetTracker()
    for off in (10, 11, 12, 13):
        t.add(off)
    assert t.committable() is None
    t.done(11)
    t.done(13)
    assert t.committable() is None  # 10 still running: nothing may be committed
    t.done(10)
    assert t.committable() == 12  # 10 and 11 done -> next offset 12
    assert t.committable() is None
    t.done(12)
    assert t.committable() == 14
    assert t.outstanding() == 0 and len(t) == 0
    t.add(5)  # older than the committed position (a redelivery after a rebalance): ignored
    assert len(t) == 0
    assert not t.done(99)


def test_retry_delay_is_exponential_and_capped():
    assert [retry_delay(1.0, a) for a in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert retry_delay(1.0, 50) == 60.0


def _queue(aging_s: float = 30.0) -> KafkaChunkQueue:
    q = KafkaChunkQueue(Settings(aging_s=aging_s), consume=True)
    return q


def _buffer(q: KafkaChunkQueue, priority: str, job: str, words: int = 100, offset: int = 0):
    tp = TopicPartition(q.topics.chunks(priority), 0)
    tracker = q._trackers.setdefault(tp, OffsetTracker())
    tracker.add(offset)
    msg = ChunkMessage(job, 0, priority, "en", "pt", words)
    q._ready[priority].append(_Record(tp, offset, tracker, msg, seq=offset))
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
    q._trackers[tp] = OffsetTracker()  # revoked and assigned again: a new tracker
    await q.ack(d)
    assert tracker.committable() is None


async def test_consume_waits_then_times_out():
    q = _queue()
    t0 = asyncio.get_running_loop().time()
    assert await q.consume(100, timeout=0.2) == []
    assert asyncio.get_running_loop().time() - t0 >= 0.19
