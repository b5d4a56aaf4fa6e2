"""``mtctl translate``: plain text in, one translated line per input line out; or an
HTML/XML document in, the same document translated out (``--format``).

Every path keeps protected spans exactly (control_plane.text.protect): placeholders,
inline code, URLs, e-mail addresses, file paths, numbers with units, ``--do-not-translate``
strings and ``--glossary`` terms (whose target term comes out as given)."""

from __future__ import annotations

import argparse
import errno
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from control_plane.engine import UnsupportedPair

BATCH_LINES = 64
DOCUMENT_CHUNK_WORDS = 1000  # a markup document is translated this many words at a time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "translate",
        help="translate text files or stdin line by line",
        description="Translate plain text: one output line per input line on stdout "
        "(empty lines stay empty; input must be UTF-8). With --format html or xml the "
        "whole input is one document: tags and attributes are kept, text is translated with its "
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
        "every tag, attribute name and value is kept (entity spelling is normalised as lxml "
        "writes it: HTML named entities such as &eacute; come out as characters, &amp; &lt; "
        "&gt; stay; entities an XML document declares stay as they are), <code>, <pre>, "
        '<script>, <style> and translate="no" are left untranslated, alt and title '
        "attributes are translated. po, xliff, markdown, srt, vtt, docx: the file's "
        "structure is kept and the translated file is written (to --output, or stdout)",
    )
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="write the translation here (default: stdout); the file is replaced only "
        "once the whole translation succeeded, and may not be the input file",
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
    p.set_defaults(func=run, stdout_optional=True)  # -o FILE needs no stdout: run checks


