"""Jobs: submit in one transaction, track progress, assemble, cancel.

The database is the source of truth; the queue only carries small chunk messages. All
blocking DB work runs on ``Database.run`` (a thread pool), so this is safe to call from the
event loop. Chunk results are written idempotently: a chunk moves to ``done`` once (the
``writes`` counter and the (job_id, chunk_index) unique constraint prove it), and only the
writer that completes the last chunk assembles the job.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import defer

from control_plane import tracing
from control_plane.cache import SegmentCache
from control_plane.capacity.cost import CostModel
from control_plane.db import Chunk, Database, Job, as_utc, utcnow
from control_plane.domain import ACTIVE_STATUSES as ACTIVE
from control_plane.domain import PRIORITY_RANK, DomainError
from control_plane.engine.base import Translation
from control_plane.jobs import documents, glossaries
from control_plane.jobs.planner import MARKUP_FORMATS, PROCESS_CHARS, plan_stored
from control_plane.queue.base import ChunkMessage, ChunkQueue
from control_plane.text import spans
from control_plane.text.chunking import count_words
from control_plane.text.formats import Options
from control_plane.text.markup import set_lang
from control_plane.text.spans import Protection

log = logging.getLogger(__name__)


PUBLISH_BATCH = 32  # chunk messages published between two yields to the event loop


class _Planned(NamedTuple):
    """A submission's plan, made in a thread (``JobService._plan``)."""

    chunks: list[str]
    counts: list[int]  # each chunk's words (chunk_words); _submit makes them shares (apportion)
    n_segments: int
    n_hits: int  # segments already in the cache
    stored: list[str]  # each chunk's Layout.dumps()


class JobNotFound(DomainError):
    code = "job_not_found"

    def __init__(self, job_id: str):
        # an id is 36 characters; a longer one is cut (an 8,000-character path came back)
        shown = job_id if len(job_id) <= 64 else job_id[:64] + "..."
        super().__init__(f"no job {shown!r}")


class JobConflict(DomainError):
    """The job is in a state that does not allow the operation (e.g. cancel a finished job)."""

    code = "job_finished"

    def __init__(self, message: str, job: Job):
        super().__init__(message, details={"status": job.status})
        self.job = job


@dataclass
class SubmitRequest:
    user_id: str
    text: str
    source_lang: str
    target_lang: str
    priority: str = "normal"
    callback_url: str | None = None
    job_id: str | None = None  # chosen by the caller (idempotent Kafka ingest); else uuid4
    metadata: str | None = None  # the caller's metadata object, as JSON text
    # counted once by admission (for the size limit); quota, estimate and the job record
    # reuse it. None (callers without admission): counted at submit (``count_text_words``)
    word_count: int | None = None
    # translation options (issue 11): resolved into a Protection at submit, stored with
    # the job (Job.options) and applied by the worker
    format: str = "text"  # text | html | xml
    do_not_translate: list[str] | None = None
    glossary: dict[str, str] | None = None  # inline; wins over glossary_id's terms
    glossary_id: str | None = None  # one of the user's stored glossaries
    filename: str | None = None  # an uploaded document's name (the download's name)
    detected_language: str | None = None  # source_language "auto": what detection said
    detection_confidence: float | None = None


@dataclass
class Claim:
    """What ``claim_chunk`` hands a worker: the chunk row (its attributes are readable here
    directly) and what the worker must take from the database rather than the message:
    the job's pair and priority, and ``attempts``, how often the chunk was taken before."""

    chunk: Chunk
    priority: str
    source_lang: str
    target_lang: str
    attempts: int
    # the job's translation options as stored (Job.options, JSON): build the Protection
    # with ``protection_for(claim.options)``, the cache's model version with
    # ``cache_version(model_version, claim.options)``. None: the defaults (plain text)
    options: str | None = None

    def __getattr__(self, name: str):  # noqa: ANN204 - chunk.layout, .source_text, ...
        return getattr(self.chunk, name)


class InvalidMarkup(DomainError):
    code = "invalid_markup"


def count_text_words(text: str, fmt: str = "text") -> int:
    """Words for billing, estimates, quota and progress: for html/xml the text's words,
    not the tags' (every tag, comment and declaration counts as a space; the text of
    elements kept untranslated, <code> or <script>, is counted like any text)."""
    if documents.is_document(fmt):
        return documents.word_count(text, fmt)
    if fmt in MARKUP_FORMATS:
        text = documents.TAG.sub(" ", text)
    return count_words(text)


def chunk_words(text: str, fmt: str) -> int:
    """Words of one planned chunk; a document's chunks add up to its word count (its
    chunk is a unit stream, whose inline codes are tags when the format writes them so)."""
    if documents.is_document(fmt):
        return documents.text_words(text, documents.markup_of(fmt))
    if fmt in MARKUP_FORMATS:
        text = documents.TAG.sub(" ", text)
    return count_words(text)


def _reloaded(session, job_id: str) -> Job:  # noqa: ANN001 - a Session
    """The job row as the update just left it (not the session's cached copy), without its
    large columns."""
    return session.execute(
        select(Job)
        .options(defer(Job.source_text), defer(Job.options))
        .where(Job.id == job_id)
        .execution_options(populate_existing=True)
    ).scalar_one()


