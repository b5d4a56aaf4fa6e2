"""XLIFF 1.2 and 2.0 (control_plane.text.formats.xliff): a fake translator on files with
every kind of unit and inline code, then files generated from a real gettext catalog
through the int8 engine."""

from __future__ import annotations

import os
import time
from pathlib import Path

import polib
import pytest
from lxml import etree

from control_plane.engine.base import Translation
from control_plane.text import formats
from control_plane.text.formats.base import Options
from control_plane.text.formats.xliff import FORMAT

HERE = Path(__file__).parent
REPO = HERE.parents[3]
DATA = HERE / "data_xliff"
V12 = (DATA / "sample12.xlf").read_bytes()
V20 = (DATA / "sample20.xlf").read_bytes()
NS1 = "urn:oasis:names:tc:xliff:document:1.2"
NS2 = "urn:oasis:names:tc:xliff:document:2.0"
CATALOG = Path("/usr/share/locale/pt_BR/LC_MESSAGES/sed.mo")
CHANGED = {"target-language", "trgLang", "state", "state-qualifier"}


def upper(texts: list[str]) -> list[Translation]:
    """A fake engine: letters upper-cased (tags are masked, mask tokens upper case)."""
    return [Translation(t.upper(), 1.0) for t in texts]


def translate(data: bytes, call=upper, **extra) -> etree._Element:  # noqa: ANN001
    out = formats.translate_document(data, FORMAT, call, Options("en", "pt", "v1", extra))
    return etree.fromstring(out)


def local(el) -> str:  # noqa: ANN001
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def skeleton(root: etree._Element) -> list[tuple]:
    """Every element outside targets, with its attributes (less those rebuild sets), text
    and tail (but whitespace between elements): what must not change."""
    out = []
    for el in root.iter():
        if not isinstance(el.tag, str) or local(el) == "target":
            continue
        if any(local(a) == "target" for a in el.iterancestors()):
            continue
        attrs = sorted((k, v) for k, v in el.attrib.items() if k not in CHANGED)
        out.append((el.tag, attrs, el.text, el.tail if (el.tail or "").strip() else None))
    return out


def inner(el: etree._Element) -> str:
    """Serialized content of ``el`` without namespace declarations."""
    text = etree.tostring(el, encoding="unicode", with_tail=False)
    start = text.index(">") + 1
    return (
        text[start : text.rindex("</")]
        .replace(f' xmlns="{NS1}"', "")
        .replace(f' xmlns="{NS2}"', "")
    )


def inline_tags(el: etree._Element) -> list[tuple]:
    return sorted((d.tag, sorted(d.attrib.items())) for d in el.iter() if d is not el)


def test_registry_finds_xliff():
    assert formats.get("xliff") is FORMAT
    assert formats.by_extension("app.XLF") is FORMAT
    assert formats.by_extension("strings.xliff") is FORMAT
    assert (FORMAT.media_type, FORMAT.markup, FORMAT.binary) == (
        "application/xliff+xml",
        "xml",
        False,
    )


def test_units_12():
    units = FORMAT.extract(V12)
    assert [u.key for u in units] == [
        "welcome",
        "bold",
        "break",
        "native",
        "placeholder",
        "segmented:1",
        "segmented:2",
    ]  # not: translate="no" (own or the group's), translated already, no letters
    assert units[1].text == 'Click <g id="1" ctype="bold">Save</g> to keep your changes.'
    assert units[2].text == 'The first line<x id="2" ctype="lb"/>and the second line.'
    assert units[4].text == "Deleted %d files from &lt;%s&gt; &amp; the cache."
    assert units[6].text == 'Then <g id="5">close</g> it.'
    # native code elements are whole spans (their code is no text to translate)
    assert '<ph id="4" mtb:translate="no">&lt;br/&gt;</ph>' in units[3].text


def test_units_20():
    units = FORMAT.extract(V20)
    assert [u.key for u in units] == ["u1:s1", "u2:s2", "u2:s3", "u4:0"]
    assert units[1].text == (
        'Click <pc id="1" dataRefStart="d1" dataRefEnd="d2">Save</pc> to keep your changes.'
        '<ph id="2" dataRef="d3"/>'
    )
    assert units[3].text == 'Do you want to <mrk id="m1" translate="no">git push</mrk> now?'


