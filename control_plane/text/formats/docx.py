"""Word documents (``.docx``) with python-docx: every paragraph with text is a unit.

Where paragraphs are found: every ``w:p`` of the main document (body, tables, nested
tables, text boxes, content controls), of every header and footer part (each section's
default, first-page and even-page ones), and of the footnotes and endnotes parts, in
that order and in document order inside each part. python-docx has no API for
footnotes and endnotes: their parts are generic ``Part`` s whose XML is parsed and
written back here.

A paragraph's unit text. Inline content becomes text and synthetic tags (markup "xml",
text XML-escaped), so that formatting rides the protected-span mechanism:

- the paragraph's runs are grouped by their formatting (the run's ``w:rPr`` as XML);
  the formatting that covers most of the paragraph's text is its dominant one and its
  text is bare; a stretch in another formatting is ``<rN>...</rN>`` (N indexes the
  paragraph's formattings: bold, italic, underline, font, colour, character style, any
  run property), consecutive runs with the same formatting being one stretch;
- a hyperlink is ``<aN>...</aN>`` (its element is kept, so its relationship, anchor and
  tooltip are); other inline wrappers with runs in them (``w:ins``, ``w:smartTag``,
  ``w:customXml``) are ``<cN>...</cN>``; inside them, formatting as above relative to
  their own dominant formatting;
- everything else is a void tag ``<tN/>`` kept as it is: tabs, breaks, symbols,
  drawings, footnote references, bookmarks, comment anchors, whole fields (from the
  ``begin`` field character to the ``end`` one, result text included: a field's
  result is recomputed by Word; simple fields and deleted text likewise).
  Proofing marks and ``w:lastRenderedPageBreak`` (layout caches) are dropped.

``rebuild`` re-reads the original document (so numbering of formattings, links and
voids is the same as in ``extract``), parses each translated unit as XML and rewrites
that paragraph's inline content: text goes into new runs carrying a copy of the
remembered ``w:rPr``, links and wrappers are the original elements refilled, voids are
the original elements moved into place. Paragraph properties, styles, numbering,
tables, sections, images, headers' and footers' other content and every other part of
the package stay as they were.
"""

from __future__ import annotations

import copy
import io
import re
import zipfile
from dataclasses import dataclass, field

from docx.opc.constants import CONTENT_TYPE as CT
from docx.opc.part import XmlPart
from docx.oxml.ns import qn
from docx.oxml.parser import parse_xml
from lxml import etree

from control_plane.text.formats.base import Options, Unit
from control_plane.text.markup import escape_text

_PARTS = (
    CT.WML_DOCUMENT_MAIN,
    CT.WML_HEADER,
    CT.WML_FOOTER,
    CT.WML_FOOTNOTES,
    CT.WML_ENDNOTES,
)
_P, _R, _T, _RPR = qn("w:p"), qn("w:r"), qn("w:t"), qn("w:rPr")
_HYPERLINK = qn("w:hyperlink")
_WRAPPERS = {qn("w:ins"), qn("w:smartTag"), qn("w:customXml"), qn("w:moveTo")}
_DROP = {qn("w:proofErr"), qn("w:lastRenderedPageBreak")}
_FLDCHAR, _INSTR = qn("w:fldChar"), qn("w:instrText")
_FLDTYPE = qn("w:fldCharType")
_XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"


# ---------------------------------------------------------------------------- model


@dataclass
class _Text:
    fmt: int  # index into _Para.fmts
    text: str


@dataclass
class _Void:
    index: int  # index into _Para.voids


@dataclass
class _Wrap:
    index: int  # index into _Para.wraps
    link: bool  # a hyperlink (<aN>) or another wrapper (<cN>)
    items: list = field(default_factory=list)


@dataclass
class _Para:
    """One paragraph's inline content as items, and what its tags stand for."""

    element: etree._Element
    items: list = field(default_factory=list)  # _Text, _Void, _Wrap
    fmts: list = field(default_factory=list)  # rPr elements (None: no properties)
    fmt_keys: dict = field(default_factory=dict)  # rPr XML -> index
    # a void: ("run", rPr or None, child) becomes a run around the child again;
    # ("keep", [elements]) are paragraph-level elements moved back as they are
    voids: list = field(default_factory=list)
    wraps: list = field(default_factory=list)  # hyperlink and wrapper elements

    def fmt(self, rpr: etree._Element | None) -> int:
        key = "" if rpr is None else etree.tostring(rpr, encoding="unicode")
        if key not in self.fmt_keys:
            self.fmt_keys[key] = len(self.fmts)
            self.fmts.append(rpr)
        return self.fmt_keys[key]


