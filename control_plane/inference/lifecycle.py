"""Model lifecycle on Triton (``MTB_TRITON_MODEL_CONTROL=explicit``): one Triton model per
language pair, loaded on first demand, unloaded after ``MTB_MODEL_IDLE_S`` without a call.

Why per-pair models: a server with many pairs (or one 60-100 GB NLLB model next to small
ones) cannot keep everything resident; the design unloads what nobody uses. Triton's
explicit model-control mode gives the repository API (index, load, unload), and the
control plane decides when, because it knows which calls are in flight.

The repository: generated directories ``translator-<src>-<tgt>/`` (``write_repository``),
each the ``translator`` python backend (model_repository/translator/1/model.py) with the
same generated config plus a ``pairs`` parameter that restricts it to its pair. Chosen over
Triton's load-with-config-override (config JSON and model files sent in the load request)
because generated directories show in the repository index before anything is loaded (the
client's pair catalog), can be reviewed and mounted as they are (Kubernetes volume), and
loading one costs exactly what loading the all-pairs model costs per pair (docs/
large-models.md has the measured load times).

Urgent twins (the command writes them unless ``--no-urgent``):
``translator_urgent-<src>-<tgt>/``, the pair under the urgent model's config
(control_plane/inference/triton_config.py: a process of its own, small executions). As
with the all-pairs ``translator_urgent``, critical and high requests then never wait for a
normal execution of their pair to end. A twin is loaded in the background by its pair's
first critical or high request (that request, and any until the twin is ready, go to the
pair's model at Triton priority 1 or 2), stays loaded while its pair is in use (each call
to either model counts as use of both) and is unloaded with it: a twin costs memory only
for pairs that get urgent work. Without twins in the repository every request of a pair
goes to its one model (critical ones first in its queue, but after the execution in
progress).

The bookkeeping (``ModelLifecycle``), per model:

* ``refs``: calls in flight from this process. A call takes its reference *before* it
  waits for the model's lock, so an unload that has not started yet sees it and gives up;
  a call that arrives while an unload is under way waits for it and loads again. Either
  way the call is served, never failed by the lifecycle.
* the lock: one load at a time per model, so concurrent first calls load once.
* the idle timer: after the last call ends, ``idle_s`` later (and only if no call came
  meanwhile, and Triton's own statistics show no inference by another process within
  ``idle_s``) the model is unloaded. Triton itself finishes requests already queued in it
  before an unload completes.
* a call that finds its model gone (another process unloaded it) marks it unloaded; the
  Triton client's retry then loads it again.

Versions: a pair's ``model_version`` (cache keys, job records) must be known before its
model was ever loaded, so it comes from the control plane's model store (``metadata.json``
under ``MTB_MODEL_DIR``, the formula of control_plane/engine/store.py); once the model is
loaded, the version it reports wins (a mismatch is logged). A pair the store does not know
starts loading and its caller gets InferenceUnavailable (retry).

    python -m control_plane.inference.lifecycle DEST [--model-dir DIR] [--kind cpu|gpu]
                                                [--no-urgent]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import logging
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from control_plane.engine.base import UnsupportedPair
from control_plane.inference.base import InferenceUnavailable
from control_plane.inference.triton import TritonInferenceClient
from control_plane.inference.triton_config import (
    CPU,
    GPU,
    MODEL_NAME,
    MODEL_REPOSITORY,
    PRIORITY_LEVELS,
    URGENT_CPU,
    URGENT_GPU,
    URGENT_MODEL_NAME,
    TranslatorConfig,
    render,
)

log = logging.getLogger(__name__)

PREFIX = MODEL_NAME  # translator-<src>-<tgt>
URGENT_PREFIX = URGENT_MODEL_NAME  # translator_urgent-<src>-<tgt>: a pair's urgent twin
Pair = tuple[str, str]

# what Triton says when a request names a model that is not (or no longer) loaded
_GONE = ("unknown model", "is not ready", "unavailable model", "has no available versions")


def model_name(source: str, target: str) -> str:
    return f"{PREFIX}-{source}-{target}"


def urgent_model_name(source: str, target: str) -> str:
    return f"{URGENT_PREFIX}-{source}-{target}"


def pair_of(name: str) -> Pair | None:
    """``translator-en-pt`` (or its twin ``translator_urgent-en-pt``) -> ("en", "pt");
    None for any other model name."""
    for head in (f"{PREFIX}-", f"{URGENT_PREFIX}-"):
        if name.startswith(head):
            source, _, target = name[len(head) :].partition("-")
            return (source, target) if source and target else None
    return None


def twin_of(name: str) -> str | None:
    """The other model of the same pair: a pair model's urgent twin and back."""
    pair = pair_of(name)
    if pair is None:
        return None
    return model_name(*pair) if name.startswith(f"{URGENT_PREFIX}-") else urgent_model_name(*pair)


