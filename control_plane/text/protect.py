"""Translate segments with their protected spans kept exactly, whatever runs the model.

Mechanism (chosen by measurement, see README "Protected spans"): every span is replaced by
a mask token the model copies (``X1``, ``X2``, ... a capital letter and a number: the
Bergamot students copy them unchanged and move them with word order), the masked segment
is translated, and the output is checked: every token exactly once, no invented token,
paired tags still nested. A segment that passes gets its spans back in the model's
order. One that fails falls back to translating the text between its spans piece by piece
with the spans kept in source order; that always holds every span exactly once, at some
cost in fluency, so it is only the fallback.

Segments with nothing to translate outside their spans (numbers, list markers,
punctuation, a lone URL, ``(2)``) never reach the model.

The work is a generator of engine rounds (``protect``): it yields the texts it needs
translated and receives their translations, so one piece of logic serves the async
worker (in-process engine or Triton) and synchronous callers (CLI, benchmarks) alike:
``run_sync(segments, protection, engine_call)`` / ``await run_async(...)``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, replace

from control_plane.engine.base import Translation
from control_plane.text.spans import (
    Protection,
    Span,
    find_spans,
    has_text,
    substitute,
    well_nested,
)

_LETTERS = "XZQJKVW"  # mask token prefixes, the first absent from the segment is used
_WORD_WEIGHT = re.compile(r"\w+")

Rounds = Generator[list[str], list[Translation], list[Translation]]


@dataclass
class _Masked:
    source: str
    spans: list[Span]
    text: str  # what the engine sees
    tokens: list[str]  # tokens[i] stands for spans[i]
    token_re: re.Pattern


def mask(text: str, spans: list[Span]) -> _Masked:
    """Replace each span by a token; a token is kept apart from glued words by a space
    (``<b>Bold</b>`` -> ``X1 Bold X2``), which ``unmask`` takes away again."""
    letter = next((c for c in _LETTERS if not re.search(rf"{c}\d", text)), "X")
    tokens = [f"{letter}{i}" for i in range(1, len(spans) + 1)]
    parts, pos = [], 0
    for span, token in zip(spans, tokens, strict=True):
        before = text[pos : span.start]
        parts.append(before)
        if before and not before[-1].isspace():
            parts.append(" ")
        parts.append(token)
        pos = span.end
        if pos < len(text) and not text[pos].isspace():
            parts.append(" ")
    parts.append(text[pos:])
    token_re = re.compile(rf"(?<![^\W\d_]){letter}(\d+)(?!\d)")
    return _Masked(text, spans, "".join(parts), tokens, token_re)


def unmask(m: _Masked, output: str, escape: Callable[[str], str] = str) -> str | None:
    """The output with every token replaced by its span's text, or None when the model
    lost, doubled or invented a token or broke the nesting of paired tags. ``escape``
    applies to the model's text between spans (markup: ``markup.escape_output``)."""
    found = list(m.token_re.finditer(output))
    numbers = [int(f.group(1)) for f in found]
    if sorted(numbers) != list(range(1, len(m.spans) + 1)):
        return None
    if not well_nested(m.spans[n - 1] for n in numbers):
        return None
    parts, pos = [], 0
    for f, n in zip(found, numbers, strict=True):
        span = m.spans[n - 1]
        start, end = f.span()
        # a space mask() added beside a glued span goes again
        if _glued_left(m.source, span) and output[pos:start].endswith(" "):
            start -= 1
        parts.append(escape(output[pos:start]))
        parts.append(span.output)
        pos = end
        if _glued_right(m.source, span) and output[pos : pos + 1] == " ":
            pos += 1
    parts.append(escape(output[pos:]))
    return "".join(parts)


def _glued_left(source: str, span: Span) -> bool:
    return span.start > 0 and not source[span.start - 1].isspace()


def _glued_right(source: str, span: Span) -> bool:
    return span.end < len(source) and not source[span.end].isspace()


def _pieces(text: str, spans: list[Span]) -> list[tuple[bool, str]]:
    """(translatable, text) pieces: the text between spans, and the spans' outputs."""
    out: list[tuple[bool, str]] = []
    pos = 0
    for s in spans:
        out.append((True, text[pos : s.start]))
        out.append((False, s.output))
        pos = s.end
    out.append((True, text[pos:]))
    return [(t, p) for t, p in out if p]


def _words(text: str) -> int:
    return max(1, len(_WORD_WEIGHT.findall(text)))


