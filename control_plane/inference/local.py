"""In-process inference: the ONNX Runtime engine in a dedicated thread."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from concurrent.futures import ThreadPoolExecutor

from control_plane.domain import PRIORITY_RANK
from control_plane.engine.base import Translation, TranslationEngine, UnsupportedPair
from control_plane.inference.base import InferenceUnavailable

log = logging.getLogger(__name__)
MAX_CALLS = 16  # calls handed to a laned engine at once (each holds an executor thread)


class LocalInferenceClient:
    """Runs ``engine.translate`` on executor threads so the event loop never blocks on the
    model, most urgent first (priority critical > high > normal, then FIFO).

    An engine with several lanes (``LocalEngine.lanes``, see ``plan_lanes``) takes up to
    ``MAX_CALLS`` calls at once with their rank and orders their batches itself; an engine
    without lanes gets one call at a time, the most urgent waiting one next.

    ``engine`` may be given (tests, benchmarks) or a zero-argument factory that loads it
    (``open_engine(settings)``), called in the executor by ``start()``."""

    backend = "local engine"

    def bind_metrics(self, registry) -> None:  # noqa: ANN001 - no metrics of its own
        return None

    def __init__(self, engine: TranslationEngine | None = None, factory=None):  # noqa: ANN001
        if engine is None and factory is None:
            raise ValueError("give an engine or a factory")
        self._engine = engine
        self._factory = factory
        self._pending: list = []  # heap of (rank, seq, future, segments, source, target)
        self._seq = itertools.count()
        self._running = 0
        # threads start on demand: at most MAX_CALLS calls (plus the load) ever run
        self._pool = ThreadPoolExecutor(max_workers=MAX_CALLS, thread_name_prefix="engine")
        self._error: BaseException | None = None

    async def start(self) -> None:
        if self._engine is not None:
            return
        loop = asyncio.get_running_loop()
        try:
            self._engine = await loop.run_in_executor(self._pool, self._load_and_warm)
        except Exception as exc:  # surfaced through /readyz and the log
            self._error = exc
            log.exception("engine failed to load")
            raise

    def _load_and_warm(self) -> TranslationEngine:
        engine = self._factory()
        for source, target in engine.pairs():  # first calls pay ONNX Runtime's setup
            try:
                engine.translate(["Hello."], source, target)
            except Exception:  # noqa: BLE001 - warm-up only; real calls report errors
                log.warning("warm-up failed", extra={"pair": f"{source}-{target}"})
        return engine

    @property
    def _laned(self) -> bool:
        return int(getattr(self._engine, "lanes", 1) or 1) > 1

    @property
    def error(self) -> BaseException | None:
        return self._error

    def ready(self) -> bool:
        return self._engine is not None

    def _require(self) -> TranslationEngine:
        if self._engine is None:
            raise InferenceUnavailable("the translation engine is still loading")
        return self._engine

    def pairs(self) -> list[tuple[str, str]]:
        return list(self._require().pairs())

    def model_version(self, source: str, target: str) -> str:
        return self._require().model_version(source, target)

    async def translate(
        self,
        segments: list[str],
        source: str,
        target: str,
        priority: str = "normal",
        timeout: float | None = None,
    ) -> list[Translation]:
        engine = self._require()
        if (source, target) not in set(engine.pairs()):
            raise UnsupportedPair(source, target, list(engine.pairs()))
        if not segments:
            return []
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        rank = PRIORITY_RANK.get(priority, len(PRIORITY_RANK))
        heapq.heappush(self._pending, (rank, next(self._seq), fut, list(segments), source, target))
        self._kick(loop)
        return await asyncio.wait_for(fut, timeout)

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the most urgent waiting call when a lane is free: a critical batch waits
        for at most the batches already running, never for queued ones."""
        while self._running < (MAX_CALLS if self._laned else 1) and self._pending:
            rank, _, fut, segments, source, target = heapq.heappop(self._pending)
            if fut.done():  # timed out or cancelled while waiting
                continue
            self._running += 1
            args = (segments, source, target, rank) if self._laned else (segments, source, target)
            running = loop.run_in_executor(self._pool, self._engine.translate, *args)

            def finished(f: asyncio.Future, fut: asyncio.Future = fut) -> None:
                self._running -= 1
                if not fut.done():
                    if f.cancelled():
                        fut.cancel()
                    elif f.exception() is not None:
                        fut.set_exception(f.exception())
                    else:
                        fut.set_result(f.result())
                self._kick(loop)

            running.add_done_callback(finished)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def open_local_engine(settings):  # noqa: ANN001, ANN201 - Settings -> LocalEngine
    """The in-process engine over ``settings.model_dir``, exporting the bundled models into
    it first if they are missing (the exporter is called here, never by the engine)."""
    from control_plane.engine import open_engine
    from export.provision import ensure_default_models

    ensure_default_models(settings.model_dir)
    return open_engine(settings)