# ------------------------------------------------------------------ the repository


def render_pair(cfg: TranslatorConfig, source: str, target: str, name: str = "") -> str:
    """The translator's generated config (or the urgent model's) under the pair's model
    name (default ``translator-<src>-<tgt>``), restricted to the pair."""
    text = render(cfg)
    head = f'name: "{cfg.name}"\n'
    if head not in text:
        raise ValueError("the translator config has no name line to rename")
    text = text.replace(head, f'name: "{name or model_name(source, target)}"\n', 1)
    return text + (
        f'parameters {{\n  key: "pairs"\n  value {{ string_value: "{source}-{target}" }}\n}}\n'
    )


def store_pairs(model_dir: Path) -> dict[Pair, str]:
    """pair -> the store's model_version (without precision) for every exported model."""
    from control_plane.engine.store import installed_models, pairs_of

    found: dict[Pair, str] = {}
    for _, meta in installed_models(Path(model_dir)).items():
        for pair in pairs_of(meta):
            found.setdefault(pair, str(meta.get("model_version", "")))
    return found


def write_repository(
    dest: Path,
    pairs: list[Pair],
    cfg: TranslatorConfig = CPU,
    source: Path = MODEL_REPOSITORY,
    urgent: TranslatorConfig | None = None,
) -> list[Path]:
    """One model directory per pair under ``dest`` (model.py copied from ``source``), and
    with ``urgent`` (the urgent model's config) each pair's urgent twin beside it."""
    model_py = source / MODEL_NAME / "1" / "model.py"
    written = []
    for src, tgt in sorted(pairs):
        models = [(model_name(src, tgt), cfg)]
        if urgent is not None:
            models.append((urgent_model_name(src, tgt), urgent))
        for name, config in models:
            folder = Path(dest) / name
            (folder / "1").mkdir(parents=True, exist_ok=True)
            shutil.copy2(model_py, folder / "1" / "model.py")
            (folder / "config.pbtxt").write_text(render_pair(config, src, tgt, name))
            written.append(folder)
    return written


# ------------------------------------------------------------------ the bookkeeping


@dataclass
class ModelState:
    name: str
    refs: int = 0  # calls in flight from this process
    loaded: bool = False
    last_used: float = 0.0
    loads: int = 0
    unloads: int = 0
    load_s: float = 0.0  # the last load's duration
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    timer: asyncio.Task | None = None


