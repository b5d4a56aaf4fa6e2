"""Inline markup (``format: "html" | "xml"``): translate the text, keep the markup.

Three parts:

- ``plan_markup(text, fmt, target_words, lang)`` parses a document (lxml.html for HTML,
  whole documents and fragments; lxml.etree for XML), and cuts it into chunks whose
  ``Layout`` literal pieces are the markup skeleton and whose segments are the inline
  content of each text block (``<p>``, ``<li>``, ``<td>``, ``<h1>``, a ``<div>`` with text,
  ``<title>``, ...) split into sentences, plus the values of ``alt``/``title``
  attributes. ``"".join(chunks)`` is the serialized document and every chunk's
  ``layout.source() == chunk``; chunks are cut only between blocks.
- ``tag_spans(segment, fmt)`` finds a segment's inline tags with html.parser's tokenizer
  (its own event positions; no regex looks for tags), so that
  ``control_plane.text.protect`` masks them, checks that the model kept every tag once
  and paired tags nested, and restores them byte for byte.
- ``compare_structure(source_doc, translated_doc, fmt)`` is the check the tests and the
  benchmark use: the translation parses and has the same elements and attributes per
  text block (inline tags may move within their block).

What is not translated: ``<code>``, ``<pre>``, ``<kbd>``, ``<samp>``, ``<var>``,
``<script>``, ``<style>``, ``<textarea>``, ``<svg>``, ``<math>``, ``<template>`` (HTML),
DocBook's verbatim and command-like elements (XML), anything with ``translate="no"``
(also ``its:translate``) or ``class="notranslate"``, comments, processing instructions,
the doctype and every attribute other than ``alt`` and ``title``.

How blocks are found. HTML: an element of ``HTML_INLINE`` whose descendants are all
inline is part of the running text around it; anything else is a block whose direct
text (between its block children) forms runs of inline content. An image (or other void
element) with ``alt``/``title`` inside running text cuts the text there, so that its
attribute can be a segment of its own; ``title`` on a non-void inline element (``<abbr
title>``, ``<a title>``) stays as it is, since translating it would cut the sentence in
three. XML has no inline vocabulary: an element whose direct content has text is a
block and all its children are inline; an element with only elements in it is a
container.

Sentences. A run is split with ``chunking.sentence_spans`` on its tag-free text. Two
sentences are cut apart only where no paired inline tag is open between them
(``<b>One. Two.</b>`` stays one segment); the tags that close a sentence go with it and
the tags that open the next go with the next. What the model need not see stays outside
the segment, as literal pieces: a tag pair around the whole segment, elements without
letters and void tags at either end, and symbols such as ``&amp;`` at either end (fewer
mask tokens, fewer fallbacks; code at either end stays, being part of the sentence).

Chunks. A chunk may end only before a block-level element (``<p>``, a nested ``<ul>``,
an XML child of an element-only container), never inside a run of text or a tag; a
block bigger than ``target_words`` is one chunk.

Normalization (what lxml changes; the serialized document is the source the Layout
reproduces): HTML entities become characters except ``&amp;`` ``&lt;`` ``&gt;`` (and
``&quot;`` in attributes), XML's predefined ones too while references to entities the
document declares (``&product;``) stay as they are, never expanded; every attribute
value is written in double quotes (boolean HTML attributes as ``checked="checked"``);
HTML ``href``/``src`` values are written exactly as parsed (not URI-escaped as libxml2
would); CDATA sections become escaped text; whitespace between top-level nodes of an
XML document may go; an XML declaration becomes ``<?xml version="1.0"
encoding="UTF-8"?>``. Every tag, attribute name and attribute value is kept.

Positions. The skeleton comes from lxml's serializer with ASCII markers written into
text nodes (where a run begins and ends, where a chunk may be cut) and in place of every
attribute value; the markers are then read back out of the string. A marker is
``Qmtb<n>z`` with the smallest ``n`` absent from the document's serialization without
markers, and no proper prefix of it is a suffix, so no occurrence in the marked
serialization can straddle a marker: every occurrence is one.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser, attrfind_tolerant, locatestarttagend_tolerant

import lxml.html
from lxml import etree

from control_plane.text.chunking import (
    MAX_SEGMENT_CHARS,
    Budget,
    Layout,
    count_words,
    sentence_spans,
)
from control_plane.text.spans import Span, has_text

FORMATS = ("html", "xml")
TRANSLATABLE_ATTRS = frozenset({"alt", "title"})
HTML_VOID = frozenset(
    "area base br col embed hr img input keygen link meta param source track wbr".split()
)
HTML_INLINE = frozenset(
    "a abbr acronym b bdi bdo big br button cite code data del dfn em font i img input ins "
    "kbd label mark q rb rp rt ruby s samp script small span strike strong style sub sup "
    "svg math textarea time tt u var wbr".split()
)
SKIP_HTML = frozenset("code pre kbd samp var script style textarea svg math template".split())
SKIP_XML = frozenset(
    "code pre script style programlisting screen synopsis literallayout literal "
    "computeroutput userinput command filename varname function envar".split()
)
# Attributes of one element. libxml2's HTML parser checks each new attribute against all
# the element's others, and so does lxml's ``set`` (used to mark every value): quadratic in
# one element's attributes (one <p> with 24,000 took 1.3 s to parse, 50,000 planned in 64 s).
# Real markup has a few per element; 256 keeps the worst 8 MiB document linear.
MAX_ATTRIBUTES = 256
_LONG_TAG = 2 * MAX_ATTRIBUTES  # a start tag shorter than this cannot hold that many
_BREAK_TO_SPACE = str.maketrans(dict.fromkeys("\n\r\t\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029", " "))


# ---------------------------------------------------------------------------- escaping


def escape_text(text: str) -> str:
    """``text`` as the content of an element."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_attr(value: str) -> str:
    """``value`` inside a double-quoted attribute (line breaks kept as references)."""
    return (
        escape_text(value)
        .replace('"', "&quot;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
        .replace("\t", "&#9;")
    )


def escape_output(text: str) -> str:
    """Model output placed into markup: valid both as element text and inside a
    double-quoted attribute (protect does not know which a segment is), so a stray
    ``&``, ``<`` or ``"`` from the model cannot break the document."""
    return escape_text(text).replace('"', "&quot;")


# ---------------------------------------------------------------------------- tag spans


@dataclass
class _Token:
    start: int
    end: int
    kind: str  # "open", "close", "void", "other" (entity, comment, declaration, PI)
    name: str = ""
    skip: bool = False  # an open tag whose whole element is left untranslated


class _Tokenizer(HTMLParser):
    """html.parser's tokenizer, recording where each tag, reference, comment and
    declaration starts and ends in the input (``getpos`` is at the token's start when
    its ``parse_*`` method is called; the method returns the token's end)."""

    def __init__(self, text: str, fmt: str):
        super().__init__(convert_charrefs=False)
        self.text = text
        self.fmt = fmt
        self.tokens: list[_Token] = []
        self._line_starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
        self._inside = 0  # parse_* methods call each other: record the outer one only
        self._self_closing = False
        self._attrs: list[tuple[str, str | None]] = []

    def _at(self) -> int:
        line, col = self.getpos()
        return self._line_starts[line - 1] + col

    def _record(self, method, i: int, kind: str) -> int:  # noqa: ANN001 - a bound parse_*
        start = self._at()
        self._inside += 1
        try:
            k = method(i)
        finally:
            self._inside -= 1
        if k >= 0 and self._inside == 0:
            self.tokens.append(_Token(start, start + k - i, kind))
        return k

    def parse_starttag(self, i: int) -> int:
        start = self._at()
        self._self_closing = False
        k = super().parse_starttag(i)
        if k >= 0:
            raw = self.text[start : start + k - i]
            name = _raw_name(raw[1:], self.fmt)
            void = self._self_closing or (self.fmt == "html" and name in HTML_VOID)
            skip = _skipped(name, dict(self._attrs), self.fmt)
            self.tokens.append(_Token(start, start + k - i, "void" if void else "open", name, skip))
        return k

    def parse_endtag(self, i: int) -> int:
        start = self._at()
        k = super().parse_endtag(i)
        if k >= 0:
            raw = self.text[start : start + k - i]
            self.tokens.append(_Token(start, start + k - i, "close", _raw_name(raw[2:], self.fmt)))
        return k

    def parse_comment(self, i: int, report: bool = True) -> int:
        return self._record(lambda j: super(_Tokenizer, self).parse_comment(j, report), i, "other")

    def parse_pi(self, i: int) -> int:
        return self._record(super().parse_pi, i, "other")

    def parse_html_declaration(self, i: int) -> int:
        pos = self.getpos()
        try:
            return self._record(super().parse_html_declaration, i, "other")
        except AssertionError:
            # _markupbase asserts a known keyword after "<![" ("Type <![ then >" is prose,
            # not a marked section); the exception failed the whole worker batch the segment
            # was in. Consumed without a token, "<![" stays translatable text and the
            # tokenizer goes on after it. _scan_name moved the position before raising: put
            # it back, or every later token's offset would be off.
            self.lineno, self.offset = pos
            return i + (3 if self.rawdata.startswith("<![", i) else 2)

    def parse_bogus_comment(self, i: int, report: bool = True) -> int:
        call = super().parse_bogus_comment
        return self._record(lambda j: call(j, report), i, "other")

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self._attrs = attrs

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self._attrs = attrs
        self._self_closing = True

    def handle_entityref(self, name: str) -> None:
        self._reference(name, 1)

    def handle_charref(self, name: str) -> None:
        self._reference(name, 2)

    def _reference(self, name: str, lead: int) -> None:
        start = self._at()
        end = start + lead + len(name)
        end += self.text[end : end + 1] == ";"
        self.tokens.append(_Token(start, end, "other"))


def _raw_name(after_bracket: str, fmt: str) -> str:
    """The element name at the start of a tag's text after ``<`` or ``</`` (case kept for
    XML, lowercased for HTML, as html.parser reports it)."""
    end = len(after_bracket)
    for i, ch in enumerate(after_bracket):
        if ch.isspace() or ch in "/>":
            end = i
            break
    name = after_bracket[:end]
    return name.lower() if fmt == "html" else name


def _skipped(name: str, attrs: dict[str, str | None], fmt: str) -> bool:
    """Whether an element is left untranslated (its name, ``translate="no"``, the
    ``notranslate`` class)."""
    local = name.rsplit(":", 1)[-1].lower()
    if local in (SKIP_HTML if fmt == "html" else SKIP_XML):
        return True
    for key, value in attrs.items():
        key_local = key.rsplit(":", 1)[-1].rsplit("}", 1)[-1].lower()
        if key_local == "translate" and (value or "").strip().lower() == "no":
            return True
        if key_local == "class" and "notranslate" in (value or "").split():
            return True
    return False


def tag_spans(segment: str, fmt: str) -> list[Span]:
    """The inline tags of one markup segment, in order, for protect to mask.

    Paired tags get role "open"/"close" and their element's name (protect checks that
    they stay nested); void and self-closing tags, entity and character references,
    comments and tags without a partner in the segment get role ""; an untranslated
    element (``<code>``, ``translate="no"``, ...) is one span from its open tag to its
    close tag. Every span's output is its source text, byte for byte."""
    tokenizer = _Tokenizer(segment, fmt)
    tokenizer.feed(segment)
    tokenizer.close()
    return _pair(segment, tokenizer.tokens)


def _pair(text: str, tokens: list[_Token]) -> list[Span]:
    """Spans from tokens: paired open/close tags, whole skipped elements, the rest
    role ""."""
    roles: dict[int, str] = {}  # token index -> "open" / "close" for matched pairs
    skip_end: dict[int, int] = {}  # token index of a skipped element's open -> its close
    stack: list[int] = []
    for i, tok in enumerate(tokens):
        if tok.kind == "open":
            stack.append(i)
        elif tok.kind == "close":
            depth = next(
                (d for d in range(len(stack) - 1, -1, -1) if tokens[stack[d]].name == tok.name),
                None,
            )
            if depth is None:
                continue  # a close tag without its open tag: role ""
            opener = stack[depth]
            del stack[depth:]  # opens left unclosed inside it stay role ""
            roles[opener], roles[i] = "open", "close"
            if tokens[opener].skip:
                skip_end[opener] = i
    spans: list[Span] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if i in skip_end:
            end = tokens[skip_end[i]].end
            spans.append(Span(tok.start, end, "tag", text[tok.start : end]))
            i = skip_end[i] + 1
            continue
        role = roles.get(i, "")
        name = tok.name if role else ""
        spans.append(Span(tok.start, tok.end, "tag", text[tok.start : tok.end], role, name))
        i += 1
    return spans


# ---------------------------------------------------------------------------- parsing


@dataclass
class _Doc:
    """A parsed document: ``root`` is the element to walk; for a fragment it is a
    wrapper whose own tags are not part of the serialized text."""

    root: etree._Element
    fmt: str
    fragment: bool
    declaration: str = ""
    doctype: bool = True  # HTML: the source has one (libxml2 adds HTML 4.0's otherwise)


_FRAGMENT_TAG = "mtb-fragment"


def _is_whole_html(text: str) -> bool:
    head = text.lstrip("\ufeff \t\r\n")[:4096].lower()
    return head.startswith(("<!doctype", "<?xml")) or "<html" in head


def _parse(text: str, fmt: str) -> _Doc:
    """Parse ``text`` as an HTML document or fragment, or as XML (a fragment of several
    elements or with text around them is wrapped). Raises ValueError when it does not
    parse (XML) or holds nothing."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown markup format {fmt!r}")
    if fmt == "html":
        _check_html_attributes(text)
        doc = _parse_html(text)
    else:
        doc = _parse_xml(text)
    for el in doc.root.iter():
        if len(el.attrib) > MAX_ATTRIBUTES:  # comments and PIs have an empty attrib
            raise ValueError(_too_many(_local(str(el.tag)), len(el.attrib)))
    return doc


def _too_many(name: str, count: int) -> str:
    return f"<{name}> has {count:,} attributes; at most {MAX_ATTRIBUTES} per element"


def _check_html_attributes(text: str) -> None:
    """Refuse an element with too many attributes before libxml2 parses it (its cost is
    quadratic in them). Tags are found as html.parser reads them (quotes only after
    ``=``, as browsers and libxml2 do), in C by one regex scan; only a tag long enough to
    hold that many attributes has them counted."""
    for m in locatestarttagend_tolerant.finditer(text):
        if m.end() - m.start() > _LONG_TAG:
            tag = m.group()
            name = re.match(r"<([^\s/>]*)", tag)
            assert name is not None  # the regex's own start
            count = sum(1 for _ in attrfind_tolerant.finditer(tag, name.end()))
            if count > MAX_ATTRIBUTES:
                raise ValueError(_too_many(name.group(1), count))


def _parse_html(text: str) -> _Doc:
    """libxml2 parses any HTML, but past 256 levels of nesting it drops the rest of the
    document with only a logged error: that is refused here, not translated short."""
    whole = _is_whole_html(text)
    parser = lxml.html.HTMLParser(encoding="utf-8" if whole else None)
    try:
        if whole:
            data = text.encode("utf-8", "surrogatepass")
            root = lxml.html.document_fromstring(data, parser)
        else:
            root = lxml.html.fragment_fromstring(text, create_parent="div", parser=parser)
    except (etree.ParserError, etree.XMLSyntaxError) as exc:
        raise ValueError(f"HTML does not parse: {exc}") from exc
    fatal = [e for e in parser.error_log if e.level >= etree.ErrorLevels.FATAL]
    if fatal:
        raise ValueError(f"HTML does not parse: {fatal[0].message}")
    head = text[: max(0, text.lower().find("<html")) or 4096].lower()
    return _Doc(root, "html", fragment=not whole, doctype="<!doctype" in head)


def _xml_parser() -> etree.XMLParser:
    # no entity expansion, no DTD, no network: XML bombs and external entities stay inert
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        strip_cdata=False,
        remove_blank_text=False,
        encoding="utf-8",
    )


def _parse_xml(text: str) -> _Doc:
    data = text.lstrip("\ufeff")
    declaration = ""
    if data.startswith("<?xml"):
        declaration = '<?xml version="1.0" encoding="UTF-8"?>\n'
    try:
        root = etree.fromstring(data.encode("utf-8", "surrogatepass"), _xml_parser())
        return _Doc(root, "xml", fragment=False, declaration=declaration)
    except etree.XMLSyntaxError as exc:
        if declaration:
            raise ValueError(f"XML does not parse: {exc}") from exc
        first = exc
    try:
        wrapped = f"<{_FRAGMENT_TAG}>{data}</{_FRAGMENT_TAG}>"
        root = etree.fromstring(wrapped.encode("utf-8", "surrogatepass"), _xml_parser())
    except etree.XMLSyntaxError:
        raise ValueError(f"XML does not parse: {first}") from first
    return _Doc(root, "xml", fragment=True)


def _serialize(doc: _Doc) -> str:
    if doc.fmt == "html":
        if not doc.fragment:
            out = lxml.html.tostring(doc.root.getroottree(), encoding="unicode")
            if not doc.doctype and out.startswith("<!DOCTYPE"):
                # libxml2 gives a page without one HTML 4.0 Transitional's, which takes
                # browsers out of quirks mode: the page would render differently
                out = out[out.find(">") + 1 :].removeprefix("\n")
            return out
        out = lxml.html.tostring(doc.root, encoding="unicode")
        return out[len("<div>") : -len("</div>")]
    if not doc.fragment:
        return doc.declaration + etree.tostring(doc.root.getroottree(), encoding="unicode")
    out = etree.tostring(doc.root, encoding="unicode")
    if out.endswith("/>"):
        return ""
    return out[len(_FRAGMENT_TAG) + 2 : -len(_FRAGMENT_TAG) - 3]


# ---------------------------------------------------------------------------- block rules


def _is_element(node: etree._Element) -> bool:
    return isinstance(node.tag, str)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


@dataclass
class _Rules:
    """Which elements are blocks, inline, or left untranslated (shared by the planner
    and the structure check, so both see the same blocks)."""

    fmt: str
    _atoms: dict = field(default_factory=dict)  # element -> bool (keys keep proxies alive)

    def name(self, el: etree._Element) -> str:
        local = _local(el.tag)
        return local.lower() if self.fmt == "html" else local

    def skipped(self, el: etree._Element) -> bool:
        return _is_element(el) and _skipped(self.name(el), dict(el.attrib), self.fmt)

    def is_block(self, el: etree._Element) -> bool:
        """A chunk may be cut before this child of a container."""
        if not _is_element(el):
            return False
        return self.fmt == "xml" or self.name(el) not in HTML_INLINE

    def has_translatable_attr(self, el: etree._Element) -> bool:
        return any(_local(k).lower() in TRANSLATABLE_ATTRS for k in el.attrib)

    def inline_children(self, el: etree._Element) -> list[bool]:
        """For each child: part of the running text (True) or a block of its own."""
        if self.fmt == "xml":
            return [_mixed(el)] * len(el)
        return [self._atom(k) for k in el]

    def _atom(self, el: etree._Element) -> bool:
        known = self._atoms.get(el)
        if known is not None:
            return known
        if not _is_element(el):
            result = True  # comments, processing instructions
        elif self.skipped(el):
            result = self.name(el) in HTML_INLINE
        else:
            name = self.name(el)
            result = (
                name in HTML_INLINE
                and not (name in HTML_VOID and self.has_translatable_attr(el))
                and all(self._atom(k) for k in el)
            )
        self._atoms[el] = result
        return result


def _is_entity(node: etree._Element) -> bool:
    return node.tag is etree.Entity


def _mixed(el: etree._Element) -> bool:
    """XML: the element's own content has text (so all its children are inline)."""
    if el.text and el.text.strip():
        return True
    return any((k.tail and k.tail.strip()) or _is_entity(k) for k in el)


# ---------------------------------------------------------------------------- planning


class _Marker:
    """The ASCII markers written into the tree before serialization."""

    def __init__(self, text: str):
        n = 0
        while f"Qmtb{n}z" in text:
            n += 1
        self.prefix = f"Qmtb{n}z"
        self.begin, self.end, self.cut = self.prefix + "B", self.prefix + "E", self.prefix + "C"
        self.pattern = re.compile(re.escape(self.prefix) + r"(?:([BEC])|A(\d+)\.)")

    def attr(self, index: int) -> str:
        return f"{self.prefix}A{index}."


@dataclass
class _Attr:
    value: str
    translatable: bool


class _Marking:
    """Writes the markers into a parsed tree: where each run of inline content begins
    and ends, where a chunk may be cut, and in place of every attribute value."""

    def __init__(self, doc: _Doc, marker: _Marker):
        self.rules = _Rules(doc.fmt)
        self.marker = marker
        self.attrs: list[_Attr] = []

    def attributes(self, el: etree._Element, translatable: bool) -> None:
        for key, value in el.attrib.items():
            ok = translatable and _local(key).lower() in TRANSLATABLE_ATTRS
            self.attrs.append(_Attr(value, ok))
            el.set(key, self.marker.attr(len(self.attrs) - 1))

    def literal_subtree(self, el: etree._Element) -> None:
        for node in el.iter():
            if _is_element(node):
                self.attributes(node, translatable=False)

    def container(self, el: etree._Element) -> None:
        """A block: its attributes (alt/title translatable), runs of its inline content
        between block children, and its block children, recursively. Everything is
        classified before any attribute is replaced by its marker."""
        kids = list(el)
        inline_flags = self.rules.inline_children(el)
        skipped = [self.rules.skipped(k) for k in kids]
        self.attributes(el, translatable=True)
        first: tuple[etree._Element, str] = (el, "text")
        last = first
        content = bool(el.text and el.text.strip())
        for kid, inline, skip in zip(kids, inline_flags, skipped, strict=True):
            if inline:
                if _is_element(kid):
                    self.literal_subtree(kid)
                content = True
                last = (kid, "tail")
                continue
            if content:
                _prepend(first, self.marker.begin)
                _append(last, self.marker.end)
            if self.rules.is_block(kid):
                _append(last, self.marker.cut)
            if skip:
                self.literal_subtree(kid)
            elif _is_element(kid):
                self.container(kid)
            first = last = (kid, "tail")
            content = bool(kid.tail and kid.tail.strip())
        if content:
            _prepend(first, self.marker.begin)
            _append(last, self.marker.end)


def _get(slot: tuple[etree._Element, str]) -> str:
    node, which = slot
    return (node.text if which == "text" else node.tail) or ""


def _set(slot: tuple[etree._Element, str], value: str) -> None:
    node, which = slot
    if which == "text":
        node.text = value
    else:
        node.tail = value


def _prepend(slot: tuple[etree._Element, str], marker: str) -> None:
    _set(slot, marker + _get(slot))


def _append(slot: tuple[etree._Element, str], marker: str) -> None:
    _set(slot, _get(slot) + marker)


@dataclass
class _Unit:
    """Pieces between two places where a chunk may be cut, and their word count."""

    pieces: list[tuple[bool, str]] = field(default_factory=list)
    words: int = 0


class _Reader:
    """Reads the marked serialization back into units of (is_segment, text) pieces."""

    def __init__(self, fmt: str, lang: str, attrs: list[_Attr]):
        self.fmt = fmt
        self.lang = lang
        self.attrs = attrs
        self.budget = Budget()
        self.units: list[_Unit] = [_Unit()]

    def add(self, is_seg: bool, text: str, words: int = 0) -> None:
        if text:
            self.units[-1].pieces.append((is_seg, text))
            self.units[-1].words += words

    def read(self, marked: str, marker: _Marker) -> list[_Unit]:
        pos = 0
        run: list[str] | None = None  # the run being read, None outside runs
        for m in marker.pattern.finditer(marked):
            before = marked[pos : m.start()]
            pos = m.end()
            code, index = m.group(1), m.group(2)
            if run is not None:
                run.append(before)
            else:
                self.add(False, before)
            if index is not None:
                self.attribute(self.attrs[int(index)], run)
            elif code == "B":
                run = []
            elif code == "E":
                self.run("".join(run or ()))
                run = None
            else:
                self.units.append(_Unit())
        self.add(False, marked[pos:])
        return [u for u in self.units if u.pieces]

    def attribute(self, attr: _Attr, run: list[str] | None) -> None:
        text = escape_attr(attr.value)
        if run is not None:
            run.append(text)
        elif attr.translatable and has_text(attr.value):
            self.add(True, text, count_words(attr.value))
        else:
            self.add(False, text)

    def run(self, text: str) -> None:
        for is_seg, piece, words in split_run(text, self.fmt, self.lang, self.budget):
            self.add(is_seg, piece, words)


def split_run(
    text: str, fmt: str, lang: str, budget: Budget | None = None
) -> list[tuple[bool, str, int]]:
    """A run of inline markup as (is_segment, text, words) pieces: one segment per
    sentence, except that sentences are kept together where a paired tag is open across
    the boundary between them (up to ``MAX_SEGMENT_CHARS`` of text); whitespace around
    segments and pieces without letters are literal."""
    spans = tag_spans(text, fmt)
    plain, starts, ends = _plain(text, spans)
    sentences = sentence_spans(plain.translate(_BREAK_TO_SPACE), lang, budget)
    if not sentences:
        return [(False, text, 0)]
    zero = _depth_zero(text, spans)
    cuts: list[tuple[int, int]] = []  # (end of one segment, start of the next) in text
    groups: list[tuple[int, int]] = [sentences[0]]  # plain (start, end) of each segment
    for (_, prev_end), (start, end) in zip(sentences, sentences[1:], strict=False):
        lo, hi = ends[prev_end - 1], starts[start]
        free = [p for p in range(lo, hi + 1) if zero[p]]
        if free:
            cuts.append((free[0], free[-1]))
            groups.append((start, end))
        elif end - groups[-1][0] > MAX_SEGMENT_CHARS:
            # a tag open across many sentences (a paragraph in <b>, a long <g> in XLIFF)
            # kept them all in one segment: 255 KB in one, which the engine then cut at
            # arbitrary word starts. Cut between the sentences anyway; the tags on either
            # side are spans without a partner there, still kept byte for byte.
            cuts.append((lo, hi))
            groups.append((start, end))
        else:
            groups[-1] = (groups[-1][0], end)
    bounds = [0, *(c for cut in cuts for c in cut), len(text)]
    out: list[tuple[bool, str, int]] = []
    for i, (s, e) in enumerate(groups):
        if i:
            out.append((False, text[bounds[2 * i - 1] : bounds[2 * i]], 0))
        piece = text[bounds[2 * i] : bounds[2 * i + 1]]
        out.extend(_trimmed(piece, plain[s:e], fmt))
    return [p for p in out if p[1]]


def _trimmed(piece: str, plain: str, fmt: str) -> list[tuple[bool, str, int]]:
    """A segment with what surrounds its text as literal pieces (``_peel``); literal
    altogether when it has no letters outside its tags."""
    if not piece.strip() or not has_text(plain):
        return [(False, piece, 0)]
    lo, hi = _peel(piece, tag_spans(piece, fmt))
    return [
        (False, piece[:lo], 0),
        (True, piece[lo:hi], count_words(plain)),
        (False, piece[hi:], 0),
    ]


def _peel(piece: str, spans: list[Span]) -> tuple[int, int]:
    """Where a segment's text begins and ends once what the model need not see is left
    outside: surrounding whitespace, a tag pair around the whole segment
    (``<a href>Assertion testing</a>``), elements without letters at either end
    (``<a name="x"></a>``, a heading's ``<a href="#x">#</a>``), void tags and comments
    at either end, and references at either end that are not glued to a word. Every mask
    token the model need not carry is one it cannot lose (measured: most fallbacks on
    real pages were such segments). Code at either end stays: it is part of the
    sentence."""
    partner = _partners(spans)
    lo, hi, i, j = 0, len(piece), 0, len(spans) - 1
    while True:
        lo, hi = _skip_space(piece, lo, hi)
        if i <= j and spans[i].start == lo:
            k = partner.get(i)
            if k == j and spans[j].end == hi:  # a wrapper: <a href>...</a>
                lo, hi, i, j = spans[i].end, spans[j].start, i + 1, j - 1
                continue
            if k is not None and not _letters_between(piece, spans, i, k):
                lo, i = spans[k].end, k + 1
                continue
            if k is None and _edge_span(piece, spans[i], lo, hi, leading=True):
                lo, i = spans[i].end, i + 1
                continue
        if i <= j and spans[j].end == hi:
            k = partner.get(j)
            if k is not None and not _letters_between(piece, spans, k, j):
                hi, j = spans[k].start, k - 1
                continue
            if k is None and _edge_span(piece, spans[j], lo, hi, leading=False):
                hi, j = spans[j].start, j - 1
                continue
        return lo, hi


def _skip_space(text: str, lo: int, hi: int) -> tuple[int, int]:
    while lo < hi and text[lo].isspace():
        lo += 1
    while hi > lo and text[hi - 1].isspace():
        hi -= 1
    return lo, hi


def _partners(spans: list[Span]) -> dict[int, int]:
    """Index of each paired tag span's partner (both ways)."""
    partner: dict[int, int] = {}
    stack: list[int] = []
    for i, span in enumerate(spans):
        if span.role == "open":
            stack.append(i)
        elif span.role == "close" and stack:
            k = stack.pop()
            partner[i], partner[k] = k, i
    return partner


def _letters_between(text: str, spans: list[Span], first: int, last: int) -> bool:
    """Whether the text between spans[first] and spans[last], tags aside, has a letter."""
    pos = spans[first].end
    for span in spans[first + 1 : last + 1]:
        if has_text(text[pos : span.start]):
            return True
        pos = max(pos, span.end)
    return False


def _edge_span(text: str, span: Span, lo: int, hi: int, leading: bool) -> bool:
    """A role "" span at the edge of a segment that may go outside it: a void tag or a
    comment, or a reference to something other than a letter or a word (``&amp;``, not
    ``&eacute;`` or an XML entity such as ``&product;``) that is not glued to a word."""
    if _is_element_span(span.output):
        return False  # code and other untranslated elements are part of the sentence
    if not span.output.startswith("&"):
        return True
    if has_text(html.unescape(span.output)):
        return False
    beside = text[span.end : span.end + 1] if leading else text[span.start - 1 : span.start]
    return (span.end == hi if leading else span.start == lo) or not beside.isalnum()


def _plain(text: str, spans: list[Span]) -> tuple[str, list[int], list[int]]:
    """The tag-free text of a run and, per character of it, where it starts and ends in
    the run. Paired tags vanish; a reference becomes its character; any other span (void
    tag, comment, untranslated element) becomes one space or "0"."""
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    pos = 0
    for span in [*spans, Span(len(text), len(text), "tag", "")]:
        for j in range(pos, span.start):
            chars.append(text[j])
            starts.append(j)
            ends.append(j + 1)
        pos = span.end
        if span.role or span.start == span.end:
            continue
        source = text[span.start : span.end]
        if source.startswith("&"):
            filler = html.unescape(source)
        elif source.startswith("<") and _is_element_span(source):
            filler = "0"
        else:
            filler = " "
        for ch in filler:
            chars.append(ch)
            starts.append(span.start)
            ends.append(span.end)
    return "".join(chars), starts, ends


def _is_element_span(source: str) -> bool:
    """A span that is a whole untranslated element (``<code>x</code>``), not a void tag
    or a comment."""
    return not source.startswith(("<!", "<?")) and source.endswith(">") and "</" in source


def _depth_zero(text: str, spans: list[Span]) -> list[bool]:
    """For each position 0..len(text): no paired tag open there and not inside a span
    (where a segment may end or begin)."""
    zero = [True] * (len(text) + 1)
    depth = 0
    pos = 0
    for span in spans:
        for p in range(pos, span.start + 1):
            zero[p] = depth == 0
        for p in range(span.start + 1, span.end):
            zero[p] = False
        if span.role == "open":
            depth += 1
        elif span.role == "close":
            depth -= 1
        pos = span.end
    for p in range(pos, len(text) + 1):
        zero[p] = depth == 0
    return zero


def _group(units: list[_Unit], target_words: int) -> list[list[_Unit]]:
    """Units into chunks of about ``target_words`` words (a unit is never cut)."""
    chunks: list[list[_Unit]] = []
    cur: list[_Unit] = []
    words = 0
    for unit in units:
        if cur and words + unit.words > target_words * 1.2:
            chunks.append(cur)
            cur, words = [], 0
        cur.append(unit)
        words += unit.words
        if words >= target_words:
            chunks.append(cur)
            cur, words = [], 0
    if cur:
        if chunks and words == 0:
            chunks[-1].extend(cur)  # trailing markup without text goes with the last chunk
        else:
            chunks.append(cur)
    return chunks


def _layout(units: list[_Unit]) -> Layout:
    """One chunk's Layout, adjacent literal pieces joined."""
    pieces: list[tuple[bool, str]] = []
    for unit in units:
        for is_seg, text in unit.pieces:
            if not is_seg and pieces and not pieces[-1][0]:
                pieces[-1] = (False, pieces[-1][1] + text)
            else:
                pieces.append((is_seg, text))
    return Layout(pieces)


def plan_markup(
    text: str, fmt: str, target_words: int, lang: str
) -> tuple[list[str], list[Layout]]:
    """A markup submission's chunks and layouts (the markup counterpart of
    ``chunking.plan``). Raises ValueError for an unknown format or XML that does not
    parse."""
    if not text.strip():
        return [], []
    doc = _parse(text, fmt)
    # the serialization, not the input: a reference (&#109;) can spell a marker there
    marker = _Marker(_serialize(doc))
    marking = _Marking(doc, marker)
    marking.container(doc.root)
    marked = _serialize(doc)
    units = _Reader(fmt, lang, marking.attrs).read(marked, marker)
    layouts = [_layout(group) for group in _group(units, max(1, target_words))]
    return [layout.source() for layout in layouts], layouts


# ---------------------------------------------------------------------------- structure


def compare_structure(source_doc: str, translated_doc: str, fmt: str) -> list[str]:
    """What differs in structure between a document and its translation (empty when
    nothing does): the translation must parse, have the same containers with the same
    attributes (``alt``/``title`` values aside), the same untranslated parts byte for
    byte, and per run of inline content the same inline elements with the same
    attributes, in any order."""
    source = _signature(_parse(source_doc, fmt))
    try:
        translated = _signature(_parse(translated_doc, fmt))
    except ValueError as exc:
        return [f"translation does not parse: {exc}"]
    problems = [
        f"item {i}: source {a!r} != translation {b!r}"
        for i, (a, b) in enumerate(zip(source, translated, strict=False))
        if a != b
    ]
    if len(source) != len(translated):
        problems.append(f"{len(source)} structure items in the source, {len(translated)} after")
    if fmt == "html":
        problems.extend(_token_balance(source_doc, translated_doc))
    return problems[:20]


def _token_balance(source_doc: str, translated_doc: str) -> list[str]:
    """HTML parses anything, so also compare the tags the tokenizer sees."""

    def count(doc: str) -> Counter:
        tok = _Tokenizer(doc, "html")
        tok.feed(doc)
        tok.close()
        return Counter((t.kind, t.name) for t in tok.tokens if t.kind != "other")

    a, b = count(source_doc), count(translated_doc)
    return [
        f"tag {k} x{a[k]} in the source, x{b[k]} after"
        for k in sorted(a.keys() | b.keys())
        if a[k] != b[k]
    ]


def _signature(doc: _Doc) -> list[tuple]:
    rules = _Rules(doc.fmt)
    out: list[tuple] = []
    _container_signature(rules, doc.root, out)
    return out


def _attrs(el: etree._Element, translatable: bool) -> tuple:
    return tuple(
        sorted(
            (k, "*" if translatable and _local(k).lower() in TRANSLATABLE_ATTRS else v)
            for k, v in el.attrib.items()
        )
    )


def _container_signature(rules: _Rules, el: etree._Element, out: list[tuple]) -> None:
    out.append(("open", el.tag, _attrs(el, True)))
    run: Counter = Counter()
    for kid, inline in zip(list(el), rules.inline_children(el), strict=True):
        if inline:
            run.update(_inline_signature(rules, kid))
            continue
        if run:
            out.append(("run", tuple(sorted(run.items(), key=repr))))
            run = Counter()
        if not _is_element(kid) or rules.skipped(kid):
            out.append(("literal", etree.tostring(kid, with_tail=False)))
        else:
            _container_signature(rules, kid, out)
    if run:
        out.append(("run", tuple(sorted(run.items(), key=repr))))
    out.append(("close", el.tag))


def _inline_signature(rules: _Rules, el: etree._Element) -> Iterator[tuple]:
    if not _is_element(el) or rules.skipped(el):
        yield ("literal", etree.tostring(el, with_tail=False))
        return
    yield ("inline", el.tag, _attrs(el, False))
    for kid in el:
        yield from _inline_signature(rules, kid)


# ---------------------------------------------------------------------------- language


class _Found(Exception):
    pass


class _RootTag(HTMLParser):
    """Stops at the document's <html> start tag (a page's first lines), recording where
    it is and its attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: tuple[tuple[int, int], str, list[tuple[str, str | None]]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "html":
            self.found = (self.getpos(), self.get_starttag_text() or "", attrs)
            raise _Found
        raise _Found  # another element first: a fragment, no <html> to mark


def set_lang(document: str, lang: str) -> str:
    """The translated page says its language: ``lang`` (and ``xml:lang``) of the <html>
    element set to the target language; added when the element has none. A fragment
    without <html> is returned as it is."""
    parser = _RootTag()
    try:
        parser.feed(document[:65536])  # the root tag is at the start of a page
        parser.close()
    except _Found:
        pass
    if parser.found is None:
        return document
    (line, col), raw, attrs = parser.found
    start = sum(len(x) for x in document.splitlines(keepends=True)[: line - 1]) + col
    if document[start : start + len(raw)] != raw:
        return document  # positions did not line up: leave the page as it is
    names = {name for name, _ in attrs}
    pairs = [(n, lang if n in ("lang", "xml:lang") else v) for n, v in attrs]
    if "lang" not in names:
        pairs.append(("lang", lang))
    tag = (
        "<html"
        + "".join(f" {n}" if v is None else f' {n}="{escape_attr(v)}"' for n, v in pairs)
        + ">"
    )
    return document[:start] + tag + document[start + len(raw) :]
