"""Plain text (``text``): paragraphs in, the file back with its blank lines and
indentation exactly as they were.

A paragraph is a run of non-blank lines between blank lines (a line of nothing but
whitespace is blank); a heading underlined with ``===`` or ``---`` right above a wrapped
paragraph is a paragraph of its own. A hard-wrapped paragraph (``wrap_width`` says
which) is one unit: its lines joined by spaces without their indentation, translated as
whole sentences and re-wrapped with ``textwrap`` (never inside a protected span) to the
paragraph's width, the first line's prefix (indentation and bullet) and the continuation
lines' indentation kept. Any other paragraph is one unit holding its lines as they are
(``Layout.parse`` translates it line by line: sentences never cross a line break,
indentation and list markers stay).

Lines end at ``\\n``, ``\\r\\n`` or ``\\r`` (each line keeps its own ending); a UTF-8
byte-order mark is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from control_plane.text.chunking import fill_keeping_spans
from control_plane.text.formats.base import Options, Unit, decode_utf8

MIN_WRAP_WIDTH = 50  # narrower paragraphs are never taken for hard-wrapped ones

_TERMINATORS = ".!?:;"
_BULLETS = "-*+\u2022\u2023\u25e6\u2013"


_EOL = re.compile(r"(\r\n|\r|\n)")


def split_lines(text: str) -> list[tuple[str, str]]:
    """(body, line ending) per line; only ``\\n``, ``\\r\\n`` and ``\\r`` end a line."""
    # one C-level split (a Python loop over find() was 7 s for 8 MiB of blank lines)
    parts = _EOL.split(text)
    out = list(zip(parts[0::2], [*parts[1::2], ""], strict=True))
    return out if out[-1] != ("", "") else out[:-1]


def _bullet_len(body: str) -> int:
    """Length of a list marker and the spaces after it at the start of ``body`` (an
    already dedented line), 0 when there is none: ``-``, ``*``, ``+``, ``•``, ``1.``,
    ``2)``, ``(a)``."""
    i = 0
    if body[:1] in _BULLETS:
        i = 1
    elif body[:1].isdigit():
        while i < len(body) and i < 9 and body[i].isdigit():
            i += 1
        if body[i : i + 1] not in (".", ")"):
            return 0
        i += 1
    elif body[:1] == "(" and body[2:3] == ")" and body[1:2].isalnum():
        i = 3
    else:
        return 0
    j = i
    while j < len(body) and body[j] in " \t":
        j += 1
    return j if j > i and j < len(body) else 0


def _indent(body: str) -> str:
    return body[: len(body) - len(body.lstrip(" \t"))]


def _prefix(body: str) -> str:
    """Indentation and list marker of a line."""
    ws = _indent(body)
    return body[: len(ws) + _bullet_len(body[len(ws) :])]


def wrap_width(lines: list[str]) -> int | None:
    """The width a paragraph was hard-wrapped to, or None when its line breaks mean
    something (a poem, a list, code, a table, a short note).

    The rule: a paragraph is hard-wrapped when all of these hold

    - it has two lines or more and its longest line (tabs expanded) has at least
      ``MIN_WRAP_WIDTH`` characters: that length is the width;
    - every line after the first has the same indentation, and none of them starts with
      a list marker (the first line may carry a bullet or number: a hanging indent);
    - every break was forced by the width, as a greedy filler breaks: the first word of
      the next line would not have fitted on the line (line + space + word > width);
    - the lines break mid-sentence: at most half of the breaks come after ``. ! ? : ;``
      (a single break never does);
    - it reads as prose: no run of three spaces inside a line (columns), and letters and
      spaces make up at least 70% of it (not code).
    """
    if len(lines) < 2:
        return None
    expanded = [line.expandtabs().rstrip() for line in lines]
    width = max(len(line) for line in expanded)
    if width < MIN_WRAP_WIDTH or any(not line.strip() for line in expanded):
        return None
    cont = _indent(lines[1])
    for line in lines[1:]:
        if _indent(line) != cont or _bullet_len(line[len(cont) :]):
            return None
    ends_sentence = 0
    for line, nxt in zip(expanded, expanded[1:], strict=False):
        first_word = nxt.split()[0]
        if len(line) + 1 + len(first_word) <= width:
            return None  # the word would have fitted: the break was chosen
        ends_sentence += line[-1] in _TERMINATORS
    if ends_sentence * 2 > len(lines) - 1:
        return None
    body = " ".join(line.strip() for line in expanded)
    if "   " in body:
        return None
    proseish = sum(c.isalpha() or c == " " for c in body)
    if proseish < 0.7 * len(body):
        return None
    return width


def _underline(body: str) -> bool:
    """A heading's underline: one punctuation character repeated (``=====``, ``-----``)."""
    mark = body.strip()
    return len(mark) >= 3 and mark[0] in "=-~*^#+" and mark == mark[0] * len(mark)


