"""The embedded service end to end: `mtctl serve` in a subprocess, over HTTP, on SQLite
and on PostgreSQL."""

from __future__ import annotations

import json
import time

import pytest
import requests

from control_plane.callbacks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from control_plane.text.chunking import Layout
from tests.contract import DESIGN_RESULT, DESIGN_STATUS, DESIGN_SUBMIT
from tests.functional.callbacks import callback_receiver

from .conftest import MAX_WORDS, RATE_LIMIT_BASIC, Service, wait_for
from .documents import document

SHORT = (
    "# Weekly notes\n\n"
    "The meeting starts at nine. Please bring your laptop!\n\n"
    "  - Review the open issues.\n"
    "  - Plan the next release.\n"
    "\n\n"
    "Thank you for your help.\n"
)


def submit(svc: Service, body: dict, who: str = "enterprise") -> requests.Response:
    return requests.post(
        f"{svc.url}/api/v1/translate", json=body, headers=svc.headers(who), timeout=60
    )


def structure(text: str) -> list[str]:
    """Per line: the layout (indentation, list marker) or 'blank'."""
    out = []
    for line in text.split("\n"):
        if not line.strip():
            out.append("blank:" + line)
        else:
            stripped = line.lstrip()
            head = line[: len(line) - len(stripped)]
            marker = stripped.split(" ", 1)[0] if stripped[:1] in "-*#" else ""
            out.append(f"text:{head!r}{marker}")
    return out


@pytest.mark.parametrize("priority", ["critical", "high", "normal"])
def test_submit_poll_result(service, priority):
    """The design's request body, field for field, and its response fields."""
    metadata = {"document_type": "technical", "domain": "software", "run": priority}
    r = submit(
        service,
        {"source_language": "en", "target_language": "pt", "content": SHORT,
         "priority": priority, "metadata": metadata},
    )  # fmt: skip
    assert r.status_code == 202, r.text
    sub = r.json()
    assert DESIGN_SUBMIT <= set(sub), sub
    assert sub["status"] in ("queued", "completed")
    assert sub["priority"] == priority
    assert sub["word_count"] == len(SHORT.split())
    assert sub["estimated_cost"] >= 0 and sub["estimated_completion"]
    assert r.headers["Location"] == f"/api/v1/jobs/{sub['job_id']}"
    job = wait_for(service, sub["job_id"])
    assert DESIGN_STATUS <= set(job), job
    assert job["status"] == "completed", job
    assert job["progress"] == 1.0 and job["words_processed"] == sub["word_count"]
    assert job["current_speed"] > 0 and job["metadata"] == metadata
    res = requests.get(
        f"{service.url}/api/v1/jobs/{sub['job_id']}/result",
        headers=service.headers("enterprise"),
        timeout=10,
    ).json()
    assert DESIGN_RESULT <= set(res), res
    assert res["source_content"] == SHORT and res["metadata"] == metadata
    assert 0 < res["confidence_score"] <= 1 and res["processing_time_ms"] >= 0
    out = res["translated_content"]
    assert structure(out) == structure(SHORT)
    assert "reunião" in out.lower()


