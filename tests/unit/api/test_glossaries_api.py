"""/api/v1/glossaries CRUD and submissions with format / do_not_translate / glossary /
glossary_id through the embedded app (fake engine)."""

from __future__ import annotations

import json

import pytest

from control_plane.db import Job
from tests.contract import DESIGN_RESULT, DESIGN_STATUS, DESIGN_SUBMIT
from tests.unit.api.test_app import client, engine, settings, user, wait_done  # noqa: F401

G = "/api/v1/glossaries"


async def test_glossary_crud(client):  # noqa: F811
    h, other = user(client), user(client)
    r = await client.post(G, json={"name": "ui", "terms": {"file": "arquivo"}}, headers=h)
    assert r.status == 201, await r.text()
    made = await r.json()
    assert {"id", "name", "term_count", "content_hash", "created_at"} <= set(made)
    assert "terms" not in made and made["term_count"] == 1
    assert r.headers["Location"] == f"{G}/{made['id']}"
    one = f"{G}/{made['id']}"

    got = await (await client.get(one, headers=h)).json()
    assert got["terms"] == {"file": "arquivo"} and got["name"] == "ui"
    listed = await (await client.get(G, headers=h)).json()
    assert listed["total"] == 1 and "terms" not in listed["glossaries"][0]
    assert listed["glossaries"][0]["id"] == made["id"]

    r = await client.put(one, json={"terms": {"file": "ficheiro", "save": "gravar"}}, headers=h)
    assert r.status == 200 and (await r.json())["term_count"] == 2
    r = await client.put(one, json={"name": "ui-2"}, headers=h)
    assert (await r.json())["name"] == "ui-2"
    assert (await (await client.get(one, headers=h)).json())["terms"]["save"] == "gravar"

    # another user: 404 everywhere (never 403: no existence leak), and an empty list
    for method in ("get", "put", "delete"):
        kwargs = {"json": {"name": "x"}} if method == "put" else {}
        r = await getattr(client, method)(one, headers=other, **kwargs)
        assert r.status == 404, method
        assert (await r.json())["error"]["code"] == "glossary_not_found"
    assert (await (await client.get(G, headers=other)).json())["total"] == 0
    assert (await client.get(f"{G}/nope", headers=h)).status == 404

    r = await client.delete(one, headers=h)
    assert r.status == 204
    assert (await client.get(one, headers=h)).status == 404
    assert (await client.delete(one, headers=h)).status == 404
    assert (await client.get(G)).status == 401


async def test_glossary_errors_are_clear(client):  # noqa: F811
    h = user(client)
    assert (await client.post(G, json={"name": "a", "terms": {"x": "y"}}, headers=h)).status == 201
    r = await client.post(G, json={"name": "a", "terms": {"x": "y"}}, headers=h)
    assert r.status == 409 and (await r.json())["error"]["code"] == "glossary_name_taken"
    for body, why in (
        ({"terms": {"x": "y"}}, "name"),
        ({"name": "b"}, "terms"),
        ({"name": "b", "terms": {}}, "at least one term"),
        ({"name": "b", "terms": {" ": "y"}}, "empty or only spaces"),
        ({"name": "b", "terms": {"x": "y" * 201}}, "at most 200"),
        ({"name": "b", "terms": {"x": 3}}, "valid string"),
        ({"name": "b", "terms": {"Go": "a", "go": "b"}}, "differ only in case"),
        ({"name": "b", "terms": {f"t{i}": "y" for i in range(1001)}}, "at most 1000"),
        ({"name": "b", "terms": {"x": "y"}, "extra": 1}, "extra"),
        ([1, 2], "JSON object"),
    ):
        r = await client.post(G, json=body, headers=h)
        assert r.status == 422, (body, await r.text())
        assert why in await r.text(), (why, await r.text())
    r = await client.post(G, data=b"{nope", headers={**h, "Content-Type": "application/json"})
    assert r.status == 400
    big = {"name": "big", "terms": {f"t{i}": "y" * 200 for i in range(6000)}}
    r = await client.post(G, json=big, headers=h)
    assert r.status == 413
    assert (await client.put(f"{G}/x", json={}, headers=h)).status in (404, 422)
    assert (await client.get(f"{G}?limit=0", headers=h)).status == 422


async def test_submit_with_options_stores_them_and_shows_format(client):  # noqa: F811
    h, other = user(client), user(client)
    made = await (
        await client.post(
            G, json={"name": "ui", "terms": {"file": "arquivo", "save": "salvar"}}, headers=h
        )
    ).json()
    body = {
        "content": "Save the file now.",
        "source_language": "en",
        "target_language": "pt",
        "do_not_translate": ["Acme"],
        "glossary": {"File": "ficheiro"},
        "glossary_id": made["id"],
    }
    r = await client.post("/api/v1/translate", json=body, headers=h)
    assert r.status == 202, await r.text()
    sub = await r.json()
    assert DESIGN_SUBMIT <= set(sub)
    assert (sub["format"], sub["glossary_id"]) == ("text", made["id"])
    assert "glossary" not in sub and "options" not in sub

    with client.svc.db.session() as session:
        job = session.get(Job, sub["job_id"])
        options = json.loads(job.options)
    assert options == {
        "format": "text",
        "do_not_translate": ["Acme"],
        "glossary": {"File": "ficheiro", "save": "salvar"},
        "glossary_id": made["id"],
    }
    # editing the stored glossary after submit does not change the job
    await client.put(f"{G}/{made['id']}", json={"terms": {"save": "gravar"}}, headers=h)
    with client.svc.db.session() as session:
        assert "salvar" in session.get(Job, sub["job_id"]).options

    done = await wait_done(client, sub["job_id"], h)
    assert DESIGN_STATUS <= set(done)
    assert (done["format"], done["glossary_id"]) == ("text", made["id"])
    assert "glossary" not in done
    if done["status"] == "completed":
        res = await (await client.get(f"/api/v1/jobs/{sub['job_id']}/result", headers=h)).json()
        assert DESIGN_RESULT <= set(res) and res["glossary_id"] == made["id"]
    listed = await (await client.get("/api/v1/jobs", headers=h)).json()
    assert listed["jobs"][0]["format"] == "text"

    # another user's glossary id: 404, no job made
    r = await client.post(
        "/api/v1/translate", json={**body, "glossary_id": made["id"]}, headers=other
    )
    assert r.status == 404 and (await r.json())["error"]["code"] == "glossary_not_found"
    assert (await (await client.get("/api/v1/jobs", headers=other)).json())["total"] == 0
    r = await client.post(
        "/api/v1/translate",
        json={**body, "glossary_id": "00000000-0000-0000-0000-000000000000"},
        headers=h,
    )
    assert r.status == 404


