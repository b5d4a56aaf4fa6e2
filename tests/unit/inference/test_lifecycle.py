"""ModelLifecycle's bookkeeping (load once, refcounts, idle timer, unload racing a call,
another process's use) and the per-pair repository, with a fake repository client."""

from __future__ import annotations

import asyncio
import time

import pytest

from control_plane.inference.lifecycle import (
    ModelLifecycle,
    model_name,
    pair_of,
    render_pair,
    twin_of,
    urgent_model_name,
    write_repository,
)
from control_plane.inference.triton_config import CPU, MODEL_REPOSITORY, URGENT_CPU

EN_PT = model_name("en", "pt")
PT_EN = model_name("pt", "en")
EN_PT_URGENT = urgent_model_name("en", "pt")


class FakeRepository:
    """Triton's repository API as explicit mode behaves: unload answers at once and the
    model stays UNLOADING for ``unload_s`` before it is UNAVAILABLE."""

    def __init__(self, names=(EN_PT, PT_EN), load_s=0.05, unload_s=0.05):
        self.state = {n: "" for n in names}
        self.load_s, self.unload_s = load_s, unload_s
        self.events: list[tuple[str, str]] = []
        self.last_inference_ms = 0

    async def get_model_repository_index(self, as_json=False, client_timeout=None):
        return {
            "models": [{"name": n, **({"state": s} if s else {})} for n, s in self.state.items()]
        }

    async def load_model(self, name, client_timeout=None):
        assert self.state[name] not in ("READY", "UNLOADING"), f"load while {self.state[name]}"
        self.events.append(("load", name))
        self.state[name] = "LOADING"
        await asyncio.sleep(self.load_s)
        self.state[name] = "READY"

    async def unload_model(self, name, client_timeout=None):
        self.events.append(("unload", name))
        self.state[name] = "UNLOADING"

        async def finish():
            await asyncio.sleep(self.unload_s)
            self.state[name] = "UNAVAILABLE"

        asyncio.get_running_loop().create_task(finish())

    async def get_inference_statistics(self, name, as_json=False, client_timeout=None):
        entry = {"name": name}
        if self.last_inference_ms:
            entry["last_inference"] = str(self.last_inference_ms)
        return {"model_stats": [entry]}


async def call(lc: ModelLifecycle, repo: FakeRepository, s: float = 0.0) -> None:
    async with lc.use("en", "pt") as name:
        assert repo.state[name] == "READY", "a call runs on a loaded model only"
        repo.events.append(("infer", name))
        await asyncio.sleep(s)


async def wait_for(cond, timeout=3.0):
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout
        await asyncio.sleep(0.01)


def test_names_and_rendered_config():
    assert pair_of("translator-en-pt") == ("en", "pt")
    assert pair_of("translator") is None and pair_of("translator_urgent") is None
    assert pair_of("other-en-pt") is None
    text = render_pair(CPU, "en", "pt")
    assert 'name: "translator-en-pt"' in text and 'name: "translator"\n' not in text
    assert 'key: "pairs"\n  value { string_value: "en-pt" }' in text


def test_write_repository(tmp_path):
    written = write_repository(tmp_path, [("pt", "en"), ("en", "pt")])
    assert [p.name for p in written] == ["translator-en-pt", "translator-pt-en"]
    for folder in written:
        assert (folder / "1" / "model.py").read_text() == (
            MODEL_REPOSITORY / "translator" / "1" / "model.py"
        ).read_text()
        assert f'name: "{folder.name}"' in (folder / "config.pbtxt").read_text()


async def test_refresh_lists_pairs_without_loading():
    repo = FakeRepository()
    lc = ModelLifecycle(repo, idle_s=60)
    states = await lc.refresh()
    assert lc.pairs() == [("en", "pt"), ("pt", "en")]
    assert states == {("en", "pt"): "", ("pt", "en"): ""}
    assert repo.events == []


async def test_concurrent_first_calls_load_once():
    repo = FakeRepository(load_s=0.1)
    lc = ModelLifecycle(repo, idle_s=60)
    await asyncio.gather(*(call(lc, repo) for _ in range(8)))
    assert [e for e in repo.events if e[0] == "load"] == [("load", EN_PT)]
    assert len([e for e in repo.events if e[0] == "infer"]) == 8
    assert lc.models[EN_PT].refs == 0 and lc.models[EN_PT].loads == 1
    await lc.close()


