"""Triton section: the ``translator`` model on a real tritonserver vs the in-process engine.

Starts a private tritonserver (nvidia-pytriton's binary, python backend) on a copy of the
model repository whose config.pbtxt is rendered by control_plane/inference/triton_config.py
(the committed CPU config unless options change it), then measures on the same sentences
and machine:

1. throughput: words/min of the in-process engine (``engine.translate(all)``, the embedded
   mode) and through Triton (the control plane's async client; the call is split into
   requests of ``--request-segments`` that the dynamic batcher merges again), alternating
   A/B rounds, best of each;
2. batching: 32 concurrent clients sending one sentence per request; Triton's model
   statistics give inferences per execution;
3. priority: ``--normal-clients`` clients keep the normal queue saturated while one client
   sends critical requests; p50/p95 latency of each level.

With ``--model-control explicit`` the server runs a per-pair repository
(control_plane/inference/lifecycle.py; urgent twins unless ``--no-urgent``) in Triton's
explicit mode and the client is the lifecycle client (parts throughput and priority).

4. sweep (``--parts ...,sweep``): one client, requests of 1..256 segments: words/min per
   batch size; on a GPU node ``--kind gpu`` renders the GPU config (KIND_GPU, fp16, CUDA
   EP; ``--execution-provider tensorrt``) and names the card from nvidia-smi.

    python -m bench triton [--sentences N] [--instances N] [--threads N] ...
    python -m bench triton --kind gpu --parts throughput,batching,priority,sweep --tag _gpu
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import devstack
from bench.common import REPO, RESULTS, machine, process_cpu_s, save
from evaluation.sets import DATA, load_tsv


def _sources(pair: str, n: int) -> list[str]:
    return [s for s, _ in load_tsv(DATA / f"{pair}.gettext.tsv")][:n]


def _words(texts: list[str]) -> int:
    return sum(len(t.split()) for t in texts)


async def model_stats(client, model: str = "translator") -> tuple[int, int]:  # noqa: ANN001
    stats = await client.get_inference_statistics(model, as_json=True)
    s = stats["model_stats"][0]
    return int(s.get("inference_count", 0)), int(s.get("execution_count", 0))


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def batching_run(client, url: str, sentences: list[str], clients: int, per_client: int):  # noqa: ANN001
    """``clients`` concurrent callers, one sentence per request; inferences/execution."""
    import tritonclient.grpc.aio as grpcclient

    stats = grpcclient.InferenceServerClient(url)
    await asyncio.sleep(0.5)  # statistics land just after the responses of earlier calls
    inf0, ex0 = await model_stats(stats)

    async def one(k: int) -> None:
        for j in range(per_client):
            s = sentences[(k * per_client + j) % len(sentences)]
            await client.translate([s], "en", "pt")

    t0 = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(clients)))
    dt = time.perf_counter() - t0
    await asyncio.sleep(0.5)
    inf1, ex1 = await model_stats(stats)
    await stats.close()
    inferences, executions = inf1 - inf0, ex1 - ex0
    return {
        "clients": clients,
        "requests": clients * per_client,
        "inferences": inferences,
        "executions": executions,
        "inferences_per_execution": round(inferences / max(1, executions), 2),
        "seconds": round(dt, 2),
        "requests_per_s": round(clients * per_client / dt, 1),
    }


async def priority_run(
    client,  # noqa: ANN001
    sentences: list[str],
    normal_clients: int,
    seconds: float,
    segs: int,
    critical_every: float,
) -> dict:
    """Normal-priority clients saturate the queue; one client sends critical requests."""
    latencies: dict[str, list[float]] = {"normal": [], "critical": []}
    stop = time.monotonic() + seconds
    warm = time.monotonic() + min(3.0, seconds / 4)  # let the normal queue fill first

    async def caller(priority: str, k: int, pause: float) -> None:
        j = k
        while time.monotonic() < stop:
            batch = [sentences[(j + i) % len(sentences)] for i in range(segs)]
            j += segs
            t0 = time.monotonic()
            await client.translate(batch, "en", "pt", priority=priority, timeout=120)
            if t0 >= warm:
                latencies[priority].append(time.monotonic() - t0)
            if pause:
                await asyncio.sleep(pause)

    async def critical() -> None:
        await asyncio.sleep(warm - time.monotonic())
        await caller("critical", 7, critical_every)

    await asyncio.gather(*(caller("normal", k * 13, 0) for k in range(normal_clients)), critical())
    out = {"normal_clients": normal_clients, "segments_per_request": segs, "seconds": seconds}
    for p, values in latencies.items():
        out[p] = {
            "requests": len(values),
            "p50_s": round(_pct(values, 0.5), 3),
            "p95_s": round(_pct(values, 0.95), 3),
            "mean_s": round(statistics.fmean(values), 3) if values else None,
        }
    out["critical_p95_over_normal_p95"] = round(
        out["critical"]["p95_s"] / out["normal"]["p95_s"], 3
    )
    return out


async def batch_sweep(client, sentences: list[str], sizes: list[int]) -> list[dict]:  # noqa: ANN001
    """One client, requests of ``b`` segments one after another: words/min per batch size
    (the issue's GPU figure: batch 1 to 256)."""
    out = []
    for b in sizes:
        pool = (sentences * (1 + (2 * b) // max(1, len(sentences))))[: max(2 * b, 64)]
        t0 = time.perf_counter()
        for i in range(0, len(pool), b):
            await client.translate(pool[i : i + b], "en", "pt", timeout=600)
        dt = time.perf_counter() - t0
        words = _words(pool)
        out.append({"batch": b, "sentences": len(pool), "words_per_min": round(words / dt * 60)})
        print(out[-1], flush=True)
    return out


def device_name(kind: str) -> str:
    if kind == "cpu":
        m = machine()
        return f"{m['cores']}-core {m['cpu']}"
    import subprocess

    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        return out.stdout.strip().replace("\n", "; ")
    except (OSError, subprocess.SubprocessError):
        return "unknown GPU (nvidia-smi not found)"


async def throughput_rounds(engine, client, sentences: list[str], rounds: int) -> dict:  # noqa: ANN001
    words = _words(sentences)
    loop = asyncio.get_running_loop()
    best = {"in-process": None, "triton": None}
    equal = True
    reference = None
    for _ in range(rounds):
        t0 = time.perf_counter()
        local = await loop.run_in_executor(None, engine.translate, sentences, "en", "pt")
        dt = time.perf_counter() - t0
        best["in-process"] = dt if best["in-process"] is None else min(best["in-process"], dt)
        t0 = time.perf_counter()
        remote = await client.translate(sentences, "en", "pt")
        dt = time.perf_counter() - t0
        best["triton"] = dt if best["triton"] is None else min(best["triton"], dt)
        reference = reference or [t.text for t in local]
        equal = equal and [t.text for t in remote] == reference
    out = {
        name: {
            "seconds": round(dt, 3),
            "words_per_min": round(words / dt * 60),
            "sentences_per_s": round(len(sentences) / dt, 1),
        }
        for name, dt in best.items()
    }
    out["triton_over_in_process"] = round(best["in-process"] / best["triton"], 3)
    out["identical_translations"] = equal
    out["sentences"], out["words"] = len(sentences), words
    return out


async def sustained_rounds(engine, client, args, server_pid: int | None) -> dict:  # noqa: ANN001
    """The worker's load on Triton, against the engine alone on the same documents.

    ``--sustained-callers`` callers (a worker's tasks) each send calls of about
    ``--call-words`` words (a worker's batch) and the next one as soon as one returns,
    until ``--sustained-words`` words of distinct gettext documents are done; the engine
    alone gets each 10k-word document in one call (its best case). Alternating rounds,
    each side's best. This is what chose the CPU config's instances x lanes: how Triton
    spreads a few large calls over its instances decides how many cores stay busy."""
    import resource

    from bench.stack import make_document
    from control_plane.text.chunking import Layout, count_words

    docs = [
        Layout.parse(make_document(10_000, 100 + i, "gettext"), "en").segments
        for i in range(max(1, args.sustained_words // 10_000))
    ]
    segments = [s for d in docs for s in d]
    words = sum(count_words(s) for s in segments)
    calls, cur, n = [], [], 0
    for seg in segments:
        cur.append(seg)
        n += count_words(seg)
        if n >= args.call_words:
            calls.append(cur)
            cur, n = [], 0
    if cur:
        calls.append(cur)
    loop = asyncio.get_running_loop()

    def engine_alone() -> None:
        for d in docs:
            engine.translate(d, "en", "pt")

    async def through_triton() -> None:
        queue = list(calls)

        async def caller() -> None:
            while queue:
                await client.translate(queue.pop(0), "en", "pt", "normal", timeout=600)

        await asyncio.gather(*(caller() for _ in range(args.sustained_callers)))

    def _server_cpu_s(pid: int | None) -> float | None:  # the server and its model stubs
        return process_cpu_s(pid, tree=True) if pid is not None else None

    runs: dict[str, list[dict]] = {"engine": [], "triton": []}
    for _ in range(args.rounds):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        await loop.run_in_executor(None, engine_alone)
        dt, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        runs["engine"].append({"seconds": round(dt, 2), "cpu_seconds": round(cpu, 1)})
        c0, t0 = _server_cpu_s(server_pid), time.perf_counter()
        await through_triton()
        dt, c1 = time.perf_counter() - t0, _server_cpu_s(server_pid)
        cpu = round(c1 - c0, 1) if c0 is not None and c1 is not None else None
        runs["triton"].append({"seconds": round(dt, 2), "cpu_seconds": cpu})
        print(f"  sustained: engine {runs['engine'][-1]}, triton {runs['triton'][-1]}", flush=True)
    out: dict = {"words": words, "calls": len(calls), "callers": args.sustained_callers,
                 "call_words": args.call_words, "rounds": runs}  # fmt: skip
    for side, rs in runs.items():
        best = min(rs, key=lambda r: r["seconds"])
        out[side] = {
            "words_per_min": round(words / best["seconds"] * 60),
            "cores_busy": round(best["cpu_seconds"] / best["seconds"], 2)
            if best["cpu_seconds"] is not None
            else None,
        }
    out["triton_over_engine"] = round(
        out["triton"]["words_per_min"] / out["engine"]["words_per_min"], 3
    )
    return out


async def measure(args: argparse.Namespace, url: str, server_pid: int | None = None) -> dict:
    from control_plane.engine import load_engine
    from control_plane.inference import open_inference
    from control_plane.settings import Settings

    settings = Settings.from_env(
        inference="triton",
        triton_url=url,
        triton_request_segments=max(args.request_segments, max(args.sweep or [0])),
        triton_connect_timeout_s=60,
        triton_timeout_s=300,
        triton_model_control=args.model_control,
        model_dir=args.model_dir,
    )
    sentences = _sources("en-pt", args.sentences)
    engine = load_engine(
        args.model_dir, precision=args.precision, threads=args.local_threads, tensorrt=args.tensorrt
    )
    engine.translate(sentences[:8], "en", "pt")  # warm-up
    client = open_inference(settings)  # explicit model control: the lifecycle client
    await client.start()
    if not client.ready():
        raise RuntimeError(f"Triton at {url} did not become ready")
    await client.translate(sentences[:8], "en", "pt")
    if args.model_control == "explicit":  # the first urgent request loads the pair's twin
        await client.translate(sentences[:8], "en", "pt", priority="critical")
        await asyncio.gather(*client._pending)  # noqa: SLF001
    parts = set(args.parts.split(","))
    report = {}
    if "throughput" in parts:
        client.settings = dataclasses.replace(
            settings, triton_request_segments=args.request_segments
        )
        report["throughput"] = await throughput_rounds(engine, client, sentences, args.rounds)
        print(report["throughput"], flush=True)
    if "batching" in parts:
        report["batching"] = await batching_run(
            client, url, sentences, clients=32, per_client=args.batching_requests
        )
        print(report["batching"], flush=True)
    if "priority" in parts:
        report["priority"] = await priority_run(
            client,
            sentences,
            normal_clients=args.normal_clients,
            seconds=args.priority_seconds,
            segs=args.priority_segments,
            critical_every=0.25,
        )
        print(report["priority"], flush=True)
    if "sustained" in parts:
        client.settings = dataclasses.replace(
            settings, triton_request_segments=args.request_segments
        )
        report["sustained"] = await sustained_rounds(engine, client, args, server_pid)
        print(report["sustained"], flush=True)
    if "sweep" in parts:
        client.settings = settings  # requests as large as the largest batch
        report["sweep"] = await batch_sweep(client, sentences, args.sweep)
    await client.close()
    return report


def table(report: dict) -> str:
    t, b, p = report["throughput"], report["batching"], report["priority"]
    c = report["config"]
    lines = [
        f"Triton section: translator model (python backend, {c['kind'].upper()}"
        f" {c['precision']} on {c['execution_provider']}, {c['instances']} instance(s)"
        f" x {c['threads']} thread(s), max_batch_size {c['max_batch_size']}, preferred"
        f" {c['preferred_batch_sizes']}, max_queue_delay {c['max_queue_delay_us']} us) vs the"
        f" in-process engine; en-pt, {t['sentences']} gettext sentences;"
        f" device: {report['device']}",
        "",
        "| path | words/min | sentences/s | vs in-process |",
        "|---|---:|---:|---:|",
        f"| in-process engine (embedded mode) | {t['in-process']['words_per_min']:,} |"
        f" {t['in-process']['sentences_per_s']} | 1.0x |",
        f"| Triton gRPC, requests of {report['request_segments']} segments |"
        f" {t['triton']['words_per_min']:,} | {t['triton']['sentences_per_s']} |"
        f" {t['triton_over_in_process']}x |",
        "",
        f"Identical translations: {t['identical_translations']}.",
        f"Batching: {b['clients']} concurrent clients, {b['requests']} one-sentence requests:"
        f" {b['inferences_per_execution']} inferences per execution"
        f" ({b['inferences']} / {b['executions']}), {b['requests_per_s']} req/s.",
        "",
        f"Priority: {p['normal_clients']} normal clients saturating the queue, one critical"
        f" client; requests of {p['segments_per_request']} segments, {p['seconds']} s.",
        "",
        "| priority | requests | p50 s | p95 s |",
        "|---|---:|---:|---:|",
        *(
            f"| {k} | {p[k]['requests']} | {p[k]['p50_s']} | {p[k]['p95_s']} |"
            for k in ("critical", "normal")
        ),
        "",
        f"critical p95 / normal p95 = {p['critical_p95_over_normal_p95']}",
    ]
    return "\n".join(lines)


def sustained_table(report: dict) -> str:
    s, c = report["sustained"], report["config"]
    each = lambda side: " / ".join(  # noqa: E731
        f"{round(s['words'] / r['seconds'] * 60):,}" for r in s["rounds"][side]
    )
    return "\n".join([
        f"Triton under the worker's load: {s['callers']} callers sending calls of about "
        f"{s['call_words']:,} words (requests of {report['request_segments']} segments), "
        f"{s['words']:,} words of gettext documents, against the engine alone (each 10k-word "
        f"document in one call); translator {c['instances']} instance(s) x {c['threads']} "
        f"thread(s), max_batch_size {c['max_batch_size']}, {c['overlap']} "
        f"execution(s) in flight; {report['machine']['cores']} cores "
        f"({report['machine']['cpu']}), {report['date']}",
        "",
        "| path | best words/min | rounds | cores busy (best) |",
        "|---|---:|---|---:|",
        f"| engine alone | {s['engine']['words_per_min']:,} | {each('engine')} | "
        f"{s['engine']['cores_busy']} |",
        f"| through Triton | {s['triton']['words_per_min']:,} | {each('triton')} | "
        f"{s['triton']['cores_busy']} |",
        "",
        f"Triton / engine alone: {s['triton_over_engine']}x",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from control_plane.inference.triton_config import (
        CPU,
        GPU,
        URGENT_CPU,
        URGENT_GPU,
        copy_repository,
    )

    ap = argparse.ArgumentParser(prog="python -m bench triton", description=__doc__.split("\n")[0])
    ap.add_argument("--sentences", type=int, default=200)
    ap.add_argument(
        "--kind",
        choices=["cpu", "gpu"],
        default="cpu",
        help="gpu: the GPU config (KIND_GPU, fp16, CUDA EP) for server and in-process engine",
    )
    ap.add_argument("--execution-provider", choices=["cuda", "tensorrt"], default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--instances", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--local-threads", type=int, default=0, help="in-process engine threads")
    ap.add_argument("--max-batch-size", type=int, default=None)
    ap.add_argument("--preferred", default=None, help="comma-separated preferred sizes")
    ap.add_argument("--max-queue-delay-us", type=int, default=None)
    ap.add_argument(
        "--overlap", type=int, default=None, help="executions in flight per instance (1: none)"
    )
    ap.add_argument("--request-segments", type=int, default=16)
    ap.add_argument("--batching-requests", type=int, default=8, help="per client")
    ap.add_argument("--normal-clients", type=int, default=160)
    ap.add_argument("--priority-segments", type=int, default=4)
    ap.add_argument("--priority-seconds", type=float, default=20.0)
    ap.add_argument(
        "--parts",
        default="throughput,batching,priority",
        help="comma-separated: throughput,batching,priority,sweep,sustained (default: the "
        "first three; sustained alone writes triton_sustained<tag>.{json,md})",
    )
    ap.add_argument("--sustained-words", type=int, default=80_000)
    ap.add_argument("--sustained-callers", type=int, default=2, help="a worker's tasks")
    ap.add_argument("--call-words", type=int, default=8_000, help="a worker's batch")
    ap.add_argument(
        "--sweep",
        default="1,8,32,64,128,256",
        help="batch sizes of the sweep part (segments per request, one client)",
    )
    ap.add_argument(
        "--no-urgent",
        action="store_true",
        help="serve without translator_urgent (or, explicit, without urgent twins): every "
        "priority shares the one model",
    )
    ap.add_argument(
        "--model-control",
        choices=["none", "explicit"],
        default="none",
        help="explicit: one model per pair (and its urgent twin) loaded on demand; parts "
        "throughput and priority only",
    )
    ap.add_argument("--url", help="use a running server (its own config) instead of starting one")
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--tag", default="", help="results file suffix (triton<tag>.json)")
    args = ap.parse_args(argv)
    args.sweep = [int(x) for x in args.sweep.split(",") if x]
    if args.model_control == "explicit" and not set(args.parts.split(",")) <= {
        "throughput",
        "priority",
    }:
        ap.error("--model-control explicit measures the parts throughput and priority only")
    base = CPU if args.kind == "cpu" else GPU
    from control_plane.settings import Settings
    from export.provision import ensure_default_models

    args.model_dir = args.model_dir or Path(os.environ.get("MTB_MODEL_DIR") or (REPO / ".models"))
    if not args.model_dir.is_dir():
        args.model_dir = Settings.from_env().model_dir
    ensure_default_models(args.model_dir)
    if args.kind == "gpu" and args.execution_provider:
        base = dataclasses.replace(base, execution_provider=args.execution_provider)
    # the in-process engine takes the same provider
    args.tensorrt = args.kind == "gpu" and args.execution_provider == "tensorrt"
    args.precision = base.precision
    cfg = dataclasses.replace(
        base,
        instances=args.instances or base.instances,
        threads=base.threads if args.threads is None else args.threads,
        max_batch_size=args.max_batch_size or base.max_batch_size,
        preferred_batch_sizes=tuple(int(x) for x in args.preferred.split(",") if x)
        if args.preferred
        else base.preferred_batch_sizes,
        max_queue_delay_us=args.max_queue_delay_us or base.max_queue_delay_us,
        overlap=args.overlap or base.overlap,
        model_dir=str(args.model_dir),
    )
    server = None
    work = Path(tempfile.mkdtemp(prefix="bench-triton-"))
    try:
        if args.url:
            url = args.url
        else:
            urgent = None
            if not args.no_urgent:  # critical/high requests' own model, as committed
                urgent = dataclasses.replace(
                    URGENT_CPU if args.kind == "cpu" else URGENT_GPU,
                    execution_provider=cfg.execution_provider,
                    model_dir=cfg.model_dir,
                )
            if args.model_control == "explicit":
                from control_plane.inference.lifecycle import write_repository

                repo = work / "repo"
                write_repository(repo, [("en", "pt")], cfg, urgent=urgent)
            else:
                repo = copy_repository(work / "repo", cfg, urgent)
            server = devstack.start_triton(
                repo, workdir=work / "server", model_control=args.model_control
            )
            url = server.url
            print(f"tritonserver pid {server.pid} on {url} ({server.startup_s:.1f}s)", flush=True)
        report = asyncio.run(measure(args, url, server.pid if server is not None else None))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    report["config"] = {
        k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("queue_policies",)
    }
    report["request_segments"] = args.request_segments
    report["urgent_model"] = not args.url and not args.no_urgent
    report["model_control"] = args.model_control
    report["machine"] = machine()
    report["device"] = device_name(args.kind)
    report["load_average_at_end"] = os.getloadavg()
    report["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    measured = set(report) & {"throughput", "batching", "priority", "sweep", "sustained"}
    if measured == {"sustained"}:
        save(f"triton_sustained{args.tag}", report, sustained_table(report))
        return 0
    if not {"throughput", "batching", "priority"} <= set(report):  # partial run: JSON only
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"triton{args.tag}-partial.json").write_text(json.dumps(report, indent=2))
        print(report)
        return 0
    text = table(report)
    if "sweep" in report:
        text += "\n\nOne client, requests of N segments:\n\n| batch | words/min |\n|---:|---:|\n"
        text += "\n".join(f"| {r['batch']} | {r['words_per_min']:,} |" for r in report["sweep"])
    save(f"triton{args.tag}", report, text)
    plot(RESULTS / f"triton{args.tag}.png", report)
    return 0


def plot(path: Path, report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, p = report["throughput"], report["priority"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.2))
    names = ["in-process", "triton"]
    values = [t[n]["words_per_min"] for n in names]
    a.bar(names, values, color=["#888", "#2a6"])
    a.set_ylabel("words/min")
    a.set_title(f"en-pt, {t['sentences']} sentences ({t['triton_over_in_process']}x)")
    for i, v in enumerate(values):
        a.text(i, v, f"{v:,}", ha="center", va="bottom", fontsize=8)
    x = range(2)
    for off, q, color in ((-0.2, "p50_s", "#9cf"), (0.2, "p95_s", "#36c")):
        vals = [p[k][q] for k in ("critical", "normal")]
        b.bar([i + off for i in x], vals, width=0.4, label=q[:3], color=color)
    b.set_xticks(list(x), ["critical", "normal"])
    b.set_ylabel("latency s")
    b.set_title(f"{p['normal_clients']} normal clients saturating the queue")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
