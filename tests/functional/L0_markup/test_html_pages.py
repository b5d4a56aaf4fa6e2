"""Issue 11, inline markup: real HTML pages (the system's own /usr/share/doc) and XML
documents translated end to end with the real in-process engine, through
plan_markup -> protect.run_sync -> Layout.render. Every translation must parse and keep
its structure (``compare_structure``), and most text must actually change."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from control_plane.engine.base import Translation
from control_plane.text.chunking import count_words
from control_plane.text.markup import compare_structure, plan_markup, tag_spans
from control_plane.text.protect import mask, run_sync, unmask
from control_plane.text.spans import Protection, find_spans, has_text, outside

DOC_ROOT = Path("/usr/share/doc")
MIN_PAGES = 20
MAX_PAGES = 24
MAX_PAGE_BYTES = 30_000  # skip huge pages (the nodejs API, manuals of a whole program)
MAX_PAGE_WORDS = 1_000
PER_PACKAGE = 6  # so one package's many similar pages do not make up the sample
MAX_WORDS = 8_000  # all pages together: about 15 s of the int8 engine on 2 cores


TEXT_NODES = "/html/body//text()[not(ancestor::script) and not(ancestor::style)]"


def pick_pages() -> list[Path]:
    """A deterministic sample: sorted paths, duplicates (symlinks, the same NEWS.html
    shipped by many packages) once, at most PER_PACKAGE per package, small pages only
    (20 to MAX_PAGE_WORDS words of text), until MAX_PAGES pages or MAX_WORDS words."""
    seen: set[str] = set()
    per_package: dict[str, int] = {}
    pages: list[Path] = []
    words = 0
    for path in sorted(DOC_ROOT.rglob("*.html")):
        if not path.is_file() or path.stat().st_size > MAX_PAGE_BYTES:
            continue
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        package = path.relative_to(DOC_ROOT).parts[0]
        if digest in seen or per_package.get(package, 0) >= PER_PACKAGE:
            continue
        # the text a reader sees: a test page that is all <script> has nothing to translate
        root = etree.HTML(data) if data.strip() else None
        text = " ".join(root.xpath(TEXT_NODES)) if root is not None else ""
        n = count_words(text)
        if not 20 <= n <= MAX_PAGE_WORDS or words + n > MAX_WORDS:
            continue
        seen.add(digest)
        per_package[package] = per_package.get(package, 0) + 1
        pages.append(path)
        words += n
        if len(pages) >= MAX_PAGES:
            break
    return pages


@dataclass
class Result:
    source: str  # the serialized source document
    translated: str
    segments: int
    changed: int  # segments whose translation differs from the source
    fallbacks: int  # segments whose masked translation failed the check
    words: int


class Engine:
    """The real engine as protect's ``translate`` callable, remembering its outputs so
    that the test can count which masked segments needed the piece-by-piece fallback."""

    def __init__(self, engine):  # noqa: ANN001 - control_plane.engine's LocalEngine
        self.engine = engine
        self.outputs: dict[str, Translation] = {}

    def __call__(self, texts: list[str]) -> list[Translation]:
        out = self.engine.translate(texts, "en", "pt")
        self.outputs.update(zip(texts, out, strict=True))
        return out

    def fell_back(self, segment: str, protection: Protection, fmt: str) -> bool:
        spans = find_spans(segment, protection, tag_spans(segment, fmt))
        if not spans or not has_text(outside(segment, spans)):
            return False
        masked = mask(segment, spans)
        first = self.outputs.get(masked.text)
        return first is not None and unmask(masked, first.text) is None


def translate_document(text: str, fmt: str, engine: Engine) -> Result:
    protection = Protection.of(format=fmt)
    chunks, layouts = plan_markup(text, fmt, 300, "en")
    rendered, segments, changed, fallbacks, words = [], 0, 0, 0, 0
    for chunk, layout in zip(chunks, layouts, strict=True):
        assert layout.source() == chunk
        out = run_sync(layout.segments, protection, engine)
        rendered.append(layout.render([t.text for t in out]))
        segments += len(layout.segments)
        changed += sum(t.text != s for t, s in zip(out, layout.segments, strict=True))
        fallbacks += sum(engine.fell_back(s, protection, fmt) for s in layout.segments)
        words += sum(count_words(s) for s in layout.segments)
    return Result("".join(chunks), "".join(rendered), segments, changed, fallbacks, words)


@pytest.fixture(scope="module")
def engine(local_engine) -> Engine:
    return Engine(local_engine)


@pytest.fixture(scope="module")
def pages(engine) -> dict[str, Result]:
    paths = pick_pages()
    if len(paths) < MIN_PAGES:
        pytest.skip(f"only {len(paths)} usable HTML pages under {DOC_ROOT}")
    started = time.perf_counter()
    results = {}
    for path in paths:
        text = path.read_bytes().decode("utf-8", "replace")
        results[str(path.relative_to(DOC_ROOT))] = translate_document(text, "html", engine)
    seconds = time.perf_counter() - started
    total = lambda field: sum(getattr(r, field) for r in results.values())  # noqa: E731
    print(
        f"\n{len(results)} pages, {total('words')} words, {total('segments')} segments, "
        f"{total('fallbacks')} fell back, {total('changed')} changed, {seconds:.1f} s"
    )
    return results


def test_every_page_parses_and_keeps_its_structure(pages):
    assert len(pages) >= MIN_PAGES
    problems = {
        name: compare_structure(r.source, r.translated, "html") for name, r in pages.items()
    }
    assert {name: p for name, p in problems.items() if p} == {}


def test_pages_are_really_translated(pages):
    segments = sum(r.segments for r in pages.values())
    changed = sum(r.changed for r in pages.values())
    # names, version links ("20.x"), API identifiers and nav entries stay as they are
    assert changed >= 0.5 * segments
    for name, r in pages.items():
        assert r.changed, name


def test_few_segments_need_the_fallback(pages):
    segments = sum(r.segments for r in pages.values())
    fallbacks = sum(r.fallbacks for r in pages.values())
    assert fallbacks <= 0.1 * segments


def test_code_and_urls_of_the_pages_come_through(pages):
    """What the pages had in <pre>/<code> and their links is still there, byte for byte."""
    for name, r in pages.items():
        src, out = etree.HTML(r.source), etree.HTML(r.translated)
        for query in ("//pre", "//code"):
            assert [etree.tostring(e, with_tail=False) for e in src.xpath(query)] == [
                etree.tostring(e, with_tail=False) for e in out.xpath(query)
            ], name
        assert src.xpath("//a/@href") == out.xpath("//a/@href"), name


DOCBOOK = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE article [<!ENTITY product "MT Backend">]>
<article xmlns:its="http://www.w3.org/2005/11/its" its:version="2.0" xml:lang="en">
  <title>Getting started with &product;</title>
  <section id="install">
    <title>Installing the service</title>
    <para>Run <command>make install</command> as root. Then open
      <filename>/etc/mt/backend.conf</filename> and set the <emphasis>port</emphasis>
      you want the service to listen on.</para>
    <programlisting>make &amp;&amp; make test</programlisting>
    <para its:translate="no">ACME internal build notes.</para>
    <note><para>The first start takes a few minutes &amp; downloads the models.</para></note>
    <itemizedlist>
      <listitem><para>Fast translation of <emphasis role="strong">large</emphasis> documents.</para>
      </listitem>
      <listitem><para>Callbacks when a job is done.</para></listitem>
    </itemizedlist>
  </section>
</article>
"""