async def test_submit_markup_format(client, monkeypatch):  # noqa: F811
    """format=html is planned as html and billed by its text's words (the planner is faked
    here: control_plane.text.markup is tested on its own)."""
    from control_plane.jobs import service as service_module
    from control_plane.text import chunking

    seen = []

    def fake_plan(text, target_words, lang, fmt="text"):
        seen.append(fmt)
        chunks, layouts = chunking.plan(text, target_words, lang)
        return chunks, [x.dumps() for x in layouts], [s for x in layouts for s in x.segments]

    monkeypatch.setattr(service_module, "plan_stored", fake_plan)
    h = user(client)
    html = '<p class="x y z">Click <a href="/a b">here</a> please.</p>'
    r = await client.post(
        "/api/v1/translate",
        json={"content": html, "source_language": "en", "target_language": "pt", "format": "html"},
        headers=h,
    )
    assert r.status == 202, await r.text()
    sub = await r.json()
    assert seen == ["html"] and sub["format"] == "html" and sub["word_count"] == 3
    view = await (await client.get(f"/api/v1/jobs/{sub['job_id']}", headers=h)).json()
    assert view["format"] == "html" and view["glossary_id"] is None

    def broken(text, target_words, lang, fmt="text"):
        raise ValueError("unclosed tag")

    monkeypatch.setattr(service_module, "plan_stored", broken)
    r = await client.post(
        "/api/v1/translate",
        json={"content": "<a>", "source_language": "en", "target_language": "pt", "format": "xml"},
        headers=h,
    )
    assert r.status == 422 and (await r.json())["error"]["code"] == "invalid_markup"


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({"format": "pdf"}, "format"),
        ({"do_not_translate": ["x"] * 201}, "at most 200 are allowed"),
        ({"do_not_translate": [""]}, "empty or only spaces"),
        ({"do_not_translate": ["a\u0000b"]}, "no NUL"),
        ({"glossary": {"": "x"}}, "empty or only spaces"),
        ({"glossary": {"x": "y" * 201}}, "at most 200"),
        ({"glossary": {f"t{i}": "y" for i in range(1001)}}, "at most 1000"),
        ({"glossary": ["x"]}, "glossary"),
        ({"glossary_id": "../../etc"}, "glossary_id"),
    ],
)
async def test_submit_option_limits(client, extra, why):  # noqa: F811
    h = user(client)
    body = {"content": "Hi there.", "source_language": "en", "target_language": "pt", **extra}
    r = await client.post("/api/v1/translate", json=body, headers=h)
    assert r.status == 422, await r.text()
    err = (await r.json())["error"]
    assert err["code"] == "invalid_request" and why in json.dumps(err), err


async def test_openapi_documents_options_and_glossaries(client):  # noqa: F811
    doc = await (await client.get("/openapi.json")).json()
    props = doc["components"]["schemas"]["TranslateRequest"]["properties"]
    for name in ("format", "do_not_translate", "glossary", "glossary_id"):
        assert props[name].get("description"), name
    examples = doc["components"]["schemas"]["TranslateRequest"]["examples"]
    assert any("glossary_id" in e for e in examples)
    assert {"post", "get"} <= set(doc["paths"][G])
    assert {"get", "put", "delete"} <= set(doc["paths"][G + "/{glossary_id}"])
    for name in ("GlossaryBody", "GlossarySummary", "GlossaryView", "GlossaryList"):
        assert name in doc["components"]["schemas"]
    assert "format" in doc["components"]["schemas"]["JobView"]["properties"]


async def test_submit_html_with_the_real_planner(client):  # noqa: F811
    pytest.importorskip("control_plane.text.markup")
    h = user(client)
    html = '<div class="a b c d"><p>Click <b>Save</b> now.</p><p>Then <i>close</i> it.</p></div>'
    r = await client.post(
        "/api/v1/translate",
        json={"content": html, "source_language": "en", "target_language": "pt", "format": "html"},
        headers=h,
    )
    assert r.status == 202, await r.text()
    sub = await r.json()
    assert sub["word_count"] == 6 and sub["format"] == "html"  # the text's words only
    with client.svc.db.session() as session:
        job = session.get(Job, sub["job_id"])
        assert job.segment_count == 2 and json.loads(job.options) == {"format": "html"}
    r = await client.post(
        "/api/v1/translate",
        json={
            "content": "<a><b></a>",
            "source_language": "en",
            "target_language": "pt",
            "format": "xml",
        },  # fmt: skip
        headers=h,
    )
    assert r.status == 422 and (await r.json())["error"]["code"] == "invalid_markup"
    assert "does not parse" in (await r.json())["error"]["message"]
