"""Latency: where a job's time goes, per stage and priority, from real traces; and what
tracing costs.

1. Stages: the production stack (REST -> PostgreSQL -> Kafka -> `mtctl worker` ->
   Triton, every process sending OTLP to a local Jaeger v2, Triton its own spans) runs a
   mixed-priority workload: ``--normal`` normal jobs of ``--normal-words`` words submitted
   at once, then critical and high jobs of ``--small-words`` words one after another
   while the backlog drains. Each job's trace is fetched from Jaeger (the query API that
   `mtctl trace` uses) and its time split into stages (queue wait, API, DB, cache,
   inference, Triton queue and compute, assembly); per priority the p50/p95/p99 of each
   stage over the jobs, as a table and a plot.
2. Overhead: the stack's throughput on a normal backlog with tracing off and on (every
   span exported), alternating ``--overhead-rounds`` times; goal under 3%.

    python -m bench latency [--normal 4] [--probes 8] [--overhead-rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import devstack
from bench.common import RESULTS, machine, save

PRIORITIES = ("critical", "high", "normal")
STAGES_SHOWN = (
    "queue wait",
    "API: HTTP",
    "API: job.submit",
    "DB",
    "cache",
    "inference",
    "Triton: queue",
    "Triton: compute",
    "assembly",
)


def stack_args(extra: list[str]):  # noqa: ANN201 - bench.stack's argparse Namespace
    from bench.stack import parser

    return parser().parse_args(extra)


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def job_stages(jaeger_url: str, job_id: str, timeout: float = 60) -> dict[str, float]:
    """Milliseconds per stage of one job's trace (waits until its worker spans are in)."""
    from control_plane.commands.trace import fetch_job_traces, spans_from_jaeger, stage_rows

    deadline = time.monotonic() + timeout
    while True:
        spans = spans_from_jaeger(fetch_job_traces(jaeger_url, job_id))
        names = {s.name for s in spans}
        if {"chunk.translate", "inference.translate"} <= names or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    out: dict[str, float] = defaultdict(float)
    for row in stage_rows(spans):
        key = "queue wait" if row.stage.startswith("queue wait") else row.stage
        out[key] += row.total_us / 1000
    return dict(out)


def run_stages(args: argparse.Namespace, jaeger) -> dict:  # noqa: ANN001 - a ServiceInfo
    from bench.stack import Stack, make_document

    sargs = stack_args(["--inference", args.inference, "--tracing", "otlp"])
    sargs.model_dir = args.model_dir
    sargs.otlp_endpoint = jaeger.env["MTB_OTLP_ENDPOINT"]
    sargs.triton_trace_url = f"http://127.0.0.1:{jaeger.ports['otlp_http']}"
    workdir = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    stack = Stack(sargs, workdir)
    jobs: dict[str, str] = {}
    try:
        stack.start()
        for i in range(args.normal):
            jobs[stack.submit(make_document(args.normal_words, 300 + i), "normal")] = "normal"
        time.sleep(1.0)
        for i in range(args.probes):
            priority = "critical" if i % 2 == 0 else "high"
            text = " ".join(make_document(args.small_words, 700 + i).split()[: args.small_words])
            job_id = stack.submit(text, priority)
            jobs[job_id] = priority
            while stack.job(job_id)["status"] not in ("completed", "failed", "cancelled"):
                time.sleep(0.05)
            time.sleep(args.probe_gap)
        deadline = time.time() + args.timeout
        for job_id in jobs:
            while stack.job(job_id)["status"] not in ("completed", "failed", "cancelled"):
                if time.time() > deadline:
                    raise RuntimeError("workload not done in time")
                time.sleep(0.5)
        per_priority: dict[str, dict[str, list[float]]] = {p: defaultdict(list) for p in PRIORITIES}
        totals: dict[str, list[float]] = defaultdict(list)
        for job_id, priority in jobs.items():
            job = stack.job(job_id)
            totals[priority].append(job["processing_time_ms"] or 0)
            for stage, ms in job_stages(jaeger.url, job_id).items():
                per_priority[priority][stage].append(ms)
    finally:
        stack.close()
    return {
        "jobs": {p: sum(1 for v in jobs.values() if v == p) for p in PRIORITIES},
        "stages_ms": {
            p: {
                stage: {
                    q: round(percentile(v, x), 1)
                    for q, x in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
                }  # fmt: skip
                for stage, v in sorted(stages.items())
            }
            for p, stages in per_priority.items()
        },
        "processing_time_ms": {
            p: {"p50": round(percentile(v, 0.5)), "p95": round(percentile(v, 0.95))}
            for p, v in totals.items()
        },
    }


