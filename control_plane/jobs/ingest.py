"""Bulk ingestion: job requests written straight to the Kafka ingest topic.

Producers write one JSON object per message to ``<prefix>ingest`` (default
``mtb.ingest``), UTF-8, any key (the request id is a good one). Schema::

    {
      "api_key":      "mtb_...",        # required: the submitting user's API key, the same
                                        # key the REST API takes as "Authorization: Bearer"
      "request_id":   "order-123",      # optional, at most 200 characters: makes the
                                        # request idempotent (same user + request_id ->
                                        # same job, however often it is delivered)
      "content":         "Hello world.", # required, as in POST /api/v1/translate (the
                                         # design's names; text, source_lang and
                                         # target_lang are accepted too)
      "source_language": "en",           # required
      "target_language": "pt",           # required
      "priority":        "normal",       # optional: critical | high | normal (tier-capped)
      "callback_url":    "https://...",  # optional: signed webhook on completion/failure
      "metadata":        {"domain": "x"}, # optional: kept with the job (at most 4 KiB)
      "format":          "text",         # optional: text | html | xml
      "do_not_translate": ["Acme"],      # optional: strings kept exactly
      "glossary":        {"file": "arquivo"},  # optional: inline glossary
      "glossary_id":     "..."           # optional: one of the api_key user's stored
                                         # glossaries (merged; inline terms win)
    }

Every message is validated like a REST submission, with the API's own code: the
authenticator, then ``control_plane.jobs.admission.admit`` (the ``TranslateRequest``
model, the tier's priority cap, the served language pairs, ``MTB_MAX_WORDS``), after
``MTB_MAX_BODY_BYTES`` on the raw message. Valid requests become jobs
exactly as ``POST /api/v1/translate`` makes them (one DB transaction, chunks published to
the priority topics). The job id is derived from (user, request_id), or from the message's
topic/partition/offset when there is no request_id, so a redelivered message never makes
a second job. Invalid ones go to the dead-letter topic with ``reason`` set to the error
code REST would answer with (``malformed_json``, ``invalid_request``, ``unauthorized``,
``forbidden``, ``priority_not_allowed``, ``unsupported_language_pair``,
``content_too_large``, ``glossary_not_found``, ``invalid_markup``), a readable
``message`` and, for field errors, ``details``.
The REST rate limit does not apply to this bulk path; the word quota does
(``control_plane.security.WordQuota``): a message over its user's quota is not
dead-lettered but waits (its offset is not committed) and is tried again when the window
has room, at most every 5 minutes; while it waits it holds no admission slot, so other
users' messages go on. At most ``MTB_INGEST_QUOTA_BACKLOG`` messages wait at once; beyond
that the consumer pauses (bounded memory). Dead letters never carry the API key: the
record's value is redacted (``queue.kafka.topics.redact_secrets``), malformed JSON included.

The consumer (group ``<MTB_KAFKA_GROUP>-ingest``) admits up to ``MTB_INGEST_CONCURRENCY``
messages at a time and commits an offset only once its job is in the database (or its
dead letter is on the broker). Database or broker trouble is retried, never dead-lettered.
A record's ``traceparent`` header (W3C trace context) is honoured: the job's spans join
the producer's trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from control_plane import tracing
from control_plane.domain import DomainError
from control_plane.jobs.admission import Rejected  # REST's own: the code is the reason
from control_plane.jobs.json_body import THREAD_BYTES, BodyError, parse_json
from control_plane.queue.kafka.consumer import GroupConsumer
from control_plane.queue.kafka.offsets import OffsetTracker
from control_plane.queue.kafka.topics import headers_to_dict, redact_secrets
from control_plane.security import kafka_client_kwargs

log = logging.getLogger(__name__)
MAX_API_KEY_CHARS = 4096  # an API key is 47 characters, a JWT a few hundred
INGEST_NAMESPACE = uuid.UUID("8a0c1f0e-4d5b-4b7e-9a51-2c6f5d1e7b10")


class OverQuota(Exception):
    """The message's user is over a word quota: wait ``retry_after_s`` and try again."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


QUOTA_RETRY_MAX_S = 300.0  # an over-quota message is tried again at least this often


