"""Hostile input the review found past the JSON endpoint's guards: upload form fields,
undecodable bodies, odd file names, document admission on the event loop, clients that
disconnect (embedded app, fake engine; the middleware and helpers directly)."""

from __future__ import annotations

import gzip
import json
import threading
from unittest import mock
from urllib.parse import unquote

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from sqlalchemy import text

from control_plane.api import errors
from control_plane.api.protocol import metadata_view
from control_plane.api.routes import documents, translate
from control_plane.jobs import admission
from control_plane.jobs.json_body import MAX_DEPTH, BodyError, parse_json, too_deep
from tests.unit.api.test_app import client, engine, settings, user, wait_done  # noqa: F401

B = "BOUNDARY123"
CTYPE = f"multipart/form-data; boundary={B}"


def multipart(
    fields: dict[str, bytes], file: bytes = b"Hello world.", disposition: bytes | None = None
) -> bytes:
    """A form with the languages, ``fields`` (raw bytes) and a file part, byte for byte
    (aiohttp.FormData would encode the file name)."""
    parts = {"source_language": b"en", "target_language": b"pt", **fields}
    out = b"".join(
        f'--{B}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'.encode() + v + b"\r\n"
        for k, v in parts.items()
    )
    dispo = disposition or b'form-data; name="file"; filename="a.txt"'
    out += f"--{B}\r\n".encode() + b"Content-Disposition: " + dispo + b"\r\n\r\n" + file
    return out + f"\r\n--{B}--\r\n".encode()


async def upload(client, body: bytes, h: dict):  # noqa: ANN001, ANN201, F811
    return await client.post("/api/v1/documents", data=body, headers={**h, "Content-Type": CTYPE})


async def error_of(r) -> tuple[int, str, str]:  # noqa: ANN001
    body = await r.json()
    return r.status, body["error"]["code"], body["error"]["message"]


# 1. upload form fields: the JSON endpoint's parser and depth, before anything is stored


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("metadata", b'{"a":' * 500 + b"1" + b"}" * 500, "json_too_complex"),
        ("metadata", b'{"a":' * 64 + b"1" + b"}" * 64, "json_too_complex"),  # 65 in a body
        ("metadata", b"[" * 3000 + b"]" * 3000, "json_too_complex"),
        ("glossary", b"[" * 3000 + b"]" * 3000, "json_too_complex"),
        ("do_not_translate", b"[" * 3000 + b"]" * 3000, "json_too_complex"),
        ("metadata", b'{"x": ' + b"9" * 5000 + b"}", "malformed_json"),
        ("metadata", b'{"x": 1, "x": 2}', "malformed_json"),
        ("metadata", b'{"x": NaN}', "malformed_json"),
        ("metadata", b'{"x": "\\ud800"}', "malformed_json"),
        ("metadata", b'{"x": "caf\xe9"}', "malformed_json"),
        ("metadata", b"{nope", "malformed_json"),
        ("glossary", b"", "malformed_json"),
    ],
    ids=["dict-500", "dict-64", "list-3000", "glossary-3000", "dnt-3000", "bignum",
         "duplicate", "nan", "surrogate", "latin1", "invalid", "empty"],
)  # fmt: skip
async def test_upload_json_fields_are_bounded_like_a_json_body(client, field, value, code):  # noqa: F811
    h = user(client)
    r = await upload(client, multipart({field: value}), h)
    status, got, message = await error_of(r)
    assert (status, got) == (400, code), message
    assert f"form field {field}" in message
    # nothing was kept: no job, nothing counted, and the user's jobs still read
    listed = await client.get("/api/v1/jobs", headers=h)
    assert listed.status == 200 and (await listed.json())["total"] == 0


