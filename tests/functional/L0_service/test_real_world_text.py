"""Issue 11 end to end: the strings software teams send come back intact through
`mtctl serve` (REST -> planner -> worker -> engine -> result), with markup, glossaries
and the caller's own protected strings."""

from __future__ import annotations

import requests
from lxml import html as lxml_html

from .conftest import Service, wait_for

# the table: what the service made of these before protected spans
TABLE = [
    ("{count} items", ["{count}"]),
    ("<b>Bold</b> text", ["<b>Bold</b>"]),  # plain text format: the tag is a literal
    ("user@example.com", ["user@example.com"]),
    ("(2)", ["(2)"]),
    ("• — ©2024", ["• — ©2024"]),
    ("See README.md and `make test`.", ["README.md", "`make test`"]),
    ("Error: %s could not be opened (%1$d of %2$d).", ["%s", "%1$d", "%2$d"]),
    ("Deleted %(count)d files from ${HOME}/tmp.", ["%(count)d", "${HOME}/tmp"]),
    ("Visit https://example.com/docs?x=1 for details.", ["https://example.com/docs?x=1"]),
    ("The download is 5 MB and takes 10 ms.", ["5 MB", "10 ms"]),
]


def translate(svc: Service, body: dict, who: str = "enterprise") -> dict:
    body = {"source_language": "en", "target_language": "pt", **body}
    r = requests.post(
        f"{svc.url}/api/v1/translate", json=body, headers=svc.headers(who), timeout=60
    )
    assert r.status_code == 202, r.text
    job = wait_for(svc, r.json()["job_id"], who=who)
    assert job["status"] == "completed", job
    res = requests.get(
        f"{svc.url}/api/v1/jobs/{job['job_id']}/result", headers=svc.headers(who), timeout=30
    )
    assert res.status_code == 200, res.text
    return res.json()


def test_spans_survive(service):
    content = "\n".join(text for text, _ in TABLE) + "\n"
    out = translate(service, {"content": content})["translated_content"].split("\n")
    assert len(out) == len(TABLE) + 1
    for (source, spans), line in zip(TABLE, out, strict=False):
        for span in spans:
            assert line.count(span) == source.count(span), (source, line)
    assert out[3] == "(2)" and out[4] == "• — ©2024"  # nothing to translate: unchanged
    assert "itens" in out[0]


def test_html_format(service):
    page = (
        '<html lang="en"><head><title>Getting started</title></head><body>'
        '<h1 class="t">Welcome to the project</h1>'
        '<p>Read the <a href="https://example.com/guide" title="The user guide">guide</a> '
        "before you <b>install</b> anything.</p>"
        "<p>Run <code>make test</code> to check your machine.</p>"
        '<img src="logo.png" alt="The project logo"/>'
        '<p translate="no">Do not translate this line.</p>'
        "</body></html>"
    )
    res = translate(service, {"content": page, "format": "html"})
    out = res["translated_content"]
    doc, src = lxml_html.fromstring(out), lxml_html.fromstring(page)
    assert [e.tag for e in doc.iter()] == [e.tag for e in src.iter()]
    assert doc.find(".//a").get("href") == "https://example.com/guide"
    assert doc.find(".//h1").get("class") == "t"
    assert "<code>make test</code>" in out
    assert "Do not translate this line." in out
    assert doc.find(".//img").get("alt") != "The project logo"  # alt text translated
    assert "projeto" in doc.find(".//h1").text_content().lower()
    assert doc.get("lang") == "pt"  # the page says its new language


def test_glossary_inline_and_stored(service):
    text = "Open the settings and save the file. The settings are stored in the file."
    inline = translate(service, {"content": text, "glossary": {"settings": "preferências"}})
    assert inline["translated_content"].count("preferências") == 2, inline
    r = requests.post(
        f"{service.url}/api/v1/glossaries",
        json={"name": "ui-terms", "terms": {"file": "ficheiro"}},
        headers=service.headers("pro"),
        timeout=10,
    )
    assert r.status_code == 201, r.text
    gid = r.json()["id"]
    stored = translate(service, {"content": text, "glossary_id": gid}, who="pro")
    assert stored["translated_content"].count("ficheiro") == 2, stored
    # another user's glossary is not found, and says so
    r = requests.post(
        f"{service.url}/api/v1/translate",
        json={"source_language": "en", "target_language": "pt", "content": text,
              "glossary_id": gid},
        headers=service.headers("enterprise"),
        timeout=10,
    )  # fmt: skip
    assert r.status_code == 404, r.text
    assert "glossary" in r.json()["error"]["message"].lower()


def test_do_not_translate(service):
    text = "Click Save Draft to keep the Quick Settings panel open."
    res = translate(
        service, {"content": text, "do_not_translate": ["Save Draft", "Quick Settings"]}
    )
    out = res["translated_content"]
    assert "Save Draft" in out and "Quick Settings" in out, out
