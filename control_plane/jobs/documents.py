"""Document jobs: a file (PO, XLIFF, Markdown, subtitles, DOCX, ...) through the job path.

A document job stores its file in ``jobs.source_text`` (UTF-8 text, or base64 for a
binary format such as DOCX), is planned into chunks of whole units
(``control_plane.text.formats.units``), translated like any job, and rebuilt into the
translated file when its last chunk lands (``assemble``), so ``jobs.result_text`` holds
the translated file in the same encoding. "text", "html" and "xml" keep their own paths
(``chunking.plan``, ``markup.plan_markup``).
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import PurePath

from control_plane.domain import DomainError
from control_plane.text import formats
from control_plane.text.chunking import count_words
from control_plane.text.formats.units import UNIT_END, split_units

# formats with their own planner; every other known format is a document format
OWN_PATH = ("text", "html", "xml")


# extensions of the formats with their own path (documents: each format's extensions)
OWN_EXTENSIONS = {".txt": "text", ".text": "text", ".html": "html", ".htm": "html",
                  ".xhtml": "html", ".xml": "xml"}  # fmt: skip


def format_of(filename: str | None) -> str | None:
    """The format a file name's extension says (``guide.md`` -> markdown), or None."""
    suffix = PurePath(filename or "").suffix.lower()
    if suffix in OWN_EXTENSIONS:
        return OWN_EXTENSIONS[suffix]
    found = formats.by_extension(filename or "")
    return found.name if found is not None else None


class InvalidDocument(DomainError):
    code = "invalid_document"


def is_document(fmt: str | None) -> bool:
    return bool(fmt) and fmt not in OWN_PATH and fmt in formats.names()


def markup_of(fmt: str | None) -> str:
    """How inline codes are written in what the engine sees: the job's Protection format
    ("text", "html" or "xml")."""
    fmt = fmt or "text"
    if fmt in OWN_PATH:
        return fmt
    return formats.get(fmt).markup if is_document(fmt) else "text"


def decode(stored: str, fmt: str) -> bytes:
    """The file's bytes from ``jobs.source_text`` / the request's content."""
    if formats.get(fmt).binary:
        try:
            return base64.b64decode(stored, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidDocument(
                f"a {fmt} document is sent as base64 (POST /api/v1/documents takes the file "
                f"itself): {exc}",
                details=[{"field": "content", "message": "not base64"}],
            ) from exc
    return stored.encode("utf-8", "surrogatepass")


def encode(data: bytes, fmt: str) -> str:
    if formats.get(fmt).binary:
        return base64.b64encode(data).decode("ascii")
    return data.decode("utf-8")


def extract(stored: str, fmt: str):  # noqa: ANN201 - list[Unit]
    """The document's units; InvalidDocument (422) with the parser's reason otherwise."""
    try:
        return formats.get(fmt).extract(decode(stored, fmt))
    except InvalidDocument:
        raise
    except (ValueError, SyntaxError, KeyError, OSError) as exc:  # parsers differ
        raise InvalidDocument(
            f"content could not be read as {fmt}: {str(exc)[:300]}",
            details=[{"field": "content", "message": f"not readable as {fmt}"}],
        ) from exc


TAG = re.compile(r"<[^<>]*>")  # a tag, to count or detect text without: linear
_CODES = re.compile(TAG.pattern + r"|&#?\w{1,32};")  # tags and references


def text_words(text: str, markup: str) -> int:
    """Words of unit text (a unit, or a chunk's unit stream): inline codes and character
    references of "xml" units are not words."""
    text = text.replace(UNIT_END, " ")  # units are apart, also in a chunk's stream
    return count_words(_CODES.sub(" ", text) if markup != "text" else text)


def word_count(stored: str, fmt: str) -> int:
    """Words of the document's translatable text: what progress, cost and quota count
    (a PO file's keywords and comments, a DOCX's XML, tags: none of it). The chunks'
    counts (``text_words`` of each unit stream) add up to it."""
    markup = markup_of(fmt)
    return sum(text_words(u.text, markup) for u in extract(stored, fmt))


def assemble(stored: str, fmt: str, stream: str, options: formats.Options) -> str:
    """The translated file (stored like the source: text or base64) from the job's
    assembled unit stream."""
    data = decode(stored, fmt)
    return encode(formats.get(fmt).rebuild(data, split_units(stream), options), fmt)


def download_name(filename: str | None, fmt: str, target_lang: str) -> str:
    """``guide.md`` -> ``guide.pt.md``; a nameless upload gets ``document.pt.<ext>``."""
    ext = formats.get(fmt).extensions[0] if is_document(fmt) else ".txt"
    path = PurePath(filename or f"document{ext}")
    stem = path.stem or "document"
    suffix = path.suffix or ext
    if fmt == "po" and suffix == ".pot":
        suffix = ".po"  # a template comes back as a catalog
    return f"{stem}.{target_lang}{suffix}"
