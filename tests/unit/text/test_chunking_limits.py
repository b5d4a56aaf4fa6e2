"""Chunking in time linear in its input (issue 10): hostile texts cannot make a regex or
pysbd call long, segments and chunks are bounded, and normal text is segmented exactly as
before (one pysbd call per line)."""

from __future__ import annotations

import random
import re
import sys
import time
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import control_plane.text.chunking as chunking
from control_plane.text.chunking import (
    MAX_SEGMENT_CHARS,
    PYSBD_WINDOW_CHARS,
    PYSBD_WINDOW_TERMINATORS,
    Budget,
    Layout,
    count_words,
    plan,
    split_chunks,
)

SPACES = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())


# -- the pieces that replaced superlinear code ------------------------------------------


def test_the_space_table_is_str_isspace():
    assert set(SPACES) == set(chunking._WIDE_SPACES) | {c for c in SPACES if c < "\x80"}
    breaks = {c for c in SPACES if len(("a" + c + "b").splitlines()) == 2}
    assert set(chunking._BREAKS) == breaks


@settings(max_examples=500, deadline=None)
@given(
    st.text(st.sampled_from([*SPACES, "a", "\u00e9", "\u4e2d", "\ud800", "x", "."]), max_size=40)
)
def test_count_words_is_len_split(text):
    assert count_words(text) == len(text.split())


_OLD_FINAL_RUN = re.compile(  # the regex _one_sentence replaced (quadratic on a dot run)
    r"[.!?\u2026\u3002\uff01\uff1f\uff61\u061f\u203d]+[\"'\u201d\u2019\u00bb)\]]*\s*$"
)


def _old_one_sentence(text: str) -> bool:
    m = _OLD_FINAL_RUN.search(text)
    return not chunking._TERMINATORS.search(text[: m.start()] if m else text)


@settings(max_examples=1000, deadline=None)
@given(st.text(st.sampled_from(list(".!?\u3002\"')]\u00bb \n\ta\u2026")), max_size=30))
def test_one_sentence_matches_the_old_regex(text):
    assert chunking._one_sentence(text) == _old_one_sentence(text)


