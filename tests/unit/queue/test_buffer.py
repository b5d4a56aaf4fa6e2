"""Strict priority with aging, shared by both queues (``queue.buffer``): which levels a
Kafka consumer pauses at the broker, and back-pressure while a dependency is down (issue
10, item 4): a worker that waits for the database or Triton ``hold``s the queue; meanwhile
no worker is handed new work. (The in-process order of deliveries: test_memory.py and
kafka/test_chunk_queue.py.)"""

from __future__ import annotations

import asyncio

from control_plane.queue import MemoryChunkQueue
from control_plane.queue.base import ChunkMessage
from control_plane.queue.buffer import levels_to_pause

NONE = {"critical": None, "high": None, "normal": None}


def _msg(job: str, priority: str = "normal") -> ChunkMessage:
    return ChunkMessage(job, 0, priority, "en", "pt", 100)


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
