"""gettext catalogs (control_plane.text.formats.po): a fake translator on a catalog with
every kind of entry, then real catalogs from Debian's .mo files through the int8 engine."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import polib
import pytest

from control_plane.engine.base import Translation
from control_plane.text import formats
from control_plane.text.formats.base import Options
from control_plane.text.formats.po import FORMAT, nplurals, plural_forms

HERE = Path(__file__).parent
REPO = HERE.parents[3]
SAMPLE = (HERE / "data_po" / "sample.pot").read_bytes()
LOCALE = Path("/usr/share/locale/pt_BR/LC_MESSAGES")
REAL_CATALOGS = ("Linux-PAM", "adduser", "sed")  # small, with plural entries
DATE = "2024-01-01 00:00+0000"


def upper(texts: list[str]) -> list[Translation]:
    """A fake engine: letters upper-cased (mask tokens are upper case already)."""
    return [Translation(t.upper(), 1.0) for t in texts]


def translate(data: bytes, target: str = "pt", **extra) -> polib.POFile:
    options = Options("en", target, "bergamot-en-pt-int8", {"po_revision_date": DATE, **extra})
    out = formats.translate_document(data, FORMAT, upper, options)
    return polib.pofile(out.decode("utf-8"))


def key(entry: polib.POEntry) -> tuple:
    """What rebuild must keep of an entry."""
    return (
        entry.msgctxt,
        entry.msgid,
        entry.msgid_plural,
        entry.occurrences,
        [f for f in entry.flags if f != "fuzzy"],
        entry.comment,
        entry.previous_msgid,
        entry.obsolete,
    )


def test_registry_finds_po():
    assert formats.get("po") is FORMAT
    assert formats.by_extension("messages.POT") is FORMAT
    assert formats.by_extension("pt_BR.po") is FORMAT
    assert (FORMAT.media_type, FORMAT.markup, FORMAT.binary) == (
        "text/x-gettext-translation",
        "text",
        False,
    )


def test_units_are_msgids_and_plurals_in_order():
    units = FORMAT.extract(SAMPLE)
    assert [u.text for u in units] == [
        "Welcome to the application.",
        "Hello, %(name)s! You have new mail.",
        "Open",
        "Open",
        "Deleted %d file.",
        "Deleted %d files.",
        "Usage: %s [OPTION]... FILE\nCopy the file to the backup folder.\n",
        "Save the document now",
        "The <b>server</b> is not responding.",
    ]  # no header, no "%s: %s" or "---", no obsolete entry


def test_round_trip_keeps_structure_and_fills_msgstr():
    source = polib.pofile(SAMPLE.decode())
    po = translate(SAMPLE)
    assert [key(e) for e in po] == [key(e) for e in source]
    by_id = {(e.msgctxt, e.msgid): e for e in po if not e.obsolete}
    assert by_id[(None, "Welcome to the application.")].msgstr == "WELCOME TO THE APPLICATION."
    # placeholders and tags are protected spans: kept byte for byte
    hello = by_id[(None, "Hello, %(name)s! You have new mail.")]
    assert hello.msgstr == "HELLO, %(name)s! YOU HAVE NEW MAIL."
    assert hello.flags == ["fuzzy", "python-format"]
    assert by_id[("menu", "Open")].msgstr == by_id[("verb", "Open")].msgstr == "OPEN"
    usage = by_id[(None, "Usage: %s [OPTION]... FILE\nCopy the file to the backup folder.\n")]
    assert usage.msgstr.endswith("\n") and usage.msgstr.count("\n") == 2 and "%s" in usage.msgstr
    tags = by_id[(None, "The <b>server</b> is not responding.")]
    assert tags.msgstr == "THE <b>SERVER</b> IS NOT RESPONDING."
    # nothing to translate: untouched, not fuzzy, no comment
    for msgid in ("%s: %s", "---"):
        entry = by_id[(None, msgid)]
        assert entry.msgstr == "" and "fuzzy" not in entry.flags and not entry.tcomment
    # previous msgid and obsolete entries kept
    assert by_id[(None, "Save the document now")].previous_msgid == "Save the document"
    assert [e.msgstr for e in po.obsolete_entries()] == ["Uma mensagem antiga."]
    translated = [e for e in po if e.msgstr or any(e.msgstr_plural.values())]
    assert len(translated) == 9  # eight entries and the obsolete one
    for entry in translated:
        if not entry.obsolete:
            assert "fuzzy" in entry.flags
            assert entry.tcomment == "Machine-translated by mt-backend (bergamot-en-pt-int8)"


def test_header_is_updated():
    po = translate(SAMPLE)
    meta = po.metadata
    assert meta["Language"] == "pt"
    assert meta["Plural-Forms"] == "nplurals=2; plural=(n != 1);"
    assert meta["PO-Revision-Date"] == DATE
    assert meta["X-Generator"] == "mt-backend"
    assert meta["Content-Type"] == "text/plain; charset=UTF-8"
    assert meta["Project-Id-Version"] == "demo 1.0"  # the rest kept
    assert meta["POT-Creation-Date"] == "2024-05-01 10:00+0000"
    assert not po.metadata_is_fuzzy  # the template is a catalog now
    assert po.header.startswith("SOME DESCRIPTIVE TITLE.")


@pytest.mark.parametrize(
    ("target", "forms"),
    [("pt", 2), ("pt_BR", 2), ("en", 2), ("es", 2), ("fr", 2), ("de", 2), ("ru", 3), ("pl", 3)]
    + [("ja", 1), ("zh", 1)],
)
def test_plural_forms_of_the_target(target, forms):
    assert nplurals(plural_forms(target)) == forms
    po = translate(SAMPLE, target)
    assert po.metadata["Plural-Forms"] == plural_forms(target)
    entry = next(e for e in po if e.msgid_plural)
    single, plural = "DELETED %d FILE.", "DELETED %d FILES."
    if forms == 1:
        assert entry.msgstr_plural == {0: plural}
    else:
        assert entry.msgstr_plural == {0: single, **{i: plural for i in range(1, forms)}}


def test_pt_br_plural_rule_and_ru_three_forms():
    assert plural_forms("pt-br") == "nplurals=2; plural=(n > 1);"
    po = translate(SAMPLE, "ru")
    assert po.metadata["Language"] == "ru"
    assert len(next(e for e in po if e.msgid_plural).msgstr_plural) == 3


def test_fuzzy_and_comment_are_configurable():
    po = translate(SAMPLE, po_fuzzy=False, po_comment="MT {model_version}, please review")
    entry = po.find("Welcome to the application.")
    assert "fuzzy" not in entry.flags
    assert entry.tcomment == "MT bergamot-en-pt-int8, please review"
    po = translate(SAMPLE, po_comment="")
    assert po.find("Welcome to the application.").tcomment == ""


def test_translated_entries_are_kept_and_catalog_language_variant_too():
    data = (
        'msgid ""\nmsgstr ""\n"Language: pt_BR\\n"\n'
        '"Plural-Forms: nplurals=2; plural=(n > 1);\\n"\n'
        '"Content-Type: text/plain; charset=ISO-8859-1\\n"\n\n'
        'msgid "Yes"\nmsgstr "Sim"\n\n'
        'msgid "Open the door"\nmsgstr ""\n\n'
        '#, fuzzy\nmsgid "Close"\nmsgstr "Fech\xe1-lo"\n'
    ).encode("latin-1")
    assert [u.text for u in FORMAT.extract(data)] == ["Open the door"]
    po = translate(data)
    assert po.find("Yes").msgstr == "Sim" and "fuzzy" not in po.find("Yes").flags
    assert po.find("Close").msgstr == "Fechá-lo"  # decoded with the catalog's charset
    assert po.find("Open the door").msgstr == "OPEN THE DOOR"
    assert po.metadata["Language"] == "pt_BR"  # a variant of the target: kept
    assert po.metadata["Plural-Forms"] == "nplurals=2; plural=(n > 1);"
    assert po.metadata["Content-Type"] == "text/plain; charset=UTF-8"


@pytest.mark.parametrize(
    "data", [b'msgid "unterminated\nmsgstr', b"/etc/passwd", b"\xff\xfe\x00garbage msgid"]
)
def test_not_a_catalog_is_a_value_error(data):
    with pytest.raises(ValueError):
        FORMAT.extract(data)


@pytest.mark.skipif(not shutil.which("msgfmt"), reason="gettext's msgfmt is not installed")
def test_output_passes_msgfmt_check(tmp_path):
    out = tmp_path / "pt.po"
    out.write_bytes(formats.translate_document(SAMPLE, FORMAT, upper, Options("en", "ru", "v1")))
    run = subprocess.run(
        ["msgfmt", "--check", "--use-fuzzy", "-o", os.devnull, str(out)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr


# ---------------------------------------------------------------------------- real files


@pytest.fixture(scope="module")
def engine():
    from control_plane.engine import load_engine
    from export.provision import ensure_default_models

    root = Path(os.environ.get("MTB_MODEL_DIR") or REPO / ".models")
    ensure_default_models(root, ("en-pt",))
    return load_engine(root, precision="int8")


def real_templates(tmp_path: Path) -> list[tuple[str, bytes, polib.POFile]]:
    """Debian's pt_BR catalogs as .po (msgunfmt, or polib reading the .mo) and as a .pot
    (every msgstr blanked)."""
    out = []
    for name in REAL_CATALOGS:
        mo = LOCALE / f"{name}.mo"
        if not mo.is_file():
            continue
        po_path = tmp_path / f"{name}.po"
        if shutil.which("msgunfmt"):
            subprocess.run(["msgunfmt", str(mo), "-o", str(po_path)], check=True)
        else:
            polib.mofile(str(mo)).save_as_pofile(str(po_path))
        po = polib.pofile(str(po_path))
        for entry in po:
            entry.msgstr = ""
            if entry.msgid_plural:
                entry.msgstr_plural = {0: "", 1: ""}
        out.append((name, str(po).encode("utf-8"), polib.pofile(str(po_path))))
    if not out:
        pytest.skip(f"no pt_BR catalogs in {LOCALE}")
    return out


def test_real_catalogs_through_the_engine(engine, tmp_path):
    def call(texts):
        return engine.translate(texts, "en", "pt")

    for name, pot, original in real_templates(tmp_path):
        template = polib.pofile(pot.decode())
        options = Options("en", "pt", engine.model_version("en", "pt"))
        out = formats.translate_document(pot, FORMAT, call, options)
        po = polib.pofile(out.decode("utf-8"))
        assert len(po) == len(template) == len(original), name
        assert [key(e) for e in po] == [key(e) for e in template], name
        assert po.metadata["Language"] in ("pt", "pt_BR")  # pt_BR kept: a variant of pt
        assert "mt-backend" in po.metadata["X-Generator"]
        untranslated = []
        for entry, src in zip(po, template, strict=True):
            if not (has_words(entry.msgid) or has_words(entry.msgid_plural or "")):
                assert entry.msgstr == "", (name, entry.msgid)  # untouched
                continue
            if entry.msgid_plural:
                forms = list(entry.msgstr_plural.values())
                ok = len(forms) == 2 and all(f.strip() for f in forms)
            else:
                ok = bool(entry.msgstr.strip())
            if not ok:
                untranslated.append(entry.msgid)
            # line structure: a msgid ending in a line break gets a msgstr that does too
            text = entry.msgstr or entry.msgstr_plural.get(0, "")
            assert text.endswith("\n") == src.msgid.endswith("\n"), (name, entry.msgid)
        assert untranslated == [], (name, untranslated)


def has_words(text: str) -> bool:
    from control_plane.text.spans import find_spans, has_text, outside

    return has_text(outside(text, find_spans(text)))
