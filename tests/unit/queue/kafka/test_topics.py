"""Kafka message (de)serialization: chunk messages, trace headers, dead letters (the ingest
message schema: tests/unit/jobs/test_ingest.py)."""

from __future__ import annotations

import json
import uuid

import pytest

from control_plane.queue.base import ChunkMessage
from control_plane.queue.kafka.topics import (
    MessageError,
    Topics,
    dead_letter_value,
    decode_chunk,
    encode_chunk,
    headers_to_dict,
    trace_headers,
    trace_id_of,
)


def test_topic_names_follow_the_prefix():
    t = Topics("t1.")
    assert t.all() == [
        "t1.chunks.critical",
        "t1.chunks.high",
        "t1.chunks.normal",
        "t1.chunks.retry",
        "t1.dead-letter",
        "t1.ingest",
        "t1.results",
    ]
    assert t.priority_of("t1.chunks.high") == "high"
    assert t.priority_of("t1.chunks.retry") is None
    with pytest.raises(ValueError):
        t.chunks("urgent")


def test_a_worker_consumes_the_chosen_priorities_only():
    t = Topics("t1.")
    assert t.consumed("") == [*t.chunk_topics(), t.retry]
    assert t.consumed("critical") == ["t1.chunks.critical"]
    assert t.consumed(" retry, high") == ["t1.chunks.high", "t1.chunks.retry"]
    with pytest.raises(ValueError, match="urgent"):
        t.consumed("critical,urgent")


def test_chunk_round_trip_keyed_by_job_with_trace_context():
    job = str(uuid.uuid4())
    msg = ChunkMessage(job, 3, "high", "en", "pt", word_count=812, attempt=1)
    key, value, headers = encode_chunk(msg, not_before=123.5)
    assert key == job.encode()
    hdrs = headers_to_dict(headers)
    assert hdrs["mtb-attempt"] == "1" and hdrs["mtb-not-before"] == "123.500"
    # without an active span the trace id is the job id: one trace per job
    assert trace_id_of(hdrs) == uuid.UUID(job).hex
    back, not_before = decode_chunk(value, headers)
    assert not_before == 123.5
    assert (back.job_id, back.chunk_index, back.priority, back.word_count, back.attempt) == (
        job,
        3,
        "high",
        812,
        1,
    )
    assert back.headers["traceparent"] == hdrs["traceparent"]
    # re-encoding keeps the trace context (retry of the same delivery)
    _, _, again = encode_chunk(back)
    assert headers_to_dict(again)["traceparent"] == hdrs["traceparent"]


def test_active_span_context_is_propagated():
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    ctx = SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(1))
    with trace.use_span(NonRecordingSpan(ctx)):
        carrier = trace_headers(str(uuid.uuid4()))
    assert carrier["traceparent"] == f"00-{0xABC:032x}-{0xDEF:016x}-01"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty_message"),
        (b"\xff\xfe", "malformed_json"),
        (b"{nope", "malformed_json"),
        (b"[1, 2]", "invalid_message"),
        (b'{"v": 9, "job_id": "j"}', "unsupported_version"),
        (b'{"job_id": "j", "chunk_index": 0, "priority": "high"}', "invalid_message"),
        (
            b'{"job_id": "j", "chunk_index": "0", "priority": "high", "source_lang": "en",'
            b' "target_lang": "pt"}',
            "invalid_message",
        ),
        (
            b'{"job_id": "j", "chunk_index": 0, "priority": "urgent", "source_lang": "en",'
            b' "target_lang": "pt"}',
            "invalid_message",
        ),
        (
            b'{"job_id": "j", "chunk_index": true, "priority": "high", "source_lang": "en",'
            b' "target_lang": "pt"}',
            "invalid_message",
        ),
    ],
)
def test_malformed_chunk_messages_have_a_reason(value, reason):
    with pytest.raises(MessageError) as err:
        decode_chunk(value, [])
    assert err.value.reason == reason


def test_dead_letter_value_keeps_the_original_and_the_reason():
    body = json.loads(
        dead_letter_value(
            "malformed_json",
            "not JSON",
            source_topic="t.ingest",
            partition=2,
            offset=41,
            key=b"k",
            value=b"\xff{bad",
            headers={"traceparent": "x"},
        )
    )
    assert body["reason"] == "malformed_json" and body["message"] == "not JSON"
    assert (body["source_topic"], body["source_partition"], body["source_offset"]) == (
        "t.ingest",
        2,
        41,
    )
    assert body["value"].endswith("{bad") and body["key"] == "k"
    assert body["failed_at"]
