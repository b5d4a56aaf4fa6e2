"""The docx format: a generated Word file (headings, mixed formatting, links, a 3x3 table
with a nested table, header and footer, lists, a field) round-tripped through a fake
translator and the real int8 engine, with the same structure afterwards."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import docx
import pytest
from docx.enum.text import WD_BREAK
from docx.opc.constants import RELATIONSHIP_TYPE as RT
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import RGBColor
from lxml import etree

from control_plane.engine.base import Translation
from control_plane.text import formats
from control_plane.text.formats import Options, translate_document
from control_plane.text.formats.docx import FORMAT

REPO = Path(__file__).resolve().parents[4]
OPTIONS = Options(source_lang="en", target_lang="pt")
NAMES = {"python-docx", "srt"}  # cells that are names: the model copies them


# ---------------------------------------------------------------------------- the file


def _link(paragraph, url: str, text: str, bold: bool = False) -> None:
    r_id = paragraph.part.relate_to(url, RT.HYPERLINK, is_external=True)
    link = OxmlElement("w:hyperlink")
    link.set(qn("r:id"), r_id)
    run = OxmlElement("w:r")
    rpr = OxmlElement("w:rPr")
    style = OxmlElement("w:rStyle")
    style.set(qn("w:val"), "Hyperlink")
    rpr.append(style)
    if bold:
        rpr.append(OxmlElement("w:b"))
    run.append(rpr)
    t = OxmlElement("w:t")
    t.text = text
    run.append(t)
    link.append(run)
    paragraph._p.append(link)


def _field(paragraph, instruction: str, result: str) -> None:
    def run_with(child) -> None:  # noqa: ANN001
        run = OxmlElement("w:r")
        run.append(child)
        paragraph._p.append(run)

    begin = OxmlElement("w:fldChar")
    begin.set(qn("w:fldCharType"), "begin")
    run_with(begin)
    instr = OxmlElement("w:instrText")
    instr.text = instruction
    run_with(instr)
    sep = OxmlElement("w:fldChar")
    sep.set(qn("w:fldCharType"), "separate")
    run_with(sep)
    paragraph.add_run(result)
    end = OxmlElement("w:fldChar")
    end.set(qn("w:fldCharType"), "end")
    run_with(end)


def make_docx() -> bytes:
    d = docx.Document()
    section = d.sections[0]
    section.header.paragraphs[0].text = "Quarterly report of the translation service"
    footer = section.footer.paragraphs[0]
    footer.add_run("Page ")
    _field(footer, " PAGE ", "1")
    footer.add_run(" of the internal report")

    d.add_heading("Translating documents", level=0)
    d.add_heading("Why formatting matters", level=1)
    p = d.add_paragraph("The service keeps ")
    p.add_run("bold words").bold = True
    p.add_run(" and ")
    p.add_run("italic phrases").italic = True
    p.add_run(" in the middle of a sentence. Read the ")
    _link(p, "https://example.com/guide", "user guide")
    p.add_run(" before you start.")
    p = d.add_paragraph("Red text is ")
    red = p.add_run("important")
    red.font.color.rgb = RGBColor(0xC0, 0x00, 0x00)
    red.underline = True
    p.add_run(" for the readers.\tA tab separates this sentence.")
    p.add_run().add_break(WD_BREAK.LINE)
    p.add_run("The second line has a ")
    p.add_run("font").font.name = "Courier New"
    p.add_run(" of its own.")
    d.add_heading("Lists", level=2)
    d.add_paragraph("Open the file you want to translate.", style="List Bullet")
    d.add_paragraph("Choose the target language.", style="List Bullet")
    d.add_paragraph("Download the translated document.", style="List Number")
    d.add_paragraph("Wait for the job to finish.", style="List Number")

    table = d.add_table(rows=3, cols=3)
    table.style = "Table Grid"
    labels = [
        ["Format", "Library", "Structure"],
        ["Word files", "python-docx", "Tables and headers"],
        ["Subtitles", "srt", "Cue timings"],
    ]
    for r, row in enumerate(labels):
        for c, text in enumerate(row):
            table.cell(r, c).text = text
    table.cell(0, 0).paragraphs[0].runs[0].bold = True
    cell = table.cell(2, 2)
    cell.add_paragraph("The nested table lists the owners.")
    nested = cell.add_table(rows=2, cols=2)
    nested.cell(0, 0).text = "First owner"
    nested.cell(0, 1).text = "Second owner"
    nested.cell(1, 0).text = "The first team writes the parsers."
    nested.cell(1, 1).text = "The second team reviews the output."

    d.add_paragraph("")  # empty paragraphs stay empty and are not units
    p = d.add_paragraph("The last paragraph mentions ")
    p.add_run("Portuguese").bold = True
    p.add_run(" and ")
    _link(p, "https://example.com/languages", "other languages", bold=True)
    p.add_run(".")

    # a second section with headers of its own, markup characters, a bookmark, a field in
    # running text and a paragraph that is bold throughout
    second = d.add_section()
    second.header.is_linked_to_previous = False
    second.header.paragraphs[0].text = "Appendix with the raw figures"
    second.footer.is_linked_to_previous = False
    second.footer.paragraphs[0].text = "Confidential draft"
    p = d.add_paragraph('Use <b> tags & quotes "as is" when ')
    start = OxmlElement("w:bookmarkStart")
    start.set(qn("w:id"), "7")
    start.set(qn("w:name"), "figures")
    p._p.append(start)
    p.add_run("the figures")
    end = OxmlElement("w:bookmarkEnd")
    end.set(qn("w:id"), "7")
    p._p.append(end)
    p.add_run(" change on ")
    _field(p, " DATE ", "1 May")
    p.add_run(".")
    d.add_paragraph().add_run("Everything in this paragraph is bold.").bold = True
    out = io.BytesIO()
    d.save(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def source() -> bytes:
    return make_docx()


# ---------------------------------------------------------------------------- structure


def _paragraphs_of(container) -> list:  # noqa: ANN001 - a python-docx block container
    """The container's paragraphs, tables' cells recursively included, in order."""
    out = []
    for block in container.iter_inner_content():
        if isinstance(block, docx.table.Table):
            for row in block.rows:
                for cell in row.cells:
                    out.extend(_paragraphs_of(cell))
        else:
            out.append(block)
    return out


def _tables(container) -> list:  # noqa: ANN001
    shapes = []
    for table in container.tables:
        shapes.append((len(table.rows), len(table.columns)))
        for row in table.rows:
            for cell in row.cells:
                shapes.append(_tables(cell))
    return shapes


def _formats(paragraph) -> set[str]:  # noqa: ANN001
    out = set()
    for run in paragraph._p.iter(qn("w:r")):
        if any(t.text for t in run.findall(qn("w:t"))):
            rpr = run.find(qn("w:rPr"))
            out.add("" if rpr is None else etree.tostring(rpr, encoding="unicode"))
    return out


def structure(data: bytes) -> dict:
    d = docx.Document(io.BytesIO(data))
    containers = {"body": d}
    for i, section in enumerate(d.sections):
        containers[f"header{i}"] = section.header
        containers[f"footer{i}"] = section.footer
    paragraphs = {name: _paragraphs_of(c) for name, c in containers.items()}
    return {
        "paragraphs": {name: len(ps) for name, ps in paragraphs.items()},
        "tables": _tables(d),
        "styles": {name: [p.style.name for p in ps] for name, ps in paragraphs.items()},
        "formats": {name: [_formats(p) for p in ps] for name, ps in paragraphs.items()},
        "links": len(d.element.body.findall(".//" + qn("w:hyperlink"))),
        "fields": len(d.sections[0].footer._element.findall(".//" + qn("w:instrText"))),
        "rels": sorted((r.reltype, r.target_ref) for r in d.part.rels.values() if r.is_external),
    }


def texts(data: bytes) -> list[str]:
    d = docx.Document(io.BytesIO(data))
    out = _paragraphs_of(d)
    for section in d.sections:
        out += _paragraphs_of(section.header) + _paragraphs_of(section.footer)
    return [p.text for p in out]


# ---------------------------------------------------------------------------- tests


def test_registered():
    assert formats.get("docx") is FORMAT
    assert formats.by_extension("Report.DOCX") is FORMAT
    assert FORMAT.binary and FORMAT.markup == "xml"


def test_units(source):
    units = FORMAT.extract(source)
    by_text = {re.sub(r"<[^>]+>", "", u.text): u.text for u in units}
    # body, lists, every table cell (nested table too), header, footer
    for text in [
        "Translating documents",
        "Open the file you want to translate.",
        "Word files",
        "The nested table lists the owners.",
        "The second team reviews the output.",
        "Quarterly report of the translation service",
    ]:
        assert text in by_text, text
    assert len({u.key for u in units}) == len(units)
    mixed = next(u.text for u in units if u.text.startswith("The service keeps"))
    # the dominant formatting is bare text; the rest are paired tags, links <aN>
    assert re.fullmatch(
        r"The service keeps <r(\d+)>bold words</r\1> and <r(\d+)>italic phrases</r\2> in "
        r"the middle of a sentence\. Read the <a0>user guide</a0> before you start\.",
        mixed,
    ), mixed
    red = next(u.text for u in units if u.text.startswith("Red text"))
    assert "<t" in red and "/>" in red  # the tab and the line break are void tags
    footer = next(u.text for u in units if u.text.startswith("Page"))
    assert re.fullmatch(r"Page <t\d+/> of the internal report", footer), footer
    # markup characters are escaped; a bookmark around words and a field are void tags
    escaped = next(u.text for u in units if u.text.startswith("Use"))
    assert re.fullmatch(
        r"Use &lt;b&gt; tags &amp; quotes \"as is\" when <t0/>the figures<t1/> change on "
        r"<t2/>\.",
        escaped,
    ), escaped
    # a paragraph in one formatting has no tags (its runs keep the formatting)
    assert "Everything in this paragraph is bold." in [u.text for u in units]
    # headers and footers of both sections
    assert "Appendix with the raw figures" in by_text and "Confidential draft" in by_text
    assert not any(u.text == "" for u in units)


def test_identity_round_trip_is_lossless(source):
    units = FORMAT.extract(source)
    out = FORMAT.rebuild(source, [u.text for u in units], OPTIONS)
    assert structure(out) == structure(source)
    assert texts(out) == texts(source)
    assert [u.text for u in FORMAT.extract(out)] == [u.text for u in units]


def _upper_outside_tags(texts_in: list[str]) -> list[Translation]:
    # the engine sees mask tokens (X1, X2): upper-casing leaves them as they are
    return [Translation(t.upper(), 1.0) for t in texts_in]


def test_round_trip_with_a_fake_translator(source):
    out = translate_document(source, FORMAT, _upper_outside_tags, OPTIONS)
    assert structure(out) == structure(source)
    before, after = texts(source), texts(out)
    # everything upper-cased but the field's result ("1 May"), which is Word's
    assert [t.replace("1 May", "1 MAY") for t in after] == [t.upper() for t in before]
    d = docx.Document(io.BytesIO(out))
    bold = {r.text for p in d.paragraphs for r in p.runs if r.bold}
    assert {"BOLD WORDS", "PORTUGUESE", "EVERYTHING IN THIS PARAGRAPH IS BOLD."} <= bold
    # the field's result is Word's, not translated; the bookmark still wraps its words
    assert 'USE <B> TAGS & QUOTES "AS IS" WHEN THE FIGURES CHANGE ON 1 May.' in after
    body = d.element.body
    start = body.find(".//" + qn("w:bookmarkStart"))
    assert start is not None and start.getnext().find(qn("w:t")).text == "THE FIGURES"
    assert docx.Document(io.BytesIO(out)).tables[0].cell(0, 0).paragraphs[0].runs[0].bold


def test_bad_input():
    with pytest.raises(ValueError, match="docx"):
        FORMAT.extract(b"not a zip file")
    with pytest.raises(ValueError):
        FORMAT.rebuild(make_docx(), ["one"], OPTIONS)


def test_saved_fixture_round_trips():
    """A fixture written once by this module (python-docx's default template)."""
    path = Path(__file__).parent / "data_docx" / "sample.docx"
    data = path.read_bytes()
    out = translate_document(data, FORMAT, _upper_outside_tags, OPTIONS)
    assert structure(out) == structure(data)


_FOOTNOTES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<w:footnotes xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
    '<w:footnote w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p>'
    "</w:footnote>"
    '<w:footnote w:id="1"><w:p><w:r><w:footnoteRef/></w:r><w:r><w:t xml:space="preserve">'
    " The note explains </w:t></w:r><w:r><w:rPr><w:i/></w:rPr><w:t>where</w:t></w:r>"
    '<w:r><w:t xml:space="preserve"> the figures come from.</w:t></w:r></w:p></w:footnote>'
    "</w:footnotes>"
)