_LINES = st.lists(
    st.sampled_from(
        [
            "a",
            " ",
            "\t",
            "\n",
            "\r",
            "\r\n",
            "\x0b",
            "\x0c",
            "\x1c",
            "\x85",
            "\u2028",
            "\u3000",
            "b c",
            "\x1f",
        ]
    ),  # fmt: skip
    max_size=30,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(_LINES)
def test_line_runs_are_splitlines_with_blank_runs_merged(text):
    runs = list(chunking._line_runs(text))
    assert "".join(text[s:e] for s, e, _ in runs) == text
    lines = text.splitlines(keepends=True)
    assert [text[s:e] for s, e, blank in runs if not blank] == [ln for ln in lines if ln.strip()]
    for s, e, blank in runs:
        assert blank == (not text[s:e].strip())
        if not blank:  # a non-blank item is exactly one line
            assert text[s:e] in lines


def test_line_runs_scan_in_slices(monkeypatch):
    monkeypatch.setattr(chunking, "SCAN_CHARS", 7)
    text = "a\r\n" + "  \n" * 5 + " " * 30 + "\r\nword" + "x" * 20 + "\r\n\r\n  end"
    runs = list(chunking._line_runs(text))
    assert "".join(text[s:e] for s, e, _ in runs) == text
    assert [text[s:e] for s, e, b in runs if not b] == [
        "a\r\n",
        "word" + "x" * 20 + "\r\n",
        "  end",
    ]


# -- bounds ------------------------------------------------------------------------------


def hostile_texts(n: int) -> dict[str, str]:
    return {
        "dot run in a word": "a" + "." * n + "b",
        "dot-space flood": "a. " * (n // 3),
        "abbreviations": "Dr. " * (n // 4),
        "ellipses": ". \u2026" * (n // 3),
        "quoted dots": '."' * (n // 2) + "a",
        "one huge word": "a" * n,
        "a.a.a word": "a." * (n // 2) + "a",
        "cjk stops": "a\u3002" * (n // 2),
        "blank lines": "a" + " \n" * (n // 2) + "b",
        "spaces": "a" + " " * n + "b",
        "indent": " " * n + "- a. b. c.",
        "combining marks": "a" + "\u0301" * n,
        "markers": (">" * 500 + " x. y\n") * (n // 506 + 1),
        "no sentence end": "word " * (n // 5),
    }


@pytest.mark.parametrize("name", list(hostile_texts(10)))
def test_hostile_text_is_bounded_and_round_trips(name):
    text = hostile_texts(120_000)[name]
    for lang in ("en", "pt"):
        chunks, layouts = plan(text, 1000, lang)
        assert "".join(chunks) == text
        assert all(len(c) <= 40_000 for c in chunks)
        for chunk, layout in zip(chunks, layouts, strict=True):
            assert layout.render(layout.segments) == chunk
            for seg in layout.segments:
                assert 0 < len(seg) <= MAX_SEGMENT_CHARS and seg == seg.strip()
                assert not unicodedata.combining(seg[0])


LINEAR = ["dot run in a word", "dot-space flood", "quoted dots", "ellipses", "cjk stops",
          "a.a.a word", "one huge word"]  # fmt: skip


@pytest.mark.parametrize("name", LINEAR)
def test_time_grows_linearly(name):
    """4x the text may cost about 4x the time; the replaced code took 16x or more (a dot
    run of 20,000: 4.8 s in one regex call). Loose bound for a busy machine."""

    def best(n: int) -> float:
        text = hostile_texts(n)[name]
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            plan(text, 1000, "pt")
            times.append(time.perf_counter() - t0)
        return min(times)

    small, large = best(25_000), best(100_000)
    assert large < max(8 * small, 0.5), (name, small, large)


def test_pysbd_calls_are_bounded(monkeypatch):
    calls: list[str] = []
    real = chunking._pysbd_spans

    def spy(text, lang):
        calls.append(text)
        return real(text, lang)

    monkeypatch.setattr(chunking, "_pysbd_spans", spy)
    for text in hostile_texts(60_000).values():
        budget = Budget()
        chunks = split_chunks(text, 1000, "en", budget)
        for c in chunks:
            Layout.parse(c, "en", budget)
        assert budget.left >= 0
    assert calls
    assert max(len(t) for t in calls) <= PYSBD_WINDOW_CHARS
    assert max(chunking._count_terminators(t) for t in calls) <= PYSBD_WINDOW_TERMINATORS


def test_a_spent_budget_falls_back_to_the_cheap_splitter():
    text = "It works. It does. " * 50
    spent = Budget(0)
    spans = chunking.sentence_spans(text, "en", spent)
    assert spans == chunking._bounded(text, chunking._cheap_spans(text))
    assert all(e - s >= chunking.CHEAP_MIN_CHARS for s, e in spans[:-1])
    # a document spends one budget; the same document always gives the same segments
    flood = "Go on. " * 9_000

    def pieces(units: int) -> list:
        return Layout.parse(flood, "en", Budget(units)).pieces

    first = pieces(200_000)
    assert first == pieces(200_000)
    segments = [text for is_seg, text in first if is_seg]
    assert segments[0] == "Go on." and len(segments[-2]) >= 60  # pysbd's, then cheap ones


def test_a_long_sentence_is_cut_at_spaces():
    words = " ".join(["translation"] * 1000)  # one 11,999-character sentence
    layout = Layout.parse(words + ".", "en")
    assert layout.render(layout.segments) == words + "."
    assert all(len(s) <= MAX_SEGMENT_CHARS for s in layout.segments)
    assert all(s.startswith("translation") for s in layout.segments)  # never inside a word


def test_a_line_without_sentence_ends_is_cut_into_chunks():
    text = "word " * 5000
    chunks = split_chunks(text, 1000)
    assert "".join(chunks) == text and len(chunks) >= 5
    assert all(count_words(c) <= 1200 for c in chunks)


# -- normal text: as before --------------------------------------------------------------


def test_windowed_long_lines_match_one_pysbd_call():
    """A line longer than a pysbd window is segmented window by window; on real sentences
    the result is the one a single pysbd call over the whole line gives."""
    from evaluation.sets import DATA, load_tsv

    rng = random.Random(3)
    for lang, name in (("en", "en-pt"), ("pt", "pt-en")):
        sentences = [s.replace("\n", " ") for s, _ in load_tsv(DATA / f"{name}.gettext.tsv")]
        for _ in range(2):
            line = " ".join(rng.choice(sentences) for _ in range(120))
            assert len(line) > PYSBD_WINDOW_CHARS
            whole = chunking._merge_abbreviations(line, chunking._pysbd_spans(line, lang), lang)
            assert chunking.sentence_spans(line, lang) == whole