async def test_unloaded_after_idle_not_before():
    repo = FakeRepository()
    lc = ModelLifecycle(repo, idle_s=0.3)
    await call(lc, repo)
    await asyncio.sleep(0.15)
    assert repo.state[EN_PT] == "READY"
    await call(lc, repo)  # a call restarts the idle period
    await asyncio.sleep(0.2)
    assert repo.state[EN_PT] == "READY"
    await wait_for(lambda: lc.models[EN_PT].unloads == 1)
    assert repo.state[EN_PT] == "UNAVAILABLE" and not lc.models[EN_PT].loaded
    await lc.close()


async def test_no_unload_while_a_call_is_in_flight():
    repo = FakeRepository()
    lc = ModelLifecycle(repo, idle_s=0.05)
    running = asyncio.ensure_future(call(lc, repo, s=0.4))
    await wait_for(lambda: lc.models.get(EN_PT) is not None and lc.models[EN_PT].loaded)
    lc.models[EN_PT].last_used -= 10  # long idle by the clock, but a call holds it
    assert not await lc.unload_if_idle(EN_PT)
    await running
    assert ("unload", EN_PT) not in repo.events
    await wait_for(lambda: repo.state[EN_PT] == "UNAVAILABLE")  # idle after the call ends
    await lc.close()


async def test_call_racing_an_unload_waits_and_reloads():
    repo = FakeRepository(unload_s=0.2)
    lc = ModelLifecycle(repo, idle_s=0.5)
    await call(lc, repo)
    lc.models[EN_PT].timer.cancel()  # drive the unload by hand
    lc.models[EN_PT].last_used -= 1.0
    unloading = asyncio.ensure_future(lc.unload_if_idle(EN_PT))
    await wait_for(lambda: repo.state[EN_PT] == "UNLOADING")
    await call(lc, repo)  # arrives mid-unload: waits for it, then loads again
    assert await unloading
    assert [e[0] for e in repo.events] == ["load", "infer", "unload", "load", "infer"]
    await lc.close()


async def test_another_process_recent_inference_postpones_unload():
    repo = FakeRepository()
    lc = ModelLifecycle(repo, idle_s=0.3)
    await call(lc, repo)
    lc.models[EN_PT].timer.cancel()
    lc.models[EN_PT].last_used -= 1.0
    repo.last_inference_ms = int(time.time() * 1000)  # someone else used it just now
    assert not await lc.unload_if_idle(EN_PT)
    # the idle period now counts from the other process's call
    assert time.monotonic() - lc.models[EN_PT].last_used < 0.1
    repo.last_inference_ms = int((time.time() - 1.0) * 1000)
    lc.models[EN_PT].last_used -= 1.0
    assert await lc.unload_if_idle(EN_PT)
    await lc.close()


async def test_model_gone_behind_our_back_is_reloaded():
    repo = FakeRepository()
    lc = ModelLifecycle(repo, idle_s=60)
    await call(lc, repo)
    repo.state[EN_PT] = "UNAVAILABLE"  # another process unloaded it
    with pytest.raises(RuntimeError):
        async with lc.use("en", "pt"):
            raise RuntimeError("Request for unknown model: 'translator-en-pt' is not found")
    await call(lc, repo)
    assert lc.models[EN_PT].loads == 2
    await lc.close()


async def test_refresh_adopts_a_model_loaded_elsewhere():
    repo = FakeRepository()
    repo.state[EN_PT] = "READY"
    lc = ModelLifecycle(repo, idle_s=0.1)
    await lc.refresh()
    assert lc.models[EN_PT].loaded
    await wait_for(lambda: repo.state[EN_PT] == "UNAVAILABLE")
    await lc.close()


async def test_failed_load_leaves_it_unloaded_and_the_next_call_tries_again():
    repo = FakeRepository()
    lc = ModelLifecycle(repo, idle_s=60)
    real = repo.load_model

    async def broken(name, client_timeout=None):
        raise RuntimeError("failed to load 'translator-en-pt'")

    repo.load_model = broken
    with pytest.raises(RuntimeError, match="failed to load"):
        await call(lc, repo)
    assert lc.models[EN_PT].refs == 0 and not lc.models[EN_PT].loaded
    repo.load_model = real
    await call(lc, repo)
    assert lc.models[EN_PT].loads == 1
    await lc.close()


async def test_refresh_notices_an_unload_by_another_process():
    repo = FakeRepository()
    lc = ModelLifecycle(repo, idle_s=60)
    await call(lc, repo)
    repo.state[EN_PT] = "UNAVAILABLE"
    await lc.refresh()
    assert not lc.models[EN_PT].loaded
    await call(lc, repo)  # loaded again before the request goes out
    assert lc.models[EN_PT].loads == 2
    await lc.close()


