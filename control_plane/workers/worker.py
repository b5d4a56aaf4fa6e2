"""A worker: chunks from the queue -> sentence segments -> cache -> batched inference ->
results in the database -> ack.

One worker takes ready chunks until it holds about ``batch_words`` words (less when less is
queued), so a batch mixes segments from many chunks and jobs. Segments are deduplicated and
sent in one call per language pair at the batch's most urgent priority; the engine (or
Triton) sorts them by length and cuts the batches, and the larger the call the less
padding. A critical job does not wait for a normal batch to end: urgent worker tasks take
only critical and high chunks, and their calls run first on the engine's lanes (Triton:
its priority queue). Before every call cancelled jobs are dropped, so cancelling stops
engine work at the next batch.

Errors are of two kinds (``is_infrastructure_error``). A dependency that is down - the
database, the broker, Triton - is no fault of the chunks: the worker keeps its batch, waits
(exponential backoff up to ``MTB_OUTAGE_BACKOFF_MAX_S``) and tries the batch again, without
spending the chunks' attempts, and meanwhile no worker on the queue takes new work
(``queue.hold``). An error of the content itself (the model fails on it, an unsupported
pair, a deadline) is retried ``MTB_MAX_CHUNK_ATTEMPTS`` times, then the chunk goes to the
dead letter and its job fails with a readable error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections import Counter
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from control_plane import tracing
from control_plane.db.database import is_database_unavailable
from control_plane.domain import PRIORITY_RANK
from control_plane.engine.base import Translation, UnsupportedPair
from control_plane.inference.base import InferenceClient, InferenceUnavailable
from control_plane.jobs.service import JobService, protection_for, weighted_confidence
from control_plane.metrics import Metrics
from control_plane.queue.base import ChunkQueue, Delivery
from control_plane.text.chunking import Layout, count_words
from control_plane.text.protect import run_async
from control_plane.text.spans import Protection, cache_version

log = logging.getLogger(__name__)

# errors of a chunk's content or of the engine on it: retried up to max_chunk_attempts
CONTENT_ERRORS = (TimeoutError, UnsupportedPair, RuntimeError, OSError, ValueError)
# A batch is cut by words, and a chunk of one "word" can hold a thousand segments (8 MiB of
# "a。" is 105 such chunks, one batch): the per-segment loops below run on the event loop
# and yield to it every YIELD_SEGMENTS segments (one loop over that batch held it ~110 ms)
YIELD_SEGMENTS = 512


# aiokafka errors that say "the broker did not answer" without being marked retriable
_KAFKA_AWAY = ("KafkaTimeoutError", "KafkaConnectionError", "NoBrokersAvailable")


def is_infrastructure_error(exc: BaseException) -> bool:
    """True when ``exc`` says a dependency is unavailable (inference backend loading, down
    or its circuit open; database unreachable; broker away), not that the chunk is bad.
    Such errors must delay jobs, never fail them, so they do not count as attempts.
    Exceptions raised from one (``raise ... from``) are judged by their cause too."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 8:
        seen += 1
        if isinstance(cur, InferenceUnavailable | ConnectionError):
            return True
        if type(cur).__module__.startswith("aiokafka") and (
            getattr(cur, "retriable", False) or type(cur).__name__ in _KAFKA_AWAY
        ):
            return True  # broker away, leader moving, request timed out
        cur = cur.__cause__ or cur.__context__
    return is_database_unavailable(exc)


@dataclass
class _Work:
    delivery: Delivery
    layout: Layout
    words: int
    protection: Protection = field(default_factory=Protection)
    translations: dict[int, Translation] = field(default_factory=dict)
    span: trace.Span = trace.INVALID_SPAN
    engine_seconds: float = 0.0  # this chunk's share of the engine calls it was part of

    @property
    def msg(self):  # noqa: ANN201
        return self.delivery.message

    @property
    def lane(self) -> _Lane:
        """What a segment's translation depends on besides its text."""
        return (self.msg.source_lang, self.msg.target_lang, self.protection)


