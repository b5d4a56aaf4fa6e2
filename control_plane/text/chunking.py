"""Sentence-aware chunking that gives every byte of layout back, in time linear in the input.

Two levels:

- ``split_chunks(text, target_words)`` cuts a document into chunks of about
  ``target_words`` words (the unit of queue work), preferring paragraph boundaries, then
  line boundaries, then sentence boundaries. ``"".join(chunks) == text`` always.
- ``Layout.parse(chunk, lang)`` splits a chunk into literal pieces (line breaks, blank
  lines, indentation, list markers, the spaces between sentences) and sentence segments,
  which are what the engine translates. ``layout.render(translations)`` puts the
  translations back where the sentences were, so paragraph structure survives exactly.

``plan(text, target_words, lang)`` does both for one submission, sharing one pysbd budget.

Sentences come from pysbd (rule-based, maintained, ~0.5 ms per sentence on this machine,
handles abbreviations such as "Dr." and "e.g." and decimals). Sentences never cross a line
break: hard-wrapped prose is translated line by line so that every line break stays where
it was. Languages pysbd lacks use the closest rule set (Portuguese: Spanish rules plus a
short abbreviation list). Quality on the tricky cases in tests/unit/jobs/test_chunking.py:
English 12/12, Portuguese 8/8 (5/8 with Spanish rules alone, 3/8 with English rules).

Hostile input (issue 10): pysbd's cost grows faster than linearly with the length of one
call (8,000 characters of "a. " repeated: 0.7 s; 1,000 sentences: 4 s), and a regex holds
the GIL for the whole of its call (the final-run regex this module used took 4.8 s on a
run of 20,000 dots), so nothing here hands a regex or pysbd an input whose cost is not
bounded. Every step is linear in the text:

- pysbd sees at most ``PYSBD_WINDOW_CHARS`` characters and ``PYSBD_WINDOW_TERMINATORS``
  terminators per call (30 ms at worst on fuzzed input). A longer line is segmented in
  windows: the sentences of a window's last quarter, which the window's end may have
  cut short or opened a parenthesis on, are segmented again at the start of the next
  window. On the gettext corpus and the test documents (lines of up to 40,000
  characters) this gives exactly what one pysbd call per line gives.
- One document may spend ``PYSBD_BUDGET`` of pysbd work (``Budget``: about microseconds
  here). A 200,000-word document of ordinary prose uses half of it. Past the budget the
  rest of the document falls back to a cheap splitter (a sentence ends after . ! ? and
  the like followed by a space, or after a CJK full stop; sentences shorter than
  ``CHEAP_MIN_CHARS`` are joined, so a flood of "a." does not make millions of
  segments). Deterministic: the same text always gives the same segments.
- A segment is at most ``MAX_SEGMENT_CHARS`` characters: a longer sentence is cut at its
  last space before the limit (one huge "word" is cut where no combining mark follows).
- A chunk is at most ``max(MIN_CHUNK_CHARS, CHUNK_CHARS_PER_WORD * target_words)``
  characters; a line without any sentence end is cut every ``target_words`` words, and
  after ``CONFIRM_TRIES`` candidate cuts that pysbd refuses the next is taken as it is.
- Runs of blank lines are one regex step, lines without a word character are literal
  without pysbd, no regex here can backtrack (possessive quantifiers; the final run of
  terminators is found with str.rstrip), and a scan of a long text looks at
  ``SCAN_CHARS`` per call, so no single call holds the GIL for more than a few ms.

Worst inputs found (8 MiB bodies, this 2-core machine): 8 MiB of "a。" takes 4 s to plan
(it took minutes per 100 KB before); 200,000 one-word sentences 2.7 s; a 200,000-word
document of prose 3.5-4.5 s. control_plane.jobs.planner runs plans of large texts in a
child process. tests/unit/jobs/test_chunking_limits.py checks the bounds and that windowed
segmentation matches one pysbd call on real sentences.
"""

from __future__ import annotations

import functools
import json
import re
import textwrap
import threading
import unicodedata
from dataclasses import dataclass, field

import pysbd

from control_plane.text.spans import Protection, find_spans

_PYSBD_LANGS = {
    "en", "hi", "mr", "zh", "es", "am", "ar", "hy", "bg", "ur", "ru", "pl", "fa", "nl",
    "da", "fr", "my", "el", "it", "ja", "de", "kk", "sk",
}  # fmt: skip
_FALLBACK = {"pt": "es", "gl": "es", "ca": "es", "uk": "ru", "be": "ru", "cs": "sk", "no": "da"}