def test_round_trip_12():
    src = etree.fromstring(V12)
    out = translate(V12)
    assert skeleton(out) == skeleton(src)
    assert out.find(f"{{{NS1}}}file").get("target-language") == "pt"
    units = {tu.get("id"): tu for tu in out.iter(f"{{{NS1}}}trans-unit")}
    expected = {
        "welcome": "WELCOME TO THE APPLICATION.",
        "bold": 'CLICK <g id="1" ctype="bold">SAVE</g> TO KEEP YOUR CHANGES.',
        "break": 'THE FIRST LINE<x id="2" ctype="lb"/>AND THE SECOND LINE.',
        "native": 'PRESS <bpt id="3">&lt;b&gt;</bpt>ENTER<ept id="3">&lt;/b&gt;</ept> TO '
        'CONTINUE, OR <ph id="4">&lt;br/&gt;</ph> STOP HERE.',
        "placeholder": "DELETED %d FILES FROM &lt;%s&gt; &amp; THE CACHE.",
        "segmented": '<mrk mtype="seg" mid="1">OPEN THE FILE.</mrk> '
        '<mrk mtype="seg" mid="2">THEN <g id="5">CLOSE</g> IT.</mrk>',
    }
    for ident, text in expected.items():
        target = units[ident].find(f"{{{NS1}}}target")
        assert inner(target) == text, ident
        assert target.get("state") == "translated"
        assert target.get("state-qualifier") == "mt-suggestion"
        source = units[ident].find(f"{{{NS1}}}source")
        assert source.getnext() is target or local(source.getnext()) == "seg-source"
    for ident in ("locked", "inherited", "number"):
        assert units[ident].find(f"{{{NS1}}}target") is None, ident
    done = units["done"].find(f"{{{NS1}}}target")
    assert (done.text, done.get("state")) == ("Já traduzido.", "final")
    # a new target is indented like its source
    assert units["bold"].find(f"{{{NS1}}}source").tail == units["welcome"][0].tail


def test_round_trip_20():
    src = etree.fromstring(V20)
    out = translate(V20)
    assert skeleton(out) == skeleton(src)
    assert out.get("trgLang") == "pt" and out.get("srcLang") == "en"
    segments = {s.get("id"): s for s in out.iter(f"{{{NS2}}}segment")}
    s2 = segments["s2"]
    assert s2.get("state") == "translated"
    assert inner(s2.find(f"{{{NS2}}}target")) == (
        'CLICK <pc id="1" dataRefStart="d1" dataRefEnd="d2">SAVE</pc> TO KEEP YOUR CHANGES.'
        '<ph id="2" dataRef="d3"/>'
    )
    s3 = segments["s3"]
    assert s3.get("state") == "translated"
    assert inner(s3.find(f"{{{NS2}}}target")) == (
        'THEN <sc id="3" dataRef="d1"/>CLOSE<ec startRef="3" dataRef="d2"/> THE WINDOW.'
    )
    u4 = next(u for u in out.iter(f"{{{NS2}}}unit") if u.get("id") == "u4")
    assert inner(u4.find(f".//{{{NS2}}}target")) == (
        'DO YOU WANT TO <mrk id="m1" translate="no">git push</mrk> NOW?'
    )
    u3 = next(u for u in out.iter(f"{{{NS2}}}unit") if u.get("id") == "u3")
    assert u3.find(f".//{{{NS2}}}target") is None
    ignorable = out.find(f".//{{{NS2}}}ignorable")
    assert ignorable.find(f"{{{NS2}}}target") is None


def test_state_is_configurable():
    out = translate(V12, xliff_state="needs-review")
    targets = out.iterfind(f".//{{{NS1}}}trans-unit/{{{NS1}}}target")
    states = {t.get("state") for t in targets if t.get("state") != "final"}
    assert states == {"needs-review-translation"}
    out = translate(V20, xliff_state="needs-review")
    segments = [s for s in out.iter(f"{{{NS2}}}segment") if s.find(f"{{{NS2}}}target") is not None]
    assert {s.get("state") for s in segments} == {"initial", "final"}
    with pytest.raises(ValueError):
        translate(V12, xliff_state="bogus")


