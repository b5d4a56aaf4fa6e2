"""Trust boundaries of the Kafka stack (issue 10, item 5), against real brokers:

- SASL_PLAINTEXT + SCRAM-SHA-256: a private broker whose client listener requires a
  login; `mtctl serve` and `mtctl worker` run a job through it; a wrong password is
  refused at start-up with a clear message and exit code 2.
- Forged chunk messages (wrong pair, priority, attempt 99, unknown job, no such chunk) on
  the chunk topics neither fail nor corrupt a job: workers read all that from the DB.
- Dead letters never carry API keys, malformed JSON included.
- An ingest message over its user's word quota waits (no dead letter) while other
  users' messages are admitted, and becomes a job once the quota window has room.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import uuid

import pytest

import devstack
from devstack.processes import MTCTL
from tests.functional.kafka_stack import start_stack

from ..conftest import REPO

pytestmark = pytest.mark.services

QUOTA_MINUTE_BASIC = 30


# -- SASL/SCRAM --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory):
    password = secrets.token_urlsafe(18)
    info = devstack.start_kafka_sasl(tmp_path_factory.mktemp("kafka-sasl"), password=password)
    try:
        yield info
    finally:
        info.stop()


def test_a_job_runs_through_a_scram_broker_and_a_wrong_password_is_refused(
    sasl_broker, postgres_url, model_dir, tmp_path
):
    auth = {k: v for k, v in sasl_broker.env.items() if k != "MTB_KAFKA_BOOTSTRAP"}
    stack = start_stack(tmp_path, postgres_url, sasl_broker.url, model_dir, "sasl", **auth)
    try:
        stack.start_worker("sasl-worker")
        job = stack.submit("The broker asked for a password and got one.")
        done = stack.wait(job["job_id"], timeout=120)
        assert done["status"] == "completed", done
        assert stack.result(job["job_id"])
        wrong = {**stack.env, "MTB_KAFKA_SASL_PASSWORD": "not-the-password"}
        t0 = time.monotonic()
        out = subprocess.run(
            [*MTCTL, "worker"], env=wrong, cwd=REPO, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert out.returncode == 2, (out.returncode, out.stderr[-3000:])
        assert "refused the credentials" in out.stderr and "Traceback" not in out.stderr
        assert "not-the-password" not in out.stderr
        assert time.monotonic() - t0 < 60  # no minute of "waiting for Kafka"
        # and without any credentials the broker does not talk to us either
        with pytest.raises(Exception):  # noqa: B017, PT011 - any failure to bootstrap
            stack_read_plain(sasl_broker.url, stack.topic("results"))
    finally:
        stack.close()


def stack_read_plain(bootstrap: str, topic: str) -> None:
    import asyncio

    from aiokafka import AIOKafkaConsumer

    async def read() -> None:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await asyncio.wait_for(consumer.start(), 15)
        finally:
            await consumer.stop()

    asyncio.run(read())


# -- the shared broker ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(make_stack):
    return make_stack(
        "security",
        workers=0,
        MTB_QUOTA_WORDS_PER_MINUTE_BASIC=str(QUOTA_MINUTE_BASIC),
        MTB_RATE_LIMIT_BASIC="100000",
    )


def chunk_message(job_id: str, index: int, **fields) -> bytes:
    body = {"v": 1, "job_id": job_id, "chunk_index": index, "priority": "normal",
            "source_lang": "en", "target_lang": "pt", "word_count": 5, "attempt": 0,
            "enqueued_at": time.time()}  # fmt: skip
    body.update(fields)
    return json.dumps(body).encode()


def test_forged_chunk_messages_neither_fail_nor_corrupt_a_job(stack):
    text = "Forged messages must not change this sentence's fate."
    job = stack.submit(text)  # no worker yet: the job waits with its genuine message
    jid = job["job_id"]
    forged = [
        chunk_message(
            jid,
            0,
            source_lang="pt",
            target_lang="en",
            priority="critical",
            attempt=99,
            word_count=10**6,
        ),  # fmt: skip
        chunk_message(jid, 0, attempt=99),
        chunk_message(jid, 42, attempt=99),  # no such chunk
        chunk_message(str(uuid.uuid4()), 0, attempt=99),  # no such job
    ]
    stack.produce("chunks.critical", forged, keys=[jid.encode()] * len(forged))
    stack.produce("chunks.retry", forged[:1], keys=[jid.encode()])
    worker = stack.start_worker("forged-worker")
    done = stack.wait(jid, timeout=120)
    assert done["status"] == "completed", done
    result = stack.result(jid)
    (src, tgt, prio, error) = stack.sql(
        "select source_lang, target_lang, priority, error from jobs where id = %(j)s", j=jid
    )[0]
    assert (src, tgt, prio, error) == ("en", "pt", "normal", None)
    # the same text translated again (a fresh job, served through the same pair) matches
    again = stack.submit(text)
    assert stack.wait(again["job_id"])["status"] == "completed"
    assert stack.result(again["job_id"]) == result != text
    (failed,) = stack.sql("select count(*) from jobs where status = 'failed'")[0]
    assert failed == 0
    assert worker.proc.poll() is None


def test_dead_letters_never_carry_api_keys(stack):
    key = stack.service.keys["enterprise"]
    values = [
        b'{"api_key": "' + key.encode() + b'", "text": "broken json',
        json.dumps(
            {"api_key": key, "text": "Hi.", "source_lang": "en", "target_lang": "xx"}
        ).encode(),  # fmt: skip
        b"not json at all " + key.encode(),
        json.dumps(
            {
                "api_key": key,
                "text": "Hi.",
                "source_lang": "en",
                "target_lang": "pt",
                "callback_url": "https://169.254.169.254/latest",
            }
        ).encode(),  # fmt: skip
    ]
    stack.produce("ingest", values, keys=[b"k0", key.encode(), b"k2", b"k3"])
    records = stack.read("dead-letter", at_least=len(values), timeout=90)
    mine = [json.loads(r.value) for r in records if r.topic.endswith("dead-letter")]
    assert len(mine) >= len(values), mine
    for rec in records:
        raw = (rec.value or b"") + (rec.key or b"") + b"".join(v for _, v in rec.headers or ())
        assert key.encode() not in raw
    reasons = {d["reason"] for d in mine}
    assert {"malformed_json", "unsupported_language_pair", "invalid_request"} <= reasons
    assert all("[redacted]" in (d["value"] or "") for d in mine)
    unsafe = [d for d in mine if d["reason"] == "invalid_request"]
    assert unsafe and "link-local" in unsafe[0]["message"]


def test_ingest_over_quota_waits_and_other_users_go_on(stack):
    basic = stack.service.keys["basic"]
    other = stack.service.keys["other"]
    if not stack.workers:
        stack.start_worker("quota-worker")

    def msg(key: str, rid: str, n: int) -> bytes:
        content = " ".join(f"w{rid}{i}" for i in range(n)) + "."
        return json.dumps({"api_key": key, "request_id": rid, "content": content,
                           "source_language": "en", "target_language": "pt"}).encode()  # fmt: skip

    t0 = time.monotonic()
    stack.produce("ingest", [msg(basic, "q-a", 25)])
    ids = lambda rid: stack.sql(  # noqa: E731
        "select j.id from jobs j join users u on u.id = j.user_id"
        " where j.source_text like %(p)s", p=f"w{rid}0 %"
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not ids("q-a") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ids("q-a"), "the first message was not admitted"
    stack.produce("ingest", [msg(basic, "q-b", 25), msg(other, "q-c", 25)])
    deadline = time.monotonic() + 30
    while not ids("q-c") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ids("q-c"), "another user's message was held up behind the over-quota one"
    assert not ids("q-b")  # over quota: waiting
    dead = [r for r in stack.read("dead-letter", at_least=10**6, timeout=3)
            if b"q-b" in (r.value or b"")]  # fmt: skip
    assert dead == []
    deadline = t0 + 150
    while not ids("q-b") and time.monotonic() < deadline:
        time.sleep(1.0)
    waited = time.monotonic() - t0
    assert ids("q-b"), "the over-quota message never became a job"
    assert waited >= 50, waited  # it waited for the minute window
    print(f"\nover-quota ingest message admitted after {waited:.1f} s")
