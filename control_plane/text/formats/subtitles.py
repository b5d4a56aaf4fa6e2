"""Subtitles: SRT (the ``srt`` library) and WebVTT (``webvtt-py``), one unit per cue.

A cue's lines are one sentence to the model: the unit is its lines joined by a space.
Cue tags (``<i>``, ``<b>``, ``<u>``, ``<font color>``; VTT's ``<c.class>``, ``<v Name>``,
``<lang>``, ``<ruby>`` and ``<00:00:01.000>`` timestamps) become inline tags of the
unit (``markup`` "xml"): a tag with its closing tag in the cue is a pair ``<gN>`` ...
``</gN>``, any other one a void ``<xN/>``; the format keeps the original tag behind each
name and writes it back byte for byte. Text is XML-escaped in units (VTT's own
character references are decoded first and the text re-escaped for VTT on the way back).

``rebuild`` parses the file again with the same library, puts the translation back in
place of each cue's text, re-split into the cue's original number of lines (balanced by
characters, cut only at spaces outside tags; dialogue cues whose lines all start with
``-`` are cut before the dashes when the translation keeps them) and writes the file with
that library: numbering (SRT indexes are kept, not renumbered), timings, cue settings,
identifiers, NOTE, STYLE and REGION blocks are kept. What the libraries normalise:
timestamps are written in full (``00:01.5`` -> ``00:00:01.500``), SRT's blank lines
inside a cue and a VTT NOTE's first line break; VTT is written with ``\\n`` line endings.
"""

from __future__ import annotations

import html
import io
import re
from itertools import combinations
from xml.sax.saxutils import unescape

from control_plane.text.formats.base import Options, Unit, decode_utf8

# ---------------------------------------------------------------------------- cue text


def _tokens(text: str) -> list[tuple[bool, str]]:
    """(is_tag, text) pieces of cue text, as the WebVTT cue-text tokenizer cuts them: a
    ``<`` followed by a letter, ``/`` or digit opens a tag that runs to the next ``>``."""
    out: list[tuple[bool, str]] = []
    pos = start = 0
    while pos < len(text):
        nxt = text[pos + 1 : pos + 2]
        if text[pos] == "<" and (nxt.isalnum() or nxt == "/"):
            end = text.find(">", pos)
            if end >= 0:
                if start < pos:
                    out.append((False, text[start:pos]))
                out.append((True, text[pos : end + 1]))
                pos = start = end + 1
                continue
        pos += 1
    if start < len(text):
        out.append((False, text[start:]))
    return out


def _tag_name(tag: str) -> str:
    body = tag[2:] if tag.startswith("</") else tag[1:]
    end = len(body)
    for i, ch in enumerate(body):
        if ch in " \t.>/":
            end = i
            break
    return body[:end].lower()


def _inline(text: str, vtt: bool) -> tuple[str, dict[str, str]]:
    """A cue's joined text as a unit (synthetic tags, XML-escaped text) and the source
    tag behind each synthetic one."""
    tokens = _tokens(text)
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for i, (is_tag, piece) in enumerate(tokens):
        if not is_tag or piece.endswith("/>"):
            continue
        if piece.startswith("</"):
            name = _tag_name(piece)
            for d in range(len(stack) - 1, -1, -1):
                if _tag_name(tokens[stack[d]][1]) == name:
                    pairs[stack[d]] = i
                    del stack[d:]
                    break
        elif piece[1:2].isalpha():
            stack.append(i)
    closers = {v: k for k, v in pairs.items()}
    names: dict[int, str] = {}
    table: dict[str, str] = {}
    out: list[str] = []
    for i, (is_tag, piece) in enumerate(tokens):
        if not is_tag:
            out.append(_escape(html.unescape(piece) if vtt else piece))
            continue
        n = len(names) + 1
        if i in pairs:
            names[i] = synthetic = f"<g{n}>"
        elif i in closers:
            synthetic = f"</g{names[closers[i]][2:]}"
        else:
            names[i] = synthetic = f"<x{n}/>"
        table[synthetic] = piece
        out.append(synthetic)
    return "".join(out), table


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _restore(translated: str, table: dict[str, str], vtt: bool) -> list[tuple[bool, str]]:
    """A translated unit back as (is_tag, text) pieces of cue text; whitespace the model
    put just inside a tag pair goes outside it."""
    pieces: list[tuple[bool, str]] = []
    for is_tag, piece in _tokens(translated):
        if is_tag and piece in table:
            pieces.append((True, piece))
        else:
            text = unescape(piece, {"&quot;": '"', "&apos;": "'"})
            pieces.append((False, _escape(text) if vtt else text))
    for i, (is_tag, piece) in enumerate(pieces):
        if not is_tag:
            continue
        if piece.startswith("<g") and i + 1 < len(pieces) and not pieces[i + 1][0]:
            text = pieces[i + 1][1]
            moved = text[: len(text) - len(text.lstrip())]
            if moved and i > 0 and not pieces[i - 1][0]:
                pieces[i - 1] = (False, pieces[i - 1][1] + moved)
                pieces[i + 1] = (False, text.lstrip())
        if piece.startswith("</g") and i > 0 and not pieces[i - 1][0]:
            text = pieces[i - 1][1]
            moved = text[len(text.rstrip()) :]
            if moved and i + 1 < len(pieces) and not pieces[i + 1][0]:
                pieces[i - 1] = (False, text.rstrip())
                pieces[i + 1] = (False, moved + pieces[i + 1][1])
    return [(t, table[p] if t else p) for t, p in pieces if p]


