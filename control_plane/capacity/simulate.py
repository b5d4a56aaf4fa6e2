"""Capacity simulator: jobs -> chunks on per-priority queues -> worker replicas -> batches
on Triton (or in-process engine) replicas, with KEDA/HPA scaling, pod start-up and spot
interruptions, in fixed time steps (deterministic for a seed).

Why a model of our own pipeline rather than a queueing formula: what decides the SLA is
the interplay of the real worker's batching (``batch_words`` of chunks per call, urgent
slots for critical/high work), strict priority with aging, and the autoscaler's delays
(polling, stabilisation windows, rate limits, start-up and model load). Each is modelled
the way the real component does it:

- **Traffic -> queue.** A job becomes ``ceil(words / chunk_words)`` chunks of about equal
  size (``control_plane.text.chunking`` packs paragraphs up to ``MTB_CHUNK_WORDS``) on its
  priority's queue (Kafka topic ``mtb.chunks.<priority>``).
- **Workers** (``mtctl worker``; one Deployment per entry of the policy's ``workers``):
  each ready replica runs one main consumer task (its priorities) plus
  ``urgent_slots`` tasks that take only critical/high chunks (``MTB_URGENT_WORKERS``).
  A free task takes chunks, most urgent level first (a level climbs one rank per
  ``aging_s`` its head has waited), until the batch holds about ``batch_words`` words, and
  sends the batch to its Triton pool; the chunks complete when the batch does.
- **Triton replicas** translate ``words_per_s`` each (the measured per-replica speed).
  Batches in flight on one replica share it with strict priority (Triton's priority
  queue: critical batches first) and equally within a level. ``shared_words_per_s`` caps
  the busy replicas together: the local stack's two workers share two cores.
  ``colocated``: worker replica k's engine is pool replica k (in-process engine).
  ``lanes`` (the in-process CPU engine): a call is cut into engine batches that run one
  per lane, one core each, most urgent first without preemption; a call has at least one
  batch per lane where it has a sentence for each, all of one size, as the engine cuts it
  (``engine_batches``), so a one-sentence call gets one core, not the replica.
- **Scaling** (every ``polling_s``): workers on lag (queued + uncommitted chunks of their
  topics; desired = ceil(lag / lag_threshold)); Triton pools on GPU utilisation over the
  last poll and on average queue time (time a finished batch spent beyond its own
  translation time): up when utilisation > ``util_up`` or queue time > ``queue_up_s``
  (desired = ceil(current * util / util_up), at least +1 on queue pressure), down only when
  utilisation < ``util_down`` (to ceil(current * util / util_up)) held over
  ``down_window_s``. HPA semantics on that desired count: 10% tolerance, stabilisation
  windows (up: min of the window's recommendations, down: max), rate policies (at most
  ``up_pods`` added per ``up_period_s``, at most ``down_percent``% removed per
  ``down_period_s``), min/max. KEDA on top: a target at 0 is activated to 1 when its
  trigger is active (lag > activation threshold; a Triton pool: chunks waiting for it),
  and a ``min_replicas: 0`` target goes to 0 after ``cooldown_s`` without activity.
  Cron schedules hold a floor. New pods are ready after ``start_s`` (worker start-up;
  Triton start + model load). Scale-down removes starting pods first, then idle ones,
  then lets busy ones drain.
- **Spot interruptions**: each ready replica on a spot pool is reclaimed at
  ``spot_per_hour``; it stops taking work at the notice, its replacement is created at
  once, and what it still holds when ``spot_notice_s`` ends is put back at the head of its
  queue (Kafka redelivers uncommitted chunks).

Completion of a job = its last chunk's batch end + ``latency_s`` (submit, planning and
finishing work that is not translation; measured on the local stack) + its last chunk's
words x ``serial_s_per_word`` (the worker's own work on a chunk outside the engine's
lanes: segmenting and tokenising before, detokenising, assembling and storing after. On a
backlog it overlaps other chunks' translation and is part of the measured speed; a job's
last chunk has nothing to overlap with. On the 2-core EPYC, 2026-12-01, a ~300-word job
alone took 0.33 s where its words on the lanes and the fixed latency made 0.23 s).
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field

from control_plane.capacity.traffic import PRIORITIES, Job

RANK = {p: i for i, p in enumerate(PRIORITIES)}
URGENT = ("critical", "high")
SLA_S = {"critical": 30.0, "high": 300.0}


@dataclass(frozen=True)
class Scaling:
    """KEDA and HPA behaviour (the policy's ``keda`` and ``hpa``)."""

    polling_s: float = 15.0
    cooldown_s: float = 600.0
    up_stabilization_s: float = 0.0
    down_stabilization_s: float = 600.0
    up_pods: int = 4
    up_period_s: float = 15.0
    down_percent: float = 50.0
    down_period_s: float = 60.0
    tolerance: float = 0.1  # HPA's default --horizontal-pod-autoscaler-tolerance


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    priorities: tuple[str, ...]
    pool: str
    min_replicas: int
    max_replicas: int
    lag_threshold: float = 10.0
    activation_lag: float = 0.0
    start_s: float = 20.0
    spot: bool = False
    urgent_slots: int = 1
    colocated: bool = False  # replica k's engine is pool replica k (in-process engine)
    scaled: bool = True  # False: fixed at min_replicas


@dataclass(frozen=True)
class PoolSpec:
    name: str
    serves: tuple[str, ...]
    words_per_s: float  # per replica, measured
    min_replicas: int
    max_replicas: int
    start_s: float = 90.0
    spot: bool = False
    util_up: float = 0.8
    queue_up_s: float = 0.25
    util_down: float = 0.3
    down_window_s: float = 600.0
    shared_words_per_s: float | None = None
    # The engine's lanes (``control_plane.engine.lanes``): 0 = one fluid server (a call
    # may use the whole replica however small). n > 0: a call is cut into engine batches
    # of about ``lane_words`` words (the engine's ``max_batch`` sentences, ``lane_segments``)
    # and into at least one batch per lane where it has the sentences for it, all of one
    # size (``control_plane.engine.buckets.lane_rows``); each runs on one lane at
    # ``words_per_s / n``, lanes take batches most urgent first and finish what they
    # started (no preemption). A one-sentence call runs on one lane, one core.
    lanes: int = 0
    lane_words: float = 320.0
    lane_segments: int = 32
    kind: str = ""  # the cost model's instance kind
    scaled: bool = True


@dataclass(frozen=True)
class Schedule:
    """A cron floor: ``target`` holds at least ``replicas`` from ``start_s`` to ``end_s``
    (seconds of the simulated day)."""

    target: str
    start_s: float
    end_s: float
    replicas: int


@dataclass(frozen=True)
class SimConfig:
    workers: tuple[WorkerSpec, ...]
    pools: tuple[PoolSpec, ...]
    scaling: Scaling = field(default_factory=Scaling)
    schedules: tuple[Schedule, ...] = ()
    chunk_words: int = 1000
    batch_words: int = 8000
    aging_s: float = 30.0
    latency_s: float = 0.0
    serial_s_per_word: float = 0.0  # a job's last chunk's host work (module docstring)
    # replica time per engine call on top of its words (the decoder runs as many steps as
    # the call's longest sentence): ``batch_overhead_s`` for a call of
    # ``batch_overhead_words`` or more, linearly less for smaller ones
    batch_overhead_s: float = 0.0
    batch_overhead_words: float = 300.0
    spot_per_hour: float = 0.0
    spot_notice_s: float = 120.0
    dt: float = 1.0
    sample_s: float = 60.0
    seed: int = 1
    # Kafka partitions per topic: a job's chunks go to one partition (job.partition, else
    # its index modulo this) and worker replica k of n consumes partitions p % n == k;
    # None: any worker takes any chunk
    partitions: int | None = None
    start_warm: bool = True  # min replicas ready at t=0


# -- state -------------------------------------------------------------------------------


@dataclass
class _Chunk:
    job: int
    priority: str
    words: float
    queued_at: float
    partition: int = 0


class _Level:
    """One priority's topic: a FIFO per partition (a job's chunks share its partition,
    Kafka's key is the job id). ``owned`` None: every partition."""

    def __init__(self) -> None:
        self.parts: dict[int, deque[_Chunk]] = {}
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def append(self, ch: _Chunk) -> None:
        self.parts.setdefault(ch.partition, deque()).append(ch)
        self.n += 1

    def appendleft(self, ch: _Chunk) -> None:
        self.parts.setdefault(ch.partition, deque()).appendleft(ch)
        self.n += 1

    def head(self, owned: frozenset[int] | None) -> deque[_Chunk] | None:
        """The owned partition whose head waited longest (None: nothing owned waits)."""
        best = None
        for part, q in self.parts.items():
            if q and (owned is None or part in owned):
                if best is None or q[0].queued_at < best[0].queued_at:
                    best = q
        return best


@dataclass
class _Batch:
    chunks: list[_Chunk]
    rank: int
    words_left: float
    started: float
    worker: _Replica
    replica: _Replica | None = None
    parts: list[float] = field(default_factory=list)  # engine batches not started (lanes)
    running: int = 0  # engine batches on a lane now

    @property
    def words(self) -> float:
        return sum(c.words for c in self.chunks)


@dataclass
class _Replica:
    ident: int
    ready_at: float
    dies_at: float | None = None  # spot notice given: stops taking work, gone then
    draining: bool = False  # scaled down while busy: leaves when its batches end
    batches: list[_Batch] = field(default_factory=list)  # worker: its slots; pool: in flight
    lanes: list[list] = field(default_factory=list)  # pool with lanes: [batch, words left]

    def ready(self, t: float) -> bool:
        return self.ready_at <= t


class Scaler:
    """HPA's recommendation history and rate-limit events, with KEDA's activation and
    cooldown, for one scaled target."""

    def __init__(self, name: str, lo: int, hi: int, s: Scaling, down_window_s: float):
        self.name = name
        self.lo, self.hi, self.s = lo, hi, s
        self.down_window_s = down_window_s
        self.recs: deque[tuple[float, int]] = deque()
        self.events: deque[tuple[float, int]] = deque()  # (t, change)
        self.last_active = 0.0

    def decide(self, t: float, current: int, desired: int, active: bool, floor: int = 0) -> int:
        s = self.s
        if active or floor > 0:
            self.last_active = t
        if current == 0:  # KEDA: activation scales 0 -> 1 (or min), the HPA does the rest
            new = max(1, self.lo) if active or floor > 0 else max(0, self.lo)
            self._event(t, new - current)
            return new
        if self.lo == 0 and not active and floor == 0 and t - self.last_active >= s.cooldown_s:
            self.recs.clear()
            self._event(t, -current)
            return 0  # KEDA: cooldown over, scale to zero
        desired = max(desired, floor)
        desired = min(self.hi, max(max(self.lo, 1), desired))
        self.recs.append((t, desired))
        keep = max(s.up_stabilization_s, self.down_window_s)
        while self.recs and self.recs[0][0] < t - keep:
            self.recs.popleft()
        up = min(r for tt, r in self.recs if tt >= t - s.up_stabilization_s)
        down = max(r for tt, r in self.recs if tt >= t - self.down_window_s)
        rec = current
        if rec < up:
            rec = up
        if rec > down:
            rec = down
        # rate policies, from the replica count at the start of each period
        added = sum(c for tt, c in self.events if tt > t - s.up_period_s and c > 0)
        removed = -sum(c for tt, c in self.events if tt > t - s.down_period_s and c < 0)
        up_limit = (current - added) + s.up_pods
        down_start = current + removed
        down_limit = int(down_start * (1 - s.down_percent / 100.0))
        rec = min(rec, up_limit) if rec > current else max(rec, down_limit)
        rec = min(self.hi, max(max(self.lo, 1), rec))
        self._event(t, rec - current)
        return rec

    def _event(self, t: float, change: int) -> None:
        if change:
            self.events.append((t, change))
        while self.events and self.events[0][0] < t - max(self.s.up_period_s, self.s.down_period_s):
            self.events.popleft()


def hpa_ratio_desired(current: int, ratio: float, tolerance: float) -> int:
    """HPA: no change within the tolerance, else ceil(current * ratio)."""
    if current > 0 and abs(ratio - 1.0) <= tolerance:
        return current
    return math.ceil(current * ratio - 1e-9)


class _Deployment:
    def __init__(self, name: str, lo: int, start_s: float, spot: bool, t0: float, warm: bool):
        self.name = name
        self.start_s = start_s
        self.spot = spot
        self.replicas: list[_Replica] = []
        self._next = 0
        for _ in range(lo):
            self.add(t0 - (start_s if warm else 0.0))

    def add(self, t: float) -> _Replica:
        r = _Replica(self._next, t + self.start_s)
        self._next += 1
        self.replicas.append(r)
        return r

    def counted(self) -> list[_Replica]:
        """Replicas the controller counts (not draining, not under notice)."""
        return [r for r in self.replicas if not r.draining and r.dies_at is None]

    def serving(self, t: float) -> list[_Replica]:
        return [r for r in self.replicas if r.ready(t) and not r.draining and r.dies_at is None]

    def scale_to(self, t: float, n: int) -> None:
        live = self.counted()
        if n > len(live):
            for _ in range(n - len(live)):
                self.add(t)
            return
        excess = len(live) - n
        # starting pods first, then idle ones, then busy ones drain
        order = sorted(live, key=lambda r: (r.ready(t), bool(r.batches), r.ident), reverse=False)
        for r in order[:excess]:
            if not r.ready(t) or not r.batches:
                self.replicas.remove(r)
            else:
                r.draining = True


# -- the simulation ----------------------------------------------------------------------


@dataclass
class Result:
    completion_s: dict[int, float]  # job index -> completion time (s after arrival)
    jobs: list[Job]
    series: dict[str, list]  # sampled every sample_s: t, replicas per deployment, queues, ...
    replica_seconds: dict[str, float]  # per deployment: pods billed (starting, ready, draining)
    words_done: float
    spot_interruptions: int
    requeued_chunks: int
    end_s: float

    def sla(self) -> dict[str, dict]:
        out = {}
        for prio in PRIORITIES:
            times = sorted(self.completion_s[j.index] for j in self.jobs if j.priority == prio
                           and j.index in self.completion_s)  # fmt: skip
            n = sum(1 for j in self.jobs if j.priority == prio)
            if not n:
                continue
            row: dict = {"jobs": n, "completed": len(times)}
            if times:
                row.update(
                    p50_s=round(_pct(times, 50), 2),
                    p95_s=round(_pct(times, 95), 2),
                    p99_s=round(_pct(times, 99), 2),
                    max_s=round(times[-1], 2),
                )
            if prio in SLA_S:
                ok = sum(1 for x in times if x < SLA_S[prio])
                row["sla_s"] = SLA_S[prio]
                row["within_sla"] = round(ok / n, 5)
            out[prio] = row
        return out


def _pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


class Simulation:
    def __init__(self, config: SimConfig, jobs: list[Job]):
        self.c = config
        self.jobs = sorted(jobs, key=lambda j: j.at_s)
        self.rng = random.Random(config.seed)
        self.pools = {p.name: p for p in config.pools}
        self.wspecs = {w.name: w for w in config.workers}
        for w in config.workers:
            if w.pool not in self.pools:
                raise ValueError(f"worker {w.name}: no pool {w.pool!r}")
        t0 = 0.0
        warm = config.start_warm
        self.wdeps = {w.name: _Deployment(w.name, w.min_replicas, w.start_s, w.spot, t0, warm)
                      for w in config.workers}  # fmt: skip
        self.pdeps = {p.name: _Deployment(p.name, p.min_replicas, p.start_s, p.spot, t0, warm)
                      for p in config.pools}  # fmt: skip
        s = config.scaling
        self.scalers = {
            w.name: Scaler(w.name, w.min_replicas, w.max_replicas, s, s.down_stabilization_s)
            for w in config.workers
        }
        for p in config.pools:
            window = max(s.down_stabilization_s, p.down_window_s)
            self.scalers[p.name] = Scaler(p.name, p.min_replicas, p.max_replicas, s, window)
        self.queues: dict[str, _Level] = {p: _Level() for p in PRIORITIES}
        self.left: dict[int, int] = {}  # job -> chunks not done
        self.done_at: dict[int, float] = {}
        self.arrival = {j.index: j.at_s for j in self.jobs}
        self.words_done = 0.0
        self.interruptions = 0
        self.requeued = 0
        # per pool, over the current polling window: words translated, capacity offered,
        # queue time of the batches that finished
        self.win_words = {p: 0.0 for p in self.pools}
        self.win_capacity = {p: 0.0 for p in self.pools}
        self.win_queue: dict[str, list[float]] = {p: [] for p in self.pools}
        self.replica_seconds = {n: 0.0 for n in (*self.wdeps, *self.pdeps)}
        names = (*self.wdeps, *self.pdeps)
        self.series: dict[str, list] = {"t_s": [], "words_per_min": []}
        self.series.update({f"replicas.{n}": [] for n in names})
        self.series.update({f"queue.{p}": [] for p in PRIORITIES})
        self._sample_words = 0.0

    # -- steps ---------------------------------------------------------------------------

    def run(self, until_s: float | None = None, drain: bool = True) -> Result:
        c = self.c
        end = until_s if until_s is not None else (self.jobs[-1].at_s if self.jobs else 0.0)
        t = 0.0
        step = 0
        i = 0
        next_poll = 0.0
        next_sample = 0.0
        hard_end = end + (86_400.0 if drain else 0.0)
        while True:
            while i < len(self.jobs) and self.jobs[i].at_s <= t + 1e-9:
                self._arrive(self.jobs[i], t)
                i += 1
            if t >= next_poll - 1e-9:
                self._autoscale(t)
                next_poll += c.scaling.polling_s
            self._spot(t)
            self._dispatch(t)
            self._progress(t)
            self._bill()
            if t >= next_sample - 1e-9:
                self._sample(t)
                next_sample += c.sample_s
            step += 1
            t = step * c.dt  # not a running sum: no drift over a day of small steps
            pending = i < len(self.jobs) or any(self.queues.values()) or self._in_flight()
            if t >= end and (not drain or not pending):
                break
            if t >= hard_end:
                break
        return Result(
            completion_s={j: self.done_at[j] - self.arrival[j] for j in self.done_at},
            jobs=self.jobs,
            series=self.series,
            replica_seconds=self.replica_seconds,
            words_done=self.words_done,
            spot_interruptions=self.interruptions,
            requeued_chunks=self.requeued,
            end_s=t,
        )

    def _in_flight(self) -> bool:
        return any(r.batches for d in self.pdeps.values() for r in d.replicas)

    def _arrive(self, job: Job, t: float) -> None:
        n = max(1, math.ceil(job.words / self.c.chunk_words))
        self.left[job.index] = n
        part = 0
        if self.c.partitions:
            part = job.partition if job.partition is not None else job.index
            part %= self.c.partitions
        for _ in range(n):
            self.queues[job.priority].append(
                _Chunk(job.index, job.priority, job.words / n, job.at_s, part)
            )

    def _level_order(
        self, t: float, levels: tuple[str, ...], owned: frozenset[int] | None
    ) -> list[deque[_Chunk]]:
        """The worker's non-empty levels in the order the real buffer serves them
        (control_plane.queue.buffer): a head's level improves by one per ``aging_s`` it
        has waited, never past critical, ties to the older head."""
        aging = self.c.aging_s
        heads = []
        for p in levels:
            q = self.queues[p].head(owned)
            if q is not None:
                since = q[0].queued_at
                eff = RANK[p] - (int((t - since) // aging) if aging > 0 else 0)
                heads.append(((max(eff, 0), since, RANK[p]), p))
        return [p for _, p in sorted(heads)]

    def _dispatch(self, t: float) -> None:
        c = self.c
        for name, dep in self.wdeps.items():
            spec = self.wspecs[name]
            pool = self.pdeps[spec.pool]
            pspec = self.pools[spec.pool]
            targets = pool.serving(t)
            if not targets:
                continue
            serving = sorted(dep.serving(t), key=lambda r: r.ident)
            for k, w in enumerate(serving):
                owned = None
                if self.c.partitions:
                    owned = frozenset(p for p in range(self.c.partitions) if p % len(serving) == k)
                # slot 0: any of its priorities; slots 1..: urgent only
                slots = [tuple(spec.priorities)] + [
                    tuple(p for p in spec.priorities if p in URGENT)
                ] * spec.urgent_slots
                busy = len(w.batches)
                for levels in slots[busy:]:
                    if not levels:
                        continue
                    batch = self._take(t, levels, owned, w)
                    if batch is None:
                        continue
                    if spec.colocated:
                        replicas = sorted(pool.replicas, key=lambda r: r.ident)
                        if k >= len(replicas) or not replicas[k].ready(t):
                            self._putback(batch)
                            continue
                        target = replicas[k]
                    else:
                        target = min(
                            targets, key=lambda r: (sum(b.words_left for b in r.batches), r.ident)
                        )
                    batch.replica = target
                    if c.batch_overhead_s > 0:
                        share = min(1.0, batch.words / c.batch_overhead_words)
                        batch.words_left += c.batch_overhead_s * share * pspec.words_per_s
                    if pspec.lanes > 0:
                        batch.parts = engine_batches(
                            batch.words, batch.words_left, pspec.lanes, pspec.lane_words,
                            pspec.lane_segments,
                        )  # fmt: skip
                    target.batches.append(batch)
                    w.batches.append(batch)
                    if pspec.words_per_s <= 0:
                        raise ValueError(f"pool {pspec.name}: words_per_s must be > 0")

    def _take(
        self, t: float, levels: tuple[str, ...], owned: frozenset[int] | None, worker: _Replica
    ) -> _Batch | None:
        """Chunks most urgent first until the next would pass ``batch_words`` (at least
        one), as ``PriorityBuffer.take`` does."""
        chunks: list[_Chunk] = []
        words = 0.0
        while words < self.c.batch_words:
            order = self._level_order(t, levels, owned)
            if not order:
                break
            level = self.queues[order[0]]
            q = level.head(owned)
            assert q is not None
            if chunks and words + q[0].words > self.c.batch_words:
                break
            ch = q.popleft()
            level.n -= 1
            chunks.append(ch)
            words += ch.words
        if not chunks:
            return None
        rank = min(RANK[ch.priority] for ch in chunks)
        return _Batch(chunks, rank, words, t, worker)

    def _putback(self, batch: _Batch) -> None:
        for ch in reversed(batch.chunks):
            self.queues[ch.priority].appendleft(ch)

    def _progress(self, t: float) -> None:
        dt = self.c.dt
        for name, dep in self.pdeps.items():
            spec = self.pools[name]
            ready = [r for r in dep.replicas if r.ready(t)]
            busy = [r for r in ready if r.batches]
            per = spec.words_per_s
            if spec.shared_words_per_s is not None and busy:
                per = min(per, spec.shared_words_per_s / len(busy))
            offered = spec.words_per_s * len(ready)
            if spec.shared_words_per_s is not None:
                offered = min(offered, spec.shared_words_per_s)
            self.win_capacity[name] += offered * dt
            if spec.lanes > 0:
                for r in busy:
                    self._fill_lanes(r, spec)
                running = sum(len(r.lanes) for r in busy)
                per = spec.words_per_s / spec.lanes
                if spec.shared_words_per_s is not None and running:
                    per = min(per, spec.shared_words_per_s / running)
                for r in busy:
                    self._run_lanes(t, name, r, per)
            else:
                for r in busy:
                    self._run_replica(t, name, r, per * dt)
            # draining replicas leave once empty
            for r in [r for r in dep.replicas if r.draining and not r.batches]:
                dep.replicas.remove(r)
        for dep in self.wdeps.values():
            for r in [r for r in dep.replicas if r.draining and not r.batches]:
                dep.replicas.remove(r)

    def _next_part(self, r: _Replica) -> list | None:
        """The engine batch a free lane takes: the most urgent call's, then the oldest
        (``Lanes``' heap of (rank, arrival))."""
        waiting = [b for b in r.batches if b.parts]
        if not waiting:
            return None
        b = min(waiting, key=lambda b: (b.rank, b.started))
        b.running += 1
        return [b, b.parts.pop(0)]

    def _fill_lanes(self, r: _Replica, spec: PoolSpec) -> None:
        while len(r.lanes) < spec.lanes:
            entry = self._next_part(r)
            if entry is None:
                return
            r.lanes.append(entry)

    def _run_lanes(self, t: float, pool: str, r: _Replica, per: float) -> None:
        """Each lane runs its engine batch at ``per`` words/s; one that ends takes the next
        waiting batch for the rest of the step."""
        dt = self.c.dt
        spec = self.pools[pool]
        now, r.lanes = r.lanes, []
        for entry in now:
            left = dt
            while entry is not None:
                b, w = entry
                can = per * left
                if w > can:
                    self._count(pool, can)
                    r.lanes.append([b, w - can])
                    break
                self._count(pool, w)
                left -= w / per if per > 0 else left
                b.running -= 1
                if not b.parts and b.running == 0:
                    self._finish(pool, b, t + dt - left, spec)
                entry = self._next_part(r)

    def _count(self, pool: str, words: float) -> None:
        self.win_words[pool] += words
        self.words_done += words
        self._sample_words += words

    def _run_replica(self, t: float, pool: str, r: _Replica, cap: float) -> None:
        """Strict priority between levels, equal shares within one (water-filling)."""
        dt = self.c.dt
        spec = self.pools[pool]
        rate = cap / dt  # words/s this replica gives this step
        for rank in sorted({b.rank for b in r.batches}):
            group = [b for b in r.batches if b.rank == rank]
            while group and cap > 1e-9:
                share = cap / len(group)
                finishing = [b for b in group if b.words_left <= share]
                if not finishing:
                    for b in group:
                        b.words_left -= share
                    self.win_words[pool] += cap
                    self.words_done += cap
                    self._sample_words += cap
                    cap = 0.0
                    break
                for b in finishing:
                    used = b.words_left
                    cap -= used
                    self.win_words[pool] += used
                    self.words_done += used
                    self._sample_words += used
                    end = t + dt * (1.0 - cap / (rate * dt)) if rate > 0 else t + dt
                    end = min(t + dt, max(t, end))
                    self._finish(pool, b, end, spec)
                    group.remove(b)

    def _finish(self, pool: str, b: _Batch, end: float, spec: PoolSpec) -> None:
        assert b.replica is not None
        b.replica.batches.remove(b)
        b.worker.batches.remove(b)
        own = b.words / spec.words_per_s + self.c.batch_overhead_s
        self.win_queue[pool].append(max(0.0, (end - b.started) - own))
        for ch in b.chunks:
            self.left[ch.job] -= 1
            if self.left[ch.job] == 0:
                self.done_at[ch.job] = end + self.c.latency_s + self.c.serial_s_per_word * ch.words

    def _spot(self, t: float) -> None:
        c = self.c
        p = c.spot_per_hour / 3600.0 * c.dt
        for deps in (self.wdeps, self.pdeps):
            for dep in deps.values():
                for r in list(dep.replicas):
                    if r.dies_at is not None and t >= r.dies_at:
                        self._kill(dep, r)
                if not dep.spot or p <= 0:
                    continue
                for r in list(dep.replicas):
                    if (
                        r.ready(t)
                        and r.dies_at is None
                        and not r.draining
                        and self.rng.random() < p
                    ):
                        r.dies_at = t + c.spot_notice_s
                        self.interruptions += 1
                        dep.add(t)  # the replacement is created at the notice

    def _kill(self, dep: _Deployment, r: _Replica) -> None:
        for b in list(r.batches):
            if b.replica is not None:
                b.replica.lanes = [e for e in b.replica.lanes if e[0] is not b]
            b.parts, b.running = [], 0
            if b.replica is not None and b in b.replica.batches:
                b.replica.batches.remove(b)
            if b in b.worker.batches:
                b.worker.batches.remove(b)
            self.requeued += len(b.chunks)
            self._putback(b)
        dep.replicas.remove(r)

    def _bill(self) -> None:
        for name, dep in (*self.wdeps.items(), *self.pdeps.items()):
            self.replica_seconds[name] += len(dep.replicas) * self.c.dt

    def _floor(self, name: str, t: float) -> int:
        tod = t % 86_400.0
        return max((s.replicas for s in self.c.schedules if s.target == name
                    and s.start_s <= tod < s.end_s), default=0)  # fmt: skip

    def _autoscale(self, t: float) -> None:
        s = self.c.scaling
        for name, dep in self.wdeps.items():
            spec = self.wspecs[name]
            if not spec.scaled:
                continue
            queued = sum(len(self.queues[p]) for p in spec.priorities)
            inflight = sum(len(b.chunks) for r in dep.replicas for b in r.batches)
            lag = queued + inflight
            current = len(dep.counted())
            ratio = (lag / max(current, 1)) / spec.lag_threshold
            desired = hpa_ratio_desired(max(current, 1), ratio, s.tolerance)
            active = lag > spec.activation_lag
            n = self.scalers[name].decide(t, current, desired, active, self._floor(name, t))
            if n != current:
                dep.scale_to(t, n)
        for name, dep in self.pdeps.items():
            spec = self.pools[name]
            cap = self.win_capacity[name]
            util = self.win_words[name] / cap if cap > 0 else 0.0
            qs = self.win_queue[name]
            qtime = sum(qs) / len(qs) if qs else 0.0
            self.win_words[name] = self.win_capacity[name] = 0.0
            self.win_queue[name] = []
            if not spec.scaled:
                continue
            current = len(dep.counted())
            waiting = sum(len(self.queues[p]) for p in spec.serves)
            inflight = any(r.batches for r in dep.replicas)
            active = waiting > 0 or inflight
            if current == 0:
                desired = 0
            elif util > spec.util_up or qtime > spec.queue_up_s:
                desired = max(
                    hpa_ratio_desired(current, util / spec.util_up, s.tolerance),
                    current + 1 if qtime > spec.queue_up_s else current,
                )
            elif util < spec.util_down:
                desired = hpa_ratio_desired(current, util / spec.util_up, 0.0)
            else:
                desired = current
            n = self.scalers[name].decide(t, current, desired, active, self._floor(name, t))
            if n != current:
                dep.scale_to(t, n)

    def _sample(self, t: float) -> None:
        se = self.series
        se["t_s"].append(round(t, 1))
        se["words_per_min"].append(round(self._sample_words * 60.0 / self.c.sample_s, 1))
        self._sample_words = 0.0
        for name, dep in (*self.wdeps.items(), *self.pdeps.items()):
            se[f"replicas.{name}"].append(len(dep.replicas))
        for p in PRIORITIES:
            se[f"queue.{p}"].append(len(self.queues[p]))


def engine_batches(
    words: float, work: float, lanes: int, lane_words: float, lane_segments: int = 32
) -> list[float]:
    """A call of ``words`` words (``work`` words of replica time with its overhead) cut
    the way the engine cuts it (``buckets.lane_rows``): batches of at most ``lane_words``
    (``lane_segments`` sentences), at least one per lane where the call has a sentence for
    each, all of one size."""
    n = max(1, math.ceil(words / lane_words - 1e-9)) if lane_words > 0 else 1
    sentences = max(1, round(words * lane_segments / lane_words)) if lane_words > 0 else 1
    n = max(n, min(max(1, lanes), sentences))
    return [work / n] * n


def call_seconds(words: float, words_per_s: float, lanes: int, lane_words: float,
                 lane_segments: int = 32) -> float:  # fmt: skip
    """How long one call of ``words`` takes alone on an idle replica of ``words_per_s``
    (all ``lanes`` busy) that cuts it into ``engine_batches``: its batches run side by
    side, one lane (``words_per_s / lanes``) each, in rounds. The calibrations use it to
    take a probe's translation out of its time, leaving the fixed latency."""
    if lanes <= 0:
        return words / words_per_s
    parts = engine_batches(words, words, lanes, lane_words, lane_segments)
    rounds = math.ceil(len(parts) / lanes)
    return rounds * parts[0] / (words_per_s / lanes)


def simulate(config: SimConfig, jobs: list[Job], until_s: float | None = None) -> Result:
    return Simulation(config, jobs).run(until_s)


# -- from the scaling policy ---------------------------------------------------------------


def cron_seconds(expr: str, weekday: int) -> list[float] | None:
    """Seconds of the day a five-field cron expression fires on ``weekday`` (0 = Sunday,
    cron's numbering), for the subset the policy's schedules use: numeric minute and hour
    (or lists), ``*`` day of month and month, day of week ``*``, a number, a range or a
    list. None for anything else (the caller says the schedule is not simulated)."""
    fields = expr.split()
    if len(fields) != 5 or fields[2] != "*" or fields[3] != "*":
        return None
    try:
        minutes = [int(x) for x in fields[0].split(",")]
        hours = [int(x) for x in fields[1].split(",")]
        days: set[int] = set()
        for part in fields[4].split(","):
            if part == "*":
                days.update(range(7))
            elif "-" in part:
                a, b = (int(x) for x in part.split("-"))
                days.update(range(a, b + 1))
            else:
                days.add(int(part) % 7)
    except ValueError:
        return None
    if weekday not in days and weekday + 7 not in days:
        return []
    return sorted(h * 3600.0 + m * 60.0 for h in hours for m in minutes)


def config_from_policy(
    policy,  # noqa: ANN001 - control_plane.capacity.policy.ScalingPolicy
    words_per_min: dict[str, float],
    *,
    weekday: int = 1,
    chunk_words: int = 1000,
    batch_words: int = 8000,
    aging_s: float = 30.0,
    urgent_slots: int = 1,
    latency_s: float = 0.0,
    dt: float = 1.0,
    seed: int = 1,
) -> SimConfig:
    """The simulator's config for a ``ScalingPolicy`` and the measured words/min per cost
    kind (``"gpu"`` for on-demand pools, ``"gpu-spot"`` for spot ones). Cron schedules
    are evaluated for ``weekday`` (cron numbering, 1 = Monday) in UTC."""
    spot_pools = {p.name for p in policy.node_pools if p.spot}
    start = policy.startup
    workers = tuple(
        WorkerSpec(
            name=w.name,
            priorities=tuple(p for p in w.priorities if p in RANK),
            pool=w.triton,
            min_replicas=w.min_replicas,
            max_replicas=w.max_replicas,
            lag_threshold=float(w.lag_threshold),
            activation_lag=float(w.activation_lag_threshold),
            start_s=float(start.worker_seconds),
            spot=w.node_pool in spot_pools,
            urgent_slots=urgent_slots,
        )
        for w in policy.workers
    )
    pools = []
    for t in policy.triton:
        kind = "gpu-spot" if t.node_pool in spot_pools else "gpu"
        pools.append(
            PoolSpec(
                name=t.name,
                serves=tuple(t.serves),
                words_per_s=words_per_min[kind] / 60.0,
                min_replicas=t.min_replicas,
                max_replicas=t.max_replicas,
                start_s=float(start.triton_seconds + start.model_load_seconds),
                spot=t.node_pool in spot_pools,
                util_up=t.gpu_utilization_up,
                queue_up_s=t.queue_time_up_ms / 1000.0,
                util_down=t.gpu_utilization_down,
                down_window_s=t.idle_minutes_down * 60.0,
                kind=kind,
            )
        )
    schedules = []
    for s in policy.schedules:
        if s.timezone != "UTC":
            raise ValueError(f"schedule {s.name}: only UTC schedules are simulated")
        starts, ends = cron_seconds(s.start, weekday), cron_seconds(s.end, weekday)
        if starts is None or ends is None:
            raise ValueError(f"schedule {s.name}: cron form not simulated: {s.start!r}")
        for a in starts:
            b = min((e for e in ends if e > a), default=86_400.0)
            schedules.append(Schedule(s.target, a, b, s.desired_replicas))
    hpa, keda = policy.hpa, policy.keda
    return SimConfig(
        workers=workers,
        pools=tuple(pools),
        scaling=Scaling(
            polling_s=float(keda.polling_interval_seconds),
            cooldown_s=float(keda.cooldown_period_seconds),
            up_stabilization_s=float(hpa.scale_up_stabilization_seconds),
            down_stabilization_s=float(hpa.scale_down_stabilization_seconds),
            up_pods=hpa.scale_up_pods,
            up_period_s=float(hpa.scale_up_period_seconds),
            down_percent=float(hpa.scale_down_percent),
            down_period_s=float(hpa.scale_down_period_seconds),
        ),
        schedules=tuple(schedules),
        chunk_words=chunk_words,
        batch_words=batch_words,
        aging_s=aging_s,
        latency_s=latency_s,
        spot_per_hour=policy.spot.interruptions_per_node_hour,
        spot_notice_s=float(policy.spot.notice_seconds),
        dt=dt,
        seed=seed,
    )


# -- the local stack, and simulated vs measured -------------------------------------------


def local_config(
    words_per_s: float,
    *,
    workers: int = 2,
    latency_s: float = 0.0,
    chunk_words: int = 1000,
    batch_words: int = 8000,
    aging_s: float = 30.0,
    urgent_slots: int = 1,
    partitions: int | None = None,
    machine_words_per_s: float | None = None,
    batch_overhead_s: float = 0.0,
    lanes: int = 0,
    lane_words: float = 320.0,
    lane_segments: int = 32,
    serial_s_per_word: float = 0.0,
    dt: float = 0.005,
) -> SimConfig:
    """The local stack: ``workers`` `mtctl worker` processes, each with the in-process
    engine (colocated): one replica translates ``words_per_s`` (measured with one worker
    alone) and the busy ones together at most ``machine_words_per_s`` (measured with all
    of them busy; default ``words_per_s``: one worker already fills the cores), as they
    share one machine's cores. No scaling: the replica count is fixed. ``partitions``: per
    topic; a job's chunks are consumed by the worker that owns its partition (set
    ``Job.partition``). ``lanes``: the engine's lanes per worker (one 1-thread lane per
    core by default), ``lane_words`` the words of one engine batch
    (``engine_batch_words``) and ``lane_segments`` its sentences: a call's batches
    (``engine_batches``) run one per lane, one core each.
    ``serial_s_per_word``: a job's last chunk's host work per word (module docstring).
    ``dt`` 5 ms: a job waits for the next step to be queued, on average dt/2, which at
    20 ms was a fifth of a 50 ms job's time.

    A replica is never faster than ``machine_words_per_s``: once every worker runs, a job
    alone on one of them shares the machine with the others' idle processes, and the
    machine's figure is the steadier one (measured on a backlog before and after the
    trace, against one ~5 s backlog for one worker). On the 2-core AVX2 EPYC VM
    (2026-12-01) one worker alone measured 1,980 words/s in one run and 1,654 in the next,
    both workers together 1,591 and 1,581; with 1,980 every replayed job ran ~24% slower
    than simulated, twice in a row. On the Xeon VM the two differed by 3%."""
    every = tuple(PRIORITIES)
    if machine_words_per_s:
        words_per_s = min(words_per_s, machine_words_per_s)
    return SimConfig(
        workers=(
            WorkerSpec(
                "worker",
                every,
                "engine",
                workers,
                workers,
                start_s=0.0,
                urgent_slots=urgent_slots,
                colocated=True,
                scaled=False,
            ),
        ),  # fmt: skip
        pools=(
            PoolSpec(
                "engine",
                every,
                words_per_s,
                workers,
                workers,
                start_s=0.0,
                shared_words_per_s=machine_words_per_s or words_per_s,
                kind="cpu",
                lanes=lanes,
                lane_words=lane_words,
                lane_segments=lane_segments,
                scaled=False,
            ),
        ),  # fmt: skip
        chunk_words=chunk_words,
        batch_words=batch_words,
        aging_s=aging_s,
        latency_s=latency_s,
        serial_s_per_word=serial_s_per_word,
        batch_overhead_s=batch_overhead_s,
        dt=dt,
        sample_s=10.0,
        partitions=partitions,
    )


def engine_batch_words(texts: list[str], max_batch_sentences: int, lang: str = "en") -> float:
    """Words in one of the engine's batches for documents like ``texts``: the engine cuts a
    call into batches of ``max_batch_sentences`` segments (``MTB_MAX_BATCH_SENTENCES``), so
    a batch holds that many times the documents' mean words per segment (the simulator's
    ``PoolSpec.lane_words``)."""
    from control_plane.text.chunking import Layout, count_words

    segments = [seg for t in texts for seg in Layout.parse(t, lang).segments]
    if not segments:
        return float(max_batch_sentences)
    words = sum(count_words(seg) for seg in segments)
    return max_batch_sentences * words / len(segments)


def compare(simulated: dict[int, float], measured: dict[int, float], jobs: list[Job]) -> dict:
    """Per job relative error (simulated - measured) / measured: median and p90 of its
    absolute value and the share within 20%, for all jobs, per priority and per size."""

    def stats(keys: list[int]) -> dict:
        rel = [(simulated[k] - measured[k]) / measured[k] for k in keys
               if k in simulated and measured.get(k, 0) > 0]  # fmt: skip
        if not rel:
            return {"n": 0}
        ab = sorted(abs(x) for x in rel)
        return {
            "n": len(rel),
            "median_abs_rel_error": round(_pct(ab, 50), 4),
            "p90_abs_rel_error": round(_pct(ab, 90), 4),
            "within_20pct": round(sum(1 for x in ab if x <= 0.2) / len(ab), 4),
            "median_rel_error": round(_pct(sorted(rel), 50), 4),
        }

    groups = {"all": stats([j.index for j in jobs])}
    for prio in PRIORITIES:
        keys = [j.index for j in jobs if j.priority == prio]
        if keys:
            groups[prio] = stats(keys)
    for name, lo, hi in (("< 100 words", 0, 100), ("100-999 words", 100, 1000),
                         (">= 1000 words", 1000, 10**9)):  # fmt: skip
        keys = [j.index for j in jobs if lo <= j.words < hi]
        if keys:
            groups[name] = stats(keys)
    return {"groups": groups}
