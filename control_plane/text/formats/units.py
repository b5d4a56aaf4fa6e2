"""Units -> sentence layouts -> chunks, and back: how a document rides the job path.

Every unit becomes one ``Layout`` (its sentences are the segments; line breaks,
indentation and, for "xml" units, tags around sentences stay literal). A document's
chunks are runs of whole units, each unit followed by ``UNIT_END`` (U+001E, the
information separator "record separator"; taken out of unit texts, and unlike NUL a
PostgreSQL text column holds it), so the job's assembled result splits back into one translation
per unit. A chunk never cuts a PO entry, an XLIFF unit, a table cell or a cue that fits in
one; a unit larger than a chunk is cut between its sentences into chunks of its own.
"""

from __future__ import annotations

from control_plane.text.chunking import (
    CHUNK_CHARS_PER_WORD,
    MIN_CHUNK_CHARS,
    Budget,
    Layout,
    count_words,
)
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
    """Chunks of about ``target_words`` words made of whole units, with their layouts;
    ``"".join(chunks)`` is the unit stream.

    A unit larger than a chunk (over ``target_words`` words or the chunk's characters, as
    ``chunking.plan`` bounds them) is cut between its pieces into chunks of its own: it was
    one chunk however large (a 2 MiB Markdown paragraph or PO entry was one work item that a
    retry redid whole). The stream is the same, so the units split back as before; a
    piece (a sentence, or a re-wrapped paragraph) is never cut."""
    max_chars = max(MIN_CHUNK_CHARS, CHUNK_CHARS_PER_WORD * target_words)
    chunks: list[Layout] = []
    current: list[tuple[bool, str]] = []
    words = chars = 0

    def flush() -> None:
        nonlocal current, words, chars
        if current:
            chunks.append(Layout(current))
        current, words, chars = [], 0, 0

    for layout in plan_units(units, markup, lang):
        n = sum(count_words(s) for s in layout.segments)
        size = len(layout.source())
        if current and (words + n > target_words or chars + size > max_chars):
            flush()
        if n > target_words or size > max_chars:  # too large for any chunk: cut it
            for kind, text in layout.pieces:
                piece = Layout([(kind, text)])
                w = sum(count_words(s) for s in piece.segments)
                c = len(piece.source())
                if current and (words + w > target_words or chars + c > max_chars):
                    flush()
                current.append((kind, text))
                words, chars = words + w, chars + c
        else:
            current.extend(layout.pieces)
            words, chars = words + n, chars + size
        current.append((False, UNIT_END))
        chars += 1
    flush()
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
