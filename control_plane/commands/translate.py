"""``mtctl translate``: plain text in, one translated line per input line out; or an
HTML/XML document in, the same document translated out (``--format``).

Every path keeps protected spans exactly (control_plane.text.protect): placeholders,
inline code, URLs, e-mail addresses, file paths, numbers with units, ``--do-not-translate``
strings and ``--glossary`` terms (whose target term comes out as given)."""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from control_plane.engine import UnsupportedPair

BATCH_LINES = 64
DOCUMENT_CHUNK_WORDS = 1000  # a markup document is translated this many words at a time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "translate",
        help="translate text files or stdin line by line",
        description="Translate plain text: one output line per input line on stdout "
        "(empty lines stay empty). With --format html or xml the whole input is one "
        "document: tags, attributes and entities are kept, text is translated with its "
        "inline tags carried along. Placeholders (%s, {count}, ${VAR}), inline code, "
        "URLs, e-mail addresses, file paths and numbers with units always come out "
        "exactly as written. A progress bar goes to stderr when it is a terminal.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  mtctl translate -s en -t pt notes.txt\n"
        "  mtctl translate -s en -t pt --format html page.html > page.pt.html\n"
        "  mtctl translate -s en -t pt --glossary terms.json --do-not-translate Acme notes.txt\n"
        '\nterms.json: {"source term": "target term", ...}',
    )
    p.add_argument(
        "-s",
        "--source",
        required=True,
        help="source language, e.g. en, or auto (detected from the input; said on stderr)",
    )
    p.add_argument("-t", "--target", required=True, help="target language, e.g. pt")
    p.add_argument(
        "--precision",
        choices=["int8", "fp32", "fp16", "auto"],
        default=None,
        help="model precision; auto: int8 or fp32, whichever this CPU runs faster (measured "
        "once, kept in the model store) (default: MTB_PRECISION or int8)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads (default: the usable cores)"
    )
    p.add_argument("--beam", type=int, default=None, help="beam size (default 1: greedy)")
    p.add_argument(
        "--backend",
        choices=["local", "triton"],
        default=None,
        help="in-process engine (default) or a Triton server",
    )
    p.add_argument("--triton-url", default=None, help="Triton gRPC HOST:PORT")
    p.add_argument("--no-cache", action="store_true", help="do not use the segment cache")
    p.add_argument(
        "--format",
        choices=["text", "html", "xml", "po", "xliff", "markdown", "srt", "vtt", "docx"],
        default=None,
        help="default: from FILE's extension (.po .pot .xlf .md .srt .vtt .docx .html "
        ".xml), else text. text: line by line. html / xml: the whole input is one document; "
        "every tag, attribute and entity is kept, <code>, <pre>, <script>, <style> and "
        'translate="no" are left untranslated, alt and title attributes are translated. '
        "po, xliff, markdown, srt, vtt, docx: the file's structure is kept and the "
        "translated file is written (to --output, or stdout)",
    )
    p.add_argument(
        "-o", "--output", default=None, help="write the translation here (default: stdout)"
    )
    p.add_argument(
        "--glossary",
        metavar="FILE.json",
        default=None,
        help='a JSON object {"source term": "target term"}: each source term (a whole '
        "word, any case) is translated as exactly its target term (at most 1000 terms)",
    )
    p.add_argument(
        "--do-not-translate",
        metavar="STR",
        action="append",
        default=[],
        help="a string to keep exactly as written wherever it occurs (repeatable)",
    )
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
    unless --no-cache. (The cache holds what the engine was given, masked spans
    included, so it is right whatever the protection.)"""
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


class OptionError(Exception):
    """A bad --glossary file or --do-not-translate string: exit code 2 with the reason."""


def load_protection(args: argparse.Namespace):  # noqa: ANN201 - a Protection
    """The Protection for --format, --glossary and --do-not-translate, checked as the API
    checks a request's (same limits, same messages)."""
    from pydantic import ValidationError

    from control_plane.jobs.request import TranslateRequest
    from control_plane.text.spans import Protection

    glossary = None
    if args.glossary:
        try:
            glossary = json.loads(Path(args.glossary).read_text(encoding="utf-8"))
        except OSError as exc:
            raise OptionError(f"--glossary: cannot read {args.glossary}: {exc.strerror}") from exc
        except (ValueError, UnicodeDecodeError) as exc:
            raise OptionError(f"--glossary: {args.glossary} is not JSON: {exc}") from exc
        if not isinstance(glossary, dict):
            raise OptionError(
                f'--glossary: {args.glossary} must hold a JSON object {{"source": "target"}}'
            )
    try:
        req = TranslateRequest.model_validate(
            {
                "content": "-",
                "source_language": "en",
                "target_language": "en",
                "format": args.format,
                "do_not_translate": args.do_not_translate or None,
                "glossary": glossary,
            }
        )
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        field = "--" + str(err["loc"][0]).replace("_", "-")
        raise OptionError(f"{field}: {err['msg'].removeprefix('Value error, ')}") from exc
    return Protection.of(req.format, req.do_not_translate or (), req.glossary or {})