def test_a_translation_that_breaks_the_markup_falls_back_to_the_source():
    units = FORMAT.extract(V12)
    broken = [u.text.upper() for u in units]
    broken[1] = "CLICK <g id='1'>SAVE TO KEEP"  # does not parse
    broken[2] = "THE FIRST LINE AND THE SECOND LINE."  # lost its <x/>
    out = etree.fromstring(FORMAT.rebuild(V12, broken, Options("en", "pt")))
    units_out = {tu.get("id"): tu for tu in out.iter(f"{{{NS1}}}trans-unit")}
    for ident in ("bold", "break"):
        target = units_out[ident].find(f"{{{NS1}}}target")
        assert inner(target) == inner(units_out[ident].find(f"{{{NS1}}}source"))
        assert target.get("state") == "needs-review-translation"
    assert units_out["welcome"].find(f"{{{NS1}}}target").get("state") == "translated"


def test_not_xliff_and_entities_are_not_expanded():
    with pytest.raises(ValueError):
        FORMAT.extract(b"<html><body>no</body></html>")
    with pytest.raises(ValueError):
        FORMAT.extract(b"<xliff version='1.2'><file>")
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE xliff [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2">'
        b'<file source-language="en" datatype="plaintext" original="x"><body>'
        b'<trans-unit id="1"><source>Read &e; now.</source></trans-unit>'
        b"</body></file></xliff>"
    )
    assert [u.text for u in FORMAT.extract(xxe)] == ["Read &e; now."]
    out = formats.translate_document(xxe, FORMAT, upper, Options("en", "pt"))
    assert b"root:" not in out and b"READ &e; NOW." in out


# ---------------------------------------------------------------------------- real files


def real_messages(limit: int = 120) -> list[str]:
    if not CATALOG.is_file():
        pytest.skip(f"no {CATALOG}")
    out = []
    for entry in polib.mofile(str(CATALOG)):
        if entry.msgid and not entry.msgid_plural and any(c.isalpha() for c in entry.msgid):
            out.append(entry.msgid)
    return out[:limit]


def _inline(parent: etree._Element, msgid: str, n: int, version: int, ns: str) -> None:
    """``msgid`` as the content of ``parent`` with inline codes: printf conversions as
    placeholders, line breaks as <x/> / <ph/>, every third message's second word in
    <g> / <pc>."""
    counter = [0]

    def code(kind: str, text: str) -> etree._Element:
        counter[0] += 1
        ident = str(counter[0])
        if version == 1:
            if kind == "lb":
                return etree.Element(f"{{{ns}}}x", id=ident, ctype="lb")
            el = etree.Element(f"{{{ns}}}ph", id=ident)
            el.text = text
            return el
        return etree.Element(f"{{{ns}}}ph", id=ident, disp=text if kind != "lb" else "\\n")

    words = msgid.split(" ")
    if n % 3 == 0 and len(words) > 3 and words[1].isalpha():
        pair = etree.Element(f"{{{ns}}}{'g' if version == 1 else 'pc'}", id="w")
        pair.text = words[1]
        pieces: list = [words[0] + " ", pair, " " + " ".join(words[2:])]
    else:
        pieces = [msgid]
    last = None
    parent.text = ""
    for piece in pieces:
        if isinstance(piece, str):
            parts = piece.replace("%s", "\x01").replace("%d", "\x02").replace("\n", "\x03")
            for ch in parts:
                if ch in "\x01\x02\x03":
                    kind = {"\x01": "%s", "\x02": "%d", "\x03": "lb"}[ch]
                    last = code(kind, kind)
                    parent.append(last)
                    last.tail = ""
                elif last is None:
                    parent.text += ch
                else:
                    last.tail += ch
        else:
            parent.append(piece)
            piece.tail = ""
            last = piece


