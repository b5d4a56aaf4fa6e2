"""Plain text: the hard-wrap detector on real files from /usr/share/doc and on text that
is not wrapped (poems, lists, code, tables), paragraph units, byte-identical rebuilds,
re-wrapping, and real files with the real int8 engine."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

import pytest

from control_plane.engine.base import Translation
from control_plane.text.formats import Options, by_extension, get, translate_document
from control_plane.text.formats.plain import split_lines, wrap_width

REPO = Path(__file__).resolve().parents[4]
OPTIONS = Options("en", "pt")
FMT = get("text")


def upper(texts: list[str]) -> list[Translation]:
    return [Translation(t.upper(), 1.0) for t in texts]


def paragraphs(text: str) -> list[list[str]]:
    out: list[list[str]] = []
    current: list[str] = []
    for body, _ in split_lines(text):
        if body.strip():
            current.append(body)
        elif current:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def blank_runs(text: str) -> list[str]:
    """The blank lines between paragraphs, exactly (what rebuild must keep)."""
    runs, current = [], ""
    for body, eol in split_lines(text):
        if body.strip():
            if current:
                runs.append(current)
            current = ""
        else:
            current += body + eol
    return runs + [current]


def _read(path: Path) -> str:
    data = path.read_bytes()
    return (gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8", "replace")


# ---------------------------------------------------------------------------- detector


GPL = Path("/usr/share/common-licenses/GPL-2")


@pytest.mark.skipif(not GPL.is_file(), reason="no /usr/share/common-licenses/GPL-2")
def test_license_prose_is_detected_as_wrapped():
    paras = [p for p in paragraphs(GPL.read_text()) if len(p) >= 3]
    found = [wrap_width(p) for p in paras]
    assert sum(w is not None for w in found) >= 0.8 * len(paras)
    assert {w for w in found if w} <= set(range(60, 80))


def test_real_readmes_have_wrapped_paragraphs():
    """Most paragraphs of three lines or more in READMEs are hard-wrapped prose (the
    rest: lists, tables, code, addresses); units count a heading above one apart."""
    wrapped = total = 0
    for path in sorted(Path("/usr/share/doc").glob("*/README*"))[:40]:
        if path.is_file():
            units = FMT.extract(_read(path).encode())
            total += sum(u.text.count("\n") >= 2 or bool(u.note) for u in units)
            wrapped += sum(bool(u.note) for u in units)
    assert total and wrapped >= 0.6 * total, (wrapped, total)


def test_changelog_entries_with_a_hanging_indent_are_wrapped():
    entry = [
        "  * Fix the handling of very long file names in the archive reader so that",
        "    the extraction no longer aborts when a name exceeds the buffer size, and",
        "    report the file that caused the problem.",
    ]
    assert wrap_width(entry) == 76


NOT_WRAPPED = {
    "poem": [
        "Two roads diverged in a yellow wood,",
        "And sorry I could not travel both",
        "And be one traveler, long I stood",
        "And looked down one as far as I could",
    ],
    "long poem lines": [
        "I celebrate myself, and sing myself, and what I assume you shall assume,",
        "For every atom belonging to me as good belongs to you.",
        "I loafe and invite my soul, I lean and loafe at my ease observing a spear",
        "of summer grass.",
    ],
    "list": [
        "- install the package with the package manager of your distribution",
        "- copy the example configuration file into your home directory now",
        "- restart the service and check the log for errors or warnings",
    ],
    "numbered": [
        "1. Download the archive from the project page and verify its signature",
        "2. Unpack it into a directory of your choice and enter that directory",
    ],
    "code": [
        "    for (i = 0; i < count; i++) { total += values[i] * weights[i]; }",
        '    if (total > limit) { fprintf(stderr, "too much: %d\\n", total); }',
        "    return total == 0 ? fallback_value_for_empty_input : total / count;",
    ],
    "table": [
        "Language       Compiler package  Library package    Documentation",
        "Ada            gnat-12          libgnat-12          gnat-12-doc",
        "Fortran 95     gfortran-12      libgfortran5       gfortran-12-doc",
    ],
    "short lines": ["Files: *", "Copyright: 2001 Someone", "License: GPL-2+"],
    "one line": ["A single line of text that is long enough to be wrapped text."],
    "sentences per line": [
        "This program is free software and you can redistribute it freely.",
        "It is distributed in the hope that it will be useful to someone.",
    ],
}


@pytest.mark.parametrize("name", NOT_WRAPPED)
def test_text_whose_line_breaks_mean_something_is_not_wrapped(name):
    assert wrap_width(NOT_WRAPPED[name]) is None


# ---------------------------------------------------------------------------- units


SAMPLE = (
    "Title of the document\n"
    "=====================\n"
    "\n"
    "This paragraph was hard-wrapped by an editor at a width of about sixty\n"
    "characters, so its lines break in the middle of its sentences and the\n"
    "translation must be re-wrapped.\n"
    "\n\n"
    "   An indented paragraph that was also wrapped by the editor at a fixed\n"
    "   width, where every line keeps the same indentation as the one before\n"
    "   it in the file.\n"
    " \n"
    "Roses are red,\n"
    "  violets are blue.\n"
    "\n"
    "- first item of a list\n"
    "- second item of the list\n"
)


def test_format_is_registered():
    assert by_extension("notes.TXT") is FMT
    assert (FMT.name, FMT.media_type, FMT.markup) == ("text", "text/plain; charset=utf-8", "text")


def test_units_are_paragraphs_wrapped_ones_joined():
    units = FMT.extract(SAMPLE.encode())
    assert [u.note for u in units] == ["", "wrap:70", "wrap:71", "", ""]
    assert units[0].text == "Title of the document\n====================="
    assert units[1].text.startswith("This paragraph was hard-wrapped by an editor at a width")
    assert "\n" not in units[1].text and "the translation must be re-wrapped." in units[1].text
    assert units[2].text.startswith("An indented paragraph")
    assert units[3].text == "Roses are red,\n  violets are blue."


def test_rebuild_with_the_units_themselves_is_byte_identical():
    for data in (SAMPLE.encode(), b"\xef\xbb\xbf" + SAMPLE.replace("\n", "\r\n").encode()):
        assert FMT.rebuild(data, [u.text for u in FMT.extract(data)], OPTIONS) == data


def test_round_trip_keeps_blank_lines_and_indentation_and_rewraps():
    out = translate_document(SAMPLE.encode(), FMT, upper, OPTIONS).decode()
    assert blank_runs(out) == blank_runs(SAMPLE)
    assert out.startswith("TITLE OF THE DOCUMENT\n=====================\n\n")
    assert "ROSES ARE RED,\n  VIOLETS ARE BLUE.\n" in out
    assert "- FIRST ITEM OF A LIST\n- SECOND ITEM OF THE LIST\n" in out
    src, dst = paragraphs(SAMPLE), paragraphs(out)
    assert len(dst) == len(src)
    assert all(line.startswith("   ") and len(line) <= 71 for line in dst[2])

    def longer(texts: list[str]) -> list[Translation]:
        return [Translation(t + " " + " ".join(["mais"] * 20), 1.0) for t in texts]

    out = translate_document(SAMPLE.encode(), FMT, longer, OPTIONS).decode()
    assert blank_runs(out) == blank_runs(SAMPLE)
    wrapped = paragraphs(out)[1]
    assert len(wrapped) > 3 and all(len(line) <= 70 for line in wrapped)


# ---------------------------------------------------------------------------- real engine


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


def real_text_files(count: int = 4, low: int = 1500, high: int = 6000) -> list[Path]:
    """README and copyright files of ``low``..``high`` bytes from /usr/share/doc, evenly
    spread over the sorted list."""
    doc = Path("/usr/share/doc")
    found = sorted([*doc.glob("*/README"), *doc.glob("*/copyright")], key=str)
    found = [p for p in found if p.is_file() and low <= p.stat().st_size <= high]
    return found[:: max(1, len(found) // count)][:count]


REAL = real_text_files()


@pytest.mark.parametrize("path", REAL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_files_with_the_real_engine(path, engine):
    data = path.read_bytes()
    text = data.decode()
    units = FMT.extract(data)
    start = time.perf_counter()
    out = translate_document(data, FMT, lambda xs: engine.translate(xs, "en", "pt"), OPTIONS)
    seconds = time.perf_counter() - start
    assert blank_runs(out.decode()) == blank_runs(text)
    after = paragraphs(out.decode())
    assert len(after) == len(units)
    for unit, src, dst in zip(units, paragraphs(text), after, strict=True):
        if not unit.note:
            assert len(dst) == len(src)  # line structure kept
            continue
        width = int(unit.note.split(":")[1])
        assert all(len(line) <= width or " " not in line.strip() for line in dst)
        assert " ".join(dst).lower() != " ".join(src).lower()  # translated
    wrapped = sum(bool(u.note) for u in units)
    print(f"{path}: {len(data)} bytes, {len(units)} units ({wrapped} wrapped), {seconds:.2f} s")


def test_a_refilled_paragraph_never_breaks_a_protected_span():
    """textwrap broke "{n, plural, one {# item} other {# items}}" across lines in 13 of
    these 20 paddings."""
    import re

    icu = "{n, plural, one {# item} other {# items}}"
    lines = [
        "Please note that you really have quite a few items left in",
        f"your cart {icu} and you",
        "should run the command before leaving because otherwise the",
        "items will be lost and nobody wants that to happen to them.",
    ]
    data = ("\n".join(lines) + "\n").encode()
    for k in range(20):

        def padded(texts: list[str], k: int = k) -> list[Translation]:
            return [Translation(re.sub(r"\bcart\b", "cart" + " xx" * k, t), 0.9) for t in texts]

        out = translate_document(data, get("text"), padded, Options("en", "pt")).decode()
        assert icu in out, (k, out)
        assert max(len(line) for line in out.splitlines() if icu not in line) <= 60


def test_a_refilled_paragraph_keeps_the_callers_phrases_on_one_line():
    from control_plane.text.spans import Protection

    phrase = "Shopping Cart Manager Pro"
    lines = [
        "Please note that you really have quite a few items left in",
        f"your cart in the {phrase} app, and then you",
        "should run the command before leaving because otherwise the",
        "items will be lost and nobody wants that to happen to them.",
    ]
    data = ("\n".join(lines) + "\n").encode()
    broken = 0
    for k in range(20):

        def padded(texts: list[str], k: int = k) -> list[Translation]:
            return [
                Translation(t.replace("your cart", "your cart" + " xx" * k), 0.9) for t in texts
            ]

        kept = translate_document(
            data, get("text"), padded, Options("en", "pt"), Protection.of(do_not_translate=[phrase])
        ).decode()
        assert phrase in kept, (k, kept)
        plain = translate_document(data, get("text"), padded, Options("en", "pt")).decode()
        broken += phrase not in plain
    assert broken  # without the caller's list the phrase is only words, free to wrap
