"""Inline markup: tag spans, the markup planner, the structure check, and protect's
markup path (escaping model output), with fake engines."""

from __future__ import annotations

import pytest

from control_plane.engine.base import Translation
from control_plane.text.markup import (
    compare_structure,
    escape_output,
    plan_markup,
    split_run,
    tag_spans,
)
from control_plane.text.protect import run_sync
from control_plane.text.spans import Protection, well_nested


def spans_of(segment: str, fmt: str = "html") -> list[tuple[str, str, str]]:
    return [(s.output, s.role, s.name) for s in tag_spans(segment, fmt)]


# ---------------------------------------------------------------------------- tag_spans


def test_nested_tags_pair_with_their_names():
    seg = 'Click <a href="x.html">the <b>big</b> link</a> now.'
    assert spans_of(seg) == [
        ('<a href="x.html">', "open", "a"),
        ("<b>", "open", "b"),
        ("</b>", "close", "b"),
        ("</a>", "close", "a"),
    ]
    assert well_nested(tag_spans(seg, "html"))


def test_spans_are_the_source_bytes_at_their_positions():
    seg = "<em>Start</em> middle <i\nclass='q'>end</i>"
    for span in tag_spans(seg, "html"):
        assert seg[span.start : span.end] == span.output
    assert [s.start for s in tag_spans(seg, "html")] == [0, 9, 22, 38]


@pytest.mark.parametrize(
    "seg",
    [
        "Type <![ then > to close",  # html.parser's _markupbase asserted a name here
        "a <![ b <b>x</b> <![CDATA[x]]> c",
        "Word <![é<![=&amp;<![&amp; word",
        "line one\nline <![ two\n<i>three</i> <![foo[ x ]]>",
    ],
)
def test_a_bracket_that_starts_no_marked_section_is_text(seg):
    for fmt in ("html", "xml"):
        spans = tag_spans(seg, fmt)
        for span in spans:  # positions stay right after the "<![" that was text
            assert seg[span.start : span.end] == span.output
        assert not any(s.output.startswith("<![") and "CDATA" not in s.output for s in spans)
    out = run_sync([seg], Protection.of("text"), lambda ts: [Translation(t, 0.9) for t in ts])
    assert out[0].text == seg


def test_adjacent_tags_and_tags_at_both_ends():
    assert spans_of("<b>x</b><i>y</i>") == [
        ("<b>", "open", "b"),
        ("</b>", "close", "b"),
        ("<i>", "open", "i"),
        ("</i>", "close", "i"),
    ]


def test_void_and_self_closing_tags_have_no_role():
    assert spans_of('one<br>two<br/>three <img src="a.png">') == [
        ("<br>", "", ""),
        ("<br/>", "", ""),
        ('<img src="a.png">', "", ""),
    ]


def test_entities_and_character_references_byte_for_byte():
    seg = "Fish &amp; chips &lt;3 &#169; &#xA9;&nbsp;ok"
    assert [s for s, _, _ in spans_of(seg)] == ["&amp;", "&lt;", "&#169;", "&#xA9;", "&nbsp;"]


def test_code_inside_a_paragraph_is_one_span():
    seg = "Run <code>make <b>all</b> &amp;&amp; test</code> first."
    assert spans_of(seg) == [("<code>make <b>all</b> &amp;&amp; test</code>", "", "")]


def test_translate_no_and_notranslate_class_are_one_span():
    seg = 'Ask <span translate="no">ACME <i>Labs</i></span> or <b class="x notranslate">Zed</b>.'
    assert [s for s, _, _ in spans_of(seg)] == [
        '<span translate="no">ACME <i>Labs</i></span>',
        '<b class="x notranslate">Zed</b>',
    ]


def test_inline_script_and_comment():
    seg = "a <script>if (a < b) {}</script> b <!-- note --> c"
    assert [s for s, _, _ in spans_of(seg)] == ["<script>if (a < b) {}</script>", "<!-- note -->"]


def test_unmatched_tags_have_no_role():
    assert spans_of("x</b> y <u>z") == [("</b>", "", ""), ("<u>", "", "")]


