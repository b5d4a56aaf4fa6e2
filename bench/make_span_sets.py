"""Extract the protected-span and glossary evaluation sets from Debian's gettext catalogs.

Span set (``evaluation/data/en-pt.spans.tsv``): messages whose English msgid and human
pt_BR msgstr carry the *same* protected spans (placeholders ``%s %1$d %(name)s {name}
${VAR}``, backtick code, URLs, e-mail addresses, paths, numbers with units), as found by
``control_plane.text.spans.find_spans`` on both sides: the human kept them, so a
translation must too. Single-line messages of 3..60 words with at least three words of
text outside their spans, no keyboard mnemonics (``_File``, ``&Open``); deterministic
selection: every message with a span kind other than a placeholder (code, URLs, e-mail,
paths are rare in the catalogs), then placeholder-only messages ordered by a hash of the
English text.

Inline markup (``<b>..</b>``): when ``control_plane.text.markup.tag_spans`` exists its tag
spans join the comparison (``MARKUP_HOOK``); until then messages with tags are left out so
the set only holds span kinds the engine is asked to protect.

Glossary set (``evaluation/data/en-pt.glossary.tsv``): plain messages (as in make_eval_sets)
holding a term of the software glossary ``evaluation/data/en-pt.glossary.json`` whose human
translation holds that term's glossary target. A glossary term is only kept when the
catalogs translate it consistently (``--min-consistency`` of the messages holding it, at
least ``--min-uses`` of them); the JSON records each term's measured consistency.

    python -m bench.make_span_sets [--size 1000] [--glossary-size 300]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gettext
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bench.make_eval_sets import _package_of, usable
from control_plane.text.spans import Protection, Span, find_spans, has_text, outside
from evaluation.sets import DATA

LOCALE = Path("/usr/share/locale")

# Anything that looks like an inline tag; such messages wait for the markup module.
TAG = re.compile(r"</?[A-Za-z][\w:-]*(?:\s[^<>]*)?/?>")
MNEMONIC = re.compile(r"(?<![\w%])_[A-Za-z]|&[A-Za-z](?![a-z]*;)")
WORD = re.compile(r"[^\W\d_]{2,}")


def markup_hook() -> Callable[[str], list[Span]] | None:
    """``MARKUP_HOOK``: the markup module's tag spans for an html-ish gettext message, or
    None while the module is not there (messages with tags are then skipped)."""
    try:
        from control_plane.text.markup import tag_spans
    except ImportError:
        return None
    return lambda text: list(tag_spans(text, "html"))


def span_texts(text: str, tags: Callable[[str], list[Span]] | None) -> list[str]:
    extra = tags(text) if tags else []
    return sorted(text[s.start : s.end] for s in find_spans(text, Protection(), extra))


def catalogs(lang: str, locale_dir: Path = LOCALE):
    """(mo path, [(english, translation)]) of every readable catalog, singular messages."""
    for mo in sorted((locale_dir / lang / "LC_MESSAGES").glob("*.mo")):
        with mo.open("rb") as fh:
            try:
                catalog = gettext.GNUTranslations(fh)._catalog  # noqa: SLF001
            except Exception:  # noqa: BLE001 - a broken catalog is skipped, not fatal
                continue
        pairs = []
        for key, value in catalog.items():
            if not isinstance(key, str) or not key or "\x04" in key:  # plurals, contexts
                continue
            pairs.append((key.strip(), str(value).strip()))
        yield mo, pairs


def span_usable(en: str, tr: str, tags: Callable[[str], list[Span]] | None) -> bool:
    if not en or not tr or "\n" in en or "\n" in tr or "\t" in en or "\t" in tr:
        return False
    if en == tr or en.startswith("#") or not 3 <= len(en.split()) <= 60:
        return False  # ("#": a comment line to load_tsv)
    if MNEMONIC.search(en) or MNEMONIC.search(tr):
        return False
    if tags is None and (TAG.search(en) or TAG.search(tr)):
        return False
    spans = find_spans(en, Protection(), tags(en) if tags else [])
    if not spans or len(WORD.findall(outside(en, spans))) < 3:
        return False
    if not has_text(outside(en, spans)):
        return False
    return span_texts(en, tags) == span_texts(tr, tags)


def _by_hash(rows: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    return sorted(rows, key=lambda r: hashlib.sha256(r[0].encode()).hexdigest())


def extract_spans(lang: str) -> tuple[list, list]:
    tags = markup_hook()
    pairs: dict[str, tuple[str, str]] = {}
    sources = []
    for mo, messages in catalogs(lang):
        kept = 0
        for en, tr in messages:
            if en not in pairs and span_usable(en, tr, tags):
                pairs[en] = (tr, mo.stem)
                kept += 1
        if kept:
            sources.append((mo.name, _package_of(mo), kept))
    rows = _by_hash([(en, tr, cat) for en, (tr, cat) in pairs.items()])
    return rows, sources


def select(rows: list[tuple[str, str, str]], size: int) -> list[tuple[str, str, str]]:
    """Every message with a span other than a placeholder (they are few: code, URLs,
    e-mail, paths), then placeholder-only messages in hash order up to ``size``."""
    tags = markup_hook()

    def rare(en: str) -> bool:
        spans = find_spans(en, Protection(), tags(en) if tags else [])
        return any(s.kind != "placeholder" for s in spans)

    first = [r for r in rows if rare(r[0])][:size]
    rest = [r for r in rows if not rare(r[0])][: size - len(first)]
    return _by_hash(first + rest)


def kinds_of(rows) -> Counter:
    tags = markup_hook()
    counts: Counter = Counter()
    for en, *_ in rows:
        for s in find_spans(en, Protection(), tags(en) if tags else []):
            counts[s.kind] += 1
    return counts


# Candidate software terms; only those the catalogs translate consistently are kept.
CANDIDATES = {
    "file": "arquivo",
    "files": "arquivos",
    "folder": "pasta",
    "folders": "pastas",
    "directory": "diretório",
    "directories": "diretórios",
    "password": "senha",
    "passwords": "senhas",
    "settings": "configurações",
    "user": "usuário",
    "users": "usuários",
    "package": "pacote",
    "packages": "pacotes",
    "device": "dispositivo",
    "devices": "dispositivos",
    "window": "janela",
    "windows": "janelas",
    "network": "rede",
    "error": "erro",
    "server": "servidor",
    "keyboard": "teclado",
    "disk": "disco",
    "printer": "impressora",
    "memory": "memória",
    "image": "imagem",
    "images": "imagens",
    "command": "comando",
    "commands": "comandos",
    "repository": "repositório",
    "connection": "conexão",
    "permission": "permissão",
    "permissions": "permissões",
    "account": "conta",
    "session": "sessão",
    "group": "grupo",
    "system": "sistema",
    "screen": "tela",
    "option": "opção",
    "options": "opções",
    "updates": "atualizações",
    "update": "atualização",
    "download": "baixar",
    "database": "banco de dados",
    "certificate": "certificado",
    "signature": "assinatura",
    "partition": "partição",
    "filesystem": "sistema de arquivos",
    "mount point": "ponto de montagem",
    "line": "linha",
    "argument": "argumento",
    "arguments": "argumentos",
    "value": "valor",
    "address": "endereço",
    "desktop": "área de trabalho",
    "source": "fonte",
    "key": "chave",
    "keys": "chaves",
    "version": "versão",
    "service": "serviço",
    "process": "processo",
    "library": "biblioteca",
}


def _has_term(text: str, term: str) -> int:
    return len(re.findall(rf"(?<!\w){re.escape(term)}(?!\w)", text, re.IGNORECASE))


def plain_pairs(lang: str) -> list[tuple[str, str, str]]:
    """Every message usable for plain evaluation (make_eval_sets' rule)."""
    seen: dict[str, tuple[str, str]] = {}
    for mo, messages in catalogs(lang):
        for en, tr in messages:
            if en not in seen and usable(en, tr):
                seen[en] = (tr, mo.stem)
    return [(en, tr, cat) for en, (tr, cat) in seen.items()]


def consistency(pairs, candidates: dict[str, str]) -> dict[str, tuple[int, float]]:
    """Per term: messages holding it once, and the share whose translation holds the
    target term (word-bounded, any case)."""
    out = {}
    for term, target in candidates.items():
        uses = [(en, tr) for en, tr, _ in pairs if _has_term(en, term) == 1]
        hits = sum(_has_term(tr, target) >= 1 for _, tr in uses)
        out[term] = (len(uses), hits / len(uses) if uses else 0.0)
    return out


def extract_glossary(
    lang: str, min_uses: int, min_consistency: float
) -> tuple[dict, dict, list, int]:
    pairs = plain_pairs(lang)
    stats = consistency(pairs, CANDIDATES)
    glossary = {
        t: CANDIDATES[t] for t, (n, c) in stats.items() if n >= min_uses and c >= min_consistency
    }
    protection = Protection.of(glossary=glossary)
    rows = []
    for en, tr, cat in pairs:
        terms = [s for s in find_spans(en, protection) if s.kind == "glossary"]
        if not terms:
            continue
        # every expected target is in the human translation as often as in the source
        want = Counter(s.output.casefold() for s in terms)
        if all(_has_term(tr, t) >= n for t, n in want.items()):
            rows.append((en, tr, cat))
    return glossary, stats, _by_hash(rows), len(pairs)


def _header(fh, lang: str, what: str) -> None:
    fh.write(
        f"# gettext catalogs of /usr/share/locale/{lang} on Debian 12, "
        f"extracted {dt.date.today()} by bench/make_span_sets.py: {what}\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lang", default="pt_BR")
    ap.add_argument("--size", type=int, default=1000, help="span-set messages (default 1000)")
    ap.add_argument("--glossary-size", type=int, default=300, help="glossary-set sentences")
    ap.add_argument("--min-uses", type=int, default=8)
    ap.add_argument("--min-consistency", type=float, default=0.85)
    ap.add_argument("--out-dir", type=Path, default=DATA)
    args = ap.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    rows, sources = extract_spans(args.lang)
    chosen = select(rows, args.size)
    kinds = kinds_of(chosen)
    path = args.out_dir / "en-pt.spans.tsv"
    with path.open("w", encoding="utf-8") as fh:
        _header(fh, args.lang, "messages whose msgid and msgstr carry the same protected spans")
        fh.write(
            f"# {len(chosen)} of {len(rows)} usable pairs; spans by kind: "
            f"{', '.join(f'{k} {n}' for k, n in kinds.most_common())}; "
            f"markup tags: {'control_plane.text.markup' if markup_hook() else 'left out'}; "
            "columns: english, translation, catalog\n"
        )
        for name, pkg, kept in sources:
            fh.write(f"# source {name} ({pkg}): {kept} usable\n")
        for en, tr, cat in chosen:
            fh.write(f"{en}\t{tr}\t{cat}\n")
    print(f"wrote {len(chosen)} of {len(rows)} pairs to {path} ({dict(kinds)})")

    glossary, stats, grows, total = extract_glossary(args.lang, args.min_uses, args.min_consistency)
    gchosen = grows[: args.glossary_size]
    gpath = args.out_dir / "en-pt.glossary.json"
    gpath.write_text(
        json.dumps(
            {
                "_about": (
                    "software glossary for evaluation/data/en-pt.glossary.tsv; terms kept where "
                    f"at least {args.min_consistency:.0%} of the {args.lang} catalog messages "
                    f"holding the term (at least {args.min_uses}) translate it so; "
                    "_consistency: share of those messages whose translation holds the target"
                ),
                "glossary": glossary,
                "_consistency": {
                    t: f"{c:.1%} of {n}" for t, (n, c) in sorted(stats.items()) if t in glossary
                },
                "_rejected": {
                    t: f"{c:.1%} of {n}" for t, (n, c) in sorted(stats.items()) if t not in glossary
                },
            },
            indent=1,
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    tpath = args.out_dir / "en-pt.glossary.tsv"
    protection = Protection.of(glossary=glossary)
    used = Counter(
        s.output.casefold()
        for en, *_ in gchosen
        for s in find_spans(en, protection)
        if s.kind == "glossary"
    )
    with tpath.open("w", encoding="utf-8") as fh:
        _header(fh, args.lang, "plain messages holding glossary terms of en-pt.glossary.json")
        fh.write(
            f"# {len(gchosen)} of {len(grows)} messages (of {total} plain pairs) whose human "
            f"translation holds every expected glossary target; {sum(used.values())} term "
            "occurrences; columns: english, translation, catalog\n"
        )
        for en, tr, cat in gchosen:
            fh.write(f"{en}\t{tr}\t{cat}\n")
    print(f"wrote {len(gchosen)} of {len(grows)} sentences to {tpath}; glossary {glossary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