class ModelLifecycle:
    """Load on demand, unload after idle, for the models of a Triton repository.

    ``client`` has tritonclient.grpc.aio's repository methods (``get_model_repository_index``,
    ``load_model``, ``unload_model``, ``get_inference_statistics``); unit tests pass a fake.
    ``after_load(name)`` runs under the model's lock right after each load (the Triton
    client learns the model's version there)."""

    def __init__(
        self,
        client,  # noqa: ANN001 - tritonclient.grpc.aio.InferenceServerClient or a fake
        idle_s: float,
        *,
        load_timeout_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        after_load: Callable[[str], Awaitable[None]] | None = None,
        on_change: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.client = client
        self.idle_s = idle_s
        self.load_timeout_s = load_timeout_s
        self.clock = clock
        self.wall_clock = wall_clock
        self.after_load = after_load
        self.on_change = on_change  # (model, "load" | "unload", seconds): metrics
        self.models: dict[str, ModelState] = {}
        self.index: dict[str, str] = {}  # model name -> Triton's state in the last index
        self._closed = False

    # -- catalog -----------------------------------------------------------------------

    async def refresh(self) -> dict[Pair, str]:
        """Read the repository index: the pairs there are (loaded or not) and their states.
        A model found READY that this process does not track (loaded by another process, or
        before a restart) is adopted: its idle timer starts, so nothing stays loaded for
        ever because the process that loaded it went away."""
        index = await self.client.get_model_repository_index(as_json=True, client_timeout=5.0)
        states: dict[str, str] = {}
        for entry in index.get("models", []):
            name = entry.get("name", "")
            if pair_of(name) is not None:
                states[name] = entry.get("state", "")
        self.index = states
        for name, state in states.items():
            m = self._state(name)
            if m.lock.locked():
                continue  # a load or unload of ours is under way
            if state == "READY" and not m.loaded:
                m.loaded = True
                m.last_used = self.clock()
                self._arm(m)
            elif state != "READY" and m.loaded and m.refs == 0:
                m.loaded = False  # unloaded by another process: the next call loads it
        return {pair_of(n): s for n, s in states.items()}  # type: ignore[misc]

    def pairs(self) -> list[Pair]:
        return sorted({p for p in map(pair_of, self.index) if p is not None})

    def is_loaded(self, name: str) -> bool:
        """Loaded by this process's account (a load under way is not loaded yet)."""
        m = self.models.get(name)
        return m is not None and m.loaded and not m.lock.locked()

    def touch(self, name: str) -> None:
        """Count as used now, without a call: a loaded twin stays while its pair is used."""
        m = self.models.get(name)
        if m is not None and m.loaded:
            m.last_used = max(m.last_used, self.clock())

    def _state(self, name: str) -> ModelState:
        m = self.models.get(name)
        if m is None:
            m = self.models[name] = ModelState(name)
        return m

    # -- use -----------------------------------------------------------------------------

    def use(self, source: str, target: str):  # noqa: ANN201 - an async context manager
        """Hold the pair's model loaded for the body (a call to it); yields its name."""
        return self.use_model(model_name(source, target))

    @asynccontextmanager
    async def use_model(self, name: str) -> AsyncIterator[str]:
        """Hold model ``name`` loaded for the body (a call to it); yields its name."""
        m = self._state(name)
        m.refs += 1  # before waiting: an unload that has not begun yet sees this call
        try:
            async with m.lock:
                if not m.loaded:
                    await self._load(m)
            try:
                yield m.name
            except Exception as exc:
                if any(sign in str(exc).lower() for sign in _GONE):
                    m.loaded = False  # unloaded behind our back: the retry loads it again
                raise
        finally:
            m.refs -= 1
            m.last_used = self.clock()
            if m.refs == 0:
                self._arm(m)

    async def _load(self, m: ModelState) -> None:
        # another process may have loaded it (adopt it) or be unloading it (wait, then load)
        if await self._settle(m.name, ("UNLOADING",)) == "READY":
            log.info("model %s is already loaded (by another process)", m.name)
            m.loaded = True
            m.last_used = self.clock()
            self.index[m.name] = "READY"
            if self.after_load is not None:
                await self.after_load(m.name)
            return
        t0 = self.clock()
        log.info("loading model %s", m.name)
        await self.client.load_model(m.name, client_timeout=self.load_timeout_s)
        m.loaded = True
        m.loads += 1
        m.load_s = self.clock() - t0
        m.last_used = self.clock()
        self.index[m.name] = "READY"
        log.info("model %s loaded in %.2fs", m.name, m.load_s, extra={"load_s": m.load_s})
        if self.on_change is not None:
            self.on_change(m.name, "load", m.load_s)
        if self.after_load is not None:
            await self.after_load(m.name)

    # -- idle unload ------------------------------------------------------------------------

    def _arm(self, m: ModelState) -> None:
        if self.idle_s <= 0 or self._closed or (m.timer is not None and not m.timer.done()):
            return  # idle_s <= 0: never unload; one timer per model, re-checked when it wakes
        m.timer = asyncio.get_running_loop().create_task(
            self._idle_loop(m), name=f"idle-unload-{m.name}"
        )

    async def _idle_loop(self, m: ModelState) -> None:
        while m.loaded and not self._closed:
            wait = m.last_used + self.idle_s - self.clock()
            if m.refs == 0 and wait <= 0:
                try:
                    if await self.unload_if_idle(m.name):
                        return
                except Exception as exc:  # noqa: BLE001 - try again after another idle period
                    log.warning("unloading %s failed: %s", m.name, exc)
                    m.last_used = self.clock()
                continue
            await asyncio.sleep(max(wait, 0.05) if m.refs == 0 else self.idle_s)

    async def unload_if_idle(self, name: str) -> bool:
        """Unload ``name`` if no call is in flight here and none ran anywhere for
        ``idle_s``; True when it was unloaded."""
        m = self._state(name)
        async with m.lock:
            if not m.loaded or m.refs or self.clock() - m.last_used < self.idle_s:
                return False
            last = await self._last_inference_s(name)  # another process's calls count too
            if last is not None and self.wall_clock() - last < self.idle_s:
                m.last_used = self.clock() - (self.wall_clock() - last)
                return False
            if m.refs:  # a call arrived while we asked; it waits on the lock otherwise
                return False
            log.info("unloading idle model %s", name)
            await self.client.unload_model(name, client_timeout=self.load_timeout_s)
            await self._settle(name, ("READY", "UNLOADING"))
            m.loaded = False
            m.unloads += 1
            self.index[name] = "UNAVAILABLE"
            if self.on_change is not None:
                self.on_change(name, "unload", 0.0)
            return True

    async def _last_inference_s(self, name: str) -> float | None:
        """Triton's last inference on ``name`` (epoch seconds), None if never or unknown."""
        try:
            stats = await self.client.get_inference_statistics(
                name, as_json=True, client_timeout=5.0
            )
        except Exception:  # noqa: BLE001 - no statistics: our own bookkeeping decides
            return None
        last = max(
            (int(s.get("last_inference", 0)) for s in stats.get("model_stats", [])), default=0
        )
        return last / 1000.0 if last else None

    async def _settle(self, name: str, passing: tuple[str, ...], timeout: float = 30.0) -> str:
        """Poll the index while ``name``'s state is one of ``passing``; its state then.
        Triton unloads in the background after answering ``unload_model``: a load sent
        before the unload finished would find the old instance going away."""
        deadline = self.clock() + timeout
        while True:
            index = await self.client.get_model_repository_index(as_json=True, client_timeout=5.0)
            state = next(
                (e.get("state", "") for e in index.get("models", []) if e.get("name") == name), ""
            )
            if state not in passing:
                return state
            if self.clock() >= deadline:
                log.warning("model %s still %s after %.0fs", name, state, timeout)
                return state
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        """Stop the timers; loaded models stay (other processes may use them; whoever
        refreshes the index next adopts them and unloads them when idle)."""
        self._closed = True
        for m in self.models.values():
            if m.timer is not None:
                m.timer.cancel()


# ------------------------------------------------------------------ the Triton client

_catalog_model: contextvars.ContextVar[str] = contextvars.ContextVar("catalog_model", default="")
TWIN_RETRY_S = 60.0  # after a twin failed to load, urgent work stays on its pair's model
# the model a request goes to (the pair's, or its urgent twin), chosen in _infer_once
_chosen_model: contextvars.ContextVar[str] = contextvars.ContextVar("chosen_model", default="")


class LifecycleTritonClient(TritonInferenceClient):
    """The Triton client on per-pair models: each request holds its pair's model loaded
    (``ModelLifecycle.use``); readiness and the pair catalog come from the repository
    index, so nothing is loaded until a pair is asked for."""

    def __init__(self, settings, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        super().__init__(settings, *args, **kwargs)
        self.lifecycle = ModelLifecycle(
            None,
            settings.model_idle_s,
            load_timeout_s=settings.triton_load_timeout_s,
            after_load=self._learn_version,
            on_change=self._count,
        )
        self.m_loads = Counter(
            "mtb_triton_model_loads_total",
            "Per-pair models loaded (on demand) and unloaded (idle) by this process",
            ["model", "action"],
            registry=self.registry,
        )
        self.m_load_seconds = Histogram(
            "mtb_triton_model_load_seconds",
            "Triton load_model duration of a per-pair model (the first call waits for it)",
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
            registry=self.registry,
        )
        self.m_loaded = Gauge(
            "mtb_triton_models_loaded",
            "Per-pair models this process holds loaded",
            registry=self.registry,
        )
        self._store_versions: dict[Pair, str] | None = None
        self._pending: set[asyncio.Task] = set()
        self._twins_loading: set[str] = set()
        self._twin_retry_at: dict[str, float] = {}  # after a failed twin load

    def _count(self, model: str, action: str, seconds: float) -> None:
        self.m_loads.labels(model, action).inc()
        if action == "load":
            self.m_load_seconds.observe(seconds)
        self.m_loaded.set(sum(1 for m in self.lifecycle.models.values() if m.loaded))

    def bind_metrics(self, registry: CollectorRegistry) -> None:
        old = self.registry
        super().bind_metrics(registry)
        if registry is not old:
            for collector in (self.m_loads, self.m_load_seconds, self.m_loaded):
                old.unregister(collector)
                registry.register(collector)

    def _client(self):  # noqa: ANN202
        client = super()._client()
        self.lifecycle.client = client
        return client

    async def check_health(self) -> bool:
        client = self._client()
        was = self._triton_ready
        try:
            ok = bool(await client.is_server_ready(client_timeout=2.0))
            if ok:
                await self.lifecycle.refresh()
                ok = bool(self.lifecycle.pairs())
            if ok:
                for pair in self.lifecycle.pairs():
                    self._catalog.setdefault(pair, "")
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            ok = False
            if was:
                log.warning("triton health check failed: %s", exc, extra={"triton_url": self.url})
        self._triton_ready = ok
        self.m_ready.set(1.0 if ok else 0.0)
        if ok != was:
            log.info("triton %s (explicit model control)", "ready" if ok else "not ready")
        return ok

    def _model_for(self, source: str, target: str) -> str:
        if (source, target) == ("", ""):
            return _catalog_model.get()
        return _chosen_model.get() or model_name(source, target)

    async def _infer_once(self, segments, source, target, level, deadline, catalog=False):  # noqa: ANN001, ANN202
        if catalog:
            return await super()._infer_once(segments, source, target, level, deadline, catalog)
        name = self._pick(source, target, level)
        twin = twin_of(name)
        token = _chosen_model.set(name)
        try:
            async with self.lifecycle.use_model(name):
                return await super()._infer_once(segments, source, target, level, deadline)
        finally:
            _chosen_model.reset(token)
            if twin is not None:  # a pair in use keeps its loaded twin (and back)
                self.lifecycle.touch(twin)

    def _pick(self, source: str, target: str, level: int) -> str:
        """The pair's urgent twin for critical and high requests once it is loaded, else
        the pair's model; the first urgent request of a pair whose twin is in the
        repository but not loaded starts loading it in the background (that request does
        not wait for a load: it goes to the pair's model at its priority)."""
        name = model_name(source, target)
        twin = urgent_model_name(source, target)
        if level > PRIORITY_LEVELS["high"] or twin not in self.lifecycle.index:
            return name
        if self.lifecycle.is_loaded(twin):
            return twin
        if twin not in self._twins_loading and time.monotonic() >= self._twin_retry_at.get(
            twin, 0.0
        ):
            self._twins_loading.add(twin)
            task = asyncio.get_running_loop().create_task(self._load_twin(twin))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        return name

    async def _load_twin(self, twin: str) -> None:
        pair = twin_of(twin)
        try:
            async with contextlib.AsyncExitStack() as held:
                # the pair is in use while its twin loads (the call that asked for the twin
                # is loading or using it): a twin load that outlasts the idle time (seconds
                # on a busy machine) must not find the pair unloaded when it is ready
                if pair is not None:
                    with contextlib.suppress(Exception):  # the pair's own call reports it
                        await held.enter_async_context(self.lifecycle.use_model(pair))
                loaded = await self._load_quietly(twin)
            if not loaded:
                # urgent work stays on the pair's model; not again for a while: a twin that
                # cannot load (memory, a broken config) must not cost every urgent request
                # a load attempt
                self._twin_retry_at[twin] = time.monotonic() + TWIN_RETRY_S
        finally:
            self._twins_loading.discard(twin)

    async def _load_quietly(self, name: str) -> bool:
        """Load ``name`` for no call of its own (a background load); False, logged, when
        the load failed: the next call tries again."""
        try:
            async with self.lifecycle.use_model(name):
                return True
        except Exception as exc:  # noqa: BLE001 - reported by the next call that needs it
            log.warning("loading %s failed: %s", name, exc)
            return False

    async def _learn_version(self, name: str) -> None:
        """The loaded model's catalog line: the version it really serves."""
        token = _catalog_model.set(name)
        try:
            texts, _ = await super()._infer_once(
                [""], "", "", level=1, deadline=time.monotonic() + 30, catalog=True
            )
        finally:
            _catalog_model.reset(token)
        for line in texts:
            src, tgt, version = line.split("\t")
            known = self._catalog.get((src, tgt)) or self._from_store((src, tgt))
            if known and known != version:
                log.warning(
                    "model %s serves version %s, the model store says %s", name, version, known
                )
            self._catalog[(src, tgt)] = version

    def _from_store(self, pair: Pair) -> str:
        if self._store_versions is None:
            store = store_pairs(self.settings.model_dir)
            self._store_versions = {p: f"{v}-{self.settings.precision}" for p, v in store.items()}
        return self._store_versions.get(pair, "")

    def model_version(self, source: str, target: str) -> str:
        if not self._catalog:
            return super().model_version(source, target)
        if (source, target) not in self._catalog:
            raise UnsupportedPair(source, target, self.pairs())
        version = self._catalog[(source, target)] or self._from_store((source, target))
        if version:
            return version
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called from a worker thread: the next call on the loop loads
            loop = None
        if loop is not None:
            task = loop.create_task(self._load_for_version(source, target))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        raise InferenceUnavailable(f"model for {source}-{target} is loading; retry shortly")

    async def _load_for_version(self, source: str, target: str) -> None:
        await self._load_quietly(model_name(source, target))

    async def close(self) -> None:
        await self.lifecycle.close()
        for task in list(self._pending):
            task.cancel()
        await super().close()


# ------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m control_plane.inference.lifecycle",
        description="Write a per-pair model repository for Triton's explicit model control.",
    )
    ap.add_argument("dest", type=Path)
    ap.add_argument("--model-dir", type=Path, help="model store (default: MTB_MODEL_DIR)")
    ap.add_argument("--kind", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--pairs", help="comma-separated src-tgt (default: every pair in the store)")
    ap.add_argument(
        "--no-urgent",
        action="store_true",
        help="no urgent twin per pair (translator_urgent-<src>-<tgt>, loaded by a pair's "
        "first critical or high request): for models too large to hold twice",
    )
    args = ap.parse_args(argv)
    from control_plane.settings import Settings

    model_dir = args.model_dir or Settings.from_env().model_dir
    if args.pairs:
        pairs = [tuple(p.split("-", 1)) for p in args.pairs.split(",")]
    else:
        pairs = sorted(store_pairs(model_dir))
    cfg = replace(CPU if args.kind == "cpu" else GPU, model_dir=str(model_dir))
    urgent = None
    if not args.no_urgent:
        urgent = replace(URGENT_CPU if args.kind == "cpu" else URGENT_GPU, model_dir=str(model_dir))
    for folder in write_repository(args.dest, pairs, cfg, urgent=urgent):  # type: ignore[arg-type]
        print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
