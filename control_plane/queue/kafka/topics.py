"""Kafka topic layout, message (de)serialization and trace-context headers.

Topics (``MTB_KAFKA_TOPIC_PREFIX``, default ``mtb.``; created by ``ensure_topics`` with
``MTB_KAFKA_PARTITIONS`` partitions, replication factor 1 on the local single node):

==========================  =============================================================
``<p>chunks.critical``      chunk messages, one topic per priority (strict priority:
``<p>chunks.high``          workers pause lower-priority partitions while a more urgent
``<p>chunks.normal``        one has backlog)
``<p>chunks.retry``         chunks whose inference failed; delayed by the ``mtb-not-before``
                            header (exponential backoff), carry their own priority
``<p>dead-letter``          chunks that failed ``max_chunk_attempts`` times and malformed
                            ingest or chunk messages, each with a reason
``<p>ingest``               bulk job requests (schema in ``control_plane.jobs.ingest``)
``<p>results``              one event per finished job (completed / failed)
==========================  =============================================================

Every message is keyed by the job id (all chunks of a job land on one partition of a
topic). Values are UTF-8 JSON; Kafka headers carry the W3C trace context (``traceparent``,
``tracestate``) and bookkeeping (``mtb-attempt``, ``mtb-not-before``).

Chunk message value (schema version 1)::

    {"v": 1, "job_id": "<uuid>", "chunk_index": 0, "priority": "normal",
     "source_lang": "en", "target_lang": "pt", "word_count": 812, "attempt": 0,
     "enqueued_at": 1764130000.5}

A chunk message is a pointer (job_id, chunk_index) plus scheduling hints: workers take the
language pair, priority and size from the database, and the attempt count is capped by how
often the database saw the chunk taken, so a forged message cannot fail or corrupt a job.

Dead-letter value (API keys masked: ``redact_secrets``)::

    {"reason": "invalid_request", "message": "...", "details": [...] | null,
     "source_topic": "mtb.ingest", "source_partition": 0, "source_offset": 17,
     "key": "...", "value": "<the original value, as text, at most 64 KiB>",
     "headers": {"traceparent": "..."}, "failed_at": "2026-11-26T05:30:00+00:00"}

Result event value::

    {"event": "job.completed", "job_id": "...", "status": "completed", "priority": "high",
     "source_language": "en", "target_language": "pt", "word_count": 120, "error": null,
     "cost_usd": 0.0001, "processing_time_ms": 1847, "confidence_score": 0.94,
     "completed_at": "...", "result_url": "/api/v1/jobs/<id>/result"}
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from control_plane.domain import PRIORITIES, PRIORITY_RANK
from control_plane.queue.base import ChunkMessage

SCHEMA_VERSION = 1
MAX_DLQ_VALUE = 64 * 1024
TRACE_HEADERS = ("traceparent", "tracestate")


class MessageError(ValueError):
    """A message that cannot be decoded; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Topics:
    prefix: str = "mtb."

    @classmethod
    def from_settings(cls, settings) -> Topics:  # noqa: ANN001
        return cls(settings.kafka_topic_prefix)

    def chunks(self, priority: str) -> str:
        if priority not in PRIORITY_RANK:
            raise ValueError(f"unknown priority {priority!r}")
        return f"{self.prefix}chunks.{priority}"

    @property
    def retry(self) -> str:
        return f"{self.prefix}chunks.retry"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}dead-letter"

    @property
    def ingest(self) -> str:
        return f"{self.prefix}ingest"

    @property
    def results(self) -> str:
        return f"{self.prefix}results"

    def chunk_topics(self) -> list[str]:
        return [self.chunks(p) for p in PRIORITIES]

    def consumed(self, priorities: str = "") -> list[str]:
        """The chunk topics a worker subscribes to: ``priorities`` is a comma-separated
        subset of the priorities and ``retry`` (``MTB_WORKER_PRIORITIES``; empty: all), so
        one Deployment per priority can share the consumer group (k8s/scaling-policy.yaml)."""
        wanted = [p.strip() for p in priorities.split(",") if p.strip()]
        known = {p: self.chunks(p) for p in PRIORITIES} | {"retry": self.retry}
        unknown = [p for p in wanted if p not in known]
        if unknown:
            raise ValueError(f"unknown worker priorities {unknown}; known: {list(known)}")
        return [t for p, t in known.items() if not wanted or p in wanted]

    def all(self) -> list[str]:
        return [*self.chunk_topics(), self.retry, self.dead_letter, self.ingest, self.results]

    def priority_of(self, topic: str) -> str | None:
        """The priority a chunk topic carries (None for the retry topic and others)."""
        for p in PRIORITIES:
            if topic == self.chunks(p):
                return p
        return None


