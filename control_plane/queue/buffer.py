"""Strict priority with aging, in one place for every chunk queue.

Both queues hold chunk messages in a process before handing them to worker tasks: the
in-process queue holds all of them, a Kafka consumer the records it fetched. The rules for
which one goes next are the same, so they live here once:

* ``PriorityBuffer.take``: one FIFO per priority level; the next delivery comes from the
  level whose head is most urgent, where a head's effective level improves by one for every
  ``aging_s`` seconds it has waited (a normal message waiting 2*aging_s competes as
  critical), ties going to the older message. Deliveries are taken up to ``max_words``
  words (at least one), optionally only from some ``levels`` (workers reserved for urgent
  work). While any holder waits for a dependency (``hold``), nothing is handed out
  (back-pressure: the work stays buffered instead of piling up in workers).
* ``levels_to_pause``: the same aging rule applied at the broker (which priority topics a
  Kafka consumer should stop fetching while a more urgent level has backlog).

The buffer knows nothing of where its items came from: an item is anything with a
``message`` (ChunkMessage), a ``since`` (clock time it started waiting) and a ``seq`` (tie
breaker), and the owner passes a ``live`` check to drop items that became stale (a Kafka
record of a partition revoked meanwhile).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Generic, Protocol, TypeVar

from control_plane.domain import PRIORITIES, PRIORITY_RANK
from control_plane.queue.base import ChunkMessage, Delivery


class Buffered(Protocol):
    """What the buffer needs of an item: its message and when it started waiting."""

    message: ChunkMessage
    since: float
    seq: int


T = TypeVar("T", bound=Buffered)


class PriorityBuffer(Generic[T]):
    """Items per priority level, handed out most urgent first (see the module docstring).

    Handed-out items are kept by delivery token until ``settle``d (ack or nack), so the
    owner can find what a ``Delivery`` stands for; ``close`` wakes every waiting consumer.
    """

    def __init__(self, aging_s: float, clock: Callable[[], float] = time.monotonic):
        self.aging_s = aging_s
        self.clock = clock
        self.levels: dict[str, deque[T]] = {p: deque() for p in PRIORITIES}
        self._inflight: dict[int, T] = {}
        self._tokens = 0
        self._holders: set[str] = set()
        self._cond: asyncio.Condition | None = None
        self.closed = False

    def condition(self) -> asyncio.Condition:
        """Created on first use, inside the event loop that waits on it."""
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    # -- filling ---------------------------------------------------------------------

    def add(self, item: T) -> None:
        """Append on the item's priority level; call ``wake`` once after a batch."""
        self.levels[item.message.priority].append(item)

    async def wake(self) -> None:
        """Tell waiting consumers that something changed (new items, released hold)."""
        cond = self.condition()
        async with cond:
            cond.notify_all()

    def drop(self, stale: Callable[[T], bool]) -> None:
        """Remove every waiting item for which ``stale`` is true."""
        for level, items in self.levels.items():
            self.levels[level] = deque(item for item in items if not stale(item))

    # -- taking ----------------------------------------------------------------------

    def _pick(self, levels: tuple[str, ...] | None) -> str | None:
        now = self.clock()
        best: tuple[float, float, int] | None = None
        best_level = None
        for level, items in self.levels.items():
            if not items or (levels is not None and level not in levels):
                continue
            head = items[0]
            # aged messages never overtake by less than a whole level
            eff = PRIORITY_RANK[level]
            if self.aging_s > 0:
                eff -= int((now - head.since) // self.aging_s)
            key = (max(eff, 0), head.since, head.seq)
            if best is None or key < best:
                best, best_level = key, level
        return best_level

    def take(
        self,
        max_words: int,
        levels: tuple[str, ...] | None = None,
        live: Callable[[T], bool] | None = None,
    ) -> list[tuple[Delivery, T]]:
        """The most urgent items now, up to ``max_words`` words (at least one); nothing
        while held. Items failing ``live`` are discarded on the way."""
        out: list[tuple[Delivery, T]] = []
        if self._holders:  # a dependency is down: take no new work
            return out
        words = 0
        while True:
            level = self._pick(levels)
            if level is None:
                break
            item = self.levels[level][0]
            if live is not None and not live(item):
                self.levels[level].popleft()
                continue
            if out and words + item.message.word_count > max_words:
                break
            self.levels[level].popleft()
            self._tokens += 1
            self._inflight[self._tokens] = item
            out.append((Delivery(item.message, self._tokens), item))
            words += item.message.word_count
            if words >= max_words:
                break
        return out

    async def wait_take(
        self,
        max_words: int,
        timeout: float | None,
        levels: tuple[str, ...] | None = None,
        live: Callable[[T], bool] | None = None,
    ) -> list[tuple[Delivery, T]]:
        """``take``, waiting up to ``timeout`` s (None: forever) for something to take;
        [] on timeout or once closed."""
        cond = self.condition()
        deadline = None if timeout is None else self.clock() + timeout
        async with cond:
            while True:
                if self.closed:
                    return []
                got = self.take(max_words, levels, live)
                if got:
                    return got
                remaining = None if deadline is None else deadline - self.clock()
                if remaining is not None and remaining <= 0:
                    return []
                try:
                    await asyncio.wait_for(cond.wait(), remaining)
                except TimeoutError:
                    return []

    def settle(self, delivery: Delivery) -> T | None:
        """The item a delivery stands for, forgotten (None if already settled)."""
        return self._inflight.pop(delivery.token, None)

    # -- back-pressure and state -----------------------------------------------------

    async def hold(self, holder: str, held: bool) -> None:
        """``holder`` (a worker) waits for a dependency (``held``) or no longer does; while
        any holder waits, nothing new is handed out."""
        if held:
            self._holders.add(holder)
            return
        self._holders.discard(holder)
        if not self._holders:
            await self.wake()

    def held(self) -> bool:
        return bool(self._holders)

    def depth(self) -> dict[str, int]:
        return {p: len(items) for p, items in self.levels.items()}

    def inflight(self) -> int:
        return len(self._inflight)

    async def close(self) -> None:
        self.closed = True
        await self.wake()


def levels_to_pause(
    backlog: Mapping[str, int],
    waiting_since: Mapping[str, float | None],
    now: float,
    aging_s: float,
) -> set[str]:
    """Priority levels whose Kafka partitions should be paused now: strict priority at the
    broker. While a more urgent level has backlog, every less urgent level is paused; a
    level that has waited ``aging_s`` seconds per rank without being served is resumed
    anyway (never starved forever) and paused again once served.

    ``backlog[level]``: messages of that level waiting (buffered + broker lag).
    ``waiting_since[level]``: when the level last started waiting with backlog and nothing
    served (None when it has no backlog or was just served)."""
    paused: set[str] = set()
    urgent_backlog = False
    for level in PRIORITIES:  # most urgent first
        if urgent_backlog:
            since = waiting_since.get(level)
            starving = (
                aging_s > 0
                and since is not None
                and backlog.get(level, 0) > 0
                and now - since >= aging_s * PRIORITY_RANK[level]
            )
            if not starving:
                paused.add(level)
        if backlog.get(level, 0) > 0:
            urgent_backlog = True
    return paused
