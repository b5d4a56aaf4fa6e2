"""Translate segments with their protected spans kept exactly, whatever runs the model.

Mechanism (chosen by measurement, see README "Protected spans"): every span is replaced by
a mask token the model copies (``X1``, ``X2``, ... a capital letter and a number: the
Bergamot students copy them unchanged and move them with word order), the masked segment
is translated, and the output is checked: every token exactly once, no invented token,
paired tags still nested and not emptied. A segment that passes gets its spans back in
the model's order. Each segment walks a short list of attempts and takes the first whose
check passes:

1. glossary terms only: the segment with its other spans masked but its glossary terms
   left as text, kept when the output already holds every target term (masking a term
   costs the model its gender and context: 10 BLEU on the glossary set, against 0.2 when
   only the segments that miss a term are masked);
2. everything masked;
3. the text between spans piece by piece with the spans kept in source order: always
   every span exactly once, at some cost in fluency, so only the fallback.

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
_WORDISH = re.compile(r"\w")

Rounds = Generator[list[str], list[Translation], list[Translation]]


@dataclass
class _Masked:
    source: str
    spans: list[Span]
    text: str  # what the engine sees
    tokens: list[str]  # tokens[i] stands for spans[i]
    token_re: re.Pattern
    filled: list[tuple[int, int]]  # paired tags (open, close) with text between them


def _filled_pairs(text: str, spans: list[Span]) -> list[tuple[int, int]]:
    """Indexes of paired tag spans that enclose text in the source: the model must not
    leave them empty (``<a>menu</a>`` -> ``<a></a> menu``)."""
    pairs, stack = [], []
    for i, s in enumerate(spans):
        if s.role == "open":
            stack.append(i)
        elif s.role == "close" and stack:
            j = stack.pop()
            if has_text(text[spans[j].end : s.start]):
                pairs.append((j, i))
    return pairs


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
    return _Masked(text, spans, "".join(parts), tokens, token_re, _filled_pairs(text, spans))


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
    where = {n - 1: f.span() for f, n in zip(found, numbers, strict=True)}
    if any(not has_text(output[where[a][1] : where[b][0]]) for a, b in m.filled):
        return None
    parts, pos = [], 0
    for f, n in zip(found, numbers, strict=True):
        span = m.spans[n - 1]
        start, end = f.span()
        # The space mask() added beside a glued span goes again, where the token still
        # has its source neighbour beyond that space (the model may have moved it).
        left, right = _neighbours(m, n - 1)
        if left and output[pos:start].endswith(" ") and _alike(output[: start - 1], left, -1):
            start -= 1
        parts.append(escape(output[pos:start]))
        parts.append(span.output)
        pos = end
        if right and output[pos : pos + 1] == " " and _alike(output[pos + 1 :], right, 0):
            pos += 1
    parts.append(escape(output[pos:]))
    return "".join(parts)


def _alike(text: str, neighbour: str, at: int) -> bool:
    """Whether ``text`` has, at its start (``at`` 0) or end (-1), what stood beside the
    span in the source: the same touching token or punctuation mark, or a word character
    for a word character (``<b>Bold`` -> ``<b>Negrito``; but ``password.`` whose token
    moved before "mais" keeps its space)."""
    if len(neighbour) > 1:  # a touching span's token
        return text.startswith(neighbour) if at == 0 else text.endswith(neighbour)
    if not text:
        return False
    ch = text[at]
    return ch == neighbour or bool(_WORDISH.match(ch) and _WORDISH.match(neighbour))


def _neighbours(m: _Masked, i: int) -> tuple[str, str]:
    """What touches span ``i`` in the source on each side without a space between: the
    character, or the token of a span that touches it; "" where a space (or nothing) is."""
    span, source = m.spans[i], m.source
    left = right = ""
    if span.start > 0 and not source[span.start - 1].isspace():
        touching = i > 0 and m.spans[i - 1].end == span.start
        left = m.tokens[i - 1] if touching else source[span.start - 1]
    if span.end < len(source) and not source[span.end].isspace():
        touching = i + 1 < len(m.spans) and m.spans[i + 1].start == span.end
        right = m.tokens[i + 1] if touching else source[span.end]
    return left, right


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


class _Attempt:
    """One way to translate a segment: the engine texts it needs, and the result from
    their translations, or None when the check fails (the next attempt is tried)."""

    inputs: list[str]
    name = ""

    def finish(self, outs: list[Translation]) -> Translation | None:
        raise NotImplementedError


class _Plain(_Attempt):
    name = "plain"

    def __init__(self, text: str, escape: Callable[[str], str]):
        self.inputs, self.escape = [text], escape

    def finish(self, outs: list[Translation]) -> Translation:
        out = outs[0]
        return Translation(self.escape(out.text), out.score) if self.escape is not str else out


class _Masking(_Attempt):
    """``spans`` masked; ``terms`` (glossary spans left as text) must come out as their
    target terms."""

    def __init__(
        self, text: str, spans: list[Span], escape: Callable[[str], str], terms: list[Span]
    ):
        self.name = "terms" if terms else "masked"
        self.masked = mask(text, spans)
        self.inputs, self.escape, self.terms = [self.masked.text], escape, terms

    def finish(self, outs: list[Translation]) -> Translation | None:
        text = unmask(self.masked, outs[0].text, self.escape)
        if text is None:
            return None
        need: dict[str, int] = {}
        for s in self.terms:  # "FILE ... file": ARQUIVO and arquivo, twice in any case
            need[s.output.casefold()] = need.get(s.output.casefold(), 0) + 1
        if any(_count_word(text, term) < n for term, n in need.items()):
            return None
        return Translation(_as_given(text, self.terms), outs[0].score)


def _as_given(text: str, terms: list[Span]) -> str:
    """The target terms as the glossary gives them: the model's "arquivo" for a term
    given as "ARQUIVO" was accepted (found in any case) and kept. A capital first letter
    stays (the model starts a sentence with the term); a term whose casefold two spans
    want written differently ("FILE ... file") is left as the model wrote it."""
    forms: dict[str, set[str]] = {}
    for s in terms:
        forms.setdefault(s.output.casefold(), set()).add(s.output)
    for variants in forms.values():
        if len(variants) != 1:
            continue
        (form,) = variants
        ok = {form, form[:1].upper() + form[1:]}
        text = re.sub(
            rf"(?<!\w){re.escape(form)}(?!\w)",
            lambda m, form=form, ok=ok: m.group(0) if m.group(0) in ok else form,
            text,
            flags=re.IGNORECASE,
        )
    return text


def _count_word(text: str, term: str) -> int:
    """Occurrences of ``term`` as a whole word ("arquivo" is not in "arquivos"), in any
    case: the model capitalizes a term that starts its sentence ("Memória insuficiente")."""
    return len(re.findall(rf"(?<!\w){re.escape(term)}(?!\w)", text, re.IGNORECASE))


_EDGE = re.compile(r"^\W*(.*?)\W*$", re.DOTALL)


class _Split(_Attempt):
    """The text between spans, piece by piece; punctuation and spaces at a piece's edges
    stay where they are (the model would drop a lone opening quote)."""

    name = "split"

    def __init__(self, text: str, spans: list[Span], escape: Callable[[str], str]):
        self.pieces, self.escape = _pieces(text, spans), escape
        self.cores: list[tuple[int, int] | None] = []
        for translatable, p in self.pieces:
            m = _EDGE.match(p)
            keep = translatable and m is not None and has_text(m.group(1))
            self.cores.append(m.span(1) if keep else None)
        self.inputs = [
            p[c[0] : c[1]] for (_, p), c in zip(self.pieces, self.cores, strict=True) if c
        ]

    def finish(self, outs: list[Translation]) -> Translation:
        it = iter(outs)
        texts, weights, scores = [], [], []
        for (_, p), core in zip(self.pieces, self.cores, strict=True):
            if core is None:
                texts.append(p)
                continue
            tr = next(it)
            texts.append(p[: core[0]] + self.escape(tr.text) + p[core[1] :])
            weights.append(_words(p[core[0] : core[1]]))
            scores.append(tr.score)
        score = sum(w * s for w, s in zip(weights, scores, strict=True)) / max(sum(weights), 1)
        return Translation("".join(texts), round(score if weights else 1.0, 6))


def _attempts(seg: str, spans: list[Span], escape: Callable[[str], str]) -> list[_Attempt]:
    terms = [s for s in spans if s.kind == "glossary"]
    out: list[_Attempt] = []
    if terms:
        out.append(_Masking(seg, [s for s in spans if s.kind != "glossary"], escape, terms))
    out.append(_Masking(seg, spans, escape, []))
    out.append(_Split(seg, spans, escape))
    return out


def protect(
    segments: Sequence[str],
    protection: Protection | None = None,
    outcomes: list[str] | None = None,
) -> Rounds:
    """Rounds of engine work for ``segments``; returns one Translation per segment.

    ``outcomes``, when given, receives per segment how it was translated: "passthrough"
    (nothing to translate), "plain" (no spans), "terms" (glossary terms unmasked),
    "masked" or "split" (the fallback) - for metrics and the benchmark.

    Tag spans for markup come from ``control_plane.text.markup.tag_spans`` when
    ``protection.format`` is html or xml."""
    protection = protection or Protection()
    escape = _escaper(protection.format)
    results: list[Translation | None] = [None] * len(segments)
    how = ["passthrough"] * len(segments)
    pending: dict[int, list[_Attempt]] = {}
    for i, seg in enumerate(segments):
        spans = _markup_safe(
            find_spans(seg, protection, _tag_spans(seg, protection.format)), escape
        )
        if not has_text("".join(p for t, p in _pieces(seg, spans) if t)):
            results[i] = Translation(substitute(seg, spans), 1.0)  # nothing to translate
        elif not spans:
            pending[i] = [_Plain(seg, escape)]
        else:
            pending[i] = _attempts(seg, spans, escape)
    while pending:  # one engine round per attempt level (at most three)
        current = {i: attempts[0] for i, attempts in pending.items()}
        outs = yield from _call([t for a in current.values() for t in a.inputs])
        pos = 0
        for i, attempt in current.items():
            result = attempt.finish(outs[pos : pos + len(attempt.inputs)])
            pos += len(attempt.inputs)
            if result is not None:
                results[i], how[i] = result, attempt.name
                del pending[i]
            else:
                pending[i].pop(0)
    if outcomes is not None:
        outcomes[:] = how
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
    """Markup segments: every inline tag and reference. Plain text keeps what reads as
    a tag too (``<b>Bold</b> text``, ``#include <stdio.h>``), but its references
    (``&amp;``) are only text there."""
    from control_plane.text.markup import tag_spans

    if fmt in ("html", "xml"):
        return tag_spans(segment, fmt)
    if "<" not in segment or ">" not in segment:
        return []
    return [s for s in tag_spans(segment, "html") if segment[s.start] == "<"]


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
    outcomes: list[str] | None = None,
) -> list[Translation]:
    rounds = protect(segments, protection, outcomes)
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
    outcomes: list[str] | None = None,
) -> list[Translation]:
    rounds = protect(segments, protection, outcomes)
    try:
        request = next(rounds)
        while True:
            request = rounds.send(await translate(request))
    except StopIteration as stop:
        return stop.value
