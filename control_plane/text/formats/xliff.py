"""XLIFF 1.2 (also 1.0/1.1) and 2.x through lxml.

Not translate-toolkit: its XLIFF store speaks 1.x only (no 2.0 ``<unit>``/``<segment>``,
no ``trgLang``) and hands inline codes over flattened or as placeable objects, while the
job path wants each ``<source>``'s inline codes as XML inside the unit text so that the
protected-span mechanism keeps them byte for byte; lxml (already a dependency of
``control_plane.text.markup``) reads and writes both versions and keeps every element,
attribute, comment and processing instruction it does not touch.

Units, in document order:

- 1.x: every ``<trans-unit>`` to translate: its ``<seg-source>``'s ``<mrk mtype="seg">``
  segments when it has them, else its ``<source>``;
- 2.x: every ``<segment>`` to translate of every ``<unit>``: its ``<source>``.

Skipped: ``translate="no"`` (on the unit or, inherited, on a ``<group>`` or 2.x
``<file>``), 2.x ``<ignorable>``, sources without text, and units already translated (a
target with content; a 1.x target whose ``state`` is ``new`` or ``needs-translation`` is
translated again). A unit's text is the serialized inner XML of its source (XML-escaped,
``markup = "xml"``): inline codes (1.x ``<g>``, ``<x/>``, ``<bx/>``, ``<ex/>``, ``<ph>``,
``<bpt>``/``<ept>``, ``<it>``, ``<mrk>``; 2.x ``<pc>``, ``<ph/>``, ``<sc/>``/``<ec/>``,
``<mrk>``, ``<sm/>``/``<em/>``, ``<cp/>``) stay in it as tags, which
``control_plane.text.markup.tag_spans`` makes protected spans. Elements holding native
code rather than text (1.x ``<ph>``, ``<bpt>``, ``<ept>``, ``<it>``, ``<mrk
mtype="protected">``) carry an extra ``mtb:translate="no"`` attribute in the unit text
(its namespace declared only on the wrapper used to parse fragments), so that the span
mechanism keeps each whole element, code included, as one span; rebuild removes it.

Rebuild writes each translation into a ``<target>`` (created after the ``<source>``, or
after the ``<seg-source>``, whose segment markers the target copies; an existing empty
one keeps its attributes), and sets the state from ``Options.extra["xliff_state"]``
("translated", the default, or "needs-review"; 1.x state names and 2.x ones are taken as
they are): 1.x ``state`` (``translated`` / ``needs-review-translation``) and
``state-qualifier="mt-suggestion"`` on ``<target>``, 2.x ``state`` (``translated`` /
``initial``) on ``<segment>``. 1.x ``<file target-language>`` and 2.x ``trgLang`` name
the target language. Every translated fragment is parsed before it goes in and must hold
the same inline elements as its source; one that does not (which the span mechanism
should prevent) gets the source's content instead and the review state.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from lxml import etree

from control_plane.text.formats.base import Options, Unit
from control_plane.text.spans import has_text

NS2 = "urn:oasis:names:tc:xliff:document:2.0"
MTB_NS = "urn:x-mt-backend:xliff"
_MTB_ATTR = f"{{{MTB_NS}}}translate"
NATIVE_CODE_1 = frozenset({"ph", "bpt", "ept", "it"})
STATES_1 = frozenset(
    "final needs-adaptation needs-l10n needs-review-adaptation needs-review-l10n "
    "needs-review-translation needs-translation new signed-off translated".split()
)
STATES_2 = frozenset({"initial", "translated", "reviewed", "final"})
_REVIEW = {"needs-review", "needs-review-translation", "initial"}


def _local(el: etree._Element) -> str:
    tag = el.tag
    if not isinstance(tag, str):
        return ""  # comment, processing instruction, entity
    return etree.QName(tag).localname


def _ns(el: etree._Element) -> str | None:
    return etree.QName(el.tag).namespace


def _children(el: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in el if _local(c) == name]


def _child(el: etree._Element, name: str) -> etree._Element | None:
    found = _children(el, name)
    return found[0] if found else None


def _parser() -> etree.XMLParser:
    # no DTD loading, no entity expansion, no network: an uploaded file reads nothing else.
    # encoding: the stored document is text, always handed over as UTF-8 bytes
    # (``control_plane.jobs.documents.decode``), so a declaration naming another encoding
    # describes the upload, not these bytes: honouring it turns "café" into "cafÃ©"
    # (ISO-8859-1) or fails to parse (UTF-16). strip_cdata=False: CDATA sections outside
    # the text that gets translated are written back as they came (unit text never holds
    # one: ``_serialize_inner`` turns them into plain text).
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        strip_cdata=False,
        encoding="utf-8",
    )


# the XML declaration, at the very start (after a byte order mark), and its encoding
_DECLARATION = re.compile(rb"(?:\xef\xbb\xbf)?(<\?xml\s[^>]*?\?>)")
_ENCODING = re.compile(rb"(\sencoding\s*=\s*)([\"'])([^\"']*)\2")


def _declaration(data: bytes) -> bytes:
    """The XML declaration to write back, as the output is UTF-8: the document's own when it
    says UTF-8 or names no encoding (its quotes and ``standalone`` kept); with the encoding
    changed to UTF-8 when it names another; lxml's when the document has none."""
    found = _DECLARATION.match(data)
    if found is None:
        return b"<?xml version='1.0' encoding='UTF-8'?>"
    text = found.group(1)
    enc = _ENCODING.search(text)
    if enc is None or enc.group(3).strip().lower() in (b"utf-8", b"utf8"):
        return text
    quote = enc.group(2)
    return text[: enc.start()] + enc.group(1) + quote + b"UTF-8" + quote + text[enc.end() :]


