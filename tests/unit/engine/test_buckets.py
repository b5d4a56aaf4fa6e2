"""Batch buckets and the compaction policy of the device loop."""

import numpy as np
import pytest

from control_plane.engine.buckets import (
    bucket_for,
    budget_slices,
    cands_bucket,
    compaction,
    lane_rows,
    pad_rows,
    plan_batches,
)


@pytest.mark.parametrize(
    ("n", "bucket"),
    [(0, 1), (1, 1), (2, 2), (3, 4), (4, 4), (5, 8), (33, 64), (64, 64), (513, 1024), (1024, 1024)],
)
def test_bucket_is_the_next_power_of_two(n, bucket):
    assert bucket_for(n) == bucket


def test_bucket_refuses_more_rows_than_the_largest():
    with pytest.raises(ValueError, match="1025 rows"):
        bucket_for(1025)
    assert bucket_for(16, max_bucket=16) == 16
    with pytest.raises(ValueError):
        bucket_for(17, max_bucket=16)


def test_batches_are_length_sorted_and_bounded():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 120, 500).tolist()
    batches = plan_batches(lengths, max_batch=32, batch_tokens=1024)
    assert sorted(i for b in batches for i in b) == list(range(500))  # each once
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths)
    for b in batches:
        assert 1 <= len(b) <= 32
        # padded size within budget unless a single sentence is longer than it
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 1024


def test_long_sentences_go_in_small_batches():
    lengths = [10] * 40 + [200] * 10
    batches = plan_batches(lengths, max_batch=32, batch_tokens=1024)
    assert [len(b) for b in batches] == [32, 8, 5, 5]
    assert plan_batches(lengths, max_batch=1024, batch_tokens=32768) == [list(range(50))]


def test_no_compaction_while_live_rows_need_the_bucket():
    live = np.ones(32, dtype=bool)
    live[[3, 9, 30]] = False  # 29 left: still needs 32 rows
    assert compaction(live, 32) is None
    live[:13] = False  # 18 left (rows 13..31 but 30): still more than 16
    assert live.sum() == 18 and compaction(live, 32) is None


def test_compaction_to_the_smaller_bucket_keeps_live_rows_in_order():
    live = np.zeros(32, dtype=bool)
    live[[2, 5, 7, 8, 11, 20, 31]] = True  # 7 live rows fit a bucket of 8
    keep = compaction(live, 32)
    assert keep.tolist() == [2, 5, 7, 8, 11, 20, 31, 2]  # padded with the first live row
    live = np.zeros(64, dtype=bool)
    live[[1, 40]] = True  # 2 live rows: straight to a bucket of 2, not 32
    assert compaction(live, 64).tolist() == [1, 40]


def test_exactly_half_compacts():
    live = np.zeros(16, dtype=bool)
    live[8:] = True
    assert compaction(live, 16).tolist() == list(range(8, 16))


def test_all_finished_is_an_empty_keep():
    keep = compaction(np.zeros(8, dtype=bool), 8)
    assert keep is not None and len(keep) == 0


def test_pad_rows():
    assert pad_rows(np.array([4, 6, 9]), 4).tolist() == [4, 6, 9, 4]
    assert pad_rows(np.arange(5), 8).tolist() == [0, 1, 2, 3, 4, 0, 0, 0]
    with pytest.raises(ValueError):
        pad_rows(np.arange(5), 4)


def test_columns_round_up_to_powers_of_two():
    assert [cands_bucket(n) for n in (1, 640, 1024, 1025, 5000, 32000)] == [
        1024,
        1024,
        1024,
        2048,
        8192,
        32768,
    ]


def test_a_call_gets_one_batch_per_lane_all_of_one_size():
    """A call smaller than lanes x max_batch is not one batch on one lane with the other
    idle: each lane takes a length-sorted share; big calls keep max_batch rows."""
    assert lane_rows(20, 32, 2) == 10  # was one batch of 20 on one lane
    assert lane_rows(40, 32, 2) == 20  # 20 + 20, not 32 + 8
    assert lane_rows(33, 32, 1) == 17  # one lane: still even (17 + 16, not 32 + 1)
    assert lane_rows(1, 32, 2) == 1 and lane_rows(0, 32, 2) == 32
    assert lane_rows(692, 32, 2) == 32  # a document: 22 batches of 31-32
    lengths = [5, 40, 12, 3, 25, 8, 30, 14, 9, 21]
    batches = plan_batches(lengths, lane_rows(len(lengths), 32, 2), 10_000)
    assert [sorted(lengths[i] for i in b) for b in batches] == [
        [3, 5, 8, 9, 12], [14, 21, 25, 30, 40]
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("sizes", "budget", "want"),
    [
        ([], 10, []),
        ([3, 3, 3], 10, [(0, 3)]),
        ([4, 4, 4], 8, [(0, 2), (2, 3)]),
        ([4, 4, 4], 7, [(0, 1), (1, 2), (2, 3)]),
        ([20, 1, 1], 10, [(0, 1), (1, 3)]),  # too large alone: a slice of its own
        ([1, 20, 1], 10, [(0, 1), (1, 2), (2, 3)]),
        ([0, 0, 5, 5], 10, [(0, 4)]),
    ],
)
def test_budget_slices(sizes, budget, want):
    got = budget_slices(sizes, budget)
    assert got == want
    assert [i for lo, hi in got for i in range(lo, hi)] == list(range(len(sizes)))
