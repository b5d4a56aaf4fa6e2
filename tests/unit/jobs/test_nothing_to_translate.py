"""A job with nothing to translate (a markdown file of only code, a VTT file with no cue,
a PO file with only its header, an XLIFF file with no unit) has no chunk: no worker will
ever claim one, so it is completed at submit, with its document rebuilt from no
translations, and finishes like any job (on_finished: metrics, webhook, results topic).
Such jobs left queued by older versions are finished by recovery and the reconciler."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from control_plane.api.routes.jobs import job_view
from control_plane.db import Chunk, Job, utcnow
from control_plane.jobs import documents
from control_plane.jobs.service import SubmitRequest
from control_plane.settings import Settings
from control_plane.text.formats import Options
from tests.unit.workers.parts import worker_parts

PO_HEADER = 'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n'
XLIFF_EMPTY = (
    '<?xml version="1.0"?>\n<xliff version="1.2" '
    'xmlns="urn:oasis:names:tc:xliff:document:1.2"><file source-language="en" '
    'datatype="plaintext" original="x"><body></body></file></xliff>\n'
)
EMPTY_DOCUMENTS = {
    "markdown code": ("```\ncode\n```\n", "markdown"),
    "markdown front matter": ("---\ntitle: x\n---\n", "markdown"),
    "markdown html block": ("<div>\nhello\n</div>\n", "markdown"),
    "vtt header only": ("WEBVTT\n", "vtt"),
    "po header only": (PO_HEADER, "po"),
    "xliff no units": (XLIFF_EMPTY, "xliff"),
}


@pytest.fixture
async def parts(tmp_path):
    settings = Settings(data_dir=tmp_path, chunk_words=4, batch_words=4)
    async with worker_parts(settings, "empty@x.io") as got:
        yield got


@pytest.mark.parametrize("name", list(EMPTY_DOCUMENTS))
async def test_a_job_with_no_chunk_completes_at_submit(parts, name):
    settings, user, queue, jobs, engine, worker, finished = parts
    text, fmt = EMPTY_DOCUMENTS[name]
    job = await jobs.submit(SubmitRequest(user.id, text, "en", "pt", format=fmt), "v1")
    assert job.chunk_count == 0 and job.status == "completed"
    assert await queue.consume(100, timeout=0.1) == []  # nothing published
    assert [j.id for j in finished] == [job.id]  # finished once, like any job
    done = await jobs.get(user.id, job.id, texts=True)
    assert done.status == "completed" and done.error is None
    # the worker's rebuild path from zero translations: the document as it came (a PO
    # or XLIFF file gets the target language written into it, as a translated one does)
    rebuilt = documents.assemble(text, fmt, "", Options("en", "pt", "v1"))
    assert done.result_text == rebuilt
    assert documents.extract(done.result_text, fmt) == []
    if fmt == "markdown":
        assert done.result_text == text
    # timestamps and figures of a completed job, progress exactly 1
    assert done.started_at is not None and done.completed_at is not None
    assert done.processing_time_ms == 0 and done.cost_usd is not None
    assert done.words_processed == done.word_count == 0
    assert job_view(done).progress == 1.0
    assert engine.calls == []


async def test_an_unrebuildable_empty_document_fails_readably(parts, monkeypatch):
    settings, user, queue, jobs, engine, worker, finished = parts

    def broken(*args: object) -> str:
        raise ValueError("no")

    monkeypatch.setattr(documents, "assemble", broken)
    job = await jobs.submit(SubmitRequest(user.id, "WEBVTT\n", "en", "pt", format="vtt"), "v1")
    assert job.status == "failed" and "could not be rebuilt" in job.error
    assert [j.status for j in finished] == ["failed"]


async def test_plain_text_without_words_still_completes(parts):
    """Plain text always has a chunk (whitespace or punctuation only: a chunk with no
    segment), which the worker completes with the text as it was."""
    settings, user, queue, jobs, engine, worker, finished = parts
    for text in ("   \n\n  ", "!!! ... ???"):
        job = await jobs.submit(SubmitRequest(user.id, text, "en", "pt"), "v1")
        await worker.process(await queue.consume(100, timeout=0.5))
        done = await jobs.get(user.id, job.id, texts=True)
        assert done.status == "completed" and done.result_text == text
        assert done.words_processed == done.word_count


def _stranded(jobs, user_id: str) -> str:  # noqa: ANN001 - JobService
    """A job as older versions left one: queued, with no chunk."""
    with jobs.db.session() as session:
        job = Job(
            id=str(uuid.uuid4()),
            user_id=user_id,
            source_lang="en",
            target_lang="pt",
            model_version="v1",
            source_text="```\ncode\n```\n",
            format="markdown",
            created_at=utcnow(),
        )
        session.add(job)
        session.commit()
        return job.id


@pytest.mark.parametrize("how", ["recover", "reconcile"])
async def test_stranded_jobs_without_chunks_are_finished_once(parts, how):
    settings, user, queue, jobs, engine, worker, finished = parts
    job_id = _stranded(jobs, user.id)
    for _ in range(2):  # a second pass (another process) finishes nothing again
        if how == "recover":
            assert await jobs.recover() == 0
        else:
            assert await jobs.requeue_stale(0.0) == 0
    assert [j.id for j in finished] == [job_id]
    done = await jobs.get(user.id, job_id, texts=True)
    assert done.status == "completed" and done.result_text == "```\ncode\n```\n"
    assert done.started_at is not None and done.processing_time_ms is not None
    with jobs.db.session() as session:
        assert session.execute(select(func.count()).select_from(Chunk)).scalar_one() == 0