def parse_message(value: bytes | None, max_bytes: int) -> tuple[dict, str, str | None]:
    """(request body for TranslateRequest, api_key, request_id) or Rejected. The JSON is
    read as REST reads a body (control_plane.jobs.json_body: bounded nesting and size, no
    NaN, no huge numbers, no duplicate keys, no unpaired surrogates): whatever the bytes,
    the answer is a body or a Rejected with a reason, never another exception (which the
    consumer would take for an outage and retry for ever)."""
    if value is None:
        raise Rejected("malformed_json", "ingest message has no value")
    if len(value) > max_bytes:
        raise Rejected("content_too_large", f"message over the {max_bytes}-byte limit")
    try:
        body = parse_json(value)
    except BodyError as exc:
        raise Rejected(exc.code, exc.message.replace("request body", "message", 1)) from exc
    if not isinstance(body, dict):
        raise Rejected("invalid_request", "message must be a JSON object")
    api_key = body.pop("api_key", None)
    if not isinstance(api_key, str) or not api_key.strip():
        raise Rejected("unauthorized", "api_key is missing (the submitting user's API key)")
    api_key = api_key.strip()
    if len(api_key) > MAX_API_KEY_CHARS or not (api_key.isascii() and api_key.isprintable()):
        raise Rejected(
            "unauthorized",
            f"api_key must be an API key or a JWT: printable ASCII, at most "
            f"{MAX_API_KEY_CHARS} characters",
        )
    request_id = body.pop("request_id", None)
    if request_id is not None and (
        not isinstance(request_id, str) or not 0 < len(request_id) <= 200
    ):
        raise Rejected(
            "invalid_request",
            "request_id must be a string of 1 to 200 characters",
            [{"field": "request_id", "message": "invalid request_id", "type": "value_error"}],
        )
    return body, api_key, request_id


async def parse_message_async(value: bytes | None, max_bytes: int) -> tuple[dict, str, str | None]:
    """``parse_message``, in a thread for a value over THREAD_BYTES (an 8 MiB message is
    not parsed on the event loop)."""
    if value is not None and THREAD_BYTES < len(value) <= max_bytes:
        return await asyncio.to_thread(parse_message, value, max_bytes)
    return parse_message(value, max_bytes)


def producer_context(rec):  # noqa: ANN001, ANN201 - a ConsumerRecord; an otel Context
    """The trace context a producer put in the record's Kafka headers (``traceparent``,
    ``tracestate``), or None: the job's ``job.submit`` span is then a root span."""
    try:
        headers = headers_to_dict(rec.headers)
    except Exception:  # noqa: BLE001 - odd headers must not stop admission
        return None
    return tracing.extract(headers) if tracing.has_context(headers) else None


def job_id_for(
    user_id: str, request_id: str | None, topic: str, partition: int, offset: int
) -> str:
    name = f"{user_id}/{request_id}" if request_id else f"{topic}/{partition}/{offset}"
    return str(uuid.uuid5(INGEST_NAMESPACE, name))


