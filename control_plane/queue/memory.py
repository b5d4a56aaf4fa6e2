"""In-process asyncio chunk queue: strict priority with aging (``queue.buffer``)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from control_plane.domain import PRIORITY_RANK
from control_plane.queue.base import ChunkMessage, Delivery
from control_plane.queue.buffer import PriorityBuffer


@dataclass
class _Entry:
    message: ChunkMessage
    since: float  # when it was published (the queue's clock)
    seq: int


class MemoryChunkQueue:
    """Three FIFO levels in a ``PriorityBuffer``: ``consume`` takes from the most urgent
    level, where a message's effective level improves by one for every ``aging_s`` seconds
    it has waited (a normal message waiting 2*aging_s competes as critical), ties going to
    the older message.

    Unacked deliveries are tracked; ``nack`` puts them back.

    ``hold``: while a worker waits for a dependency that is down, ``consume`` hands out
    nothing (back-pressure: the work stays queued instead of piling up in workers)."""

    in_process = True

    def __init__(self, aging_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.aging_s = aging_s
        self._clock = clock
        self._buffer: PriorityBuffer[_Entry] = PriorityBuffer(aging_s, clock)
        self._seq = itertools.count()

    async def start(self) -> None:
        self._buffer.condition()

    async def publish(self, message: ChunkMessage) -> None:
        if message.priority not in PRIORITY_RANK:
            raise ValueError(f"unknown priority {message.priority!r}")
        self._buffer.add(_Entry(message, self._clock(), next(self._seq)))
        await self._buffer.wake()

    async def consume(
        self,
        max_words: int,
        timeout: float | None = None,
        levels: tuple[str, ...] | None = None,
    ) -> list[Delivery]:
        got = await self._buffer.wait_take(max_words, timeout, levels)
        return [delivery for delivery, _ in got]

    async def ack(self, delivery: Delivery) -> None:
        self._buffer.settle(delivery)

    async def nack(self, delivery: Delivery, requeue: bool = True) -> None:
        entry = self._buffer.settle(delivery)
        if entry is not None and requeue:
            entry.message.attempt += 1
            await self.publish(entry.message)

    async def hold(self, holder: str, held: bool) -> None:
        """``holder`` (a worker) waits for a dependency (``held``) or no longer does; while
        any holder waits, ``consume`` returns nothing new."""
        await self._buffer.hold(holder, held)

    def held(self) -> bool:
        return self._buffer.held()

    def depth(self) -> dict[str, int]:
        return self._buffer.depth()

    def inflight(self) -> int:
        return self._buffer.inflight()

    async def publish_result(self, job_id: str, event: dict) -> None:  # nobody outside to tell
        return None

    async def close(self) -> None:
        await self._buffer.close()
