"""Markdown (markdown-it-py): units, byte-identical rebuilds, round trips through
``translate_document`` with a fake translator, and real files from /usr/share/doc and
the venv's packages with the real int8 engine (the bundled en-pt model)."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path
from xml.sax.saxutils import unescape

import markdown_it
import pytest

from control_plane.engine.base import Translation
from control_plane.text.formats import Options, by_extension, get, translate_document
from control_plane.text.formats.markdown import parser
from control_plane.text.spans import has_text

REPO = Path(__file__).resolve().parents[4]
DATA = Path(__file__).parent / "data_md"
OPTIONS = Options("en", "pt")
FMT = get("markdown")


def upper(texts: list[str]) -> list[Translation]:
    """A fake model: upper-cases letters (mask tokens X1, X2 ... stay as they are)."""
    return [Translation(t.upper(), 1.0) for t in texts]


def sample() -> bytes:
    return (DATA / "sample.md").read_bytes()


def structure(data: bytes, exact_inline: bool = True) -> list[tuple]:
    """What must not change: every block token with its markup, info, alignment and (for
    code, HTML blocks and front matter) its content; per inline token the syntax of its
    children (links' URLs, code, HTML, images' sources), in order (``exact_inline``) or as
    a sorted list (a model may move inline tags within their block)."""
    out: list[tuple] = []
    for tok in parser().parse(data.decode("utf-8-sig")):
        if tok.type == "inline":
            kids = [
                (c.type, c.attrGet("href"), c.attrGet("src"), c.attrGet("title"), c.markup)
                + ((c.content,) if c.type in ("code_inline", "html_inline") else ())
                for c in tok.children or []
                if c.type not in ("text", "softbreak")
            ]
            out.append(("inline", tuple(kids if exact_inline else sorted(kids, key=str))))
            continue
        kept = tok.content if tok.type in ("fence", "code_block", "html_block") else None
        if tok.type == "front_matter":
            kept = tok.content
        out.append((tok.type, tok.tag, tok.markup, tok.info, tok.attrGet("style"), kept))
    return out


def translatable(unit_text: str) -> str:
    """The words of a unit the model is asked to translate: without tags and without
    protected spans (a template's ``{{ dataset_summary | default("", true) }}`` stays)."""
    from control_plane.text.spans import find_spans, outside

    text = plain_words(unit_text)
    rest = outside(text, find_spans(text))
    return rest if has_text(rest) else ""


def plain_words(unit_text: str) -> str:
    """A unit's text without its tags, whitespace collapsed."""
    from control_plane.text.markup import tag_spans

    out, pos = [], 0
    for s in tag_spans(unit_text, "xml"):
        if s.output.startswith("<"):
            out.append(unit_text[pos : s.start])
            pos = s.end
    out.append(unit_text[pos:])
    return " ".join(unescape("".join(out)).split())


# ---------------------------------------------------------------------------- units


def test_the_format_is_registered_for_md_files():
    assert by_extension("README.md") is FMT and by_extension("x.markdown") is FMT
    assert (FMT.name, FMT.media_type, FMT.binary, FMT.markup) == (
        "markdown",
        "text/markdown",
        False,
        "xml",
    )


def test_units_are_text_with_inline_syntax_as_tags():
    units = [u.text for u in FMT.extract(sample())]
    assert units[0] == "The <em1>big</em1> title"
    assert units[1].startswith("Some text with <strong1>bold</strong1>, <em2>em</em2> and <c3/>")
    assert "a <a4>link</a4> here" in units[1] and "AT&amp;T and 1 &lt; 2" in units[1]
    assert "<s8>struck</s8>" in units[1]
    assert "<t1/>task box item" in units
    assert "Quoted text in a block quote with <a1>ref link</a1> and <u2/>." in units
    assert ["Col A", "Col B <c1/>", "cell one", "cell | two"] == units[6:10]
    assert (
        units[-1] == "Line with hard break<br1/>next line,  and two spaces<br2/>for a second break."
    )
    joined = "\n".join(units)
    for kept in ("http", "code stays", "html block", "Hello world", "print", "Ref", "i.png"):
        assert kept not in joined  # code, HTML blocks, front matter, URLs: never units


def test_rebuild_with_the_units_themselves_is_byte_identical():
    data = sample()
    assert FMT.rebuild(data, [u.text for u in FMT.extract(data)], OPTIONS) == data
    crlf = b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n")
    assert FMT.rebuild(crlf, [u.text for u in FMT.extract(crlf)], OPTIONS) == crlf


def test_not_utf8_is_a_value_error():
    with pytest.raises(ValueError, match="UTF-8"):
        FMT.extract(b"caf\xe9 au lait")


# ---------------------------------------------------------------------------- round trips


def test_round_trip_keeps_the_structure_and_everything_outside_units():
    data = sample()
    out = translate_document(data, FMT, upper, OPTIONS)
    assert structure(out) == structure(data)
    text = out.decode()
    for kept in (
        "---\ntitle: Hello world\ntags: [a, b]\n---\n",
        '```python\nprint("code stays")\n```\n',
        "    indented code stays\n",
        "<div>\nhtml block text stays\n</div>\n",
        '[r1]: http://ref.example "Ref"\n',
        "|:------|------:|\n",
        '](http://x.y/z?q=1&r=2 "T t")',
        "`code | x`",
        "![image](i.png)",
        "<span>",
        "<http://auto.link>",
        "==============\n",
    ):
        assert kept in text
    assert "# THE *BIG* TITLE ##\n" in text
    assert "- [ ] TASK BOX ITEM\n" in text
    assert "| CELL \\| TWO |" in text
    assert "AT&T AND 1 \\< 2 AND SNAKE_CASE_NAME" in " ".join(text.split())
    units = [plain_words(u.text) for u in FMT.extract(out)]
    assert units == [plain_words(u.text).upper() for u in FMT.extract(sample())]


def test_crlf_and_bom_survive_a_round_trip():
    data = b"\xef\xbb\xbf" + sample().replace(b"\n", b"\r\n")
    out = translate_document(data, FMT, upper, OPTIONS)
    assert out.startswith(b"\xef\xbb\xbf---\r\n")
    assert b"\n" not in out.replace(b"\r\n", b"")
    assert structure(out) == structure(data)


def test_wrapped_paragraphs_are_rewrapped_to_their_width_with_their_prefixes():
    para = "word " * 40
    data = (
        f"> {para[:60].strip()}\n> {para[:60].strip()}\n\n"
        f"- {para[:50].strip()}\n  {para[:50].strip()}\n\n"
        "Short line.\n"
    ).encode()

    def longer(texts: list[str]) -> list[Translation]:
        return [Translation(" ".join(["palavra"] * 30), 1.0) for _ in texts]

    out = translate_document(data, FMT, longer, OPTIONS).decode()
    quote, item, short = out.split("\n\n")
    assert all(line.startswith("> ") and len(line) <= 62 for line in quote.splitlines())
    assert len(quote.splitlines()) > 2
    lines = item.splitlines()
    assert lines[0].startswith("- ") and all(ln.startswith("  ") for ln in lines[1:])
    assert all(len(line) <= 52 for line in lines)
    assert short == " ".join(["palavra"] * 30) + "\n"  # one line stays one line
    assert structure(out.encode()) == structure(translate_document(data, FMT, upper, OPTIONS))


@pytest.mark.parametrize(
    "model_text",
    [
        "# not a heading * not em _x_ [not a link](y) `no code` <b>no html</b> &amp; AT&T",
        "1. not a list - and - more - dashes + plus > quote | pipe ===",
        "- starts like a list item",
        "x " * 30 + "- " + "y " * 30 + "1. " + "z " * 30 + "=== " + "w " * 20,
    ],
)
def test_model_text_never_becomes_markdown_syntax(model_text):
    data = b"A paragraph\nover two lines.\n\n| a | b |\n|---|---|\n| c | d |\n"

    def fake(texts: list[str]) -> list[Translation]:

        return [Translation(model_text, 1.0) for _ in texts]

    out = translate_document(data, FMT, fake, OPTIONS)
    assert structure(out) == structure(data)
    for unit in FMT.extract(out):
        assert plain_words(unit.text) == " ".join(model_text.split())


def test_whitespace_inside_emphasis_moves_outside():
    data = b"Some *emphasis* here.\n"

    def spaced(texts: list[str]) -> list[Translation]:
        return [Translation(t.replace("X1", "X1 ").replace("X2", " X2"), 1.0) for t in texts]

    out = translate_document(data, FMT, spaced, OPTIONS)
    assert structure(out) == structure(data)


# ---------------------------------------------------------------------------- real files


@pytest.fixture(scope="module")
def model_dir() -> Path:
    from export.provision import ensure_default_models

    root = Path(os.environ.get("MTB_MODEL_DIR") or REPO / ".models")
    ensure_default_models(root, ("en-pt",))
    return root


@pytest.fixture(scope="module")
def engine(model_dir):
    from control_plane.engine import load_engine

    return load_engine(model_dir, precision="int8")


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def real_markdown_files(count: int = 10, low: int = 800, high: int = 8000) -> list[Path]:
    """``count`` Markdown files (``*.md``, ``*.md.gz``) of ``low``..``high`` bytes from
    /usr/share/doc and the venv's site-packages, evenly spread over the sorted list."""
    roots = [Path("/usr/share/doc"), Path(markdown_it.__file__).resolve().parents[1]]
    found = sorted(
        {
            p
            for root in roots
            if root.is_dir()
            for pat in ("*.md", "*.md.gz")
            for p in root.rglob(pat)
        },
        key=str,
    )
    found = [p for p in found if p.is_file() and low <= len(_read(p)) <= high]
    return found[:: max(1, len(found) // count)][:count]


REAL = real_markdown_files()


def test_real_files_are_found():
    assert len(REAL) >= 5, "no Markdown files on this machine?"


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_real_files_round_trip_unchanged_and_with_a_fake_model(path):
    data = _read(path)
    units = FMT.extract(data)
    assert FMT.rebuild(data, [u.text for u in units], OPTIONS) == data
    out = translate_document(data, FMT, upper, OPTIONS)
    assert structure(out) == structure(data), path
    assert len(FMT.extract(out)) == len(units)


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_real_files_with_the_real_engine(path, engine):
    data = _read(path)
    units = FMT.extract(data)
    seen: list[str] = []

    def call(texts: list[str]) -> list[Translation]:
        seen.extend(texts)
        return engine.translate(texts, "en", "pt")

    start = time.perf_counter()
    out = translate_document(data, FMT, call, OPTIONS)
    seconds = time.perf_counter() - start
    assert structure(out, exact_inline=False) == structure(data, exact_inline=False), path
    after = FMT.extract(out)
    assert len(after) == len(units)
    wordy = [i for i, u in enumerate(units) if len(translatable(u.text).split()) >= 3]
    changed = [i for i in wordy if plain_words(after[i].text) != plain_words(units[i].text)]
    # units of three words or more are translated; a model may copy a short name, a URL
    # or "Windows PowerShell:" as it is, and a unit of protected spans stays (a command
    # line "git clone git@host:x.git"): which files are picked depends on the machine
    unchanged = [units[i].text for i in wordy if i not in changed]
    assert len(changed) >= 0.9 * len(wordy), unchanged
    assert seen, "nothing reached the engine"
    print(f"{path}: {len(data)} bytes, {len(units)} units, {seconds:.2f} s")


# -- re-filling keeps protected spans whole ----------------------------------------------

ICU = "{n, plural, one {# item} other {# items}}"
CART_MD = (
    "Please note that you really have quite a few items left in\n"
    "your cart {n, plural, one {# item} other {# items}} and `git commit -m fix it` you\n"
    "should run the command before leaving because otherwise the\n"
    "items will be lost and nobody wants that to happen to them.\n"
)


@pytest.mark.parametrize("k", range(20))
def test_a_refilled_paragraph_never_breaks_an_icu_plural(k):
    def padded(texts: list[str]) -> list[Translation]:
        return [Translation(t.replace("cart", "cart" + " xx" * k), 1.0) for t in texts]

    out = translate_document(CART_MD.encode(), FMT, padded, OPTIONS).decode()
    assert ICU in out and "`git commit -m fix it`" in out
    assert out.split().count("xx") == k and out.count("\n") >= 4  # re-filled, not one line


def test_refilled_words_keep_do_not_translate_strings_and_glossary_targets():
    from control_plane.text.formats.markdown import _words
    from control_plane.text.spans import Protection

    text = "send it to Acme Cloud Storage Gateway via the Banco de dados now"
    protection = Protection.of(
        do_not_translate=["Acme Cloud Storage Gateway"], glossary={"database": "banco de dados"}
    )
    words = _words([("text", text)], {}, False, protection)[0]
    assert "Acme Cloud Storage Gateway" in words and "Banco de dados" in words
    assert " ".join(words) == text
    assert _words([("text", text)], {}, False) == [text.split(" ")]  # without: none known


@pytest.mark.parametrize(
    "text",
    ["plain words  with two spaces", "a_b _c *d* [e] <f> & g; &amp; x", " lead and trail "],
)
def test_refilled_words_of_text_without_spans_are_as_before(text):
    from control_plane.text.formats.markdown import _md_escape, _words

    before = [_md_escape(p, False) for p in text.split(" ") if p]
    assert _words([("text", text)], {}, False) == [before]


def test_nesting_past_markdown_its_limit_is_refused_not_left_untranslated():
    """markdown-it parses no block 20 levels deep and says nothing: that text came back
    untranslated."""
    md = get("markdown")
    assert [u.text for u in md.extract(("> " * 19 + "Deep quote.\n").encode())] == ["Deep quote."]
    with pytest.raises(ValueError, match="nested too deeply at line 1"):
        md.extract(("> " * 20 + "Deeper quote.\n").encode())
    lists = "".join("  " * i + "- item\n" for i in range(9)) + "  " * 9 + "- Deep item.\n"
    with pytest.raises(ValueError, match="nested too deeply at line 10"):
        md.extract(lists.encode())
