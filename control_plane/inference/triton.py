"""Inference through Triton's ``translator`` model over async gRPC (``MTB_INFERENCE=triton``).

Same interface as the in-process client (control_plane/inference/base.py), plus:

* priority: ``critical``/``high``/``normal`` -> Triton dynamic-batcher levels 1/2/3;
  critical and high requests go to ``MTB_TRITON_URGENT_MODEL`` (``translator_urgent``: the
  same model.py in a process of its own) while the health poll finds it ready, else to the
  main model: they never wait for a normal execution to end (README, "Benchmarks", stack);
* deadlines: each call has one (``timeout`` or ``MTB_TRITON_TIMEOUT_S``), sent as gRPC's
  ``client_timeout`` and as Triton's queue timeout so a server drops stale requests;
* large calls are split into requests of ``MTB_TRITON_REQUEST_SEGMENTS`` segments sent
  concurrently (the dynamic batcher merges them again, and a critical request can overtake
  a big normal call between its pieces);
* retries with full-jitter exponential backoff on UNAVAILABLE (server down, restarting or
  its priority queue full);
* a circuit breaker: after ``MTB_TRITON_BREAKER_FAILURES`` consecutive connection failures
  calls fail at once (no waiting on a dead server) until one probe after
  ``MTB_TRITON_BREAKER_RESET_S`` succeeds; a probe that times out, is cancelled or never
  reports back counts as a failed one, so the circuit can never stay half-open;
* readiness (``ready()`` for /readyz) from a background health poll of server and model;
* optional fallback (``MTB_TRITON_FALLBACK=1``): while Triton is unreachable or the circuit
  is open, calls run on the in-process engine (same library, same results); each fallback
  is logged and counted (``mtb_triton_fallback_total``).

Metrics live in ``self.registry`` (a private prometheus registry unless one is passed, or
bound later with ``bind_metrics(registry)`` so the service's /metrics shows them).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from control_plane import tracing
from control_plane.engine.base import Translation, UnsupportedPair
from control_plane.inference.base import InferenceClient, InferenceUnavailable
from control_plane.inference.triton_config import PRIORITY_LEVELS

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0


# ------------------------------------------------------------------ resilience pieces


class CircuitBreaker:
    """closed -> (``failures`` consecutive failures) -> open -> (after ``reset_s``) ->
    half-open: one probe call; its success closes the circuit, its failure reopens it.

    The probe must report back (``record_success``/``record_failure``); the client counts
    a probe that times out or is cancelled as a failure. As a last guard, a probe that has
    not reported back ``probe_timeout_s`` after it went out (``allow(probe_timeout_s)``
    overrides it per call) is taken as failed by the next ``allow``: a lost probe would
    otherwise keep the circuit half-open, every call refused, for ever."""

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(
        self,
        failures: int = 5,
        reset_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str], None] | None = None,
        probe_timeout_s: float = 60.0,
    ) -> None:
        self.threshold = max(1, failures)
        self.reset_s = reset_s
        self.clock = clock
        self.on_change = on_change
        self.probe_timeout_s = probe_timeout_s
        self.state = self.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self._probe_out = False
        self._probe_until = 0.0

    def _set(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self.on_change:
                self.on_change(state)

    def allow(self, probe_timeout_s: float | None = None) -> bool:
        """May a call go out now? In half-open state only one probe at a time; the caller
        that gets it (``probing`` is True right after) must report its outcome, within
        ``probe_timeout_s`` (default: the breaker's) or it counts as failed."""
        now = self.clock()
        if self.state == self.HALF_OPEN and self._probe_out and now >= self._probe_until:
            log.warning("circuit probe never reported back; counting it as failed")
            self.record_failure()
        if self.state == self.OPEN and now - self.opened_at >= self.reset_s:
            self._set(self.HALF_OPEN)
            self._probe_out = False
        if self.state == self.CLOSED:
            return True
        if self.state == self.HALF_OPEN and not self._probe_out:
            self._probe_out = True
            timeout = self.probe_timeout_s if probe_timeout_s is None else probe_timeout_s
            self._probe_until = now + max(0.0, timeout)
            return True
        return False

    @property
    def probing(self) -> bool:
        """A half-open probe is out (the call ``allow`` just let through is the probe)."""
        return self.state == self.HALF_OPEN and self._probe_out

    def record_success(self) -> None:
        self.failures = 0
        self._probe_out = False
        self._set(self.CLOSED)

    def record_failure(self) -> None:
        self.failures += 1
        self._probe_out = False
        if self.state == self.HALF_OPEN or self.failures >= self.threshold:
            self.opened_at = self.clock()
            self._set(self.OPEN)

    def retry_in(self) -> float:
        """Seconds until an open circuit lets a probe through (0 when calls may go)."""
        if self.state != self.OPEN:
            return 0.0
        return max(0.0, self.reset_s - (self.clock() - self.opened_at))


def backoff_delay(attempt: int, base: float, cap: float = MAX_BACKOFF_S, rng=random) -> float:
    """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0.0, min(cap, base * (2**attempt)))


@dataclass
class _Failure(Exception):
    """A classified Triton error."""

    kind: str  # connection | overload | deadline | invalid | server
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


# What Triton (or gRPC) says while the server or its model is stopping, restarting or not
# loaded yet, whatever the status code: an outage, not a fault of the request.
_GOING_AWAY = (
    "server is stopping",
    "server is not ready",
    "server not ready",
    "stub process is not healthy",
    "is not ready",
    "unavailable model",
    "model is unloading",
    # a stopping server unloads its models before it closes the port; seen on SIGTERM:
    # INVALID_ARGUMENT "Request for unknown model: 'translator' has no available versions"
    "unknown model",
    "has no available versions",
    "socket closed",
    "connection reset",
    "broken pipe",
    "failed to connect",
)


def classify(exc: BaseException) -> _Failure:
    """Map tritonclient / grpc errors onto what the client does with them.

    connection: server unreachable or restarting (retry, counts against the circuit);
    overload: Triton rejected it (priority queue full / queue timeout) - retry, the
    server is alive; deadline: our deadline passed; invalid: the caller's mistake;
    server: the model failed (not retried: it would fail again)."""
    if isinstance(exc, _Failure):
        return exc
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return _Failure("deadline", str(exc) or "timed out")
    status = ""
    message = str(exc)
    status_fn = getattr(exc, "status", None)
    if callable(status_fn):
        status = str(status_fn() or "")
        message = str(getattr(exc, "message", lambda: message)() or message)
    low = message.lower()
    if any(sign in low for sign in _GOING_AWAY):
        return _Failure("connection", message)  # the server (or its model) is going away
    if "UNAVAILABLE" in status:
        if "queue" in low or "timeout" in low or "timed out" in low:
            return _Failure("overload", message)
        return _Failure("connection", message)
    if "DEADLINE_EXCEEDED" in status:
        return _Failure("deadline", message)
    if "INVALID_ARGUMENT" in status or "NOT_FOUND" in status or "no installed model" in low:
        return _Failure("invalid", message)
    if not status and isinstance(exc, OSError | ConnectionError):
        return _Failure("connection", message)
    return _Failure("server", f"{status} {message}".strip())


# ------------------------------------------------------------------ the client


class TritonInferenceClient:
    def __init__(
        self,
        settings,  # noqa: ANN001 - control_plane.settings.Settings
        fallback: InferenceClient | None = None,
        *,
        registry: CollectorRegistry | None = None,
        grpc_client=None,  # noqa: ANN001 - tests: a fake with the aio client's methods
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.url = settings.triton_url
        self.backend = f"triton {self.url}"
        self.model = settings.triton_model
        self.urgent_model = settings.triton_urgent_model
        self._urgent_ready = False  # set by the health poll; a failed urgent request clears it
        self._grpc = grpc_client
        self._rng = rng or random.Random()
        self._fallback = fallback
        self._fallback_enabled = bool(settings.triton_fallback or fallback is not None)
        self._fallback_lock = asyncio.Lock()
        self._catalog: dict[tuple[str, str], str] = {}
        self._triton_ready = False
        self._health_task: asyncio.Task | None = None
        self._closed = False
        self.registry = registry or CollectorRegistry()
        self._make_metrics(self.registry)
        self.breaker = CircuitBreaker(
            settings.triton_breaker_failures,
            settings.triton_breaker_reset_s,
            clock=clock,
            on_change=self._breaker_changed,
        )

    # -- metrics ---------------------------------------------------------------------------

    def _make_metrics(self, r: CollectorRegistry) -> None:
        self.m_requests = Counter(
            "mtb_triton_requests_total",
            "gRPC inference requests to Triton by outcome",
            ["outcome"],
            registry=r,
        )
        self.m_retries = Counter(
            "mtb_triton_retries_total", "Retried Triton requests by reason", ["reason"], registry=r
        )
        self.m_fallback = Counter(
            "mtb_triton_fallback_total",
            "translate() calls served by the in-process engine because Triton was down",
            registry=r,
        )
        self.m_circuit = Gauge(
            "mtb_triton_circuit_open",
            "Circuit breaker towards Triton: 0 closed, 0.5 half-open, 1 open",
            registry=r,
        )
        self.m_ready = Gauge(
            "mtb_triton_ready", "Triton server and translator model ready (last poll)", registry=r
        )
        self.m_latency = Histogram(
            "mtb_triton_request_seconds",
            "Triton request latency (queue + compute + network) per priority",
            ["priority"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )

    def bind_metrics(self, registry: CollectorRegistry) -> None:
        """Register this client's metrics in the service's registry (its /metrics)."""
        if registry is self.registry:
            return
        for collector in (
            self.m_requests,
            self.m_retries,
            self.m_fallback,
            self.m_circuit,
            self.m_ready,
            self.m_latency,
        ):
            self.registry.unregister(collector)
            registry.register(collector)
        self.registry = registry

    def _breaker_changed(self, state: str) -> None:
        self.m_circuit.set({"closed": 0.0, "half_open": 0.5, "open": 1.0}[state])
        level = logging.INFO if state == CircuitBreaker.CLOSED else logging.WARNING
        log.log(level, "triton circuit %s", state, extra={"triton_url": self.url})

    # -- lifecycle ---------------------------------------------------------------------------

    def _client(self):  # noqa: ANN202
        if self._grpc is None:
            import tritonclient.grpc.aio as grpcclient

            self._grpc = grpcclient.InferenceServerClient(self.url)
        return self._grpc

    async def start(self) -> None:
        """Wait up to ``triton_connect_timeout_s`` for a ready server, then keep polling in
        the background. Never raises for a down server: ``ready()`` stays False (or the
        fallback serves) and /readyz reports it."""
        self._client()
        deadline = time.monotonic() + self.settings.triton_connect_timeout_s
        while True:
            if await self.check_health():
                break
            if time.monotonic() >= deadline:
                log.warning(
                    "triton not ready after %.0fs; polling in the background%s",
                    self.settings.triton_connect_timeout_s,
                    ", serving from the in-process engine meanwhile"
                    if self._fallback_enabled
                    else "",
                    extra={"triton_url": self.url},
                )
                if self._fallback_enabled:
                    await self._ensure_fallback()
                break
            await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        if self._health_task is None:
            self._health_task = asyncio.create_task(self._health_loop(), name="triton-health")

    async def check_health(self) -> bool:
        """Poll server + model readiness (and the pair catalog once); updates ``ready()``."""
        client = self._client()
        was = self._triton_ready
        try:
            ok = bool(
                await client.is_server_ready(client_timeout=2.0)
                and await client.is_model_ready(self.model, client_timeout=2.0)
            )
            if ok and not self._catalog:
                self._catalog = await self._fetch_catalog()
            if ok and self.urgent_model:
                await self._check_urgent(client)
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            ok = False
            if was:
                log.warning("triton health check failed: %s", exc, extra={"triton_url": self.url})
        self._triton_ready = ok
        self.m_ready.set(1.0 if ok else 0.0)
        if ok != was:
            log.log(
                logging.INFO if ok else logging.WARNING,
                "triton %s",
                "ready" if ok else "not ready",
                extra={"triton_url": self.url, "model": self.model},
            )
        return ok

    async def _check_urgent(self, client) -> None:  # noqa: ANN001
        """Is the urgent model there? Not an error when it is not: the main model serves
        every priority (a repository without it, an older deployment)."""
        try:
            ready = bool(await client.is_model_ready(self.urgent_model, client_timeout=2.0))
        except Exception:  # noqa: BLE001 - not ready
            ready = False
        if ready != self._urgent_ready:
            log.info(
                "triton urgent model %s %s",
                self.urgent_model,
                "ready: critical and high requests go to it" if ready else "not ready",
                extra={"triton_url": self.url},
            )
        self._urgent_ready = ready

    async def _health_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.settings.triton_health_interval_s)
            await self.check_health()

    async def _fetch_catalog(self) -> dict[tuple[str, str], str]:
        result = await self._infer_once(
            [""], "", "", level=1, deadline=time.monotonic() + 5, catalog=True
        )
        catalog = {}
        for line in result[0]:
            src, tgt, version = line.split("\t")
            catalog[(src, tgt)] = version
        return catalog

    def ready(self) -> bool:
        if self._triton_ready:
            return True
        return self._fallback is not None and self._fallback.ready()

    @property
    def triton_ready(self) -> bool:
        return self._triton_ready

    def pairs(self) -> list[tuple[str, str]]:
        if self._catalog:
            return sorted(self._catalog)
        if self._fallback is not None and self._fallback.ready():
            return self._fallback.pairs()
        raise InferenceUnavailable(f"Triton at {self.url} has not answered yet")

    def model_version(self, source: str, target: str) -> str:
        if self._catalog:
            try:
                return self._catalog[(source, target)]
            except KeyError:
                raise UnsupportedPair(source, target, self.pairs()) from None
        if self._fallback is not None and self._fallback.ready():
            return self._fallback.model_version(source, target)
        raise InferenceUnavailable(f"Triton at {self.url} has not answered yet")

    async def close(self) -> None:
        self._closed = True
        if self._health_task is not None:
            self._health_task.cancel()
        if self._grpc is not None:
            try:
                await self._grpc.close()
            except Exception:  # noqa: BLE001
                pass
        if self._fallback is not None:
            await self._fallback.close()

    # -- fallback ---------------------------------------------------------------------------

    async def _ensure_fallback(self) -> InferenceClient:
        async with self._fallback_lock:
            if self._fallback is None:
                from control_plane.inference import open_inference

                self._fallback = open_inference(replace(self.settings, inference="local"))
            if not self._fallback.ready():
                log.warning("loading the in-process engine as Triton fallback")
                await self._fallback.start()
        return self._fallback

    async def _via_fallback(self, segments, source, target, priority, remaining, why):  # noqa: ANN001, ANN202
        fallback = await self._ensure_fallback()
        self.m_fallback.inc()
        log.warning(
            "triton unavailable, translating in-process",
            extra={"triton_url": self.url, "reason": why, "segments": len(segments),
                   "priority": priority},
        )  # fmt: skip
        return await fallback.translate(segments, source, target, priority, remaining)

    # -- translate -------------------------------------------------------------------------

    async def translate(
        self,
        segments: list[str],
        source: str,
        target: str,
        priority: str = "normal",
        timeout: float | None = None,
    ) -> list[Translation]:
        if priority not in PRIORITY_LEVELS:
            raise ValueError(f"priority must be one of {', '.join(PRIORITY_LEVELS)}")
        if self._catalog and (source, target) not in self._catalog:
            raise UnsupportedPair(source, target, self.pairs())
        if not segments:
            return []
        budget = self.settings.triton_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + budget
        size = max(1, self.settings.triton_request_segments)
        pieces = [list(segments[i : i + size]) for i in range(0, len(segments), size)]
        # MTB_TRITON_INFLIGHT_REQUESTS > 0 keeps only that many of a call's requests in
        # Triton's queue: executions get smaller, so a critical request (which waits for the
        # execution in progress, then shares its own with queued normal ones) gets through
        # sooner, at a throughput cost (README, "Benchmarks", stack through Triton).
        limit = self.settings.triton_inflight_requests
        slots = asyncio.Semaphore(limit if limit > 0 else len(pieces))

        async def infer(piece: list[str]) -> tuple[list[str], np.ndarray]:
            async with slots:
                return await self._infer(piece, source, target, priority, deadline)

        try:
            results = await asyncio.gather(*(infer(p) for p in pieces))
        except _Failure as failure:
            if failure.kind in ("connection", "open") and self._fallback_enabled:
                remaining = max(0.1, deadline - time.monotonic())
                return await self._via_fallback(
                    segments, source, target, priority, remaining, failure.kind
                )
            raise self._public(failure, source, target) from None
        out: list[Translation] = []
        for texts, scores in results:
            out.extend(Translation(t, float(s)) for t, s in zip(texts, scores, strict=True))
        return out

    def _public(self, failure: _Failure, source: str, target: str) -> Exception:
        if failure.kind in ("connection", "open", "overload"):
            return InferenceUnavailable(f"Triton at {self.url}: {failure}")
        if failure.kind == "deadline":
            return TimeoutError(f"Triton at {self.url}: {failure.message}")
        if failure.kind == "invalid":
            if "no installed model" in failure.message:
                return UnsupportedPair(source, target, self.pairs() if self._catalog else [])
            return ValueError(failure.message)
        return RuntimeError(f"Triton at {self.url}: {failure.message}")

    async def _infer(
        self, segments: list[str], source: str, target: str, priority: str, deadline: float
    ) -> tuple[list[str], np.ndarray]:
        level = PRIORITY_LEVELS[priority]
        attempt = 0
        while True:
            if not self.breaker.allow(max(0.0, deadline - time.monotonic()) + 1.0):
                self.m_requests.labels("circuit_open").inc()
                raise _Failure("open", f"circuit open, retry in {self.breaker.retry_in():.1f}s")
            probe = self.breaker.probing
            t0 = time.monotonic()
            try:
                result = await self._infer_once(segments, source, target, level, deadline)
            except asyncio.CancelledError:
                if probe:  # a cancelled probe proved nothing: open again, probe later
                    self.breaker.record_failure()
                raise
            except Exception as exc:  # noqa: BLE001 - classified below
                failure = classify(exc)
                if failure.kind == "connection" or (probe and failure.kind == "deadline"):
                    self.breaker.record_failure()  # a probe that timed out failed
                elif failure.kind != "deadline":
                    self.breaker.record_success()  # the server answered
                self.m_requests.labels(failure.kind).inc()
                retryable = failure.kind in ("connection", "overload")
                delay = backoff_delay(attempt, self.settings.triton_backoff_s, rng=self._rng)
                if (
                    not retryable
                    or attempt >= self.settings.triton_retries
                    or time.monotonic() + delay >= deadline
                ):
                    raise failure from None
                self.m_retries.labels(failure.kind).inc()
                log.info(
                    "triton request failed, retrying",
                    extra={"reason": failure.kind, "attempt": attempt + 1,
                           "delay_s": round(delay, 3), "error": failure.message[:200]},
                )  # fmt: skip
                attempt += 1
                await asyncio.sleep(delay)
                continue
            self.breaker.record_success()
            self.m_requests.labels("ok").inc()
            self.m_latency.labels(priority).observe(time.monotonic() - t0)
            return result

    def _model_for(self, source: str, target: str) -> str:
        """The Triton model serving a pair: the all-pairs ``translator`` here; one model per
        pair under explicit model control (control_plane/inference/lifecycle.py)."""
        return self.model

    def _route(self, source: str, target: str, level: int) -> str:
        """Critical and high requests (levels 1, 2) for the all-pairs model go to the urgent
        model while it is ready: capacity of their own, no wait behind normal executions."""
        model = self._model_for(source, target)
        if model == self.model and self._urgent_ready and level <= PRIORITY_LEVELS["high"]:
            return self.urgent_model
        return model

    async def _infer_once(
        self,
        segments: list[str],
        source: str,
        target: str,
        level: int,
        deadline: float,
        catalog: bool = False,
    ) -> tuple[list[str], np.ndarray]:
        from tritonclient.grpc import InferInput

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Failure("deadline", "deadline passed before the request was sent")
        text = InferInput("TEXT", [1, len(segments)], "BYTES")
        text.set_data_from_numpy(
            np.array([s.encode("utf-8") for s in segments], dtype=np.object_).reshape(1, -1)
        )
        src = InferInput("SOURCE_LANG", [1, 1], "BYTES")
        src.set_data_from_numpy(np.array([[source.encode()]], dtype=np.object_))
        tgt = InferInput("TARGET_LANG", [1, 1], "BYTES")
        tgt.set_data_from_numpy(np.array([[target.encode()]], dtype=np.object_))
        # W3C traceparent as gRPC metadata (only inside a span): Triton's own spans
        # (--trace-config mode=opentelemetry) join the caller's inference.translate span
        traced = tracing.inject()
        model = self._route(source, target, level)
        try:
            result = await self._client().infer(
                model,
                [text, src, tgt],
                priority=level,
                timeout=int(remaining * 1e6),  # Triton's queue timeout (microseconds)
                client_timeout=remaining,
                **({"headers": traced} if traced else {}),
            )
        except Exception as exc:
            if model == self.urgent_model and classify(exc).kind == "connection":
                self._urgent_ready = False  # retried on the main model; the poll brings it back
            raise
        texts = [
            x.decode("utf-8") if isinstance(x, bytes) else str(x)
            for x in result.as_numpy("TRANSLATION").reshape(-1)
        ]
        scores = result.as_numpy("SCORE").reshape(-1)
        if not catalog and (len(texts) != len(segments) or len(scores) != len(segments)):
            raise _Failure("server", f"{len(texts)} translations for {len(segments)} segments")
        return texts, scores
