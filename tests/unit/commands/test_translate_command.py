"""``mtctl translate`` with --format, --glossary and --do-not-translate on the real int8
engine (the bundled en-pt model, exported once into MTB_MODEL_DIR or .models)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from control_plane.cli import main

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    from export.provision import ensure_default_models

    root = Path(os.environ.get("MTB_MODEL_DIR") or REPO / ".models")
    ensure_default_models(root, ("en-pt",))
    return root


@pytest.fixture
def mtctl(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MTB_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("MTB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MTB_PRECISION", "int8")

    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(["translate", "-s", "en", "-t", "pt", "--no-cache", *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_help_explains_the_options(capsys):
    with pytest.raises(SystemExit):
        main(["translate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    needles = (
        "--format {text,html,xml,po,xliff,markdown,srt,vtt,docx}",
        "or auto (detected from the input",
        "--glossary FILE.json",
        "--do-not-translate STR",
        "repeatable",
        '{"source term": "target term"}',
        "whole input is one document",
    )
    for needle in needles:
        assert needle in text, needle


def test_html_with_a_glossary(mtctl, tmp_path):
    pytest.importorskip("control_plane.text.markup")
    from control_plane.text.markup import compare_structure

    glossary = tmp_path / "terms.json"
    glossary.write_text(json.dumps({"file": "ficheiro"}))
    doc = (
        '<p>Click <b>Save</b> to keep the file.</p>\n<p class="x">Open <code>make test</code>.</p>'
    )
    code, out, err = mtctl("--format", "html", "--glossary", str(glossary), stdin=doc)
    assert code == 0, err
    assert "ficheiro" in out and "<code>make test</code>" in out and 'class="x"' in out
    assert "<b>" in out and "</b>" in out and "Click" not in out
    assert compare_structure(doc, out, "html") == []


def test_text_lines_keep_spans_and_glossary_terms(mtctl, tmp_path):
    glossary = tmp_path / "terms.json"
    glossary.write_text(json.dumps({"file": "ficheiro"}))
    code, out, err = mtctl(
        "--glossary", str(glossary), "--do-not-translate", "Acme Cloud",
        stdin="Open the file {name} in ~/docs.\n\nSend it to user@example.com via Acme Cloud.\n",
    )  # fmt: skip
    assert code == 0, err
    lines = out.split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""
    assert "ficheiro" in lines[0] and "{name}" in lines[0] and "~/docs" in lines[0]
    assert "user@example.com" in lines[2] and "Acme Cloud" in lines[2]


@pytest.mark.parametrize(
    ("args", "content", "message"),
    [
        (["--glossary", "missing.json"], None, "cannot read"),
        (["--glossary", "{g}"], "[1]", "must hold a JSON object"),
        (["--glossary", "{g}"], "{nope", "is not JSON"),
        (["--glossary", "{g}"], '{"x": ""}', "empty or only spaces"),
        (["--do-not-translate", " "], None, "--do-not-translate"),
    ],
)
def test_bad_options_are_clear(mtctl, tmp_path, args, content, message):
    g = tmp_path / "g.json"
    if content is not None:
        g.write_text(content)
    args = [str(g) if a == "{g}" else str(tmp_path / a) if a.endswith(".json") else a for a in args]
    code, out, err = mtctl(*args, stdin="Hi.\n")
    assert code == 2 and message in err and "Traceback" not in err and not out


def test_markup_that_does_not_parse_is_a_clear_error(mtctl):
    pytest.importorskip("control_plane.text.markup")
    code, out, err = mtctl("--format", "xml", stdin="<a><b></a>")
    assert code == 2 and "does not parse" in err and not out