def test_xml_keeps_case_prefixes_cdata_and_entities():
    seg = 'See <db:Emph role="x">this</db:Emph> &product; <![CDATA[a<b]]><x/>'
    assert spans_of(seg, "xml") == [
        ('<db:Emph role="x">', "open", "db:Emph"),
        ("</db:Emph>", "close", "db:Emph"),
        ("&product;", "", ""),
        ("<![CDATA[a<b]]>", "", ""),
        ("<x/>", "", ""),
    ]


def test_xml_skip_elements():
    seg = 'Run <command>ls -l</command> in <filename>/tmp</filename> <t its:translate="no">X</t>'
    assert [s for s, _, _ in spans_of(seg, "xml")] == [
        "<command>ls -l</command>",
        "<filename>/tmp</filename>",
        '<t its:translate="no">X</t>',
    ]


# ---------------------------------------------------------------------------- plan_markup

PAGE = """<!DOCTYPE html>
<html lang="en"><head><title>My &amp; page</title><style>p { color: red }</style></head>
<body>
<h1 title="Main heading">Hello <em>world</em>!</h1>
<p>First one. Second <b>bold one. Still</b> bold. Third <a href="a b?x=1&amp;y=2">link</a>.</p>
<ul><li>Item one<ul><li>Nested item</li></ul></li><li>Item <code>two()</code> is here.</li></ul>
<p>An image <img src="x.png" alt="A red cat"> in text.</p>
<pre>code here</pre>
<div translate="no">Do not translate</div>
<div>Text in div<p>para in div</p> tail text.</div>
<!-- comment -->
<p><a href="x"><img src="y" alt="Logo"></a></p>
<table><tr><td>Cell one</td><td>42</td></tr></table>
<script>var a = "<b>";</script>
</body></html>"""


def segments(text: str, fmt: str = "html", target_words: int = 1000) -> list[str]:
    _, layouts = plan_markup(text, fmt, target_words, "en")
    return [s for layout in layouts for s in layout.segments]


def test_round_trip_and_skeleton():
    chunks, layouts = plan_markup(PAGE, "html", 1000, "en")
    doc = "".join(chunks)
    for chunk, layout in zip(chunks, layouts, strict=True):
        assert layout.source() == chunk
        assert layout.render(layout.segments) == chunk
    # every tag, attribute and value is still there (lxml's spelling)
    for part in ['<html lang="en">', '<a href="a b?x=1&amp;y=2">', "<!-- comment -->"]:
        assert part in doc
    assert '<script>var a = "<b>";</script>' in doc
    assert compare_structure(PAGE, doc, "html") == []


def test_segments_are_sentences_and_blocks():
    assert segments(PAGE) == [
        "My &amp; page",
        "Main heading",
        "Hello <em>world</em>!",
        "First one.",
        "Second <b>bold one. Still</b> bold.",  # the <b> crosses the sentence end
        'Third <a href="a b?x=1&amp;y=2">link</a>.',
        "Item one",
        "Nested item",
        "Item <code>two()</code> is here.",
        "An image",
        "A red cat",
        "in text.",
        "Text in div",
        "para in div",
        "tail text.",
        "Logo",
        "Cell one",
    ]


def test_untranslated_parts_are_literal():
    segs = " ".join(segments(PAGE))
    for literal in ["code here", "Do not translate", "comment", "color", "var a", "42"]:
        assert literal not in segs


def test_alt_and_title_are_segments_inside_their_attribute():
    _, (layout,) = plan_markup(
        '<p><img src="a.png" alt="A &quot;red&quot; cat"></p>', "html", 100, "en"
    )
    assert layout.pieces == [
        (False, '<p><img src="a.png" alt="'),
        (True, "A &quot;red&quot; cat"),
        (False, '"></p>'),
    ]


def test_title_of_an_inline_element_in_a_sentence_stays():
    assert segments('<p>See <abbr title="HyperText Markup Language">HTML</abbr> now.</p>') == [
        'See <abbr title="HyperText Markup Language">HTML</abbr> now.'
    ]