def _parse(data: bytes) -> tuple[etree._ElementTree, int]:
    """The document and its major version (1 or 2)."""
    try:
        tree = etree.ElementTree(etree.fromstring(data, _parser()))
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"not an XLIFF file: {exc}") from None
    root = tree.getroot()
    if _local(root) != "xliff":
        raise ValueError(f"not an XLIFF file: the root element is <{_local(root)}>")
    version = (root.get("version") or "").strip()
    major = 2 if _ns(root) == NS2 or version.startswith("2") else 1
    return tree, major


def _translatable(el: etree._Element) -> bool:
    """``translate`` of the element or, inherited, of its nearest ancestor saying."""
    for node in (el, *el.iterancestors()):
        value = node.get("translate")
        if value is not None:
            return value.strip().lower() != "no"
    return True


def _empty(el: etree._Element | None) -> bool:
    return el is None or (not (el.text or "").strip() and len(el) == 0)


# ---------------------------------------------------------------------------- slots


@dataclass
class _Slot:
    """Where one unit's text comes from and its translation goes."""

    major: int
    unit: etree._Element  # 1.x <trans-unit>, 2.x <segment>
    source: etree._Element  # the element whose content is the unit text
    segmented: etree._Element | None = None  # 1.x <seg-source> (source is a <mrk>)
    key: str = ""
    inner: str = field(default="", repr=False)
    prefix: str = field(default="", repr=False)
    suffix: str = field(default="", repr=False)


def _slots(root: etree._Element, major: int) -> list[_Slot]:
    out: list[_Slot] = []
    if major == 1:
        for tu in root.iter():
            if _local(tu) != "trans-unit" or not _translatable(tu):
                continue
            source, target = _child(tu, "source"), _child(tu, "target")
            if source is None:
                continue
            state = (target.get("state") if target is not None else "") or ""
            if not _empty(target) and state not in ("new", "needs-translation"):
                continue  # translated already
            seg = _child(tu, "seg-source")
            marks = [] if seg is None else [m for m in seg.iter() if _is_seg_mark(m)]
            ident = tu.get("id", "")
            if marks:
                out.extend(_Slot(1, tu, m, seg, f"{ident}:{m.get('mid', '')}") for m in marks)
            else:
                out.append(_Slot(1, tu, source, None, ident))
    else:
        for unit in root.iter():
            if _local(unit) != "unit" or not _translatable(unit):
                continue
            for n, segment in enumerate(_children(unit, "segment")):
                source = _child(segment, "source")
                if source is None or not _empty(_child(segment, "target")):
                    continue
                ident = segment.get("id") or str(n)
                out.append(_Slot(2, segment, source, None, f"{unit.get('id', '')}:{ident}"))
    kept = []
    for slot in out:
        slot.inner, slot.prefix, slot.suffix = _serialize_inner(slot.source, slot.major)
        if has_text("".join(slot.source.itertext())):
            kept.append(slot)
    return kept


