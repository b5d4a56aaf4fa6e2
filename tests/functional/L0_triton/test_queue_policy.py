"""Per-level queue policies on a real server: a full normal queue rejects (UNAVAILABLE,
retried by the client, then InferenceUnavailable) while the critical level still serves."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from control_plane.inference.base import InferenceUnavailable
from control_plane.inference.triton import TritonInferenceClient
from control_plane.inference.triton_config import CPU, QueuePolicy, copy_repository
from control_plane.settings import Settings

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def small_queue_server(triton_factory, model_dir, tmp_path_factory):
    policies = dict(CPU.queue_policies)
    policies[3] = QueuePolicy(max_queue_size=2, timeout_us=60_000_000)
    cfg = dataclasses.replace(
        CPU, queue_policies=policies, max_batch_size=2, preferred_batch_sizes=(2,),
        model_dir=str(model_dir),
    )  # fmt: skip
    return triton_factory(copy_repository(tmp_path_factory.mktemp("repo"), cfg))


async def test_full_normal_queue_rejects_critical_still_served(small_queue_server):
    s = Settings.from_env(
        {}, triton_url=small_queue_server.url, triton_retries=0, triton_connect_timeout_s=60
    )
    c = TritonInferenceClient(s)
    await c.start()
    sentence = "The configuration file could not be read because it is locked by another user."

    async def normal():
        return await c.translate([sentence] * 8, "en", "pt", timeout=60)

    results = await asyncio.gather(*(normal() for _ in range(24)), return_exceptions=True)
    rejected = [r for r in results if isinstance(r, InferenceUnavailable)]
    served = [r for r in results if isinstance(r, list)]
    assert rejected and served, results
    assert all("queue" in str(r).lower() for r in rejected), rejected[:3]
    assert c.m_requests.labels("overload")._value.get() == len(rejected)
    assert c.breaker.state == "closed"  # an overloaded server is not a dead one

    # with the normal queue full again, critical requests have their own queue
    flood = [asyncio.ensure_future(normal()) for _ in range(24)]
    await asyncio.sleep(0.05)
    out = await c.translate([sentence], "en", "pt", priority="critical", timeout=60)
    assert out[0].text
    await asyncio.gather(*flood, return_exceptions=True)
    await c.close()
