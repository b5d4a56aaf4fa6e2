"""The simulator's model of a replica checked against the real local stack.

``python -m bench capacity --replay``: on the real PostgreSQL and Kafka (devstack), one
`mtctl serve` and `mtctl worker` processes with the in-process engine (bench/stack.py's
Stack):

1. calibration, one worker alone: a few small jobs one after another (the fixed latency of
   a job: submit, planning, Kafka, database, finish) and a backlog of documents (the
   replica's words/s on this machine, now, under whatever load the machine has);
2. a second worker joins; a trace from the capacity traffic generator (the day's shape
   compressed into ``--seconds``, ``--load`` of the calibrated speed, at most ``--jobs``
   jobs) is submitted at its arrival times;
3. the same jobs (their measured arrival times, word counts and priorities) are simulated
   with two fixed replicas that share the calibrated speed (two workers on the machine's
   cores), and each job's simulated completion time is compared with the measured one.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import machine
from bench.stack import Stack, _ts, make_document
from control_plane.capacity.simulate import (
    call_seconds,
    compare,
    engine_batch_words,
    local_config,
    simulate,
)
from control_plane.capacity.traffic import Job, Traffic, summary

PARTITIONS = 2  # per topic: one partition of each priority per worker


def partition_of(job_id: str, partitions: int) -> int:
    """The partition the producer put a job's chunks on: aiokafka's default partitioner
    (murmur2 of the key, the job id), as the publisher uses it."""
    from aiokafka.partitioner import DefaultPartitioner

    parts = list(range(partitions))
    return DefaultPartitioner()(job_id.encode(), parts, parts)


def _stack_args(workers: int, model_dir: str) -> argparse.Namespace:
    """`bench stack`'s own defaults (an option added there reaches this replay with its
    default: a hand-built namespace here lacked ``split_cores`` and the replay crashed),
    with the in-process engine, untraced."""
    from bench.stack import parser

    args = parser().parse_args(["--inference", "local", "--workers", str(workers)])
    args.model_dir, args.partitions = model_dir, PARTITIONS
    return args


def _wait_all(stack: Stack, ids: list[str], timeout: float) -> list[dict]:
    deadline = time.time() + timeout
    views = []
    for job_id in ids:
        while True:
            job = stack.job(job_id)
            if job["status"] in ("completed", "failed", "cancelled"):
                break
            if time.time() > deadline:
                raise RuntimeError(f"job {job_id} not done in {timeout} s")
            time.sleep(0.2)
        if job["status"] != "completed":
            raise RuntimeError(f"job {job_id} {job['status']}: {job.get('error')}")
        views.append(job)
    return views


def _probe(stack: Stack, words: int, seed: int) -> tuple[float, int]:
    job_id = stack.submit(make_document(words, seed), "critical")
    (view,) = _wait_all(stack, [job_id], 60)
    return _ts(view["completed_at"]) - _ts(view["created_at"]), view["word_count"]


def calibrate(
    stack: Stack, probes: int, backlog_words: int, seed: int, lanes: int, lane_segments: int
) -> dict:
    """One worker alone on the idle stack (after a warm-up job: the engine's first calls
    are slower): its words/s on a backlog of documents (all its ``lanes`` busy), and jobs
    one at a time of ~20 and ~300 words. A job's own words take ``call_seconds`` (its
    engine batches side by side, one lane each at ``words_per_s / lanes``), and the rest
    of a ~20-word job's time is the fixed latency (submit, planning, Kafka, database,
    finish). The ~300-word jobs check that reading (``mid_job_predicted_s``) and give the
    engine call's cost beyond its words that ``--call-cost`` models (``batch_overhead_s``)."""
    (warm,) = [stack.submit(make_document(1500, 690 + seed), "normal")]
    _wait_all(stack, [warm], 120)
    small = [_probe(stack, 20, 700 + seed * 50 + i) for i in range(probes)]
    mid = [_probe(stack, 300, 750 + seed * 50 + i) for i in range(probes)]
    rate = backlog_rate(stack, backlog_words, 800 + seed * 50)
    wps = rate["words_per_s"]
    s_words = statistics.median(w for _, w in small)
    m_words = statistics.median(w for _, w in mid)
    docs = [make_document(300, 750 + seed * 50 + i) for i in range(probes)]
    lane_words = engine_batch_words(docs, lane_segments)

    def alone(words: float) -> float:
        return call_seconds(words, wps, lanes, lane_words, lane_segments)

    latency = max(0.0, statistics.median(t for t, _ in small) - alone(s_words))
    # what a ~300-word job alone has beyond that: the worker's own work on its only (so
    # last) chunk, per word (the simulator's serial_s_per_word)
    m_time = statistics.median(t for t, _ in mid)
    serial = max(0.0, m_time - latency - alone(m_words)) / max(1.0, m_words)
    # the call-cost experiment's reading (one fluid replica, no lanes):
    # t(small) = latency + w/wps + call * w/300;  t(mid) = latency + w/wps + call
    s_rest = statistics.median(t for t, _ in small) - s_words / wps
    m_rest = statistics.median(t for t, _ in mid) - m_words / wps
    share = min(1.0, s_words / 300.0)
    call = max(0.0, (m_rest - s_rest) / (1.0 - share)) if share < 1 else 0.0
    return {
        "small_job_latency_s": [round(t, 3) for t, _ in small],
        "small_job_words": [w for _, w in small],
        "mid_job_latency_s": [round(t, 3) for t, _ in mid],
        "mid_job_words": [w for _, w in mid],
        "lanes": lanes,
        "latency_s": round(latency, 4),
        "mid_job_predicted_s": round(latency + alone(m_words) + serial * m_words, 4),
        "mid_job_predicted_lanes_only_s": round(latency + alone(m_words), 4),
        "serial_s_per_word": round(serial, 7),
        "latency_fluid_s": round(max(0.0, s_rest), 4),
        "latency_with_call_s": round(max(0.0, s_rest - call * share), 4),
        "batch_overhead_s": round(call, 4),
        **rate,
    }


