"""The in-process queue: strict priority, aging, word budgets, redelivery."""

from __future__ import annotations

import asyncio

from control_plane.queue import ChunkMessage, MemoryChunkQueue


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def msg(job, priority, words=10, idx=0):
    return ChunkMessage(job, idx, priority, "en", "pt", words)


async def drain(q, n, max_words=1):
    out = []
    for _ in range(n):
        got = await q.consume(max_words, timeout=0.01)
        out.extend(d.message.job_id for d in got)
        for d in got:
            await q.ack(d)
    return out


async def test_strict_priority_then_fifo():
    q = MemoryChunkQueue(aging_s=0)
    for job, p in [("n1", "normal"), ("h1", "high"), ("c1", "critical"), ("n2", "normal"),
                   ("c2", "critical"), ("h2", "high")]:  # fmt: skip
        await q.publish(msg(job, p))
    assert q.depth() == {"critical": 2, "high": 2, "normal": 2}
    assert await drain(q, 6) == ["c1", "c2", "h1", "h2", "n1", "n2"]
    assert await q.consume(1, timeout=0.01) == []


async def test_aging_prevents_starvation():
    clock = Clock()
    q = MemoryChunkQueue(aging_s=30, clock=clock)
    await q.publish(msg("old-normal", "normal"))
    clock.t += 59  # one level up: competes as high, still behind critical
    await q.publish(msg("c", "critical"))
    await q.publish(msg("h", "high"))
    assert await drain(q, 1) == ["c"]
    # old-normal (effective high, older) goes before the fresh high
    assert await drain(q, 1) == ["old-normal"]
    clock.t += 61
    await q.publish(msg("c2", "critical"))
    await q.publish(msg("n-new", "normal"))
    # h has waited 61 s: effective rank high-2 -> 0, older than c2 -> first
    assert await drain(q, 3) == ["h", "c2", "n-new"]


async def test_word_budget_batches_small_chunks():
    q = MemoryChunkQueue(aging_s=0)
    for i in range(5):
        await q.publish(msg(f"j{i}", "normal", words=300))
    got = await q.consume(1000, timeout=0.1)
    assert [d.message.job_id for d in got] == ["j0", "j1", "j2"]
    big = MemoryChunkQueue(aging_s=0)
    await big.publish(msg("huge", "normal", words=5000))
    assert len(await big.consume(1000, timeout=0.1)) == 1  # at least one


async def test_nack_redelivers_and_consume_waits():
    q = MemoryChunkQueue(aging_s=0)
    waiter = asyncio.create_task(q.consume(10, timeout=2))
    await asyncio.sleep(0.01)
    await q.publish(msg("a", "high"))
    (d,) = await waiter
    assert q.inflight() == 1
    await q.nack(d)
    (again,) = await q.consume(10, timeout=0.1)
    assert again.message.job_id == "a" and again.message.attempt == 1
    await q.ack(again)
    assert q.inflight() == 0
    await q.close()
    assert await q.consume(10) == []


async def test_urgent_lane_sees_only_its_levels():
    q = MemoryChunkQueue(aging_s=0)
    await q.publish(msg("n", "normal"))
    assert await q.consume(10, timeout=0.05, levels=("critical", "high")) == []
    await q.publish(msg("h", "high"))
    (d,) = await q.consume(10, timeout=0.05, levels=("critical", "high"))
    assert d.message.job_id == "h"
    assert q.depth()["normal"] == 1
