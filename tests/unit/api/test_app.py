"""The whole embedded path in one process with a fake engine (fast; no model)."""

from __future__ import annotations

import asyncio

import pytest

from control_plane.api import create_app
from control_plane.api.state import RUNTIME
from control_plane.auth import create_user, issue_jwt
from control_plane.inference import LocalInferenceClient
from control_plane.settings import Settings
from tests.contract import DESIGN_RESULT, DESIGN_STATUS, DESIGN_SUBMIT
from tests.unit.api.fake_engine import FakeEngine


@pytest.fixture
def settings(tmp_path):
    return Settings(
        data_dir=tmp_path,
        model_dir=tmp_path / "models",
        chunk_words=20,
        batch_words=20,
        max_words=500,
        rate_limit_basic=5,
        log_format="text",
    )


@pytest.fixture
def engine():
    return FakeEngine()


@pytest.fixture
async def client(aiohttp_client, settings, engine):
    app = create_app(settings, client=LocalInferenceClient(engine=engine))
    c = await aiohttp_client(app)
    svc = app[RUNTIME]
    for _ in range(100):
        if svc.workers:
            break
        await asyncio.sleep(0.02)
    c.svc = svc
    return c


def user(client, tier="enterprise", email=None):
    import uuid

    _, key = create_user(client.svc.db.engine, email or f"{uuid.uuid4()}@x.io", tier)
    return {"Authorization": f"Bearer {key}"}


async def wait_done(client, job_id, headers, timeout=10.0):
    for _ in range(int(timeout / 0.02)):
        r = await client.get(f"/api/v1/jobs/{job_id}", headers=headers)
        body = await r.json()
        if body["status"] in ("completed", "failed", "cancelled"):
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} not done: {body}")


TEXT = (
    "# Heading\n\nFirst sentence here. Second one follows!\n\n"
    "  - item one is short.\n  - item two.\n\n" + "Word " * 30 + "end.\n"
)


async def test_submit_poll_result_each_priority(client):
    h = user(client)
    for priority in ("critical", "high", "normal"):
        r = await client.post(
            "/api/v1/translate",
            json={"text": TEXT, "source_lang": "en", "target_lang": "pt", "priority": priority},
            headers=h,
        )
        assert r.status == 202, await r.text()
        sub = await r.json()
        assert sub["priority"] == priority and sub["word_count"] == len(TEXT.split())
        assert sub["estimated_cost"] >= 0 and sub["estimated_completion"]
        done = await wait_done(client, sub["job_id"], h)
        assert done["status"] == "completed" and done["progress"] == 1.0
        res = await (await client.get(f"/api/v1/jobs/{sub['job_id']}/result", headers=h)).json()
        out = res["translated_content"]
        assert out.count("\n") == TEXT.count("\n")
        assert out.startswith("# Heading [pt]\n\n")
        assert "\n  - short. is one item [pt]\n  - two. item [pt]\n" in out


async def test_fully_cached_job_never_touches_engine(client, engine):
    h = user(client)
    body = {"text": "Cache me please. And me too.", "source_lang": "en", "target_lang": "pt"}
    first = await (await client.post("/api/v1/translate", json=body, headers=h)).json()
    await wait_done(client, first["job_id"], h)
    seen = engine.segments_seen
    r = await client.post("/api/v1/translate", json=body, headers=h)
    second = await r.json()
    assert second["status"] == "queued"  # like any job (cache hits must not show)
    assert (await wait_done(client, second["job_id"], h))["status"] == "completed"
    assert engine.segments_seen == seen
    metrics = await (await client.get("/metrics")).text()
    assert "mtb_cache_hit_ratio" in metrics


async def test_errors(client):
    h = user(client)
    post = client.post
    r = await post("/api/v1/translate", json={"text": "x"})
    assert r.status == 401
    r = await post("/api/v1/translate", data=b"{nope", headers=h)
    assert r.status == 400 and (await r.json())["error"]["code"] == "malformed_json"
    r = await post(
        "/api/v1/translate",
        json={"text": "Hi.", "source_lang": "en", "target_lang": "de"},
        headers=h,
    )
    assert r.status == 400 and "en-pt" in (await r.json())["error"]["message"]
    r = await post(
        "/api/v1/translate",
        json={"text": "Hi.", "source_lang": "en", "target_lang": "pt", "priority": "urgent"},
        headers=h,
    )
    assert r.status == 422
    r = await post(
        "/api/v1/translate",
        json={"text": "w " * 600, "source_lang": "en", "target_lang": "pt"},
        headers=h,
    )
    assert r.status == 413
    r = await client.get("/api/v1/jobs/nope", headers=h)
    assert r.status == 404
    basic = user(client, "basic")
    r = await post(
        "/api/v1/translate",
        json={"text": "Hi.", "source_lang": "en", "target_lang": "pt", "priority": "critical"},
        headers=basic,
    )
    assert r.status == 403
    statuses = [(await client.get("/api/v1/jobs", headers=basic)).status for _ in range(6)]
    assert 429 in statuses
    r = await client.get("/api/v1/jobs", headers=basic)
    assert r.status == 429 and int(r.headers["Retry-After"]) >= 1


