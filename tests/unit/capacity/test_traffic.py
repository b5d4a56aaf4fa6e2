"""The traffic generator: reproducible, the totals asked for, the day's shape."""

from __future__ import annotations

from control_plane.capacity.traffic import MAX_DOCUMENT_WORDS, Traffic, summary


def test_same_seed_same_jobs_other_seed_other_jobs():
    a, b = Traffic(words=200_000, seed=3).jobs(), Traffic(words=200_000, seed=3).jobs()
    assert a == b
    assert Traffic(words=200_000, seed=4).jobs() != a


def test_total_words_and_bounds():
    jobs = Traffic(words=1_000_000, seed=1).jobs()
    assert sum(j.words for j in jobs) == 1_000_000
    assert all(1 <= j.words <= MAX_DOCUMENT_WORDS for j in jobs)
    assert max(j.words for j in jobs if j.priority == "critical") <= 2000
    assert all(0 <= j.at_s < 86_400 for j in jobs)
    assert [j.at_s for j in jobs] == sorted(j.at_s for j in jobs)


def test_mix_of_priorities_and_heavy_tailed_sizes():
    s = summary(Traffic(words=5_000_000, seed=2).jobs())
    shares = {p: s["by_priority"][p]["jobs"] / s["jobs"] for p in ("critical", "high", "normal")}
    assert abs(shares["critical"] - 0.10) < 0.02 and abs(shares["normal"] - 0.65) < 0.03
    normal = s["by_priority"]["normal"]
    assert normal["p50_words"] < 1000 < normal["p99_words"]  # most small, a long tail


def test_diurnal_curve_and_bursts():
    jobs = Traffic(words=3_000_000, seed=5, bursts=0).jobs()
    night = sum(1 for j in jobs if j.at_s < 6 * 3600)
    afternoon = sum(1 for j in jobs if 12 * 3600 <= j.at_s < 18 * 3600)
    assert afternoon > 2.5 * night
    # with bursts, some 10-minute window holds far more than the busiest hour's average
    bursty = Traffic(words=3_000_000, seed=5, bursts=4, burst_share=0.2).jobs()
    per_window: dict[int, int] = {}
    for j in bursty:
        per_window[int(j.at_s // 600)] = per_window.get(int(j.at_s // 600), 0) + 1
    assert max(per_window.values()) > 3 * len(bursty) / 144


def test_a_short_trace_is_the_same_shape_bounded():
    jobs = Traffic(words=10**9, period_s=300.0, seed=1, max_jobs=50).jobs()
    assert len(jobs) == 50
    assert all(0 <= j.at_s < 300.0 for j in jobs)