def real_xliff(version: int) -> bytes:
    ns = NS1 if version == 1 else NS2
    root = etree.Element(f"{{{ns}}}xliff", nsmap={None: ns})
    if version == 1:
        root.set("version", "1.2")
        file = etree.SubElement(
            root, f"{{{ns}}}file", original="sed.po", datatype="po", **{"source-language": "en"}
        )
        body = etree.SubElement(file, f"{{{ns}}}body")
        for n, msgid in enumerate(real_messages()):
            tu = etree.SubElement(body, f"{{{ns}}}trans-unit", id=f"m{n}")
            etree.SubElement(tu, f"{{{ns}}}source").text = msgid
            etree.SubElement(tu, f"{{{ns}}}note").text = f"message {n}"
    else:
        root.set("version", "2.0")
        root.set("srcLang", "en")
        file = etree.SubElement(root, f"{{{ns}}}file", id="f1", original="sed.po")
        for n, msgid in enumerate(real_messages()):
            unit = etree.SubElement(file, f"{{{ns}}}unit", id=f"m{n}")
            segment = etree.SubElement(unit, f"{{{ns}}}segment")
            etree.SubElement(segment, f"{{{ns}}}source").text = msgid
    etree.indent(root)  # before the inline codes go in: mixed content is not indented
    for n, source in enumerate(root.iter(f"{{{ns}}}source")):
        _inline(source, source.text, n, version, ns)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@pytest.fixture(scope="module")
def engine():
    from control_plane.engine import load_engine
    from export.provision import ensure_default_models

    root = Path(os.environ.get("MTB_MODEL_DIR") or REPO / ".models")
    ensure_default_models(root, ("en-pt",))
    return load_engine(root, precision="int8")


@pytest.mark.parametrize("version", [1, 2])
def test_real_messages_through_the_engine(engine, version):
    data = real_xliff(version)
    units = FORMAT.extract(data)
    assert len(units) == len(real_messages())
    assert sum("<" in u.text for u in units) > 20  # inline codes in many of them
    out = formats.translate_document(
        data, FORMAT, lambda xs: engine.translate(xs, "en", "pt"), Options("en", "pt", "v")
    )
    root = etree.fromstring(out)
    src = etree.fromstring(data)
    assert skeleton(root) == skeleton(src)
    ns = NS1 if version == 1 else NS2
    pairs = [(s, s.getparent().find(f"{{{ns}}}target")) for s in root.iter(f"{{{ns}}}source")]
    assert len(pairs) == len(units)
    changed = 0
    for source, target in pairs:
        assert target is not None
        assert "".join(target.itertext()).strip()
        assert inline_tags(target) == inline_tags(source)  # every code kept, once
        state = target.get("state") if version == 1 else target.getparent().get("state")
        assert state == "translated"
        changed += inner(target) != inner(source)
    assert changed >= 0.9 * len(pairs)
    assert FORMAT.extract(out) == []  # nothing left to translate


# ---------------------------------------------------------------------------- hostile input


def segmented(count: int) -> bytes:
    """One 1.2 trans-unit whose <seg-source> holds ``count`` segment markers."""
    marks = " ".join(f'<mrk mtype="seg" mid="{i}">Segment {i}.</mrk>' for i in range(count))
    return (
        f'<xliff version="1.2" xmlns="{NS1}"><file source-language="en"><body>'
        f'<trans-unit id="1"><source>x</source><seg-source>{marks}</seg-source></trans-unit>'
        "</body></file></xliff>"
    ).encode()


def timed_rebuild(data: bytes) -> tuple[float, bytes]:
    texts = [u.text.upper() for u in FORMAT.extract(data)]
    start = time.perf_counter()
    out = FORMAT.rebuild(data, texts, Options("en", "pt"))
    return time.perf_counter() - start, out


def test_many_segment_markers_rebuild_in_linear_time():
    # each marker used to be found by scanning the whole target: 8,000 took ~28 s
    small, _ = timed_rebuild(segmented(2000))
    large, out = timed_rebuild(segmented(8000))
    assert large < 2.0
    assert large < 8 * max(small, 0.01)  # 4x the markers: ~4x linear, ~16x quadratic
    target = etree.fromstring(out).find(f".//{{{NS1}}}target")
    marks = list(target)
    assert len(marks) == 8000
    assert [(m.get("mid"), m.text) for m in marks[::1999]] == [
        (str(i), f"SEGMENT {i}.") for i in range(0, 8000, 1999)
    ]