def _is_seg_mark(el: etree._Element) -> bool:
    return _local(el) == "mrk" and el.get("mtype") == "seg"


def _is_native_code(el: etree._Element, major: int) -> bool:
    name = _local(el)
    if major == 1:
        return name in NATIVE_CODE_1 or (name == "mrk" and el.get("mtype") == "protected")
    return False


def _serialize_inner(source: etree._Element, major: int) -> tuple[str, str, str]:
    """The inner XML of ``source`` as the unit text, and the start and end tags of a
    wrapper that declares its namespaces (to parse a translation back)."""
    dup = copy.deepcopy(source)
    for el in dup.iter():
        # CDATA sections become plain text (escaped where needed), as they were before the
        # parser kept them: the unit text is then ordinary XML content whose markup is the
        # inline codes only, never a "<![CDATA[" the span mechanism would have to handle
        if isinstance(el.tag, str) and el.text:
            el.text = el.text
        if el is not dup and el.tail:
            el.tail = el.tail
        if el is not dup and _is_native_code(el, major):
            el.set(_MTB_ATTR, "no")
    nsmap = {k: v for k, v in source.nsmap.items() if v != MTB_NS}
    prefix = "mtb"
    while prefix in nsmap:
        prefix += "_"
    nsmap[prefix] = MTB_NS
    wrap = etree.Element(etree.QName(_ns(source), "wrap"), nsmap=nsmap)
    probe = etree.tostring(dup, encoding="unicode")
    n = 0
    while f"Qmtb{n}z" in probe:
        n += 1
    marker = f"Qmtb{n}z"
    wrap.text = marker + (dup.text or "")
    for child in list(dup):
        wrap.append(child)
    text = etree.tostring(wrap, encoding="unicode")
    start, end = text.index(marker), text.rindex("</")
    # references to the document's own entities stay references (never expanded): a
    # fragment parsed on its own needs them declared
    names = sorted({e.name for e in wrap.iter(etree.Entity)})
    doctype = ""
    if names:
        decls = "".join(f'<!ENTITY {name} "">' for name in names)
        doctype = f"<!DOCTYPE wrap [{decls}]>"
    return text[start + len(marker) : end], doctype + text[:start], text[end:]


# ---------------------------------------------------------------------------- rebuild


def _fragment(slot: _Slot, text: str) -> etree._Element | None:
    """``text`` parsed inside the slot's wrapper, when it parses and has the source's
    inline elements (tag and attributes, in any order); None otherwise."""
    try:
        wrap = etree.fromstring(slot.prefix + text + slot.suffix, _parser())
    except etree.XMLSyntaxError:
        return None
    want = etree.fromstring(slot.prefix + slot.inner + slot.suffix, _parser())
    if _inline_signature(wrap) != _inline_signature(want):
        return None
    return wrap


def _inline_signature(wrap: etree._Element) -> list:
    return sorted(
        (str(el.tag), sorted((str(k), v) for k, v in el.attrib.items()))
        for el in wrap.iter()
        if el is not wrap
    )


def _fill(target: etree._Element, wrap: etree._Element) -> None:
    """``target``'s content replaced by ``wrap``'s (attributes of target kept)."""
    for el in wrap.iter():
        if _MTB_ATTR in el.attrib:
            del el.attrib[_MTB_ATTR]
    for child in list(target):
        target.remove(child)
    target.text = wrap.text
    for child in list(wrap):
        target.append(child)


def _place_target(parent: etree._Element, after: etree._Element) -> etree._Element:
    """``parent``'s ``<target>``, or a new one right after ``after``."""
    target = _child(parent, "target")
    if target is None:
        target = etree.Element(etree.QName(_ns(after), "target"))
        at = parent.index(after)
        parent.insert(at + 1, target)
        before = parent[at - 1].tail if at else parent.text  # the indent of ``after``
        target.tail = after.tail
        if before is not None and not before.strip():
            after.tail = before
    return target