async def test_upload_metadata_at_the_depth_limit_is_kept_and_read(client):  # noqa: F811
    h = user(client)
    deepest = b'{"a":' * 63 + b"1" + b"}" * 63  # as deep as a JSON body lets metadata be
    r = await upload(client, multipart({"metadata": deepest}), h)
    assert r.status == 202, await r.text()
    sub = await r.json()
    assert sub["metadata"] == json.loads(deepest)
    done = await wait_done(client, sub["job_id"], h)
    assert done["metadata"] == json.loads(deepest)
    res = await client.get(f"/api/v1/jobs/{sub['job_id']}/result", headers=h)
    assert res.status == 200 and (await res.json())["metadata"] == json.loads(deepest)


async def test_json_endpoint_depth_matches_upload(client):  # noqa: F811
    h = user(client)
    body = {"content": "Hi.", "source_language": "en", "target_language": "pt"}
    deep: object = 1
    for _ in range(63):
        deep = {"a": deep}
    r = await client.post("/api/v1/translate", json={**body, "metadata": deep}, headers=h)
    assert r.status == 202, await r.text()
    r = await client.post("/api/v1/translate", json={**body, "metadata": {"b": deep}}, headers=h)
    assert (await error_of(r))[:2] == (400, "json_too_complex")


def test_admit_refuses_a_body_nested_deeper_than_the_json_limit():
    """Every way in (uploads, ingest) passes through admit: it holds the bound too, also
    for depths where json.dumps raises RecursionError."""
    body = {"content": "Hi.", "source_language": "en", "target_language": "pt"}
    just_over: object = 1
    for _ in range(MAX_DEPTH):  # the body's own level makes it MAX_DEPTH + 1
        just_over = {"a": just_over}
    far_over: object = 1
    for _ in range(3000):
        far_over = [far_over]
    for metadata in (just_over, {"a": far_over}):
        with pytest.raises(admission.Rejected) as exc:
            admission.admit({**body, "metadata": metadata}, mock.Mock(), mock.Mock(), mock.Mock())
        assert exc.value.code == "json_too_complex"


def test_too_deep_and_parse_json_count_alike():
    for depth in (1, 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1):
        raw = b"[" * depth + b"]" * depth
        try:
            parse_json(raw)
            parsed = True
        except BodyError:
            parsed = False
        assert parsed == (not too_deep(json.loads(raw))), depth
    assert not too_deep({"a": "x" * 10}, 1) and too_deep({"a": {}}, 1)
    assert not too_deep("scalar", 0) and not too_deep(None)


async def test_a_stored_job_with_unserializable_metadata_does_not_break_reads(client):  # noqa: F811
    """Rows kept before the bound: the job and the listing are read, metadata null."""
    h = user(client)
    r = await client.post(
        "/api/v1/translate",
        json={"content": "Hi there.", "source_language": "en", "target_language": "pt"},
        headers=h,
    )
    job_id = (await r.json())["job_id"]
    await wait_done(client, job_id, h)
    for stored in ('{"a":' * 500 + "1" + "}" * 500, '{"a":' + "[" * 4000 + "]" * 4000 + "}"):
        with client.svc.db.engine.begin() as conn:
            conn.execute(
                text("UPDATE jobs SET metadata = :m WHERE id = :id"),
                {"m": stored, "id": job_id},
            )
        for path in ("/api/v1/jobs", f"/api/v1/jobs/{job_id}", f"/api/v1/jobs/{job_id}/result"):
            got = await client.get(path, headers=h)
            assert got.status == 200, (path, await got.text())
            body = await got.json()
            assert (body["jobs"][0] if "jobs" in body else body)["metadata"] is None


def test_metadata_view(caplog):
    with caplog.at_level("WARNING"):
        assert metadata_view(None, "j") is None
        assert metadata_view("null", "j") is None
    assert not caplog.records  # no metadata is not a problem worth a warning per job
    assert metadata_view('{"a": {"b": 1}}', "j") == {"a": {"b": 1}}
    assert metadata_view("[" * 5000 + "]" * 5000, "j") is None  # RecursionError in json
    assert metadata_view('{"a":' * 300 + "1" + "}" * 300, "j") is None
    assert metadata_view("not json", "j") is None