async def test_idle_zero_never_unloads():
    repo = FakeRepository()
    lc = ModelLifecycle(repo, idle_s=0)
    await call(lc, repo)
    await asyncio.sleep(0.2)
    assert repo.state[EN_PT] == "READY" and lc.models[EN_PT].timer is None
    await lc.close()


# ------------------------------------------------------------------ the Triton client


class FakeTriton(FakeRepository):
    """A server in explicit mode: a per-pair model upper-cases its text, answers a catalog
    query with its own pair only, and refuses requests while not loaded."""

    VERSIONS = {EN_PT: "v1-int8", PT_EN: "v2-int8"}

    def __init__(self, names=(EN_PT, PT_EN)):
        super().__init__(names, load_s=0.01, unload_s=0.01)
        self.models_called: list[str] = []

    async def is_server_ready(self, client_timeout=None):
        return True

    async def infer(self, model, inputs, priority=0, timeout=None, client_timeout=None, **kw):
        from tritonclient.utils import deserialize_bytes_tensor

        values = {i.name(): list(deserialize_bytes_tensor(i._raw_content)) for i in inputs}  # noqa: SLF001
        if self.state.get(model) != "READY":
            raise RuntimeError(f"Request for unknown model: '{model}' is not found")
        self.models_called.append(model)
        if values["SOURCE_LANG"][0] == b"":
            src, tgt = pair_of(model)  # a twin serves its pair's version
            return Result([f"{src}\t{tgt}\t{self.VERSIONS[model_name(src, tgt)]}"], [0.0])
        texts = [t.decode().upper() for t in values["TEXT"]]
        return Result(texts, [0.5] * len(texts))

    async def close(self):
        pass


class Result:
    def __init__(self, texts, scores):
        import numpy as np

        self.out = {
            "TRANSLATION": np.array([t.encode() for t in texts], dtype=object).reshape(1, -1),
            "SCORE": np.asarray(scores, dtype=np.float32).reshape(1, -1),
        }

    def as_numpy(self, name):
        return self.out[name]


@pytest.fixture
async def client(tmp_path):
    async for c in _client(tmp_path, FakeTriton()):
        yield c


async def _client(tmp_path, fake):
    import json

    from control_plane.inference import open_inference
    from control_plane.inference.lifecycle import LifecycleTritonClient
    from control_plane.settings import Settings

    store = tmp_path / "bergamot-en-pt"
    store.mkdir()
    meta = {"source": "en", "target": "pt", "model_version": "w1"}
    (store / "metadata.json").write_text(json.dumps(meta))
    s = Settings.from_env(
        {},
        inference="triton",
        triton_model_control="explicit",
        model_dir=tmp_path,
        model_idle_s=60,
        triton_connect_timeout_s=0,
        triton_health_interval_s=3600,
        triton_backoff_s=0.001,
    )
    c = open_inference(s)
    assert isinstance(c, LifecycleTritonClient)
    c._grpc = fake  # noqa: SLF001
    await c.start()
    yield c
    await c.close()


async def test_client_catalog_from_the_index_before_any_load(client):
    from control_plane.engine.base import UnsupportedPair
    from control_plane.inference.base import InferenceUnavailable

    fake = client._grpc  # noqa: SLF001
    assert client.ready() and client.pairs() == [("en", "pt"), ("pt", "en")]
    assert fake.events == []  # nothing loaded
    assert client.model_version("en", "pt") == "w1-int8"  # the control plane's model store
    with pytest.raises(UnsupportedPair):
        client.model_version("en", "de")
    # a pair the store does not know: its model starts loading, the caller retries
    with pytest.raises(InferenceUnavailable, match="loading"):
        client.model_version("pt", "en")
    await asyncio.gather(*client._pending)  # noqa: SLF001
    assert client.model_version("pt", "en") == "v2-int8"  # what the loaded model reports
    assert ("load", PT_EN) in fake.events and ("load", EN_PT) not in fake.events


async def test_client_translate_loads_the_pair_model_and_learns_its_version(client):
    fake = client._grpc  # noqa: SLF001
    out = await client.translate(["a", "b", "c"], "en", "pt")
    assert [t.text for t in out] == ["A", "B", "C"]
    assert set(fake.models_called) == {EN_PT}
    assert [e for e in fake.events if e[0] == "load"] == [("load", EN_PT)]
    assert client.model_version("en", "pt") == "v1-int8"  # the served version wins
    assert client.m_loads.labels(EN_PT, "load")._value.get() == 1
    # unloaded behind its back: the retry reloads
    fake.state[EN_PT] = "UNAVAILABLE"
    out = await client.translate(["d"], "en", "pt")
    assert [t.text for t in out] == ["D"] and client.lifecycle.models[EN_PT].loads == 2