def protect(segments: Sequence[str], protection: Protection | None = None) -> Rounds:
    """Rounds of engine work for ``segments``; returns one Translation per segment.

    ``extra`` tag spans for markup come from ``control_plane.text.markup.tag_spans``
    when ``protection.format`` is html or xml."""
    protection = protection or Protection()
    escape = _escaper(protection.format)
    results: list[Translation | None] = [None] * len(segments)
    masked: dict[int, _Masked] = {}
    for i, seg in enumerate(segments):
        spans = _markup_safe(
            find_spans(seg, protection, _tag_spans(seg, protection.format)), escape
        )
        if not spans:
            if not has_text(seg):
                results[i] = Translation(seg, 1.0)
            continue
        rest = "".join(p for t, p in _pieces(seg, spans) if t)
        if not has_text(rest):
            results[i] = Translation(substitute(seg, spans), 1.0)
            continue
        masked[i] = mask(seg, spans)

    # round 1: plain segments as they are, masked ones masked
    first = {i: (masked[i].text if i in masked else seg) for i, seg in enumerate(segments)}
    first = {i: t for i, t in first.items() if results[i] is None}
    outs = yield from _call(list(first.values()))
    split: dict[int, list[tuple[bool, str]]] = {}
    for (i, _), out in zip(first.items(), outs, strict=True):
        if i not in masked:
            results[i] = Translation(escape(out.text), out.score) if escape is not str else out
            continue
        text = unmask(masked[i], out.text, escape)
        if text is not None:
            results[i] = Translation(text, out.score)
        else:
            split[i] = _pieces(segments[i], masked[i].spans)

    # round 2 (fallback): the text between spans piece by piece, spans in source order
    if split:
        wanted = [p.strip() for ps in split.values() for t, p in ps if t and has_text(p)]
        outs2 = yield from _call(wanted)
        done = dict(zip(wanted, outs2, strict=True))
        for i, ps in split.items():
            texts, weights, scores = [], [], []
            for translatable, p in ps:
                core = p.strip()
                if translatable and has_text(p):
                    tr = done[core]
                    lead, trail = p[: len(p) - len(p.lstrip())], p[len(p.rstrip()) :]
                    texts.append(lead + escape(tr.text) + trail)
                    weights.append(_words(core))
                    scores.append(tr.score)
                else:
                    texts.append(p)
            score = sum(w * s for w, s in zip(weights, scores, strict=True)) / max(sum(weights), 1)
            results[i] = Translation("".join(texts), round(score if weights else 1.0, 6))
    return [r if r is not None else Translation("", 1.0) for r in results]


def _call(texts: list[str]) -> Generator[list[str], list[Translation], list[Translation]]:
    """One engine round for ``texts`` (deduplicated; nothing is sent for an empty list)."""
    if not texts:
        return []
    unique = list(dict.fromkeys(texts))
    outs = yield unique
    by_text = dict(zip(unique, outs, strict=True))
    return [by_text[t] for t in texts]


def _tag_spans(segment: str, fmt: str) -> list[Span]:
    if fmt not in ("html", "xml"):
        return []
    from control_plane.text.markup import tag_spans

    return tag_spans(segment, fmt)


def _escaper(fmt: str) -> Callable[[str], str]:
    """What model output goes through before it is placed back: markup formats escape
    ``&``, ``<``, ``>`` and ``"`` (tags and references come back as spans, byte for
    byte); plain text is left alone (``str`` is the identity on strings)."""
    if fmt not in ("html", "xml"):
        return str
    from control_plane.text.markup import escape_output

    return escape_output


def _markup_safe(spans: list[Span], escape: Callable[[str], str]) -> list[Span]:
    """A glossary's target term is the caller's text, not markup: escape it like model
    output. (Every other span's output is the segment's own, already escaped, text.)"""
    if escape is str:
        return spans
    return [replace(s, output=escape(s.output)) if s.kind == "glossary" else s for s in spans]


def run_sync(
    segments: Sequence[str],
    protection: Protection | None,
    translate: Callable[[list[str]], list[Translation]],
) -> list[Translation]:
    rounds = protect(segments, protection)
    try:
        request = next(rounds)
        while True:
            request = rounds.send(translate(request))
    except StopIteration as stop:
        return stop.value


async def run_async(
    segments: Sequence[str],
    protection: Protection | None,
    translate: Callable[[list[str]], Awaitable[list[Translation]]],
) -> list[Translation]:
    rounds = protect(segments, protection)
    try:
        request = next(rounds)
        while True:
            request = rounds.send(await translate(request))
    except StopIteration as stop:
        return stop.value
