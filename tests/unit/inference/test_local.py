"""The in-process client serves waiting calls most urgent first."""

from __future__ import annotations

import asyncio
import threading

import pytest

from control_plane.engine.base import UnsupportedPair
from control_plane.inference import InferenceUnavailable, LocalInferenceClient
from tests.unit.api.fake_engine import FakeEngine


class GatedEngine(FakeEngine):
    """Blocks the first call until released, so later calls pile up behind it."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()

    def translate(self, segments, source, target):
        if not self.calls:
            self.gate.wait(5)
        return super().translate(segments, source, target)


async def test_waiting_calls_run_most_urgent_first():
    engine = GatedEngine()
    client = LocalInferenceClient(engine=engine)
    first = asyncio.create_task(client.translate(["running"], "en", "pt", "normal"))
    await asyncio.sleep(0.05)
    later = [
        asyncio.create_task(client.translate([name], "en", "pt", prio))
        for name, prio in [("n1", "normal"), ("h1", "high"), ("c1", "critical"), ("n2", "normal")]
    ]
    await asyncio.sleep(0.05)
    engine.gate.set()
    await asyncio.gather(first, *later)
    assert [c[0] for c in engine.calls] == ["running", "c1", "h1", "n1", "n2"]
    await client.close()


async def test_timeout_skips_and_errors_surface():
    engine = GatedEngine()
    client = LocalInferenceClient(engine=engine)
    blocker = asyncio.create_task(client.translate(["block"], "en", "pt"))
    await asyncio.sleep(0.05)
    with pytest.raises(TimeoutError):
        await client.translate(["too late"], "en", "pt", timeout=0.05)
    engine.gate.set()
    await blocker
    assert ["too late"] not in engine.calls  # dropped, never ran
    with pytest.raises(UnsupportedPair):
        await client.translate(["x"], "en", "de")
    assert await client.translate([], "en", "pt") == []
    await client.close()


async def test_not_ready_until_loaded():
    client = LocalInferenceClient(factory=FakeEngine)
    assert not client.ready()
    with pytest.raises(InferenceUnavailable):
        client.pairs()
    await client.start()
    assert client.ready() and ("en", "pt") in client.pairs()
    await client.close()