def run_overhead(args: argparse.Namespace, jaeger) -> dict:  # noqa: ANN001
    """Stack throughput on a normal backlog, tracing off and on, alternating."""
    from bench.stack import run_stack

    runs: dict[str, list[int]] = {"off": [], "on": []}
    for _ in range(args.overhead_rounds):
        for mode in ("off", "on"):
            extra = ["--inference", args.inference, "--backlog-words", str(args.overhead_words),
                     "--jobs", "4", "--probes", "1", "--probe-delay", "0", "--probe-gap", "0",
                     "--tracing", "otlp" if mode == "on" else "off"]  # fmt: skip
            sargs = stack_args(extra)
            sargs.model_dir = args.model_dir
            sargs.otlp_endpoint = jaeger.env["MTB_OTLP_ENDPOINT"]
            sargs.triton_trace_url = (
                f"http://127.0.0.1:{jaeger.ports['otlp_http']}" if mode == "on" else None
            )
            result = run_stack(sargs)
            runs[mode].append(result["stack_words_per_min"])
            print(f"  tracing {mode}: {result['stack_words_per_min']:,} words/min", flush=True)
    off, on = statistics.mean(runs["off"]), statistics.mean(runs["on"])
    return {"runs": runs, "off_words_per_min": round(off), "on_words_per_min": round(on),
            "overhead_pct": round(100 * (off - on) / off, 1)}  # fmt: skip


def earlier_overhead() -> dict | None:
    """With ``--overhead-rounds 0`` the tracing overhead of the last run that measured it
    stays in the results, marked with that run's date."""
    try:
        old = json.loads((RESULTS / "latency.json").read_text())
    except (OSError, ValueError):
        return None
    overhead = old.get("overhead")
    if overhead and "measured" not in overhead:
        overhead = {**overhead, "measured": f"earlier run of {old.get('date', '?')}"}
    return overhead


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [s for s in STAGES_SHOWN if any(s in report["stages_ms"][p] for p in PRIORITIES)]
    fig, axes = plt.subplots(1, len(PRIORITIES), figsize=(13, 4), sharey=True)
    for ax, p in zip(axes, PRIORITIES, strict=True):
        data = report["stages_ms"][p]
        for j, q in enumerate(("p50", "p95", "p99")):
            ax.barh(
                [k + j * 0.27 for k in range(len(stages))],
                [data.get(s, {}).get(q, 0) for s in stages],
                height=0.27,
                label=q,
            )
        ax.set_yticks(range(len(stages)), stages)
        ax.set_title(f"{p} ({report['jobs'][p]} jobs)")
        ax.set_xlabel("ms per job")
    axes[0].invert_yaxis()
    axes[-1].legend()
    fig.suptitle("Where a job's time goes, from its trace (stack with Triton)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"Job latency by stage from Jaeger traces ({m['cores']} cores, {m['cpu']}); "
        f"inference {report['inference']}; ms per job; load average before "
        f"{report.get('load_average_before', '?')}, after {report.get('load_average_after', '?')}",
        "",
        "| priority | stage | p50 | p95 | p99 |",
        "|---|---|---:|---:|---:|",
    ]
    for p in PRIORITIES:
        for stage in STAGES_SHOWN:
            v = report["stages_ms"][p].get(stage)
            if v:
                lines.append(f"| {p} | {stage} | {v['p50']} | {v['p95']} | {v['p99']} |")
    o = report.get("overhead")
    if o:
        lines += [
            "",
            f"Tracing overhead: stack throughput {o['off_words_per_min']:,} words/min off, "
            f"{o['on_words_per_min']:,} on: **{o['overhead_pct']}%** (goal < 3%; runs "
            f"{o['runs']})" + (f", {o['measured']}" if o.get("measured") else ""),
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench latency", description=__doc__.split("\n")[0])
    ap.add_argument("--inference", default="triton", choices=["local", "triton"])
    ap.add_argument("--normal", type=int, default=4, help="normal backlog jobs")
    ap.add_argument("--normal-words", type=int, default=5000)
    ap.add_argument("--probes", type=int, default=10, help="critical/high jobs, alternating")
    ap.add_argument("--small-words", type=int, default=60)
    ap.add_argument("--probe-gap", type=float, default=0.5)
    ap.add_argument("--overhead-rounds", type=int, default=2, help="0: skip the overhead runs")
    ap.add_argument("--overhead-words", type=int, default=40_000)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args(argv)
    from control_plane.settings import Settings
    from export.provision import ensure_default_models

    args.model_dir = Settings.from_env().model_dir
    ensure_default_models(Path(args.model_dir))
    cfg = devstack.Config.from_env()
    jaeger = devstack.ensure_service("jaeger", cfg, lease=True)
    load_before = os.getloadavg()[0]
    try:
        report = {"section": "latency", "machine": machine(), "inference": args.inference,
                  "date": time.strftime("%Y-%m-%d"), **run_stages(args, jaeger)}  # fmt: skip
        if args.overhead_rounds:
            report["overhead"] = run_overhead(args, jaeger)
        else:
            report["overhead"] = earlier_overhead()
    finally:
        devstack.release_service("jaeger", cfg)
    report["load_average_before"] = round(load_before, 2)
    report["load_average_after"] = round(os.getloadavg()[0], 2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(report, RESULTS / "latency.png")
    save("latency", report, table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