_Lane = tuple[str, str, Protection]  # (source, target, protection)


def _follow_up(priority: str) -> str:
    """The priority of a call's follow-up rounds (segments whose masked translation lost a
    span, piece by piece: a few short texts the whole batch waits for): at least high.
    At the call's own priority they queued behind the other worker task's whole call, so
    both tasks' batches ended together and the engine then idled while both prepared
    their next (bench stack through Triton: the two tasks' calls came back within 0.1 s
    of each other, every time, and Triton sat idle 0.3 s in every 7)."""
    return priority if PRIORITY_RANK[priority] <= PRIORITY_RANK["high"] else "high"


def _end_with_error(span: trace.Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, str(exc)[:300]))
    span.end()


def _job_context(msg, span: trace.Span):  # noqa: ANN001, ANN202 - ChunkMessage; a Context
    """The job's trace context for what happens once per job (the finisher's span, the
    job-finished log line, the webhook): the submit span's context the chunk message
    carries, else (a message re-published without headers) the chunk's own span's."""
    if tracing.has_context(msg.headers):
        return tracing.extract(msg.headers)
    return tracing.span_context(span)


class Worker:
    def __init__(
        self,
        name: str,
        queue: ChunkQueue,
        jobs: JobService,
        client: InferenceClient,
        metrics: Metrics,
        settings,  # noqa: ANN001
        levels: tuple[str, ...] | None = None,
    ):
        self.name = name
        self.levels = levels  # None: every priority; ("critical", "high"): an urgent lane
        self.queue = queue
        self.jobs = jobs
        self.client = client
        self.metrics = metrics
        self.settings = settings
        self._stopping = False
        self._settled: set[int] = set()  # deliveries of the current batch already acked
        # chunks of the current batch claimed already: a batch tried again after an outage
        # does not claim them again (a claim counts as an attempt in the database)
        self._claimed: dict[int, tuple[Delivery, object]] = {}
        # the job record's assigned_instance: which process/worker, and which Triton
        self.instance = f"{socket.gethostname()}:{os.getpid()}/{name} -> {client.backend}"

    async def run(self) -> None:
        while not self._stopping:
            try:
                if self.levels is None:
                    deliveries = await self.queue.consume(self.settings.batch_words, timeout=1.0)
                else:
                    deliveries = await self.queue.consume(
                        self.settings.batch_words, timeout=1.0, levels=self.levels
                    )
            except asyncio.CancelledError:
                raise
            except Exception:  # the queue itself failed: wait and poll again
                self.metrics.errors.labels("queue").inc()
                log.exception("consume failed", extra={"worker": self.name})
                await asyncio.sleep(1.0)
                continue
            if not deliveries:
                continue
            self._settled = set()
            await self._process_through_outages(deliveries)

    async def _process_through_outages(self, deliveries: list[Delivery]) -> None:
        """``process`` the batch; while a dependency is down, keep the batch and try again
        with backoff (no attempt is spent, the queue is held so no worker takes new work).
        On stop during an outage the unsettled deliveries are left unacked: Kafka delivers
        them again, the in-process queue's chunks are recovered from the database."""
        pending = deliveries
        delay = max(0.05, self.settings.outage_backoff_s)
        down_since: float | None = None
        tries = 0
        done = False
        self._claimed = {}
        try:
            while True:
                try:
                    await self.process(pending)
                    done = True
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    pending = [d for d in pending if id(d) not in self._settled]
                    if not is_infrastructure_error(exc):
                        await self._requeue_after_error(pending)
                        return
                    if not pending:
                        return
                    tries += 1
                    if down_since is None:
                        down_since = time.monotonic()
                        self.metrics.errors.labels("outage").inc()
                        await self._hold(True)
                    if tries == 1 or tries % 10 == 0:
                        log.warning(
                            "dependency unavailable; holding the batch and retrying",
                            extra={"worker": self.name, "chunks": len(pending), "tries": tries,
                                   "down_s": round(time.monotonic() - down_since, 1),
                                   "error": repr(exc)[:300]},
                        )  # fmt: skip
                    if self._stopping:
                        log.warning(
                            "stopping during an outage; the batch is left for redelivery",
                            extra={"worker": self.name, "chunks": len(pending)},
                        )
                        return
                    await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                    delay = min(delay * 2, max(0.05, self.settings.outage_backoff_max_s))
        finally:
            self._claimed = {}
            if down_since is not None:
                await self._hold(False)
                log.info(
                    "dependency back; batch done" if done else "outage wait ended",
                    extra={"worker": self.name, "tries": tries,
                           "down_s": round(time.monotonic() - down_since, 1)},
                )  # fmt: skip

    async def _requeue_after_error(self, pending: list[Delivery]) -> None:
        """An unexpected error (a bug, bad data): never let it kill the worker or strand
        its chunks; they go back with one attempt spent, so a chunk that always fails ends
        in the dead letter instead of looping."""
        self.metrics.errors.labels("worker").inc()
        log.exception("worker batch failed", extra={"worker": self.name})
        for d in pending:
            with contextlib.suppress(Exception):
                await self.queue.nack(d, requeue=True)
        await asyncio.sleep(0.5)

    async def _hold(self, held: bool) -> None:
        """Back-pressure: tell the queue that this worker waits for a dependency, so that
        no worker takes new work meanwhile."""
        with contextlib.suppress(Exception):
            await self.queue.hold(self.name, held)

    def stop(self) -> None:
        self._stopping = True

    async def _ack(self, delivery: Delivery) -> None:
        await self.queue.ack(delivery)
        self._settled.add(id(delivery))

    async def _nack(self, delivery: Delivery, requeue: bool = True) -> None:
        await self.queue.nack(delivery, requeue=requeue)
        self._settled.add(id(delivery))

    async def process(self, deliveries: list[Delivery]) -> None:
        works: list[_Work] = []
        try:
            await self._claim_all(deliveries, works)
            if not works:
                return
            await self._fill_from_cache(works)
        except BaseException as exc:  # the batch is tried again or handed back
            for w in works:
                _end_with_error(w.span, exc)
            raise
        try:
            await self._translate(works)
        except Exception as exc:
            if is_infrastructure_error(exc) or not isinstance(exc, CONTENT_ERRORS):
                for w in works:  # the batch is tried again (outage) or handed back (bug)
                    w.span.record_exception(exc)
                    w.span.set_status(Status(StatusCode.ERROR, str(exc)))
                    w.span.end()
                raise
            await self._retry_or_fail(works, exc)
            return
        for w in works:
            await self._finish(w)

    async def _claim_all(self, deliveries: list[Delivery], works: list[_Work]) -> None:
        """Claim each delivery's chunk; what is to be translated lands in ``works``."""
        for d in deliveries:
            m = d.message
            # the chunk's span, a child of the job's submit span (the message's headers);
            # the claim and every database write for the chunk are its children
            span = tracing.tracer.start_span(
                "chunk.translate",
                context=tracing.extract(m.headers),
                kind=SpanKind.CONSUMER,
                attributes={"mtb.job_id": m.job_id, "mtb.chunk_index": m.chunk_index,
                            "mtb.priority": m.priority, "mtb.worker": self.name,
                            "mtb.pair": f"{m.source_lang}-{m.target_lang}"},
            )  # fmt: skip
            held = self._claimed.get(id(d))
            chunk = held[1] if held is not None and held[0] is d else None
            if chunk is None:
                try:
                    with trace.use_span(span, end_on_exit=False):
                        chunk = await self.jobs.claim(m.job_id, m.chunk_index)
                except BaseException as exc:
                    _end_with_error(span, exc)
                    raise
                if chunk is not None:
                    self._claimed[id(d)] = (d, chunk)
            if chunk is None:  # cancelled, finished, or already written: nothing to do
                span.set_attribute("mtb.skipped", True)
                span.end()
                self.jobs.chunk_done(m)
                await self._ack(d)
                continue
            # The database, not the message, says what this chunk is: a forged or stale
            # message can neither fail nor corrupt a job. Pair, priority and size are the
            # job's; the attempt is the message's capped by how often the database saw the
            # chunk taken (a message claiming attempt 99 of a fresh chunk counts as 0), and
            # only a content error after a real translation try can spend the last one.
            m.source_lang, m.target_lang = chunk.source_lang, chunk.target_lang
            m.priority, m.word_count = chunk.priority, chunk.word_count
            m.attempt = min(m.attempt, chunk.attempts)
            span.set_attributes(
                {"mtb.priority": m.priority, "mtb.word_count": chunk.word_count,
                 "mtb.attempt": m.attempt, "mtb.pair": f"{m.source_lang}-{m.target_lang}"}
            )  # fmt: skip
            if m.attempt >= self.settings.max_chunk_attempts:  # handed back by errors
                error = f"chunk {m.chunk_index} failed {m.attempt} times; giving up"
                with trace.use_span(span, end_on_exit=False):
                    job = await self.jobs.fail(m.job_id, m.chunk_index, error)
                span.set_status(Status(StatusCode.ERROR, error))
                span.end()
                self.jobs.chunk_done(m)
                m.headers["error"] = error
                await self._nack(d, requeue=False)
                self.metrics.dead_letters.labels("chunk_failed").inc()
                if job is not None:
                    with tracing.attached(_job_context(m, span)):
                        await self.jobs.on_finished(job)
                continue
            layout = Layout.loads(chunk.layout) if chunk.layout else None  # parsed at submit
            if layout is None or layout.source() != chunk.source_text:
                # a row from before chunks.layout (or one that does not match): segment here
                layout = await asyncio.to_thread(Layout.parse, chunk.source_text, m.source_lang)
            span.set_attribute("mtb.segments", len(layout.segments))
            protection = protection_for(chunk.options)
            works.append(_Work(d, layout, chunk.word_count, protection, span=span))

    def _cache_version(self, lane: _Lane) -> str:
        return cache_version(self.client.model_version(lane[0], lane[1]), lane[2])

    async def _fill_from_cache(self, works: list[_Work]) -> None:
        by_lane: dict[_Lane, list[_Work]] = {}
        for w in works:
            by_lane.setdefault(w.lane, []).append(w)
        for lane, group in by_lane.items():
            src, tgt, _ = lane
            version = self._cache_version(lane)
            texts = [s for w in group for s in w.layout.segments]
            with trace.use_span(group[0].span, end_on_exit=False):
                hits = await self.jobs.cached_segments(texts, src, tgt, version)
            self.metrics.record_cache(len(hits), len(texts) - len(hits))
            pos = 0
            wps = self.jobs.words_per_second
            for w in group:
                hit_words = 0
                for i, seg in enumerate(w.layout.segments):
                    if (pos + i + 1) % YIELD_SEGMENTS == 0:  # as _translate counts
                        await asyncio.sleep(0)
                    if pos + i in hits:
                        w.translations[i] = hits[pos + i]
                        hit_words += count_words(seg)
                # billed as engine time at the measured throughput: a cost of 0 would show
                # a tenant that another one translated this text before. At most the
                # chunk's own words: a token cut into many segments counts once per piece
                # here, but the chunk (a share of the job's word_count) bills it once. The
                # chunk's segments are counted only when something was served from the
                # cache (this loop runs on the event loop for every batch)
                if hit_words:
                    all_words = sum(count_words(seg) for seg in w.layout.segments)
                    w.engine_seconds += hit_words * min(1.0, w.words / all_words) / wps
                pos += len(w.layout.segments)
                n = len(w.layout.segments)
                w.span.set_attributes(
                    {"mtb.cache_hits": len(w.translations), "mtb.model_version": version,
                     "mtb.cache_hit": bool(n) and len(w.translations) == n}
                )  # fmt: skip

    async def _translate(self, works: list[_Work]) -> None:
        # unique missing segments per lane (pair and protection), each remembering who
        # wants it
        wanted: dict[_Lane, dict[str, list[tuple[_Work, int]]]] = {}
        urgency: dict[tuple[_Lane, str], int] = {}
        seen = 0
        for w in works:
            lane = w.lane
            rank = PRIORITY_RANK[w.msg.priority]
            for i, seg in enumerate(w.layout.segments):
                seen += 1
                if seen % YIELD_SEGMENTS == 0:
                    await asyncio.sleep(0)
                if i in w.translations:
                    continue
                wanted.setdefault(lane, {}).setdefault(seg, []).append((w, i))
                key = (lane, seg)
                urgency[key] = min(urgency.get(key, 9), rank)
        # cache writes run beside the next engine call instead of in front of it; all are
        # awaited before any chunk of this batch is finished
        writes: list[asyncio.Future] = []
        try:
            await self._translate_lanes(wanted, urgency, writes)
        finally:
            if writes:
                await asyncio.gather(*writes)

    async def _translate_lanes(self, wanted, urgency, writes: list) -> None:  # noqa: ANN001
        # One call per lane (language pair and protection: glossary, format) at the
        # batch's most urgent priority (its chunks all finish together, at the end of
        # the batch; a masked segment that lost a span costs a second call): the engine
        # sorts the whole call by length, cuts its own batches (token budget included)
        # and runs them on its lanes. Windows cut here pad worse than the engine's own
        # batches over the whole call. A segment's output does not depend on its batch
        # neighbours, so this changes no result. Cancelled jobs are dropped before each call.
        for lane, segs in wanted.items():
            order = sorted(segs, key=lambda s: urgency[(lane, s)])
            job_ids = list({w.msg.job_id for s in order for w, _ in segs[s]})
            await self.jobs.drop_cancelled(job_ids)
            batch = [
                s
                for s in order
                if any(not self.jobs.is_cancelled(w.msg.job_id) for w, _ in segs[s])
            ]
            if batch:
                await self._run_call(lane, segs, batch, urgency, writes)

    async def _run_call(self, lane, segs, batch: list[str], urgency, writes: list) -> None:  # noqa: ANN001
        rank = min(urgency[(lane, s)] for s in batch)
        pair, protection = (lane[0], lane[1]), lane[2]
        priority = next(p for p, r in PRIORITY_RANK.items() if r == rank)
        owners = list({id(w): w for s in batch for w, _ in segs[s]}.values())
        t0 = time.perf_counter()
        # a child of the first chunk's span, linked to every other chunk's (other jobs'
        # traces): each job's trace shows the call that served it. The Triton client
        # sends this span's context as gRPC metadata (traceparent): Triton's spans join.
        with tracing.tracer.start_as_current_span(
            "inference.translate",
            context=trace.set_span_in_context(owners[0].span),
            kind=SpanKind.CLIENT,
            links=[Link(w.span.get_span_context(), {"mtb.job_id": w.msg.job_id,
                                                    "mtb.chunk_index": w.msg.chunk_index})
                   for w in owners[1:]],
            attributes={"mtb.segments": len(batch), "mtb.priority": priority,
                        "mtb.pair": f"{pair[0]}-{pair[1]}", "mtb.chunks": len(owners),
                        "mtb.job_ids": sorted({w.msg.job_id for w in owners}),
                        "mtb.model_version": self.client.model_version(*pair),
                        "mtb.backend": self.client.backend},
        ):  # fmt: skip
            rounds = 0

            async def engine(texts: list[str]) -> list[Translation]:
                nonlocal rounds
                rounds += 1
                return await self.client.translate(
                    texts,
                    pair[0],
                    pair[1],
                    priority=priority if rounds == 1 else _follow_up(priority),
                    timeout=self.settings.inference_timeout_s,
                )

            # spans kept exactly (control_plane.text.protect): a segment whose masked
            # translation loses a span costs a second, piece-by-piece call
            outcomes: list[str] = []
            out = await run_async(batch, protection, engine, outcomes)
        for outcome, n in Counter(outcomes).items():
            self.metrics.segments_protected.labels(outcome).inc(n)
        elapsed = time.perf_counter() - t0
        self.metrics.inference_seconds.labels(priority).observe(elapsed)
        self.metrics.batch_size.observe(len(batch))
        self.metrics.segments_translated.labels(f"{pair[0]}-{pair[1]}").inc(len(batch))
        words = sum(count_words(s) for s in batch) or 1
        self.jobs.observe_throughput(words, elapsed)
        for seg, tr in zip(batch, out, strict=True):
            # one segment wanted by several chunks: they split its engine time
            share = elapsed * count_words(seg) / words / len(segs[seg])
            for w, i in segs[seg]:
                w.translations[i] = tr
                w.engine_seconds += share
        version = self._cache_version(lane)
        with trace.use_span(owners[0].span, end_on_exit=False):  # cache.write: its child
            writes.append(self.jobs.remember_segments(batch, out, pair[0], pair[1], version))

    async def _finish(self, w: _Work) -> None:
        m = w.msg
        if self.jobs.is_cancelled(m.job_id) or len(w.translations) < len(w.layout.segments):
            w.span.set_attribute("mtb.cancelled", True)
            w.span.end()
            self.jobs.chunk_done(m)
            await self._ack(w.delivery)
            return
        outs = [w.translations[i] for i in range(len(w.layout.segments))]
        # the protection: a re-filled paragraph keeps the job's own spans on one line
        text = w.layout.render([t.text for t in outs], w.protection)
        confidence = weighted_confidence(w.layout.segments, [t.score for t in outs])
        try:
            with trace.use_span(w.span, end_on_exit=False):
                job = await self.jobs.complete(
                    m.job_id,
                    m.chunk_index,
                    text,
                    w.words,
                    w.engine_seconds,
                    confidence,
                    self.instance,
                )
        except BaseException as exc:
            _end_with_error(w.span, exc)
            raise
        w.span.set_attribute("mtb.engine_seconds", round(w.engine_seconds, 6))
        if job is not None:
            w.span.add_event("job.completed", tracing.job_attributes(job))
        w.span.end()
        self.metrics.record_words(f"{m.source_lang}-{m.target_lang}", w.words)
        self.jobs.chunk_done(m)
        await self._ack(w.delivery)
        if job is not None:  # in the job's trace: the finish span, its log line, webhook
            with tracing.attached(_job_context(m, w.span)):
                await self.jobs.on_finished(job)

    async def _retry_or_fail(self, works: list[_Work], exc: BaseException) -> None:
        """A content error (``CONTENT_ERRORS``, not an outage): each chunk is retried with
        one attempt spent, and after ``max_chunk_attempts`` it is failed and dead-lettered.
        The backoff is slept once for the batch, not once per chunk."""
        self.metrics.errors.labels("inference").inc()
        retry: list[_Work] = []
        for w in works:
            m = w.msg
            w.span.record_exception(exc)
            w.span.set_status(Status(StatusCode.ERROR, str(exc)))
            if m.attempt + 1 < self.settings.max_chunk_attempts:
                w.span.end()
                log.warning(
                    "chunk failed, retrying",
                    extra={"job_id": m.job_id, "chunk": m.chunk_index, "attempt": m.attempt + 1,
                           "error": repr(exc)},
                )  # fmt: skip
                retry.append(w)
                continue
            error = f"translation failed after {m.attempt + 1} attempts: {exc}"
            try:
                with trace.use_span(w.span, end_on_exit=False):
                    job = await self.jobs.fail(m.job_id, m.chunk_index, error)
                    log.error("chunk failed for good", extra={"job_id": m.job_id,
                                                              "error": error})  # fmt: skip
            finally:
                w.span.end()
            self.jobs.chunk_done(m)
            m.headers["error"] = error  # the dead-letter reason (Kafka: dead-letter topic)
            await self._nack(w.delivery, requeue=False)
            self.metrics.dead_letters.labels("chunk_failed").inc()
            if job is not None:
                with tracing.attached(_job_context(m, w.span)):
                    await self.jobs.on_finished(job)
        if retry:
            await asyncio.sleep(max(min(2**w.msg.attempt, 10) * 0.5 for w in retry))
            for w in retry:
                await self._nack(w.delivery)
