"""Trust boundaries (issue 10, item 5): no known default secret, per-user webhook secrets,
callback URL guard (submit and delivery), DB-sourced chunk facts, dead-letter redaction and
word quotas. Real sockets and a real SQLite database; no mocks of the code under test."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
import uuid
from datetime import timedelta

import pytest
from aiohttp import web
from sqlalchemy import update

from control_plane.auth import create_user
from control_plane.cache import SegmentCache
from control_plane.callbacks import SIGNATURE_HEADER, TIMESTAMP_HEADER, CallbackSender, verify
from control_plane.db import Chunk, Database, Job, utcnow
from control_plane.inference import LocalInferenceClient
from control_plane.jobs.service import JobService, SubmitRequest
from control_plane.metrics import Metrics
from control_plane.queue import MemoryChunkQueue
from control_plane.queue.base import ChunkMessage
from control_plane.queue.kafka.topics import dead_letter_value, redact_secrets
from control_plane.security import (
    JWT_SECRET_FILE,
    ConfigError,
    QuotaExceeded,
    UnsafeCallback,
    WordQuota,
    address_problem,
    guarded_resolver,
    production_mode,
    resolve_jwt_secret,
    vet_callback_url,
    webhook_secret_for,
)
from control_plane.settings import Settings
from control_plane.workers import Worker
from tests.unit.api.fake_engine import FakeEngine

# -- no known default secret ------------------------------------------------------------


def test_no_builtin_jwt_secret():
    assert Settings().jwt_secret == ""
    assert Settings(callback_secret="").effective_callback_secret == ""  # never the JWT one


def test_embedded_mode_generates_a_private_secret_and_reuses_it(tmp_path):
    s1 = Settings(data_dir=tmp_path)
    secret = resolve_jwt_secret(s1)
    path = tmp_path / JWT_SECRET_FILE
    assert len(secret) >= 32 and s1.jwt_secret == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resolve_jwt_secret(Settings(data_dir=tmp_path)) == secret  # the next start
    other = tmp_path / "other"
    assert resolve_jwt_secret(Settings(data_dir=other)) != secret  # random per data dir


@pytest.mark.parametrize(
    "overrides",
    [{"database_url": "postgresql+psycopg://u:p@127.0.0.1/x"}, {"queue": "kafka"}],
)
def test_shared_stacks_require_an_explicit_secret(tmp_path, overrides):
    with pytest.raises(ConfigError, match="MTB_JWT_SECRET must be set"):
        resolve_jwt_secret(Settings(data_dir=tmp_path, **overrides))
    assert not (tmp_path / JWT_SECRET_FILE).exists()  # no per-host file that would differ
    good = "x" * 32
    assert resolve_jwt_secret(Settings(data_dir=tmp_path, jwt_secret=good, **overrides)) == good


def test_short_secrets_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="at least 32"):
        resolve_jwt_secret(Settings(data_dir=tmp_path, jwt_secret="change-me-in-production"))


def test_production_mode():
    assert not production_mode(Settings())
    assert not production_mode(Settings(database_url="sqlite:///x.db"))
    assert production_mode(Settings(production=True))
    assert production_mode(Settings(queue="kafka"))
    assert production_mode(Settings(database_url="postgresql://h/db"))


# -- callback URL guard ------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.8.9.10", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1",
        "169.254.169.254", "fe80::1", "fd00:ec2::254", "224.0.0.1", "ff02::1", "0.0.0.0",
        "::", "240.0.0.1", "100.64.0.1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
        "255.255.255.255", "192.0.2.1",
    ],
)  # fmt: skip
def test_non_public_addresses_are_refused(address):
    assert address_problem(address) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address):
    assert address_problem(address) is None


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("http://127.0.0.1:9/hook", "loopback"),
        ("http://localhost/hook", "loopback"),  # resolved, not judged by its name
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::ffff:10.0.0.1]/x", "private"),
        ("http://10.0.0.7/x", "private"),
        ("ftp://example.com/x", "http(s)"),
        ("http://no-such-host.invalid/x", "does not resolve"),
    ],
)
async def test_submit_check_refuses_unsafe_targets(url, fragment):
    with pytest.raises(UnsafeCallback, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        await vet_callback_url(url, Settings())


async def test_https_only_in_production_and_the_allow_list():
    with pytest.raises(UnsafeCallback, match="https"):
        await vet_callback_url("http://8.8.8.8/hook", Settings(production=True))
    await vet_callback_url("https://8.8.8.8/hook", Settings(production=True))
    allow = Settings(callback_allow_hosts="127.0.0.1, LocalHost")
    await vet_callback_url("http://127.0.0.1:8/hook", allow)
    await vet_callback_url("http://localhost:8/hook", allow)
    with pytest.raises(UnsafeCallback):
        await vet_callback_url("http://127.0.0.2/hook", allow)
    # an allow-listed receiver may stay on http in production; nobody else may
    prod_allow = Settings(production=True, callback_allow_hosts="127.0.0.1")
    await vet_callback_url("http://127.0.0.1:8/hook", prod_allow)
    with pytest.raises(UnsafeCallback, match="https"):
        await vet_callback_url("http://8.8.8.8/hook", prod_allow)


async def test_resolution_does_not_block_the_event_loop(monkeypatch):
    """A slow DNS (0.3 s here) does not stall the loop: the name is resolved in a thread."""
    import socket

    real = socket.getaddrinfo

    def slow_getaddrinfo(*args, **kwargs):
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    with pytest.raises(UnsafeCallback, match="loopback"):
        await vet_callback_url("http://localhost/hook", Settings())
    task.cancel()
    assert ticks >= 10  # the loop kept running while the name resolved


class _Rebinding:
    """A DNS that answers with a public address first, then a private one (rebinding)."""

    def __init__(self):
        self.calls = 0

    async def resolve(self, host, port=0, family=0):
        self.calls += 1
        addr = "93.184.216.34" if self.calls == 1 else "127.0.0.1"
        return [{"hostname": host, "host": addr, "port": port, "family": 2, "proto": 0,
                 "flags": 0}]  # fmt: skip

    async def close(self):
        pass


async def test_delivery_resolver_rechecks_every_connection():
    resolver = guarded_resolver(frozenset())
    resolver._inner = _Rebinding()
    first = await resolver.resolve("rebind.example", 80)
    assert first[0]["host"] == "93.184.216.34"
    with pytest.raises(OSError, match="loopback"):
        await resolver.resolve("rebind.example", 80)  # the second answer is checked too


async def _receiver(aiohttp_server, status=200, redirect_to=None):
    seen: list[tuple[dict, bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        seen.append((dict(request.headers), await request.read()))
        if redirect_to is not None:
            raise web.HTTPFound(redirect_to)
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_post("/elsewhere", hook)
    server = await aiohttp_server(app)
    return server, seen


async def _until(outcomes, n=1, timeout=5.0):
    deadline = time.monotonic() + timeout
    while len(outcomes) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


async def test_delivery_refuses_loopback_names_and_literals(aiohttp_server):
    server, seen = await _receiver(aiohttp_server)
    outcomes = []
    sender = CallbackSender("k", attempts=2, backoff_s=0.01, on_result=outcomes.append)
    await sender.start()
    try:
        sender.send(f"http://localhost:{server.port}/hook", {"job_id": "a"}, "whsec_a")
        sender.send(f"http://127.0.0.1:{server.port}/hook", {"job_id": "b"}, "whsec_b")
        await _until(outcomes, 2)
    finally:
        await sender.close()
    assert outcomes == [False, False]
    assert seen == []  # nothing reached the loopback receiver


async def test_redirects_are_not_followed(aiohttp_server):
    server, seen = await _receiver(aiohttp_server, redirect_to="/elsewhere")
    outcomes = []
    sender = CallbackSender(
        "k", attempts=1, on_result=outcomes.append, allow_hosts=frozenset({"127.0.0.1"})
    )
    await sender.start()
    try:
        sender.send(f"http://127.0.0.1:{server.port}/hook", {"job_id": "r"}, "whsec_r")
        await _until(outcomes)
    finally:
        await sender.close()
    assert outcomes == [False]
    assert len(seen) == 1  # /elsewhere was never requested


# -- per-user webhook secrets --------------------------------------------------------------


@pytest.fixture
def db(tmp_path):
    d = Database(f"sqlite:///{tmp_path / 'sec.db'}")
    d.migrate()
    yield d
    d.close()


async def test_callbacks_are_signed_with_the_owners_secret(db, aiohttp_server):
    alice, _ = create_user(db.engine, "alice@x.io", "pro")
    bob, _ = create_user(db.engine, "bob@x.io", "pro")
    assert alice.webhook_secret.startswith("whsec_") and len(alice.webhook_secret) > 40
    assert alice.webhook_secret != bob.webhook_secret
    secret = webhook_secret_for(db.engine, alice.id)
    assert secret == alice.webhook_secret
    server, seen = await _receiver(aiohttp_server)
    outcomes = []
    jwt_secret = "j" * 40
    sender = CallbackSender(
        "", attempts=1, on_result=outcomes.append, allow_hosts=frozenset({"127.0.0.1"})
    )
    await sender.start()
    try:
        sender.send(f"http://127.0.0.1:{server.port}/hook", {"job_id": "j1"}, secret)
        await _until(outcomes)
    finally:
        await sender.close()
    headers, body = seen[0]
    ts, sig = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    assert verify(alice.webhook_secret, ts, body, sig)
    assert not verify(bob.webhook_secret, ts, body, sig)
    assert not verify(jwt_secret, ts, body, sig)


async def test_users_without_a_secret_get_the_fallback_or_no_signature(db, aiohttp_server):
    old, _ = create_user(db.engine, "old@x.io")
    with db.session() as s:  # a user from before per-user secrets
        s.execute(update(type(old)).where(type(old).id == old.id).values(webhook_secret=None))
        s.commit()
    assert webhook_secret_for(db.engine, old.id) is None
    server, seen = await _receiver(aiohttp_server)
    outcomes = []
    url = f"http://127.0.0.1:{server.port}/hook"
    for fallback in ("fallback-secret", ""):
        sender = CallbackSender(
            fallback, attempts=1, on_result=outcomes.append, allow_hosts=frozenset({"127.0.0.1"})
        )
        await sender.start()
        try:
            sender.send(url, {"job_id": "o"}, webhook_secret_for(db.engine, old.id))
            await _until(outcomes, len(outcomes) + 1)
        finally:
            await sender.close()
    (h1, b1), (h2, _) = seen
    assert verify("fallback-secret", h1[TIMESTAMP_HEADER], b1, h1[SIGNATURE_HEADER])
    assert SIGNATURE_HEADER not in h2 and TIMESTAMP_HEADER not in h2


# -- workers trust the database, not the chunk message ----------------------------------


@pytest.fixture
async def parts(tmp_path):
    settings = Settings(data_dir=tmp_path, chunk_words=50, batch_words=1000, max_chunk_attempts=3)
    d = Database(settings.effective_database_url)
    d.migrate()
    user, _ = create_user(d.engine, "w@x.io", "enterprise")
    queue = MemoryChunkQueue(aging_s=0)
    jobs = JobService(d, queue, SegmentCache(d.engine), settings)
    engine = FakeEngine()
    worker = Worker("w", queue, jobs, LocalInferenceClient(engine=engine), Metrics(), settings)
    yield settings, user, queue, jobs, engine, worker
    d.close()


async def test_forged_chunk_messages_cannot_fail_or_corrupt_a_job(parts):
    settings, user, queue, jobs, engine, worker = parts
    job = await jobs.submit(SubmitRequest(user.id, "Hello there world.", "en", "pt"), "v")
    real = await queue.consume(settings.batch_words, timeout=0.1)
    assert len(real) == 1
    forged = [
        ChunkMessage(job.id, 0, "critical", "pt", "en", 10**6, attempt=99),  # all wrong
        ChunkMessage(str(uuid.uuid4()), 0, "critical", "en", "pt", 5, attempt=99),  # no job
        ChunkMessage(job.id, 7, "normal", "en", "pt", 5, attempt=99),  # no such chunk
    ]
    for m in forged:
        await queue.publish(m)
    taken = 0
    while deliveries := await queue.consume(settings.batch_words, timeout=0.1):
        taken += len(deliveries)
        await worker.process(deliveries)
    assert taken == 3
    done = await jobs.get(user.id, job.id, texts=True)
    assert done.status == "completed", done.error
    assert done.result_text == "world. there Hello [pt]"  # en->pt as the job says
    assert engine.calls == [["Hello there world."]]
    assert done.priority == "normal"
    await worker.process(real)  # the genuine message afterwards: nothing to redo
    assert (await jobs.get(user.id, job.id, texts=True)).result_text == done.result_text
    assert queue.inflight() == 0


async def test_a_high_attempt_on_a_fresh_chunk_counts_as_its_first(parts):
    settings, user, queue, jobs, engine, worker = parts
    job = await jobs.submit(SubmitRequest(user.id, "One more.", "en", "pt"), "v")
    (d,) = await queue.consume(settings.batch_words, timeout=0.1)
    d.message.attempt = 99
    claim = await jobs.db.run(jobs.claim_chunk, job.id, 0)
    assert (claim.source_lang, claim.target_lang, claim.priority, claim.attempts) == (
        "en", "pt", "normal", 0,
    )  # fmt: skip
    with jobs.db.session() as s:  # as it was before this claim
        s.execute(update(Chunk).where(Chunk.job_id == job.id).values(attempts=0))
        s.commit()
    await worker.process([d])
    assert (await jobs.get(user.id, job.id)).status == "completed"


# -- the dead-letter topic never carries API keys ------------------------------------------

KEY = "mtb_" + "Ab3_-" * 8 + "xyz"


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps({"api_key": KEY, "text": "hi", "source_lang": "xx"}).encode(),
        json.dumps({"api_key": "not-a-mtb-key-but-secret", "text": 1}).encode(),
        b'{"api_key": "' + KEY.encode() + b'", "text": "unterminated',
        b'{"api_key": "secret-in-broken-json", ',
        b'{"api_key":"' + KEY.encode() + b'"',
        b"\xff\xfe garbage " + KEY.encode() + b" more",
        b'[{"api_key": "' + KEY.encode() + b'"}]',
    ],
)
def test_dead_letters_are_redacted(raw):
    out = json.loads(dead_letter_value("malformed_json", "bad", value=raw, key=KEY.encode()))
    assert KEY not in out["value"] and KEY not in (out["key"] or "")
    assert "secret-in-broken-json" not in out["value"]
    assert "not-a-mtb-key-but-secret" not in out["value"]
    assert "[redacted]" in out["value"]


def test_redaction_keeps_the_rest_of_the_message():
    raw = json.dumps({"api_key": KEY, "text": "keep me", "source_lang": "en"}).encode()
    assert json.loads(redact_secrets(raw)) == {
        "api_key": "[redacted]",
        "text": "keep me",
        "source_lang": "en",
    }


# -- fair use ------------------------------------------------------------------------------


def _add_job(db, user_id, words, age_s=0.0):
    with db.session() as s:
        s.add(
            Job(
                id=str(uuid.uuid4()), user_id=user_id, source_lang="en", target_lang="pt",
                word_count=words, source_text="x", created_at=utcnow() - timedelta(seconds=age_s),
            )
        )  # fmt: skip
        s.commit()


def test_word_quota_per_minute_and_day(db):
    user, _ = create_user(db.engine, "q@x.io", "basic")
    quota = WordQuota(Settings(quota_words_per_minute_basic=1000, quota_words_per_day_basic=3000))
    quota.check(db.engine, user.id, "basic", 2500)  # an empty minute admits a large job
    with pytest.raises(QuotaExceeded, match="per day"):
        quota.check(db.engine, user.id, "basic", 3001)  # the day quota is strict
    _add_job(db, user.id, 900, age_s=20)
    quota.check(db.engine, user.id, "basic", 100)
    with pytest.raises(QuotaExceeded) as exc:
        quota.check(db.engine, user.id, "basic", 101)
    assert 30 <= exc.value.retry_after_s <= 41  # when the 20 s old job leaves the minute
    assert "1000 words per minute" in str(exc.value)
    _add_job(db, user.id, 2050, age_s=3600)  # outside the minute, inside the day
    quota.check(db.engine, user.id, "basic", 50)
    with pytest.raises(QuotaExceeded, match="per day"):
        quota.check(db.engine, user.id, "basic", 60)  # the minute has room, the day not
    other, _ = create_user(db.engine, "q2@x.io", "basic")
    quota.check(db.engine, other.id, "basic", 1000)  # per user
    unlimited = WordQuota(Settings(quota_words_per_minute_pro=0, quota_words_per_day_pro=0))
    unlimited.check(db.engine, user.id, "pro", 10**9)


def test_a_request_larger_than_a_days_quota_can_never_pass(db):
    user, _ = create_user(db.engine, "big@x.io", "basic")
    quota = WordQuota(Settings(quota_words_per_minute_basic=10, quota_words_per_day_basic=100))
    with pytest.raises(QuotaExceeded) as exc:
        quota.check(db.engine, user.id, "basic", 101)
    assert exc.value.retry_after_s is None


def test_defaults_keep_one_basic_user_from_filling_the_queue():
    s = Settings()
    assert 0 < s.quota_words_per_minute_basic <= 20_000
    assert 0 < s.quota_words_per_day_basic <= 200_000
    assert s.quota_words_per_day_pro > s.quota_words_per_day_basic
    assert s.quota_words_per_day_enterprise > s.quota_words_per_day_pro


def test_secret_file_is_not_world_readable_even_if_loosened(tmp_path):
    s = Settings(data_dir=tmp_path)
    resolve_jwt_secret(s)
    os.chmod(tmp_path / JWT_SECRET_FILE, 0o644)
    resolve_jwt_secret(Settings(data_dir=tmp_path))
    assert stat.S_IMODE((tmp_path / JWT_SECRET_FILE).stat().st_mode) == 0o600


# -- the segment cache does not reveal other tenants' text ---------------------------------


async def _app_client(aiohttp_client, tmp_path, engine):
    from control_plane.api import create_app
    from control_plane.api.state import RUNTIME

    settings = Settings(
        data_dir=tmp_path, chunk_words=20, batch_words=20, log_format="text",
        price_cpu_per_hour=3600.0,  # 1 USD per engine second: costs far above the rounding
    )  # fmt: skip
    app = create_app(settings, client=LocalInferenceClient(engine=engine))
    client = await aiohttp_client(app)
    svc = app[RUNTIME]
    for _ in range(200):
        if svc.workers:
            break
        await asyncio.sleep(0.02)
    return client, svc


async def _run_job(client, headers, content):
    """Submit, then poll until finished; returns (submit body, statuses seen, status view,
    result view)."""
    body = {"content": content, "source_language": "en", "target_language": "pt"}
    r = await client.post("/api/v1/translate", json=body, headers=headers)
    assert r.status == 202, await r.text()
    sub = await r.json()
    seen = [sub["status"]]
    for _ in range(500):
        view = await (await client.get(f"/api/v1/jobs/{sub['job_id']}", headers=headers)).json()
        if view["status"] != seen[-1]:
            seen.append(view["status"])
        if view["status"] in ("completed", "failed", "cancelled"):
            break
        await asyncio.sleep(0.005)
    res = await (await client.get(f"/api/v1/jobs/{sub['job_id']}/result", headers=headers)).json()
    return sub, seen, view, res


def _shape(d: dict) -> dict:
    """Field -> type: what a client can tell apart without timing."""
    return {k: type(v).__name__ for k, v in d.items()}


async def test_a_cache_served_job_looks_like_a_translated_one(aiohttp_client, tmp_path):
    engine = FakeEngine(delay_s=0.01)
    client, svc = await _app_client(aiohttp_client, tmp_path, engine)
    alice = {"Authorization": "Bearer " + create_user(svc.db.engine, "a@x.io", "pro")[1]}
    bob = {"Authorization": "Bearer " + create_user(svc.db.engine, "b@x.io", "pro")[1]}
    secret_text = "Alice's merger with Example Corp closes on Friday. Keep it quiet."
    await _run_job(client, alice, secret_text)  # Alice's text is now in the cache
    calls = len(engine.calls)
    cached = await _run_job(client, bob, secret_text)  # Bob probes with the same text
    assert len(engine.calls) == calls  # served from the cache indeed
    fresh = await _run_job(client, bob, "A text nobody has sent before, about the weather.")
    (c_sub, c_seen, c_view, c_res), (f_sub, _, f_view, f_res) = cached, fresh
    assert c_sub["status"] == f_sub["status"] == "queued"
    assert _shape(c_sub) == _shape(f_sub)
    assert c_seen[0] == "queued" and c_seen[-1] == "completed"
    assert set(c_seen) <= {"queued", "processing", "completed"}
    assert _shape(c_view) == _shape(f_view) and "cached_segments" not in c_view
    assert _shape(c_res) == _shape(f_res)
    for res in (c_res, f_res):
        assert res["cost_usd"] > 0 and res["processing_time_ms"] > 0
        assert 0 < res["confidence_score"] <= 1
        assert "cache" not in json.dumps(res).lower()
    assert c_view["words_processed"] == c_view["word_count"]
    assert c_view["started_at"] is not None and c_view["progress"] == f_view["progress"]
