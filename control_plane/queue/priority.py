"""Pure bookkeeping for the Kafka consumer (no I/O, unit-tested on its own).

* ``levels_to_pause``: strict priority across the chunk topics. While a more urgent level
  has backlog (records fetched but not handed out, plus lag on the broker), every less
  urgent level's partitions are paused, so the consumer fetches only urgent work; they are
  resumed as soon as it drains. A level that has waited ``aging_s`` seconds without being
  served is resumed anyway (never starved forever); it is paused again once it is served.
* ``OffsetTracker``: per partition, which fetched offsets are finished. Only the prefix of
  finished offsets may be committed (``committable``), so an offset is committed only after
  its chunk's result is in the database, whatever order chunks finish in.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from control_plane.domain import PRIORITIES, PRIORITY_RANK


def levels_to_pause(
    backlog: Mapping[str, int],
    waiting_since: Mapping[str, float | None],
    now: float,
    aging_s: float,
) -> set[str]:
    """Priority levels whose partitions should be paused now.

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