def apportion(counts: list[int], total: int) -> list[int]:
    """``total`` split over the chunks in proportion to ``counts`` (largest remainder, ties
    to the earlier chunk): the returned counts add up to ``total`` exactly.

    The job's ``word_count`` (admission's count: quota, estimate, the per-word part of the
    cost) and its chunks' counts must agree, or ``words_processed`` passes ``word_count``
    and progress passes 1.0: a token longer than a chunk is cut over several chunks, and
    each piece counts as a word (``"a" * 50000`` is 1 word in 2 chunks of 1 each). The
    job's count wins, so nobody is billed, shown or metered more words than it has; a
    chunk may then carry 0 words. No counts at all (a whitespace chunk): spread evenly."""
    if not counts:
        return []
    weights = counts if any(counts) else [1] * len(counts)
    whole = sum(weights)
    if whole == total:
        return list(counts)
    shares = [total * w // whole for w in weights]
    left = total - sum(shares)
    # the ``left`` largest remainders get one more word each (left < len(counts))
    by_rest = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in by_rest[:left]:
        shares[i] += 1
    return shares


def merge_glossaries(
    stored: dict[str, str] | None, inline: dict[str, str] | None
) -> dict[str, str]:
    """A stored glossary's terms overridden by the request's inline ones: an inline term
    replaces a stored one with the same source term, ignoring case and surrounding
    spaces (terms are matched that way)."""
    inline = inline or {}
    replaced = {k.strip().casefold() for k in inline}
    merged = {k: v for k, v in (stored or {}).items() if k.strip().casefold() not in replaced}
    merged.update(inline)
    return merged


PROTECTION_CACHE_SIZE = 16  # a Protection with 2,000 long terms holds a few MB
_protections: OrderedDict[bytes, Protection] = OrderedDict()
_protections_lock = threading.Lock()


def protection_for(options_json: str | None) -> Protection:
    """The Protection of a job's stored options (``Job.options`` / ``Claim.options``).
    The last few are kept (keyed by the options' hash), since a worker asks per chunk and
    a large glossary compiles a large regex. Keys other than Protection's own
    (``glossary_id``) are ignored."""
    if not options_json:
        return _DEFAULT_PROTECTION
    key = hashlib.sha256(options_json.encode("utf-8", "surrogatepass")).digest()
    with _protections_lock:
        found = _protections.get(key)
        if found is not None:
            _protections.move_to_end(key)
            return found
    return _remember(key, Protection.from_options(json.loads(options_json)))


def _remember(key: bytes, protection: Protection) -> Protection:
    with _protections_lock:
        _protections[key] = protection
        _protections.move_to_end(key)
        while len(_protections) > PROTECTION_CACHE_SIZE:
            _protections.popitem(last=False)
    return protection


_DEFAULT_PROTECTION = Protection()


def cache_version(model_version: str, options_json: str | None) -> str:
    """The model-version part of segment-cache keys for a job with these stored options
    (``spans.cache_version``); the submit-time lookup and the worker use the same key."""
    return spans.cache_version(model_version, protection_for(options_json))


def options_json(
    protection: Protection, glossary_id: str | None, filename: str | None = None
) -> str | None:
    """What Job.options stores: ``protection.options()`` plus the glossary id and an
    uploaded document's file name; None for the defaults."""
    if protection == Protection() and glossary_id is None and filename is None:
        return None
    out = protection.options()
    if glossary_id is not None:
        out["glossary_id"] = glossary_id
    if filename is not None:
        out["filename"] = filename
    return json.dumps(out, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


class Throughput:
    """Measured engine words/s (EWMA); seeds the estimates before anything ran."""

    def __init__(self, initial_wps: float):
        self.wps = max(initial_wps, 1e-3)

    def observe(self, words: int, seconds: float) -> None:
        if words > 0 and seconds > 0:
            self.wps = 0.8 * self.wps + 0.2 * (words / seconds)


async def _nobody_listens(job: Job) -> None:
    return None


class JobService:
    """Jobs for the API (submit, read, cancel) and for workers (claim, complete, fail,
    cached segments, throughput): workers use only these methods, never the database,
    cache or counters behind them. ``on_finished`` is awaited once per job that reaches
    completed/failed/cancelled (metrics, webhook, results topic)."""

    def __init__(
        self,
        db: Database,
        queue: ChunkQueue,
        cache: SegmentCache,
        settings,  # noqa: ANN001 - Settings
        on_finished: Callable[[Job], Awaitable[None]] = _nobody_listens,
    ):
        self.db = db
        self.queue = queue
        self.cache = cache
        self.settings = settings
        self.cost_model = CostModel.from_settings(settings)
        # before anything ran here: the seed setting, else the measured speed of an
        # instance of this process's kind (the cost model's rate)
        seed = settings.throughput_wps or self.cost_model.kind().words_per_second
        self.throughput = Throughput(seed)
        self.pending_words = {p: 0 for p in PRIORITY_RANK}
        self.cancelled: set[str] = set()
        self.on_finished = on_finished

    # -- estimates -----------------------------------------------------------------

    def cost_for_seconds(
        self, seconds: float, words: int = 0, priority: str | None = None
    ) -> float:
        """USD for ``words`` that took ``seconds`` of engine time, from the cost model
        ``mtctl cost`` prints (instance time at this process's kind - or, with
        ``MTB_COST_INSTANCE_KIND=policy``, the kind ``priority`` runs on - storage, transfer)."""
        return self.cost_model.job_cost(words, engine_seconds=seconds, priority=priority)

    def estimate(self, words: int, priority: str) -> tuple[float, float]:
        """(seconds until done, cost in USD) from measured throughput and the backlog
        at the same or a more urgent priority. The cost is the actual one's formula on
        the engine seconds the measured throughput predicts."""
        ahead = sum(
            w for p, w in self.pending_words.items() if PRIORITY_RANK[p] <= PRIORITY_RANK[priority]
        )
        seconds = (ahead + words) / self.throughput.wps
        return seconds, self.cost_for_seconds(words / self.throughput.wps, words, priority)

    def _queue_state(self, window_s: float):  # noqa: ANN202
        since = utcnow() - timedelta(seconds=window_s)
        with self.db.session() as session:
            pending = session.execute(
                select(Job.priority, func.sum(Chunk.word_count))
                .join(Job, Chunk.job_id == Job.id)
                .where(Chunk.status.in_(ACTIVE))
                .group_by(Job.priority)
            ).all()
            done = session.execute(
                select(
                    func.sum(Chunk.word_count),
                    func.count(),
                    func.min(Chunk.updated_at),
                    func.max(Chunk.updated_at),
                ).where(Chunk.status == "done", Chunk.updated_at >= since)
            ).one()
        return {p: int(w or 0) for p, w in pending}, done

    async def refresh_estimates(self, window_s: float = 60.0) -> None:
        """Backlog and throughput from the database, for a process whose chunks are
        translated elsewhere (the API beside Kafka workers): its own counters would only
        ever grow, and it never times an engine call."""
        pending, (words, n, first, last) = await self.db.run(self._queue_state, window_s)
        self.pending_words = {p: pending.get(p, 0) for p in PRIORITY_RANK}
        if n >= 2 and last > first:  # n >= 2: words, first and last are set
            # n completions span n - 1 gaps: leave one chunk's share out
            self.throughput.observe(words * (n - 1) / n, (last - first).total_seconds())

    # -- submit --------------------------------------------------------------------

    def _resolve_options(self, req: SubmitRequest) -> str | None:
        """Blocking. The job's stored options (``options_json``): a stored glossary's terms
        as they are now (GlossaryNotFound when the id is not the caller's) merged with the
        inline glossary, the format and the do-not-translate strings."""
        stored = None
        if req.glossary_id is not None:
            stored = glossaries.terms_for(self.db.engine, req.user_id, req.glossary_id)
        protection = Protection.of(
            documents.markup_of(req.format),  # a document's units: text or xml codes
            req.do_not_translate or (),
            merge_glossaries(stored, req.glossary),
        )
        stored_options = options_json(protection, req.glossary_id, req.filename)
        if stored_options is not None:  # _plan's cache_version needs it next: not built twice
            key = hashlib.sha256(stored_options.encode("utf-8", "surrogatepass")).digest()
            _remember(key, protection)
        return stored_options

    def _plan(self, req: SubmitRequest, model_version: str, options: str | None) -> _Planned:
        # linear in the text; a large one is planned in a child process (jobs.planner)
        fmt = req.format or "text"
        try:
            chunks, stored, segments = plan_stored(
                req.text, self.settings.chunk_words, req.source_lang, fmt
            )
        except (ValueError, SyntaxError) as exc:  # lxml's parse errors are SyntaxErrors
            if isinstance(exc, documents.InvalidDocument) or fmt not in MARKUP_FORMATS:
                raise
            log.info("markup not planned", extra={"format": fmt, "error": repr(exc)})
            raise InvalidMarkup(
                f"content could not be read as {fmt}: {str(exc)[:300]}",
                details=[{"field": "content", "message": f"not readable as {fmt}"}],
            ) from exc
        # Counted for the operator (jobs.cached_segments, never shown to users). A job is
        # never completed here, even when every segment is cached: see ``_submit``. The
        # key is the worker's (cache_version: the options change the translation)
        hits = self.cache.get_many(
            segments, req.source_lang, req.target_lang, cache_version(model_version, options)
        )
        # counted here, in the planning thread, for the chunk rows and their messages:
        # counting an 8 MiB job's chunks on the event loop held it for tens of ms
        counts = [chunk_words(text, fmt) for text in chunks]
        return _Planned(chunks, counts, len(segments), len(hits), stored)

    def _insert(
        self,
        req: SubmitRequest,
        model_version: str,
        options: str | None,
        planned: _Planned,
        words: int,
        est_s: float,
        cost: float,
    ) -> Job:
        chunks, counts, n_segments, n_hits, stored = planned
        fmt = req.format or "text"
        now = utcnow()
        job = Job(
            id=req.job_id or str(uuid.uuid4()),
            user_id=req.user_id,
            status="queued",
            priority=req.priority,
            source_lang=req.source_lang,
            target_lang=req.target_lang,
            model_version=model_version,
            word_count=words,
            chunk_count=len(chunks),
            segment_count=n_segments,
            cached_segments=n_hits,
            source_text=req.text,
            content_hash=hashlib.sha256(req.text.encode("utf-8")).hexdigest(),
            job_metadata=req.metadata,
            format=fmt,
            glossary_id=req.glossary_id,
            options=options,
            detected_language=req.detected_language,
            detection_confidence=req.detection_confidence,
            callback_url=req.callback_url,
            estimated_cost=cost,
            estimated_completion=now + timedelta(seconds=est_s),
            created_at=now,
        )
        with self.db.session() as session:
            session.add(job)
            session.flush()
            for i, text in enumerate(chunks):
                session.add(
                    Chunk(
                        job_id=job.id,
                        chunk_index=i,
                        status="queued",
                        word_count=counts[i],
                        source_text=text,
                        layout=stored[i],
                        updated_at=now,
                    )
                )
            if not chunks:
                # Nothing to translate (a markdown file of only code, a VTT file with no
                # cue, a PO file with only its header): no chunk will ever be claimed, so
                # nothing else would complete it. Completed in the insert's transaction, so
                # no crash can leave it queued; started now, as a claim would have.
                job.started_at = now
                return self._finish_job(session, job, [], now)
            session.commit()
        return job

    async def submit(self, req: SubmitRequest, model_version: str) -> Job:
        # the priority is known at the start: the sampler always keeps critical jobs
        with tracing.tracer.start_as_current_span(
            "job.submit",
            attributes={"mtb.priority": req.priority, "mtb.model_version": model_version,
                        "mtb.pair": f"{req.source_lang}-{req.target_lang}"},
        ) as span:  # fmt: skip
            job = await self._submit(req, model_version)
            span.set_attribute("mtb.job_id", job.id)
            span.set_attribute("mtb.word_count", job.word_count)
            span.set_attribute("mtb.chunk_count", job.chunk_count)
            span.set_attribute("mtb.cached_segments", job.cached_segments or 0)
            if job.estimated_cost is not None:
                span.set_attribute("mtb.estimated_cost_usd", job.estimated_cost)
            return job

    async def _submit(self, req: SubmitRequest, model_version: str) -> Job:
        """Every job is queued and published, also one whose segments are all in the
        cache: completing it at submit (status ``completed`` at once, processing time 0)
        would tell a tenant that someone else translated the same text before - a leak of
        other tenants' content. Its chunks go through the queue like any others; the
        worker serves them from the cache (no engine call) and bills them at the measured
        engine throughput, so its submit response, status transitions and result fields
        are those of a translated job. (Timing remains: it finishes sooner.)

        The one job completed here is one with no chunk at all: nothing in it is to be
        translated (so nothing can leak), and with no chunk nothing else would finish it."""
        options = None
        if req.glossary_id is not None:  # a database read
            options = await self.db.run(self._resolve_options, req)
        elif req.glossary:  # compiles a regex of up to 1,000 terms: off the loop
            options = await asyncio.to_thread(self._resolve_options, req)
        elif req.do_not_translate or req.filename or (req.format or "text") != "text":
            options = self._resolve_options(req)
        planned = await asyncio.to_thread(self._plan, req, model_version, options)
        words = req.word_count
        fmt = req.format or "text"
        if words is None:  # 8 MiB: ~20 ms, off the loop; a short text is not worth a thread
            words = (
                count_text_words(req.text, fmt)
                if len(req.text) < PROCESS_CHARS
                else await asyncio.to_thread(count_text_words, req.text, fmt)
            )
        # the chunks' counts become shares of the job's (``apportion``): what workers
        # add to words_processed, meter and back-log then adds up to word_count
        planned = planned._replace(counts=apportion(planned.counts, words))
        est_s, cost = self.estimate(words, req.priority)
        with tracing.tracer.start_as_current_span(
            "db.insert_job", attributes={"db.operation.name": "insert", "mtb.chunk_count":
                                         len(planned.chunks)},
        ):  # fmt: skip
            job = await self.db.run(
                self._insert, req, model_version, options, planned, words, est_s, cost
            )
        if job.status not in ACTIVE:  # nothing to translate: finished at insert
            log.info(
                "job finished at submit: nothing to translate",
                extra={"job_id": job.id, "user_id": job.user_id, "status": job.status,
                       "format": job.format},
            )  # fmt: skip
            await self.on_finished(job)  # metrics, log line, webhook, results topic
            return job
        await self._publish_chunks(job, planned.counts)
        log.info(
            "job queued",
            extra={"job_id": job.id, "user_id": job.user_id, "priority": job.priority,
                   "words": words, "chunks": job.chunk_count},
        )  # fmt: skip
        return job

    async def _publish_chunks(self, job: Job, counts: list[int]) -> None:
        """One message per chunk, ``counts`` its words. Yields to the event loop every
        ``PUBLISH_BATCH`` messages: an 8 MiB submission has hundreds of chunks, and the
        in-process queue's publish returns without ever suspending."""
        headers = tracing.inject()
        for i, n in enumerate(counts):
            if i and i % PUBLISH_BATCH == 0:
                await asyncio.sleep(0)
            self.pending_words[job.priority] += n
            await self.queue.publish(
                ChunkMessage(
                    job_id=job.id,
                    chunk_index=i,
                    priority=job.priority,
                    source_lang=job.source_lang,
                    target_lang=job.target_lang,
                    word_count=n,
                    headers=dict(headers),
                )
            )

    # -- reads ---------------------------------------------------------------------

    def _get(self, user_id: str | None, job_id: str, texts: bool) -> Job:
        with self.db.session() as session:
            # a status poll of an 8 MiB job must not load its 16 MiB of text
            options = [defer(Job.options)]  # a glossary's terms: never shown
            if not texts:
                options += [defer(Job.source_text), defer(Job.result_text)]
            job = session.get(Job, job_id, options=options)
            if job is None or (user_id is not None and job.user_id != user_id):
                raise JobNotFound(job_id)
            return job

    def _filename(self, job_id: str) -> str | None:
        with self.db.session() as session:
            stored = session.execute(select(Job.options).where(Job.id == job_id)).scalar()
        return json.loads(stored).get("filename") if stored else None

    async def download_name(self, job: Job) -> str:
        """The translated file's name for a document job (``guide.md`` -> ``guide.pt.md``)."""
        filename = await self.db.run(self._filename, job.id)
        return documents.download_name(filename, job.format, job.target_lang)

    async def get(self, user_id: str | None, job_id: str, texts: bool = False) -> Job:
        """The job; ``texts``: with its source and result text (else those are not loaded
        and must not be read)."""
        return await self.db.run(self._get, user_id, job_id, texts)

    def _list(self, user_id: str, limit: int, offset: int, status: str | None):  # noqa: ANN202
        with self.db.session() as session:
            # texts stay in the database: 100 listed 8 MiB jobs must not load 1.6 GiB
            q = (
                select(Job)
                .options(defer(Job.source_text), defer(Job.result_text), defer(Job.options))
                .where(Job.user_id == user_id)
            )
            cq = select(func.count()).select_from(Job).where(Job.user_id == user_id)
            if status:
                q = q.where(Job.status == status)
                cq = cq.where(Job.status == status)
            total = session.execute(cq).scalar_one()
            rows = session.execute(
                q.order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)
            ).scalars()
            return list(rows), total

    async def list(self, user_id: str, limit: int, offset: int, status: str | None = None):  # noqa: ANN201
        return await self.db.run(self._list, user_id, limit, offset, status)

    # -- cancel --------------------------------------------------------------------

    def _cancel(self, user_id: str, job_id: str) -> Job:
        with self.db.session() as session:
            job = session.get(
                Job,
                job_id,
                options=(defer(Job.source_text), defer(Job.result_text), defer(Job.options)),
            )
            if job is None or job.user_id != user_id:
                raise JobNotFound(job_id)
            now = utcnow()
            res = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status.in_(ACTIVE))
                .values(status="cancelled", completed_at=now, error="cancelled by the user")
            )
            if res.rowcount != 1:
                session.rollback()
                job = session.get(Job, job_id)
                raise JobConflict(f"job is already {job.status}", job)
            session.execute(
                update(Chunk)
                .where(Chunk.job_id == job_id, Chunk.status.in_(ACTIVE))
                .values(status="cancelled", updated_at=now)
            )
            session.commit()
            session.refresh(job)
            return job

    async def cancel(self, user_id: str, job_id: str) -> Job:
        job = await self.db.run(self._cancel, user_id, job_id)
        self.cancelled.add(job_id)
        await self.on_finished(job)
        return job

    # -- worker side ---------------------------------------------------------------
    # Async wrappers run the blocking methods below on the database's threads.

    # Each opens a span (a child of the caller's current span: the chunk's) around its
    # database work; the database's threads do not see the caller's context.

    async def claim(self, job_id: str, chunk_index: int) -> Claim | None:
        with tracing.tracer.start_as_current_span(
            "db.claim_chunk", attributes=_db_attributes("claim", job_id, chunk_index)
        ) as span:
            claim = await self.db.run(self.claim_chunk, job_id, chunk_index)
            span.set_attribute("mtb.claimed", claim is not None)
            return claim

    async def complete(self, *args: Any) -> Job | None:
        """``complete_chunk`` (same arguments) on the database's threads."""
        with tracing.tracer.start_as_current_span(
            "db.complete_chunk", attributes=_db_attributes("complete", args[0], args[1])
        ) as span:
            job = await self.db.run(self.complete_chunk, *args)
            span.set_attribute("mtb.job_finished", job is not None)
            return job

    async def fail(self, job_id: str, chunk_index: int, error: str) -> Job | None:
        with tracing.tracer.start_as_current_span(
            "db.fail_chunk", attributes=_db_attributes("fail", job_id, chunk_index)
        ) as span:
            job = await self.db.run(self.fail_chunk, job_id, chunk_index, error)
            span.set_attribute("mtb.job_finished", job is not None)
            return job

    async def cached_segments(
        self, texts: list[str], source: str, target: str, model_version: str
    ) -> dict[int, Translation]:
        with tracing.tracer.start_as_current_span(
            "cache.lookup",
            attributes={"mtb.pair": f"{source}-{target}", "mtb.segments": len(texts),
                        "mtb.model_version": model_version},
        ) as span:  # fmt: skip
            hits = await self.db.run(self.cache.get_many, texts, source, target, model_version)
            span.set_attribute("mtb.cache_hits", len(hits))
            span.set_attribute("mtb.cache_misses", len(texts) - len(hits))
            return hits

    def remember_segments(
        self,
        texts: list[str],
        translations: list[Translation],
        source: str,
        target: str,
        model_version: str,
    ) -> asyncio.Future:
        """Write translations to the cache in the background; await the future before
        the chunks they belong to are finished."""

        async def write() -> None:  # the task copies the caller's context: a child span
            with tracing.tracer.start_as_current_span(
                "cache.write",
                attributes={"mtb.pair": f"{source}-{target}", "mtb.segments": len(texts),
                            "mtb.model_version": model_version},
            ):  # fmt: skip
                await self.db.run(
                    self.cache.put_many, texts, translations, source, target, model_version
                )

        return asyncio.ensure_future(write())

    async def drop_cancelled(self, job_ids: list[str]) -> set[str]:
        return await self.db.run(self.refresh_cancelled, job_ids)

    def observe_throughput(self, words: int, seconds: float) -> None:
        self.throughput.observe(words, seconds)

    @property
    def words_per_second(self) -> float:
        return max(self.throughput.wps, 1e-3)

    def claim_chunk(self, job_id: str, chunk_index: int) -> Claim | None:
        """Blocking. The chunk to work on with its job's language pair and priority and its
        attempt count, all from the database (a chunk message is only a pointer: a forged
        or stale one cannot change what is translated, how urgently, or fail the job), or
        None when there is nothing to do."""
        with self.db.session() as session:
            row = session.execute(
                select(
                    Job.status, Job.priority, Job.source_lang, Job.target_lang, Job.options, Chunk
                )
                .join(Chunk, Chunk.job_id == Job.id)
                .where(Job.id == job_id, Chunk.chunk_index == chunk_index)
            ).first()
            if row is None:
                return None
            status, priority, source_lang, target_lang, options, chunk = row
            if status not in ACTIVE or chunk.status not in ACTIVE:
                return None
            taken_before = chunk.attempts  # the update below refreshes the loaded row
            now = utcnow()
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "queued")
                .values(status="processing", started_at=now)
            )
            if taken_before:  # a retry, or a redelivery after a crash
                session.execute(
                    update(Job).where(Job.id == job_id).values(retry_count=Job.retry_count + 1)
                )
            session.execute(
                update(Chunk)
                .where(Chunk.id == chunk.id)
                .values(status="processing", attempts=Chunk.attempts + 1, updated_at=now)
            )
            session.commit()
            return Claim(chunk, priority, source_lang, target_lang, taken_before, options)

    def _rebuild(self, session, job: Job) -> Job | None:  # noqa: ANN001 - a Session
        """Blocking, inside complete_chunk's transaction: the translated file from the
        job's unit stream. A file that cannot be rebuilt fails the job readably (returned)
        instead of failing the worker; None when ``job.result_text`` holds the file."""
        source = session.execute(select(Job.source_text).where(Job.id == job.id)).scalar_one()
        options = Options(job.source_lang, job.target_lang, job.model_version or "")
        # re-filled paragraphs keep the job's do-not-translate strings and glossary terms
        options.extra["protection"] = protection_for(job.options)
        try:
            job.result_text = documents.assemble(source, job.format, job.result_text, options)
            return None
        except Exception as exc:  # noqa: BLE001 - a format's bug must not stop the worker
            log.exception("document rebuild failed", extra={"job_id": job.id})
            job.status, job.error = "failed", f"the {job.format} file could not be rebuilt: {exc}"
            job.result_text, job.completed_at = None, utcnow()
            session.add(job)
            return job

    def is_cancelled(self, job_id: str) -> bool:
        return job_id in self.cancelled

    def refresh_cancelled(self, job_ids: list[str]) -> set[str]:
        """Blocking. Learn which of these jobs were cancelled (possibly by another process,
        e.g. the API in front of Kafka workers); returns them."""
        if not job_ids:
            return set()
        with self.db.engine.connect() as conn:  # Core, no ORM session: runs every batch
            found = set(
                conn.execute(
                    select(Job.id).where(Job.id.in_(job_ids), Job.status == "cancelled")
                ).scalars()
            )
        if len(self.cancelled) > 100_000:  # only a fast path; the DB stays authoritative
            self.cancelled.clear()
        self.cancelled |= found
        return found

    def complete_chunk(
        self,
        job_id: str,
        chunk_index: int,
        result: str,
        words: int,
        engine_seconds: float = 0.0,
        confidence: float | None = None,
        instance: str | None = None,
    ) -> Job | None:
        """Blocking, idempotent. Returns the job when this write completed it.

        The chunk keeps its engine time and confidence: the job's ``cost_usd`` and
        ``confidence_score`` are summed over its chunks when the last one lands, so they
        count every worker (and process) that translated a part of it."""
        with self.db.session() as session:
            now = utcnow()
            res = session.execute(
                update(Chunk)
                .where(
                    Chunk.job_id == job_id,
                    Chunk.chunk_index == chunk_index,
                    Chunk.status.in_(ACTIVE),
                )
                .values(
                    status="done",
                    result_text=result,
                    writes=Chunk.writes + 1,
                    engine_seconds=engine_seconds,
                    confidence=confidence,
                    updated_at=now,
                )
            )
            if res.rowcount != 1:
                session.rollback()
                return None
            # capped at word_count: chunks planned before their counts were shares of the
            # job's (``apportion``) count a token cut over chunks once per piece
            processed = Job.words_processed + words
            values = {
                "chunks_done": Job.chunks_done + 1,
                "words_processed": case(
                    (processed > Job.word_count, Job.word_count), else_=processed
                ),
            }
            if instance:
                values["assigned_instance"] = instance[:256]
            res = session.execute(
                update(Job).where(Job.id == job_id, Job.status.in_(ACTIVE)).values(**values)
            )
            if res.rowcount != 1:
                session.rollback()
                return None
            job = _reloaded(session, job_id)
            if job.chunks_done < job.chunk_count:
                session.commit()
                return None
            parts = session.execute(
                select(Chunk.result_text, Chunk.word_count, Chunk.engine_seconds, Chunk.confidence)
                .where(Chunk.job_id == job_id)
                .order_by(Chunk.chunk_index)
            ).all()
            return self._finish_job(session, job, parts, now)

    def _finish_job(self, session, job: Job, parts: list, now) -> Job:  # noqa: ANN001
        """Blocking, inside the caller's transaction, which it commits: the job completed
        from its chunks' rows (``parts``: result_text, word_count, engine_seconds and
        confidence, in chunk order; none for a job with nothing to translate, whose
        document is then rebuilt from no translations). Returns the job, failed instead
        when its document cannot be rebuilt."""
        job.result_text = "".join(p.result_text or "" for p in parts)
        if job.format == "html":  # the page says its new language
            job.result_text = set_lang(job.result_text, job.target_lang)
        if documents.is_document(job.format):
            failed = self._rebuild(session, job)
            if failed is not None:
                session.commit()
                return failed
        job.status = "completed"
        job.completed_at = now
        job.words_processed = job.word_count  # every word is done, however chunks counted
        job.cost_usd = self.cost_for_seconds(
            sum(p.engine_seconds or 0.0 for p in parts), job.word_count, job.priority
        )
        scored = [p for p in parts if p.confidence is not None]
        job.confidence_score = word_weighted_mean(
            [p.confidence for p in scored], [p.word_count for p in scored]
        )
        started = job.started_at or job.created_at
        job.processing_time_ms = max(0, round((now - as_utc(started)).total_seconds() * 1000))
        job.words_per_minute = words_per_minute(job.word_count, job.processing_time_ms)
        session.add(job)
        session.commit()
        return job

    def fail_chunk(self, job_id: str, chunk_index: int, error: str) -> Job | None:
        """Blocking. Marks the chunk and its job failed; returns the job if it changed.

        Only a chunk still queued or processing can fail: a late failure (a redelivered
        message, a second worker) never overwrites a chunk that is done, nor its job."""
        with self.db.session() as session:
            now = utcnow()
            res = session.execute(
                update(Chunk)
                .where(
                    Chunk.job_id == job_id,
                    Chunk.chunk_index == chunk_index,
                    Chunk.status.in_(ACTIVE),
                )
                .values(status="failed", error=error, updated_at=now)
            )
            if res.rowcount != 1:
                session.rollback()
                return None
            res = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status.in_(ACTIVE))
                .values(status="failed", error=error, completed_at=now)
            )
            session.commit()
            if res.rowcount != 1:
                return None
            return session.get(Job, job_id)

    def chunk_done(self, msg: ChunkMessage) -> None:
        self.pending_words[msg.priority] = max(0, self.pending_words[msg.priority] - msg.word_count)

    # -- recovery ------------------------------------------------------------------

    def _unfinished(self):  # noqa: ANN202
        # only the columns a chunk message needs: recovery must not load the jobs' texts
        with self.db.session() as session:
            return session.execute(
                select(*_MESSAGE_COLUMNS, Chunk.chunk_index, Chunk.word_count)
                .join(Chunk, Chunk.job_id == Job.id)
                .where(Job.status.in_(ACTIVE), Chunk.status.in_(ACTIVE))
                .order_by(Job.created_at, Chunk.chunk_index)
            ).all()

    def _finish_empty(self) -> list[Job]:
        """Blocking. Complete the active jobs that have no chunk (submitted before such
        jobs were completed at insert: nothing would ever finish them); returns them."""
        with self.db.session() as session:
            ids = session.execute(
                select(Job.id).where(Job.status.in_(ACTIVE), Job.chunk_count == 0).limit(1000)
            ).scalars().all()  # fmt: skip
        finished = []
        for job_id in ids:
            with self.db.session() as session:
                now = utcnow()
                # taken by this conditional update (its row lock until commit): another
                # process recovering at the same time finds it started and leaves it, so
                # the job finishes - and its webhook is sent - once
                res = session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == "queued", Job.chunk_count == 0)
                    .values(status="processing", started_at=now)
                )
                if res.rowcount != 1:
                    session.rollback()
                    continue
                job = _reloaded(session, job_id)
                finished.append(self._finish_job(session, job, [], now))
        return finished

    async def finish_empty_jobs(self) -> int:
        """Complete stranded jobs with nothing to translate (``_finish_empty``), with
        what every finished job gets (``on_finished``). Returns how many."""
        finished = await self.db.run(self._finish_empty)
        for job in finished:
            await self.on_finished(job)
        if finished:
            log.warning("finished stranded jobs with no chunks", extra={"jobs": len(finished)})
        return len(finished)

    async def recover(self) -> int:
        """Re-publish chunks of unfinished jobs (the in-process queue died with the last
        process) and finish those that have none. Returns how many chunks were
        re-published."""
        await self.finish_empty_jobs()
        rows = await self.db.run(self._unfinished)
        for job_id, priority, src, tgt, idx, words in rows:
            self.pending_words[priority] += words
            await self.queue.publish(ChunkMessage(job_id, idx, priority, src, tgt, words))
        if rows:
            log.info("re-published unfinished chunks", extra={"chunks": len(rows)})
        return len(rows)

    def _stale(self, older_than_s: float):  # noqa: ANN202
        with self.db.session() as session:
            now = utcnow()
            cutoff = now - timedelta(seconds=older_than_s)
            rows = session.execute(
                select(*_MESSAGE_COLUMNS, Chunk.id, Chunk.chunk_index, Chunk.word_count)
                .join(Chunk, Chunk.job_id == Job.id)
                .where(
                    Job.status.in_(ACTIVE),
                    Chunk.status.in_(ACTIVE),
                    Chunk.updated_at < cutoff,
                )
                .order_by(Job.created_at, Chunk.chunk_index)
                .limit(10_000)
            ).all()
            if rows:  # touch them so the next pass waits another older_than_s
                session.execute(
                    update(Chunk).where(Chunk.id.in_([r[4] for r in rows])).values(updated_at=now)
                )
                session.commit()
            return [(*r[:4], idx, words) for *r, idx, words in rows]

    async def requeue_stale(self, older_than_s: float) -> int:
        """Reconciler step: re-publish chunks of active jobs that have not moved for
        ``older_than_s`` (a lost publish, a broker restart). Redeliveries are harmless:
        results are written once per (job, chunk). Jobs with no chunk at all, which no
        re-publish can finish, are completed. Returns how many chunks were re-published."""
        await self.finish_empty_jobs()
        rows = await self.db.run(self._stale, older_than_s)
        for job_id, priority, src, tgt, idx, words in rows:
            await self.queue.publish(ChunkMessage(job_id, idx, priority, src, tgt, words))
        if rows:
            log.warning("re-published stale chunks", extra={"chunks": len(rows)})
        return len(rows)