def test_unknown_model_control_is_refused():
    from control_plane.inference import open_inference
    from control_plane.settings import Settings

    with pytest.raises(ValueError, match="MTB_TRITON_MODEL_CONTROL"):
        open_inference(Settings.from_env({}, inference="triton", triton_model_control="poll"))


async def test_a_model_another_process_loaded_is_used_not_reloaded():
    repo = FakeRepository()
    repo.state[EN_PT] = "READY"  # a worker elsewhere loaded it; our index is stale
    lc = ModelLifecycle(repo, idle_s=60)
    await call(lc, repo)
    assert repo.events == [("infer", EN_PT)]
    assert lc.models[EN_PT].loaded and lc.models[EN_PT].loads == 0
    await lc.close()


# -- urgent twins -------------------------------------------------------------------------


def test_twin_names_and_config():
    assert EN_PT_URGENT == "translator_urgent-en-pt"
    assert pair_of(EN_PT_URGENT) == ("en", "pt")
    assert twin_of(EN_PT) == EN_PT_URGENT and twin_of(EN_PT_URGENT) == EN_PT
    assert twin_of("translator") is None and twin_of("translator_urgent") is None
    text = render_pair(URGENT_CPU, "en", "pt", EN_PT_URGENT)
    assert f'name: "{EN_PT_URGENT}"\n' in text and 'name: "translator_urgent"\n' not in text
    assert "max_batch_size: 16\n" in text  # the urgent model's small executions
    assert 'key: "pairs"\n  value { string_value: "en-pt" }' in text


def test_write_repository_with_twins(tmp_path):
    written = write_repository(tmp_path, [("pt", "en"), ("en", "pt")], urgent=URGENT_CPU)
    names = [p.name for p in written]
    assert names == [EN_PT, EN_PT_URGENT, PT_EN, urgent_model_name("pt", "en")]
    for folder in written:
        config = (folder / "config.pbtxt").read_text()
        assert f'name: "{folder.name}"' in config
        assert ("max_batch_size: 16\n" in config) == folder.name.startswith("translator_urgent")


async def test_pairs_counted_once_with_twins():
    repo = FakeRepository(names=(EN_PT, EN_PT_URGENT, PT_EN))
    lc = ModelLifecycle(repo, idle_s=60)
    await lc.refresh()
    assert lc.pairs() == [("en", "pt"), ("pt", "en")]


@pytest.fixture
async def twin_client(tmp_path):
    async for c in _client(tmp_path, FakeTriton(names=(EN_PT, EN_PT_URGENT, PT_EN))):
        yield c


async def test_urgent_requests_go_to_the_twin_once_it_is_loaded(twin_client):
    c = twin_client
    fake = c._grpc  # noqa: SLF001
    await c.translate(["a"], "en", "pt", priority="normal")
    assert fake.models_called[-1] == EN_PT
    assert ("load", EN_PT_URGENT) not in fake.events  # no urgent work yet: no twin
    # the first critical request: served by the pair's model, the twin loads meanwhile
    out = await c.translate(["b"], "en", "pt", priority="critical")
    assert [t.text for t in out] == ["B"] and fake.models_called[-1] == EN_PT
    await asyncio.gather(*c._pending)  # noqa: SLF001
    assert fake.state[EN_PT_URGENT] == "READY"
    for priority, model in [("critical", EN_PT_URGENT), ("high", EN_PT_URGENT), ("normal", EN_PT)]:
        out = await c.translate(["c"], "en", "pt", priority=priority)
        assert [t.text for t in out] == ["C"] and fake.models_called[-1] == model, priority
    assert [e for e in fake.events if e[0] == "load"] == [("load", EN_PT), ("load", EN_PT_URGENT)]
    # a pair without a twin in the repository: urgent work stays on its model, no load tried
    await c.translate(["d"], "pt", "en", priority="critical")
    assert fake.models_called[-1] == PT_EN
    assert not c._pending  # noqa: SLF001