def backlog_rate(stack: Stack, backlog_words: int, seed: int) -> dict:
    """Words/s of the stack's workers on a backlog of 3,000-word documents (first
    submit to last completion)."""
    docs = [make_document(3000, seed + i) for i in range(max(1, backlog_words // 3000))]
    ids = [stack.submit(d, "normal") for d in docs]
    views = _wait_all(stack, ids, 600)
    first = min(_ts(v["created_at"]) for v in views)
    last = max(_ts(v["completed_at"]) for v in views)
    words = sum(v["word_count"] for v in views)
    return {
        "backlog_words": words,
        "backlog_seconds": round(last - first, 2),
        "words_per_s": round(words / max(1e-3, last - first), 1),
    }


def submit_trace(
    stack: Stack, jobs: list[Job], texts: list[str]
) -> tuple[list[str], dict[str, float]]:
    """Submit each job at its arrival time (threads: a large document's POST takes a
    while); the job ids and each POST's duration (s) by job id."""
    ids: list[str | None] = [None] * len(jobs)
    posts: dict[str, float] = {}

    def send(k: int) -> None:
        t = time.perf_counter()
        ids[k] = stack.submit(texts[k], jobs[k].priority)
        posts[ids[k]] = time.perf_counter() - t

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        t0 = time.monotonic()
        futures = []
        for k, job in enumerate(jobs):
            delay = job.at_s - (time.monotonic() - t0)
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(send, k))
        for f in futures:
            f.result()
    return [i for i in ids if i is not None], posts


def replay(args: argparse.Namespace, model_dir: str) -> dict:
    from control_plane.engine.onnx_session import plan_lanes
    from control_plane.settings import Settings

    settings = Settings.from_env()
    lanes = plan_lanes(settings.threads, settings.engine_lanes)[0]
    workdir = Path(tempfile.mkdtemp(prefix="bench-capacity-"))
    stack = Stack(_stack_args(1, model_dir), workdir)
    load = [round(x, 2) for x in os.getloadavg()]
    try:
        stack.start()
        cal = calibrate(
            stack, args.probes, args.calibration_words, args.seed, lanes,
            settings.max_batch_sentences,
        )  # fmt: skip
        print(f"  calibration (1 worker): {cal['words_per_s']:.0f} words/s, "
              f"latency {cal['latency_s']} s")  # fmt: skip
        from devstack.processes import start_worker

        w = start_worker(stack.env, workdir / "worker-1.log", name="worker-1",
                         args=("--no-ingest",))  # fmt: skip
        stack.procs.append(w)
        w.wait_ready(300)
        time.sleep(args.settle)  # the group rebalances onto both workers
        # warm both engines up (jobs spread over both partitions), not measured
        warm = [stack.submit(make_document(400, 600 + i), "normal") for i in range(6)]
        _wait_all(stack, warm, 300)
        # both workers busy on the machine's cores: what the replicas give together,
        # before and after the trace (other load on a shared machine shows as a change)
        both_before = backlog_rate(stack, args.calibration_words, 850 + args.seed * 50)
        print(f"  both workers before the trace: {both_before['words_per_s']:.0f} words/s")
        load_trace = [round(x, 2) for x in os.getloadavg()]
        traffic = Traffic(
            words=int(args.load * cal["words_per_s"] * args.seconds),
            period_s=args.seconds,
            seed=args.seed,
            max_jobs=args.jobs,
        )
        jobs = traffic.jobs()
        texts = [make_document(j.words, 10_000 + args.seed * 1000 + j.index) for j in jobs]
        print(f"  trace: {len(jobs)} jobs, {sum(j.words for j in jobs):,} words "
              f"over {args.seconds:.0f} s (load average {load_trace})")  # fmt: skip
        lane_words = engine_batch_words(texts, settings.max_batch_sentences)
        ids, posts = submit_trace(stack, jobs, texts)
        views = _wait_all(stack, ids, args.timeout)
        load_after = [round(x, 2) for x in os.getloadavg()]
        # both workers busy on the machine's two cores: what the replicas give together
        after = backlog_rate(stack, args.calibration_words, 900 + args.seed * 50)
        print(f"  both workers after the trace: {after['words_per_s']:.0f} words/s")
    finally:
        stack.close()
    t0 = min(_ts(v["created_at"]) for v in views)
    measured_jobs = [
        Job(index=k, at_s=_ts(v["created_at"]) - t0, priority=v["priority"],
            words=v["word_count"], partition=partition_of(v["job_id"], PARTITIONS))
        for k, v in enumerate(views)
    ]  # fmt: skip
    measured = {k: _ts(v["completed_at"]) - _ts(v["created_at"]) for k, v in enumerate(views)}
    together = (both_before["words_per_s"] + after["words_per_s"]) / 2
    moved = max(both_before["words_per_s"], after["words_per_s"]) / max(
        1e-9, min(both_before["words_per_s"], after["words_per_s"])
    )
    # default: the engine's lanes (a call's batches side by side, one core each);
    # --call-cost: the earlier experiment, one fluid replica plus a cost per engine call
    latency = cal["latency_with_call_s"] if args.call_cost else cal["latency_s"]
    config = local_config(
        cal["words_per_s"],
        machine_words_per_s=together,
        workers=2,
        latency_s=latency,
        batch_overhead_s=cal["batch_overhead_s"] if args.call_cost else 0.0,
        partitions=PARTITIONS,
        lanes=0 if args.call_cost else lanes,
        lane_words=lane_words,
        lane_segments=settings.max_batch_sentences,
        serial_s_per_word=0.0 if args.call_cost else cal["serial_s_per_word"],
    )
    result = simulate(config, measured_jobs)
    cmp = compare(result.completion_s, measured, measured_jobs)
    return {
        "section": "capacity_replay",
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_before": load,
        "load_average_trace_start": load_trace,
        "load_average_after": load_after,
        "calibration": cal,
        "both_workers_before_trace": both_before,
        "after_trace": after,
        "machine_speed_moved_x": round(moved, 2),
        "disturbed": moved > 1.4,  # other load changed the machine's speed: inconclusive
        "trace": {
            "seconds": args.seconds,
            "load": args.load,
            "seed": args.seed,
            **summary(measured_jobs),
        },  # fmt: skip
        "model": {
            "replicas": 2,
            "words_per_s_per_replica": cal["words_per_s"],
            "machine_words_per_s": round(together, 1),
            "latency_s": latency,
            "batch_overhead_s": cal["batch_overhead_s"] if args.call_cost else 0.0,
            "lanes": config.pools[0].lanes,
            "lane_words": round(lane_words, 1),
            "serial_s_per_word": config.serial_s_per_word,
            "batch_words": config.batch_words,
            "chunk_words": config.chunk_words,
            "urgent_slots": 1,
            "partitions": PARTITIONS,
        },  # fmt: skip
        "comparison": cmp,
        "jobs": [
            {
                "priority": j.priority,
                "words": j.words,
                "at_s": round(j.at_s, 3),
                "measured_s": round(measured[j.index], 3),
                "simulated_s": round(result.completion_s.get(j.index, float("nan")), 3),
                "partition": j.partition,
                "post_s": round(posts.get(views[j.index]["job_id"], float("nan")), 3),
            }
            for j in measured_jobs
        ],  # fmt: skip
        "logs": str(workdir),
        "goal": "median and p90 relative error, share of jobs within 20%",
    }


def table(report: dict) -> str:
    c = report["comparison"]
    cal = report["calibration"]
    m = report["machine"]
    rows = [
        f"Capacity simulator vs the local stack (2 `mtctl worker`, in-process engine), "
        f"{m['cores']} cores ({m['cpu']}), {report['date']}; load average before "
        f"{report['load_average_before']}, at trace start {report['load_average_trace_start']}"
        f", after {report['load_average_after']}",
        "",
        f"Speed: one worker alone (before the trace) {cal['words_per_s']:.0f} words/s "
        f"({cal['words_per_s'] * 60:,.0f} words/min): a replica; both workers busy "
        f"{report['both_workers_before_trace']['words_per_s']:.0f} words/s before the trace and "
        f"{report['after_trace']['words_per_s']:.0f} after: their mean "
        f"{report['model']['machine_words_per_s']:.0f} caps the two together"
        f"{' (moved more than 1.4x: DISTURBED by other load)' if report['disturbed'] else ''}; "
        f"a job's fixed latency {report['model']['latency_s']} s; "
        + (
            f"the engine's {report['model']['lanes']} lanes per worker, engine batches of "
            f"{report['model']['lane_words']:.0f} words, a job's last chunk's host work "
            f"{report['model'].get('serial_s_per_word', 0) * 1000:.2f} ms per word (from ~300-word "
            f"jobs alone: {statistics.median(cal['mid_job_latency_s']):.3f} s measured, "
            f"{cal.get('mid_job_predicted_lanes_only_s', cal['mid_job_predicted_s']):.3f} s "
            "from the fixed latency and their words on the lanes). "
            if report["model"].get("lanes")
            else f"no lanes (one fluid replica); an engine call's cost "
            f"{cal['batch_overhead_s']} s, "
            f"{'modelled' if report['model']['batch_overhead_s'] else 'not modelled'}. "
        )
        + f"Trace: {report['trace']['jobs']} jobs, {report['trace']['words']:,} words in "
        f"{report['trace']['seconds']:.0f} s at {report['trace']['load']:.0%} of one "
        "worker's speed.",
        "",
        "| jobs | n | median abs. rel. error | p90 abs. rel. error | within 20% | median signed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, g in c["groups"].items():
        rows.append(
            f"| {name} | {g['n']} | {g['median_abs_rel_error']:.1%} | "
            f"{g['p90_abs_rel_error']:.1%} | {g['within_20pct']:.0%} | "
            f"{g['median_rel_error']:+.1%} |"
        )
    return "\n".join(rows)
