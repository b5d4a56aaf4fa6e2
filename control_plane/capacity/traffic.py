"""Synthetic translation traffic for the capacity simulator: a day (or any period) of jobs
with a diurnal curve, bursts, a priority mix and heavy-tailed document sizes.

The same generator makes the simulated day (86,400 s at 10k, 1M or 100M words) and the
short trace replayed against the local stack (the day's shape compressed into a few
minutes), so that the replay checks the model the day uses. Seeded: the same ``Traffic``
always gives the same jobs.

Shape, on the period's phase x in [0, 1) (x = 0 is 00:00 UTC for a day):

- diurnal rate: a floor of ``night_floor`` plus a working-day hump (Gaussian around
  14:00 UTC, the overlap of European afternoon and American morning) and a smaller
  evening one;
- bursts: ``bursts`` windows of ``burst_minutes`` (on a day; scaled with the period)
  that carry ``burst_share`` of the jobs on top of the curve (a batch upload, a release);
- sizes per priority (``SIZES``): a share of sentence-sized requests (5-40 words), short
  documents (log-normal around a few hundred words) and long documents (Pareto tail from
  1,000 words, cut at the product's 15,000-word document limit). Critical work is
  interactive: it stays small (at most 2,000 words).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

PRIORITIES = ("critical", "high", "normal")
DAY_S = 86_400.0
MAX_DOCUMENT_WORDS = 15_000


@dataclass(frozen=True)
class Job:
    index: int
    at_s: float  # arrival, seconds from the period's start
    priority: str
    words: int
    partition: int | None = None  # Kafka partition of its chunks, when known (a replay)


@dataclass(frozen=True)
class SizeMix:
    """Document sizes of one priority: shares of sentence / short / long requests."""

    sentence: float  # 5-40 words, uniform
    short: float  # log-normal, median ``short_median`` words
    long: float  # Pareto(alpha) from 1,000 words, cut at ``cap``
    short_median: float = 250.0
    alpha: float = 1.3
    cap: int = MAX_DOCUMENT_WORDS

    def draw(self, rng: np.random.Generator) -> int:
        u = rng.random()
        if u < self.sentence:
            words = rng.integers(5, 41)
        elif u < self.sentence + self.short:
            words = rng.lognormal(math.log(self.short_median), 0.8)
        else:
            words = 1000.0 * (1.0 - rng.random()) ** (-1.0 / self.alpha)
        return int(min(self.cap, max(1, round(float(words)))))


SIZES = {
    "critical": SizeMix(sentence=0.6, short=0.4, long=0.0, short_median=120, cap=2000),
    "high": SizeMix(sentence=0.35, short=0.5, long=0.15),
    "normal": SizeMix(sentence=0.2, short=0.5, long=0.3),
}


@dataclass(frozen=True)
class Traffic:
    """What to generate: ``words`` in total over ``period_s`` seconds."""

    words: int
    period_s: float = DAY_S
    seed: int = 1
    shares: dict[str, float] = field(
        default_factory=lambda: {"critical": 0.10, "high": 0.25, "normal": 0.65}
    )  # of jobs
    night_floor: float = 0.25
    bursts: int = 6
    burst_minutes: float = 10.0  # on a day; scaled with period_s / DAY_S
    burst_share: float = 0.15
    max_jobs: int | None = None  # a bound for short replays
    sizes: dict[str, SizeMix] = field(default_factory=lambda: dict(SIZES))

    def jobs(self) -> list[Job]:
        return generate(self)


def diurnal(x: np.ndarray, night_floor: float = 0.25) -> np.ndarray:
    """Relative arrival rate at phase ``x`` (0..1 of the period), max about 1 + floor."""
    hump = np.exp(-0.5 * ((x - 14 / 24) / (3.2 / 24)) ** 2)
    evening = 0.35 * np.exp(-0.5 * ((x - 20.5 / 24) / (1.5 / 24)) ** 2)
    return night_floor + hump + evening


def generate(t: Traffic) -> list[Job]:
    rng = np.random.default_rng(t.seed)
    names = list(t.shares)
    p = np.array([t.shares[n] for n in names], dtype=float)
    p /= p.sum()
    priorities: list[str] = []
    sizes: list[int] = []
    total = 0
    while total < t.words and (t.max_jobs is None or len(sizes) < t.max_jobs):
        prio = names[int(rng.choice(len(names), p=p))]
        words = min(t.sizes[prio].draw(rng), max(1, t.words - total))
        priorities.append(prio)
        sizes.append(words)
        total += words
    n = len(sizes)
    # arrival times: inverse CDF of the diurnal curve, bursts on top
    grid = np.linspace(0.0, 1.0, 2881)
    cdf = np.cumsum(diurnal(grid, t.night_floor))
    cdf = (cdf - cdf[0]) / (cdf[-1] - cdf[0])
    burst_len = t.burst_minutes * 60.0 / DAY_S  # as a share of the period
    starts = rng.uniform(0.0, 1.0 - burst_len, size=max(0, t.bursts))
    in_burst = rng.random(n) < (t.burst_share if t.bursts > 0 else 0.0)
    base = np.interp(rng.random(n), cdf, grid)
    which = rng.integers(0, max(1, t.bursts), size=n)
    burst = starts[which] + rng.random(n) * burst_len if t.bursts > 0 else base
    phase = np.where(in_burst, burst, base)
    at = np.clip(phase, 0.0, 1.0 - 1e-9) * t.period_s
    order = np.argsort(at, kind="stable")
    return [
        Job(index=i, at_s=float(at[k]), priority=priorities[k], words=sizes[k])
        for i, k in enumerate(order)
    ]


def summary(jobs: list[Job]) -> dict:
    """Counts and words per priority, and size percentiles: what a report quotes."""
    out: dict = {"jobs": len(jobs), "words": sum(j.words for j in jobs), "by_priority": {}}
    for prio in PRIORITIES:
        sizes = [j.words for j in jobs if j.priority == prio]
        if sizes:
            arr = np.array(sizes)
            out["by_priority"][prio] = {
                "jobs": len(sizes),
                "words": int(arr.sum()),
                "p50_words": int(np.percentile(arr, 50)),
                "p99_words": int(np.percentile(arr, 99)),
                "max_words": int(arr.max()),
            }
    return out