def with_footnote(data: bytes) -> bytes:
    """The document with a footnotes part (python-docx cannot write one) and a
    reference to note 1 at the end of its first paragraph."""
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            body = src.read(item.filename)
            if item.filename == "[Content_Types].xml":
                body = body.replace(
                    b"</Types>",
                    b'<Override PartName="/word/footnotes.xml" ContentType="application/'
                    b'vnd.openxmlformats-officedocument.wordprocessingml.footnotes+xml"/>'
                    b"</Types>",
                )
            elif item.filename == "word/_rels/document.xml.rels":
                body = body.replace(
                    b"</Relationships>",
                    b'<Relationship Id="rIdNotes" Type="http://schemas.openxmlformats.org/'
                    b'officeDocument/2006/relationships/footnotes" Target="footnotes.xml"/>'
                    b"</Relationships>",
                )
            elif item.filename == "word/document.xml":
                body = body.replace(
                    b"</w:p>",
                    b'<w:r><w:footnoteReference w:id="1"/></w:r></w:p>',
                    1,
                )
            dst.writestr(item, body)
        dst.writestr("word/footnotes.xml", _FOOTNOTES)
    return out.getvalue()


def test_footnotes_are_units(source):
    data = with_footnote(source)
    units = FORMAT.extract(data)
    assert units[0].text == "Translating documents<t0/>"  # the reference is a void
    note = units[-1]
    assert note.key == "/word/footnotes.xml#1"
    assert note.text == "<t0/> The note explains <r1>where</r1> the figures come from."
    out = translate_document(data, FORMAT, _upper_outside_tags, OPTIONS)
    assert structure(out) == structure(data)
    again = FORMAT.extract(out)
    assert again[-1].text == "<t0/> THE NOTE EXPLAINS <r1>WHERE</r1> THE FIGURES COME FROM."
    assert [u.key for u in again] == [u.key for u in units]


