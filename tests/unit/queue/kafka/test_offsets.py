"""Which offsets may be committed: only the finished prefix of a partition."""

from __future__ import annotations

from control_plane.queue.kafka.offsets import OffsetTracker


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
