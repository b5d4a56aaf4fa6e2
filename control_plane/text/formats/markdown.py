"""Markdown through markdown-it-py (CommonMark, GFM tables and strikethrough, YAML/TOML
front matter): the text translated, everything else of the file byte for byte.

Units: paragraphs (also in list items and block quotes), headings (ATX and setext) and
table cells, each the content of one markdown-it ``inline`` token. Left as they are:
fenced and indented code blocks, HTML blocks (tags and the text inside them), front
matter (keys and values), reference definitions, thematic breaks, table delimiter rows,
link URLs and titles, images (alt text included), autolinks, inline code and inline
HTML.

A unit's inline formatting is written as synthetic XML tags (``markup`` "xml", text
XML-escaped): ``*a*`` -> ``<em1>a</em1>``, ``**b**`` -> ``<strong2>b</strong2>``,
``~~c~~`` -> ``<s3>c</s3>``, ``[t](url "title")`` -> ``<a4>t</a4>``, and void tags for
what the model never sees the inside of: inline code ``<c5/>``, images ``<img6/>``,
autolinks ``<u7/>``, inline HTML ``<h8/>``, a hard line break ``<br9/>``, a task-list
box ``<t10/>``. The format keeps the source syntax behind every tag (for links the
exact ``](url "title")`` or ``][ref]``, for code, images and autolinks their exact
source, recorded while markdown-it's inline rules run; a shortcut or collapsed reference
``[label]`` / ``[label][]`` becomes ``[text][label]`` so that it still finds its
definition) and writes it back; text from
the model is escaped for Markdown (``*``, ``_`` at word edges, ``[``, ``]``, `` ` ``,
``\\``, ``<``, ``~``, entity-like ``&``, and ``|`` in table cells) and a line never
starts with something that would open a block (checked by parsing it).

Rebuild: the source with each unit's source range replaced (markdown-it's ``map`` line
ranges, the unit's columns found on each line), so everything outside units is
byte-identical. A paragraph of one line stays one line; a paragraph of several lines is
re-wrapped to its longest line's width, the first line keeping its prefix (``- ``,
``> ``, indentation) and the others the second line's prefix; hard breaks stay (as
``\\`` or two spaces, as the paragraph had them). A unit the model left as it was keeps
its source bytes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from xml.sax.saxutils import unescape

from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.front_matter import front_matter_plugin

from control_plane.text.chunking import glue_for, glue_spans, unglue
from control_plane.text.formats.base import Options, Unit, decode_utf8
from control_plane.text.formats.plain import split_lines as _split_lines  # markdown-it's cuts
from control_plane.text.spans import Protection

_SRC = "mtb_src"  # Token.meta key: (start, end) of the token's syntax in the inline source
_RECORDED = ("link", "image", "autolink", "backticks")
_SYNTAX = ("link_open", "image", "code_inline")
_MD_PUNCT = "\\`*[]<"
_TASK_BOXES = ("[ ] ", "[x] ", "[X] ")


# ---------------------------------------------------------------------------- parser


def _recording(rule):  # noqa: ANN001, ANN202 - an inline rule and its wrapper
    """An inline rule that also records where its first token's syntax starts and ends
    in the inline source (markdown-it keeps no positions below the block level); for a
    link, where its label ends."""

    def run(state, silent: bool) -> bool:  # noqa: ANN001 - StateInline
        start, count = state.pos, len(state.tokens)
        ok = rule(state, silent)
        # the first token past any pending text the rule's push flushed
        pushed = [t for t in state.tokens[count:] if t.type in _SYNTAX]
        if ok and not silent and pushed:
            first = pushed[0]
            if _SRC not in first.meta:
                label_end = -1
                if first.type == "link_open" and first.markup != "autolink":
                    end = state.pos
                    label_end = state.md.helpers.parseLinkLabel(state, start, True)
                    state.pos = end
                first.meta[_SRC] = (start, state.pos, label_end)
        return ok

    return run


@functools.cache
def parser() -> MarkdownIt:
    """The parser used for units, rebuilds and structure checks (tests may use it)."""
    md = MarkdownIt("commonmark", {"html": True})
    md.enable(["table", "strikethrough"])
    md.use(front_matter_plugin)
    for name in _RECORDED:
        rules = md.inline.ruler.__rules__
        md.inline.ruler.at(name, _recording(rules[md.inline.ruler.__find__(name)].fn))
    return md


def _check_nesting(tokens: list, max_nesting: int) -> None:  # noqa: ANN001 - markdown-it tokens
    """Refuse what markdown-it would skip: it parses no block nested ``maxNesting`` (20)
    levels deep, silently, so a quote in 20 quotes (or a list item ten lists deep) was
    left untranslated with no word said. A quote or list item opened at the last level
    has its content there."""
    for t in tokens:
        if t.type in ("blockquote_open", "list_item_open") and t.level >= max_nesting - 1:
            line = (t.map[0] + 1) if t.map else "?"
            raise ValueError(
                f"Markdown nested too deeply at line {line}: at most {max_nesting - 1} levels "
                "of quotes and lists (a list counts two); deeper text would not be translated"
            )


# ---------------------------------------------------------------------------- lines


# ---------------------------------------------------------------------------- units


@dataclass
class _Block:
    """Where one unit sits: per source line (line number, start column, end column)."""

    kind: str  # "paragraph", "heading", "cell"
    lines: list[tuple[int, int, int]]
    inline: Token
    in_list: bool = False
    text: str = ""
    table: dict[str, str] = field(default_factory=dict)  # synthetic tag -> source
    pairs: dict[str, str] = field(default_factory=dict)  # open tag -> close tag


def _locate_paragraph(bodies: list[str], first: int, content: str) -> list[tuple[int, int, int]]:
    parts = content.split("\n")
    out = []
    for j, part in enumerate(parts):
        line = bodies[first + j].rstrip()
        part = part.strip()
        if not part or not line.endswith(part):
            return []
        out.append((first + j, len(line) - len(part), len(line)))
    return out


def _blocks(bodies: list[str], tokens: list[Token]) -> list[_Block]:
    """The units of a parsed document, in order, located in the source lines (a unit
    that cannot be located exactly is left as it is)."""
    out: list[_Block] = []
    cursor: dict[int, int] = {}  # table row line -> column where the next cell is looked for
    row_line = -1
    for i, tok in enumerate(tokens):
        if tok.type == "tr_open" and tok.map:
            row_line = tok.map[0]
        if tok.type != "inline" or not tok.content.strip() or i == 0:
            continue
        opener = tokens[i - 1]
        if opener.type == "paragraph_open" and opener.map:
            where = _locate_paragraph(bodies, opener.map[0], tok.content)
            in_list = i >= 2 and tokens[i - 2].type == "list_item_open"
            if where and len(where) == opener.map[1] - opener.map[0]:
                out.append(_Block("paragraph", where, tok, in_list))
        elif opener.type == "heading_open" and opener.map:
            a, b = opener.map
            if opener.markup in ("=", "-"):  # setext: the underline stays
                where = _locate_paragraph(bodies, a, tok.content)
                if where and len(where) == b - a - 1:
                    out.append(_Block("paragraph", where, tok))
                continue
            line = bodies[a]
            marker = len(line) - len(line.lstrip(" ")) + len(opener.markup)
            col = line.find(tok.content, marker)
            if col >= 0:
                out.append(_Block("heading", [(a, col, col + len(tok.content))], tok))
        elif opener.type in ("th_open", "td_open") and row_line >= 0:
            line = bodies[row_line]
            start = cursor.get(row_line, 0)
            for source in (tok.content, tok.content.replace("|", "\\|")):
                col = line.find(source, start)
                if col >= 0:
                    cursor[row_line] = col + len(source)
                    out.append(_Block("cell", [(row_line, col, col + len(source))], tok))
                    break
    for block in out:
        _inline_unit(block)
    return out


def _escape_xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _inline_unit(block: _Block) -> None:
    """The unit text of a block's inline token: synthetic tags for its syntax."""
    src = block.inline.content
    out: list[str] = []
    open_tags: list[str] = []
    n = 0
    children = block.inline.children or []
    skip_to = -1
    in_cell = block.kind == "cell"

    def void(name: str, source: str) -> None:
        nonlocal n
        n += 1
        tag = f"<{name}{n}/>"
        block.table[tag] = source.replace("|", "\\|") if in_cell else source
        out.append(tag)

    for k, child in enumerate(children):
        if k <= skip_to:
            continue
        kind = child.type
        recorded = child.meta.get(_SRC)
        if kind == "text":
            text = child.content
            if k == 0 and block.in_list and text.startswith(_TASK_BOXES):
                void("t", text[:4])
                text = text[4:]
            out.append(_escape_xml(text))
        elif kind == "softbreak":
            out.append(" ")
        elif kind == "hardbreak":
            void("br", "\n")
        elif kind == "code_inline" and recorded:
            void("c", src[recorded[0] : recorded[1]])
        elif kind == "image" and recorded:
            void("img", src[recorded[0] : recorded[1]])
        elif kind == "html_inline":
            void("h", child.content)
        elif kind == "link_open" and recorded and (child.markup == "autolink" or recorded[2] < 0):
            void("u", src[recorded[0] : recorded[1]])
            depth = 0
            for m in range(k, len(children)):  # the autolink's own text and close
                depth += children[m].nesting
                if depth == 0:
                    skip_to = m
                    break
        elif kind == "link_open" and recorded:
            n += 1
            tag = f"<a{n}>"
            close = src[recorded[2] : recorded[1]]
            if close in ("]", "][]"):  # the label is the reference: keep it as one
                close = "][" + src[recorded[0] + 1 : recorded[2]] + "]"
            block.table[tag] = src[recorded[0] : recorded[0] + 1]
            block.table[f"</a{n}>"] = close.replace("|", "\\|") if in_cell else close
            block.pairs[tag] = f"</a{n}>"
            open_tags.append(tag)
            out.append(tag)
        elif kind in ("em_open", "strong_open", "s_open"):
            n += 1
            tag = f"<{kind[:-5]}{n}>"
            block.table[tag] = block.table[f"</{tag[1:]}"] = child.markup
            block.pairs[tag] = f"</{tag[1:]}"
            open_tags.append(tag)
            out.append(tag)
        elif kind in ("link_close", "em_close", "strong_close", "s_close") and open_tags:
            out.append(block.pairs[open_tags.pop()])
        else:  # something this format does not know: its text, if any, as text
            out.append(_escape_xml(child.content))
    block.text = "".join(out)


