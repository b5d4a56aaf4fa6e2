"""Service: one 15,000-word document through the embedded service (submit -> completed,
words/min; goal under 60 s on the 2-core dev machine) and submit latency p50/p99 with 50
concurrent clients, for cache-miss texts and for the same texts once cached; then the
worst inputs found for submit (issue 10: 8 MiB of "a。", 200,000 one-word sentences, 8 MiB
of nested empty arrays): submit latency, and /healthz latency p50/p99/max polled every
10 ms from a second connection while each is being submitted (each job is cancelled once
accepted).

Boots the real ``mtctl serve`` (SQLite, memory queue, local engine) on a free loopback
port with a temporary data folder, makes an enterprise key (rate limit raised so 429 does
not enter the numbers), and always stops the server. The document is built from the
gettext evaluation sentences (evaluation/data/<pair>.gettext.tsv): paragraphs, list items,
headings and blank lines; after one pass over the 500 sentences it continues with
sentence pairs joined by a semicolon, so (but for two messages that share a sentence)
every segment is distinct and the segment cache does not shorten the run. The small jobs
of the latency test are further distinct pairs. Clients and server share the machine's
cores, as in any single-box run.

    python -m bench service [--words 15000] [--clients 50] [--jobs-per-client 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

from bench.common import RESULTS, machine, save
from control_plane.cores import usable_cores
from devstack.healthz import HealthzPoller
from evaluation.sets import DATA, load_tsv

GOAL_S = 60.0
FINISHED = ("completed", "failed", "cancelled")
MARKER = re.compile(r"^\s*(?:[-*]|\d+\.|#+)\s+")


# ------------------------------------------------------------------ inputs


def base_sentences(pair: str) -> list[str]:
    out = []
    for src, _ in load_tsv(DATA / f"{pair}.gettext.tsv"):
        s = " ".join(src.split())
        if s[-1] == ":":
            s = s[:-1]
        if s[-1] not in ".!?":
            s += "."
        out.append(s)
    return out


def joined(a: str, b: str) -> str:
    """One sentence from two: ``a; b`` (b's capital dropped unless it is an acronym)."""
    if len(b) > 1 and not b[1].isupper():
        b = b[0].lower() + b[1:]
    return a.rstrip(".!?") + "; " + b


def pairs(base: list[str], offsets) -> list[str]:  # noqa: ANN001
    n = len(base)
    return [joined(base[i], base[(i + k) % n]) for k in offsets for i in range(n)]


def document(base: list[str], words: int, seed: int = 3) -> tuple[str, dict]:
    """About ``words`` words of distinct sentences laid out as a real document."""
    from control_plane.text.chunking import Layout

    # only messages that segment as one sentence are joined, so no piece repeats
    single = [s for s in base if len(Layout.parse(s, "en").segments) == 1]
    stream = iter(base + pairs(single, range(7, 7 * 40, 7)))
    rng = random.Random(seed)
    parts: list[str] = []
    count = 0
    stats = Counter()
    while count < words:
        kind = rng.random()
        if kind < 0.07:
            stats["headings"] += 1
            block = f"## Part {stats['headings']}\n"
        elif kind < 0.25:
            n = rng.randint(2, 5)
            indent = rng.choice(["", "", "  "])
            marker = rng.choice(["- ", "* ", "#."])
            items = [next(stream) for _ in range(n)]
            block = "".join(
                f"{indent}{f'{i + 1}. ' if marker == '#.' else marker}{item}\n"
                for i, item in enumerate(items)
            )
            stats["list_items"] += n
        else:
            block = " ".join(next(stream) for _ in range(rng.randint(3, 8))) + "\n"
            stats["paragraphs"] += 1
        parts.append(block)
        parts.append(rng.choice(["\n", "\n", "\n", "\n\n"]))
        count += len(block.split())
    text = "".join(parts)
    return text, dict(stats)


def shape(text: str) -> list[tuple[bool, str]]:
    """Per line: blank or not, and its indentation + list marker / heading mark."""
    out = []
    for line in text.split("\n"):
        m = MARKER.match(line)
        out.append((not line.strip(), m.group(0) if m else line[: len(line) - len(line.lstrip())]))
    return out


def hostile_inputs(limit: int = 8 * 1024 * 1024) -> dict[str, bytes]:
    """The worst request bodies found for submit time and event-loop stalls (issue 10),
    each just under the default MTB_MAX_BODY_BYTES."""
    size = limit - 256

    def body(content: str) -> bytes:
        doc = {"content": content, "source_language": "en", "target_language": "pt"}
        return json.dumps(doc, ensure_ascii=False).encode()

    return {
        # one "word" (no spaces), 2.1 M sentences: the longest plan (4-5 s here)
        "8 MiB of CJK full stops (a\u3002 x 2.1 M)": body("a\u3002" * (size // 4)),
        # the most pysbd work the word limit lets through (one-word sentences)
        "200,000 one-word sentences (a. x 200 k)": body("a. " * 200_000),
        # json.loads alone held the GIL 0.7 s on this body
        "8 MiB of nested empty arrays": b"[" + b"[]," * (size // 3) + b"[]]",
    }


# ------------------------------------------------------------------ measuring


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    import numpy as np

    return float(np.percentile(values, q))


def ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 1)


def loadavg() -> dict:
    one, five, fifteen = os.getloadavg()
    up = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    return {"1m": one, "5m": five, "15m": fifteen, "uptime": up}


async def get_json(session, url: str, headers: dict, timeout: float = 30) -> tuple[int, dict]:  # noqa: ANN001
    import aiohttp

    async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(timeout)) as r:
        return r.status, await r.json(content_type=None)


async def run_document(session, svc, key: str, text: str, pair: str, timeout: float) -> dict:  # noqa: ANN001
    import aiohttp

    src, tgt = pair.split("-")
    headers = {"Authorization": f"Bearer {key}"}
    cpu0 = svc.cpu_seconds()
    t0 = time.perf_counter()
    async with session.post(
        svc.url + "/api/v1/translate",
        json={"text": text, "source_lang": src, "target_lang": tgt},
        headers=headers,
        timeout=aiohttp.ClientTimeout(60),
    ) as r:
        sub = await r.json(content_type=None)
        if r.status != 202:
            raise RuntimeError(f"document submit -> {r.status}: {sub}")
    submit_s = time.perf_counter() - t0
    progress: list[tuple[float, int]] = [(submit_s, 0)]
    poll_errors = Counter()
    while True:
        status, job = await get_json(session, f"{svc.url}/api/v1/jobs/{sub['job_id']}", headers)
        now = time.perf_counter() - t0
        if status != 200:
            poll_errors[str(status)] += 1
        else:
            progress.append((now, job["words_processed"]))
            if job["status"] in FINISHED:
                break
        if now > timeout:
            raise RuntimeError(f"document not finished in {timeout} s: {job}")
        await asyncio.sleep(0.2)
    wall = now
    cpu1 = svc.cpu_seconds()
    if job["status"] != "completed":
        raise RuntimeError(f"document job ended {job['status']}: {job.get('error')}")
    status, res = await get_json(
        session, f"{svc.url}/api/v1/jobs/{sub['job_id']}/result", headers, timeout=60
    )
    out = res.get("translated_content", "")
    from datetime import datetime

    created = datetime.fromisoformat(job["created_at"])
    started = datetime.fromisoformat(job["started_at"]) if job["started_at"] else None
    done = datetime.fromisoformat(job["completed_at"])
    words = job["word_count"]
    return {
        "job_id": sub["job_id"],
        "words": words,
        "chunks": sub["chunk_count"],
        "submit_seconds": round(submit_s, 3),
        "wall_seconds": round(wall, 2),
        "words_per_min": round(words / wall * 60),
        "goal_seconds": GOAL_S,
        "meets_goal": wall < GOAL_S,
        "server_created_to_completed_s": round((done - created).total_seconds(), 2),
        "server_queue_wait_s": round((started - created).total_seconds(), 2) if started else None,
        "server_reported_speed_wpm": job["current_speed"],
        "server_cpu_seconds": round(cpu1 - cpu0, 1) if cpu0 is not None and cpu1 else None,
        "poll_interval_s": 0.2,
        "poll_errors": dict(poll_errors),
        "layout_preserved": shape(out) == shape(text),
        "output_lines": len(out.split("\n")),
        "nonblank_lines_left_untranslated": sum(
            a == b and bool(a.strip())
            for a, b in zip(out.split("\n"), text.split("\n"), strict=False)
        ),
        "output_sample": out[:300],
        "input_lines": len(text.split("\n")),
        "progress": [(round(t, 2), w) for t, w in progress],
    }


async def burst(
    session, svc, key: str, per_client: list[list[str]], pair: str, limit_s: float
) -> dict:  # noqa: ANN001,E501
    """Every client submits its texts back to back; all clients start together."""
    import aiohttp

    src, tgt = pair.split("-")
    headers = {"Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    errors: Counter = Counter()
    statuses: Counter = Counter()
    job_ids: list[str] = []
    start = asyncio.Event()
    deadline = time.monotonic() + limit_s

    async def client(texts: list[str]) -> None:
        await start.wait()
        for text in texts:
            if time.monotonic() > deadline:
                errors["not sent (time limit)"] += 1
                continue
            t0 = time.perf_counter()
            try:
                async with session.post(
                    svc.url + "/api/v1/translate",
                    json={"text": text, "source_lang": src, "target_lang": tgt},
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(30),
                ) as r:
                    body = await r.json(content_type=None)
                    dt = time.perf_counter() - t0
                    if r.status == 202:
                        latencies.append(dt)
                        statuses[body["status"]] += 1
                        job_ids.append(body["job_id"])
                    else:
                        errors[f"HTTP {r.status} {body.get('error', {}).get('code', '')}"] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors[type(exc).__name__] += 1

    tasks = [asyncio.create_task(client(t)) for t in per_client]
    await asyncio.sleep(0.05)
    t0 = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    return {
        "clients": len(per_client),
        "requests": sum(len(t) for t in per_client),
        "accepted": len(latencies),
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": ms(pct(latencies, 50)),
        "p90_ms": ms(pct(latencies, 90)),
        "p99_ms": ms(pct(latencies, 99)),
        "max_ms": ms(max(latencies) if latencies else None),
        "min_ms": ms(min(latencies) if latencies else None),
        "status_at_submit": dict(statuses),
        "errors": dict(errors),
        "job_ids": job_ids,
        "latencies_ms": sorted(round(v * 1000, 2) for v in latencies),
    }


async def drain(session, svc, key: str, expected: int, limit_s: float) -> dict:  # noqa: ANN001
    """Wait until the key's ``expected`` jobs are all finished (completed or failed)."""
    headers = {"Authorization": f"Bearer {key}"}
    t0 = time.perf_counter()
    counts = {}
    while True:
        counts = {}
        for st in FINISHED:
            _, body = await get_json(session, f"{svc.url}/api/v1/jobs?status={st}&limit=1", headers)
            counts[st] = body.get("total", 0)
        if sum(counts.values()) >= expected:
            break
        if time.perf_counter() - t0 > limit_s:
            break
        await asyncio.sleep(0.5)
    return {"seconds": round(time.perf_counter() - t0, 2), "finished": counts, "expected": expected}


async def hostile(session, svc, key: str, rounds: int) -> dict:  # noqa: ANN001
    """Each worst input submitted ``rounds`` times while /healthz is polled; accepted jobs
    are cancelled at once (their text is not worth translating)."""
    import aiohttp

    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    out = {}
    for name, body in hostile_inputs().items():
        submits: list[float] = []
        statuses: Counter = Counter()
        with HealthzPoller(svc.url) as poll:
            for _ in range(rounds):
                t0 = time.perf_counter()
                async with session.post(
                    svc.url + "/api/v1/translate",
                    data=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(300),
                ) as r:
                    answer = await r.json(content_type=None)
                submits.append(time.perf_counter() - t0)
                statuses[r.status] += 1
                if r.status == 202:
                    async with session.delete(
                        f"{svc.url}/api/v1/jobs/{answer['job_id']}", headers=headers
                    ) as c:
                        await c.read()
        lat = poll.latencies
        out[name] = {
            "body_bytes": len(body),
            "statuses": {str(k): v for k, v in statuses.items()},
            "answer": answer if r.status != 202 else {"word_count": answer.get("word_count")},
            "submit_seconds": [round(v, 2) for v in submits],
            "submit_p50_s": round(pct(submits, 50), 2),
            "submit_max_s": round(max(submits), 2),
            "healthz_polls": len(lat),
            "healthz_p50_ms": ms(pct(lat, 50)),
            "healthz_p99_ms": ms(pct(lat, 99)),
            "healthz_max_ms": ms(max(lat)),
            "healthz_errors": dict(poll.errors),
        }
        h = out[name]
        print(
            f"  worst input {name}: {dict(statuses)} submit p50 {h['submit_p50_s']} s "
            f"max {h['submit_max_s']} s; /healthz p50 {h['healthz_p50_ms']} ms p99 "
            f"{h['healthz_p99_ms']} ms max {h['healthz_max_ms']} ms over {len(lat)} polls",
            flush=True,
        )
    return out


async def measure(svc, args, doc_key: str, burst_key: str, text: str, small: list[str]) -> dict:  # noqa: ANN001
    import aiohttp

    n_burst = args.clients * args.jobs_per_client
    conn = aiohttp.TCPConnector(limit=args.clients + 10)
    async with aiohttp.ClientSession(connector=conn) as session:
        headers = {"Authorization": f"Bearer {doc_key}"}
        # warm-up: one short job so the first measured request does not pay one-off costs
        src, tgt = args.pair.split("-")
        warm = "The service is ready to translate documents."
        t0 = time.perf_counter()
        async with session.post(
            svc.url + "/api/v1/translate",
            json={"text": warm, "source_lang": src, "target_lang": tgt},
            headers=headers,
        ) as r:
            body = await r.json(content_type=None)
            if r.status != 202:
                raise RuntimeError(f"warm-up submit -> {r.status}: {body}")
            job_id = body["job_id"]
        while True:
            _, job = await get_json(session, f"{svc.url}/api/v1/jobs/{job_id}", headers)
            if job["status"] in FINISHED:
                break
            await asyncio.sleep(0.1)
        warmup_s = time.perf_counter() - t0
        print(f"  warm-up job {job['status']} in {warmup_s:.2f} s", flush=True)

        doc = await run_document(session, svc, doc_key, text, args.pair, args.doc_timeout)
        print(
            f"  document: {doc['words']:,} words, {doc['chunks']} chunks: "
            f"{doc['wall_seconds']} s submit -> completed, {doc['words_per_min']:,} words/min, "
            f"layout preserved: {doc['layout_preserved']}",
            flush=True,
        )

        # baseline: one client, one request at a time (the service time with no queueing)
        serial_texts = small[n_burst:]
        serial = await burst(session, svc, doc_key, [serial_texts], args.pair, args.burst_limit)
        await drain(session, svc, doc_key, 2 + serial["accepted"], args.drain_limit)
        print(
            f"  submit, 1 client, cache miss: p50 {serial['p50_ms']} ms p99 {serial['p99_ms']} ms",
            flush=True,
        )
        per_client = [
            small[c * args.jobs_per_client : (c + 1) * args.jobs_per_client]
            for c in range(args.clients)
        ]
        miss = await burst(session, svc, burst_key, per_client, args.pair, args.burst_limit)
        print(
            f"  submit, cache miss: p50 {miss['p50_ms']} ms p99 {miss['p99_ms']} ms "
            f"({miss['accepted']}/{miss['requests']} accepted in {miss['seconds']} s, "
            f"errors {miss['errors']})",
            flush=True,
        )
        drained = await drain(session, svc, burst_key, miss["accepted"], args.drain_limit)
        print(
            f"  small jobs finished {drained['finished']} {drained['seconds']} s after the burst",
            flush=True,
        )
        hit = await burst(session, svc, burst_key, per_client, args.pair, args.burst_limit)
        print(
            f"  submit, cached:     p50 {hit['p50_ms']} ms p99 {hit['p99_ms']} ms "
            f"({hit['accepted']}/{hit['requests']} accepted in {hit['seconds']} s, "
            f"completed at submit: {hit['status_at_submit'].get('completed', 0)}, "
            f"errors {hit['errors']})",
            flush=True,
        )
        worst = (
            await hostile(session, svc, doc_key, args.hostile_rounds) if args.hostile_rounds else {}
        )
    return {"warmup_seconds": round(warmup_s, 2), "document": doc,
            "submit_one_client_cache_miss": serial, "submit_cache_miss": miss,
            "small_jobs_drain": drained, "submit_cached": hit,
            "hostile_submit": worst}  # fmt: skip


def log_problems(log: str) -> dict:
    levels: Counter = Counter()
    messages: Counter = Counter()
    samples: list[str] = []
    for line in log.splitlines():
        try:
            entry = json.loads(line)
            level = entry.get("level", "?")
            messages[f"{level} {entry.get('message', '')}"[:80]] += 1
        except ValueError:
            level = "ERROR" if "Traceback" in line or "Error" in line else "TEXT"
        levels[level] += 1
        if level in ("WARNING", "ERROR", "CRITICAL") and len(samples) < 8:
            samples.append(line[:400])
    return {
        "levels": dict(levels),
        "top_messages": dict(messages.most_common(6)),
        "samples": samples,
    }


def plot(path: Path, doc: dict, miss: dict, hit: dict, one: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    t = [p[0] for p in doc["progress"]]
    w = [p[1] for p in doc["progress"]]
    a.step(t, w, where="post", color="#2a6")
    a.axvline(GOAL_S, color="#c33", ls="--", lw=1, label=f"goal {GOAL_S:.0f} s")
    a.set_xlabel("seconds since submit")
    a.set_ylabel("words processed")
    a.set_title(f"{doc['words']:,}-word document: {doc['wall_seconds']} s")
    a.set_xlim(0, max(GOAL_S * 1.05, t[-1] * 1.05))
    a.legend(loc="lower right", fontsize=8)
    for name, r, color in (
        (f"{miss['clients']} clients, cache miss", miss, "#2a6"),
        (f"{hit['clients']} clients, cached", hit, "#36c"),
        ("1 client, cache miss", one, "#888"),
    ):
        lat = r["latencies_ms"]
        if lat:
            b.plot(lat, [(i + 1) / len(lat) for i in range(len(lat))], color=color,
                   label=f"{name}: p50 {r['p50_ms']} / p99 {r['p99_ms']} ms")  # fmt: skip
    b.set_xscale("log")
    b.set_xlabel("submit latency, ms (log)")
    b.set_ylabel("fraction of requests")
    b.set_title("POST /api/v1/translate latency")
    b.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench service", description=__doc__.split("\n")[0])
    ap.add_argument("--pair", default="en-pt")
    ap.add_argument("--words", type=int, default=15_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--jobs-per-client", type=int, default=10)
    ap.add_argument("--serial", type=int, default=50, help="jobs of the 1-client baseline")
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--doc-timeout", type=float, default=180, help="seconds for the document")
    ap.add_argument("--burst-limit", type=float, default=60, help="seconds for one burst")
    ap.add_argument("--drain-limit", type=float, default=90, help="seconds for small jobs")
    ap.add_argument(
        "--hostile-rounds", type=int, default=3, help="submits of each worst input (0: skip)"
    )
    args = ap.parse_args(argv)

    from bench.server import embedded_service
    from control_plane.settings import Settings
    from control_plane.text.chunking import Layout
    from export.provision import ensure_default_models

    model_dir = Path(args.model_dir or os.environ.get("MTB_MODEL_DIR") or Settings().model_dir)
    ensure_default_models(model_dir)

    base = base_sentences(args.pair)
    text, layout_stats = document(base, args.words)
    segments = Layout.parse(text, args.pair.split("-")[0]).segments
    doc_segments = set(segments)
    n_small = args.clients * args.jobs_per_client + args.serial
    single = [s for s in base if len(Layout.parse(s, "en").segments) == 1]
    small = [s for s in pairs(single, range(101, 400)) if s not in doc_segments][:n_small]
    assert len(small) == n_small and len(set(small)) == n_small

    settings = Settings.from_env(model_dir=model_dir)
    extra_env = {
        "MTB_RATE_LIMIT_ENTERPRISE": "10000000",  # 429 must not distort the latency numbers
        "MTB_MAX_WORDS": str(max(200_000, args.words * 2)),
    }
    load_before = loadavg()
    t_start = time.perf_counter()
    with embedded_service(extra_env, model_dir=model_dir) as svc:
        print(f"  mtctl serve ready in {svc.boot_seconds:.1f} s at {svc.url}", flush=True)
        doc_key = svc.new_user("enterprise")
        burst_key = svc.new_user("enterprise")
        try:
            results = asyncio.run(measure(svc, args, doc_key, burst_key, text, small))
        finally:
            rc = svc.stop()
            problems = log_problems(svc.log_tail(10_000_000))
        boot_s = svc.boot_seconds
    total_s = time.perf_counter() - t_start
    load_after = loadavg()

    doc, miss, hit = results["document"], results["submit_cache_miss"], results["submit_cached"]
    report = {
        "section": "service",
        "pair": args.pair,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "service": {
            "mode": "embedded: mtctl serve, SQLite, memory queue, local inference",
            "precision": settings.precision,
            "threads": settings.threads or usable_cores(),  # what the engine used
            "workers": settings.workers,
            "urgent_workers": settings.urgent_workers,
            "chunk_words": settings.chunk_words,
            "batch_words": settings.batch_words,
            "max_batch_sentences": settings.max_batch_sentences,
            "rate_limit_enterprise_per_min": int(extra_env["MTB_RATE_LIMIT_ENTERPRISE"]),
            "boot_seconds": round(boot_s, 1),
            "exit_code_on_sigterm": rc,
            "log": problems,
        },
        "document_input": {
            "words": len(text.split()),
            "segments": len(segments),
            "distinct_segments": len(doc_segments),
            "lines": len(text.split("\n")),
            **layout_stats,
        },
        **results,
        "small_job_words_mean": round(sum(len(s.split()) for s in small) / len(small), 1),
        "section_seconds": round(total_s, 1),
    }
    m = report["machine"]
    la = load_before
    table = [
        f"Service (embedded: `mtctl serve`, SQLite, memory queue, local {settings.precision} "
        f"engine), {args.pair}, {m['cores']} cores ({m['cpu']}); load average before "
        f"{la['1m']:.2f} / {la['5m']:.2f} / {la['15m']:.2f}",
        "",
        "| measurement | result |",
        "|---|---|",
        f"| {doc['words']:,}-word document ({doc['chunks']} chunks, "
        f"{report['document_input']['distinct_segments']} distinct segments), "
        "submit -> completed | "
        f"**{doc['wall_seconds']} s** ({doc['words_per_min']:,} words/min); goal < "
        f"{GOAL_S:.0f} s: {'met' if doc['meets_goal'] else 'NOT met'}; layout preserved: "
        f"{doc['layout_preserved']} |",
    ]
    one = results["submit_one_client_cache_miss"]
    table.append(
        f"| submit latency, 1 client, {one['requests']} jobs one at a time, cache-miss texts "
        f"(baseline) | p50 {one['p50_ms']} ms, p99 {one['p99_ms']} ms |"
    )
    for name, r in (("cache-miss texts", miss), ("cached texts", hit)):
        errs = sum(r["errors"].values())
        table.append(
            f"| submit latency, {r['clients']} concurrent clients x "
            f"{args.jobs_per_client} jobs, {name} | p50 **{r['p50_ms']} ms**, p99 "
            f"**{r['p99_ms']} ms** (max {r['max_ms']} ms; {r['requests_per_s']} req/s; "
            f"{errs} errors) |"
        )
    table.append(
        f"| {miss['accepted']} small jobs (~{report['small_job_words_mean']} words each) "
        f"finished after the burst | {results['small_jobs_drain']['seconds']} s "
        f"({results['small_jobs_drain']['finished']}) |"
    )
    for name, h in results["hostile_submit"].items():
        statuses = ", ".join(f"{v}x {k}" for k, v in h["statuses"].items())
        table.append(
            f"| worst input: {name}, {h['body_bytes'] / 2**20:.1f} MiB, submitted "
            f"{len(h['submit_seconds'])}x ({statuses}); /healthz polled every 10 ms meanwhile "
            f"| submit p50 **{h['submit_p50_s']} s** (max {h['submit_max_s']} s); /healthz "
            f"p99 **{h['healthz_p99_ms']} ms** (p50 {h['healthz_p50_ms']}, max "
            f"{h['healthz_max_ms']} ms, {h['healthz_polls']} polls) |"
        )
    save("service", report, "\n".join(table))
    plot(RESULTS / "service.png", doc, miss, hit, one)
    print(f"  section took {total_s:.0f} s", flush=True)
    # the 60 s goal is reported, not enforced: a loaded machine must not fail `make bench`
    ok = doc["layout_preserved"] and rc == 0 and not miss["errors"] and not hit["errors"]
    ok = ok and not any(h["healthz_errors"] for h in results["hostile_submit"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