def _batches(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
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


class FileError(Exception):
    """The input cannot be read or is not UTF-8, the output cannot be written, or the
    document does not parse: exit code 2 with the reason, and --output left as it was."""


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


def _check_paths(args: argparse.Namespace) -> None:
    """Before any model loads: the input can be opened, the output can go where asked,
    and the two are not the same file (the temporary output would replace the input)."""
    if args.file == "-":
        if sys.stdin is None:  # started with `<&-`
            raise FileError("stdin is closed; give an input FILE")
    else:
        try:
            with open(args.file, "rb"):
                pass
        except OSError as exc:
            raise FileError(f"cannot read {args.file}: {exc.strerror}") from exc
    if args.output is None:
        if sys.stdout is None:  # started with `>&-`
            raise FileError("stdout is closed; write to a file with -o FILE")
        return
    if os.path.isdir(args.output):
        raise FileError(f"cannot write {args.output}: {os.strerror(errno.EISDIR)}")
    if not os.path.isdir(os.path.dirname(os.path.realpath(args.output))):
        raise FileError(f"cannot write {args.output}: {os.strerror(errno.ENOENT)}")
    if args.file != "-" and os.path.exists(args.output):
        with suppress(OSError):
            if os.path.samefile(args.file, args.output):
                raise FileError(
                    f"{args.output} is the input file; write the translation to another "
                    "file and move it over"
                )


def _decode(data: bytes, name: str) -> str:
    """``data`` as UTF-8 (strict), else a FileError naming the line of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise FileError(f"{name}: line {line} is not UTF-8 ({exc.reason})") from None


def _input_name(args: argparse.Namespace) -> str:
    return "stdin" if args.file == "-" else args.file


@contextmanager
def _binary_input(args: argparse.Namespace) -> Iterator[IO[bytes]]:
    """The input as a binary stream: the file, or stdin's bytes (never decoded with the
    locale's encoding or surrogate escapes: the input is UTF-8 or an error). A read error
    in the block becomes a FileError naming the input."""
    try:
        if args.file != "-":
            with open(args.file, "rb") as stream:
                yield stream
        elif hasattr(sys.stdin, "buffer"):
            yield sys.stdin.buffer
        else:  # a text stream without bytes (tests)
            yield io.BytesIO(sys.stdin.read().encode("utf-8"))
    except OSError as exc:
        raise FileError(f"cannot read {_input_name(args)}: {exc.strerror}") from exc


def _read_input(args: argparse.Namespace) -> bytes:
    """The whole input as bytes."""
    with _binary_input(args) as stream:
        return stream.read()


def _raw_lines(args: argparse.Namespace) -> Iterator[bytes]:
    """The input's lines as bytes, each ending at b"\\n", read as they come (a pipe is
    translated while it is still being written)."""
    if args.data is not None:
        yield from io.BytesIO(args.data)
        return
    with _binary_input(args) as stream:
        yield from stream


def _input_lines(args: argparse.Namespace) -> Iterator[str]:
    """Each input line without its line break, decoded strictly as UTF-8. Line breaks are
    \\n, \\r\\n or a lone \\r (universal newlines, as text files were always read)."""
    name = _input_name(args)
    for number, raw in enumerate(_raw_lines(args), 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FileError(f"{name}: line {number} is not UTF-8 ({exc.reason})") from None
        text = text.removesuffix("\n").removesuffix("\r")
        yield from text.split("\r")


class _Sink:
    """Writes to the output; a write error (a full disk) becomes a FileError naming it. A
    closed pipe on stdout stays BrokenPipeError: mtctl ends quietly (control_plane.cli)."""

    def __init__(self, stream: IO[Any], name: str) -> None:
        self.stream = stream
        self.name = name

    def write(self, data: Any) -> None:
        self._call(lambda: self.stream.write(data))

    def flush(self) -> None:
        self._call(self.stream.flush)

    def close(self) -> None:
        self._call(self.stream.close)

    def _call(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise FileError(f"cannot write {self.name}: {exc.strerror}") from exc


@contextmanager
def _output(path: str | None, binary: bool) -> Iterator[_Sink]:
    """stdout, or a temporary file beside ``path`` that replaces ``path`` only when the
    block ends without an error: a failed or interrupted run leaves an existing file as it
    was (it used to be truncated before the input was even read). A symbolic link is
    followed (the file it names is replaced, the link stays); a target that exists and is
    not a regular file (/dev/stdout, a FIFO, a device) is written in place."""
    if path is None:
        yield _Sink(sys.stdout.buffer if binary else sys.stdout, "stdout")
        return
    if os.path.exists(path) and not os.path.isfile(path):  # both follow links
        try:
            stream = open(path, "wb") if binary else open(path, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise FileError(f"cannot write {path}: {exc.strerror}") from exc
        yield from _written(_Sink(stream, path))
        return
    target = Path(os.path.realpath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise FileError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        stream = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")
        yield from _written(_Sink(stream, path))
        try:
            # mkstemp's file is 0600; give it the mode the target has, or a new file gets
            os.chmod(tmp, _mode_for(target))
            os.replace(tmp, target)
        except OSError as exc:
            raise FileError(f"cannot write {path}: {exc.strerror}") from exc
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def _written(sink: _Sink) -> Iterator[_Sink]:
    """Yields ``sink`` to the ``with`` block, then closes it: on an error quietly (the
    block's error is the one to report), else reporting the last buffered write's error
    (a full disk)."""
    try:
        yield sink
    except BaseException:
        with suppress(OSError):
            sink.stream.close()
        raise
    sink.close()


def _mode_for(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o7777
    except OSError:  # a new file: what open() would create under this umask
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _document(args: argparse.Namespace, protection, translate, out: _Sink) -> None:  # noqa: ANN001
    """A document format: bytes in, the translated file out."""
    from control_plane.jobs.documents import InvalidDocument
    from control_plane.text import formats

    fmt = formats.get(args.format)
    data = args.data if args.data is not None else _read_input(args)
    options = formats.Options(args.source, args.target, model_version="mtctl translate")
    try:
        done = formats.translate_document(data, fmt, _engine_call(translate), options, protection)
    except (ValueError, SyntaxError, KeyError, InvalidDocument) as exc:
        raise FileError(f"{_input_name(args)} is not readable as {fmt.name}: {exc}") from exc
    out.write(done)
    out.flush()


def _markup(args: argparse.Namespace, protection, translate, out: _Sink) -> None:  # noqa: ANN001
    """--format html / xml: the whole input is one document."""
    data = args.data if args.data is not None else _read_input(args)
    document = _decode(data, _input_name(args))
    try:
        done = translate_document(document, args.source, protection, translate)
    except ValueError as exc:  # the document does not parse as --format
        raise FileError(str(exc)) from exc
    if args.format == "html":
        from control_plane.text.markup import set_lang

        done = set_lang(done, args.target)
    out.write(done)
    out.flush()


def _text(args: argparse.Namespace, protection, translate, out: _Sink) -> None:  # noqa: ANN001
    """Plain text: one output line per input line, written batch by batch."""
    bar = None
    if sys.stderr is not None and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit=" lines", file=sys.stderr, desc=f"{args.source}->{args.target}")
    try:
        for batch in _batches(_input_lines(args), BATCH_LINES):
            for line in translate_lines(batch, protection, translate):
                out.write(line + "\n")
            out.flush()
            if bar:
                bar.update(len(batch))
    finally:
        if bar:
            bar.close()


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
    if is_document(args.format):
        content = encode(data, args.format)
    else:
        content = _decode(data, _input_name(args))
    try:
        found = detect_source(content, args.format, sorted({s for s, _ in served_pairs()}))
    except Rejected as exc:
        raise OptionError(exc.message) from exc
    print(f"mtctl translate: detected {found.language} ({found.confidence:.2f})", file=sys.stderr)
    args.source = found.language


def run(args: argparse.Namespace) -> int:
    args.format = _format_of(args)
    args.data = None
    # language codes as the API takes them: -s EN -t PT is en -> pt
    args.source = args.source.strip().lower()
    args.target = args.target.strip().lower()
    try:
        if args.source == args.target:  # "unsupported pair" said less than this
            raise OptionError(f"source and target are the same language ({args.source})")
        _check_paths(args)
        protection = load_protection(args)
        if args.source == "auto":
            _detect_source(args)
        translate = make_translator(args)
        if args.format not in ("text", "html", "xml"):
            with _output(args.output, binary=True) as out:
                _document(args, protection, translate, out)
        elif args.format != "text":
            with _output(args.output, binary=False) as out:
                _markup(args, protection, translate, out)
        else:
            with _output(args.output, binary=False) as out:
                _text(args, protection, translate, out)
    except (OptionError, FileError, UnsupportedPair) as exc:
        print(f"mtctl translate: {exc}", file=sys.stderr)
        return 2
    return 0