def _paragraph(p: etree._Element, field_depth: list[int]) -> _Para:
    para = _Para(p)
    para.items = _inline(para, [c for c in p if c.tag != qn("w:pPr")], field_depth)
    return para


def _inline(para: _Para, children: list, field_depth: list[int]) -> list:
    items: list = []

    def keep(element: etree._Element) -> None:
        last = items[-1] if items else None
        if isinstance(last, _Void) and para.voids[last.index][0] == "keep":
            para.voids[last.index][1].append(element)
        else:
            items.append(_Void(len(para.voids)))
            para.voids.append(("keep", [element]))

    for child in children:
        tag = child.tag
        if not isinstance(tag, str) or tag in _DROP:
            continue
        if tag == _R:
            chars = child.findall(_FLDCHAR)
            if field_depth[0] > 0 or chars or child.find(_INSTR) is not None:
                for ch in chars:  # a field is kept whole, its result included
                    kind = ch.get(_FLDTYPE)
                    field_depth[0] += kind == "begin"
                    field_depth[0] -= kind == "end" and field_depth[0] > 0
                keep(child)
                continue
            _run(para, child, items)
        elif tag == _HYPERLINK or tag in _WRAPPERS:
            if field_depth[0] > 0 or not _has_text(child):
                keep(child)
                continue
            wrap = _Wrap(len(para.wraps), tag == _HYPERLINK)
            para.wraps.append(child)
            inner = [c for c in child if not _is_props(c)]
            wrap.items = _inline(para, inner, field_depth)
            items.append(wrap)
        else:  # bookmarks, comment anchors, simple fields, deletions, math, sdt, ...
            keep(child)
    return items


def _run(para: _Para, run: etree._Element, items: list) -> None:
    rpr = run.find(_RPR)
    fmt = para.fmt(rpr)
    for child in run:
        tag = child.tag
        if tag == _RPR or not isinstance(tag, str) or tag in _DROP:
            continue
        if tag == _T:
            if child.text:
                last = items[-1] if items else None
                if isinstance(last, _Text) and last.fmt == fmt:
                    last.text += child.text
                else:
                    items.append(_Text(fmt, child.text))
        else:  # tab, break, symbol, drawing, footnote reference, ...
            items.append(_Void(len(para.voids)))
            para.voids.append(("run", rpr, child))


def _is_props(element: etree._Element) -> bool:
    return isinstance(element.tag, str) and element.tag.endswith("Pr")


def _has_text(element: etree._Element) -> bool:
    return any(t.text for t in element.iter(_T))


# ---------------------------------------------------------------------------- unit text


def _weights(items: list, out: dict[int, int]) -> dict[int, int]:
    for item in items:
        if isinstance(item, _Text):
            out[item.fmt] = out.get(item.fmt, 0) + len(item.text)
    return out


def _dominant(items: list) -> int | None:
    weights = _weights(items, {})
    if not weights:
        return None
    # the most text; ties go to the formatting met first
    order = {}
    for item in items:
        if isinstance(item, _Text):
            order.setdefault(item.fmt, len(order))
    return max(weights, key=lambda f: (weights[f], -order[f]))


def _render(items: list) -> str:
    dominant = _dominant(items)
    out: list[str] = []
    current = dominant
    for item in items:
        if isinstance(item, _Text):
            if item.fmt != current:
                if current != dominant:
                    out.append(f"</r{current}>")
                if item.fmt != dominant:
                    out.append(f"<r{item.fmt}>")
                current = item.fmt
            out.append(escape_text(item.text))
        elif isinstance(item, _Void):
            out.append(f"<t{item.index}/>")
        else:
            if current != dominant:
                out.append(f"</r{current}>")
                current = dominant
            out.append(f"{_wrap_tag(item, True)}{_render(item.items)}{_wrap_tag(item, False)}")
    if current != dominant:
        out.append(f"</r{current}>")
    return "".join(out)


def _wrap_tag(wrap: _Wrap, opening: bool) -> str:
    letter = "a" if wrap.link else "c"
    return f"<{letter}{wrap.index}>" if opening else f"</{letter}{wrap.index}>"


def _text_of(items: list) -> str:
    return "".join(
        i.text if isinstance(i, _Text) else _text_of(i.items) if isinstance(i, _Wrap) else ""
        for i in items
    )


# ---------------------------------------------------------------------------- package