# 2a. bodies aiohttp cannot decode


@pytest.mark.parametrize(
    ("method", "path", "ctype", "body"),
    [
        ("POST", "/api/v1/translate", "application/json", b"notgzip"),
        ("POST", "/api/v1/documents", CTYPE, b"notgzip" + multipart({})),
        ("POST", "/api/v1/glossaries", "application/json", b"notgzip"),
        ("PUT", "/api/v1/glossaries/x", "application/json", b"notgzip"),
    ],
    ids=["translate", "documents", "glossaries", "glossary-put"],
)
async def test_an_undecodable_content_encoding_is_a_400(
    client,  # noqa: F811
    caplog,
    method,
    path,
    ctype,
    body,
):
    h = {**user(client), "Content-Type": ctype, "Content-Encoding": "gzip"}
    r = await client.request(method, path, data=body, headers=h)
    status, code, message = await error_of(r)
    assert (status, code) == (400, "malformed_body"), message
    assert "content-encoding: gzip" in message.lower() and "\n" not in message
    assert r.headers.get("Connection", "").lower() == "close"  # the rest is unreadable
    # nor does aiohttp's drain of the unread body raise it again as "Unhandled exception"
    assert not [rec.getMessage() for rec in caplog.records if rec.levelname == "ERROR"]
    metrics = await (await client.get("/metrics")).text()
    assert 'mtb_errors_total{kind="http_500"}' not in metrics


async def test_a_valid_gzip_body_is_still_read(client):  # noqa: F811
    body = {"content": "Hi there.", "source_language": "en", "target_language": "pt"}
    h = {**user(client), "Content-Type": "application/json", "Content-Encoding": "gzip"}
    r = await client.post("/api/v1/translate", data=gzip.compress(json.dumps(body).encode()),
                          headers=h)  # fmt: skip
    assert r.status == 202, await r.text()


# 2b. file names


@pytest.mark.parametrize(
    ("disposition", "stored"),
    [
        (b'filename="r\xe9sum\xe9.md"', "r\ufffdsum\ufffd.md"),  # raw Latin-1 bytes
        (b'filename="caf\xc3\xa9\xff.md"', "caf\u00e9\ufffd.md"),
        (b"filename*=UTF-8''a%00b%0D%0Ac.md", "abc.md"),
        (b"filename*=latin-1''r%E9sum%E9.md", "r\u00e9sum\u00e9.md"),
    ],
    ids=["latin1-raw", "utf8-and-ff", "controls", "rfc5987-latin1"],
)
async def test_odd_upload_file_names_are_stored_as_text(client, disposition, stored):  # noqa: F811
    h = user(client)
    dispo = b'form-data; name="file"; ' + disposition
    r = await upload(client, multipart({}, b"# Hello there", dispo), h)
    assert r.status == 202, await r.text()
    sub = await r.json()
    assert sub["format"] == "markdown"
    await wait_done(client, sub["job_id"], h)
    res = await client.get(f"/api/v1/jobs/{sub['job_id']}/result", headers=h)
    assert res.status == 200
    name = res.headers["Content-Disposition"].split("filename*=UTF-8''", 1)[1]
    assert unquote(name) == stored.removesuffix(".md") + ".pt.md"


def test_clean_filename():
    assert documents.clean_filename(None) is None and documents.clean_filename("") is None
    assert documents.clean_filename("r\udce9sum\udce9.md") == "r\ufffdsum\ufffd.md"
    assert documents.clean_filename("\ud800.md") == "?.md"
    assert documents.clean_filename("a\x00b\r\n\x7f.md") == "ab.md"
    assert documents.clean_filename("\x00\n") is None
    assert documents.clean_filename("\u00e9" * 300) == "\u00e9" * 255


# 3. admission of anything but a short plain text runs off the event loop