class IngestConsumer(GroupConsumer):
    """Admits ingest messages as jobs (see the module docstring); group membership,
    polling and commits come from ``GroupConsumer``."""

    label = "ingest"
    max_records = 200

    def __init__(self, settings, queue, svc):  # noqa: ANN001 - queue: KafkaChunkQueue; svc: runtime.Runtime
        super().__init__(
            settings,
            topics=[queue.topics.ingest],
            group_id=f"{settings.kafka_group}-ingest",
            client_id=f"{queue.client_id}-ingest",
            client_kwargs=kafka_client_kwargs(settings),
        )
        self.queue = queue
        self.svc = svc
        self.topic = queue.topics.ingest
        self.admitted = 0
        self.duplicates = 0
        self.rejected = 0
        self._sem = asyncio.Semaphore(max(1, settings.ingest_concurrency))
        self._tasks: set[asyncio.Task] = set()
        self._quota_waiting = 0  # tasks sleeping for their user's word quota
        self.quota_waits = 0

    async def before_poll(self) -> None:
        # back-pressure: stop fetching while the admission slots are all taken
        # (messages waiting for their user's word quota hold no slot, but at most
        # MTB_INGEST_QUOTA_BACKLOG of them are kept)
        client = self.client
        active = len(self._tasks) - self._quota_waiting
        busy = active >= 4 * max(1, self.settings.ingest_concurrency) or (
            self._quota_waiting >= max(1, self.settings.ingest_quota_backlog)
        )
        assigned = set(self.trackers)
        if busy and assigned:
            client.pause(*assigned)
        elif client.paused():
            client.resume(*(set(client.paused()) & assigned))

    async def on_records(self, data: dict[Any, list[Any]]) -> None:
        for tp, records in data.items():
            tracker = self.trackers.get(tp)
            if tracker is None:
                continue
            for rec in records:
                tracker.add(rec.offset)
                task = asyncio.create_task(self._handle(tp, rec, tracker))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _handle(self, tp, rec, tracker: OffsetTracker) -> None:  # noqa: ANN001
        delay = 0.5
        while not self.closed:
            quota_wait = None
            async with self._sem:
                try:
                    # a producer's W3C traceparent header: the job's trace continues it
                    with tracing.attached(producer_context(rec)):
                        await self._admit(tp, rec)
                    tracker.done(rec.offset)
                    return
                except Rejected as exc:
                    self.rejected += 1
                    await self._dead_letter(tp, rec, exc)
                    tracker.done(rec.offset)
                    return
                except OverQuota as exc:
                    quota_wait = min(max(exc.retry_after_s or 60.0, 1.0), QUOTA_RETRY_MAX_S)
                    self.quota_waits += 1
                    log.info(
                        "ingest message over its user's word quota; waiting",
                        extra={"offset": rec.offset, "wait_s": round(quota_wait, 1),
                               "error": str(exc)},
                    )  # fmt: skip
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - DB/broker trouble: not the message's fault
                    log.warning(
                        "ingest admission failed; retrying",
                        extra={"offset": rec.offset, "error": repr(exc)},
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
            if quota_wait is not None:  # outside the slot: other users' messages go on
                self._quota_waiting += 1
                try:
                    await asyncio.sleep(quota_wait)
                finally:
                    self._quota_waiting -= 1

    async def _dead_letter(self, tp, rec, exc: Rejected) -> None:  # noqa: ANN001
        delay = 0.5
        while True:
            try:
                # the value is redacted by dead_letter_value; the record key and headers
                # are the producer's choice and may carry a key too (also kept out of logs)
                headers = {
                    k: redact_secrets(v.encode("utf-8", "replace")).decode("utf-8", "replace")
                    for k, v in headers_to_dict(rec.headers).items()
                }
                self.svc.metrics.dead_letters.labels(exc.code).inc()
                await self.queue.dead_letter(
                    exc.code,
                    str(exc),
                    key=redact_secrets(rec.key) if rec.key is not None else None,
                    source_topic=tp.topic,
                    partition=tp.partition,
                    offset=rec.offset,
                    value=rec.value,
                    headers=headers,
                    details=exc.details,
                )
                return
            except Exception as err:  # noqa: BLE001
                log.warning("dead-letter publish failed; retrying", extra={"error": repr(err)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _admit(self, tp, rec) -> None:  # noqa: ANN001
        from control_plane.auth import AuthError, Forbidden
        from control_plane.db import Job
        from control_plane.jobs.admission import admit, detects

        svc = self.svc
        body, api_key, request_id = await parse_message_async(
            rec.value, self.settings.max_body_bytes
        )
        try:
            who = await svc.db.run(svc.auth.authenticate, f"Bearer {api_key}")
        except AuthError as exc:
            raise Rejected("unauthorized", str(exc)) from exc
        except Forbidden as exc:
            raise Rejected("forbidden", str(exc)) from exc
        try:  # the REST API's own checks, in its order
            if len(rec.value or b"") > THREAD_BYTES or detects(body):  # off the loop
                req = await asyncio.to_thread(admit, body, who, svc.client, self.settings)
            else:
                req = admit(body, who, svc.client, self.settings)
        except Rejected as exc:
            if exc.transient:  # not the message's fault (engine loading): retry
                raise RuntimeError(exc.message) from exc
            raise
        await self._vet(who, req)
        req.job_id = job_id_for(who.user_id, request_id, tp.topic, tp.partition, rec.offset)

        def exists() -> bool:
            with svc.db.session() as session:
                return session.get(Job, req.job_id) is not None

        if await svc.db.run(exists):
            self.duplicates += 1
            log.info("ingest message already admitted", extra={"job_id": req.job_id})
            return
        version = svc.client.model_version(req.source_lang, req.target_lang)
        try:
            job = await svc.jobs.submit(req, version)
        except DomainError as exc:  # the request's fault (glossary_not_found, invalid_markup)
            if exc.transient:
                raise RuntimeError(exc.message) from exc
            raise Rejected(exc.code, exc.message, exc.details) from exc
        except Exception:
            if await svc.db.run(exists):  # a racing admission of the same message won
                self.duplicates += 1
                return
            raise
        svc.metrics.jobs_submitted.labels(job.priority).inc()
        self.admitted += 1
        log.debug("ingest job admitted", extra={"job_id": job.id})

    async def _vet(self, who, req) -> None:  # noqa: ANN001
        """The REST API's trust-boundary checks: an unsafe callback URL is a dead letter
        (``invalid_request``), a request over the user's word quota waits (OverQuota)."""
        from control_plane.security import (
            QuotaExceeded,
            UnsafeCallback,
            vet_callback_url,
        )

        svc = self.svc
        if req.callback_url:
            try:
                await vet_callback_url(req.callback_url, self.settings)
            except UnsafeCallback as exc:  # the same code and field details as REST's 422
                raise Rejected(exc.code, exc.message, exc.details) from exc
        words = req.word_count  # counted by admission
        try:
            await svc.db.run(svc.quota.check, svc.db.engine, who.user_id, who.tier, words)
        except QuotaExceeded as exc:
            if exc.retry_after_s is None:  # larger than a whole day's quota: never fits
                raise Rejected("content_too_large", exc.message) from exc
            raise OverQuota(exc.message, exc.retry_after_s) from exc

    async def close(self) -> None:
        self.closed = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.stop()
