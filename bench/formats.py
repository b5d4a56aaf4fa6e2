"""Formats: documents/min and words/min per document format through the embedded service.

Boots the real ``mtctl serve`` (SQLite, memory queue, local engine), and for each format
uploads ``--docs`` documents of about ``--words`` words (built by
``evaluation.documents`` from distinct gettext sentence pairs, so the segment cache does
not help) to POST /api/v1/documents at once, then waits until every job is completed
and downloads each translated file. Figures per format: wall time from the first upload
to the last completion, documents/min, words/min (the jobs' word_count: translatable
words only), and the translated files' sizes.

    python -m bench formats [--docs 3] [--words 1500] [--formats po,markdown,...]
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.common import machine, save
from bench.service import base_sentences, pairs
from evaluation.documents import BUILDERS, EXTENSIONS, build

FINISHED = ("completed", "failed", "cancelled")


def sentence_batches(n_docs: int, words: int, n_formats: int) -> list[list[list[str]]]:
    """Distinct sentences: per format, per document, about ``words`` words."""
    from control_plane.text.chunking import Layout

    base = base_sentences("en-pt")
    single = [s for s in base if len(Layout.parse(s, "en").segments) == 1]
    stream = iter(pairs(single, range(3, 3 * 400, 3)))
    out = []
    for _ in range(n_formats):
        docs = []
        for _ in range(n_docs):
            doc, count = [], 0
            while count < words:
                s = next(stream)
                doc.append(s)
                count += len(s.split())
            docs.append(doc)
        out.append(docs)
    return out


def upload(url: str, key: str, fmt: str, data: bytes, i: int) -> dict:
    r = requests.post(
        f"{url}/api/v1/documents",
        headers={"Authorization": f"Bearer {key}"},
        data={"source_language": "en", "target_language": "pt", "priority": "normal"},
        files={"file": (f"doc{i}{EXTENSIONS[fmt]}", data)},
        timeout=120,
    )
    r.raise_for_status()
    return r.json()


def wait(url: str, key: str, job_id: str, limit: float) -> dict:
    deadline = time.monotonic() + limit
    while True:
        job = requests.get(
            f"{url}/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}, timeout=30
        ).json()
        if job["status"] in FINISHED or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def measure(url: str, key: str, fmt: str, docs: list[bytes], limit: float) -> dict:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(docs)) as pool:
        subs = list(pool.map(lambda a: upload(url, key, fmt, a[1], a[0]), enumerate(docs)))
        jobs = list(pool.map(lambda s: wait(url, key, s["job_id"], limit), subs))
    elapsed = time.perf_counter() - t0
    sizes = []
    for s in subs:
        r = requests.get(
            f"{url}/api/v1/jobs/{s['job_id']}/result",
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        sizes.append(len(r.content) if r.status_code == 200 else -1)
    words = sum(s["word_count"] for s in subs)
    return {
        "documents": len(docs),
        "completed": sum(j["status"] == "completed" for j in jobs),
        "words": words,
        "input_bytes": sum(len(d) for d in docs),
        "output_bytes": sizes,
        "seconds": round(elapsed, 2),
        "documents_per_min": round(len(docs) / elapsed * 60, 1),
        "words_per_min": round(words / elapsed * 60),
    }


def table(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"Document formats through the embedded service ({m['cores']} cores, {m['cpu']}); "
        f"{report['docs']} documents of ~{report['words']} words per format, uploaded at once",
        "",
        "| format | documents | completed | words | seconds | documents/min | words/min |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for fmt, r in report["formats"].items():
        if "error" in r:
            lines.append(f"| {fmt} | - | - | - | - | - | {r['error']} |")
            continue
        lines.append(
            f"| {fmt} | {r['documents']} | {r['completed']} | {r['words']:,} | {r['seconds']} | "
            f"{r['documents_per_min']} | {r['words_per_min']:,} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench formats", description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=3, help="documents per format")
    ap.add_argument("--words", type=int, default=1500, help="words per document")
    ap.add_argument("--formats", default=",".join(BUILDERS))
    ap.add_argument("--limit", type=float, default=300, help="seconds a format may take")
    ap.add_argument("--model-dir", default=None)
    args = ap.parse_args(argv)

    from bench.server import embedded_service
    from control_plane.settings import Settings
    from export.provision import ensure_default_models

    model_dir = Path(args.model_dir or os.environ.get("MTB_MODEL_DIR") or Settings().model_dir)
    ensure_default_models(model_dir)
    chosen = args.formats.split(",")
    batches = sentence_batches(args.docs, args.words, len(chosen))
    report: dict = {"docs": args.docs, "words": args.words, "formats": {}, "machine": machine()}
    env = {"MTB_RATE_LIMIT_ENTERPRISE": "10000000", "MTB_MAX_WORDS": "200000"}
    with embedded_service(env, model_dir=model_dir) as svc:
        key = svc.new_user("enterprise")
        try:
            for fmt, docs in zip(chosen, batches, strict=True):
                try:
                    files = [build(fmt, sentences) for sentences in docs]
                    report["formats"][fmt] = measure(svc.url, key, fmt, files, args.limit)
                except Exception as exc:  # noqa: BLE001 - a format not built yet: say so
                    report["formats"][fmt] = {"error": repr(exc)[:200]}
                print(f"  {fmt}: {report['formats'][fmt]}", flush=True)
        finally:
            svc.stop()
    save("formats", report, table(report))
    failed = [f for f, r in report["formats"].items() if r.get("completed") != args.docs]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
