"""Hostile uploads and bodies past the JSON endpoint's guards, against the real service
(``hostile_service``): upload form fields are bounded like a JSON body and refused before
a job is kept, an undecodable Content-Encoding is a 400, a file name that is not UTF-8 is
stored as text, and a small document that is costly to parse does not hold the event
loop (/healthz within 200 ms, measured by a poller of its own)."""

from __future__ import annotations

import gzip
import io
import random
import time
import zipfile

import pytest
import requests

from devstack.healthz import HealthzPoller
from tests.functional.api_service import Service, wait_for

HEALTHZ_LIMIT_S = 0.2
B = "BOUNDARY123"
FORM = f"multipart/form-data; boundary={B}"


def multipart(fields: dict[str, bytes], file: bytes, disposition: bytes) -> bytes:
    """A form byte for byte (a client library would encode the file name)."""
    parts = {"source_language": b"en", "target_language": b"pt", **fields}
    out = b"".join(
        f'--{B}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'.encode() + v + b"\r\n"
        for k, v in parts.items()
    )
    out += f"--{B}\r\n".encode() + b"Content-Disposition: " + disposition + b"\r\n\r\n" + file
    return out + f"\r\n--{B}--\r\n".encode()


def post(svc: Service, path: str, body: bytes, **headers: str) -> requests.Response:
    return requests.post(
        f"{svc.url}{path}", data=body, headers={**svc.headers("enterprise"), **headers},
        timeout=120,
    )  # fmt: skip


def docx_of_empty_paragraphs(count: int) -> bytes:
    """A .docx of ``count`` empty paragraphs and one sentence: about a second to parse.
    Each paragraph has a random revision id, so the file does not unpack so many times
    its size that it is refused as a zip bomb before it is parsed."""
    rng = random.Random(7)
    paragraphs = "".join(f'<w:p w:rsidR="{rng.getrandbits(32):08X}"/>' for _ in range(count))
    document = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        "<w:body><w:p><w:r><w:t>Hello world.</w:t></w:r></w:p>" + paragraphs
        + "</w:body></w:document>"
    )  # fmt: skip
    content_types = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/word/document.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
    )
    rels = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
        '2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>'
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("[Content_Types].xml", content_types)
        z.writestr("_rels/.rels", rels)
        z.writestr("word/document.xml", document)
    return out.getvalue()


def test_deep_upload_metadata_is_refused_before_a_job_is_kept(hostile_service):
    svc = hostile_service
    listed = requests.get(f"{svc.url}/api/v1/jobs", headers=svc.headers("enterprise"), timeout=30)
    before = listed.json()["total"]
    for value in (b'{"a":' * 500 + b"1" + b"}" * 500, b"[" * 3000 + b"]" * 3000):
        body = multipart({"metadata": value}, b"Hello world.", b'form-data; name="file"; '
                         b'filename="a.txt"')  # fmt: skip
        r = post(svc, "/api/v1/documents", body, **{"Content-Type": FORM})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "json_too_complex", r.text
    listed = requests.get(f"{svc.url}/api/v1/jobs", headers=svc.headers("enterprise"), timeout=30)
    assert listed.status_code == 200, listed.text
    assert listed.json()["total"] == before  # no job kept, none counted


@pytest.mark.parametrize("path", ["/api/v1/translate", "/api/v1/documents"])
def test_an_undecodable_content_encoding_is_a_400(hostile_service, path):
    svc = hostile_service
    form = multipart({}, b"Hello.", b'form-data; name="file"; filename="a.txt"')
    ctype = FORM if path.endswith("documents") else "application/json"
    for encoding, body in (("gzip", b"notgzip"), ("deflate", form), ("gzip", b"nope" + form)):
        r = post(svc, path, body, **{"Content-Type": ctype, "Content-Encoding": encoding})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == "malformed_body" and encoding in error["message"], error
    # a body that is what it says is still read
    ok = b'{"content": "Hello.", "source_language": "en", "target_language": "pt"}'
    r = post(svc, "/api/v1/translate", gzip.compress(ok),
             **{"Content-Type": "application/json", "Content-Encoding": "gzip"})  # fmt: skip
    assert r.status_code == 202, r.text


def test_a_latin1_file_name_is_stored_as_text(hostile_service):
    svc = hostile_service
    dispo = b'form-data; name="file"; filename="r\xe9sum\xe9.md"'
    r = post(svc, "/api/v1/documents", multipart({}, b"# Hello there", dispo),
             **{"Content-Type": FORM})  # fmt: skip
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert wait_for(svc, job_id)["status"] == "completed"
    res = requests.get(f"{svc.url}/api/v1/jobs/{job_id}/result",
                       headers=svc.headers("enterprise"), timeout=30)  # fmt: skip
    assert res.status_code == 200, res.text
    assert "filename*=UTF-8''r%EF%BF%BDsum%EF%BF%BD.pt.md" in res.headers["Content-Disposition"]


CASES = [
    ("docx of 150,000 empty paragraphs", "/api/v1/documents",
     lambda: multipart({}, docx_of_empty_paragraphs(150_000),
                       b'form-data; name="file"; filename="bomb.docx"'), FORM),
    ("markdown of 60,000 [", "/api/v1/documents",
     lambda: multipart({}, b"[" * 60_000, b'form-data; name="file"; filename="a.md"'), FORM),
    ("markdown of 60,000 [ as JSON", "/api/v1/translate",
     lambda: b'{"source_language": "en", "target_language": "pt", "format": "markdown", '
     b'"content": "' + b"[" * 60_000 + b'"}', "application/json"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "path", "body", "ctype"), CASES, ids=[c[0] for c in CASES])
def test_a_small_costly_document_does_not_hold_the_loop(hostile_service, name, path, body, ctype):
    svc = hostile_service
    data = body()
    with HealthzPoller(svc.url) as watch:
        t0 = time.perf_counter()
        r = post(svc, path, data, **{"Content-Type": ctype})
        seconds = time.perf_counter() - t0
    worst = max(watch.latencies)
    print(f"\n{name}: {len(data):,} bytes -> {r.status_code} in {seconds:.2f} s; "
          f"/healthz worst {worst * 1000:.0f} ms over {len(watch.latencies)} polls")  # fmt: skip
    assert not watch.failures, watch.failures
    assert worst < HEALTHZ_LIMIT_S, f"/healthz took {worst * 1000:.0f} ms during the submit"
    # accepted, or refused by a format's own limits: either way a JSON answer
    assert r.status_code in (202, 413, 422), r.text[:2000]
    if r.status_code == 202:  # not worth translating: cancelled (409: it finished first)
        c = requests.delete(f"{svc.url}/api/v1/jobs/{r.json()['job_id']}",
                            headers=svc.headers("enterprise"), timeout=30)  # fmt: skip
        assert c.status_code in (200, 409), c.text