async def test_a_call_to_either_model_keeps_the_other_in_use(twin_client):
    c = twin_client
    await c.translate(["a"], "en", "pt", priority="critical")
    await asyncio.gather(*c._pending)  # noqa: SLF001
    twin, pair = c.lifecycle.models[EN_PT_URGENT], c.lifecycle.models[EN_PT]
    before = twin.last_used
    await asyncio.sleep(0.02)
    await c.translate(["b"], "en", "pt", priority="normal")
    assert twin.last_used > before
    before = pair.last_used
    await asyncio.sleep(0.02)
    await c.translate(["b"], "en", "pt", priority="critical")
    assert pair.last_used > before


async def test_a_twin_gone_behind_our_back_is_loaded_again(twin_client):
    c = twin_client
    fake = c._grpc  # noqa: SLF001
    await c.translate(["a"], "en", "pt", priority="critical")
    await asyncio.gather(*c._pending)  # noqa: SLF001
    fake.state[EN_PT_URGENT] = "UNAVAILABLE"  # another process unloaded it
    out = await c.translate(["b"], "en", "pt", priority="critical")
    assert [t.text for t in out] == ["B"]  # the retry went to the pair's model
    assert fake.models_called[-1] == EN_PT
    await asyncio.gather(*c._pending)  # noqa: SLF001
    assert fake.state[EN_PT_URGENT] == "READY" and c.lifecycle.models[EN_PT_URGENT].loads == 2
    await c.translate(["c"], "en", "pt", priority="high")
    assert fake.models_called[-1] == EN_PT_URGENT


def test_command_writes_twins_unless_told_not_to(tmp_path, capsys):
    from control_plane.inference.lifecycle import main

    assert main([str(tmp_path / "a"), "--model-dir", str(tmp_path), "--pairs", "en-pt"]) == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [EN_PT, EN_PT_URGENT]
    argv = [str(tmp_path / "b"), "--model-dir", str(tmp_path), "--pairs", "en-pt", "--no-urgent"]
    assert main(argv) == 0
    assert [p.name for p in (tmp_path / "b").iterdir()] == [EN_PT]
    assert f"wrote {tmp_path / 'a' / EN_PT_URGENT}" in capsys.readouterr().out


async def test_a_twin_that_fails_to_load_is_not_tried_on_every_request(twin_client, monkeypatch):
    from control_plane.inference import lifecycle

    c = twin_client
    fake = c._grpc  # noqa: SLF001
    real_load = fake.load_model
    tries: list[str] = []

    async def load(name, client_timeout=None):
        if name == EN_PT_URGENT:
            tries.append(name)
            raise RuntimeError("failed to load: out of memory")
        await real_load(name, client_timeout)

    fake.load_model = load
    for _ in range(3):
        out = await c.translate(["a"], "en", "pt", priority="critical")
        assert [t.text for t in out] == ["A"] and fake.models_called[-1] == EN_PT
        await asyncio.gather(*c._pending)  # noqa: SLF001
    assert tries == [EN_PT_URGENT]  # one failed load for three urgent requests
    assert c.lifecycle.models[EN_PT_URGENT].loaded is False
    # after the pause the next urgent request tries again
    fake.load_model = real_load
    c._twin_retry_at[EN_PT_URGENT] -= lifecycle.TWIN_RETRY_S + 1  # noqa: SLF001
    await c.translate(["b"], "en", "pt", priority="critical")
    await asyncio.gather(*c._pending)  # noqa: SLF001
    assert fake.state[EN_PT_URGENT] == "READY"


async def test_a_pair_stays_loaded_while_its_twin_loads(twin_client):
    """A twin load longer than the idle time (L0_triton_lifecycle saw one on a busy
    machine): the pair that asked for it is still loaded when it is ready, then both go."""
    c = twin_client
    fake = c._grpc  # noqa: SLF001
    real_load = fake.load_model

    async def slow(name, client_timeout=None):
        if name == EN_PT_URGENT:
            await asyncio.sleep(0.4)
        await real_load(name, client_timeout)

    fake.load_model = slow
    c.lifecycle.idle_s = 0.1
    await c.translate(["a"], "en", "pt", priority="critical")
    await asyncio.gather(*c._pending)  # noqa: SLF001
    assert fake.state[EN_PT_URGENT] == "READY"
    assert fake.state[EN_PT] == "READY"  # idle 0.4 s > 0.1 s, kept for its loading twin
    assert ("unload", EN_PT) not in fake.events
    for _ in range(100):  # idle after that: both unload
        if fake.state[EN_PT] != "READY" and fake.state[EN_PT_URGENT] != "READY":
            break
        await asyncio.sleep(0.05)
    assert fake.state[EN_PT] != "READY" and fake.state[EN_PT_URGENT] != "READY"