MAX_SEGMENT_CHARS = 2000  # longer sentences are cut at a space (the engine: 96 tokens)
PYSBD_WINDOW_CHARS = 4000  # pysbd never sees more characters in one call ...
PYSBD_WINDOW_TERMINATORS = 64  # ... or more sentence terminators (30 ms at worst here)
PYSBD_BUDGET = 4_000_000  # pysbd work per document, about microseconds (see Budget)
CHUNK_CHARS_PER_WORD = 40  # a chunk holds at most this many characters per target word
MIN_CHUNK_CHARS = 4096
CONFIRM_TRIES = 8  # pysbd checks of candidate cuts in a long line before a cheap cut
CHEAP_MIN_CHARS = 64  # the cheap splitter joins a shorter sentence with the next
SCAN_CHARS = 1 << 18  # a regex scan of a long text looks at this much per call (a few ms)

# indentation, then an optional list marker / heading / quote marker followed by spaces
_MARKER = re.compile(
    r"(?P<indent>[ \t]*)"
    r"(?P<marker>(?:[-*+\u2022\u2023\u25e6\u25aa\u2013]|\d{1,9}[.)]|\(\d{1,3}\)|[a-z][.)]"
    r"|[A-Z]\)|\([A-Za-z]\)|[ivxIVX]{1,6}[.)]|#{1,6}|>+)[ \t]+)?"
)
# Abbreviations the borrowed rule set misses: a sentence ending in one of these is joined
# with the next (measured on tests/unit/jobs/test_chunking.py's cases).
_ABBREVIATIONS = {
    "pt": {
        "sr", "sra", "srs", "sras", "srta", "dr", "dra", "drs", "dras", "prof", "profa",
        "eng", "exmo", "exma", "ltda", "cia", "av", "pág", "pag", "págs", "ex", "núm", "vol",
        "cap", "art", "fig", "tel", "dept", "depto", "obs", "aprox",
    },
}  # fmt: skip
_LAST_TOKEN = re.compile(r"(\w+)\.$")
_HAS_WORD = re.compile(r"\w")
_local = threading.local()

# str.splitlines() breaks lines at these ("\r\n" counts as one break)
_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_BREAK = re.compile(f"[{_BREAKS}]")
# one or more whole lines holding nothing but spaces (str.isspace), each with its break
_BLANK_LINES = re.compile(rf"(?:[^\S{_BREAKS}]*+(?:\r\n|[{_BREAKS}]))++")
_LAST_BREAK = re.compile(rf"(?s).*(?:\r\n|[{_BREAKS}])")  # up to the last line break
_LAST_SPACE = re.compile(r"(?s).*\s")  # up to the last space
_NOT_SPACE = re.compile(r"\S")

# What str.isspace() (so str.split() and regex \s) counts as a space, beyond ASCII.
_WIDE_SPACES = "\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"  # noqa: E501
_HAS_WIDE_SPACE = re.compile(f"[{_WIDE_SPACES}]")
# bytes -> b" " for an ASCII space (str.isspace), b"x" for anything else (UTF-8 included)
_WORD_BYTES = bytes(32 if chr(b).isspace() else 120 for b in range(128)) + b"x" * 128


def count_words(text: str) -> int:
    """``len(text.split())`` without building the list: 4-10x faster on large texts (it is
    called on the event loop for a whole request)."""
    if text.isascii():
        raw = text.encode("ascii")
    elif _HAS_WIDE_SPACE.search(text) is None:  # every non-ASCII character is a letter
        raw = text.encode("utf-8", "surrogatepass")
    else:
        return len(text.split())
    classes = raw.translate(_WORD_BYTES)
    return classes.count(b" x") + (classes[:1] == b"x")


def _segmenter(lang: str) -> pysbd.Segmenter:
    lang = lang.lower().split("-")[0]
    lang = lang if lang in _PYSBD_LANGS else _FALLBACK.get(lang, "en")
    cache = getattr(_local, "segmenters", None)
    if cache is None:
        cache = _local.segmenters = {}
    seg = cache.get(lang)
    if seg is None:  # pysbd segmenters keep state per call: one per thread
        seg = cache[lang] = pysbd.Segmenter(language=lang, clean=False, char_span=True)
    return seg


