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


# --- files: the input is never lost, errors are one line -----------------------------


def test_upper_case_language_codes_work_like_the_api(mtctl, model_dir, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("Good morning.\n"))
    code = main(["translate", "-s", "EN", "-t", "PT", "--no-cache"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.out.strip() and "Good morning" not in out.out


def test_the_same_language_twice_is_said_so(mtctl, model_dir, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("Good morning.\n"))
    code = main(["translate", "-s", "en", "-t", "EN", "--no-cache"])
    err = capsys.readouterr().err
    assert code == 2 and "source and target are the same language (en)" in err


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("same.txt", "Hello.\nGood morning.\n"),
        ("same.html", "<p>Hello.</p>"),
        ("same.md", "# Title\n\nHello world.\n"),
    ],
)
def test_output_that_is_the_input_is_refused(mtctl, tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    code, out, err = mtctl("-o", str(path), str(path))
    assert code == 2 and "is the input file" in err and "Traceback" not in err
    assert path.read_text() == content  # was emptied, with exit code 0
    link = tmp_path / f"link-{name}"
    link.symlink_to(path)
    code, _, err = mtctl("-o", str(link), str(path))
    assert code == 2 and "is the input file" in err and path.read_text() == content


def test_a_failed_run_leaves_the_output_file_as_it_was(mtctl, tmp_path):
    existing = tmp_path / "existing.xml"
    existing.write_text("<keep>me</keep>")
    bad = tmp_path / "bad.xml"
    bad.write_text("<a><b></a>")
    code, _, err = mtctl("-o", str(existing), str(bad))
    assert code == 2 and "does not parse" in err
    assert existing.read_text() == "<keep>me</keep>"  # was emptied
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.xml", "existing.xml"]  # no temp


def test_output_replaces_the_file_when_done_and_keeps_its_mode(mtctl, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("Hello.\n")
    out_file = tmp_path / "out.txt"
    out_file.write_text("old\n")
    out_file.chmod(0o640)
    code, out, err = mtctl("-o", str(out_file), str(src))
    assert code == 0, err
    assert not out and out_file.read_text().strip() not in ("", "old", "Hello.")
    assert out_file.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{tmp}/missing.txt"], "cannot read {tmp}/missing.txt: No such file or directory"),
        (["{tmp}"], "cannot read {tmp}: Is a directory"),
        (["-o", "{tmp}/no/dir/out.txt", "{tmp}/in.txt"], "cannot write {tmp}/no/dir/out.txt"),
        (["-o", "{tmp}", "{tmp}/in.txt"], "cannot write {tmp}: Is a directory"),
        (["{tmp}/latin1.txt"], "{tmp}/latin1.txt: line 2 is not UTF-8"),
        (["--format", "html", "{tmp}/latin1.txt"], "{tmp}/latin1.txt: line 2 is not UTF-8"),
    ],
)
def test_file_problems_are_one_line(mtctl, tmp_path, args, message):
    (tmp_path / "in.txt").write_text("Hello.\n")
    (tmp_path / "latin1.txt").write_bytes("Hello.\nCaf\u00e9.\n".encode("latin-1"))
    code, out, err = mtctl(*[a.format(tmp=tmp_path) for a in args])
    assert code == 2 and message.format(tmp=tmp_path) in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and not out


def test_stdin_is_read_strictly_as_utf8(mtctl, monkeypatch, capsys):
    stdin = io.TextIOWrapper(io.BytesIO(b"Hello.\nbad \xff byte\n"), encoding="latin-1")
    monkeypatch.setattr("sys.stdin", stdin)
    code = main(["translate", "-s", "en", "-t", "pt", "--no-cache"])
    err = capsys.readouterr().err
    assert code == 2 and "stdin: line 2 is not UTF-8" in err and "Traceback" not in err


def test_a_full_disk_is_one_line(mtctl, tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    src = tmp_path / "in.txt"
    src.write_text("Hello.\n")
    code, _, err = mtctl("-o", "/dev/full", str(src))
    assert code == 2 and "cannot write /dev/full: No space left on device" in err


def test_help_says_how_entities_come_out(capsys):
    with pytest.raises(SystemExit):
        main(["translate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "entity is kept" not in text
    assert "HTML named entities such as &eacute; come out as characters" in text
