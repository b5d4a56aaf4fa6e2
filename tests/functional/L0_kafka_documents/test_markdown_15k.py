"""A 15,000-word Markdown document through the production stack (REST upload ->
PostgreSQL -> Kafka -> `mtctl worker` -> result file) keeps its structure: the same
blocks (headings, lists, tables, code fences, front matter), code and URLs byte for byte."""

from __future__ import annotations

import re

import pytest
import requests
from markdown_it import MarkdownIt

from control_plane.text.chunking import Layout
from evaluation.documents import markdown_doc
from evaluation.sets import gettext_set

pytestmark = pytest.mark.services


def distinct_sentences(words: int) -> list[str]:
    """Gettext sentences, then pairs of them joined with a semicolon, until ``words``."""
    base = [s for s, _ in gettext_set("en-pt") if len(Layout.parse(s, "en").segments) == 1]
    out, count, k = [], 0, 0
    stream = iter(
        base + [f"{a.rstrip('.!?')}; {b[0].lower()}{b[1:]}" for a in base for b in base[k::97]]
    )
    while count < words:
        s = next(stream)
        out.append(s)
        count += len(s.split())
    return out


def blocks(text: str) -> list[str]:
    md = MarkdownIt("commonmark").enable("table")
    return [f"{t.type}:{t.tag}:{t.markup}" for t in md.parse(text) if t.type != "inline"]


@pytest.fixture(scope="module")
def stack(make_stack):
    return make_stack("documents", MTB_MAX_WORDS="40000")


@pytest.mark.slow
def test_15000_word_markdown_keeps_its_structure(stack):
    source = markdown_doc(distinct_sentences(15_000)).decode()
    r = requests.post(
        f"{stack.url}/api/v1/documents",
        headers=stack.service.headers("enterprise"),
        data={"source_language": "en", "target_language": "pt", "priority": "high"},
        files={"file": ("notes.md", source.encode())},
        timeout=120,
    )
    assert r.status_code == 202, r.text
    sub = r.json()
    assert sub["word_count"] >= 12_000 and sub["chunk_count"] >= 10
    job = stack.wait(sub["job_id"], timeout=600)
    assert job["status"] == "completed", job
    assert job["words_processed"] == job["word_count"]
    out = requests.get(
        f"{stack.url}/api/v1/jobs/{sub['job_id']}/result",
        headers=stack.service.headers("enterprise"),
        timeout=60,
    )
    assert out.status_code == 200 and 'filename="notes.pt.md"' in out.headers["Content-Disposition"]
    translated = out.content.decode()
    assert blocks(translated) == blocks(source)
    assert translated.startswith("---\ntitle: Release notes\n---\n")
    fence = "```sh\nmake test  # not translated\n```"
    assert translated.count(fence) == source.count(fence)
    urls = re.compile(r"https://example\.com/guide/\d+")
    assert urls.findall(translated) == urls.findall(source)
    assert translated.count("`make test`") == source.count("`make test`")
    headings = [ln for ln in translated.splitlines() if ln.startswith("## ")]
    assert sum(h not in source for h in headings) >= 0.9 * len(headings)  # translated