# pysbd only ends sentences after these. A line with none of them, or with them only in
# its final run (plus closing quotes or brackets: "Could not open the file."), is one
# sentence, and skipping pysbd there saves most of the REST service's CPU at submit
# (pysbd compiles a regex per sentence: 3.3 CPU-s per 100k gettext words). pysbd never
# split such a line at ';' or ':' in the 3,000 gettext lines (1,569 of them with a final
# terminator). tests/unit/jobs/test_chunking.py checks the shortcut against pysbd.
_TERMINATOR_CHARS = ".!?\u2026\u3002\uff01\uff1f\uff61\u061f\u203d"
_CLOSERS = "\"'\u201d\u2019\u00bb)]"
_CLOSERS_RE = "\"'\u201d\u2019\u00bb)\\]"  # the same as a regex character class body
_TERMINATORS = re.compile(f"[{_TERMINATOR_CHARS}]")
# a cheap sentence end: a run of terminators and closing quotes followed by a space or the
# end of the line, or any run of CJK full stops (those need no space)
_CJK_STOPS = "\u3002\uff01\uff1f\uff61"
_CHEAP_END = re.compile(
    rf"(?<![{_TERMINATOR_CHARS}])[{_TERMINATOR_CHARS}]++[{_CLOSERS_RE}]*+(?=\s|\Z)"
    rf"|[{_CJK_STOPS}]++[{_CLOSERS_RE}\u300d\u300f]*+"
)
# where a long line may be cut between two sentences (then checked with pysbd)
_CANDIDATE = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]]*+\s++(?=\S)")


def _count_terminators(text: str) -> int:
    return sum(map(text.count, _TERMINATOR_CHARS))


def _one_sentence(text: str) -> bool:
    """No terminator before the line's final run of terminators, closing quotes and spaces.
    (The regex ``[terminators]+[closers]*\\s*$`` this replaces took quadratic time on a
    long run of dots; stripping from the end finds the same run in linear time.)"""
    stripped = text.rstrip()
    unquoted = stripped.rstrip(_CLOSERS)
    body = unquoted.rstrip(_TERMINATOR_CHARS)
    return not _TERMINATORS.search(body if len(body) < len(unquoted) else text)


