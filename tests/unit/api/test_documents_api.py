"""POST /api/v1/documents (file uploads), document results as files, and
source_language "auto", through the embedded app (fake engine: reverses words)."""

from __future__ import annotations

import aiohttp
import polib

from tests.unit.api.test_app import client, engine, settings, user, wait_done  # noqa: F401

PO = """\
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\\n"

#: src/main.c:10
msgid "Open the file"
msgstr ""

#, c-format
msgid "Deleted %d files"
msgstr ""

msgid "42"
msgstr ""
"""


def form(data: bytes | str, filename: str | None, **fields: str) -> aiohttp.FormData:
    f = aiohttp.FormData()
    for k, v in fields.items():
        f.add_field(k, v)
    f.add_field("file", data, filename=filename, content_type="application/octet-stream")
    return f


async def test_po_upload_round_trip(client):  # noqa: F811
    h = user(client)
    r = await client.post(
        "/api/v1/documents",
        data=form(PO, "app.pot", source_language="en", target_language="pt"),
        headers=h,
    )
    assert r.status == 202, await r.text()
    sub = await r.json()
    assert sub["format"] == "po"
    assert sub["word_count"] == 6  # "Open the file", "Deleted %d files": no keywords, no "42"
    done = await wait_done(client, sub["job_id"], h)
    assert done["status"] == "completed", done
    assert done["words_processed"] == done["word_count"] and done["progress"] == 1.0
    res = await client.get(f"/api/v1/jobs/{sub['job_id']}/result", headers=h)
    assert res.status == 200
    assert res.headers["Content-Type"].startswith("text/x-gettext-translation")
    assert 'filename="app.pt.po"' in res.headers["Content-Disposition"]
    catalog = polib.pofile((await res.read()).decode("utf-8"))
    by_id = {e.msgid: e for e in catalog}
    assert by_id["Open the file"].msgstr == "file the Open [pt]"
    assert "%d" in by_id["Deleted %d files"].msgstr
    assert by_id["42"].msgstr == ""  # nothing to translate: left alone
    assert "fuzzy" in by_id["Open the file"].flags
    assert by_id["Open the file"].occurrences == [("src/main.c", "10")]
    # the JSON form on request
    js = await (await client.get(f"/api/v1/jobs/{sub['job_id']}/result?as=json", headers=h)).json()
    assert js["format"] == "po" and "file the Open [pt]" in js["translated_content"]
    # ... or by Accept (the design's contract: the result is JSON); */* gets the file
    url = f"/api/v1/jobs/{sub['job_id']}/result"
    r = await client.get(url, headers={**h, "Accept": "application/json"})
    assert r.headers["Content-Type"].startswith("application/json")
    assert (await r.json())["translated_content"] == js["translated_content"]
    r = await client.get(url, headers={**h, "Accept": "*/*"})
    assert r.headers["Content-Type"].startswith("text/x-gettext-translation")
    accept_both = "text/x-gettext-translation, application/json;q=0.5"
    r = await client.get(url, headers={**h, "Accept": accept_both})
    assert r.headers["Content-Type"].startswith("text/x-gettext-translation")


async def test_upload_errors_are_clear(client):  # noqa: F811
    h = user(client)
    r = await client.post(
        "/api/v1/documents",
        data=form("hello", "notes.bin", source_language="en", target_language="pt"),
        headers=h,
    )
    assert r.status == 422 and (await r.json())["error"]["code"] == "unknown_format"
    assert "format=" in (await r.json())["error"]["message"]
    r = await client.post(
        "/api/v1/documents",
        data=form('msgid "a"\nfoo bar\n', "bad.po", source_language="en", target_language="pt"),
        headers=h,
    )
    assert r.status == 422, await r.text()
    assert (await r.json())["error"]["code"] == "invalid_document"
    r = await client.post("/api/v1/documents", json={"content": "x"}, headers=h)  # not a form
    assert r.status == 415
    r = await client.post(
        "/api/v1/documents",
        data=form(b"\xff\xfe bad", "x.po", source_language="en", target_language="pt"),
        headers=h,
    )
    assert r.status == 422 and (await r.json())["error"]["code"] == "invalid_document"
    f = aiohttp.FormData(default_to_multipart=True)
    f.add_field("source_language", "en")
    r = await client.post("/api/v1/documents", data=f, headers=h)
    assert r.status == 422 and "file" in (await r.json())["error"]["message"]


async def test_source_language_auto(client):  # noqa: F811
    h = user(client)
    r = await client.post(
        "/api/v1/translate",
        json={
            "source_language": "auto",
            "target_language": "en",
            "content": "O arquivo não pôde ser aberto porque está corrompido.",
        },
        headers=h,
    )
    assert r.status == 202, await r.text()
    sub = await r.json()
    assert sub["source_language"] == "pt" and sub["detected_language"] == "pt"
    assert sub["detection_confidence"] > 0.5
    done = await wait_done(client, sub["job_id"], h)
    assert done["detected_language"] == "pt"
    # detected, but no model serves it: 400 naming the language
    r = await client.post(
        "/api/v1/translate",
        json={
            "source_language": "auto",
            "target_language": "pt",
            "content": "Die Datei konnte nicht geöffnet werden, weil sie beschädigt ist.",
        },
        headers=h,
    )
    assert r.status == 400, await r.text()
    err = (await r.json())["error"]
    assert err["code"] == "unsupported_language_pair" and "de" in err["message"]
    assert err["details"]["detected_language"] == "de"
    r = await client.post(
        "/api/v1/translate",
        json={"source_language": "auto", "target_language": "pt", "content": "1234 5678"},
        headers=h,
    )
    assert r.status == 422 and (await r.json())["error"]["code"] == "language_not_detected"


async def test_json_submission_of_a_binary_document_is_base64(client):  # noqa: F811
    import base64

    from evaluation.documents import build

    h = user(client)
    data = build("docx", ["Open the file now.", "Save the file.", "Close it.", "Done here."])
    body = {"source_language": "en", "target_language": "pt", "format": "docx"}
    r = await client.post(
        "/api/v1/translate", json={**body, "content": base64.b64encode(data).decode()}, headers=h
    )
    assert r.status == 202, await r.text()
    done = await wait_done(client, (await r.json())["job_id"], h)
    assert done["status"] == "completed", done
    res = await client.get(f"/api/v1/jobs/{done['job_id']}/result", headers=h)
    assert res.headers["Content-Type"].startswith("application/vnd.openxmlformats")
    assert (await res.read())[:2] == b"PK"  # a zip: the .docx itself
    r = await client.post("/api/v1/translate", json={**body, "content": "not base64!"}, headers=h)
    assert r.status == 422 and (await r.json())["error"]["code"] == "invalid_document"
    assert "base64" in (await r.json())["error"]["message"]


async def test_a_broken_multipart_header_is_a_400(client):  # noqa: F811
    """A part header aiohttp refuses (control bytes in a name) is the caller's error."""
    b = b"ead2fcfbf24017c49c3f5be372b848a7"
    body = b"--" + b + b'\r\nContent-Disposition: form-data; name="\xc2\x9e\x05\x12"\r\n\r\n{}\r\n'
    body += b"--" + b + b"--\r\n"
    ctype = "multipart/form-data; boundary=" + b.decode()
    r = await client.post(
        "/api/v1/documents", data=body, headers={**user(client), "Content-Type": ctype}
    )
    assert r.status == 400 and (await r.json())["error"]["code"] == "malformed_form"
