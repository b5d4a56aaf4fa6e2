"""``mtctl translate``: plain text in, one translated line per input line out."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

from control_plane.engine import UnsupportedPair

BATCH_LINES = 64


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "translate",
        help="translate text files or stdin line by line",
        description="Translate plain text: one output line per input line on stdout "
        "(empty lines stay empty). A progress bar goes to stderr when it is a terminal.",
    )
    p.add_argument("-s", "--source", required=True, help="source language, e.g. en")
    p.add_argument("-t", "--target", required=True, help="target language, e.g. pt")
    p.add_argument(
        "--precision",
        choices=["int8", "fp32", "fp16"],
        default=None,
        help="model precision (default: MTB_PRECISION or int8)",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    p.add_argument("--beam", type=int, default=None, help="beam size (default 1: greedy)")
    p.add_argument(
        "--backend",
        choices=["local", "triton"],
        default=None,
        help="in-process engine (default) or a Triton server",
    )
    p.add_argument("--triton-url", default=None, help="Triton gRPC HOST:PORT")
    p.add_argument("--no-cache", action="store_true", help="do not use the segment cache")
    p.add_argument("file", nargs="?", default="-", help="input file, or - for stdin")
    p.set_defaults(func=run)


def _batches(lines: Iterator[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for line in lines:
        batch.append(line.rstrip("\n").rstrip("\r"))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def make_translator(args: argparse.Namespace):
    """A callable (segments) -> list[str] for the chosen backend, with the cache in front
    unless --no-cache."""
    from control_plane.settings import Settings

    overrides = {}
    if args.precision:
        overrides["precision"] = args.precision
    if args.threads is not None:
        overrides["threads"] = args.threads
    if args.beam:
        overrides["beam_size"] = args.beam
    if args.backend:
        overrides["inference"] = args.backend
    if args.triton_url:
        overrides["triton_url"] = args.triton_url
    settings = Settings.from_env(**overrides)
    if settings.inference == "triton":
        from control_plane.inference.base import InferenceUnavailable
        from control_plane.inference.triton_sync import TritonTranslator

        try:
            engine = TritonTranslator(settings)
        except InferenceUnavailable as exc:
            raise SystemExit(f"mtctl translate: {exc}") from None
    else:
        from control_plane.inference.local import open_local_engine

        engine = open_local_engine(settings)
    supported = engine.pairs()
    if (args.source, args.target) not in supported:
        raise UnsupportedPair(args.source, args.target, supported)
    translate = _cached(engine, settings, args) if not args.no_cache else None

    def run_batch(segments: list[str]) -> list[str]:
        if translate is not None:
            return translate(segments)
        return [t.text for t in engine.translate(segments, args.source, args.target)]

    return run_batch


def _cached(engine, settings, args):
    """The service's segment cache (shared DB table + LRU) when it is available."""
    try:
        from control_plane.cache import cached_translate_sync
    except ImportError:
        return None
    return cached_translate_sync(engine, settings, args.source, args.target)


def run(args: argparse.Namespace) -> int:
    try:
        translate = make_translator(args)
    except UnsupportedPair as exc:
        print(f"mtctl translate: {exc}", file=sys.stderr)
        return 2
    stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit=" lines", file=sys.stderr, desc=f"{args.source}->{args.target}")
    try:
        for batch in _batches(stream, BATCH_LINES):
            for line in translate(batch):
                sys.stdout.write(line + "\n")
            sys.stdout.flush()
            if bar:
                bar.update(len(batch))
    finally:
        if bar:
            bar.close()
        if stream is not sys.stdin:
            stream.close()
    return 0