class KafkaAuthError(RuntimeError):
    """The broker refused the configured credentials: retrying cannot help."""


async def ensure_topics(
    bootstrap: str, topics: Iterable[str], partitions: int, **client: Any
) -> list[str]:
    """Create the topics that are missing (idempotent; racing creators are fine).
    ``client``: security arguments (``control_plane.security.kafka_client_kwargs``)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from control_plane.security import is_kafka_auth_error

    names = list(dict.fromkeys(topics))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000, **client)
    try:
        await admin.start()
    except Exception as exc:
        with contextlib.suppress(Exception):
            await admin.close()
        if client.get("sasl_mechanism") and not is_kafka_auth_error(exc):
            # aiokafka reports a refused login only as "unable to bootstrap" (the reason is
            # logged, not chained): one direct connection tells the two apart
            exc = await _login_error(bootstrap, client) or exc
        if is_kafka_auth_error(exc):
            user = client.get("sasl_plain_username")
            raise KafkaAuthError(
                f"Kafka at {bootstrap} refused the credentials (MTB_KAFKA_SASL_USERNAME="
                f"{user!r}, MTB_KAFKA_SASL_MECHANISM={client.get('sasl_mechanism')!r}): {exc}"
            ) from exc
        raise
    try:
        existing = set(await admin.list_topics())
        wanted = [n for n in names if n not in existing]
        if not wanted:
            return []
        resp = await admin.create_topics(
            [NewTopic(n, max(1, partitions), 1) for n in wanted], timeout_ms=30_000
        )
        created = []
        for err in resp.topic_errors:
            topic, code = err[0], err[1]
            if code == 0:
                created.append(topic)
            elif code != 36:  # TOPIC_ALREADY_EXISTS
                raise RuntimeError(f"creating Kafka topic {topic!r} failed: error {code} {err[2:]}")
        return created
    finally:
        await admin.close()


async def _login_error(bootstrap: str, client: dict[str, Any]) -> BaseException | None:
    """The authentication error of one direct connection to the first bootstrap server,
    or None when it logs in (or fails for another reason)."""
    from aiokafka.conn import create_conn

    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        conn = await create_conn(host, int(port), request_timeout_ms=10_000, **client)
    except Exception as exc:  # noqa: BLE001 - only its kind matters here
        from control_plane.security import is_kafka_auth_error

        return exc if is_kafka_auth_error(exc) else None
    conn.close()
    return None


# -- headers -------------------------------------------------------------------------


def headers_to_dict(headers: Iterable[tuple[str, bytes]] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in headers or ():
        if value is None:
            continue
        out[key] = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    return out


def dict_to_headers(headers: Mapping[str, str]) -> list[tuple[str, bytes]]:
    return [(k, str(v).encode()) for k, v in headers.items()]


def trace_headers(job_id: str) -> dict[str, str]:
    """W3C trace context for a message of ``job_id``.

    The active span's context when there is one (OpenTelemetry's global propagator);
    otherwise a context whose trace id is the job id itself (job ids are uuid4, 128 bits),
    so every message of one job shares one trace id even without a tracer configured."""
    from opentelemetry import propagate, trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if "traceparent" in carrier:
        return carrier
    try:
        trace_id = uuid.UUID(job_id).int
    except ValueError:
        trace_id = random.getrandbits(128)
    ctx = SpanContext(
        trace_id=trace_id or 1,
        span_id=random.getrandbits(64) or 1,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    TraceContextTextMapPropagator().inject(
        carrier, context=trace.set_span_in_context(NonRecordingSpan(ctx))
    )
    return carrier


def trace_id_of(headers: Mapping[str, str]) -> str | None:
    """The 32-hex trace id of a ``traceparent`` header (for logs)."""
    parts = headers.get("traceparent", "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


# -- chunk messages --------------------------------------------------------------------


def encode_chunk(msg: ChunkMessage, not_before: float | None = None) -> tuple[bytes, bytes, list]:
    """(key, value, headers) of a chunk message; trace headers are added when missing."""
    body = {
        "v": SCHEMA_VERSION,
        "job_id": msg.job_id,
        "chunk_index": msg.chunk_index,
        "priority": msg.priority,
        "source_lang": msg.source_lang,
        "target_lang": msg.target_lang,
        "word_count": msg.word_count,
        "attempt": msg.attempt,
        "enqueued_at": msg.enqueued_at,
    }
    headers = {k: v for k, v in msg.headers.items() if k in TRACE_HEADERS}
    if "traceparent" not in headers:
        headers.update(trace_headers(msg.job_id))
        msg.headers.update(headers)
    headers["mtb-attempt"] = str(msg.attempt)
    if not_before is not None:
        headers["mtb-not-before"] = f"{not_before:.3f}"
    value = json.dumps(body, separators=(",", ":")).encode()
    return msg.job_id.encode(), value, dict_to_headers(headers)


def decode_chunk(
    value: bytes | None, headers: Iterable[tuple[str, bytes]] | None = None
) -> tuple[ChunkMessage, float | None]:
    """(message, not_before) from a chunk topic record; MessageError when malformed."""
    if value is None:
        raise MessageError("empty_message", "chunk message has no value")
    try:
        data = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageError("malformed_json", f"chunk message is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MessageError("invalid_message", "chunk message must be a JSON object")
    version = data.get("v", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise MessageError("unsupported_version", f"chunk message schema v{version} unknown")
    try:
        msg = ChunkMessage(
            job_id=_typed(data, "job_id", str),
            chunk_index=_typed(data, "chunk_index", int),
            priority=_typed(data, "priority", str),
            source_lang=_typed(data, "source_lang", str),
            target_lang=_typed(data, "target_lang", str),
            word_count=_typed(data, "word_count", int, 0),
            attempt=_typed(data, "attempt", int, 0),
            enqueued_at=float(_typed(data, "enqueued_at", (int, float), time.time())),
        )
    except (KeyError, TypeError) as exc:
        raise MessageError("invalid_message", f"chunk message: {exc}") from exc
    if msg.priority not in PRIORITY_RANK:
        raise MessageError("invalid_message", f"chunk message: unknown priority {msg.priority!r}")
    if msg.chunk_index < 0 or msg.attempt < 0:
        raise MessageError("invalid_message", "chunk message: negative chunk_index or attempt")
    hdrs = headers_to_dict(headers)
    msg.headers = {k: v for k, v in hdrs.items() if k in TRACE_HEADERS}
    not_before = None
    if "mtb-not-before" in hdrs:
        try:
            not_before = float(hdrs["mtb-not-before"])
        except ValueError:
            not_before = None
    return msg, not_before


def _typed(data: dict, key: str, kind, default: Any = ...) -> Any:  # noqa: ANN001
    if key not in data:
        if default is ...:
            raise KeyError(f"missing field {key!r}")
        return default
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"field {key!r} has the wrong type ({type(value).__name__})")
    return value


# -- dead letters and results ----------------------------------------------------------

REDACTED = "[redacted]"
# an API key anywhere (mtb_ + 43 url-safe characters; shorter runs too, from 16 on: a
# truncated key is still most of a secret), and the value of any "api_key" member even
# when the JSON around it is malformed
_KEY_RE = re.compile(rb"mtb_[A-Za-z0-9_\-]{16,}")
_API_KEY_MEMBER_RE = re.compile(rb'("api_key"\s*:\s*)"(?:[^"\\]|\\.)*("|$)', re.DOTALL)


def redact_secrets(value: bytes) -> bytes:
    """``value`` with API keys masked, for the dead-letter topic (whose readers are
    operators, not the key's owner). A JSON object's ``api_key`` member is replaced; then,
    whatever the JSON's state, anything shaped like a key or an ``"api_key": "..."``
    member is masked in the raw text."""
    try:
        data = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        data = None
    if isinstance(data, dict) and "api_key" in data:
        data["api_key"] = REDACTED
        try:
            value = json.dumps(data, ensure_ascii=False).encode("utf-8")
        except (ValueError, RecursionError):
            pass
    value = _API_KEY_MEMBER_RE.sub(rb'\1"' + REDACTED.encode() + rb'"', value)
    return _KEY_RE.sub(b"mtb_" + REDACTED.encode(), value)


def dead_letter_value(
    reason: str,
    message: str,
    *,
    source_topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | None = None,
    value: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    details: Any = None,
) -> bytes:
    text = None
    if value is not None:
        # only what is kept is redacted (plus a margin, so a key across the cut is masked
        # before the cut): an 8 MiB value would hold the event loop for a JSON parse
        kept = redact_secrets(value[: MAX_DLQ_VALUE + 256])[:MAX_DLQ_VALUE]
        text = kept.decode("utf-8", errors="replace")
    if key is not None:
        key = redact_secrets(key)
    body = {
        "reason": reason,
        "message": message,
        "details": details,
        "source_topic": source_topic,
        "source_partition": partition,
        "source_offset": offset,
        "key": key.decode("utf-8", errors="replace") if key is not None else None,
        "value": text,
        "headers": dict(headers or {}),
        "failed_at": datetime.now(UTC).isoformat(),
    }
    return json.dumps(body, ensure_ascii=False, default=str).encode()


def result_event(event: dict[str, Any]) -> bytes:
    """A results-topic value: the finished-job event (control_plane.jobs.events)."""
    return json.dumps(event, ensure_ascii=False).encode()
