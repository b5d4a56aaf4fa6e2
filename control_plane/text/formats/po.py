"""gettext catalogs (``.po``, ``.pot``) through polib.

Units: every translatable entry's ``msgid``, and its ``msgid_plural`` as a unit of its
own, in catalog order. Not units: the header, obsolete entries, entries that already
have a translation (any non-empty ``msgstr``; a partly translated catalog gets its gaps
filled, nothing it has is overwritten) and entries with nothing to translate (no letter
outside placeholders in ``msgid`` or ``msgid_plural``: ``"%s: %s"``, ``"---"``), which
keep their ``msgstr``.

Rebuild fills ``msgstr`` (plural entries: ``msgstr[0]`` with the singular's translation
and ``msgstr[1..n-1]`` with the plural's, ``n`` the target language's number of plural
forms; with one form only, as in Japanese or Chinese, ``msgstr[0]`` is the plural's
translation, which speaks of any count), marks every entry it translated ``fuzzy``
(``Options.extra["po_fuzzy"]``, default True) and adds a translator comment naming the
model (``Options.extra["po_comment"]``, ``{model_version}`` replaced; "" for none). The
header gets ``Language``, ``Plural-Forms`` (from ``PLURAL_FORMS``; a catalog already in a
variant of the target language keeps its own, ``Options.extra["po_plural_forms"]`` wins
over both), ``PO-Revision-Date``, ``X-Generator: mt-backend`` and ``charset=UTF-8``; a
template's fuzzy header loses its ``fuzzy`` (the catalog is a ``.po`` now). Everything
else (``msgctxt``, references, flags such as ``python-format``, extracted and translator
comments, previous ``msgid``, obsolete entries, order) is kept; polib re-wraps long
strings at 78 columns as gettext's tools do.

The input is decoded with the catalog's ``charset`` (UTF-8 when it names none, as
templates' ``charset=CHARSET``); the output is always UTF-8.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import polib

from control_plane.text.formats.base import Options, Unit
from control_plane.text.spans import find_spans, has_text, outside

DEFAULT_COMMENT = "Machine-translated by mt-backend ({model_version})"
GERMANIC = "nplurals=2; plural=(n != 1);"
# gettext's own table (msginit), by language and language_TERRITORY
PLURAL_FORMS = {
    "en": GERMANIC,
    "de": GERMANIC,
    "nl": GERMANIC,
    "sv": GERMANIC,
    "da": GERMANIC,
    "nb": GERMANIC,
    "fi": GERMANIC,
    "el": GERMANIC,
    "it": GERMANIC,
    "es": GERMANIC,
    "pt": GERMANIC,
    "pt_BR": "nplurals=2; plural=(n > 1);",
    "fr": "nplurals=2; plural=(n > 1);",
    "ru": (
        "nplurals=3; plural=(n%10==1 && n%100!=11 ? 0 : n%10>=2 && n%10<=4 && "
        "(n%100<10 || n%100>=20) ? 1 : 2);"
    ),
    "uk": (
        "nplurals=3; plural=(n%10==1 && n%100!=11 ? 0 : n%10>=2 && n%10<=4 && "
        "(n%100<10 || n%100>=20) ? 1 : 2);"
    ),
    "pl": (
        "nplurals=3; plural=(n==1 ? 0 : n%10>=2 && n%10<=4 && (n%100<10 || n%100>=20) ? 1 : 2);"
    ),
    "cs": "nplurals=3; plural=((n==1) ? 0 : (n>=2 && n<=4) ? 1 : 2);",
    "ja": "nplurals=1; plural=0;",
    "zh": "nplurals=1; plural=0;",
    "ko": "nplurals=1; plural=0;",
    "vi": "nplurals=1; plural=0;",
}


def gettext_language(code: str) -> str:
    """A language tag as gettext writes it: ``pt-br`` -> ``pt_BR``."""
    parts = code.replace("-", "_").split("_")
    head = parts[0].lower()
    return "_".join([head, *(p.upper() if len(p) == 2 else p for p in parts[1:])])


def plural_forms(language: str) -> str:
    """The ``Plural-Forms`` value for a gettext language (``pt_BR``, ``ru``)."""
    lang = gettext_language(language)
    return PLURAL_FORMS.get(lang) or PLURAL_FORMS.get(lang.split("_")[0]) or GERMANIC


def nplurals(forms: str) -> int:
    """``nplurals`` of a ``Plural-Forms`` value; ValueError when it has none."""
    for part in forms.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip() == "nplurals" and value.strip().isdigit():
            return int(value.strip())
    raise ValueError(f"Plural-Forms without nplurals: {forms!r}")


# ---------------------------------------------------------------------------- parsing


def _parse(data: bytes) -> polib.POFile:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    # the charset is ASCII in the header: latin-1 reads any bytes to find it
    encoding = polib.detect_encoding(_not_a_path(data.decode("latin-1")))
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise ValueError(f"the catalog is not valid {encoding}: {exc}") from None
    try:
        return polib.pofile(_not_a_path(text), encoding="utf-8", wrapwidth=78)
    except (OSError, ValueError) as exc:
        raise ValueError(f"not a gettext catalog: {exc}") from None


def _not_a_path(text: str) -> str:
    """polib takes a string that names an existing file for that file's path: a catalog
    never is one (and must never read a file of the server's)."""
    if not text.endswith("\n"):
        text += "\n"
    try:
        is_file = os.path.isfile(text)
    except (TypeError, ValueError):
        is_file = False
    if is_file:
        raise ValueError("not a gettext catalog")
    return text


def _todo(po: polib.POFile) -> list[polib.POEntry]:
    """The entries to translate, in order."""
    out = []
    for entry in po:
        if entry.obsolete or not entry.msgid:
            continue
        if entry.msgstr or any(entry.msgstr_plural.values()):
            continue  # translated already
        if not (_words(entry.msgid) or _words(entry.msgid_plural or "")):
            continue  # nothing to translate: keeps its msgstr
        out.append(entry)
    return out


def _words(text: str) -> bool:
    """Whether ``text`` has a letter outside its placeholders, paths and other protected
    spans (``"%s: %s"`` has none)."""
    return has_text(outside(text, find_spans(text)))


# ---------------------------------------------------------------------------- the format


class PoFormat:
    name = "po"
    extensions = (".po", ".pot")
    media_type = "text/x-gettext-translation"
    binary = False
    markup = "text"

    def extract(self, data: bytes) -> list[Unit]:
        units = []
        for i, entry in enumerate(_todo(_parse(data))):
            units.append(Unit(entry.msgid, key=f"{i}"))
            if entry.msgid_plural:
                units.append(Unit(entry.msgid_plural, key=f"{i}:plural"))
        return units

    def rebuild(self, data: bytes, translations: list[str], options: Options) -> bytes:
        po = _parse(data)
        todo = _todo(po)
        wanted = sum(2 if e.msgid_plural else 1 for e in todo)
        if len(translations) != wanted:
            raise ValueError(f"{wanted} units in the catalog, {len(translations)} translations")
        forms = _update_header(po, options)
        n = nplurals(forms)
        extra = options.extra or {}
        fuzzy = bool(extra.get("po_fuzzy", True))
        comment = extra.get("po_comment", DEFAULT_COMMENT)
        if comment:
            comment = comment.replace("{model_version}", options.model_version or "unknown")
        pos = 0
        for entry in todo:
            single = translations[pos]
            pos += 1
            if entry.msgid_plural:
                plural = translations[pos]
                pos += 1
                if not (single.strip() and plural.strip()):
                    continue
                first = single if n > 1 else plural
                entry.msgstr_plural = {0: first, **{k: plural for k in range(1, n)}}
            else:
                if not single.strip():
                    continue  # nothing came back: stays untranslated
                entry.msgstr = single
            if fuzzy and "fuzzy" not in entry.flags:
                entry.flags.insert(0, "fuzzy")
            if comment and comment not in entry.tcomment.split("\n"):
                entry.tcomment = f"{entry.tcomment}\n{comment}" if entry.tcomment else comment
        po.encoding = "utf-8"
        text = po.__unicode__()
        return (text if text.endswith("\n") else text + "\n").encode("utf-8")


def _update_header(po: polib.POFile, options: Options) -> str:
    """Target language, plural forms, revision date, generator, charset; returns the
    Plural-Forms value in effect."""
    meta = po.metadata
    extra = options.extra or {}
    target = gettext_language(options.target_lang)
    current = (meta.get("Language") or "").strip()
    same = current and gettext_language(current).split("_")[0] == target.split("_")[0]
    if not same:
        meta["Language"] = target
    language = meta["Language"] if same else target
    forms = extra.get("po_plural_forms")
    if not forms:
        existing = (meta.get("Plural-Forms") or "").strip()
        forms = existing if same and _valid_forms(existing) else plural_forms(language)
    meta["Plural-Forms"] = forms
    when = extra.get("po_revision_date") or datetime.now(UTC).strftime("%Y-%m-%d %H:%M+0000")
    meta["PO-Revision-Date"] = when
    meta["X-Generator"] = "mt-backend"
    meta["Content-Type"] = "text/plain; charset=UTF-8"
    meta.setdefault("MIME-Version", "1.0")
    meta["Content-Transfer-Encoding"] = "8bit"
    po.metadata_is_fuzzy = 0
    return forms


def _valid_forms(forms: str) -> bool:
    try:
        return nplurals(forms) >= 1 and "plural=" in forms
    except ValueError:
        return False


FORMAT = PoFormat()
FORMATS = {"po": FORMAT}