XLIFF = """<?xml version="1.0" encoding="UTF-8"?>
<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2">
  <file source-language="en" datatype="plaintext" original="app.po">
    <body>
      <trans-unit id="1"><source>Save the file before you close the window.</source></trans-unit>
      <trans-unit id="2"><source>Click <g id="b">Open</g> to choose a <x id="icon"/> file.</source>
      </trans-unit>
      <trans-unit id="3"><source>Deleted %d files &lt;permanently&gt;.</source></trans-unit>
    </body>
  </file>
</xliff>
"""


@pytest.mark.parametrize("document", [DOCBOOK, XLIFF], ids=["docbook", "xliff"])
def test_xml_documents(engine, document):
    r = translate_document(document, "xml", engine)
    assert compare_structure(r.source, r.translated, "xml") == []
    etree.fromstring(r.translated.encode())  # well-formed XML
    assert r.changed >= r.segments - 1
    if document is DOCBOOK:
        assert "make &amp;&amp; make test" in r.translated
        assert "&product;" in r.translated and "ACME internal build notes." in r.translated
        assert "<command>make install</command>" in r.translated
    else:
        assert '<g id="b">' in r.translated and '<x id="icon"/>' in r.translated
        assert "%d" in r.translated


def test_hostile_engine_output_cannot_break_a_page(pages):
    """A model that writes markup characters of its own still gives a well-formed page."""

    def hostile(texts: list[str]) -> list[Translation]:
        return [Translation(t + ' <i> & "', 0.5) for t in texts]

    name = sorted(pages)[0]
    source = pages[name].source
    chunks, layouts = plan_markup(source, "html", 300, "en")
    out = "".join(
        layout.render(
            [t.text for t in run_sync(layout.segments, Protection.of(format="html"), hostile)]
        )
        for layout in layouts
    )
    assert compare_structure(source, out, "html") == []