def test_chunks_are_cut_between_blocks_only():
    paragraphs = "".join(
        f"<p>Paragraph {i} has <b>some bold</b> words. It has two sentences.</p>\n"
        for i in range(40)
    )
    doc = f"<html><body>{paragraphs}</body></html>"
    chunks, layouts = plan_markup(doc, "html", 30, "en")
    assert len(chunks) > 5
    assert "".join(chunks) == "".join(layout.source() for layout in layouts)
    for chunk in chunks[1:]:
        assert chunk.startswith("<p>")  # a chunk begins at a block, never inside one
    for chunk in chunks:
        assert chunk.count("<p>") == chunk.count("</p>")


def test_fragment_keeps_its_text_and_has_no_wrapper():
    chunks, _ = plan_markup("Hello <b>world</b>. <p>Two</p> &amp; three", "html", 100, "en")
    assert "".join(chunks) == "Hello <b>world</b>. <p>Two</p> &amp; three"
    assert segments("Hello <b>world</b>. <p>Two</p> &amp; three") == [
        "Hello <b>world</b>.",
        "Two",
        "three",  # "&amp; " at the edge is left outside the segment
    ]


def test_split_run_keeps_closing_and_opening_tags_with_their_sentence():
    pieces = split_run("Zero <i>one.</i> <b>Two</b> <u>two.</u><br>Three <u>x</u>.", "html", "en")
    assert [(s, t) for s, t, _ in pieces] == [
        (True, "Zero <i>one.</i>"),
        (False, " "),
        (True, "<b>Two</b> <u>two.</u>"),
        (False, "<br>"),
        (True, "Three <u>x</u>."),
    ]


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        ('<a href="x">Assertion testing</a>', ['<a href="x">', "*Assertion testing", "</a>"]),
        ('<a name="q"></a>The guide', ['<a name="q"></a>', "*The guide"]),
        ('Index<span><a href="#i">#</a></span>', ["*Index", '<span><a href="#i">#</a></span>']),
        ("&lt;&lt;\xa0Back", ["&lt;&lt;\xa0", "*Back"]),
        ("<b>1.</b> Introduction <br>", ["<b>1.</b> ", "*Introduction", " <br>"]),
        ("&eacute;tude", ["*&eacute;tude"]),  # a letter, glued to the word
        ("About &product;", ["*About &product;"]),  # an XML entity is a word
        ("<code>f()</code> returns", ["*<code>f()</code> returns"]),  # part of the sentence
        ("<b>Note:</b> be <i>careful</i>", ["*<b>Note:</b> be <i>careful</i>"]),
    ],
)
def test_what_the_model_need_not_see_stays_outside_the_segment(run, expected):
    """Fewer mask tokens, fewer fallbacks: wrappers, empty anchors and edge symbols are
    literal pieces."""
    pieces = split_run(run, "html", "en")
    assert [("*" if seg else "") + text for seg, text, _ in pieces] == expected


def test_segments_without_letters_are_literal():
    assert segments('<p><a href="#n1">[1]</a></p><p>&nbsp;</p><p><code>ls</code></p>') == []


def test_xml_document():
    doc = """<?xml version="1.0" encoding="ISO-8859-1"?>
<!DOCTYPE article [<!ENTITY product "MT">]>
<article xmlns:its="http://www.w3.org/2005/11/its">
  <title>Getting started with &product;</title>
  <para>Run <command>make</command> as root. Then <emphasis role="b">edit</emphasis> it.</para>
  <programlisting>make &amp;&amp; make test</programlisting>
  <para its:translate="no">ACME Corp.</para>
</article>"""
    chunks, _ = plan_markup(doc, "xml", 1000, "en")
    out = "".join(chunks)
    assert out.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE article')
    assert "<programlisting>make &amp;&amp; make test</programlisting>" in out
    assert segments(doc, "xml") == [
        "Getting started with &product;",
        "Run <command>make</command> as root.",
        'Then <emphasis role="b">edit</emphasis> it.',
    ]
    assert compare_structure(doc, out, "xml") == []


def test_bad_input_is_a_value_error():
    with pytest.raises(ValueError, match="XML does not parse"):
        plan_markup("<a><b></a>", "xml", 100, "en")
    with pytest.raises(ValueError, match="depth"):
        plan_markup("<div>" * 300 + "deep" + "</div>" * 300, "html", 100, "en")
    with pytest.raises(ValueError, match="format"):
        plan_markup("<p>x</p>", "markdown", 100, "en")
    assert plan_markup("  \n", "html", 100, "en") == ([], [])


