"""The translator model on a REAL tritonserver (nvidia-pytriton's binary, python backend).

One private server per session on model_repository/ with its committed CPU config
(``triton_factory``: free loopback ports), reading the test model store (MTB_MODEL_DIR).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import urllib.request

import pytest

from control_plane.engine import UnsupportedPair
from control_plane.inference.triton import TritonInferenceClient
from control_plane.settings import Settings
from evaluation.sets import gettext_set

pytestmark = pytest.mark.services

EVAL = {p: [s for s, _ in gettext_set(p)] for p in ("en-pt", "pt-en")}
# All 500 sentences of each pair by default; MTB_TRITON_EVAL_SENTENCES=N for a quicker run.
EVAL_N = int(os.environ.get("MTB_TRITON_EVAL_SENTENCES", "0")) or None


def settings(url: str, **kw) -> Settings:
    kw.setdefault("triton_connect_timeout_s", 60)
    return Settings.from_env({}, triton_url=url, **kw)


async def client_for(url: str, **kw) -> TritonInferenceClient:
    c = TritonInferenceClient(settings(url, **kw))
    await c.start()
    assert c.ready()
    return c


async def model_stats(url: str, model: str = "translator") -> tuple[int, int]:
    import tritonclient.grpc.aio as grpcclient

    async with grpcclient.InferenceServerClient(url) as stats:
        s = (await stats.get_inference_statistics(model, as_json=True))["model_stats"][0]
    return int(s.get("inference_count", 0)), int(s.get("execution_count", 0))


async def test_critical_and_high_run_on_the_urgent_model(server):
    """The committed repository serves translator_urgent beside the translator: critical
    and high requests go there (its own process), normal ones do not, and both give the
    same translations."""
    c = await client_for(server.url)
    assert c._urgent_ready  # noqa: SLF001 - the health poll found it
    sentences = EVAL["en-pt"][:6]
    urgent0, main0 = (
        await model_stats(server.url, "translator_urgent"),
        await model_stats(server.url),
    )
    critical = await c.translate(sentences[:3], "en", "pt", priority="critical")
    high = await c.translate(sentences[3:], "en", "pt", priority="high")
    normal = await c.translate(sentences, "en", "pt")
    await asyncio.sleep(0.5)  # statistics are updated just after the responses go out
    urgent1, main1 = (
        await model_stats(server.url, "translator_urgent"),
        await model_stats(server.url),
    )
    assert urgent1[0] - urgent0[0] == 2  # one request per call (under 16 segments each)
    assert main1[0] - main0[0] == 1
    assert [t.text for t in critical + high] == [t.text for t in normal]
    await c.close()


async def test_translations_equal_the_in_process_engine(server, local_engine):
    """The evaluation sets (both pairs, sent concurrently so executions mix pairs) through
    Triton give exactly the in-process engine's translations."""
    c = await client_for(server.url, triton_request_segments=8)
    assert c.pairs() == [("en", "pt"), ("pt", "en")]
    assert c.model_version("en", "pt") == local_engine.model_version("en", "pt")
    jobs = {p: EVAL[p][:EVAL_N] for p in EVAL}
    remote = await asyncio.gather(
        *(c.translate(segs, *p.split("-"), timeout=600) for p, segs in jobs.items())
    )
    for (pair, segs), got in zip(jobs.items(), remote, strict=True):
        want = local_engine.translate(segs, *pair.split("-"))
        assert [t.text for t in got] == [t.text for t in want], pair
        # Scores agree to ~1e-3: the server runs 1 intra-op thread per instance and other
        # batch compositions, which reorder float sums; the chosen tokens are the same.
        assert [t.score for t in got] == pytest.approx([t.score for t in want], abs=5e-3)
    await c.close()


async def test_unsupported_pair_and_empty_segments(server):
    c = await client_for(server.url)
    with pytest.raises(UnsupportedPair):
        await c.translate(["Hello"], "en", "de")
    c._catalog = {}  # noqa: SLF001 - let the request reach the server: it rejects it too
    with pytest.raises(UnsupportedPair):
        await c.translate(["Hello"], "en", "de")
    c._catalog = {("en", "pt"): "x"}  # noqa: SLF001
    out = await c.translate(["", "  ", "Hello."], "en", "pt")
    assert [t.text for t in out][:2] == ["", ""] and out[2].text
    await c.close()


