"""The Triton client's resilience: circuit breaker, jittered retries, error mapping,
priorities, request splitting, readiness and the in-process fallback (fake gRPC client)."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from control_plane.engine.base import Translation, UnsupportedPair
from control_plane.inference.base import InferenceUnavailable
from control_plane.inference.triton import (
    CircuitBreaker,
    TritonInferenceClient,
    backoff_delay,
    classify,
)
from control_plane.settings import Settings

# ------------------------------------------------------------------ circuit breaker


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_breaker_opens_after_threshold_and_probes_after_reset():
    clock = Clock()
    changes = []
    b = CircuitBreaker(failures=3, reset_s=10, clock=clock, on_change=changes.append)
    for _ in range(2):
        assert b.allow()
        b.record_failure()
    assert b.state == "closed"
    b.record_failure()
    assert b.state == "open" and not b.allow()
    assert b.retry_in() == pytest.approx(10)
    clock.t += 9.9
    assert not b.allow()
    clock.t += 0.2
    assert b.allow()  # the one probe
    assert b.state == "half_open" and not b.allow()  # only one at a time
    b.record_failure()  # probe failed: open again, for a full reset period
    assert b.state == "open" and not b.allow()
    clock.t += 10
    assert b.allow()
    b.record_success()
    assert b.state == "closed" and b.allow() and b.failures == 0
    assert changes == ["open", "half_open", "open", "half_open", "closed"]


def test_breaker_probe_that_never_reports_back_counts_as_failed():
    """A probe whose caller vanished without a word must not keep the circuit half-open
    (every call refused for ever): after its timeout the next allow() reopens the circuit,
    and a later probe can close it."""
    clock = Clock()
    b = CircuitBreaker(failures=1, reset_s=10, clock=clock, probe_timeout_s=5)
    b.record_failure()
    clock.t += 10
    assert b.allow(probe_timeout_s=3) and b.probing  # the probe is out, then lost
    clock.t += 2.9
    assert not b.allow() and b.state == "half_open"  # still out: one probe at a time
    clock.t += 0.2
    assert not b.allow() and b.state == "open"  # lost probe = failed probe
    assert b.retry_in() == pytest.approx(10)
    clock.t += 10
    assert b.allow() and b.probing
    b.record_success()
    assert b.state == "closed" and not b.probing


def test_breaker_success_resets_the_count():
    b = CircuitBreaker(failures=2, reset_s=1, clock=Clock())
    b.record_failure()
    b.record_success()
    b.record_failure()
    assert b.state == "closed"


# ------------------------------------------------------------------ backoff / classification


def test_backoff_full_jitter_bounds():
    rng = random.Random(1)
    for attempt in range(8):
        caps = min(5.0, 0.2 * 2**attempt)
        values = [backoff_delay(attempt, 0.2, rng=rng) for _ in range(200)]
        assert all(0 <= v <= caps for v in values)
        assert max(values) > 0.5 * caps  # spread over the range, not fixed
    assert len({round(backoff_delay(2, 0.2, rng=rng), 6) for _ in range(20)}) > 10


def err(status: str, msg: str = "x") -> InferenceServerException:
    return InferenceServerException(msg=msg, status=status)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (err("StatusCode.UNAVAILABLE", "failed to connect to all addresses"), "connection"),
        (err("StatusCode.UNAVAILABLE", "Exceeds maximum queue size"), "overload"),
        (err("StatusCode.UNAVAILABLE", "Request timeout expired"), "overload"),
        (err("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded"), "deadline"),
        (err("StatusCode.INVALID_ARGUMENT", "bad"), "invalid"),
        (err("StatusCode.INTERNAL", "no installed model translates en->de"), "invalid"),
        (err("StatusCode.INTERNAL", "boom"), "server"),
        (TimeoutError(), "deadline"),
        (ConnectionRefusedError("refused"), "connection"),
        # a server going away answers with other codes too: still an outage
        (err("StatusCode.INTERNAL", "Stub process is not healthy."), "connection"),
        (err("StatusCode.UNAVAILABLE", "Server is stopping"), "connection"),
        (err("StatusCode.UNKNOWN", "Socket closed"), "connection"),
        (
            err(
                "StatusCode.INVALID_ARGUMENT",
                "Request for unknown model: 'translator' has no available versions",
            ),
            "connection",
        ),
        (
            err("StatusCode.UNAVAILABLE", "Request for unknown model: 'translator' is not ready"),
            "connection",
        ),
    ],
)
def test_classify(exc, kind):
    assert classify(exc).kind == kind


# ------------------------------------------------------------------ client with a fake server


class Result:
    def __init__(self, texts, scores):
        self.out = {
            "TRANSLATION": np.array([t.encode() for t in texts], dtype=object).reshape(1, -1),
            "SCORE": np.asarray(scores, dtype=np.float32).reshape(1, -1),
        }

    def as_numpy(self, name):
        return self.out[name]


class FakeTriton:
    """Upper-cases text; ``fail`` holds exceptions raised by the next infer calls."""

    def __init__(self, ready=True, missing=()):
        self.ready = ready
        self.missing = set(missing)  # models this server does not have
        self.fail: list[BaseException] = []
        self.calls: list[dict] = []

    async def is_server_ready(self, client_timeout=None):
        if not self.ready:
            raise err("StatusCode.UNAVAILABLE", "failed to connect to all addresses")
        return True

    async def is_model_ready(self, model, client_timeout=None):
        return self.ready and model not in self.missing

    async def infer(self, model, inputs, priority=0, timeout=None, client_timeout=None):
        values = {i.name(): i for i in inputs}
        src = values["SOURCE_LANG"]._raw_content  # noqa: SLF001 - fake
        text = [x.decode() for x in _decode(values["TEXT"])]
        if _decode(values["SOURCE_LANG"])[0] == b"":
            return Result(["en\tpt\tv1-int8", "pt\ten\tv2-int8"], [0, 0])
        self.calls.append(
            {"n": len(text), "priority": priority, "timeout": timeout, "client": client_timeout,
             "model": model}
        )  # fmt: skip
        assert src is not None
        if model in self.missing:
            raise err("StatusCode.NOT_FOUND", f"Request for unknown model: '{model}' is not found")
        if self.fail:
            raise self.fail.pop(0)
        return Result([t.upper() for t in text], [0.5] * len(text))

    async def close(self):
        pass


def _decode(infer_input):
    from tritonclient.utils import deserialize_bytes_tensor

    return list(deserialize_bytes_tensor(infer_input._raw_content))  # noqa: SLF001


class FakeFallback:
    def __init__(self):
        self.started = False
        self.calls = 0

    async def start(self):
        self.started = True

    def ready(self):
        return self.started

    def pairs(self):
        return [("en", "pt")]

    def model_version(self, s, t):
        return "local-int8"

    async def translate(self, segments, source, target, priority="normal", timeout=None):
        self.calls += 1
        return [Translation(f"local:{s}", 1.0) for s in segments]

    async def close(self):
        pass


def settings(**kw):
    base = dict(
        triton_retries=2,
        triton_backoff_s=0.001,
        triton_breaker_failures=3,
        triton_breaker_reset_s=60,
        triton_connect_timeout_s=0,
        triton_health_interval_s=3600,
        triton_request_segments=2,
    )
    base.update(kw)
    return Settings.from_env({}, **base)


async def started(fake, **kw):
    fallback = kw.pop("fallback", None)
    c = TritonInferenceClient(settings(**kw), fallback, grpc_client=fake, rng=random.Random(0))
    await c.start()
    return c


async def test_translate_splits_maps_priority_and_deadline():
    fake = FakeTriton()
    c = await started(fake)
    assert c.ready() and c.pairs() == [("en", "pt"), ("pt", "en")]
    assert c.model_version("en", "pt") == "v1-int8"
    out = await c.translate(["a", "b", "c", "d", "e"], "en", "pt", priority="critical", timeout=5)
    assert [t.text for t in out] == ["A", "B", "C", "D", "E"]
    assert [call["n"] for call in fake.calls] == [2, 2, 1]
    assert {call["priority"] for call in fake.calls} == {1}
    assert all(0 < call["client"] <= 5 for call in fake.calls)
    assert all(0 < call["timeout"] <= 5_000_000 for call in fake.calls)
    await c.translate(["a"], "en", "pt", priority="high")
    await c.translate(["a"], "en", "pt")
    assert [call["priority"] for call in fake.calls[-2:]] == [2, 3]
    assert await c.translate([], "en", "pt") == []
    with pytest.raises(UnsupportedPair):
        await c.translate(["a"], "en", "de")
    with pytest.raises(ValueError):
        await c.translate(["a"], "en", "pt", priority="urgent")
    await c.close()


async def test_critical_and_high_go_to_the_urgent_model_while_it_is_ready():
    fake = FakeTriton()
    c = await started(fake)
    for priority in ("critical", "high", "normal"):
        await c.translate(["a", "b", "c"], "en", "pt", priority=priority)
    assert [(call["model"], call["priority"]) for call in fake.calls] == [
        ("translator_urgent", 1), ("translator_urgent", 1),
        ("translator_urgent", 2), ("translator_urgent", 2),
        ("translator", 3), ("translator", 3),
    ]  # fmt: skip
    # the urgent model goes away (unloaded, an older repository): the request that found
    # it gone is retried on the main model, and so are the next ones until the poll sees it
    fake.missing.add("translator_urgent")
    fake.calls.clear()
    out = await c.translate(["a"], "en", "pt", priority="critical")
    assert out[0].text == "A"
    assert [call["model"] for call in fake.calls] == ["translator_urgent", "translator"]
    await c.translate(["a"], "en", "pt", priority="high")
    assert fake.calls[-1]["model"] == "translator"
    fake.missing.clear()
    await c.check_health()
    await c.translate(["a"], "en", "pt", priority="high")
    assert fake.calls[-1]["model"] == "translator_urgent"
    await c.close()


async def test_no_urgent_model_every_priority_on_the_main_one():
    fake = FakeTriton(missing={"translator_urgent"})
    c = await started(fake)
    await c.translate(["a"], "en", "pt", priority="critical")
    c2 = await started(FakeTriton(), triton_urgent_model="")
    await c2.translate(["a"], "en", "pt", priority="critical")
    assert fake.calls[-1]["model"] == "translator" and c2._grpc.calls[-1]["model"] == "translator"  # noqa: SLF001
    await c.close()
    await c2.close()


async def test_critical_call_does_not_wait_behind_its_own_normal_pieces():
    """A big normal call is split into pieces (MTB_TRITON_REQUEST_SEGMENTS) and capped in
    flight (MTB_TRITON_INFLIGHT_REQUESTS): neither the split nor the cap is shared with a
    critical call made meanwhile, which goes out at once, to the urgent model."""

    class Held(FakeTriton):
        def __init__(self):
            super().__init__()
            self.release = asyncio.Event()

        async def infer(self, model, inputs, priority=0, **kwargs):
            if priority == 3:
                await self.release.wait()  # the normal model is busy for as long as we say
            return await super().infer(model, inputs, priority=priority, **kwargs)

    fake = Held()
    c = await started(fake, triton_inflight_requests=2)
    normal = asyncio.ensure_future(c.translate(list("abcdefghij"), "en", "pt"))
    await asyncio.sleep(0.01)  # its first two pieces are out and held, three wait for slots
    out = await asyncio.wait_for(c.translate(["x"], "en", "pt", priority="critical"), 1.0)
    assert out[0].text == "X" and not normal.done()
    assert [(k["model"], k["priority"]) for k in fake.calls] == [("translator_urgent", 1)]
    fake.release.set()
    assert [t.text for t in await normal] == list("ABCDEFGHIJ")
    assert [k["model"] for k in fake.calls[1:]] == ["translator"] * 5
    await c.close()


async def test_inflight_cap_bounds_the_requests_of_one_call():
    class Slow(FakeTriton):
        def __init__(self):
            super().__init__()
            self.now = self.peak = 0

        async def infer(self, *args, **kwargs):
            self.now += 1
            self.peak = max(self.peak, self.now)
            await asyncio.sleep(0.01)
            try:
                return await super().infer(*args, **kwargs)
            finally:
                self.now -= 1

    texts = [f"s{i}" for i in range(20)]  # 10 requests of 2 segments
    for cap, peak in [(0, 10), (3, 3)]:
        fake = Slow()
        c = await started(fake, triton_inflight_requests=cap)
        out = await c.translate(texts, "en", "pt")
        assert [t.text for t in out] == [t.upper() for t in texts]  # order kept
        assert fake.peak == peak
        await c.close()


async def test_retries_unavailable_then_succeeds():
    fake = FakeTriton()
    c = await started(fake)
    fake.fail = [err("StatusCode.UNAVAILABLE", "Socket closed")] * 2
    out = await c.translate(["x"], "en", "pt")
    assert out[0].text == "X" and len(fake.calls) == 3
    assert c.m_retries.labels("connection")._value.get() == 2
    assert c.breaker.state == "closed"


async def test_retries_exhausted_raise_unavailable():
    fake = FakeTriton()
    c = await started(fake)
    fake.fail = [err("StatusCode.UNAVAILABLE", "Exceeds maximum queue size")] * 3
    with pytest.raises(InferenceUnavailable):
        await c.translate(["x"], "en", "pt")
    assert len(fake.calls) == 3  # 1 + 2 retries
    assert c.breaker.state == "closed"  # an overloaded server is alive: no circuit trip


async def test_no_retry_on_server_errors_and_deadline():
    fake = FakeTriton()
    c = await started(fake)
    fake.fail = [err("StatusCode.INTERNAL", "boom")]
    with pytest.raises(RuntimeError, match="boom"):
        await c.translate(["x"], "en", "pt")
    fake.fail = [err("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded")]
    with pytest.raises(TimeoutError):
        await c.translate(["x"], "en", "pt")
    assert len(fake.calls) == 2


async def test_circuit_opens_and_fails_fast():
    fake = FakeTriton()
    c = await started(fake, triton_retries=0)
    for _ in range(3):
        fake.fail = [err("StatusCode.UNAVAILABLE", "failed to connect")]
        with pytest.raises(InferenceUnavailable):
            await c.translate(["x"], "en", "pt")
    assert c.breaker.state == "open"
    assert c.m_circuit._value.get() == 1.0
    n = len(fake.calls)
    with pytest.raises(InferenceUnavailable, match="circuit open"):
        await c.translate(["x"], "en", "pt")
    assert len(fake.calls) == n  # nothing sent


async def test_fallback_when_triton_down_is_counted():
    fake = FakeTriton()
    fallback = FakeFallback()
    c = await started(fake, triton_retries=0, fallback=fallback)
    fake.fail = [err("StatusCode.UNAVAILABLE", "failed to connect")] * 5
    out = await c.translate(["x"], "en", "pt")
    assert out[0].text == "local:x" and fallback.started
    assert c.m_fallback._value.get() == 1
    # server errors are not masked by the fallback
    fake.fail = [err("StatusCode.INTERNAL", "boom")]
    with pytest.raises(RuntimeError):
        await c.translate(["x"], "en", "pt")


async def test_readiness_follows_health_and_fallback():
    fake = FakeTriton(ready=False)
    c = await started(fake)
    assert not c.ready()
    with pytest.raises(InferenceUnavailable):
        c.pairs()
    fake.ready = True
    assert await c.check_health() and c.ready() and c.m_ready._value.get() == 1
    fake.ready = False
    assert not await c.check_health() and not c.ready()
    await c.close()

    fallback = FakeFallback()
    c = await started(FakeTriton(ready=False), fallback=fallback)
    assert c.ready() and c.pairs() == [("en", "pt")]  # served in-process meanwhile
    assert c.model_version("en", "pt") == "local-int8"


async def test_bind_metrics_moves_collectors():
    from prometheus_client import CollectorRegistry, generate_latest

    c = TritonInferenceClient(settings(), grpc_client=FakeTriton())
    registry = CollectorRegistry()
    c.bind_metrics(registry)
    text = generate_latest(registry).decode()
    assert "mtb_triton_fallback_total" in text and "mtb_triton_circuit_open" in text


# ------------------------------------------------------------------ half-open probes


async def _opened(fake, clock):
    c = TritonInferenceClient(
        settings(triton_retries=0, triton_breaker_failures=1, triton_breaker_reset_s=10),
        grpc_client=fake,
        rng=random.Random(0),
        clock=clock,
    )
    await c.start()
    fake.fail = [err("StatusCode.UNAVAILABLE", "failed to connect to all addresses")]
    with pytest.raises(InferenceUnavailable):
        await c.translate(["x"], "en", "pt")
    assert c.breaker.state == "open"
    clock.t += 10  # the next call is the half-open probe
    return c


async def test_probe_that_times_out_reopens_the_circuit():
    fake, clock = FakeTriton(), Clock()
    c = await _opened(fake, clock)
    fake.fail = [err("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded")]
    with pytest.raises(TimeoutError):
        await c.translate(["x"], "en", "pt")
    assert c.breaker.state == "open"  # not stuck half-open with its probe "out"
    with pytest.raises(InferenceUnavailable, match="circuit open"):
        await c.translate(["x"], "en", "pt")
    clock.t += 10
    assert (await c.translate(["x"], "en", "pt"))[0].text == "X"  # a new probe closes it
    assert c.breaker.state == "closed"
    await c.close()


async def test_cancelled_probe_reopens_the_circuit():
    class Hanging(FakeTriton):
        def __init__(self):
            super().__init__()
            self.hang = False
            self.entered = asyncio.Event()

        async def infer(self, *args, **kwargs):
            if self.hang:
                self.entered.set()
                await asyncio.sleep(3600)
            return await super().infer(*args, **kwargs)

    fake, clock = Hanging(), Clock()
    c = await _opened(fake, clock)
    fake.hang = True
    probe = asyncio.create_task(c.translate(["x"], "en", "pt"))
    await asyncio.wait_for(fake.entered.wait(), 5)
    assert c.breaker.probing
    probe.cancel()  # e.g. the worker's drain timeout
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert c.breaker.state == "open" and not c.breaker.probing
    fake.hang = False
    clock.t += 10
    assert (await c.translate(["x"], "en", "pt"))[0].text == "X"
    assert c.breaker.state == "closed"
    await c.close()
