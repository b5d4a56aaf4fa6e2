"""A submission's chunks and layouts, planned in a worker process when the text is large.

``plan_stored(text, target_words, lang, fmt)`` returns ``(chunks, layouts as stored JSON,
segments)``. Chunking is linear in the text (control_plane.text.chunking) but still a few
seconds of pure Python for the worst 8 MiB documents (8 MiB of "a。": 4-5 s), and in the
API process those seconds compete for the GIL with the event loop and, through the
objects they create, set off full garbage collections (50-130 ms each here): /healthz
took up to 160 ms during such a submit with the plan in a thread. A text of
``PROCESS_CHARS`` or more is therefore planned in a child process (spawned on first use,
``PROCESS_WORKERS`` of them); the API process only unpickles a few long strings. Shorter
texts, nearly every request, are planned in the calling thread: a round trip to the child
costs more than their plan.

What goes wrong where:

- the plan itself fails (a document or markup that does not parse: ValueError,
  SyntaxError, InvalidDocument): the caller gets that error as it is, and the pool,
  which is fine, goes on serving everyone else;
- the pool cannot start at all (no working ``spawn`` here: a sandbox without
  semaphores, a script without a ``__main__`` guard, EAGAIN): the plan runs in the
  calling thread, as small texts do, so planning still works where child processes do
  not; the next large text tries a new pool. A new pool proves itself with a no-op
  first, so that a child that dies on start is told apart from one a text killed;
- a child dies mid-plan (killed for memory, say): the pool is broken and every plan in
  it fails, not only the text that killed it. The pool is replaced (others' queued plans
  are not cancelled: they are failed already), and each of those texts is planned once
  more in a child of its own, so that only the one that kills that child too is
  refused, with ``PlanNotFinished`` (a 422). Never in this process: a text that killed
  a child for memory would take the API process down with it.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from control_plane.cores import usable_cores
from control_plane.jobs import documents
from control_plane.text import chunking
from control_plane.text.formats.units import plan_document

log = logging.getLogger(__name__)

PROCESS_CHARS = 256 * 1024
MARKUP_FORMATS = ("html", "xml")  # planned by control_plane.text.markup
SEP = "\x00"
PROCESS_WORKERS = max(1, min(4, usable_cores() // 2))
START_TIMEOUT_S = 60.0  # a new pool's first child: spawn and imports, ~1 s when idle

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None


def _plan_here(
    text: str, target_words: int, lang: str, fmt: str = "text"
) -> tuple[list[str], list[str], str]:
    if fmt in MARKUP_FORMATS:
        from control_plane.text.markup import plan_markup

        chunks, layouts = plan_markup(text, fmt, target_words, lang)
    elif documents.is_document(fmt):
        units = documents.extract(text, fmt)
        chunks, layouts = plan_document(units, documents.markup_of(fmt), target_words, lang)
    else:
        chunks, layouts = chunking.plan(text, target_words, lang)
    # one string to pickle; no segment holds a NUL (submissions refuse them)
    segments = SEP.join(s for layout in layouts for s in layout.segments)
    return chunks, [layout.dumps() for layout in layouts], segments


class PlanNotFinished(documents.InvalidDocument):
    """The text killed the process planning it (out of memory, say), twice: refused
    like a document that does not parse (422 ``invalid_document``)."""


def _ready() -> None:
    """A new pool's first task: its child started and imported this module."""


def _start(workers: int) -> ProcessPoolExecutor:
    """A pool whose first child has run ``_ready``; raises when it cannot start."""
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        pool.submit(_ready).result(timeout=START_TIMEOUT_S)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    return pool


def _executor() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = _start(PROCESS_WORKERS)
        return _pool


def _discard(pool: ProcessPoolExecutor, cancel: bool = False) -> None:
    """Forget ``pool`` (if it is still the current one) and shut it down. A broken pool
    has failed its futures already; ``cancel`` is for ``shutdown`` only."""
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=cancel)


def _plan_alone(args: tuple) -> tuple[list[str], list[str], str]:
    """Plan in a child of its own after the shared pool broke: whether this text killed
    it or only shared the pool with one that did, a child that dies now was killed by
    this text. The plan's own errors pass through as they are."""
    try:
        pool = _start(1)
    except Exception as exc:  # noqa: BLE001 - never plan it here: it may be the killer
        raise PlanNotFinished(
            "the document could not be planned: no planning process could be started "
            "after the last one ended; try again later",
            details=[{"field": "content", "message": "not planned"}],
        ) from exc
    try:
        return pool.submit(_plan_here, *args).result()
    except BrokenProcessPool as exc:
        raise PlanNotFinished(
            "the document could not be planned: the planning process ran out of "
            "resources (memory, most likely) on it",
            details=[{"field": "content", "message": "too large or complex to plan"}],
        ) from exc
    finally:
        pool.shutdown(wait=False)


def plan_stored(
    text: str, target_words: int, lang: str, fmt: str = "text"
) -> tuple[list[str], list[str], list[str]]:
    """(chunks, ``Layout.dumps()`` of each chunk, the segments in order). Blocking: call it
    from a thread. Raises what the plan raises (ValueError, SyntaxError, InvalidDocument)
    and ``PlanNotFinished`` for a text that kills the planning process."""
    args = (text, target_words, lang, fmt)
    if len(text) < PROCESS_CHARS:
        planned = _plan_here(*args)
    else:
        planned = _plan_large(args)
    chunks, stored, segments = planned
    return chunks, stored, segments.split(SEP) if segments else []


def _plan_large(args: tuple) -> tuple[list[str], list[str], str]:
    try:
        pool = _executor()
    except Exception as exc:  # noqa: BLE001 - whatever keeps a child from starting
        log.warning("planner process cannot start; planning here", extra={"error": repr(exc)})
        return _plan_here(*args)
    try:
        future = pool.submit(_plan_here, *args)
    except RuntimeError as exc:  # BrokenProcessPool: another text's plan broke it; or shut down
        _discard(pool)
        cause = exc
    except Exception as exc:  # noqa: BLE001 - one more worker could not be spawned
        log.warning("planner process cannot start; planning here", extra={"error": repr(exc)})
        return _plan_here(*args)
    else:
        try:
            return future.result()  # the plan's own errors pass through: the pool is fine
        except BrokenProcessPool as exc:
            _discard(pool)
            cause = exc
    log.warning(
        "planner process ended; planning this text in a process of its own",
        extra={"error": repr(cause)},
    )
    return _plan_alone(args)


def shutdown() -> None:
    """Stop the planner processes (they also end with this process)."""
    with _lock:
        pool = _pool
    if pool is not None:
        _discard(pool, cancel=True)
