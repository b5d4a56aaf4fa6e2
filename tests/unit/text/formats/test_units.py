"""Units -> chunks: a chunk is a run of whole units (a larger unit is cut between its
sentences), the stream splits back per unit."""

from __future__ import annotations

import pytest

from control_plane.text.formats import get
from control_plane.text.formats.base import Unit
from control_plane.text.formats.units import (
    UNIT_END,
    plan_document,
    plan_units,
    render_units,
    split_units,
)


def test_chunks_hold_whole_units_and_split_back():
    units = [Unit(f"Sentence {i} of the document. It has two sentences.") for i in range(40)]
    units.append(Unit("Line one\nline two"))
    chunks, layouts = plan_document(units, "text", target_words=30, lang="en")
    assert len(chunks) > 5
    for chunk, layout in zip(chunks, layouts, strict=True):
        assert chunk.endswith(UNIT_END)  # never cut inside a unit
        assert layout.source() == chunk
        assert sum(len(p) for p in split_units(chunk)) == len(chunk) - chunk.count(UNIT_END)
    stream = "".join(layout.render(layout.segments) for layout in layouts)
    assert split_units(stream) == [u.text for u in units]


def test_a_unit_larger_than_a_chunk_has_chunks_of_its_own():
    big = Unit(" ".join(f"Word{i} is here." for i in range(200)))
    chunks, _ = plan_document([Unit("Short one."), big, Unit("Short two.")], "text", 50, "en")
    assert split_units(chunks[0]) == ["Short one."]  # small units stay whole
    assert chunks[-1].endswith("Short two." + UNIT_END)
    assert len(chunks) >= 12  # 600 words cut between sentences into chunks of <= 50
    assert all(len(c.split()) <= 50 for c in chunks)
    assert split_units("".join(chunks)) == ["Short one.", big.text, "Short two."]


def test_xml_units_keep_tags_and_render_per_unit():
    units = [Unit('Open the <g id="1">file</g>. Then &amp; close it.'), Unit("<x/>Done.")]
    _, layouts = plan_document(units, "xml", 1000, "en")
    segments = [s for layout in layouts for s in layout.segments]
    assert any('<g id="1">' in s for s in segments)
    per_unit = render_units(plan_units(units, "xml", "en"), segments)
    assert per_unit == [u.text for u in units]


@pytest.mark.parametrize("name", ["markdown", "po"])
def test_a_unit_larger_than_a_chunk_is_cut_between_its_sentences(name):
    """It was one chunk however large: a 2 MiB paragraph was one work item."""
    from control_plane.text.chunking import CHUNK_CHARS_PER_WORD, Layout
    from control_plane.text.formats.base import Options
    from control_plane.text.formats.units import UNIT_END, plan_document, split_units

    sentence = "The quick brown fox jumps over the lazy dog near the river bank today. "
    big = sentence * 3000
    if name == "markdown":
        data = f"# Title\n\nA short one.\n\n{big}\n\nShort again.\n".encode()
    else:
        data = (
            f'msgid "Title"\nmsgstr ""\n\nmsgid "{big}"\nmsgstr ""\n\nmsgid "End."\nmsgstr ""\n'
        ).encode()
    fmt = get(name)
    units = fmt.extract(data)
    chunks, layouts = plan_document(units, fmt.markup, 500, "en")
    assert len(chunks) > 20
    for chunk, layout in zip(chunks, layouts, strict=True):
        assert len(chunk) <= CHUNK_CHARS_PER_WORD * 500
        assert sum(len(s.split()) for s in layout.segments) <= 500
    # small units stay whole: the first chunk ends with the small units before the big one
    assert chunks[0].count(UNIT_END) == (2 if name == "markdown" else 1)
    # the stream is the same: rendered chunk by chunk, the units split back and rebuild
    stream = "".join(Layout.loads(lay.dumps()).render(lay.segments) for lay in layouts)
    assert split_units(stream) == [u.text for u in units]
    upper = [t.upper() for t in split_units(stream)]
    rebuilt = fmt.rebuild(data, upper, Options("en", "pt")).decode()
    assert big.strip().upper() in rebuilt.replace('"\n"', "")  # PO continues long lines
