"""Sentence-aware chunking that gives every byte of layout back.

Two levels:

- ``split_chunks(text, target_words)`` cuts a document into chunks of about
  ``target_words`` words (the unit of queue work), preferring paragraph boundaries, then
  line boundaries, then sentence boundaries. ``"".join(chunks) == text`` always.
- ``Layout.parse(chunk, lang)`` splits a chunk into literal pieces (line breaks, blank
  lines, indentation, list markers, the spaces between sentences) and sentence segments,
  which are what the engine translates. ``layout.render(translations)`` puts the
  translations back where the sentences were, so paragraph structure survives exactly.

Sentences come from pysbd (rule-based, maintained, ~0.5 ms per sentence on this machine,
handles abbreviations such as "Dr." and "e.g." and decimals). Sentences never cross a line
break: hard-wrapped prose is translated line by line so that every line break stays where
it was. Languages pysbd lacks use the closest rule set (Portuguese: Spanish rules plus a
short abbreviation list). Quality on the tricky cases in tests/unit/jobs/test_chunking.py:
English 12/12, Portuguese 8/8 (5/8 with Spanish rules alone, 3/8 with English rules).
Speed: pysbd's cost grows faster than linearly with the length of one call (1,000 sentences
in one call: 4 s), so it only ever sees one line of at most about a chunk.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field

import pysbd

_PYSBD_LANGS = {
    "en", "hi", "mr", "zh", "es", "am", "ar", "hy", "bg", "ur", "ru", "pl", "fa", "nl",
    "da", "fr", "my", "el", "it", "ja", "de", "kk", "sk",
}  # fmt: skip
_FALLBACK = {"pt": "es", "gl": "es", "ca": "es", "uk": "ru", "be": "ru", "cs": "sk", "no": "da"}

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


def count_words(text: str) -> int:
    return len(text.split())


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
_TERMINATORS = re.compile(r"[.!?\u2026\u3002\uff01\uff1f\uff61\u061f\u203d]")
_FINAL_RUN = re.compile(
    r"[.!?\u2026\u3002\uff01\uff1f\uff61\u061f\u203d]+[\"'\u201d\u2019\u00bb)\]]*\s*$"
)


def _one_sentence(text: str) -> bool:
    m = _FINAL_RUN.search(text)
    return not _TERMINATORS.search(text[: m.start()] if m else text)


def sentence_spans(text: str, lang: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence in a single line, trailing spaces excluded."""
    if not text.strip():
        return []
    if _one_sentence(text):
        stripped = text.strip()
        start = text.find(stripped)
        return [(start, start + len(stripped))]
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
    abbreviations = _ABBREVIATIONS.get(lang.lower().split("-")[0])
    if abbreviations and len(spans) > 1:
        merged = [spans[0]]
        for start, end in spans[1:]:
            m = _LAST_TOKEN.search(text[merged[-1][0] : merged[-1][1]])
            if m and m.group(1).lower() in abbreviations:
                merged[-1] = (merged[-1][0], end)
            else:
                merged.append((start, end))
        spans = merged
    return spans


@dataclass
class Layout:
    """A chunk as literal pieces and sentence segments, in order."""

    pieces: list[tuple[bool, str]] = field(default_factory=list)  # (is_segment, text)

    @property
    def segments(self) -> list[str]:
        return [t for is_seg, t in self.pieces if is_seg]

    def render(self, translations: list[str]) -> str:
        it = iter(translations)
        out = [next(it) if is_seg else t for is_seg, t in self.pieces]
        return "".join(out)

    def source(self) -> str:
        return "".join(t for _, t in self.pieces)

    def dumps(self) -> str:
        """JSON for storage (``Layout.loads(layout.dumps()) == layout``)."""
        return json.dumps([[int(is_seg), t] for is_seg, t in self.pieces], ensure_ascii=False)

    @classmethod
    def loads(cls, data: str) -> Layout:
        return cls([(bool(is_seg), t) for is_seg, t in json.loads(data)])

    @classmethod
    def parse(cls, text: str, lang: str) -> Layout:
        layout = cls()
        add = layout._add
        for line in text.splitlines(keepends=True):
            body = line.rstrip("\r\n")
            eol = line[len(body) :]
            m = _MARKER.match(body)
            head = m.group(0) if m else ""
            rest = body[len(head) :]
            add(False, head)
            pos = 0
            for start, end in sentence_spans(rest, lang):
                add(False, rest[pos:start])
                sent = rest[start:end]
                add(bool(_HAS_WORD.search(sent)), sent)
                pos = end
            add(False, rest[pos:])
            add(False, eol)
        return layout

    def _add(self, is_seg: bool, text: str) -> None:
        if not text:
            return
        if not is_seg and self.pieces and not self.pieces[-1][0]:
            self.pieces[-1] = (False, self.pieces[-1][1] + text)
        else:
            self.pieces.append((is_seg, text))


def _blocks(text: str) -> list[str]:
    """Paragraphs, each with the blank lines that follow it."""
    blocks: list[str] = []
    cur: list[str] = []
    seen_blank = False
    for line in text.splitlines(keepends=True):
        blank = not line.strip()
        if seen_blank and not blank:
            blocks.append("".join(cur))
            cur = []
            seen_blank = False
        cur.append(line)
        seen_blank = seen_blank or blank
    if cur:
        blocks.append("".join(cur))
    return blocks


_CANDIDATE = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]]*\s+(?=\S)")


def _is_sentence_start(line: str, pos: int, lang: str) -> bool:
    """Does pysbd start a sentence at ``pos``? Checked on a small window (pysbd's cost grows
    faster than linearly with text length, so it never sees a whole huge line)."""
    lo = max(0, pos - 400)
    window = line[lo : pos + 400]
    return any(lo + start == pos for start, _ in sentence_spans(window, lang))


def _sentence_pieces(line: str, lang: str, target_words: int) -> list[str]:
    """Cut one long line into pieces of about ``target_words`` words at sentence starts
    (exact concatenation). A line without any sentence boundary stays whole."""
    pieces: list[str] = []
    prev = 0
    words_since = 0
    last = 0
    for m in _CANDIDATE.finditer(line):
        cut = m.end()
        words_since += len(line[last:cut].split())
        last = cut
        if words_since >= target_words and _is_sentence_start(line, cut, lang):
            pieces.append(line[prev:cut])
            prev = cut
            words_since = 0
    pieces.append(line[prev:])
    return pieces


def split_chunks(text: str, target_words: int = 1000, lang: str = "en") -> list[str]:
    """Cut ``text`` into chunks of about ``target_words`` words; joins back to ``text``."""
    if not text:
        return []
    units: list[str] = []
    for block in _blocks(text):
        if count_words(block) <= target_words:
            units.append(block)
            continue
        for line in block.splitlines(keepends=True):
            if count_words(line) <= target_words:
                units.append(line)
            else:
                units.extend(_sentence_pieces(line, lang, max(1, target_words // 2)))
    chunks: list[str] = []
    cur: list[str] = []
    words = 0
    for unit in units:
        n = count_words(unit)
        if cur and words + n > target_words * 1.2:
            chunks.append("".join(cur))
            cur, words = [], 0
        cur.append(unit)
        words += n
        if words >= target_words:
            chunks.append("".join(cur))
            cur, words = [], 0
    if cur:
        if chunks and words == 0:  # trailing whitespace only: keep it with the last chunk
            chunks[-1] += "".join(cur)
        else:
            chunks.append("".join(cur))
    return chunks