async def test_isolation_cancel_list_and_jwt(client, settings, engine):
    engine.delay_s = 0.05
    a, b = user(client), user(client)
    text = "One sentence here. " * 150
    sub = await (
        await client.post(
            "/api/v1/translate",
            json={"text": text, "source_lang": "en", "target_lang": "pt"},
            headers=a,
        )
    ).json()
    assert (await client.get(f"/api/v1/jobs/{sub['job_id']}", headers=b)).status == 404
    assert (await client.delete(f"/api/v1/jobs/{sub['job_id']}", headers=b)).status == 404
    r = await client.delete(f"/api/v1/jobs/{sub['job_id']}", headers=a)
    assert r.status == 200 and (await r.json())["status"] == "cancelled"
    await asyncio.sleep(0.3)
    job = await (await client.get(f"/api/v1/jobs/{sub['job_id']}", headers=a)).json()
    assert job["status"] == "cancelled" and job["chunks_done"] < job["chunks_total"]
    assert (await client.get(f"/api/v1/jobs/{sub['job_id']}/result", headers=a)).status == 409
    listed = await (await client.get("/api/v1/jobs?limit=1", headers=a)).json()
    assert listed["total"] == 1 and listed["jobs"][0]["job_id"] == sub["job_id"]
    assert (await client.get("/api/v1/jobs?limit=0", headers=a)).status == 422
    for odd in ("%D9%A5", "5_0", "%2B5", "%205", "1e1", "99999999999999999999"):  # int() took some
        assert (await client.get(f"/api/v1/jobs?limit={odd}", headers=a)).status == 422, odd
    r = await client.get("/api/v1/jobs/" + "x" * 8000, headers=a)
    assert r.status == 404 and len((await r.json())["error"]["message"]) < 100
    assert (await client.get("/api/v1/jobs", headers=b)).status == 200
    uid = client.svc.db.engine.connect().exec_driver_sql("select id from users limit 1").scalar()
    token = issue_jwt(uid, settings.jwt_secret)
    r = await client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200
    r = await client.get("/api/v1/jobs", headers={"Authorization": "Bearer x.y.z"})
    assert r.status == 401


async def test_meta_endpoints(client):
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    langs = await (await client.get("/api/v1/languages")).json()
    assert {"source": "en", "target": "pt", "model_version": "fake-enpt-1"} in langs["pairs"]
    doc = await (await client.get("/openapi.json")).json()
    assert "/api/v1/translate" in doc["paths"]
    assert (await client.get("/docs")).status == 200
    r = await client.get("/nope")
    assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"


async def test_design_contract_exact_bodies(client):
    """The design's request body as written in ../shared/DESIGN.md, and its response
    fields, units and shapes."""
    from datetime import datetime

    h = user(client)
    body = {
        "source_language": "en",
        "target_language": "pt",
        "content": "Hello, world! This is a test document.",
        "priority": "high",
        "callback_url": None,
        "metadata": {"document_type": "technical", "domain": "software"},
    }
    r = await client.post("/api/v1/translate", json=body, headers=h)
    assert r.status == 202, await r.text()
    sub = await r.json()
    assert DESIGN_SUBMIT <= set(sub), sub
    assert sub["status"] == "queued" and sub["priority"] == "high" and sub["word_count"] == 7
    assert sub["estimated_completion"].endswith("Z") or "+00:00" in sub["estimated_completion"]
    assert isinstance(sub["estimated_cost"], float)
    done = await wait_done(client, sub["job_id"], h)
    assert DESIGN_STATUS <= set(done), done
    assert done["status"] == "completed" and done["progress"] == 1.0
    assert done["metadata"] == body["metadata"]
    # words per minute (the design's unit): 7 words over the job's own duration
    seconds = (
        datetime.fromisoformat(done["completed_at"]) - datetime.fromisoformat(done["started_at"])
    ).total_seconds()
    assert done["current_speed"] == pytest.approx(7 * 60 / max(seconds, 1e-3), rel=0.01)
    res = await (await client.get(f"/api/v1/jobs/{sub['job_id']}/result", headers=h)).json()
    assert DESIGN_RESULT <= set(res), res
    assert res["source_content"] == body["content"]
    assert res["translated_content"] == "world! Hello, [pt] document. test a is This [pt]"
    assert (res["source_language"], res["target_language"]) == ("en", "pt")
    assert 0.0 <= res["confidence_score"] <= 1.0 and res["confidence_score"] == 0.9
    assert isinstance(res["processing_time_ms"], int) and res["processing_time_ms"] >= 0
    assert res["model_version"] == "fake-enpt-1" and res["cost_usd"] >= 0
    assert res["metadata"] == body["metadata"]


