"""Which fetched offsets of a partition may be committed (no I/O, unit-tested on its own).

A Kafka consumer here commits an offset only after the work of every record before it is
finished (a chunk's result, an ingest job, in the database), whatever order records finish
in: ``OffsetTracker`` keeps, per partition, the fetched offsets and which are done, and
``committable`` gives the end of the finished prefix. At-least-once delivery; the
consumers' idempotent effects make it exactly-once.
"""

from __future__ import annotations

from collections import OrderedDict


class OffsetTracker:
    """Offsets of one partition handed to workers, in fetch order, and which are done."""

    def __init__(self) -> None:
        self._pending: OrderedDict[int, bool] = OrderedDict()
        self._committed: int | None = None  # next offset to commit (Kafka convention)
        self.uncommitted: int | None = None  # a committable offset whose commit failed

    def add(self, offset: int) -> None:
        if offset not in self._pending and (self._committed is None or offset >= self._committed):
            self._pending[offset] = False

    def done(self, offset: int) -> bool:
        """Mark finished; False when the offset is unknown (e.g. already committed)."""
        if offset not in self._pending:
            return False
        self._pending[offset] = True
        return True

    def committable(self) -> int | None:
        """The offset to commit (last contiguous finished offset + 1), or None if nothing
        new. Drops the finished prefix."""
        last = None
        while self._pending:
            offset, finished = next(iter(self._pending.items()))
            if not finished:
                break
            self._pending.popitem(last=False)
            last = offset
        if last is None:
            return None
        self._committed = last + 1
        return self._committed

    def outstanding(self) -> int:
        return sum(1 for finished in self._pending.values() if not finished)

    def __len__(self) -> int:
        return len(self._pending)