# ---------------------------------------------------------------------------- rebuild


def _md_escape(text: str, in_cell: bool) -> str:
    """Model text as Markdown text: nothing in it may become syntax."""
    out: list[str] = []
    for i, ch in enumerate(text):
        before, after = text[i - 1 : i], text[i + 1 : i + 2]
        if ch in _MD_PUNCT or (ch == "|" and in_cell) or ch == "~":
            out.append("\\" + ch)
        elif ch == "_" and not (before.isalnum() and after.isalnum()):
            out.append("\\_")
        elif ch == "&" and _entity_like(text, i):
            out.append("&amp;")
        else:
            out.append(ch)
    return "".join(out)


def _entity_like(text: str, i: int) -> bool:
    j = i + 1 + (text[i + 1 : i + 2] == "#")
    k = j
    while k < len(text) and k - j < 32 and text[k].isalnum():
        k += 1
    return k > j and text[k : k + 1] == ";"


def _pieces(translated: str, table: dict[str, str]) -> list[tuple[str, str]]:
    """The translation as ("text", escaped-for-nothing text) and ("tag", synthetic tag)
    pieces; whitespace just inside a tag pair moves outside it (``* a*`` is no
    emphasis)."""
    pieces: list[tuple[str, str]] = []
    pos = 0
    while pos < len(translated):
        lt = translated.find("<", pos)
        gt = translated.find(">", lt) if lt >= 0 else -1
        if lt < 0 or gt < 0:
            pieces.append(("text", translated[pos:]))
            break
        if lt > pos:
            pieces.append(("text", translated[pos:lt]))
        tag = translated[lt : gt + 1]
        pieces.append(("tag", tag) if tag in table else ("text", tag))
        pos = gt + 1
    pieces = [
        (k, unescape(p, {"&quot;": '"', "&apos;": "'"}) if k == "text" else p) for k, p in pieces
    ]
    for i, (kind, tag) in enumerate(pieces):
        if kind != "tag" or tag.endswith("/>"):
            continue
        closing = tag.startswith("</")
        j, k = (i - 1, i + 1) if closing else (i + 1, i - 1)
        if not (0 <= j < len(pieces) and pieces[j][0] == "text"):
            continue
        inner = pieces[j][1]
        stripped = inner.rstrip() if closing else inner.lstrip()
        moved = inner[len(stripped) :] if closing else inner[: len(inner) - len(stripped)]
        if not moved:
            continue
        pieces[j] = ("text", stripped)
        if 0 <= k < len(pieces) and pieces[k][0] == "text":
            old = pieces[k][1]
            pieces[k] = ("text", moved + old if closing else old + moved)
        else:
            pieces.insert(k + 1 if closing else max(k + 1, 0), ("text", moved))
    return [p for p in pieces if p[1]]


