"""Ingest admission without a broker: a message parses to a request or a reason, a valid
request becomes exactly one job (however often it is delivered); invalid ones are
dead-lettered with REST's error code."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from types import SimpleNamespace

import pytest
from aiokafka.structs import TopicPartition
from sqlmodel import select

from control_plane.auth import create_user
from control_plane.db import Job
from control_plane.inference.local import LocalInferenceClient
from control_plane.jobs.ingest import IngestConsumer, Rejected, job_id_for, parse_message
from control_plane.queue.kafka.offsets import OffsetTracker
from control_plane.queue.kafka.topics import Topics
from control_plane.runtime import build_runtime
from control_plane.settings import Settings
from tests.unit.api.fake_engine import FakeEngine


def test_ingest_message_parsing():
    body, key, rid = parse_message(
        json.dumps(
            {
                "api_key": " k1 ",
                "request_id": "r-1",
                "text": "Hi.",
                "source_lang": "en",
                "target_lang": "pt",
            }  # fmt: skip
        ).encode(),
        10_000,
    )
    assert key == "k1" and rid == "r-1"
    assert body == {"text": "Hi.", "source_lang": "en", "target_lang": "pt"}
    cases = [
        (b"{x", "malformed_json"),
        (b'"just a string"', "invalid_request"),
        (b'{"text": "Hi."}', "unauthorized"),
        (b'{"api_key": "k", "request_id": 5}', "invalid_request"),
        (b"x" * 20_000, "content_too_large"),
        (None, "malformed_json"),
    ]
    for raw, reason in cases:
        with pytest.raises(Rejected) as err:
            parse_message(raw, 10_000)
        assert err.value.code == reason, raw


def test_ingest_job_ids_are_deterministic():
    a = job_id_for("u1", "r1", "t", 0, 5)
    assert a == job_id_for("u1", "r1", "t", 3, 99)  # same user + request id: same job
    assert a != job_id_for("u2", "r1", "t", 0, 5)
    assert job_id_for("u1", None, "t", 0, 5) == job_id_for("u1", None, "t", 0, 5)
    assert job_id_for("u1", None, "t", 0, 5) != job_id_for("u1", None, "t", 0, 6)
    uuid.UUID(a)


class FakeQueue:
    def __init__(self):
        self.topics = Topics("t.")
        self.client_id = "test"
        self.published = []
        self.dead = []

    async def start(self):
        pass

    async def publish(self, message):
        self.published.append(message)

    async def dead_letter(self, reason, message, **meta):
        self.dead.append((reason, message, meta))

    def depth(self):
        return {}

    async def close(self):
        pass


@pytest.fixture
async def ingest(tmp_path):
    settings = Settings(data_dir=tmp_path, chunk_words=20, max_words=50, log_format="text")
    queue = FakeQueue()
    svc = build_runtime(settings, client=LocalInferenceClient(engine=FakeEngine()), queue=queue)
    await svc.db.run(svc.db.migrate)
    await svc.client.start()
    consumer = IngestConsumer(settings, queue, svc)
    keys = {tier: create_user(svc.db.engine, f"{tier}@x.io", tier)[1] for tier in ("basic", "pro")}
    yield consumer, queue, svc, keys
    await svc.client.close()
    svc.db.close()


async def deliver(consumer, value, offset=0, partition=0):
    tp = TopicPartition("t.ingest", partition)
    tracker = OffsetTracker()
    tracker.add(offset)
    rec = SimpleNamespace(key=b"k", value=value, offset=offset, headers=[])
    await consumer._handle(tp, rec, tracker)
    assert tracker.committable() == offset + 1  # handled: the offset may be committed


def body(key, **fields):
    b = {"api_key": key, "text": "Hello there. How are you?", "source_lang": "en",
         "target_lang": "pt"}  # fmt: skip
    b.update(fields)
    return json.dumps({k: v for k, v in b.items() if v is not None}).encode()


async def test_valid_request_becomes_one_job(ingest):
    consumer, queue, svc, keys = ingest
    raw = body(keys["pro"], request_id="r-1", priority="high")
    await deliver(consumer, raw, offset=0)
    await deliver(consumer, raw, offset=7)  # redelivered / produced twice: same job
    with svc.db.session() as s:
        jobs = list(s.exec(select(Job)))
    assert len(jobs) == 1 and jobs[0].priority == "high" and jobs[0].status == "queued"
    assert [m.job_id for m in queue.published] == [jobs[0].id]
    assert consumer.admitted == 1 and consumer.duplicates == 1 and not queue.dead
    # without request_id the message's position is the identity
    await deliver(consumer, body(keys["pro"]), offset=3)
    await deliver(consumer, body(keys["pro"]), offset=3)
    await deliver(consumer, body(keys["pro"]), offset=4)
    assert consumer.admitted == 3


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda k: b"{oops", "malformed_json"),
        (lambda k: b"[]", "invalid_request"),
        (lambda k: body(None), "unauthorized"),
        (lambda k: body("mtb_nope"), "unauthorized"),
        (lambda k: body(k["basic"], priority="high"), "priority_not_allowed"),
        (lambda k: body(k["pro"], target_lang="xx"), "unsupported_language_pair"),
        (lambda k: body(k["pro"], text="word " * 51), "content_too_large"),
        (lambda k: body(k["pro"], priority="soon"), "invalid_request"),
        (lambda k: body(k["pro"], extra=1), "invalid_request"),
        (lambda k: body(k["pro"], request_id=""), "invalid_request"),
    ],
)
async def test_invalid_requests_are_dead_lettered_with_the_rest_code(ingest, make, reason):
    consumer, queue, svc, keys = ingest
    raw = make(keys)
    await deliver(consumer, raw, offset=5, partition=2)
    assert len(queue.dead) == 1, queue.dead
    got, message, meta = queue.dead[0]
    assert got == reason and message
    assert (meta["source_topic"], meta["partition"], meta["offset"]) == ("t.ingest", 2, 5)
    assert meta["value"] == raw
    assert not queue.published


def raw_body(key, tail: bytes = b"", text: bytes = b'"Hello there."') -> bytes:
    return (
        b'{"api_key": "' + key.encode() + b'", "text": ' + text
        + b', "source_lang": "en", "target_lang": "pt"' + tail + b"}"
    )  # fmt: skip


HOSTILE = [  # (name, message from the keys, dead-letter reason)
    ("5000-digit integer", lambda k: raw_body(k["pro"], b', "priority": ' + b"9" * 5000),
     "malformed_json"),
    ("lone surrogate in text", lambda k: raw_body(k["pro"], text=b'"hi \\ud800"'),
     "malformed_json"),
    ("lone surrogate in a key", lambda k: raw_body(k["pro"], b', "\\udc00": 1'), "malformed_json"),
    ("lone surrogate in api_key", lambda k: body(b"mtb_\\ud800".decode("unicode_escape")),
     "malformed_json"),
    ("NaN", lambda k: raw_body(k["pro"], b', "metadata": {"x": NaN}'), "malformed_json"),
    ("Infinity", lambda k: raw_body(k["pro"], b', "metadata": {"x": -Infinity}'),
     "malformed_json"),
    ("duplicate keys", lambda k: raw_body(k["pro"], b', "text": "again"'), "malformed_json"),
    ("invalid UTF-8", lambda k: raw_body(k["pro"], text=b'"\xc3\x28"'), "malformed_json"),
    ("raw control character", lambda k: raw_body(k["pro"], text=b'"a\x01b"'), "malformed_json"),
    ("empty", lambda k: b"", "malformed_json"),
    ("no value", lambda k: None, "malformed_json"),
    ("deep nesting", lambda k: b"[" * 100_000, "json_too_complex"),
    ("many keys", lambda k: raw_body(k["pro"], b"".join(b', "k%d": 0' % i for i in range(20_000))),
     "json_too_complex"),
    ("8 MiB of arrays", lambda k: b"[" + b"[]," * 2_500_000 + b"[]]", "json_too_complex"),
    ("over the size limit", lambda k: b"[" + b" " * (8 * 1024 * 1024) + b"]", "content_too_large"),
    ("a string", lambda k: b'"hello"', "invalid_request"),
    ("null", lambda k: b"null", "invalid_request"),
    ("non-ASCII api_key", lambda k: body("mtb_\u00e9\u00e9\u00e9"), "unauthorized"),
    ("huge api_key", lambda k: body("mtb_" + "a" * 100_000), "unauthorized"),
    ("api_key a number", lambda k: raw_body(k["pro"]).replace(
        b'"api_key": "' + k["pro"].encode() + b'"', b'"api_key": 12'), "unauthorized"),
    ("NUL in text", lambda k: body(k["pro"], text="a\u0000b"), "invalid_request"),
    ("text a number", lambda k: raw_body(k["pro"], text=b"12"), "invalid_request"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "reason"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
async def test_hostile_messages_are_dead_lettered_quickly(ingest, make, reason):
    """Whatever the bytes: a dead letter with a reason, at once (never an exception the
    consumer would retry for ever, never a long stall)."""
    consumer, queue, svc, keys = ingest
    raw = make(keys)
    t0 = time.perf_counter()
    await asyncio.wait_for(deliver(consumer, raw, offset=9), 10)
    assert time.perf_counter() - t0 < 3.0
    assert [d[0] for d in queue.dead] == [reason], queue.dead
    assert queue.dead[0][1]  # a readable message
    assert not queue.published and consumer.admitted == 0


@pytest.mark.parametrize(
    "text",
    [
        "\u202e\u05d0\u05d1 RTL \u200b\u200d zero-width, a\u0301\u0301 combining, \U0001f600.",
        "escaped controls \u0001\u001b[31m are text.",
        "a" * 1_000_000,  # one 1 MB word: cut into bounded segments and chunks
    ],
    ids=["rtl-zero-width-combining", "control-characters", "1-mb-word"],
)
async def test_odd_but_valid_text_becomes_a_job(ingest, text):
    consumer, queue, svc, keys = ingest
    raw = b"\xef\xbb\xbf" + body(keys["pro"], text=text)  # with a BOM, which is skipped
    await asyncio.wait_for(deliver(consumer, raw, offset=11), 30)
    assert not queue.dead and consumer.admitted == 1
    with svc.db.session() as s:
        job = s.exec(select(Job)).one()
    assert job.word_count == len(text.split()) and len(queue.published) == job.chunk_count


async def test_translation_options_through_ingest(ingest):
    """The ingest topic takes REST's translation options; glossary_id is resolved for the
    message's user (another user's id is dead-lettered as glossary_not_found)."""
    from control_plane.jobs import glossaries

    consumer, queue, svc, keys = ingest

    who = svc.auth.authenticate(f"Bearer {keys['pro']}")
    other = svc.auth.authenticate(f"Bearer {keys['basic']}")
    mine = glossaries.create(svc.db.engine, who.user_id, "ui", {"file": "arquivo"})
    theirs = glossaries.create(svc.db.engine, other.user_id, "ui", {"file": "ficheiro"})
    raw = body(
        keys["pro"],
        request_id="opts",
        text="Open the file.",
        format="text",
        do_not_translate=["Acme"],
        glossary={"open": "abrir"},
        glossary_id=mine.id,
    )
    await deliver(consumer, raw, offset=1)
    assert not queue.dead, queue.dead
    with svc.db.session() as s:
        (job,) = list(s.exec(select(Job)))
    assert job.glossary_id == mine.id and json.loads(job.options)["glossary"] == {
        "file": "arquivo",
        "open": "abrir",
    }
    await deliver(consumer, body(keys["pro"], glossary_id=theirs.id), offset=2)
    await deliver(consumer, body(keys["pro"], glossary={"x": ""}), offset=3)
    assert [d[0] for d in queue.dead] == ["glossary_not_found", "invalid_request"]
    assert len(queue.published) == 1