_MESSAGE_COLUMNS = (Job.id, Job.priority, Job.source_lang, Job.target_lang)


def _db_attributes(operation: str, job_id: str, chunk_index: int) -> dict:
    return {"db.operation.name": operation, "mtb.job_id": job_id, "mtb.chunk_index": chunk_index}


def words_per_minute(words: int, milliseconds: int | None) -> float | None:
    if milliseconds is None:
        return None
    return round(words * 60_000 / max(milliseconds, 1), 1)


def word_weighted_mean(values: list[float], words: list[int]) -> float | None:
    """Mean of ``values`` weighted by word counts (at least 1 each): long sentences and
    chunks count for more than a lone heading. None when there is nothing to average."""
    weights = [max(w, 1) for w in words]
    if not weights:
        return None
    return round(sum(w * v for w, v in zip(weights, values, strict=True)) / sum(weights), 6)


def weighted_confidence(segments: list[str], scores: list[float]) -> float | None:
    """Confidence of a chunk: its segments' scores (each the geometric mean probability of
    the segment's output tokens), word-weighted; a job's is the same over its chunks."""
    return word_weighted_mean(scores, [count_words(s) for s in segments])


def elapsed_speed(job: Job) -> float:
    """Words per minute for this job since it started (the design's ``current_speed``)."""
    if not job.started_at or not job.words_processed:
        return 0.0
    end = job.completed_at or utcnow()
    seconds = max((as_utc(end) - as_utc(job.started_at)).total_seconds(), 1e-3)
    return round(job.words_processed * 60 / seconds, 1)


__all__ = [
    "Claim",
    "InvalidMarkup",
    "JobConflict",
    "JobNotFound",
    "JobService",
    "SubmitRequest",
    "Throughput",
    "cache_version",
    "count_text_words",
    "elapsed_speed",
    "merge_glossaries",
    "options_json",
    "protection_for",
]