def _words(
    pieces: list[tuple[str, str]],
    table: dict[str, str],
    in_cell: bool,
    protection: Protection | None = None,
) -> list[list[str]]:
    """Markdown words per hard-broken line: spaces in text are the only places a line may
    break, except inside a protected span (an ICU plural, a ``do_not_translate`` string:
    it must come out byte for byte, so it is one word); syntax sticks to the words it
    touches."""
    segments: list[list[str]] = [[""]]
    for kind, piece in pieces:
        if kind == "tag" and table[piece] == "\n":
            segments.append([""])
            continue
        words = segments[-1]
        if kind == "tag":
            words[-1] += table[piece]
            continue
        glue = glue_for(piece)  # put back per part: a tag's source may hold its characters
        for j, part in enumerate(glue_spans(piece, glue, protection).split(" ")):
            if j:
                words.append("")
            words[-1] += unglue(_md_escape(part, in_cell), glue)
    return [[w for w in words if w] for words in segments]


@functools.lru_cache(maxsize=4096)
def _starts_block(word: str, first: bool) -> bool:
    """Whether a line starting with ``word`` would be something other than paragraph
    text (a list item, heading, quote, fence, table, HTML block, setext underline...),
    as the line after paragraph text (or, ``first``, as a paragraph's first line)."""
    md = parser()
    lead = "" if first else "x\n"
    for line in (word, word + " x"):
        tokens = md.parse(lead + line)
        types = [t.type for t in tokens]
        if types != ["paragraph_open", "inline", "paragraph_close"]:
            return True
        if tokens[1].content != (lead + line).strip():
            return True
    return False