def test_off_loop():
    base = {"source_language": "en", "target_language": "pt"}
    assert not admission.off_loop({**base, "content": "Hi."})
    assert not admission.off_loop({**base, "text": "Hi.", "format": "text"})
    assert not admission.off_loop([1, 2])
    assert admission.off_loop({**base, "content": "x" * (64 * 1024 + 1)})
    assert admission.off_loop({**base, "text": "x" * (64 * 1024 + 1)})
    assert admission.off_loop({**base, "content": "[" * 10, "format": "markdown"})
    assert admission.off_loop({**base, "content": "<p>x</p>", "format": "html"})
    assert admission.off_loop({**base, "content": "Hi.", "source_language": "auto"})


async def test_document_admission_runs_in_a_thread(client, monkeypatch):  # noqa: F811
    seen: list[bool] = []
    real = admission.admit

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(translate, "admit", spy)
    monkeypatch.setattr(documents, "admit", spy)
    h = user(client)
    base = {"source_language": "en", "target_language": "pt"}
    for body, on_loop in (
        ({**base, "content": "Hi there."}, True),
        ({**base, "content": "[" * 2000, "format": "markdown"}, False),
        ({**base, "content": "<p>Hi</p>", "format": "html"}, False),
    ):
        r = await client.post("/api/v1/translate", json=body, headers=h)
        assert r.status == 202, await r.text()
        assert seen.pop() is on_loop, body["content"][:20]
    r = await upload(client, multipart({}, b"Hi there."), h)  # even a small .txt
    assert r.status == 202, await r.text()
    assert seen.pop() is False


# 4. a client that goes away mid-body


class _Metrics:
    def __init__(self) -> None:
        self.kinds: list[str] = []
        self.errors = mock.Mock()
        self.errors.labels.side_effect = lambda kind: self.kinds.append(kind) or mock.Mock()
        self.http_requests = mock.Mock()
        self.http_seconds = mock.Mock()


async def _through_middleware(exc: BaseException, closing: bool) -> tuple[web.Response, list]:
    transport = mock.Mock()
    transport.is_closing.return_value = closing
    request = make_mocked_request("POST", "/api/v1/translate", transport=transport)

    async def handler(_: web.Request) -> web.Response:
        raise exc

    metrics = _Metrics()
    resp = await errors.error_middleware(metrics)(request, handler)
    return resp, metrics.kinds


async def test_a_client_disconnect_is_not_a_500(caplog):
    caplog.set_level("INFO", logger=errors.log.name)
    for exc in (ConnectionResetError("Connection lost"), _client_reset()):
        resp, kinds = await _through_middleware(exc, closing=True)
        assert resp.status == 499 and kinds == ["client_disconnected"]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    assert any("client disconnected" in r.getMessage() for r in caplog.records)


def _client_reset() -> BaseException:
    import aiohttp

    return aiohttp.ClientConnectionResetError("Connection lost")


async def test_a_connection_reset_of_another_call_is_still_a_500():
    resp, kinds = await _through_middleware(ConnectionResetError("peer reset"), closing=False)
    assert resp.status == 500 and kinds == ["http_500"]


# 5. messages


async def test_a_chunked_body_over_the_limit_names_the_limit(client):  # noqa: F811
    limit = client.svc.settings.max_body_bytes

    async def chunks():  # noqa: ANN202 - no Content-Length: sent chunked
        for _ in range(limit // (1 << 20) + 1):
            yield b"a" * (1 << 20)

    h = {**user(client), "Content-Type": "application/json"}
    r = await client.post("/api/v1/translate", data=chunks(), headers=h)
    status, code, message = await error_of(r)
    assert (status, code) == (413, "content_too_large")
    assert f"{limit}-byte limit" in message, message


async def test_a_form_part_without_a_name_says_so(client):  # noqa: F811
    body = multipart({}).replace(b'name="source_language"', b'nameless="x"')
    r = await upload(client, body, user(client))
    status, code, message = await error_of(r)
    assert (status, code) == (422, "invalid_request")
    assert "a form part without a name" in message and "None" not in message