# What a package may unpack to, checked from the zip before python-docx reads it: a few
# KB of zip can hold gigabytes of ``<w:p/>`` (85 KB -> 24 s and 3.7 GB here), and a file
# is read 3-4 times per job (language, words, plan, rebuild). Real Word XML compresses
# 5-15x (python-docx's own styles.xml: ~30x), so an 8 MiB upload of real text stays far
# below these; past them lies a bomb, not a document.
MAX_PART_BYTES = 32 << 20  # one entry, unpacked
MAX_TOTAL_BYTES = 64 << 20  # all entries: python-docx holds every part's bytes at once
MAX_RATIO = 100  # unpacked / packed, for entries of RATIO_FROM bytes or more
RATIO_FROM = 1 << 20
MAX_ENTRIES = 10_000  # Word writes tens (hundreds with many images)
# The cost is in elements, not bytes: lxml takes ~120 B per element and every ``w:p``
# becomes a _Para here (~4 us, ~0.7 KB). Measured (extract on one busy core, CPU time
# and peak RSS, parts stored unpacked so no ratio applies) just under both caps: 200k
# ``<w:p/>`` 0.8 s / 170 MB; 800k tags of runs with three formattings each 1.6 s /
# 310 MB, rebuild 2.4 s / 460 MB; empty and formatted paragraphs mixed 1.9 s / 290 MB;
# at 1M tags: 2.5 s extract, 2.9 s / 560 MB rebuild, hence 800k. 800k tags of plain
# Word-like paragraphs are ~10 MB of XML (48k paragraphs, ~700k words); 31 MB of text
# in 31k paragraphs: 0.6 s / 180 MB.
MAX_TAGS = 800_000  # "<" in all entries: an upper bound on elements
MAX_PARAGRAPHS = 200_000  # start tags named p in any prefix (also DrawingML's a:p)
_PARAGRAPH_START = re.compile(rb"<(?:[A-Za-z_][\w.\-]*:)?p[\s/>]")


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.0f} MB" if n >= 1 << 20 else f"{max(1, round(n / 1024))} KB"


def _check_size(data: bytes) -> None:
    """Refuse (ValueError, the service's 422) a package that would unpack or parse to
    far more than any real document, before anything is decompressed in bulk: sizes and
    ratios from the central directory first (zipfile never returns more than an entry's
    declared size), then each entry, read once, for its tags."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - as _open: any zip error is the file's
        raise ValueError(f"not a readable .docx file: {exc}") from exc
    too_large = "the .docx is too large to process"
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_ENTRIES:
            raise ValueError(f"{too_large}: {len(entries)} entries; at most {MAX_ENTRIES}")
        total = 0
        for entry in entries:
            size, packed = entry.file_size, entry.compress_size
            if size > MAX_PART_BYTES:
                raise ValueError(
                    f"{too_large}: {entry.filename} unpacks to {_mb(size)}; "
                    f"at most {_mb(MAX_PART_BYTES)} per part"
                )
            if size >= RATIO_FROM and size > MAX_RATIO * packed:
                raise ValueError(
                    f"{too_large}: {entry.filename} unpacks {size // max(packed, 1)}x "
                    f"({_mb(packed)} to {_mb(size)}); at most {MAX_RATIO}x"
                )
            total += size
            if total > MAX_TOTAL_BYTES:
                raise ValueError(
                    f"{too_large}: it unpacks to more than {_mb(MAX_TOTAL_BYTES)} in all"
                )
        tags = paragraphs = 0
        for entry in entries:
            if entry.is_dir():
                continue
            try:
                content = archive.read(entry)
            except Exception as exc:  # noqa: BLE001 - CRC, zlib, encrypted, unknown method
                raise ValueError(f"not a readable .docx file: {exc}") from exc
            tags += content.count(b"<")  # C speed; bounds the regex's work below
            if tags > MAX_TAGS:
                raise ValueError(
                    f"{too_large}: more than {MAX_TAGS:,} XML tags (at {entry.filename})"
                )
            paragraphs += sum(1 for _ in _PARAGRAPH_START.finditer(content))
            if paragraphs > MAX_PARAGRAPHS:
                raise ValueError(
                    f"{too_large}: more than {MAX_PARAGRAPHS:,} paragraphs (at {entry.filename})"
                )


def _open(data: bytes):  # noqa: ANN202 - a docx.document.Document
    import docx

    _check_size(data)
    try:
        return docx.Document(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - zip, XML and package errors alike
        raise ValueError(f"not a readable .docx file: {exc}") from exc


def _roots(document) -> list[tuple[str, etree._Element, object]]:  # noqa: ANN001
    """(part name, XML root, part) of every part with paragraphs, in unit order."""
    found = []
    for part in document.part.package.iter_parts():
        if part.content_type not in _PARTS:
            continue
        if isinstance(part, XmlPart):
            root = part.element
        else:  # footnotes, endnotes: python-docx keeps them as bytes
            root = parse_xml(part.blob)
        found.append((part.content_type, str(part.partname), root, part))
    # main document, headers, footers, notes; header2 before header10
    found.sort(key=lambda f: (_PARTS.index(f[0]), len(f[1]), f[1]))
    return [(name, root, part) for _, name, root, part in found]


def _paragraphs(document) -> list[tuple[str, list[_Para], etree._Element, object]]:  # noqa: ANN001
    out = []
    for name, root, part in _roots(document):
        depth = [0]
        paras = [_paragraph(p, depth) for p in list(root.iter(_P))]
        out.append((name, paras, root, part))
    return out


def _units(document) -> list[tuple[Unit, _Para]]:  # noqa: ANN001
    units = []
    for name, paras, _, _ in _paragraphs(document):
        for i, para in enumerate(paras):
            if _text_of(para.items).strip():
                units.append((Unit(_render(para.items), key=f"{name}#{i}"), para))
    return units


# ---------------------------------------------------------------------------- rebuild


def _write(para: _Para, translated: str) -> bool:
    """Rewrite the paragraph's inline content from its translated unit text; False (the
    paragraph left as it was) when the text does not parse as the unit's markup."""
    try:
        tree = etree.fromstring(f"<u>{translated}</u>")
    except etree.XMLSyntaxError:
        return False
    p = para.element
    for child in list(p):
        if child.tag != qn("w:pPr"):
            p.remove(child)
    _fill(para, p, tree, _dominant(para.items), _dominant_by_wrap(para))
    return True


