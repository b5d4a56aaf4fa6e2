"""Issue 12 end to end: every document format uploaded to `mtctl serve`
(POST /api/v1/documents), translated, and downloaded as a file of the same structure;
source_language auto on an upload."""

from __future__ import annotations

import pytest
import requests

from control_plane.text import formats
from control_plane.text.chunking import Layout
from evaluation.documents import BUILDERS, EXTENSIONS, build
from evaluation.sets import gettext_set

from .conftest import Service, wait_for

DOCUMENT_FORMATS = ["markdown", "po", "xliff", "srt", "vtt", "docx"]


def sentences(offset: int, n: int) -> list[str]:
    """Distinct one-sentence messages of the evaluation set (no two tests share one)."""
    single = [s for s, _ in gettext_set("en-pt") if len(Layout.parse(s, "en").segments) == 1]
    return single[offset : offset + n]


def upload(svc: Service, data: bytes, filename: str, **fields: str) -> dict:
    form = {"source_language": "en", "target_language": "pt", **fields}
    r = requests.post(
        f"{svc.url}/api/v1/documents",
        headers=svc.headers("enterprise"),
        data=form,
        files={"file": (filename, data)},
        timeout=60,
    )
    assert r.status_code == 202, r.text
    return r.json()


def filled(fmt: str, data: bytes) -> int:
    """Translated entries (po: msgstr or every plural form; xliff: <target> elements)."""
    if fmt == "po":
        import polib

        catalog = polib.pofile(data.decode("utf-8"))
        return sum(
            bool(e.msgstr) or (bool(e.msgstr_plural) and all(e.msgstr_plural.values()))
            for e in catalog
        )
    from lxml import etree

    return len(etree.fromstring(data).findall(".//{*}target"))


def plurals(fmt: str, data: bytes) -> int:
    """Units that are a plural entry's second form (one entry, two units)."""
    if fmt != "po":
        return 0
    import polib

    return sum(bool(e.msgid_plural) for e in polib.pofile(data.decode("utf-8")))


def download(svc: Service, job_id: str) -> requests.Response:
    r = requests.get(
        f"{svc.url}/api/v1/jobs/{job_id}/result", headers=svc.headers("enterprise"), timeout=60
    )
    assert r.status_code == 200, r.text
    return r


@pytest.mark.parametrize("fmt", DOCUMENT_FORMATS)
def test_document_round_trip(service, fmt):
    offset = 20 * DOCUMENT_FORMATS.index(fmt) + (0 if service.backend == "sqlite" else 200)
    data = build(fmt, sentences(offset, 16))
    sub = upload(service, data, f"guide{EXTENSIONS[fmt]}")
    assert sub["format"] == fmt
    job = wait_for(service, sub["job_id"])
    assert job["status"] == "completed", job
    assert job["words_processed"] == job["word_count"] > 0
    r = download(service, sub["job_id"])
    doc = formats.get(fmt)
    assert r.headers["Content-Type"].split(";")[0] == doc.media_type.split(";")[0]
    assert "guide.pt." in r.headers["Content-Disposition"]
    source_units, out = doc.extract(data), r.content
    if fmt in ("po", "xliff"):  # filled targets are no longer units to translate
        assert doc.extract(out) == []
        assert filled(fmt, out) == filled(fmt, data) + len(source_units) - plurals(fmt, data)
    else:  # the same units, each one translated
        out_units = doc.extract(out)
        assert len(out_units) == len(source_units)
        changed = sum(a.text != b.text for a, b in zip(source_units, out_units, strict=True))
        assert changed >= 0.9 * len(source_units), (changed, len(source_units))


def test_auto_source_on_an_upload(service):
    data = build("markdown", ["O arquivo não pôde ser aberto porque está corrompido."] * 1)
    sub = upload(service, data, "leia-me.md", source_language="auto", target_language="en")
    assert sub["source_language"] == "pt" and sub["detected_language"] == "pt"
    job = wait_for(service, sub["job_id"])
    assert job["status"] == "completed", job
    assert b"file" in download(service, sub["job_id"]).content.lower()


def test_a_broken_file_is_a_clear_422(service):
    r = requests.post(
        f"{service.url}/api/v1/documents",
        headers=service.headers("enterprise"),
        data={"source_language": "en", "target_language": "pt"},
        files={"file": ("broken.docx", b"PK\x03\x04 not really a zip")},
        timeout=60,
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_document"


def test_every_builder_has_a_format():
    assert set(DOCUMENT_FORMATS) | {"text", "html"} == set(BUILDERS)