@pytest.mark.parametrize(
    ("doc", "serialized"),
    [
        ("<p>Qmtb0zB and Qmtb0zA1. stay</p>", "<p>Qmtb0zB and Qmtb0zA1. stay</p>"),
        ('<p title="t">Q&#109;tb0zA0. Q&#109;tb0zE</p>', '<p title="t">Qmtb0zA0. Qmtb0zE</p>'),
    ],
)
def test_marker_lookalikes_in_the_input_survive(doc, serialized):
    chunks, _ = plan_markup(doc, "html", 100, "en")
    assert "".join(chunks) == serialized


# ---------------------------------------------------------------------------- structure


def test_compare_structure_sees_a_broken_tag():
    src = "<p>Hello <b>world</b>.</p><p>Two</p>"
    assert compare_structure(src, "<p>Olá <b>mundo</b>.</p><p>Dois</p>", "html") == []
    assert compare_structure(src, "<p><b>mundo</b> olá.</p><p>Dois</p>", "html") == []
    assert compare_structure(src, "<p>Olá <b>mundo.</p><p>Dois</p>", "html")
    assert compare_structure(src, "<p>Olá <i>mundo</i>.</p><p>Dois</p>", "html")
    assert compare_structure(src, "<p>Olá <b>mundo</b>. Dois</p>", "html")


def test_compare_structure_sees_a_changed_attribute_or_code():
    src = '<p>See <a href="x.html">this</a>. <code>ls</code></p>'
    assert (
        compare_structure(src, '<p>Veja <a href="x.html">isto</a>. <code>ls</code></p>', "html")
        == []
    )
    assert compare_structure(src, '<p>Veja <a href="y.html">isto</a>. <code>ls</code></p>', "html")
    assert compare_structure(
        src, '<p>Veja <a href="x.html">isto</a>. <code>ls -l</code></p>', "html"
    )


def test_compare_structure_xml_must_parse():
    assert compare_structure("<a><b>x</b></a>", "<a><b>y</b></a>", "xml") == []
    assert compare_structure("<a><b>x</b></a>", "<a><b>y</a>", "xml")[0].startswith(
        "translation does not parse"
    )


# ---------------------------------------------------------------------------- protect


def hostile(texts: list[str]) -> list[Translation]:
    """Keeps mask tokens, writes markup characters of its own."""
    return [Translation(t.replace("Hello", 'Olá <b> & "x"'), 0.9) for t in texts]


def test_model_output_is_escaped_and_tags_restored():
    segs = ['Hello <b class="c">world</b> &amp; more', "Plain Hello", "Title Hello"]
    out = run_sync(segs, Protection.of(format="html"), hostile)
    assert [t.text for t in out] == [
        'Olá &lt;b&gt; &amp; &quot;x&quot; <b class="c">world</b> &amp; more',
        "Plain Olá &lt;b&gt; &amp; &quot;x&quot;",
        "Title Olá &lt;b&gt; &amp; &quot;x&quot;",
    ]


def test_fallback_pieces_are_escaped_too():
    def drops_tokens(texts: list[str]) -> list[Translation]:
        return [Translation(t.replace("X1", "").replace("world", "a<b"), 0.5) for t in texts]

    (out,) = run_sync(["Hello <b>world</b> end"], Protection.of(format="html"), drops_tokens)
    assert out.text == "Hello <b>a&lt;b</b> end"


def test_glossary_target_is_escaped_in_markup_only():
    prot = Protection.of(format="html", glossary={"widget": "R&D <x>"})
    (out,) = run_sync(["A widget."], prot, lambda ts: [Translation(t, 1.0) for t in ts])
    assert out.text == "A R&amp;D &lt;x&gt;."
    plain = Protection.of(glossary={"widget": "R&D <x>"})
    (out,) = run_sync(["A widget."], plain, lambda ts: [Translation(t, 1.0) for t in ts])
    assert out.text == "A R&D <x>."


