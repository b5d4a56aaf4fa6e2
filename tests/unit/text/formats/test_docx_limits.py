"""A .docx that unpacks or parses to far more than any real document (a zip bomb) is
refused quickly with the format's ValueError (the service's 422), read from the zip
before python-docx parses anything; real documents still round-trip."""

from __future__ import annotations

import base64
import io
import time
import zipfile
from pathlib import Path

import pytest

from control_plane.jobs import documents
from control_plane.text.formats import Options
from control_plane.text.formats import docx as docx_format
from control_plane.text.formats.docx import FORMAT

SAMPLE = (Path(__file__).parent / "data_docx" / "sample.docx").read_bytes()
OPTIONS = Options(source_lang="en", target_lang="pt")


def with_body(body_bytes: int, unit: bytes, stored: bool = False) -> bytes:
    """The sample with ``body_bytes`` of ``unit`` repeated at the start of its body,
    written in 1 MiB pieces (deflated at level 1: fast), or stored unpacked."""
    src = zipfile.ZipFile(io.BytesIO(SAMPLE))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as dst:
        for item in src.infolist():
            if item.filename != "word/document.xml":
                dst.writestr(item.filename, src.read(item.filename))
        head, tail = src.read("word/document.xml").split(b"<w:body>", 1)
        info = zipfile.ZipInfo("word/document.xml")
        info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
        with dst.open(info, "w", force_zip64=True) as f:
            f.write(head + b"<w:body>")
            piece = unit * ((1 << 20) // len(unit))
            for _ in range(body_bytes // len(piece)):
                f.write(piece)
            f.write(unit * ((body_bytes % len(piece)) // len(unit)))
            f.write(tail)
    return out.getvalue()


def refused(data: bytes, match: str) -> float:
    started = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        FORMAT.extract(data)
    return time.perf_counter() - started


def test_a_part_that_unpacks_past_the_cap_is_refused_quickly():
    bomb = with_body(40 << 20, b"<w:p/>")  # 40 MiB of empty paragraphs
    assert len(bomb) < 1 << 20  # a small upload
    took = refused(bomb, r"word/document\.xml unpacks to 40 MB; at most 32 MB per part")
    assert took < 1.0
    with pytest.raises(ValueError, match="at most 32 MB per part"):
        FORMAT.rebuild(bomb, [], OPTIONS)  # the worker's path checks the same


def test_a_part_that_compresses_too_well_is_refused():
    bomb = with_body(4 << 20, b"<w:p/>")  # under the size caps, ~500x
    assert refused(bomb, r"word/document\.xml unpacks \d+x .*; at most 100x") < 1.0


def test_too_many_tags_or_paragraphs_are_refused_before_parsing(monkeypatch):
    # stored unpacked: no ratio to catch it, only the element counts
    dense = with_body(5 << 20, b"<w:r/>", stored=True)  # ~870k empty runs
    assert refused(dense, r"more than 800,000 XML tags \(at word/document\.xml\)") < 1.0
    empty = with_body(1_300_000, b"<x:p/>", stored=True)  # any prefix: ~216k paragraphs
    assert refused(empty, r"more than 200,000 paragraphs \(at word/document\.xml\)") < 1.0
    monkeypatch.setattr(docx_format, "MAX_PARAGRAPHS", 5)
    refused(SAMPLE, "more than 5 paragraphs")


def test_the_service_answers_it_as_an_invalid_document():
    stored = base64.b64encode(with_body(40 << 20, b"<w:p/>")).decode("ascii")
    with pytest.raises(documents.InvalidDocument, match="at most 32 MB per part") as caught:
        documents.extract(stored, "docx")
    assert caught.value.code == "invalid_document"


def test_a_document_just_under_the_caps_is_read():
    # ~60k formatted paragraphs, 750k tags, stored: what the caps still let through
    unit = (
        b"<w:p><w:r><w:t>word</w:t></w:r><w:r><w:rPr><w:i/></w:rPr>"
        b"<w:t>other</w:t></w:r><w:r><w:tab/></w:r></w:p>"
    )
    data = with_body(46_000 * len(unit), unit, stored=True)
    units = FORMAT.extract(data)
    assert len(units) > 46_000 and units[0].text == "<r0>word</r0>other<t0/>"


def test_real_documents_still_round_trip():
    units = FORMAT.extract(SAMPLE)
    assert units
    out = FORMAT.rebuild(SAMPLE, [u.text for u in units], OPTIONS)
    assert [u.text for u in FORMAT.extract(out)] == [u.text for u in units]


def test_a_corrupt_file_keeps_its_message():
    with pytest.raises(ValueError, match="not a readable .docx file"):
        FORMAT.extract(b"not a zip file")
    broken = bytearray(SAMPLE)
    entry = zipfile.ZipFile(io.BytesIO(SAMPLE)).getinfo("word/styles.xml")
    broken[entry.header_offset + 100 : entry.header_offset + 120] = b"\xff" * 20  # its data
    with pytest.raises(ValueError, match="not a readable .docx file"):
        FORMAT.extract(bytes(broken))