def _state(value: str, major: int, review: bool) -> str:
    if review or value in _REVIEW:
        return "needs-review-translation" if major == 1 else "initial"
    if value in (STATES_1 if major == 1 else STATES_2):
        return value
    raise ValueError(f"xliff_state {value!r}: use translated or needs-review")


class XliffFormat:
    name = "xliff"
    extensions = (".xlf", ".xliff")
    media_type = "application/xliff+xml"
    binary = False
    markup = "xml"

    def extract(self, data: bytes) -> list[Unit]:
        tree, major = _parse(data)
        return [Unit(s.inner, key=s.key) for s in _slots(tree.getroot(), major)]

    def rebuild(self, data: bytes, translations: list[str], options: Options) -> bytes:
        tree, major = _parse(data)
        root = tree.getroot()
        slots = _slots(root, major)
        if len(translations) != len(slots):
            raise ValueError(f"{len(slots)} units in the file, {len(translations)} translations")
        wanted = (options.extra or {}).get("xliff_state", "translated")
        _state(wanted, major, False)  # a bad value fails before anything is written
        review: dict[int, bool] = {}  # id(unit element) -> some fragment fell back
        fragments: list[etree._Element] = []
        for slot, text in zip(slots, translations, strict=True):
            wrap = _fragment(slot, text)
            if wrap is None:
                wrap = etree.fromstring(slot.prefix + slot.inner + slot.suffix, _parser())
                review[id(slot.unit)] = True
            fragments.append(wrap)
        done: set[int] = set()
        marks: dict[str | None, etree._Element] = {}  # the current segmented target's
        for slot, wrap in zip(slots, fragments, strict=True):
            unit = slot.unit
            if slot.segmented is not None:
                started = id(unit) in done
                target = _segmented_target(slot, started)
                if not started:
                    marks = _seg_marks(target)
                mark = marks[slot.source.get("mid")]
                # a segment marker nested in this one (not valid XLIFF, but it parses) is
                # replaced by the fill: index again so a later lookup finds the new copy
                nested = any(_is_seg_mark(m) for m in mark.iterdescendants())
                _fill(mark, wrap)
                if nested or any(_is_seg_mark(m) for m in mark.iterdescendants()):
                    marks = _seg_marks(target)
            else:
                target = _place_target(unit, slot.source)
                _fill(target, wrap)
            done.add(id(unit))
            state = _state(wanted, major, review.get(id(unit), False))
            if major == 1:
                target.set("state", state)
                target.set("state-qualifier", "mt-suggestion")
            else:
                unit.set("state", state)
        lang = options.target_lang
        if major == 1:
            for el in root.iter():
                if _local(el) == "file":
                    el.set("target-language", lang)
        else:
            root.set("trgLang", lang)
        # the declaration is written by hand: lxml's would drop ``standalone`` and
        # re-quote it, and the original one may name an encoding these bytes are not in
        out = _declaration(data) + b"\n" + etree.tostring(tree, encoding="UTF-8")
        return out if out.endswith(b"\n") else out + b"\n"


def _segmented_target(slot: _Slot, started: bool) -> etree._Element:
    """A 1.x target built from ``<seg-source>`` (its segment markers, and what lies
    between them, copied), made on the unit's first segment."""
    target = _place_target(slot.unit, slot.segmented)
    if not started:
        dup = copy.deepcopy(slot.segmented)
        for child in list(target):
            target.remove(child)
        target.text = dup.text
        for child in list(dup):
            target.append(child)
    return target


def _seg_marks(target: etree._Element) -> dict[str | None, etree._Element]:
    """``target``'s segment markers by ``mid``, the first in document order for a ``mid``
    said twice: looked up once per segment, where scanning the target each time made a
    unit with thousands of segments quadratic."""
    found: dict[str | None, etree._Element] = {}
    for m in target.iter():
        if _is_seg_mark(m):
            found.setdefault(m.get("mid"), m)
    return found


FORMAT = XliffFormat()
FORMATS = {"xliff": FORMAT}
