"""A job's ``estimated_cost`` (202) and ``cost_usd`` (status, result) come from the cost
model ``mtctl cost`` prints: engine seconds -> instance seconds -> the price of the kind
this process runs on, plus storage and transfer per word."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from control_plane.api import create_app
from control_plane.api.state import RUNTIME
from control_plane.auth import create_user
from control_plane.db import Chunk
from control_plane.inference import LocalInferenceClient
from control_plane.settings import Settings
from tests.unit.api.fake_engine import FakeEngine

TEXT = "One two three four five six. Seven eight nine ten.\n\nEleven twelve thirteen."


async def _run_job(aiohttp_client, tmp_path, **cost):
    cost = {"throughput_wps": 50.0, **cost}
    settings = Settings(data_dir=tmp_path, model_dir=tmp_path / "models", chunk_words=8,
                        batch_words=8, log_format="text", **cost)  # fmt: skip
    app = create_app(settings, client=LocalInferenceClient(engine=FakeEngine(delay_s=0.02)))
    client = await aiohttp_client(app)
    rt = app[RUNTIME]
    _, key = create_user(rt.db.engine, "cost@x.io", "enterprise")
    h = {"Authorization": f"Bearer {key}"}
    r = await client.post(
        "/api/v1/translate", json={"text": TEXT, "source_lang": "en", "target_lang": "pt"},
        headers=h,
    )  # fmt: skip
    assert r.status == 202, await r.text()
    sub = await r.json()
    for _ in range(500):
        status = await (await client.get(f"/api/v1/jobs/{sub['job_id']}", headers=h)).json()
        if status["status"] == "completed":
            break
        await asyncio.sleep(0.02)
    assert status["status"] == "completed", status
    result = await (await client.get(f"/api/v1/jobs/{sub['job_id']}/result", headers=h)).json()
    with rt.db.session() as s:
        engine_seconds = sum(
            s.execute(select(Chunk.engine_seconds).where(Chunk.job_id == sub["job_id"])).scalars()
        )
    return rt.jobs.cost_model, sub, status, result, engine_seconds


async def test_estimate_and_actual_cost_from_the_model(aiohttp_client, tmp_path):
    model, sub, status, result, engine_seconds = await _run_job(aiohttp_client, tmp_path)
    words = sub["word_count"]
    assert model.kind().name == "cpu" and model.kind().price_per_hour == 2.05
    # on submit: the engine seconds the (seed) throughput predicts, 50 words/s here
    assert sub["estimated_cost"] == pytest.approx(model.job_cost(words, engine_seconds=words / 50))
    # on completion: the engine seconds its chunks took (the fake engine sleeps 20 ms/segment)
    assert engine_seconds >= 3 * 0.02 - 1e-3
    assert status["cost_usd"] == result["cost_usd"]
    assert result["cost_usd"] == pytest.approx(model.job_cost(words, engine_seconds=engine_seconds))
    per_word = model.storage_usd_per_word + model.transfer_usd_per_word
    assert per_word > 0 and result["cost_usd"] > words * per_word  # compute is in it too


async def test_the_process_kind_and_prices_are_settings(aiohttp_client, tmp_path):
    """Billed as gpu-spot at $3600/h less 75%: one engine-second costs $0.25; no storage or
    transfer, so the job's cost is exactly its engine time at that price."""
    model, sub, _, result, engine_seconds = await _run_job(
        aiohttp_client, tmp_path, cost_instance_kind="gpu-spot", price_gpu_per_hour=3600.0,
        spot_discount=0.75, cost_stored_bytes_per_word=0.0, cost_transfer_bytes_per_word=0.0,
    )  # fmt: skip
    assert model.kind().name == "gpu-spot"
    assert sub["estimated_cost"] == pytest.approx(0.25 * sub["word_count"] / 50)
    assert result["cost_usd"] == pytest.approx(0.25 * engine_seconds) and engine_seconds > 0


async def test_before_anything_ran_the_estimate_uses_the_measured_speed(aiohttp_client, tmp_path):
    """No seed setting (MTB_THROUGHPUT_WPS 0): a fresh process estimates at the measured
    words/min of its instance kind, the figure ``mtctl cost`` prints for it."""
    model, sub, *_ = await _run_job(aiohttp_client, tmp_path, throughput_wps=0.0)
    assert sub["estimated_cost"] == pytest.approx(model.job_cost(sub["word_count"]))
    assert model.kind().measured  # bench/results/stack.json is in the repository


async def test_policy_kind_prices_normal_work_as_spot(aiohttp_client, tmp_path):
    """MTB_COST_INSTANCE_KIND=policy: a normal job is billed at the spot GPU price (the
    scaling policy sends normal work to the spot pool), 25% of on demand here."""
    model, sub, _, result, engine_seconds = await _run_job(
        aiohttp_client, tmp_path, cost_instance_kind="policy", price_gpu_per_hour=3600.0,
        spot_discount=0.75, cost_stored_bytes_per_word=0.0, cost_transfer_bytes_per_word=0.0,
    )  # fmt: skip
    assert sub["priority"] == "normal" and model.kind(priority="normal").name == "gpu-spot"
    assert result["cost_usd"] == pytest.approx(0.25 * engine_seconds) and engine_seconds > 0
    assert model.job_cost(0, engine_seconds=1.0, priority="critical") == pytest.approx(1.0)