@pytest.mark.slow
def test_15000_word_document(service, tmp_path):
    text = document(15_000, seed=11 if service.backend == "sqlite" else 12)
    words = len(text.split())
    assert 15_000 <= words < 15_200
    t0 = time.monotonic()
    r = submit(service, {"text": text, "source_lang": "en", "target_lang": "pt"})
    assert r.status_code == 202, r.text
    sub = r.json()
    assert sub["chunk_count"] >= 12
    job = wait_for(service, sub["job_id"], timeout=600)
    elapsed = time.monotonic() - t0
    assert job["status"] == "completed", job
    print(f"\n15,000-word document on {service.backend}: {elapsed:.1f} s ({words} words)")
    out = requests.get(
        f"{service.url}/api/v1/jobs/{sub['job_id']}/result",
        headers=service.headers("enterprise"),
        timeout=30,
    ).json()["translated_content"]
    # paragraph structure: same lines, blank lines, indentation and list markers
    assert structure(out) == structure(text)
    # segments: exactly what `mtctl translate` gives for the same sentences
    layout = Layout.parse(text, "en")
    segments = layout.segments
    cli = service.mtctl(
        "translate", "-s", "en", "-t", "pt", "--no-cache", input="\n".join(segments) + "\n"
    ).split("\n")[: len(segments)]
    assert len(cli) == len(segments)
    expected = layout.render(cli)
    if out != expected:
        (tmp_path / "service.txt").write_text(out)
        (tmp_path / "expected.txt").write_text(expected)
        (tmp_path / "segments.txt").write_text("\n".join(segments))
        differing = sum(a != b for a, b in zip(out.split("\n"), expected.split("\n"), strict=False))
        raise AssertionError(f"{differing} lines differ from `mtctl translate`; see {tmp_path}")