def split_lines(pieces: list[tuple[bool, str]], count: int, dialogue: bool = False) -> list[str]:
    """Cue text cut into ``count`` lines (fewer when it has fewer words), at spaces
    outside tags, the longest line as short as it can be (by characters outside tags).
    ``dialogue``: when the text has exactly ``count`` words starting with ``-``, the
    first of them at the start, it is cut before them."""
    words, sizes = [""], [0]  # words with their tags, their length without tags
    for is_tag, piece in pieces:
        if is_tag:
            words[-1] += piece
            continue
        for j, part in enumerate(piece.split(" ")):
            if j:
                words.append("")
                sizes.append(0)
            words[-1] += part
            sizes[-1] += len(part)
    kept = [(w, s) for w, s in zip(words, sizes, strict=True) if w]
    words, sizes = [w for w, _ in kept], [s for _, s in kept]
    count = max(1, min(count, len(words)))
    if count == 1:
        return [" ".join(words)]
    if dialogue:
        dashes = [i for i, w in enumerate(words) if _visible(w).startswith("-")]
        if len(dashes) == count and dashes[0] == 0:
            bounds = [*dashes, len(words)]
            return [" ".join(words[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    best: tuple[tuple[int, float], tuple[int, ...]] | None = None
    for cuts in _candidates(sizes, count):
        bounds = [0, *cuts, len(words)]
        lengths = [sum(sizes[a:b]) + b - a - 1 for a, b in zip(bounds, bounds[1:], strict=False)]
        mean = sum(lengths) / count
        score = (max(lengths), sum((x - mean) ** 2 for x in lengths))
        if best is None or score < best[0]:
            best = (score, cuts)
    bounds = [0, *best[1], len(words)]
    return [" ".join(words[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]


def _candidates(sizes: list[int], count: int):  # noqa: ANN202 - Iterator[tuple[int, ...]]
    """Cut points to try: all of them for up to three lines, else the cuts nearest to
    even shares of the characters."""
    if count <= 3 or len(sizes) <= 12:
        yield from combinations(range(1, len(sizes)), count - 1)
        return
    total, run, cuts = sum(sizes) + len(sizes) - 1, 0, []
    ends = []
    for s in sizes:
        run += s + 1
        ends.append(run)
    for k in range(1, count):
        target = total * k / count
        lo = cuts[-1] + 1 if cuts else 1
        hi = len(sizes) - (count - k)
        cuts.append(min(range(lo, hi + 1), key=lambda i: abs(ends[i - 1] - target)))
    yield tuple(cuts)


def _visible(word: str) -> str:
    return "".join(p for is_tag, p in _tokens(word) if not is_tag)


def _cue_unit(lines: list[str], vtt: bool) -> tuple[str, dict[str, str], int, bool]:
    kept = [line.strip() for line in lines if line.strip()]
    text, table = _inline(" ".join(kept), vtt)
    dialogue = len(kept) > 1 and all(_visible(line).startswith("-") for line in kept)
    return text, table, len(kept), dialogue


def _new_lines(lines: list[str], translated: str, vtt: bool) -> list[str] | None:
    """The cue's lines for ``translated``; None when the translation is the unit's own
    text (the cue stays exactly as it was)."""
    text, table, count, dialogue = _cue_unit(lines, vtt)
    if translated == text:
        return None
    return split_lines(_restore(translated, table, vtt), count, dialogue)


def _check(units: int, translations: list[str]) -> None:
    if len(translations) != units:
        raise ValueError(f"{len(translations)} translations for {units} units")


# ---------------------------------------------------------------------------- SRT


class Srt:
    name = "srt"
    extensions = (".srt",)
    media_type = "application/x-subrip"
    binary = False
    markup = "xml"

    def _parse(self, data: bytes) -> tuple[str, str, list]:
        import srt

        bom, text = decode_utf8(data, "SRT")
        try:
            cues = list(srt.parse(text))
        except srt.SRTParseError as exc:
            raise ValueError(f"not a valid SRT file: {exc}") from None
        return bom, text, cues

    def extract(self, data: bytes) -> list[Unit]:
        _, _, cues = self._parse(data)
        return [Unit(_cue_unit(c.content.split("\n"), False)[0], str(c.index)) for c in cues]

    def rebuild(self, data: bytes, translations: list[str], options: Options) -> bytes:
        import srt

        bom, text, cues = self._parse(data)
        _check(len(cues), translations)
        for cue, translated in zip(cues, translations, strict=True):
            lines = _new_lines(cue.content.split("\n"), translated, False)
            if lines is not None:
                cue.content = "\n".join(lines)
        eol = "\r\n" if "\r\n" in text else "\n"
        return (bom + srt.compose(cues, reindex=False, eol=eol)).encode("utf-8")


# ---------------------------------------------------------------------------- WebVTT


class Vtt:
    name = "vtt"
    extensions = (".vtt",)
    media_type = "text/vtt"
    binary = False
    markup = "xml"

    def _parse(self, data: bytes):  # noqa: ANN202 - (bom, text, webvtt.WebVTT)
        import webvtt
        from webvtt.errors import MalformedCaptionError, MalformedFileError

        bom, text = decode_utf8(data, "WebVTT")
        try:
            # strict: without it webvtt-py drops a cue whose timing does not parse, and
            # the rebuilt file silently lacked that cue's text
            doc = webvtt.from_buffer(io.StringIO(text), strict=True)
        except (MalformedFileError, MalformedCaptionError, ValueError) as exc:
            raise ValueError(f"not a valid WebVTT file: {exc}") from None
        _check_blocks(text, len(doc.captions))
        return bom, text, doc

    def extract(self, data: bytes) -> list[Unit]:
        _, _, doc = self._parse(data)
        return [
            Unit(_cue_unit(c.lines, True)[0], c.identifier or str(i))
            for i, c in enumerate(doc.captions)
        ]

    def rebuild(self, data: bytes, translations: list[str], options: Options) -> bytes:
        bom, text, doc = self._parse(data)
        _check(len(doc.captions), translations)
        for cue, translated in zip(doc.captions, translations, strict=True):
            lines = _new_lines(cue.lines, translated, True)
            if lines is not None:
                cue.lines = lines
        return (bom + doc.content + "\n").encode("utf-8")


_VTT_BLOCKS = re.compile(r"\n[ \t]*\n+")


def _check_blocks(text: str, captions: int) -> None:
    """Every block after the header is a cue, a NOTE, a STYLE or a REGION: webvtt-py skips
    a block without a timing line even when strict, and the rebuilt file lost its text."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    blocks = [b for b in _VTT_BLOCKS.split(lines)[1:] if b.strip()]
    cues = [b for b in blocks if not b.lstrip().startswith(("NOTE", "STYLE", "REGION"))]
    if len(cues) == captions:
        return
    bad = next((b for b in cues if "-->" not in b), cues[-1] if cues else "")
    first = bad.strip().split("\n", 1)[0][:80]
    raise ValueError(f"not a valid WebVTT file: a block without a cue timing line: {first!r}")


FORMATS = {"srt": Srt(), "vtt": Vtt()}