class Budget:
    """The pysbd work one document may spend, in microseconds of this machine's pysbd as
    measured on gettext prose and on floods of "a. ": a call costs 100, a character 1, a
    terminator 20 plus 0.08 per character of the call (pysbd searches the whole text for
    every sentence it found). Once a call does not fit, the budget is spent and the rest of
    the document uses the cheap splitter. Deterministic, unlike a time limit."""

    def __init__(self, units: int = PYSBD_BUDGET):
        self.left = units

    def take(self, text: str) -> bool:
        terminators = _count_terminators(text)
        cost = 100 + len(text) + terminators * (20 + len(text) // 12)
        if cost > self.left:
            self.left = 0
            return False
        self.left -= cost
        return True


def sentence_spans(text: str, lang: str, budget: Budget | None = None) -> list[tuple[int, int]]:
    """(start, end) of each sentence in a single line, trailing spaces excluded; none longer
    than MAX_SEGMENT_CHARS."""
    if not text.strip():
        return []
    if _one_sentence(text):
        spans = [(len(text) - len(text.lstrip()), len(text.rstrip()))]
    else:
        if budget is None:
            budget = Budget()
        if len(text) <= PYSBD_WINDOW_CHARS and _count_terminators(text) <= PYSBD_WINDOW_TERMINATORS:
            spans = _pysbd_spans(text, lang) if budget.take(text) else _cheap_spans(text)
        else:
            spans = _window_spans(text, lang, budget)
        spans = _merge_abbreviations(text, spans, lang)
    return _bounded(text, spans)


def _pysbd_spans(text: str, lang: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    pos = 0
    for span in _segmenter(lang).segment(text):
        # pysbd's offsets can drift on odd input; re-find each sentence from pos.
        sent = span.sent.strip()
        if not sent:
            continue
        start = text.find(sent, pos)
        if start < 0:  # should not happen; fall back to one segment for the rest
            rest = text[pos:]
            lead = len(rest) - len(rest.lstrip())
            if rest.strip():
                spans.append((pos + lead, pos + len(rest.rstrip())))
            return spans
        spans.append((start, start + len(sent)))
        pos = start + len(sent)
    return spans


def _merge_abbreviations(
    text: str, spans: list[tuple[int, int]], lang: str
) -> list[tuple[int, int]]:
    abbreviations = _ABBREVIATIONS.get(lang.lower().split("-")[0])
    if not abbreviations or len(spans) < 2:
        return spans
    merged = [spans[0]]
    for start, end in spans[1:]:
        prev_start, prev_end = merged[-1]
        # only the sentence's last 64 characters: a longer word is no abbreviation, and
        # (\w+)\.$ over a long run of letters would take quadratic time
        m = _LAST_TOKEN.search(text, max(prev_start, prev_end - 64), prev_end)
        if m and m.group(1).lower() in abbreviations:
            merged[-1] = (prev_start, end)
        else:
            merged.append((start, end))
    return merged


def _cheap_spans(text: str, lo: int = 0, hi: int | None = None) -> list[tuple[int, int]]:
    """Sentences of text[lo:hi] by punctuation alone (no abbreviations), each at least
    CHEAP_MIN_CHARS long where it can be (so a flood of "a." makes few segments); linear."""
    hi = len(text) if hi is None else hi
    spans: list[tuple[int, int]] = []
    start = lo
    for m in _CHEAP_END.finditer(text, lo, hi):
        if m.end() - start >= CHEAP_MIN_CHARS:  # shorter ones go with the next sentence
            _add_span(spans, text, start, m.end())
            start = m.end()
    _add_span(spans, text, start, hi)
    return spans


def _add_span(spans: list[tuple[int, int]], text: str, start: int, end: int) -> None:
    """Append text[start:end] without its surrounding spaces, if anything is left."""
    m = _search(_NOT_SPACE, text, start, end)
    if m is None:
        return
    start = m.start()
    spans.append((start, start + len(text[start:end].rstrip())))


def _window_end(text: str, start: int) -> int:
    """End of the pysbd window from ``start``: the window's character limit, or just before
    its (PYSBD_WINDOW_TERMINATORS + 1)-th terminator."""
    hi = min(len(text), start + PYSBD_WINDOW_CHARS)
    for i, m in enumerate(_TERMINATORS.finditer(text, start, hi)):
        if i >= PYSBD_WINDOW_TERMINATORS:
            return m.start()
    return hi


def _window_spans(text: str, lang: str, budget: Budget) -> list[tuple[int, int]]:
    """pysbd over a long line in bounded windows. Every window but the last gives back its
    last sentence (the window's end may have cut it short), and the next window starts at
    that sentence; a window without any sentence boundary (one sentence longer than the
    window) is cut at its last space."""
    spans: list[tuple[int, int]] = []
    n = len(text)
    m = _search(_NOT_SPACE, text, 0)
    pos = m.start() if m else n
    while pos < n:
        end = _window_end(text, pos)
        window = text[pos:end]
        if end < n and not _HAS_WORD.search(window):  # nothing to translate in it
            m = _search(_NOT_SPACE, text, end)
            pos = m.start() if m else n
            continue
        if not budget.take(window):
            spans.extend(_cheap_spans(text, pos, n))
            break
        found = [(pos + s, pos + e) for s, e in _pysbd_spans(window, lang)]
        if end >= n:
            spans.extend(found)
            break
        if len(found) >= 2:
            # keep the sentences that end in the window's first three quarters (a
            # parenthesis or quotation the window's end cuts open can move the cuts
            # before it), or at least all but the last
            limit = end - (end - pos) // 4
            keep = next((i for i, (_, e) in enumerate(found) if e > limit), len(found) - 1)
            keep = min(max(keep, 1), len(found) - 1)
            spans.extend(found[:keep])
            pos = found[keep][0]
            continue
        cut = _cut_before(text, pos, end)
        _add_span(spans, text, pos, cut)
        m = _search(_NOT_SPACE, text, cut)
        pos = m.start() if m else n
    return spans


def _cut_before(text: str, lo: int, hi: int, last: re.Pattern = _LAST_SPACE) -> int:
    """A cut in text[lo:hi] near hi: just after the last match of ``last`` in its second
    half, else ``_hard_cut``."""
    cut = _last_end(text, lo, hi, last)
    return cut if cut is not None else _hard_cut(text, lo, hi)


def _last_end(text: str, lo: int, hi: int, last: re.Pattern) -> int | None:
    """End of the last match of ``last`` in the second half of text[lo:hi], or None."""
    m = last.match(text, lo + (hi - lo) // 2, hi)
    return m.end() if m is not None and m.end() > lo else None


def _hard_cut(text: str, lo: int, hi: int) -> int:
    """hi, moved back (at most 32 characters) so that the next piece does not start with a
    combining mark, a joiner or a variation selector."""
    cut = hi
    while cut < len(text) and cut > lo + 1 and hi - cut < 32 and _joins_previous(text[cut]):
        cut -= 1
    return cut


def _joins_previous(ch: str) -> bool:
    return (
        unicodedata.combining(ch) != 0
        or unicodedata.category(ch) in ("Mn", "Mc", "Me", "Cs")
        or ch in "\u200c\u200d\ufe0e\ufe0f"
    )


def _bounded(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans cut so that none is longer than MAX_SEGMENT_CHARS."""
    if all(end - start <= MAX_SEGMENT_CHARS for start, end in spans):
        return spans
    out: list[tuple[int, int]] = []
    for start, end in spans:
        while end - start > MAX_SEGMENT_CHARS:
            cut = _cut_before(text, start, start + MAX_SEGMENT_CHARS)
            _add_span(out, text, start, cut)
            m = _search(_NOT_SPACE, text, cut, end)
            start = m.start() if m else end
        if start < end:
            out.append((start, end))
    return out


def _search(pattern: re.Pattern, text: str, lo: int, hi: int | None = None) -> re.Match | None:
    """``pattern.search(text, lo, hi)`` for a one-character pattern, SCAN_CHARS at a time:
    a regex call holds the GIL, so none may scan a whole 8 MiB text."""
    hi = len(text) if hi is None else hi
    while lo < hi:
        m = pattern.search(text, lo, min(hi, lo + SCAN_CHARS))
        if m is not None:
            return m
        lo += SCAN_CHARS
    return None


def _finditer(pattern: re.Pattern, text: str, overlap: int = 64):  # noqa: ANN202
    """``pattern.finditer(text)`` SCAN_CHARS at a time, for short matches: each slice is
    searched ``overlap`` characters further, and a match counts in the slice it starts in."""
    lo, n = 0, len(text)
    while lo < n:
        hi = lo + SCAN_CHARS
        for m in pattern.finditer(text, lo, min(n, hi + overlap)):
            if m.start() >= hi:
                break
            yield m
            lo = max(lo, m.end())
        lo = max(lo, hi)


def _line_runs(text: str):  # noqa: ANN202 - Iterator[tuple[int, int, bool]]
    """(start, end, blank) per line of ``text`` as str.splitlines(keepends=True) cuts it,
    except that a run of blank lines comes as one item (or a few: one regex step looks at
    SCAN_CHARS at most), so a text of a million empty lines costs no Python loop."""
    pos, n = 0, len(text)
    while pos < n:
        m = _BLANK_LINES.match(text, pos, min(n, pos + SCAN_CHARS))
        if m is not None:
            yield pos, m.end(), True
            pos = m.end()
            continue
        m = _search(_BREAK, text, pos)
        end = n if m is None else m.end() + (text[m.start() : m.end() + 1] == "\r\n")
        yield pos, end, _search(_NOT_SPACE, text, pos, end) is None
        pos = end


WRAP = 2  # the kind of a piece holding a hard-wrapped paragraph (its JSON, see _wrapped)


@dataclass
class Layout:
    """A chunk as literal pieces and sentence segments, in order.

    A hard-wrapped paragraph (lines broken by width mid-sentence, see
    ``formats.plain.wrap_width``) is one piece of kind ``WRAP``: its lines joined into one,
    cut into sentences (translated as whole sentences, not line by line), and rendered
    re-filled to the paragraph's width and indentation; untranslated, exactly as it was."""

    pieces: list[tuple[int, str]] = field(default_factory=list)  # (kind, text): 0/1/WRAP

    @property
    def segments(self) -> list[str]:
        out: list[str] = []
        for kind, t in self.pieces:
            if kind == WRAP:
                out.extend(p for is_seg, p in json.loads(t)["pieces"] if is_seg)
            elif kind:
                out.append(t)
        return out

    def render(self, translations: list[str], protection: Protection | None = None) -> str:
        """The chunk's text with ``translations`` (one per segment). ``protection``: the
        job's, so a re-filled paragraph also keeps its ``do_not_translate`` strings and
        glossary terms on one line (without it, only the built-in span kinds)."""
        it = iter(translations)
        out = []
        for kind, t in self.pieces:
            if kind == WRAP:
                out.append(_render_wrapped(json.loads(t), it, protection))
            else:
                out.append(next(it) if kind else t)
        return "".join(out)

    def source(self) -> str:
        return "".join(json.loads(t)["source"] if k == WRAP else t for k, t in self.pieces)

    def dumps(self) -> str:
        """JSON for storage (``Layout.loads(layout.dumps()) == layout``)."""
        return json.dumps([[int(k), t] for k, t in self.pieces], ensure_ascii=False)

    @classmethod
    def loads(cls, data: str) -> Layout:
        return cls([(WRAP if k == WRAP else bool(k), t) for k, t in json.loads(data)])

    @classmethod
    def parse(cls, text: str, lang: str, budget: Budget | None = None) -> Layout:
        """``budget``: the document's pysbd budget (``plan`` shares one between chunks);
        None gives this call its own."""
        budget = budget if budget is not None else Budget()
        pieces: list[tuple[int, str]] = []
        literal: list[str] = []  # adjacent literal pieces, joined once (never s += t)

        def add(is_seg: bool, piece: str) -> None:
            if not piece:
                return
            if not is_seg:
                literal.append(piece)
                return
            flush()
            pieces.append((True, piece))

        def flush() -> None:
            if literal:
                pieces.append((False, "".join(literal)))
                literal.clear()

        runs = list(_line_runs(text))
        i = 0
        lines_until = 0  # runs before this index are lines of a paragraph found not wrapped
        while i < len(runs):
            start, end, blank = runs[i]
            if blank:
                add(False, text[start:end])
                i += 1
                continue
            if i >= lines_until:  # a paragraph starts: hard-wrapped? (each line seen once)
                block = _block_end(runs, i)
                region = _wrapped(text, runs[i:block], lang, budget) if block - i > 1 else None
                if region is not None:
                    flush()
                    pieces.append((WRAP, region))
                    add(False, _eol(text[runs[block - 1][0] : runs[block - 1][1]]))
                    i = block
                    continue
                lines_until = block
            line = text[start:end]
            body = line.rstrip("\r\n")
            eol = line[len(body) :]
            m = _MARKER.match(body)
            head = m.group(0) if m else ""
            rest = body[len(head) :]
            add(False, head)
            if _HAS_WORD.search(rest) is None:  # nothing to translate: all literal
                add(False, rest)
            else:
                pos = 0
                for s, e in sentence_spans(rest, lang, budget):
                    add(False, rest[pos:s])
                    for is_seg, piece in _columns(rest[s:e]):
                        add(is_seg and bool(_HAS_WORD.search(piece)), piece)
                    pos = e
                add(False, rest[pos:])
            add(False, eol)
            i += 1
        flush()
        return cls(pieces)


WRAP_MAX_LINES = 2000  # a longer run of lines is not looked at as one paragraph


def _block_end(runs: list[tuple[int, int, bool]], i: int) -> int:
    """The end (exclusive) of the paragraph of non-blank lines starting at run ``i``."""
    j = i
    while j < len(runs) and not runs[j][2] and j - i < WRAP_MAX_LINES:
        j += 1
    return j


def _eol(line: str) -> str:
    return line[len(line.rstrip("\r\n")) :]


def _wrapped(text: str, runs: list[tuple[int, int, bool]], lang: str, budget: Budget) -> str | None:
    """The WRAP piece (JSON) of a hard-wrapped paragraph, or None when its line breaks
    mean something. The paragraph's last line ending stays outside the piece."""
    from control_plane.text.formats.plain import wrap_width

    bodies = [text[s:e].rstrip("\r\n") for s, e, _ in runs]
    width = wrap_width(bodies)
    if width is None:
        return None
    m = _MARKER.match(bodies[0])
    head = m.group(0) if m else ""
    cont = bodies[1][: len(bodies[1]) - len(bodies[1].lstrip())]
    joined = " ".join([bodies[0][len(head) :].strip()] + [b.strip() for b in bodies[1:]])
    pieces: list[list] = []
    pos = 0
    for s, e in sentence_spans(joined, lang, budget):
        if joined[pos:s]:
            pieces.append([0, joined[pos:s]])
        pieces.append([int(bool(_HAS_WORD.search(joined[s:e]))), joined[s:e]])
        pos = e
    if joined[pos:]:
        pieces.append([0, joined[pos:]])
    last_start, last_end, _ = runs[-1]
    source = text[runs[0][0] : last_end - len(_eol(text[last_start:last_end]))]
    first_eol = _eol(text[runs[0][0] : runs[0][1]])
    region = {"width": width, "head": head, "cont": cont, "eol": first_eol, "source": source,
              "pieces": pieces}  # fmt: skip
    return json.dumps(region, ensure_ascii=False)


def _render_wrapped(
    region: dict,
    translations,  # noqa: ANN001 - an iterator of the translations
    protection: Protection | None = None,
) -> str:
    """The paragraph with its sentences' translations, re-filled to its width; exactly
    the source when no sentence changed (so rendering the segments gives the text back)."""
    out, same = [], True
    for is_seg, piece in region["pieces"]:
        if is_seg:
            tr = next(translations)
            same = same and tr == piece
            out.append((True, tr))
        else:
            out.append((False, piece))
    if same:
        return region["source"]
    filled = fill_keeping_spans(
        out, region["width"], region["head"], region["cont"], protection=protection
    )
    return filled.replace("\n", region["eol"] or "\n")


# -- filling without breaking protected spans --------------------------------------------

_WRAP_SPACES = " \t\n\x0b\x0c\r"  # textwrap's whitespace: where it may break a line
_TO_SPACE = str.maketrans(dict.fromkeys("\n\x0b\x0c\r", " "))  # what replace_whitespace did
_PRIVATE_USE = (range(0xE000, 0xF900), range(0xF0000, 0xFFFFE), range(0x100000, 0x10FFFE))


def glue_for(text: str) -> dict[str, str]:
    """For each whitespace character textwrap breaks at, a private-use character that does
    not occur in ``text`` (so putting them back is exact); {} when the text uses nearly all
    of them (then nothing is glued)."""
    present = set(text)
    free = (chr(c) for r in _PRIVATE_USE for c in r if chr(c) not in present)
    glue = dict(zip(_WRAP_SPACES, free, strict=False))
    return glue if len(glue) == len(_WRAP_SPACES) else {}


@functools.lru_cache(maxsize=16)
def _targets(glossary: tuple[tuple[str, str], ...]) -> re.Pattern | None:
    """The glossary's target terms that hold whitespace (no other can be broken), in any
    case (``spans._match_case`` may capitalise or upper-case them), longest first."""
    terms = {t for _, t in glossary if any(c in _WRAP_SPACES for c in t.strip())}
    if not terms:
        return None
    alts = sorted((re.escape(t) for t in terms), key=len, reverse=True)
    return re.compile("|".join(alts), re.IGNORECASE)


def protected_ranges(text: str, protection: Protection | None = None) -> list[tuple[int, int]]:
    """Where a translation holds what must come out byte for byte, sorted (they may
    overlap): ``find_spans``' spans (built-in kinds and ``do_not_translate`` strings) and
    the glossary's target terms, which find_spans does not look for (it finds the source
    terms; a translation holds the targets)."""
    ranges = [(s.start, s.end) for s in find_spans(text, protection)]
    pattern = _targets(protection.glossary) if protection is not None else None
    if pattern is not None:
        ranges += [m.span() for m in pattern.finditer(text)]
    return sorted(ranges)


def glue_spans(text: str, glue: dict[str, str], protection: Protection | None = None) -> str:
    """``text`` with the whitespace inside its protected spans replaced by ``glue``'s
    characters (``glue_for``): a filler then cannot break a line inside a span, nor
    expand or replace a tab in one. ``unglue`` puts them back."""
    if not glue:
        return text
    table = str.maketrans(glue)
    parts: list[str] = []
    pos = 0
    for start, end in protected_ranges(text, protection):
        start = max(start, pos)
        if end <= start:
            continue
        parts += [text[pos:start], text[start:end].translate(table)]
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def unglue(text: str, glue: dict[str, str]) -> str:
    return text.translate(str.maketrans({v: k for k, v in glue.items()})) if glue else text


def fill_keeping_spans(
    pieces: list[tuple[bool, str]],
    width: int,
    initial_indent: str = "",
    subsequent_indent: str = "",
    protection: Protection | None = None,
) -> str:
    """``textwrap.fill`` of the pieces joined (translations: True, literal text: False)
    that never breaks a line inside a protected span of a translation: such a span stays
    on one line, even one longer than ``width``. Tabs are kept as they are (textwrap
    would expand them, inside spans too); other line-breaking whitespace becomes a
    space, as textwrap's ``replace_whitespace`` did."""
    glue = glue_for("".join(t for _, t in pieces) + initial_indent + subsequent_indent)
    text = "".join(glue_spans(t, glue, protection) if is_seg else t for is_seg, t in pieces)
    filled = textwrap.fill(
        text.translate(_TO_SPACE),
        width=width,
        initial_indent=initial_indent,
        subsequent_indent=subsequent_indent,
        break_long_words=False,
        break_on_hyphens=False,
        expand_tabs=False,
        replace_whitespace=False,
    )
    return unglue(filled, glue)


_COLUMN_GAP = re.compile(r"[ \t]{2,}|\t")  # two spaces or a tab: aligned columns


def _columns(sentence: str) -> list[tuple[bool, str]]:
    """A sentence cut at runs of two or more spaces (or a tab): the columns of a help
    text ("  -v, --verbose      print more") are translated apart and their alignment
    stays literal; the model would collapse the run to one space."""
    out: list[tuple[bool, str]] = []
    pos = 0
    for m in _COLUMN_GAP.finditer(sentence):
        out.append((True, sentence[pos : m.start()]))
        out.append((False, m.group(0)))
        pos = m.end()
    out.append((True, sentence[pos:]))
    trimmed: list[tuple[bool, str]] = []
    for is_seg, t in out:  # a segment never starts or ends with a space (of any kind)
        core = t.strip() if is_seg else t
        if is_seg and core != t:
            lead = t[: len(t) - len(t.lstrip())]
            trimmed += [(False, lead), (True, core), (False, t[len(lead) + len(core) :])]
        else:
            trimmed.append((is_seg, t))
    return [(is_seg, t) for is_seg, t in trimmed if t]


def _blocks(text: str) -> list[str]:
    """Paragraphs, each with the blank lines that follow it."""
    blocks: list[str] = []
    start = 0
    seen_blank = False
    for line_start, _, blank in _line_runs(text):
        if seen_blank and not blank:
            blocks.append(text[start:line_start])
            start = line_start
            seen_blank = False
        seen_blank = seen_blank or blank
    if start < len(text):
        blocks.append(text[start:])
    return blocks


def _is_sentence_start(line: str, pos: int, lang: str, budget: Budget) -> bool:
    """Does pysbd start a sentence at ``pos``? Checked on a small window (pysbd's cost grows
    faster than linearly with text length, so it never sees a whole huge line)."""
    lo = max(0, pos - 400)
    window = line[lo : pos + 400]
    return any(lo + start == pos for start, _ in sentence_spans(window, lang, budget))


def _sentence_pieces(line: str, lang: str, target_words: int, budget: Budget) -> list[str]:
    """Cut one long line into pieces of about ``target_words`` words at sentence starts
    (exact concatenation). pysbd confirms a cut; after CONFIRM_TRIES refusals in a row the
    next candidate is taken as it is. A stretch without any sentence end is cut every
    ``target_words`` words."""
    pieces: list[str] = []
    prev = 0
    words_since = 0
    last = 0
    tries = 0
    for m in _finditer(_CANDIDATE, line):
        cut = m.end()
        words_since += count_words(line[last:cut])
        last = cut
        if words_since < target_words:
            continue
        tries += 1
        if tries > CONFIRM_TRIES or _is_sentence_start(line, cut, lang, budget):
            pieces.append(line[prev:cut])
            prev = cut
            words_since = 0
            tries = 0
    pieces.append(line[prev:])
    out: list[str] = []
    for piece in pieces:
        if count_words(piece) > 2 * target_words:
            out.extend(_word_pieces(piece, target_words))
        else:
            out.append(piece)
    return out


_WORD = re.compile(r"\S{1,4096}+")  # a word (a longer one counts as several)


def _word_pieces(text: str, words: int) -> list[str]:
    """``text`` cut before every ``words``-th word (exact concatenation)."""
    cuts = [m.start() for i, m in enumerate(_WORD.finditer(text)) if i and i % words == 0]
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def _cut_chars(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters (exact concatenation), cut after
    a line break if the piece's second half has one, else after a space, else anywhere
    but before a combining mark."""
    out: list[str] = []
    pos, n = 0, len(text)
    while n - pos > limit:
        hi = pos + limit
        cut = _last_end(text, pos, hi, _LAST_BREAK) or _last_end(text, pos, hi, _LAST_SPACE)
        if cut is None:
            cut = _hard_cut(text, pos, hi)
        if text[cut - 1 : cut + 1] == "\r\n" and cut - 1 > pos:  # never between \r and \n
            cut -= 1
        out.append(text[pos:cut])
        pos = cut
    out.append(text[pos:])
    return out


def split_chunks(
    text: str, target_words: int = 1000, lang: str = "en", budget: Budget | None = None
) -> list[str]:
    """Cut ``text`` into chunks of about ``target_words`` words; joins back to ``text``."""
    if not text:
        return []
    budget = budget if budget is not None else Budget()
    max_chars = max(MIN_CHUNK_CHARS, CHUNK_CHARS_PER_WORD * target_words)
    units: list[str] = []
    for block in _blocks(text):
        if count_words(block) <= target_words:
            units.append(block)
            continue
        for start, end, blank in _line_runs(block):
            line = block[start:end]
            if blank or count_words(line) <= target_words:
                units.append(line)
            else:
                units.extend(_sentence_pieces(line, lang, max(1, target_words // 2), budget))
    chunks: list[str] = []
    cur: list[str] = []
    words = chars = 0
    for unit in units:
        for part in _cut_chars(unit, max_chars) if len(unit) > max_chars else (unit,):
            n = count_words(part)
            if cur and (words + n > target_words * 1.2 or chars + len(part) > max_chars):
                chunks.append("".join(cur))
                cur, words, chars = [], 0, 0
            cur.append(part)
            words += n
            chars += len(part)
            if words >= target_words:
                chunks.append("".join(cur))
                cur, words, chars = [], 0, 0
    if cur:
        if chunks and words == 0 and chars + len(chunks[-1]) <= max_chars:
            chunks[-1] += "".join(cur)  # trailing whitespace only: keep it with the last chunk
        else:
            chunks.append("".join(cur))
    return chunks


def plan(text: str, target_words: int, lang: str) -> tuple[list[str], list[Layout]]:
    """A submission's chunks and their layouts, with one pysbd budget for the document."""
    budget = Budget()
    chunks = split_chunks(text, target_words, lang, budget)
    return chunks, [Layout.parse(c, lang, budget) for c in chunks]
