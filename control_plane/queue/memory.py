"""In-process asyncio chunk queue: strict priority with aging."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque

from control_plane.domain import PRIORITIES, PRIORITY_RANK
from control_plane.queue.base import ChunkMessage, Delivery


class MemoryChunkQueue:
    """Three FIFO levels. ``consume`` takes from the most urgent level, where a message's
    effective level improves by one for every ``aging_s`` seconds it has waited (a normal
    message waiting 2*aging_s competes as critical), ties going to the older message.

    Unacked deliveries are tracked; ``nack`` or ``close`` puts them back.

    ``hold``: while a worker waits for a dependency that is down, ``consume`` hands out
    nothing (back-pressure: the work stays queued instead of piling up in workers)."""

    in_process = True

    def __init__(self, aging_s: float = 30.0, clock=time.monotonic):  # noqa: ANN001
        self.aging_s = aging_s
        self._clock = clock
        self._levels: dict[str, deque[tuple[float, int, ChunkMessage]]] = {
            p: deque() for p in PRIORITIES
        }
        self._seq = itertools.count()
        self._cond: asyncio.Condition | None = None
        self._inflight: dict[int, ChunkMessage] = {}
        self._closed = False
        self._holders: set[str] = set()

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def start(self) -> None:
        self._condition()

    async def publish(self, message: ChunkMessage) -> None:
        if message.priority not in PRIORITY_RANK:
            raise ValueError(f"unknown priority {message.priority!r}")
        self._levels[message.priority].append((self._clock(), next(self._seq), message))
        cond = self._condition()
        async with cond:
            cond.notify_all()

    def _pick(self, levels: tuple[str, ...] | None = None) -> str | None:
        now = self._clock()
        best: tuple[float, float, int] | None = None
        best_level = None
        for level, items in self._levels.items():
            if not items or (levels is not None and level not in levels):
                continue
            since, seq, _ = items[0]
            # aged messages never overtake by less than a whole level
            eff = PRIORITY_RANK[level]
            if self.aging_s > 0:
                eff -= int((now - since) // self.aging_s)
            key = (max(eff, 0), since, seq)
            if best is None or key < best:
                best, best_level = key, level
        return best_level

    def _take(self, max_words: int, levels: tuple[str, ...] | None = None) -> list[Delivery]:
        out: list[Delivery] = []
        if self._holders:  # a dependency is down: take no new work
            return out
        words = 0
        while True:
            level = self._pick(levels)
            if level is None:
                break
            msg = self._levels[level][0][2]
            if out and words + msg.word_count > max_words:
                break
            self._levels[level].popleft()
            token = next(self._seq)
            self._inflight[token] = msg
            out.append(Delivery(msg, token))
            words += msg.word_count
            if words >= max_words:
                break
        return out

    async def consume(
        self,
        max_words: int,
        timeout: float | None = None,
        levels: tuple[str, ...] | None = None,
    ) -> list[Delivery]:
        cond = self._condition()
        deadline = None if timeout is None else self._clock() + timeout
        async with cond:
            while True:
                if self._closed:
                    return []
                got = self._take(max_words, levels)
                if got:
                    return got
                remaining = None if deadline is None else deadline - self._clock()
                if remaining is not None and remaining <= 0:
                    return []
                try:
                    await asyncio.wait_for(cond.wait(), remaining)
                except TimeoutError:
                    return []

    async def ack(self, delivery: Delivery) -> None:
        self._inflight.pop(delivery.token, None)

    async def nack(self, delivery: Delivery, requeue: bool = True) -> None:
        msg = self._inflight.pop(delivery.token, None)
        if msg is not None and requeue:
            msg.attempt += 1
            await self.publish(msg)

    async def hold(self, holder: str, held: bool) -> None:
        """``holder`` (a worker) waits for a dependency (``held``) or no longer does; while
        any holder waits, ``consume`` returns nothing new."""
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

    def depth(self) -> dict[str, int]:
        return {p: len(items) for p, items in self._levels.items()}

    def inflight(self) -> int:
        return len(self._inflight)

    async def publish_result(self, job) -> None:  # noqa: ANN001 - nobody outside to tell
        return None

    async def close(self) -> None:
        self._closed = True
        cond = self._condition()
        async with cond:
            cond.notify_all()