async def test_dynamic_batching_under_32_clients(server):
    c = await client_for(server.url)
    sentences = EVAL["en-pt"][:64]
    inf0, ex0 = await model_stats(server.url)

    async def one(k: int) -> None:
        for j in range(6):
            await c.translate([sentences[(k * 6 + j) % 64]], "en", "pt")

    await asyncio.gather(*(one(k) for k in range(32)))
    await asyncio.sleep(0.5)  # statistics are updated just after the responses go out
    inf1, ex1 = await model_stats(server.url)
    inferences, executions = inf1 - inf0, ex1 - ex0
    assert inferences >= 32 * 5
    assert inferences / executions >= 4, (inferences, executions)
    await c.close()


async def test_critical_overtakes_a_saturated_normal_queue(server):
    """Loose version of the bench figure: critical p95 <= 1/3 of normal p95."""
    c = await client_for(server.url)
    sentences = EVAL["en-pt"]
    lat: dict[str, list[float]] = {"normal": [], "critical": []}
    stop = time.monotonic() + 16
    warm = time.monotonic() + 3

    async def caller(priority: str, k: int, pause: float) -> None:
        j = k
        while time.monotonic() < stop:
            batch = [sentences[(j + i) % len(sentences)] for i in range(4)]
            j += 4
            t0 = time.monotonic()
            await c.translate(batch, "en", "pt", priority=priority, timeout=120)
            if t0 >= warm:
                lat[priority].append(time.monotonic() - t0)
            await asyncio.sleep(pause)

    async def critical() -> None:
        await asyncio.sleep(warm - time.monotonic())
        await caller("critical", 5, 0.3)

    await asyncio.gather(*(caller("normal", 7 * k, 0) for k in range(160)), critical(), critical())
    await c.close()
    p95 = {k: statistics.quantiles(v, n=20)[-1] for k, v in lat.items()}
    assert len(lat["critical"]) >= 5 and len(lat["normal"]) >= 20, lat
    assert p95["critical"] <= p95["normal"] / 3, p95


def test_metrics_endpoint_for_prometheus(server):
    with urllib.request.urlopen(server.urls["metrics"], timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    for name in (
        'nv_inference_request_success{model="translator",version="1"}',
        'nv_inference_exec_count{model="translator",version="1"}',
        'nv_inference_pending_request_count{model="translator",version="1"}',
        'nv_inference_queue_duration_us{model="translator",version="1"}',
        "nv_cpu_utilization",
        'mtb_translator_segments_total{pair="en-pt"}',
    ):
        assert name in text, name


def test_mtctl_translate_backend_triton(server, model_dir):
    lines = EVAL["pt-en"][:20]
    env = {**os.environ, "MTB_MODEL_DIR": str(model_dir)}
    args = [sys.executable, "-m", "control_plane.cli", "translate", "-s", "pt", "-t", "en"]
    run = dict(input="\n".join(lines) + "\n", capture_output=True, text=True, env=env, timeout=300)
    remote = subprocess.run(
        [*args, "--no-cache", "--backend", "triton", "--triton-url", server.url], **run
    )
    local = subprocess.run([*args, "--no-cache", "--backend", "local"], **run)
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout == local.stdout and len(remote.stdout.splitlines()) == 20


async def test_fallback_to_in_process_engine_when_triton_is_down(model_dir, local_engine):
    dead = "127.0.0.1:9"  # discard port: connection refused
    s = settings(
        dead,
        model_dir=model_dir,
        triton_connect_timeout_s=0,
        triton_fallback=True,
        triton_retries=1,
        triton_backoff_s=0.01,
    )
    c = TritonInferenceClient(s)
    await c.start()
    assert c.ready() and not c.triton_ready  # /readyz: ready, served in-process
    segs = EVAL["en-pt"][:10]
    out = await c.translate(segs, "en", "pt")
    assert [t.text for t in out] == [t.text for t in local_engine.translate(segs, "en", "pt")]
    assert c.m_fallback._value.get() >= 1
    await c.close()
