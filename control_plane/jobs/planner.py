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
costs more than their plan. If the child dies (killed for memory, say) or cannot start,
the plan runs in the calling thread and the next large text starts a new child.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor

from control_plane.cores import usable_cores
from control_plane.jobs import documents
from control_plane.text import chunking
from control_plane.text.formats.units import plan_document

log = logging.getLogger(__name__)

PROCESS_CHARS = 256 * 1024
MARKUP_FORMATS = ("html", "xml")  # planned by control_plane.text.markup
SEP = "\x00"
PROCESS_WORKERS = max(1, min(4, usable_cores() // 2))

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


def _executor() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(
                PROCESS_WORKERS, mp_context=multiprocessing.get_context("spawn")
            )
        return _pool


def _discard(pool: ProcessPoolExecutor) -> None:
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


def plan_stored(
    text: str, target_words: int, lang: str, fmt: str = "text"
) -> tuple[list[str], list[str], list[str]]:
    """(chunks, ``Layout.dumps()`` of each chunk, the segments in order). Blocking: call it
    from a thread."""
    planned = None
    if len(text) >= PROCESS_CHARS:
        pool = _executor()
        try:
            planned = pool.submit(_plan_here, text, target_words, lang, fmt).result()
        except Exception as exc:  # noqa: BLE001 - the child died or could not start
            log.warning(
                "planner process failed; planning in this process", extra={"error": repr(exc)}
            )
            _discard(pool)
    if planned is None:
        planned = _plan_here(text, target_words, lang, fmt)
    chunks, stored, segments = planned
    return chunks, stored, segments.split(SEP) if segments else []


def shutdown() -> None:
    """Stop the planner processes (they also end with this process)."""
    with _lock:
        pool = _pool
    if pool is not None:
        _discard(pool)
