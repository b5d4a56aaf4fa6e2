"""Which language a text is in, for ``source_language: "auto"`` (issue 12).

``detect(text, candidates=None)`` answers a ``Detection`` (ISO 639-1 code and the
detector's confidence, 0..1) with lingua (lingua-language-detector: n-gram models and
rules, high-accuracy mode). The detector knows a configurable set of languages
(``configure``, or ``MTB_DETECT_LANGUAGES="en,pt,es"``; by default the served pairs'
languages and common ones: ``DEFAULT_LANGUAGES``); it is built once, lazily, on the first
call, and its models load on first use (about 2 s, some 250 MB for the eleven default
languages). ``candidates`` narrows one call to some of them (the served source
languages, say): the confidence is then relative to those only.

Bounded cost: the detector only ever sees ``sample(text)``, at most ``SAMPLE_CHARS``
characters: the whole text when it is short enough, otherwise three windows from its
start, middle and end (a document's title page, body and appendix), cut at whitespace.
Nothing walks the whole input, so an 8 MiB document costs what a 2,000-character one
does (about 1-2 ms a call once the models are loaded).

A text without letters (empty, numbers, punctuation, markup-free symbols) raises
ValueError; so does a sample in which the detector recognises none of its languages.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

# the served pairs (en<->pt) and the languages users most often send by mistake or
# on purpose; a language outside the set is reported as the closest one inside it
DEFAULT_LANGUAGES: tuple[str, ...] = tuple("en pt es fr de it nl ru pl zh ja".split())
SAMPLE_CHARS = 2000
ENV_LANGUAGES = "MTB_DETECT_LANGUAGES"

_lock = threading.Lock()
_languages: tuple[str, ...] | None = None  # None: from the environment / default


@dataclass(frozen=True)
class Detection:
    language: str  # ISO 639-1, lower case ("en", "pt")
    confidence: float  # 0..1, relative to the languages the detector chose among


def _language(code: str) -> Language:
    try:
        return Language.from_iso_code_639_1(getattr(IsoCode639_1, code.strip().upper()))
    except (AttributeError, ValueError):
        raise ValueError(f"unknown language code {code!r} (ISO 639-1 expected)") from None


def _normalized(codes: Iterable[str], least: int = 2) -> tuple[str, ...]:
    out = tuple(sorted({c.strip().lower() for c in codes if c.strip()}))
    for code in out:
        _language(code)
    if len(out) < least:
        raise ValueError(f"language detection needs at least {least} languages, got {list(out)}")
    return out


def configure(languages: Sequence[str] | None) -> None:
    """The languages the detector tells apart (ISO 639-1 codes); None: the environment's
    ``MTB_DETECT_LANGUAGES`` or ``DEFAULT_LANGUAGES``. The detector is rebuilt lazily."""
    global _languages
    with _lock:
        _languages = None if languages is None else _normalized(languages)
        _detector.cache_clear()


def languages() -> tuple[str, ...]:
    """The configured languages (sorted codes)."""
    if _languages is not None:
        return _languages
    env = os.environ.get(ENV_LANGUAGES, "")
    return _normalized(env.split(",")) if env.strip() else _normalized(DEFAULT_LANGUAGES)


@lru_cache(maxsize=16)
def _detector(codes: tuple[str, ...]) -> LanguageDetector:
    # lingua shares the loaded n-gram models between detectors, so a narrower detector
    # for a candidate set costs little once the models are in memory
    return LanguageDetectorBuilder.from_languages(*(_language(c) for c in codes)).build()


def sample(text: str, limit: int = SAMPLE_CHARS) -> str:
    """At most ``limit`` characters of ``text``: all of it when short, otherwise windows
    from its start, middle and end, each cut back to whitespace so that no window ends
    inside a word. Reads only the windows, never the whole text."""
    if len(text) <= limit:
        return text
    size = limit // 3
    middle = len(text) // 2 - size // 2
    windows = [(0, size), (middle, middle + size), (len(text) - size, len(text))]
    parts = []
    for start, end in windows:
        piece = text[start:end]
        if start > 0:  # drop a word cut at the window's start
            cut = _first_space(piece)
            piece = piece[cut:] if cut < len(piece) // 2 else piece
        if end < len(text):  # and one cut at its end
            cut = _last_space(piece)
            piece = piece[:cut] if cut > len(piece) // 2 else piece
        parts.append(piece.strip())
    return "\n".join(p for p in parts if p)


def _first_space(piece: str) -> int:
    for i, ch in enumerate(piece[:200]):
        if ch.isspace():
            return i
    return len(piece)


def _last_space(piece: str) -> int:
    for i in range(len(piece) - 1, max(-1, len(piece) - 201), -1):
        if piece[i].isspace():
            return i
    return 0


def detect(text: str, candidates: list[str] | None = None) -> Detection:
    """The language of ``text`` (only ``sample(text)`` is looked at), chosen among the
        configured languages or among ``candidates`` (ISO 639-1 codes; a single candidate is
    answered with the configured detector's confidence in it). ValueError when the
        text has no letters or no language could be recognised."""
    if not isinstance(text, str):
        raise TypeError("detect() takes a str")
    piece = sample(text)
    if not any(ch.isalpha() for ch in piece):
        raise ValueError("cannot detect the language of a text without letters")
    codes = languages() if candidates is None else _normalized(candidates, least=1)
    only = codes[0] if len(codes) == 1 else None
    if only:  # one candidate: how sure the configured languages make it
        codes = tuple(sorted({*languages(), only}))
    values = _detector(codes).compute_language_confidence_values(piece)
    if not values or values[0].value <= 0.0:
        raise ValueError(f"could not recognise the language of the text among {', '.join(codes)}")
    found = [(v.language.iso_code_639_1.name.lower(), float(v.value)) for v in values]
    if only:
        return Detection(only, dict(found)[only])
    return Detection(*found[0])


# A served language within this factor of the top language's confidence wins. Measured on
# the gettext sets (sentences of 5+ words) and 600 Spanish catalog messages, 11
# languages configured: factor 1 (no preference): pt 96.4%, en 98.8%, es 97.8%; 0.5:
# 98.8 / 99.6 / 91.8; 0.3: 99.0 / 99.6 / 85.7; 0.25: 99.1 / 99.6 / 83.3. Short Portuguese
# reads as Spanish; the price is short Spanish read as Portuguese (documents of several
# sentences are >99% either way).
PREFER_RATIO = 0.25


def detect_preferring(text: str, preferred: list[str], ratio: float = PREFER_RATIO) -> Detection:
    """``detect(text)`` over every configured language, except that the best of
    ``preferred`` (the languages a model serves) wins when its confidence is at least
    ``ratio`` times the top one's: a German text is still named German, a short
    Portuguese one that reads a little more Spanish is taken as Portuguese."""
    top = detect(text)
    if top.language in preferred or not preferred:
        return top
    values = _detector(languages()).compute_language_confidence_values(sample(text))
    conf = {v.language.iso_code_639_1.name.lower(): float(v.value) for v in values}
    best = max(preferred, key=lambda code: conf.get(code, 0.0))
    if conf.get(best, 0.0) >= ratio * top.confidence:
        return Detection(best, conf[best])
    return top