def _dominant_by_wrap(para: _Para) -> dict[int, int | None]:
    out: dict[int, int | None] = {}

    def walk(items: list) -> None:
        for item in items:
            if isinstance(item, _Wrap):
                out[item.index] = _dominant(item.items)
                walk(item.items)

    walk(para.items)
    return out


def _fill(
    para: _Para,
    target: etree._Element,
    node: etree._Element,
    fmt: int | None,
    wrap_fmt: dict[int, int | None],
) -> None:
    """Append runs for ``node``'s text and children to ``target`` in formatting ``fmt``."""
    _text_run(para, target, node.text, fmt)
    for child in node:
        name = child.tag if isinstance(child.tag, str) else ""
        letter, number = name[:1], name[1:]
        index = int(number) if number.isdigit() else -1
        if letter == "r" and 0 <= index < len(para.fmts):
            _fill(para, target, child, index, wrap_fmt)
        elif letter in ("a", "c") and 0 <= index < len(para.wraps):
            element = para.wraps[index]
            for old in list(element):
                if not _is_props(old):
                    element.remove(old)
            target.append(element)
            _fill(para, element, child, wrap_fmt.get(index, fmt), wrap_fmt)
        elif letter == "t" and 0 <= index < len(para.voids):
            void = para.voids[index]
            if void[0] == "keep":
                for element in void[1]:
                    target.append(element)
            else:
                run = etree.SubElement(target, _R)
                if void[1] is not None:
                    run.append(copy.deepcopy(void[1]))
                run.append(void[2])
        else:  # not one of the unit's tags: its text in the current formatting
            _fill(para, target, child, fmt, wrap_fmt)
        _text_run(para, target, child.tail, fmt)


def _text_run(para: _Para, target: etree._Element, text: str | None, fmt: int | None) -> None:
    if not text:
        return
    run = etree.SubElement(target, _R)
    rpr = para.fmts[fmt] if fmt is not None else None
    if rpr is not None:
        run.append(copy.deepcopy(rpr))
    t = etree.SubElement(run, _T)
    t.text = text
    t.set(_XML_SPACE, "preserve")


# ---------------------------------------------------------------------------- format


class DocxFormat:
    name = "docx"
    extensions = (".docx",)
    media_type = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    binary = True
    markup = "xml"

    def extract(self, data: bytes) -> list[Unit]:
        return [unit for unit, _ in _units(_open(data))]

    def rebuild(self, data: bytes, translations: list[str], options: Options) -> bytes:
        document = _open(data)
        parts = _paragraphs(document)
        targets = [
            para for _, paras, _, _ in parts for para in paras if _text_of(para.items).strip()
        ]
        if len(targets) != len(translations):
            raise ValueError(
                f"{len(translations)} translations for the document's {len(targets)} paragraphs"
            )
        for para, text in zip(targets, translations, strict=True):
            _write(para, text)
        for _, _, root, part in parts:
            if not isinstance(part, XmlPart):
                part._blob = etree.tostring(  # noqa: SLF001 - python-docx has no setter
                    root, xml_declaration=True, encoding="UTF-8", standalone=True
                )
        out = io.BytesIO()
        document.save(out)
        return out.getvalue()


FORMAT = DocxFormat()
