"""Units -> sentence layouts -> chunks, and back: how a document rides the job path.

Every unit becomes one ``Layout`` (its sentences are the segments; line breaks,
indentation and, for "xml" units, tags around sentences stay literal). A document's
chunks are runs of whole units, each unit followed by ``UNIT_END`` (U+001E, the
information separator "record separator"; taken out of unit texts, and unlike NUL a
PostgreSQL text column holds it), so the job's assembled result splits back into one translation
per unit and a chunk never cuts a PO entry, an XLIFF unit, a table cell or a cue.
"""

from __future__ import annotations

from control_plane.text.chunking import Budget, Layout, count_words
from control_plane.text.formats.base import Unit

UNIT_END = "\x1e"


def unit_layout(text: str, markup: str, lang: str, budget: Budget | None = None) -> Layout:
    text = text.replace(UNIT_END, "")
    if markup == "xml":
        from control_plane.text.markup import split_run

        return Layout(
            [(is_seg, piece) for is_seg, piece, _ in split_run(text, "xml", lang, budget)]
        )
    return Layout.parse(text, lang, budget)


def plan_units(units: list[Unit], markup: str, lang: str) -> list[Layout]:
    budget = Budget()
    return [unit_layout(u.text, markup, lang, budget) for u in units]


def render_units(layouts: list[Layout], segments: list[str]) -> list[str]:
    """One translation per unit from the translations of all their segments in order."""
    out, pos = [], 0
    for layout in layouts:
        n = len(layout.segments)
        out.append(layout.render(segments[pos : pos + n]))
        pos += n
    return out


def plan_document(
    units: list[Unit], markup: str, target_words: int, lang: str
) -> tuple[list[str], list[Layout]]:
    """Chunks of about ``target_words`` words made of whole units (a larger unit is a
    chunk of its own), with their layouts; ``"".join(chunks)`` is the unit stream."""
    chunks: list[Layout] = []
    current: list[tuple[bool, str]] = []
    words = 0
    for layout in plan_units(units, markup, lang):
        n = sum(count_words(s) for s in layout.segments)
        if current and words + n > target_words:
            chunks.append(Layout(current))
            current, words = [], 0
        current.extend(layout.pieces)
        current.append((False, UNIT_END))
        words += n
    if current:
        chunks.append(Layout(current))
    chunks = [Layout(_merged(c.pieces)) for c in chunks]
    return [c.source() for c in chunks], chunks


def _merged(pieces: list[tuple[bool, str]]) -> list[tuple[bool, str]]:
    """Adjacent literal pieces as one (what ``Layout.parse`` makes, and cheaper to store)."""
    out: list[tuple[bool, str]] = []
    for is_seg, text in pieces:
        if out and not is_seg and not out[-1][0]:
            out[-1] = (False, out[-1][1] + text)
        elif text:
            out.append((is_seg, text))
    return out


def split_units(stream: str) -> list[str]:
    """The per-unit translations of an assembled unit stream."""
    parts = stream.split(UNIT_END)
    return parts[:-1] if parts and parts[-1] == "" else parts