def _engine_call(translate: Callable[[list[str]], list[str]]):  # noqa: ANN202
    from control_plane.engine.base import Translation

    def call(texts: list[str]) -> list[Translation]:
        return [Translation(t, 1.0) for t in translate(texts)]

    return call


def translate_lines(lines: list[str], protection, translate) -> list[str]:  # noqa: ANN001
    """One translation per line, spans kept."""
    from control_plane.text.protect import run_sync

    return [t.text for t in run_sync(lines, protection, _engine_call(translate))]


def translate_document(text: str, source: str, protection, translate) -> str:  # noqa: ANN001
    """An HTML/XML document: planned like a job (control_plane.jobs.planner), each
    chunk's segments translated with their inline tags and spans kept, rendered back."""
    from control_plane.jobs.planner import plan_stored
    from control_plane.text.chunking import Layout
    from control_plane.text.protect import run_sync

    _, stored, _ = plan_stored(text, DOCUMENT_CHUNK_WORDS, source, protection.format)
    out = []
    for data in stored:
        layout = Layout.loads(data)
        done = run_sync(layout.segments, protection, _engine_call(translate))
        out.append(layout.render([t.text for t in done], protection))
    return "".join(out)


def _format_of(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    if args.file != "-":
        from control_plane.jobs.documents import format_of

        return format_of(args.file) or "text"
    return "text"


def _document(args: argparse.Namespace, protection, translate) -> int:  # noqa: ANN001
    """A document format: bytes in, the translated file out."""
    from control_plane.jobs.documents import InvalidDocument
    from control_plane.text import formats

    fmt = formats.get(args.format)
    data = args.data if args.data is not None else _read_input(args)
    options = formats.Options(args.source, args.target, model_version="mtctl translate")
    try:
        out = formats.translate_document(data, fmt, _engine_call(translate), options, protection)
    except (ValueError, SyntaxError, KeyError, InvalidDocument) as exc:
        print(f"mtctl translate: {args.file} is not readable as {fmt.name}: {exc}", file=sys.stderr)
        return 2
    if args.output:
        Path(args.output).write_bytes(out)
    else:
        sys.stdout.buffer.write(out)
        sys.stdout.flush()
    return 0


def _read_input(args: argparse.Namespace) -> bytes:
    return sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()


def served_pairs() -> list[tuple[str, str]]:
    """The pairs the local model store serves (detection prefers their sources)."""
    from control_plane.engine.store import installed_models, pairs_of
    from control_plane.settings import Settings

    try:
        metas = installed_models(Settings.from_env().model_dir).values()
    except OSError:  # no model store: detection works without the preference
        return []
    return sorted({pair for meta in metas for pair in pairs_of(meta)})


def _detect_source(args: argparse.Namespace) -> None:
    """-s auto: the whole input is read first and its language detected (as the API's
    admission does); the input is then translated from memory."""
    from control_plane.jobs.admission import Rejected, detect_source
    from control_plane.jobs.documents import encode, is_document

    data = _read_input(args)
    args.data = data
    content = encode(data, args.format) if is_document(args.format) else data.decode("utf-8")
    try:
        found = detect_source(content, args.format, sorted({s for s, _ in served_pairs()}))
    except Rejected as exc:
        raise OptionError(exc.message) from exc
    print(f"mtctl translate: detected {found.language} ({found.confidence:.2f})", file=sys.stderr)
    args.source = found.language


def run(args: argparse.Namespace) -> int:
    args.format = _format_of(args)
    args.data = None
    try:
        protection = load_protection(args)
        if args.source.lower() == "auto":
            _detect_source(args)
    except (OptionError, UnicodeDecodeError) as exc:
        print(f"mtctl translate: {exc}", file=sys.stderr)
        return 2
    try:
        translate = make_translator(args)
    except UnsupportedPair as exc:
        print(f"mtctl translate: {exc}", file=sys.stderr)
        return 2
    if args.format not in ("text", "html", "xml"):
        return _document(args, protection, translate)
    if args.data is not None:
        stream = io.StringIO(args.data.decode("utf-8"))
    else:
        stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
    out_stream = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    if args.format != "text":
        try:
            document = stream.read()
        finally:
            if stream is not sys.stdin:
                stream.close()
        try:
            out = translate_document(document, args.source, protection, translate)
            if args.format == "html":
                from control_plane.text.markup import set_lang

                out = set_lang(out, args.target)
            out_stream.write(out)
            out_stream.flush()
        except ValueError as exc:  # the document does not parse as --format
            print(f"mtctl translate: {exc}", file=sys.stderr)
            return 2
        finally:
            if out_stream is not sys.stdout:
                out_stream.close()
        return 0
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit=" lines", file=sys.stderr, desc=f"{args.source}->{args.target}")
    try:
        for batch in _batches(stream, BATCH_LINES):
            for line in translate_lines(batch, protection, translate):
                out_stream.write(line + "\n")
            out_stream.flush()
            if bar:
                bar.update(len(batch))
    finally:
        if bar:
            bar.close()
        if stream is not sys.stdin:
            stream.close()
        if out_stream is not sys.stdout:
            out_stream.close()
    return 0