@dataclass
class _Paragraph:
    start: int  # index of its first line
    end: int  # one past its last line
    width: int | None  # hard-wrapped to this width, or None


def _join(bodies: list[str]) -> str:
    """A wrapped paragraph's lines (prefixes removed) as one line; a word hyphenated
    across a break (``well-`` / ``known``) is joined without a space."""
    out = bodies[0]
    for body in bodies[1:]:
        glued = len(out) > 1 and out[-1] == "-" and out[-2].isalpha() and body[:1].islower()
        out += body if glued else " " + body
    return out


class PlainText:
    name = "text"
    extensions = (".txt",)
    media_type = "text/plain; charset=utf-8"
    binary = False
    markup = "text"

    def _read(self, data: bytes) -> tuple[str, list[tuple[str, str]], list[_Paragraph]]:
        bom, text = decode_utf8(data, "text")
        lines = split_lines(text)
        paragraphs: list[_Paragraph] = []
        i = 0
        while i < len(lines):
            if not lines[i][0].strip():
                i += 1
                continue
            j = i
            while j < len(lines) and lines[j][0].strip():
                j += 1
            bodies = [b for b, _ in lines[i:j]]
            if len(bodies) >= 4 and _underline(bodies[1]) and wrap_width(bodies[2:]):
                # a heading and its underline right above a wrapped paragraph
                paragraphs.append(_Paragraph(i, i + 2, None))
                i += 2
            paragraphs.append(_Paragraph(i, j, wrap_width([b for b, _ in lines[i:j]])))
            i = j
        return bom, lines, paragraphs

    @staticmethod
    def _unit_text(lines: list[tuple[str, str]], p: _Paragraph) -> str:
        if p.width is None:
            block = "".join(b + e for b, e in lines[p.start : p.end])
            return block[: len(block) - len(lines[p.end - 1][1])]
        bodies = [b.strip() for b, _ in lines[p.start : p.end]]
        bodies[0] = lines[p.start][0][len(_prefix(lines[p.start][0])) :].strip()
        return _join(bodies)

    def extract(self, data: bytes) -> list[Unit]:
        _, lines, paragraphs = self._read(data)
        return [
            Unit(self._unit_text(lines, p), str(i), f"wrap:{p.width}" if p.width else "")
            for i, p in enumerate(paragraphs)
        ]

    def rebuild(self, data: bytes, translations: list[str], options: Options) -> bytes:
        bom, lines, paragraphs = self._read(data)
        if len(translations) != len(paragraphs):
            raise ValueError(f"{len(translations)} translations for {len(paragraphs)} units")
        out = [bom]
        pos = 0
        for p, translated in zip(paragraphs, translations, strict=True):
            out.extend(b + e for b, e in lines[pos : p.start])
            pos = p.end
            eol = lines[p.end - 1][1]
            if p.width is None:
                out.append(translated + eol)
                continue
            if translated == self._unit_text(lines, p):  # nothing changed: the source
                out.extend(b + e for b, e in lines[p.start : p.end])
                continue
            first = lines[p.start][0]
            # textwrap, but never inside a protected span (an ICU plural's "{# items}"
            # was broken across lines in 13 of 20 paddings); ``protection``: the job's,
            # where the caller put it in ``options.extra``
            filled = fill_keeping_spans(
                [(True, " ".join(translated.split()))],
                p.width,
                _prefix(first),
                _indent(lines[p.start + 1][0]),
                protection=options.extra.get("protection"),
            )
            inner = lines[p.start][1] or "\n"
            out.append(filled.replace("\n", inner) + eol)
        out.extend(b + e for b, e in lines[pos:])
        return "".join(out).encode("utf-8")


FORMAT = PlainText()