async def test_short_names_still_accepted_and_metadata_limits(client):
    h = user(client)
    r = await client.post(
        "/api/v1/translate",
        json={"text": "One two.", "source_lang": "en", "target_lang": "pt"},
        headers=h,
    )
    assert r.status == 202, await r.text()
    assert (await r.json())["source_language"] == "en"
    for bad, why in (
        ({"metadata": {"x": "y" * 5000}}, "metadata"),
        ({"metadata": ["not", "an", "object"]}, "metadata"),
        ({"text": "dup"}, "text"),  # both names of one field
    ):
        body = {"content": "One two.", "source_language": "en", "target_language": "pt", **bad}
        r = await client.post("/api/v1/translate", json=body, headers=h)
        assert r.status == 422, (bad, await r.text())
        assert why in await r.text()


async def test_openapi_shows_the_design_names(client):
    doc = await (await client.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    assert {"content", "source_language", "target_language", "metadata"} <= set(
        schemas["TranslateRequest"]["properties"]
    )
    assert "text" not in schemas["TranslateRequest"]["properties"]
    assert DESIGN_RESULT <= set(schemas["JobResult"]["properties"])
    assert "processing" in str(schemas["JobView"]["properties"]["status"])


async def test_user_rate_limit_overrides_the_tier(client):
    _, key = create_user(client.svc.db.engine, "limited@x.io", "enterprise", 2)
    h = {"Authorization": f"Bearer {key}"}
    codes = [(await client.get("/api/v1/jobs", headers=h)).status for _ in range(3)]
    assert codes == [200, 200, 429]  # enterprise's tier limit (6000/min) would allow all
    r = await client.get("/api/v1/jobs", headers=h)
    assert r.status == 429 and "2 requests/minute" in (await r.json())["error"]["message"]
    assert int(r.headers["Retry-After"]) >= 1


def test_every_route_is_in_the_openapi_document(settings):
    """Operations are written beside their handlers; a route without one would be missing
    from /openapi.json, so none may exist (bar the document and its page)."""
    from control_plane.api.openapi import document

    app = create_app(settings, client=LocalInferenceClient(engine=FakeEngine()))
    doc = document(app)
    for route in app.router.routes():
        path = route.resource.get_info().get("path") or route.resource.get_info()["formatter"]
        if route.method == "HEAD" or path in ("/openapi.json", "/docs"):
            continue
        assert route.method.lower() in doc["paths"].get(path, {}), (route.method, path)


async def test_a_large_result_is_serialized_off_the_event_loop(client, monkeypatch):
    """A result of more than THREAD_CHARS characters is the same JSON, made in a thread."""
    from control_plane.api.routes import jobs as jobs_routes

    h = user(client)
    word = "caf\u00e9\u3002" * 200  # 1,000 characters, one word
    text = " ".join([word] * (jobs_routes.THREAD_CHARS // 2_000 + 5)) + '\n\nDone "now".\n'
    r = await client.post(
        "/api/v1/translate", json={"text": text, "source_lang": "en", "target_lang": "pt"},
        headers=h,
    )  # fmt: skip
    assert r.status == 202, await r.text()
    job_id = (await r.json())["job_id"]
    assert (await wait_done(client, job_id, h, timeout=30))["status"] == "completed"
    threaded: list[object] = []
    real = asyncio.to_thread

    async def spy(func, /, *args, **kwargs):  # noqa: ANN001, ANN202
        threaded.append(func)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(jobs_routes.asyncio, "to_thread", spy)
    r = await client.get(f"/api/v1/jobs/{job_id}/result", headers=h)
    assert r.status == 200 and r.headers["Content-Type"] == "application/json; charset=utf-8"
    res = await r.json()
    assert res["source_content"] == text and res["status"] == "completed"
    assert res["translated_content"].endswith('"now". Done [pt]\n')
    assert len(res["source_content"]) + len(res["translated_content"]) >= jobs_routes.THREAD_CHARS
    assert jobs_routes.JobResult.__pydantic_serializer__.to_json in threaded