def test_duplicate_and_nested_segment_markers_behave_as_before():
    """The marker index gives what a scan of the target in document order gave: the
    first marker for a ``mid`` said twice, and a nested marker's copy after its parent is
    filled (outputs recorded from the scanning implementation)."""
    head = '<xliff version="1.2"><file><body><trans-unit id="1"><source>x</source><seg-source>'
    tail = "</seg-source></trans-unit></body></file></xliff>"
    dup = f'{head}<mrk mtype="seg" mid="1">A one.</mrk> <mrk mtype="seg" mid="1">B two.</mrk>{tail}'
    _, out = timed_rebuild(dup.encode())
    assert (
        '<target state="translated" state-qualifier="mt-suggestion"><mrk mtype="seg" '
        'mid="1">B TWO.</mrk> <mrk mtype="seg" mid="1">B two.</mrk></target>'
    ) in out.decode()
    nested = (
        f'{head}<mrk mtype="seg" mid="1">A one <mrk mtype="seg" mid="2">B two.</mrk></mrk>{tail}'
    )
    _, out = timed_rebuild(nested.encode())
    assert (
        '<target state="needs-review-translation" state-qualifier="mt-suggestion"><mrk '
        'mtype="seg" mid="1">A one <mrk mtype="seg" mid="2">B TWO.</mrk></mrk></target>'
    ) in out.decode()


@pytest.mark.parametrize(
    ("declaration", "written"),
    [
        (
            '<?xml version="1.0" encoding="ISO-8859-1" standalone="yes"?>',
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>',
        ),
        ("<?xml version='1.0' encoding='UTF-16'?>", "<?xml version='1.0' encoding='UTF-8'?>"),
        ('<?xml version="1.0" encoding="utf-8"?>', '<?xml version="1.0" encoding="utf-8"?>'),
        ('<?xml version="1.0"?>', '<?xml version="1.0"?>'),
        ("", "<?xml version='1.0' encoding='UTF-8'?>"),
    ],
)
def test_the_declared_encoding_does_not_garble_text(declaration, written):
    """Stored documents reach the format as UTF-8 whatever their declaration says: the
    text reads right, and the declaration written back says what the bytes are."""
    text = "café 日本"
    data = (
        f'{declaration}\n<xliff version="1.2" xmlns="{NS1}"><file source-language="en"><body>'
        f'<trans-unit id="1"><source>{text}</source></trans-unit></body></file></xliff>'
    ).encode()
    assert [u.text for u in FORMAT.extract(data)] == [text]
    out = formats.translate_document(
        data, FORMAT, lambda xs: [Translation(x, 1.0) for x in xs], Options("en", "pt")
    )
    assert out.decode("utf-8").split("\n", 1)[0] == written
    # a reader that honours the declaration (lxml's default parser) gets the same text
    root = etree.fromstring(out)
    assert root.find(f".//{{{NS1}}}source").text == text
    assert root.find(f".//{{{NS1}}}target").text == text


def test_cdata_outside_the_translation_is_kept():
    data = (
        f'<xliff version="1.2" xmlns="{NS1}"><file source-language="en"><body>'
        '<trans-unit id="1"><source>Some <![CDATA[<b>bold</b> & more]]> text</source>'
        "<note><![CDATA[a < b]]></note></trans-unit></body></file></xliff>"
    ).encode()
    # the unit text is plain XML content: no CDATA section for the span mechanism
    assert [u.text for u in FORMAT.extract(data)] == [
        "Some &lt;b&gt;bold&lt;/b&gt; &amp; more text"
    ]
    out = formats.translate_document(
        data, FORMAT, lambda xs: [Translation(x, 1.0) for x in xs], Options("en", "pt")
    ).decode()
    assert "<source>Some <![CDATA[<b>bold</b> & more]]> text</source>" in out
    assert "<note><![CDATA[a < b]]></note>" in out
    assert ">Some &lt;b&gt;bold&lt;/b&gt; &amp; more text</target>" in out
