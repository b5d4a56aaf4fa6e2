"""Model lifecycle against a real tritonserver in explicit model-control mode, on a
generated repository with the two pairs en-pt and pt-en (translator-en-pt, translator-pt-en):
nothing loaded at start, a pair's model loaded on its first call (once for concurrent first
calls), unloaded after MTB_MODEL_IDLE_S (2 s here), in-flight work surviving an unload
(ours refused while it runs; another process's served by Triton and reloaded), and a call
after an unload reloading - with the in-process engine's results throughout. en-pt also
has an urgent twin (translator_urgent-en-pt): critical and high work goes there once the
first urgent request has loaded it, and it unloads with its pair."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from control_plane.inference import open_inference
from control_plane.inference.lifecycle import (
    LifecycleTritonClient,
    model_name,
    urgent_model_name,
    write_repository,
)
from control_plane.inference.triton_config import CPU, URGENT_CPU
from control_plane.settings import Settings

pytestmark = pytest.mark.services

IDLE_S = 2.0
EN = [
    "The configuration file could not be read because it is locked by another user.",
    "Please restart the application after installing the update.",
    "The meeting has been moved to Thursday afternoon.",
]
PT = ["O arquivo de configuração não pôde ser lido.", "A reunião foi adiada para quinta-feira."]


@pytest.fixture(scope="module")
def explicit_server(triton_factory, model_dir, tmp_path_factory):
    repo = tmp_path_factory.mktemp("lifecycle-repo")
    cfg = dataclasses.replace(CPU, model_dir=str(model_dir))
    write_repository(repo, [("en", "pt"), ("pt", "en")], cfg)
    urgent = dataclasses.replace(URGENT_CPU, model_dir=str(model_dir))
    write_repository(repo, [("en", "pt")], cfg, urgent=urgent)  # + translator_urgent-en-pt
    return triton_factory(repo, model_control="explicit")


@pytest.fixture
async def client(explicit_server, model_dir):
    c = open_client(explicit_server, model_dir)
    await c.start()
    yield c
    await c.close()


def open_client(explicit_server, model_dir) -> LifecycleTritonClient:  # noqa: ANN001
    s = Settings.from_env(
        {},
        inference="triton",
        triton_url=explicit_server.url,
        triton_model_control="explicit",
        model_idle_s=IDLE_S,
        model_dir=model_dir,
        triton_connect_timeout_s=30,
    )
    c = open_inference(s)
    assert isinstance(c, LifecycleTritonClient)
    return c


async def states(c: LifecycleTritonClient) -> dict[str, str]:
    index = await c._client().get_model_repository_index(as_json=True)
    return {m["name"]: m.get("state", "") for m in index["models"]}


async def wait_state(c: LifecycleTritonClient, name: str, want: str, timeout: float) -> float:
    t0 = time.monotonic()
    while (await states(c)).get(name) != want:
        assert time.monotonic() - t0 < timeout, (name, want, await states(c))
        await asyncio.sleep(0.1)
    return time.monotonic() - t0


def same(out, expected) -> None:
    assert [t.text for t in out] == [t.text for t in expected]
    assert [round(t.score, 4) for t in out] == [round(t.score, 4) for t in expected]


async def test_load_on_demand_idle_unload_and_reload(client, local_engine):
    en_pt, pt_en = model_name("en", "pt"), model_name("pt", "en")
    # the catalog from the repository index; nothing loaded
    assert client.ready() and client.pairs() == [("en", "pt"), ("pt", "en")]
    assert not any(s == "READY" for s in (await states(client)).values())
    assert client.model_version("en", "pt") == local_engine.model_version("en", "pt")

    # a call loads its pair's model only; concurrent first calls load it once
    outs = await asyncio.gather(*(client.translate(EN, "en", "pt") for _ in range(4)))
    for out in outs:
        same(out, local_engine.translate(EN, "en", "pt"))
    now = await states(client)
    assert now[en_pt] == "READY" and now[pt_en] != "READY", now
    assert client.lifecycle.models[en_pt].loads == 1
    assert client.model_version("en", "pt") == local_engine.model_version("en", "pt")

    # idle: still loaded well before MTB_MODEL_IDLE_S, unloaded after it
    t0 = time.monotonic()
    await asyncio.sleep(IDLE_S / 4)
    assert (await states(client))[en_pt] == "READY"
    waited = await wait_state(client, en_pt, "UNAVAILABLE", timeout=IDLE_S + 30)
    assert waited > IDLE_S / 2
    m = client.lifecycle.models[en_pt]
    while m.loaded:  # the lifecycle polls the index after Triton's unload finished
        assert time.monotonic() - t0 < IDLE_S + 30
        await asyncio.sleep(0.05)
    assert m.unloads == 1

    # a call after the unload loads again
    same(await client.translate(EN, "en", "pt"), local_engine.translate(EN, "en", "pt"))
    assert client.lifecycle.models[en_pt].loads == 2
    assert (await states(client))[en_pt] == "READY"
    assert client.m_loads.labels(en_pt, "load")._value.get() == 2
    assert client.m_loads.labels(en_pt, "unload")._value.get() == 1


async def test_in_flight_work_survives_unloads(client, local_engine):
    pt_en = model_name("pt", "en")
    sentences = PT * 60  # 8 requests of 16 segments, seconds of work on two cores
    expected = local_engine.translate(sentences, "pt", "en")
    same(await client.translate(PT, "pt", "en"), local_engine.translate(PT, "pt", "en"))
    m = client.lifecycle.models[pt_en]
    loads = m.loads

    # our own unload attempt while a call is in flight, past the idle time: refused
    call = asyncio.ensure_future(client.translate(sentences, "pt", "en"))
    while m.refs == 0:
        await asyncio.sleep(0.01)
    m.last_used -= 10 * IDLE_S  # as if the model had been idle for long
    assert not await client.lifecycle.unload_if_idle(pt_en)
    same(await call, expected)
    assert (await states(client))[pt_en] == "READY" and m.loads == loads

    # another process unloads it under a running call: Triton finishes what it holds, the
    # requests sent after the unload find the model gone, the client reloads and retries
    client.settings = dataclasses.replace(client.settings, triton_inflight_requests=2)
    call = asyncio.ensure_future(client.translate(sentences, "pt", "en"))
    while m.refs == 0:
        await asyncio.sleep(0.01)
    await client._client().unload_model(pt_en)
    same(await call, expected)
    assert m.loads == loads + 1, "the call reloaded the model another process unloaded"
    assert (await states(client))[pt_en] == "READY"


async def test_two_processes_share_a_loaded_model(client, explicit_server, model_dir, local_engine):
    """An API and a worker (two clients): the second uses the model the first loaded."""
    en_pt = model_name("en", "pt")
    other = open_client(explicit_server, model_dir)
    await other.start()
    try:
        same(await client.translate(EN, "en", "pt"), local_engine.translate(EN, "en", "pt"))
        same(await other.translate(EN, "en", "pt"), local_engine.translate(EN, "en", "pt"))
        assert other.lifecycle.models[en_pt].loaded and other.lifecycle.models[en_pt].loads == 0
        assert other.model_version("en", "pt") == local_engine.model_version("en", "pt")
    finally:
        await other.close()


async def successes(c: LifecycleTritonClient, name: str) -> int:
    stats = await c._client().get_inference_statistics(name, as_json=True)
    return sum(int(m["inference_stats"]["success"].get("count", 0)) for m in stats["model_stats"])


async def test_urgent_twin_takes_critical_and_high_work(client, local_engine):
    en_pt, twin = model_name("en", "pt"), urgent_model_name("en", "pt")
    expected = local_engine.translate(EN, "en", "pt")
    assert (await states(client)).get(twin) not in (None, "READY")  # listed, not loaded
    # the pair's first urgent request: served by the pair's model, the twin loads meanwhile
    same(await client.translate(EN, "en", "pt", priority="critical"), expected)
    await asyncio.gather(*client._pending)  # noqa: SLF001
    assert (await states(client))[twin] == "READY"
    on_twin, on_pair = await successes(client, twin), await successes(client, en_pt)
    same(await client.translate(EN, "en", "pt", priority="critical"), expected)
    same(await client.translate(EN, "en", "pt", priority="high"), expected)
    same(await client.translate(EN, "en", "pt"), expected)  # normal: the pair's model
    assert await successes(client, twin) == on_twin + 2
    assert await successes(client, en_pt) == on_pair + 1
    # idle, the twin goes with its pair
    await wait_state(client, twin, "UNAVAILABLE", timeout=IDLE_S + 30)
    await wait_state(client, en_pt, "UNAVAILABLE", timeout=IDLE_S + 30)