def test_cancel_stops_work(service):
    text = document(6_000, seed=99 if service.backend == "sqlite" else 98)
    r = submit(service, {"text": text, "source_lang": "en", "target_lang": "pt"})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    time.sleep(0.5)
    r = requests.delete(
        f"{service.url}/api/v1/jobs/{job_id}", headers=service.headers("enterprise"), timeout=10
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    time.sleep(2.0)
    job = wait_for(service, job_id)
    assert job["status"] == "cancelled"
    assert job["chunks_done"] < job["chunks_total"]
    time.sleep(1.5)
    later = wait_for(service, job_id)
    assert later["words_processed"] == job["words_processed"]  # the engine stopped on it
    r = requests.get(
        f"{service.url}/api/v1/jobs/{job_id}/result",
        headers=service.headers("enterprise"),
        timeout=10,
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "job_cancelled"
    r = requests.delete(
        f"{service.url}/api/v1/jobs/{job_id}", headers=service.headers("enterprise"), timeout=10
    )
    assert r.status_code == 409


def test_auth_401_403(service):
    body = {"text": "Hello.", "source_lang": "en", "target_lang": "pt"}
    url = f"{service.url}/api/v1/translate"
    r = requests.post(url, json=body, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert "Bearer" in r.headers["WWW-Authenticate"]
    for bad in ["Bearer mtb_nope", "Bearer not.a.jwt", "Basic abc", "Bearer "]:
        r = requests.post(url, json=body, headers={"Authorization": bad}, timeout=10)
        assert r.status_code == 401, (bad, r.text)
    # a JWT minted by `mtctl users token` works like the key
    email = f"jwt-{time.time_ns()}@example.com"
    service.new_user("pro", email)
    token = service.mtctl("users", "token", "--email", email).strip()
    r = requests.get(
        f"{service.url}/api/v1/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert r.status_code == 200, r.text
    # tiers cap the priority
    for who, priority in [("basic", "high"), ("basic", "critical"), ("pro", "critical")]:
        r = submit(service, {**body, "priority": priority}, who=who)
        assert r.status_code == 403, (who, priority, r.text)
        assert r.json()["error"]["code"] == "priority_not_allowed"
    r = submit(service, {**body, "priority": "high"}, who="pro")
    assert r.status_code == 202


def test_rate_limit_429(service):
    url = f"{service.url}/api/v1/jobs"
    codes = []
    for _ in range(RATE_LIMIT_BASIC + 5):
        r = requests.get(url, headers=service.headers("limited"), timeout=10)
        codes.append(r.status_code)
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["error"]["code"] == "rate_limited"
            break
    assert codes[-1] == 429 and codes.count(200) >= RATE_LIMIT_BASIC - 1, codes
    # other keys are not affected
    assert requests.get(url, headers=service.headers("enterprise"), timeout=10).status_code == 200


def test_validation_errors(service):
    url = f"{service.url}/api/v1/translate"
    h = service.headers("enterprise")
    ok = {"text": "Hello.", "source_lang": "en", "target_lang": "pt"}

    r = submit(service, {**ok, "target_lang": "de"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "unsupported_language_pair"
    assert "en-pt" in err["message"] and "pt-en" in err["message"]
    assert {"source": "pt", "target": "en"} in err["details"]["supported_pairs"]

    for raw in [b"{", b"not json", b'{"text": "a",}', b"\xff\xfe"]:
        r = requests.post(url, data=raw, headers={**h, "Content-Type": "application/json"})
        assert r.status_code == 400, raw
        assert r.json()["error"]["code"] == "malformed_json"

    bad_fields = [
        {**ok, "priority": "urgent"},
        {**ok, "priority": 3},
        {**ok, "text": ""},
        {**ok, "text": "   \n "},
        {**ok, "text": 42},
        {**ok, "source_lang": "english!"},
        {"text": "Hello.", "target_lang": "pt"},
        {**ok, "unknown": 1},
        {**ok, "callback_url": "ftp://x"},
        {**ok, "text": "a\u0000b"},
        [ok],
        "text",
    ]
    for body in bad_fields:
        r = requests.post(url, json=body, headers=h, timeout=10)
        assert r.status_code == 422, (body, r.text)
        err = r.json()["error"]
        assert err["code"] == "invalid_request" and err["message"]

    r = submit(service, {**ok, "text": "word " * (MAX_WORDS + 1)})
    assert r.status_code == 413 and str(MAX_WORDS) in r.json()["error"]["message"]

    for path in ["/api/v1/jobs/00000000-0000-0000-0000-000000000000", "/api/v1/jobs/x/result"]:
        r = requests.get(service.url + path, headers=h, timeout=10)
        assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
    r = requests.delete(f"{service.url}/api/v1/jobs/unknown", headers=h, timeout=10)
    assert r.status_code == 404
    for q in ["limit=0", "limit=abc", "offset=-1", "status=done"]:
        r = requests.get(f"{service.url}/api/v1/jobs?{q}", headers=h, timeout=10)
        assert r.status_code == 422, q
    r = requests.put(url, json=ok, headers=h, timeout=10)
    assert r.status_code == 405


def test_user_isolation(service):
    r = submit(service, {"text": "Private words here.", "source_lang": "en", "target_lang": "pt"})
    job_id = r.json()["job_id"]
    other = service.headers("other")
    for method, path in [
        ("GET", f"/api/v1/jobs/{job_id}"),
        ("GET", f"/api/v1/jobs/{job_id}/result"),
        ("DELETE", f"/api/v1/jobs/{job_id}"),
    ]:
        r = requests.request(method, service.url + path, headers=other, timeout=10)
        assert r.status_code == 404, (method, path, r.text)
    listed = requests.get(f"{service.url}/api/v1/jobs?limit=100", headers=other, timeout=10)
    assert job_id not in {j["job_id"] for j in listed.json()["jobs"]}
    mine = requests.get(
        f"{service.url}/api/v1/jobs?limit=100", headers=service.headers("enterprise"), timeout=10
    ).json()
    assert job_id in {j["job_id"] for j in mine["jobs"]}


def test_cached_resubmission_and_metrics(service):
    body = {"text": SHORT, "source_lang": "en", "target_lang": "pt", "priority": "high"}
    first = submit(service, body).json()
    wait_for(service, first["job_id"])
    again = submit(service, body).json()
    assert again["status"] == "queued"  # fully cached, but answered like any job
    assert wait_for(service, again["job_id"])["status"] == "completed"
    metrics = requests.get(f"{service.url}/metrics", timeout=10).text
    for name in [
        "mtb_cache_hit_ratio",
        "mtb_words_translated_total",
        "mtb_queue_depth",
        "mtb_job_latency_seconds_bucket",
        "mtb_words_per_minute",
    ]:
        assert name in metrics, name


def test_meta_endpoints(service):
    assert requests.get(f"{service.url}/healthz", timeout=10).json() == {"status": "ok"}
    ready = requests.get(f"{service.url}/readyz", timeout=10).json()
    assert ready["status"] == "ready"
    langs = requests.get(f"{service.url}/api/v1/languages", timeout=10).json()
    assert {(p["source"], p["target"]) for p in langs["pairs"]} >= {("en", "pt"), ("pt", "en")}
    doc = requests.get(f"{service.url}/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.")
    assert "text/html" in requests.get(f"{service.url}/docs", timeout=10).headers["Content-Type"]


def test_critical_overtakes_normal_backlog(service):
    backlog = submit(
        service,
        {"text": document(8_000, seed=5), "source_lang": "en", "target_lang": "pt"},
    ).json()
    time.sleep(0.3)
    t0 = time.monotonic()
    urgent = submit(
        service,
        {"text": "Urgent: the server room is flooding.", "source_lang": "en",
         "target_lang": "pt", "priority": "critical"},
    ).json()  # fmt: skip
    done = wait_for(service, urgent["job_id"], timeout=60)
    latency = time.monotonic() - t0
    assert done["status"] == "completed"
    normal = wait_for_status(service, backlog["job_id"])
    assert normal["status"] in ("queued", "processing"), normal  # still working on the backlog
    print(
        f"\ncritical job behind an 8,000-word normal backlog ({service.backend}): {latency:.2f} s"
    )
    assert latency < 10, latency
    requests.delete(
        f"{service.url}/api/v1/jobs/{backlog['job_id']}",
        headers=service.headers("enterprise"),
        timeout=10,
    )


def wait_for_status(service: Service, job_id: str) -> dict:
    return requests.get(
        f"{service.url}/api/v1/jobs/{job_id}", headers=service.headers("enterprise"), timeout=10
    ).json()


def test_signed_callback_on_completion(service):
    with callback_receiver(fail_first=1) as hook:  # the service must retry the first
        sub = submit(
            service,
            {"text": "Call me back when done.", "source_lang": "en", "target_lang": "pt",
             "callback_url": hook.url},
        ).json()  # fmt: skip
        wait_for(service, sub["job_id"])
        headers, body = hook.wait()[0]
    ok = verify(  # the submitting user's own webhook secret
        service.webhook_secrets[service.keys["enterprise"]],
        headers[TIMESTAMP_HEADER],
        body,
        headers[SIGNATURE_HEADER],
    )
    assert ok, "bad signature"
    event = json.loads(body)
    assert event["event"] == "job.completed" and event["job_id"] == sub["job_id"]
    assert hook.attempts >= 2


def test_sigint_and_sigterm_shut_down_cleanly(service, tmp_path):
    """A second server on its own SQLite file: Ctrl-C (SIGINT) and SIGTERM both stop it
    with exit status 0 while a job is in flight; the job is finished after a restart."""
    if service.backend != "sqlite":
        pytest.skip("one backend is enough for signal handling")
    import signal

    from devstack import free_port
    from devstack.processes import new_user, start_serve

    env = {**service.env, "MTB_DATA_DIR": str(tmp_path), "MTB_DATABASE_URL": ""}

    def boot():
        env["MTB_PORT"] = str(free_port())
        server = start_serve(env, tmp_path / "serve.log")
        try:
            server.wait_ready(60)
        except RuntimeError as exc:
            server.kill9()
            raise AssertionError("second server did not become ready") from exc
        return server.proc, server.url

    key = new_user(env, "pro", "sig@example.com").key
    h = {"Authorization": f"Bearer {key}"}
    proc, url = boot()
    sub = requests.post(
        f"{url}/api/v1/translate",
        json={"text": document(4_000, seed=3), "source_lang": "en", "target_lang": "pt"},
        headers=h,
        timeout=30,
    ).json()
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    proc, url = boot()  # unfinished chunks are picked up again
    try:
        deadline = time.monotonic() + 120
        while True:
            job = requests.get(f"{url}/api/v1/jobs/{sub['job_id']}", headers=h, timeout=10).json()
            if job["status"] == "completed" or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert job["status"] == "completed", job
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
