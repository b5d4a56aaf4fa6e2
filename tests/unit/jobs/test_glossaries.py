"""Stored glossaries (control_plane.jobs.glossaries) on SQLite, and how JobService turns a
submission's translation options into the job's stored options and cache key."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from control_plane.auth import create_user
from control_plane.cache import SegmentCache
from control_plane.db import Chunk, Database, Job
from control_plane.domain import DomainError
from control_plane.jobs import glossaries as g
from control_plane.jobs.service import (
    JobService,
    SubmitRequest,
    cache_version,
    count_text_words,
    merge_glossaries,
    protection_for,
)
from control_plane.queue import MemoryChunkQueue
from control_plane.settings import Settings
from control_plane.text.spans import Protection


@pytest.fixture
def db(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'g.db'}")
    db.migrate()
    yield db
    db.close()


@pytest.fixture
def users(db):
    a, _ = create_user(db.engine, "a@x.io", "pro")
    b, _ = create_user(db.engine, "b@x.io", "pro")
    return a.id, b.id


def test_crud_is_scoped_to_the_user(db, users):
    a, b = users
    made = g.create(db.engine, a, "  ui  ", {"file": "arquivo", "folder": "pasta"})
    assert (made.name, made.term_count, len(made.content_hash)) == ("ui", 2, 64)
    assert made.content_hash == g.content_hash({"folder": "pasta", "file": "arquivo"})
    assert g.get(db.engine, a, made.id).terms == {"file": "arquivo", "folder": "pasta"}
    assert g.terms_for(db.engine, a, made.id) == {"file": "arquivo", "folder": "pasta"}
    for call in (g.get, g.terms_for, g.delete):  # another user's is "not found"
        with pytest.raises(g.GlossaryNotFound):
            call(db.engine, b, made.id)
    with pytest.raises(g.GlossaryNotFound):
        g.replace(db.engine, b, made.id, terms={"x": "y"})
    items, total = g.list_for(db.engine, a)
    assert total == 1 and items[0].id == made.id and items[0].terms is None
    assert g.list_for(db.engine, b) == ([], 0)
    # the same name is another user's to take too
    assert g.create(db.engine, b, "ui", {"x": "y"}).name == "ui"

    new = g.replace(db.engine, a, made.id, name="ui2", terms={"file": "ficheiro"})
    assert (new.name, new.term_count) == ("ui2", 1)
    assert new.content_hash != made.content_hash and new.updated_at >= made.updated_at
    assert g.get(db.engine, a, made.id).terms == {"file": "ficheiro"}
    g.delete(db.engine, a, made.id)
    with pytest.raises(g.GlossaryNotFound):
        g.get(db.engine, a, made.id)


def test_duplicate_names_and_the_per_user_limit(db, users, monkeypatch):
    a, _ = users
    first = g.create(db.engine, a, "one", {"x": "y"})
    with pytest.raises(g.GlossaryNameTaken):
        g.create(db.engine, a, "one", {"x": "y"})
    other = g.create(db.engine, a, "two", {"x": "y"})
    with pytest.raises(g.GlossaryNameTaken):
        g.replace(db.engine, a, other.id, name="one")
    assert g.replace(db.engine, a, first.id, name="one").name == "one"  # its own name
    monkeypatch.setattr(g, "MAX_GLOSSARIES_PER_USER", 2)
    with pytest.raises(g.TooManyGlossaries):
        g.create(db.engine, a, "three", {"x": "y"})


@pytest.mark.parametrize(
    ("name", "terms", "message"),
    [
        ("", {"x": "y"}, "name: must not be empty"),
        ("n" * 201, {"x": "y"}, "at most 200"),
        ("a\nb", {"x": "y"}, "printable"),
        (5, {"x": "y"}, "name: must be a string"),
        ("n", {}, "at least one term"),
        ("n", ["x"], "JSON object"),
        ("n", {"x": 1}, "must be a string"),
        ("n", {"  ": "y"}, "empty or only spaces"),
        ("n", {"x": ""}, "empty or only spaces"),
        ("n", {"x\x00": "y"}, "no NUL"),
        ("n", {"x": "y" * 201}, "at most 200"),
        ("n", {"API": "a", "api ": "b"}, "differ only in case"),
        ("n", {f"t{i}": "y" for i in range(1001)}, "at most 1000"),
    ],
)
def test_bad_names_and_terms_are_clear(db, users, name, terms, message):
    with pytest.raises(DomainError) as info:
        g.create(db.engine, users[0], name, terms)
    assert info.value.code == "invalid_request"
    assert message in info.value.message
    assert info.value.details[0]["field"] in ("name", "terms")


def test_merge_inline_wins_ignoring_case_and_spaces():
    stored = {"File": "arquivo", "folder": "pasta"}
    assert merge_glossaries(stored, {"file ": "ficheiro"}) == {
        "folder": "pasta",
        "file ": "ficheiro",
    }
    assert merge_glossaries(None, None) == {}
    assert merge_glossaries(stored, None) == stored


def test_markup_words_count_the_text_not_the_tags():
    html = '<p class="intro big">Click <b>Save</b> now.</p><!-- a note -->'
    assert count_text_words(html, "html") == 3  # Click Save now. (comments are tags)
    assert count_text_words(html, "text") == len(html.split())
    assert count_text_words("<" * 100_000 + "a", "xml") == 1  # linear, no backtracking


def test_cache_version_follows_the_options():
    plain = cache_version("m1", None)
    assert plain.startswith("m1+") and plain == cache_version("m1", None)
    glossary = json.dumps({"format": "text", "glossary": {"file": "arquivo"}})
    other = json.dumps({"format": "text", "glossary": {"file": "ficheiro"}})
    assert len({plain, cache_version("m1", glossary), cache_version("m1", other)}) == 3
    # the glossary id is not part of the key: the content is
    with_id = json.dumps({"format": "text", "glossary": {"file": "arquivo"}, "glossary_id": "x"})
    assert cache_version("m1", with_id) == cache_version("m1", glossary)
    assert protection_for(with_id) == Protection.of("text", (), {"file": "arquivo"})


@pytest.fixture
def service(db, tmp_path):
    settings = Settings(data_dir=tmp_path, chunk_words=50)
    return JobService(db, MemoryChunkQueue(aging_s=0), SegmentCache(db.engine), settings)


def _stored(db, job_id):
    with db.session() as session:
        job = session.get(Job, job_id)
        chunks = session.exec(select(Chunk).where(Chunk.job_id == job_id)).all()
        return job, chunks


async def test_submit_stores_resolved_options(db, users, service):
    a, b = users
    made = g.create(db.engine, a, "ui", {"file": "arquivo", "save": "salvar"})
    req = SubmitRequest(
        a,
        "Save the file.",
        "en",
        "pt",
        do_not_translate=["Acme"],
        glossary={"FILE": "ficheiro"},
        glossary_id=made.id,
    )
    job = await service.submit(req, "m1")
    stored, _ = _stored(db, job.id)
    options = json.loads(stored.options)
    assert options == {
        "format": "text",
        "do_not_translate": ["Acme"],
        "glossary": {"FILE": "ficheiro", "save": "salvar"},  # inline wins
        "glossary_id": made.id,
    }
    assert (stored.format, stored.glossary_id) == ("text", made.id)
    # a later edit of the stored glossary changes no submitted job
    g.replace(db.engine, a, made.id, terms={"save": "gravar"})
    assert json.loads(_stored(db, job.id)[0].options)["glossary"]["save"] == "salvar"
    # the worker's claim carries the options
    claim = service.claim_chunk(job.id, 0)
    assert claim.options == stored.options
    assert protection_for(claim.options).glossary_lookup()["file"] == "ficheiro"

    # defaults store nothing
    plain = await service.submit(SubmitRequest(a, "Hello there.", "en", "pt"), "m1")
    assert _stored(db, plain.id)[0].options is None
    assert service.claim_chunk(plain.id, 0).options is None

    # another user's glossary is not found, and nothing is stored
    with pytest.raises(g.GlossaryNotFound) as info:
        await service.submit(SubmitRequest(b, "Hi.", "en", "pt", glossary_id=made.id), "m1")
    assert info.value.code == "glossary_not_found"


async def test_submit_plans_with_the_format_and_counts_text_words(db, users, service, monkeypatch):
    from control_plane.jobs import service as service_module
    from control_plane.text import chunking

    seen = []

    def fake_plan(text, target_words, lang, fmt="text"):
        seen.append(fmt)
        chunks, layouts = chunking.plan(text, target_words, lang)
        return chunks, [x.dumps() for x in layouts], [s for x in layouts for s in x.segments]

    monkeypatch.setattr(service_module, "plan_stored", fake_plan)
    html = '<p class="a b c">Hello <b>big</b> world.</p>'
    job = await service.submit(SubmitRequest(users[0], html, "en", "pt", format="html"), "m1")
    assert seen == ["html"]
    stored, chunks = _stored(db, job.id)
    assert stored.word_count == 3 and sum(c.word_count for c in chunks) == 3
    assert (stored.format, json.loads(stored.options)) == ("html", {"format": "html"})

    def broken(text, target_words, lang, fmt="text"):
        raise ValueError("mismatched tag: line 1, column 9")

    monkeypatch.setattr(service_module, "plan_stored", broken)
    with pytest.raises(DomainError) as info:
        await service.submit(SubmitRequest(users[0], "<a><b></a>", "en", "pt", format="xml"), "m1")
    assert info.value.code == "invalid_markup" and "mismatched tag" in info.value.message


async def test_submit_time_cache_lookup_uses_the_workers_key(db, users, service):
    from control_plane.engine.base import Translation

    text = "Save the file."
    opts = json.dumps({"format": "text", "glossary": {"file": "arquivo"}})
    service.cache.put_many([text], [Translation("x", 0.9)], "en", "pt", cache_version("m1", opts))
    plain = await service.submit(SubmitRequest(users[0], text, "en", "pt"), "m1")
    assert _stored(db, plain.id)[0].cached_segments == 0  # another key
    job = await service.submit(
        SubmitRequest(users[0], text, "en", "pt", glossary={"file": "arquivo"}), "m1"
    )
    assert _stored(db, job.id)[0].cached_segments == 1
