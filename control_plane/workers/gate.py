"""``PriorityGate``: an inference client wrapper that admits calls most urgent first.

The in-process engine runs one batch at a time on one thread, first come first served; a
worker process has several worker tasks, so a critical batch could queue behind several
normal ones. The gate lets ``concurrency`` calls run and hands the next free slot to the
most urgent waiter (ties: first come), so a critical batch waits for at most the batch
that is running. Everything else is delegated to the wrapped client.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Any

from control_plane.queue.base import PRIORITY_RANK


class PriorityGate:
    def __init__(self, client, concurrency: int = 1):  # noqa: ANN001
        self._client = client
        self._free = max(1, concurrency)
        self._waiters: list[tuple[int, int, asyncio.Future]] = []
        self._seq = itertools.count()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def _acquire(self, priority: str) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        fut = asyncio.get_running_loop().create_future()
        entry = (PRIORITY_RANK.get(priority, len(PRIORITY_RANK)), next(self._seq), fut)
        heapq.heappush(self._waiters, entry)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()  # got the slot just as we were cancelled: pass it on
            else:
                self._waiters.remove(entry)
                heapq.heapify(self._waiters)
            raise

    def _release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)
                return
        self._free += 1

    async def translate(
        self,
        segments: list[str],
        source: str,
        target: str,
        priority: str = "normal",
        timeout: float | None = None,
    ):  # noqa: ANN201
        await self._acquire(priority)
        try:
            return await self._client.translate(
                segments, source, target, priority=priority, timeout=timeout
            )
        finally:
            self._release()