# ---------------------------------------------------------------------------- real engine


@pytest.fixture(scope="module")
def model_dir() -> Path:
    from export.provision import ensure_default_models

    root = Path(os.environ.get("MTB_MODEL_DIR") or REPO / ".models")
    ensure_default_models(root, ("en-pt",))
    return root


def test_round_trip_with_the_int8_engine(source, model_dir):
    from control_plane.engine import load_engine

    engine = load_engine(model_dir, precision="int8")
    out = translate_document(source, FORMAT, lambda xs: engine.translate(xs, "en", "pt"), OPTIONS)
    d = docx.Document(io.BytesIO(out))  # opens
    # paragraphs per container, table shapes, styles, the formatting set of every
    # paragraph, links, fields and relationships
    assert structure(out) == structure(source)
    before, after = texts(source), texts(out)
    for src, dst in zip(before, after, strict=True):
        if re.search(r"[A-Za-z]{3}", src) and src not in NAMES:
            assert dst != src and dst.strip(), (src, dst)
    print("\n" + "\n".join(f"{a!r} -> {b!r}" for a, b in zip(before, after, strict=True)))
    # bold text is still bold, italics still italic, the links still hold text
    runs = [r for p in d.paragraphs for r in p.runs]
    assert any(r.bold and r.text.strip() for r in runs)
    assert any(r.italic and r.text.strip() for r in runs)
    for link in d.element.body.iter(qn("w:hyperlink")):
        assert "".join(t.text or "" for t in link.iter(qn("w:t"))).strip()
