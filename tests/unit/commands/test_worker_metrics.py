"""`mtctl worker` serves its own /metrics on MTB_METRICS_PORT (Prometheus scrapes every
worker: on Kafka they record finished jobs, latency and cost)."""

from __future__ import annotations

import urllib.request
from types import SimpleNamespace

from control_plane.commands.worker import _serve_metrics
from control_plane.metrics import Metrics
from devstack.daemon import free_port


class Queue:
    def depth(self) -> dict[str, int]:
        return {"critical": 1, "high": 2, "normal": 3}


async def test_worker_metrics_endpoint():
    port = free_port()
    metrics = Metrics()
    metrics.jobs_finished.labels("normal", "completed").inc()
    settings = SimpleNamespace(host="127.0.0.1", metrics_port=port)
    runner = await _serve_metrics(SimpleNamespace(metrics=metrics), Queue(), settings)
    try:
        import asyncio

        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        )
    finally:
        await runner.cleanup()
    text = body.decode()
    assert 'mtb_queue_depth{priority="normal"} 3.0' in text
    assert "mtb_jobs_finished_total" in text
