"""Units -> chunks: a chunk is a run of whole units, the stream splits back per unit."""

from __future__ import annotations

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


def test_a_unit_larger_than_a_chunk_is_a_chunk_of_its_own():
    big = Unit(" ".join(f"Word{i} is here." for i in range(200)))
    chunks, _ = plan_document([Unit("Short one."), big, Unit("Short two.")], "text", 50, "en")
    assert [split_units(c) for c in chunks] == [["Short one."], [big.text], ["Short two."]]


def test_xml_units_keep_tags_and_render_per_unit():
    units = [Unit('Open the <g id="1">file</g>. Then &amp; close it.'), Unit("<x/>Done.")]
    _, layouts = plan_document(units, "xml", 1000, "en")
    segments = [s for layout in layouts for s in layout.segments]
    assert any('<g id="1">' in s for s in segments)
    per_unit = render_units(plan_units(units, "xml", "en"), segments)
    assert per_unit == [u.text for u in units]