def test_end_to_end_with_a_hostile_engine_keeps_structure():
    chunks, layouts = plan_markup(PAGE, "html", 20, "en")
    rendered = []
    for layout in layouts:
        out = run_sync(layout.segments, Protection.of(format="html"), hostile)
        rendered.append(layout.render([t.text for t in out]))
    assert compare_structure("".join(chunks), "".join(rendered), "html") == []


def test_escape_output():
    assert escape_output('a < b & "c" > d') == "a &lt; b &amp; &quot;c&quot; &gt; d"


def test_set_lang_marks_the_page_with_its_new_language():
    from control_plane.text.markup import set_lang

    page = '<!DOCTYPE html>\n<html lang="en" class="x">\n<body><p>Hi</p></body></html>'
    assert set_lang(page, "pt") == page.replace('lang="en"', 'lang="pt"')
    xhtml = '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en">\n<body/></html>'
    assert 'xml:lang="pt" lang="pt"' in set_lang(xhtml, "pt")
    assert set_lang("<html><body>x</body></html>", "pt").startswith('<html lang="pt">')
    assert set_lang("<p>a fragment</p>", "pt") == "<p>a fragment</p>"


@pytest.mark.parametrize("fmt", ["html", "xml"])
def test_an_element_with_too_many_attributes_is_refused_before_it_costs(fmt):
    """libxml2's HTML parser and lxml's ``set`` are quadratic in one element's attributes:
    50,000 on one <p> took 64 s to plan."""
    from control_plane.text.markup import MAX_ATTRIBUTES

    def element(n: int, value: str = "v") -> str:
        return "<p " + " ".join(f'a{i}="{value}"' for i in range(n)) + ">Hello there.</p>"

    chunks, _ = plan_markup(element(MAX_ATTRIBUTES), fmt, 1000, "en")
    assert "Hello there." in "".join(chunks)
    with pytest.raises(ValueError, match=f"<p> has 257 attributes; at most {MAX_ATTRIBUTES}"):
        plan_markup(element(MAX_ATTRIBUTES + 1), fmt, 1000, "en")
    # quoted ">" in the values does not hide the tag's length from the HTML pre-check
    with pytest.raises(ValueError, match="<p> has 50,000 attributes"):
        plan_markup(element(50_000, ">"), fmt, 1000, "en")


def test_a_long_tag_with_few_attributes_is_fine():
    page = '<p><img src="data:image/png;base64,' + "A" * 200_000 + '" alt="A cat"> Hi.</p>'
    chunks, layouts = plan_markup(page, "html", 1000, "en")
    assert "".join(chunks) == page and any("A cat" in s for lay in layouts for s in lay.segments)


def test_a_tag_open_across_many_sentences_does_not_make_one_huge_segment():
    from control_plane.text.chunking import MAX_SEGMENT_CHARS

    sentence = "The quick brown fox jumps over the lazy dog near the river bank today. "
    doc = "<p>Intro. <b>" + sentence * 200 + "<i>x</i> end</b> Outro.</p>"
    _, (layout,) = plan_markup(doc, "html", 100_000, "en")
    assert max(map(len, layout.segments)) <= MAX_SEGMENT_CHARS + 20  # + the tags
    assert len(layout.segments) > 6
    upper = lambda texts: [Translation(t.upper(), 0.9) for t in texts]  # noqa: E731
    out = layout.render([t.text for t in run_sync(layout.segments, Protection.of("html"), upper)])
    assert out == doc.upper().replace("<P>", "<p>").replace("</P>", "</p>").replace(
        "<B>", "<b>"
    ).replace("</B>", "</b>").replace("<I>", "<i>").replace("</I>", "</i>")
    assert compare_structure(doc, out, "html") == []


def test_a_page_without_a_doctype_gets_none():
    """libxml2 wrote HTML 4.0 Transitional's doctype into every page without one, which
    takes browsers out of quirks mode."""
    for page in [
        "<html><head><title>T</title></head><body><p>Hello there.</p></body></html>",
        "<!-- c --><html><body><p>Hi.</p></body></html>",
    ]:
        chunks, _ = plan_markup(page, "html", 1000, "en")
        assert "".join(chunks) == page
    kept = "<!DOCTYPE html>\n<html><body><p>Hi.</p></body></html>"
    assert "".join(plan_markup(kept, "html", 1000, "en")[0]) == kept
