"""Extract en-pt / pt-en evaluation sets from Debian's gettext catalogs.

msgid is English, msgstr the Brazilian Portuguese translation. Only messages of at least
six words without placeholders, markup or line breaks are kept: they read like sentences
and both engines see the same plain text. The selection is deterministic (ordered by a
hash of the English text) so a rerun on the same packages gives the same file; the
header lines record which catalogs and package versions it came from.

    python -m bench.make_eval_sets --lang pt_BR --size 500 --out evaluation/data/en-pt.gettext.tsv
    python -m bench.make_eval_sets --lang pt_BR --reverse --out evaluation/data/pt-en.gettext.tsv
"""

from __future__ import annotations

import argparse
import datetime as dt
import gettext
import hashlib
import re
import subprocess
from pathlib import Path

PLACEHOLDER = re.compile(r"%|\{|\}|\$|<|>|\\|_\w+_|&|\||\t|`|\[|\]|@|http|--")


def _package_of(path: Path) -> str:
    try:
        out = subprocess.run(
            ["dpkg", "-S", str(path)], capture_output=True, text=True, check=False
        ).stdout
        pkg = out.split(":", 1)[0].strip()
        ver = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True, check=False
        ).stdout.strip()
        return f"{pkg}={ver}" if pkg else "unknown"
    except OSError:
        return "unknown"


def usable(en: str, tr: str) -> bool:
    if not en or not tr or "\n" in en or "\n" in tr:
        return False
    if PLACEHOLDER.search(en) or PLACEHOLDER.search(tr):
        return False
    if len(en.split()) < 6 or len(tr.split()) < 4:
        return False
    return en.strip() != tr.strip() and en[:1].isalpha()


def extract(lang: str, locale_dir: Path = Path("/usr/share/locale")) -> tuple[list, list]:
    pairs: dict[str, tuple[str, str]] = {}
    sources = []
    for mo in sorted((locale_dir / lang / "LC_MESSAGES").glob("*.mo")):
        with mo.open("rb") as fh:
            try:
                catalog = gettext.GNUTranslations(fh)._catalog  # noqa: SLF001
            except Exception:  # noqa: BLE001 - a broken catalog is skipped, not fatal
                continue
        kept = 0
        for key, value in catalog.items():
            if not isinstance(key, str) or "\x04" in key:  # plurals, contexts
                continue
            en, tr = key.strip(), str(value).strip()
            if usable(en, tr) and en not in pairs:
                pairs[en] = (tr, mo.stem)
                kept += 1
        if kept:
            sources.append((mo.name, _package_of(mo), kept))
    rows = sorted(pairs.items(), key=lambda kv: hashlib.sha256(kv[0].encode()).hexdigest())
    return [(en, tr, cat) for en, (tr, cat) in rows], sources


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lang", default="pt_BR", help="locale folder name (default pt_BR)")
    ap.add_argument("--size", type=int, default=500, help="sentences to keep (default 500)")
    ap.add_argument(
        "--reverse",
        action="store_true",
        help="translation -> english (e.g. pt-en); selected by the other side's hash",
    )
    ap.add_argument("--out", type=Path, default=Path("evaluation/data/en-pt.gettext.tsv"))
    args = ap.parse_args(argv)
    rows, sources = extract(args.lang)
    if args.reverse:
        rows = sorted(
            ((tr, en, cat) for en, tr, cat in rows),
            key=lambda r: hashlib.sha256(r[0].encode()).hexdigest(),
        )
    rows = rows[: args.size]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as fh:
        fh.write(
            f"# gettext catalogs of /usr/share/locale/{args.lang} on Debian 12, "
            f"extracted {dt.date.today()} by bench/make_eval_sets.py\n"
        )
        fh.write(
            f"# {len(rows)} of {sum(k for *_, k in sources)} usable pairs; columns: "
            f"{'translation, english' if args.reverse else 'english, translation'}, catalog\n"
        )
        for name, pkg, kept in sources:
            fh.write(f"# source {name} ({pkg}): {kept} usable\n")
        for en, tr, cat in rows:
            fh.write(f"{en}\t{tr}\t{cat}\n")
    print(f"wrote {len(rows)} pairs to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
