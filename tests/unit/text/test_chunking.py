"""Chunking and layout: every byte of structure comes back."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.text.chunking import Layout, count_words, split_chunks

TRICKY = (
    "   Indented opening line. With two sentences!\n"
    "\n\n\n"
    "# Heading without a period\n"
    "Dr. Smith paid $3.50, e.g. for coffee. Then he left... Did he?\n"
    "\t- tab-indented bullet. Second sentence in bullet.\n"
    "    * four-space star bullet\n"
    "  12. numbered item) with parens.\n"
    "  (a) lettered item.\n"
    "> quoted line. Another.\n"
    "trailing spaces here.   \n"
    "windows line\r\n"
    "---\n"
    "\u2022 unicode bullet. Olá, mundo! \u00bfQué tal?\n"
    "no final newline"
)


def fake_translate(segments):
    return [f"<{s.upper()}>" for s in segments]


def test_layout_round_trip_tricky_text():
    layout = Layout.parse(TRICKY, "en")
    assert layout.source() == TRICKY
    assert layout.render(layout.segments) == TRICKY
    segs = layout.segments
    assert "Dr. Smith paid $3.50, e.g. for coffee." in segs
    assert "Then he left..." in segs and "Did he?" in segs
    assert "tab-indented bullet." in segs  # marker and tab stay literal
    assert "---" not in segs  # no words: never sent to the engine
    out = layout.render(fake_translate(segs))
    assert out.count("\n") == TRICKY.count("\n") and "\r\n" in out
    lines_in, lines_out = TRICKY.split("\n"), out.split("\n")
    for a, b in zip(lines_in, lines_out, strict=True):
        assert (a.strip() == "") == (b.strip() == "")
        assert a[: len(a) - len(a.lstrip())] == b[: len(b) - len(b.lstrip())]
    assert "\t- <TAB-INDENTED BULLET.> <SECOND SENTENCE IN BULLET.>" in out
    assert "  12. <NUMBERED ITEM) WITH PARENS.>" in out
    assert out.endswith("<NO FINAL NEWLINE>")


def test_split_chunks_exact_and_sized():
    para = " ".join(f"Sentence number {i} has a few words." for i in range(40))  # 280 words
    text = "\n\n".join([para] * 12) + "\n"
    chunks = split_chunks(text, 1000)
    assert "".join(chunks) == text
    assert all(count_words(c) <= 1200 for c in chunks)
    assert all(c.endswith("\n\n") or c is chunks[-1] for c in chunks)  # paragraph cuts
    # one huge line is cut at sentence starts
    huge = " ".join(f"Line sentence {i} is here." for i in range(1000)) + "\n"
    chunks = split_chunks(huge, 1000)
    assert "".join(chunks) == huge and len(chunks) >= 4
    assert all(c.startswith("Line sentence") for c in chunks)
    assert split_chunks("", 1000) == []
    assert split_chunks("  \n\n", 1000) == ["  \n\n"]


_alphabet = st.sampled_from(list("ab c.!?\n\t -*1)Zé\u00a0") + ["Dr. ", "e.g. ", "  - ", "\r\n"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_alphabet, max_size=80).map("".join), st.integers(1, 20))
def test_round_trip_property(text, target):
    layout = Layout.parse(text, "en")
    assert layout.render(layout.segments) == text
    for seg in layout.segments:
        assert seg == seg.strip() and "\n" not in seg
    assert "".join(split_chunks(text, target)) == text
    stored = Layout.loads(layout.dumps())  # chunks.layout: what workers read back
    assert stored == layout and stored.source() == text


def test_segmentation_speed_noted():
    """pysbd on this machine: about 0.5 ms per sentence (see the module docstring). pysbd's
    cost grows faster than linearly with its input (1,000 sentences in one call: 4 s), so a
    document that is one huge line is cut at cheap candidates checked on small windows."""
    text = "The committee reviewed the annual report, e.g. with Dr. Smith. " * 2000
    t0 = time.perf_counter()
    chunks = split_chunks(text, 1000)
    assert "".join(chunks) == text and len(chunks) >= 10
    assert all(c.startswith("The committee") for c in chunks)
    n = sum(len(Layout.parse(c, "en").segments) for c in chunks)
    per_sentence = (time.perf_counter() - t0) / n
    assert n == 2000
    assert per_sentence < 0.01  # loose: 20x headroom for a busy CI machine


# Sentence-splitting quality on tricky cases (pysbd; Portuguese borrows the Spanish rules
# plus a short abbreviation list): en 12/12, pt 8/8 (without the list: pt 5/8).
QUALITY = {
    "en": [
        ["Dr. Smith arrived at 5 p.m. yesterday.", "He left early."],
        ["The price rose 3.5% in Q1.", "Analysts were surprised."],
        ['She said "Stop!" and walked away.', "Nobody followed."],
        ["Visit www.example.com for details.", "It is free."],
        ["J. R. R. Tolkien wrote many books.", "They are long."],
        ["Wait...", "What happened?"],
        ["The U.S. economy grew.", "Exports fell."],
        ["Mr. and Mrs. Brown live at No. 5 Elm St. in town.", "They are nice."],
        ["Is it e.g. a test?", "Yes, i.e. a check."],
        ["Version 2.0 was released on Jan. 5.", "It fixed bugs."],
        ["I paid $1,200.50 for it!", "Too much?"],
        ["See Fig. 3 for the results.", "They are clear."],
    ],
    "pt": [
        ["O Sr. Silva chegou cedo.", "Ele saiu tarde."],
        ["A Dra. Ana atendeu o paciente.", "Tudo correu bem."],
        ["O preço subiu 3,5% em 2023.", "Os analistas ficaram surpresos."],
        ['Ela disse "Pare!" e foi embora.', "Ninguém a seguiu."],
        ["Veja a pág. 10 para detalhes.", "É grátis."],
        ["Por ex. um teste simples.", "Sim, funciona."],
        ["Aguarde...", "O que aconteceu?"],
        ["A empresa Ltda. fechou.", "Os funcionários saíram."],
    ],
}


def test_sentence_split_quality():
    for lang, cases in QUALITY.items():
        wrong = [
            (sents, got)
            for sents in cases
            if (got := Layout.parse(" ".join(sents), lang).segments) != sents
        ]
        assert not wrong, (lang, wrong)


def test_one_sentence_lines_skip_pysbd_with_the_same_result():
    """The shortcut for lines without . ! ? (and CJK/Arabic terminators) before their final
    run must give what pysbd gives, on the real gettext sentences and some odd lines."""
    import control_plane.text.chunking as chunking
    from evaluation.sets import DATA as data
    from evaluation.sets import load_tsv

    lines = [(s, "en") for s, _ in load_tsv(data / "en-pt.gettext.tsv")]
    lines += [(f"Item 1234: {s}", "en") for s, _ in load_tsv(data / "en-pt.gettext.tsv")]
    lines += [(s, "pt") for s, _ in load_tsv(data / "pt-en.gettext.tsv")]
    lines += [
        ("  indented words  ", "en"),
        ("Hello world", "en"),
        ("\u201cquoted\u201d", "en"),
        ("(parenthesised) text, with commas", "en"),
        ("Note: this; that.", "en"),
        ("He said \u201cstop!\u201d", "en"),
        ("Wait...", "en"),
        ("日本語の文。", "ja"),
    ]
    short = [(t, lang) for t, lang in lines if chunking._one_sentence(t)]
    assert len(short) > 1000  # the shortcut really is exercised
    differ = []
    for text, lang in short:
        fast = chunking.sentence_spans(text, lang)
        shortcut = chunking._one_sentence
        try:
            chunking._one_sentence = lambda _text: False  # force pysbd
            slow = chunking.sentence_spans(text, lang)
        finally:
            chunking._one_sentence = shortcut
        if fast != slow:
            differ.append((text, slow))
    # pysbd's one known quirk here: it cuts a lone closing quote off "... or '-+.'"
    assert all(len(s) == 2 and s[1][1] - s[1][0] == 1 for _, s in differ), differ
    assert len(differ) <= 3, differ
    assert chunking.sentence_spans("One. Two.", "en") == [(0, 4), (5, 9)]  # pysbd still splits


# -- hard-wrapped paragraphs (issue 12) -------------------------------------------------

GPL = (
    "This program is free software; you can redistribute it and/or modify it\n"
    "under the terms of the GNU General Public License as published by the Free\n"
    "Software Foundation; either version 2 of the License, or (at your option)\n"
    "any later version.\n"
)


def test_a_hard_wrapped_paragraph_is_translated_as_sentences_and_refilled():
    text = "Intro.\n\n  " + GPL.replace("\n", "\n  ").rstrip(" ") + "\n- one\n- two\n"
    layout = Layout.parse(text, "en")
    assert layout.render(layout.segments) == text  # untranslated: exactly as it was
    assert Layout.loads(layout.dumps()) == layout and layout.source() == text
    wrapped = [s for s in layout.segments if s.startswith("This program")]
    assert wrapped == [
        "This program is free software; you can redistribute it and/or modify it under the "
        "terms of the GNU General Public License as published by the Free Software "
        "Foundation; either version 2 of the License, or (at your option) any later version."
    ]
    out = layout.render([s.upper() + " MORE WORDS HERE" for s in layout.segments])
    paragraph = out.split("\n\n")[1].split("\n- ")[0]
    lines = paragraph.split("\n")
    assert len(lines) >= 4 and all(line.startswith("  ") for line in lines)
    assert max(len(line) for line in lines) <= max(len(x) for x in text.split("\n"))
    assert out.endswith("\n- ONE MORE WORDS HERE\n- TWO MORE WORDS HERE\n")


@pytest.mark.parametrize(
    "text",
    [
        "Roses are red,\nviolets are blue,\nsugar is sweet,\nand so are you.\n",  # a poem
        "The meeting starts at nine.\nPlease bring your laptop.\nThank you.\n",  # breaks
        "- one item of the list that is long enough to look like prose text\n- two\n",
        "def f(x):\n    return x * 2  # code that is long enough to matter here\n",
    ],
)
def test_line_breaks_that_mean_something_stay(text):
    layout = Layout.parse(text, "en")
    assert all(kind != 2 for kind, _ in layout.pieces)
    assert layout.render([s.upper() for s in layout.segments]).count("\n") == text.count("\n")


def test_a_wrapped_paragraph_keeps_crlf_line_endings():
    text = GPL.replace("\n", "\r\n")
    layout = Layout.parse(text, "en")
    out = layout.render([s + " Extra words to make the paragraph longer." for s in layout.segments])
    assert (
        out.endswith("\r\n")
        and "\r\n" in out.rstrip("\r\n")
        and "\n" not in out.replace("\r\n", "")
    )


# -- re-filling keeps protected spans whole ----------------------------------------------

ICU = "{n, plural, one {# item} other {# items}}"
CART = (
    "Please note that you really have quite a few items left in\n"
    "your cart {n, plural, one {# item} other {# items}} and you\n"
    "should run the command before leaving because otherwise the\n"
    "items will be lost and nobody wants that to happen to them.\n"
)


def _padded(layout: Layout, k: int, word: str = "cart") -> list[str]:
    """The segments, a little longer: ``k`` words after ``word`` move the breaks."""
    return [s.replace(word, word + " xx" * k) for s in layout.segments]


def _wrapped_lines(out: str, keep: str) -> list[str]:
    """The lines of ``out`` other than the one holding ``keep`` (which may be longer)."""
    return [line for line in out.split("\n") if keep not in line]


@pytest.mark.parametrize("k", range(20))
def test_refilling_never_breaks_an_icu_plural(k):
    layout = Layout.parse(CART, "en")
    assert [kind for kind, _ in layout.pieces][0] == 2  # re-filled, not line by line
    out = layout.render(_padded(layout, k))
    assert ICU in out and out.split().count("xx") == k
    width = max(len(line) for line in CART.split("\n"))
    assert all(len(line) <= width for line in _wrapped_lines(out, ICU))


def test_refilling_keeps_do_not_translate_strings_and_glossary_targets_with_protection():
    import textwrap

    from control_plane.text.spans import Protection

    dnt = "Acme Cloud Storage Gateway"
    text = textwrap.fill(" ".join(CART.split()).replace(ICU, "in the " + dnt), 60) + "\n"
    layout = Layout.parse(text, "en")
    assert layout.pieces[0][0] == 2
    protection = Protection.of(do_not_translate=[dnt])
    outs = [layout.render(_padded(layout, k)) for k in range(20)]
    assert any(dnt not in out for out in outs)  # the hazard: without the protection ...
    for k in range(20):  # ... some breaks fall inside it; with it, none
        assert dnt in layout.render(_padded(layout, k), protection)
    glossary = Protection.of(glossary={"shopping basket": "cesta de compras"})
    term = "Cesta de compras"  # capitalised by spans._match_case: found in any case
    moved = [[s.replace("your cart", "your" + " xx" * k + " " + term) for s in layout.segments]
             for k in range(20)]  # fmt: skip
    assert any(term not in layout.render(segments) for segments in moved)
    assert all(term in layout.render(segments, glossary) for segments in moved)


def test_refilling_keeps_tabs_inside_spans_and_in_prose():
    layout = Layout.parse(CART, "en")
    segments = [s.replace(ICU, "`a\tb c` and\tthe {x}") for s in _padded(layout, 3)]
    out = layout.render(segments)
    assert "`a\tb c`" in out and "and\tthe" in out.replace("\n", "\t")


@pytest.mark.parametrize("indent", ["", "  ", "\t"])
@pytest.mark.parametrize("extra", ["", " MORE WORDS HERE", " A FEW MORE WORDS TO MOVE THE BREAKS"])
def test_refilling_text_without_spans_is_textwrap_fill(indent, extra):
    import textwrap

    text = indent + GPL.replace("\n", "\n" + indent).rstrip(" \t")
    layout = Layout.parse(text, "en")
    assert layout.pieces[0][0] == 2
    segments = [s.upper() + extra for s in layout.segments]
    width = max(len(line.expandtabs()) for line in text.split("\n"))
    expected = textwrap.fill(
        " ".join(segments),
        width=width,
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
    assert layout.render(segments) == expected + "\n"


def test_fill_keeping_spans_puts_an_overlong_span_on_a_line_of_its_own():
    from control_plane.text.chunking import fill_keeping_spans

    text = "see `a very long command line with many words` now"
    assert fill_keeping_spans([(True, text)], 20).split("\n") == [
        "see",
        "`a very long command line with many words`",
        "now",
    ]


def test_fill_keeping_spans_glues_with_a_character_the_text_does_not_hold():
    from control_plane.text.chunking import fill_keeping_spans, glue_for

    taken = "".join(chr(c) for c in range(0xE000, 0xE010))
    assert not set(glue_for(taken).values()) & set(taken)
    text = f"{taken} words and {ICU} with more {taken} words after it"
    filled = fill_keeping_spans([(True, text)], 20)
    assert ICU in filled and filled.replace("\n", " ") == text