def _escape_start(word: str) -> str:
    """``word`` made safe at a paragraph's start: its leading mark escaped."""
    if word[:1] in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~":
        return "\\" + word
    i = 0
    while i < len(word) and word[i].isdigit():
        i += 1
    if i and word[i : i + 1] in (".", ")"):
        return word[:i] + "\\" + word[i:]
    return word


def _fill(words: list[str], width: int, first_width: int) -> list[str]:
    """Greedy filling; never a break before a word that would start a block."""
    lines: list[str] = []
    current = ""
    for word in words:
        limit = first_width if not lines else width
        if current and len(current) + 1 + len(word) > limit and not _starts_block(word, False):
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current or not lines:
        lines.append(current)
    return lines


def _render(
    block: _Block,
    translated: str,
    bodies: list[str],
    eol: str,
    protection: Protection | None = None,
) -> str:
    """The new text of a block's source range (first column of its first line to the
    last column of its last line). ``protection``: the job's, when known, so its
    ``do_not_translate`` strings and glossary terms are never broken across lines
    (without it, only the built-in span kinds are found)."""
    in_cell = block.kind == "cell"
    segments = _words(_pieces(translated, block.table), block.table, in_cell, protection)
    if segments and segments[0] and _starts_block(segments[0][0], True):
        segments[0][0] = _escape_start(segments[0][0])
    if len(block.lines) == 1:
        return " ".join(w for words in segments for w in words)
    first_line, first_col, _ = block.lines[0]
    second_line, second_col, _ = block.lines[1]
    prefix = bodies[second_line][:second_col]
    width = max(len(bodies[ln].rstrip()) for ln, _, _ in block.lines)
    width = max(width, len(prefix) + 20)
    hard = (
        "\\" if any(bodies[ln].rstrip().endswith("\\") for ln, _, _ in block.lines[:-1]) else "  "
    )
    out: list[str] = []
    for s, words in enumerate(segments):
        first_width = width - (first_col if not out else len(prefix))
        lines = _fill(words, width - len(prefix), first_width)
        if s < len(segments) - 1:
            lines[-1] += hard
        out.extend(lines)
    return (eol + prefix).join(out)


class Markdown:
    name = "markdown"
    extensions = (".md", ".markdown")
    media_type = "text/markdown"
    binary = False
    markup = "xml"

    def _read(self, data: bytes) -> tuple[str, str, list[tuple[str, str]], list[_Block]]:
        bom, text = decode_utf8(data, "Markdown")
        lines = _split_lines(text)
        bodies = [b for b, _ in lines]
        md = parser()
        tokens = md.parse("\n".join(bodies))
        _check_nesting(tokens, md.options.maxNesting)
        return bom, text, lines, _blocks(bodies, tokens)

    def extract(self, data: bytes) -> list[Unit]:
        *_, blocks = self._read(data)
        return [Unit(b.text, str(i)) for i, b in enumerate(blocks)]

    def rebuild(self, data: bytes, translations: list[str], options: Options) -> bytes:
        bom, text, lines, blocks = self._read(data)
        if len(translations) != len(blocks):
            raise ValueError(f"{len(translations)} translations for {len(blocks)} units")
        starts = [0]
        for body, eol in lines:
            starts.append(starts[-1] + len(body) + len(eol))
        bodies = [b for b, _ in lines]
        out: list[str] = [bom]
        pos = 0
        protection = options.extra.get("protection")  # the job's, where the caller set it
        for block, translated in zip(blocks, translations, strict=True):
            if translated == block.text:
                continue
            (a, col, _), (b, _, end) = block.lines[0], block.lines[-1]
            eol = lines[a][1] or "\n"
            out.append(text[pos : starts[a] + col])
            out.append(_render(block, translated, bodies, eol, protection))
            pos = starts[b] + end
        out.append(text[pos:])
        return "".join(out).encode("utf-8")


FORMAT = Markdown()
