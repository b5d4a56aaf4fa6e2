"""What a document format is to the job path: structural units out, the file back in.

A format reads a file into ``Unit`` s (a PO entry's msgid, an XLIFF ``<source>``, a
Markdown paragraph or table cell, a subtitle cue, a DOCX paragraph) and writes the file
back with each unit's translation in place (``rebuild``). Everything else of the file
(structure, metadata, code blocks, timings) is the format's to keep; the job path only
ever sees the units, so jobs, priorities, the cache, Kafka and Triton need nothing
format-specific.

A unit's ``text`` may carry inline codes as tags (``<g id="1">``, ``<x/>``, or tags a
format makes up for runs of formatting: ``<b>``, ``<a0>``); then the format's
``markup`` is "xml" and every tag is a protected span (``control_plane.text.markup``).
With ``markup == "xml"`` a unit's text is XML-escaped (``&amp;`` ``&lt;``) and so is
its translation; with "text" both are plain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Unit:
    """One structural unit to translate. ``key`` lets ``rebuild`` find where the
    translation goes (an index, an XLIFF id, a PO entry's position)."""

    text: str
    key: str = ""
    # a hint for the planner: keep the unit's lines (a subtitle cue's lines are one
    # sentence; a hard-wrapped paragraph is re-wrapped by its format)
    note: str = ""


@dataclass
class Options:
    """What ``rebuild`` needs besides the translations."""

    source_lang: str
    target_lang: str
    model_version: str = ""
    extra: dict = field(default_factory=dict)  # format-specific (e.g. po_fuzzy, state)


class DocumentFormat(Protocol):
    name: str  # "po", "xliff", "markdown", "srt", "vtt", "docx", "text", "html", ...
    extensions: tuple[str, ...]  # ".po", ".pot" (lower case, with the dot)
    media_type: str  # the translated file's Content-Type
    binary: bool  # True: the file is bytes (docx); False: UTF-8 text
    markup: str  # "text" or "xml": how inline codes are written in unit texts

    def extract(self, data: bytes) -> list[Unit]:
        """The file's units, in document order. Raises ValueError (with a message a
        user can act on) when the file does not parse."""
        ...

    def rebuild(self, data: bytes, translations: list[str], options: Options) -> bytes:
        """The file with ``translations[i]`` in place of ``extract(data)[i]``; the same
        structure otherwise."""
        ...


BOM = "\ufeff"


def decode_utf8(data: bytes, what: str) -> tuple[str, str]:
    """(byte-order mark or "", text) of a UTF-8 file; ValueError naming the file kind and
    the first bad byte otherwise (the upload's 422 says it)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"the {what} file is not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    bom = BOM if text.startswith(BOM) else ""
    return bom, text[len(bom) :]
