"""Protected spans: the parts of a segment that must come out of translation byte-for-byte.

A span is a placeholder (``%s``, ``%1$d``, ``%(name)s``, ``{count}``, ``{0}``, ``${VAR}``),
inline code in backticks, a URL, an e-mail address, a file path, a number with a unit, a
string the caller listed in ``do_not_translate``, a glossary term (whose output is the
glossary's target term, not the source) or an inline tag of an HTML/XML segment.

Detection is a set of small regular expressions over one segment (at most
``chunking.MAX_SEGMENT_CHARS`` characters). None can backtrack badly: every repetition is
over a character class that cannot overlap the next token, with an upper bound.
Markup is different: tags are found by the markup module's parser (``Span.role``), never
by regexes here.

How spans survive the model is decided in ``control_plane.text.protect``; this module
only says where they are and what must appear in the output.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import html
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

KINDS = (
    "tag", "user", "glossary", "code", "url", "email", "placeholder", "path", "number", "option",
)  # fmt: skip

# printf: %s %d %1$s %-10.3f %(name)s %%; no space flag, so "100% sure" is no "% s"
_PRINTF = (
    r"%(?:\([A-Za-z_][\w.]{0,63}\)|\d{1,2}\$)?[-+#0']{0,4}(?:\d{1,3}|\*)?"
    r"(?:\.(?:\d{1,3}|\*))?(?:hh|h|ll|l|L|q|j|z|t|I64|I32)?[diouxXeEfFgGcsaAprn@%]"
)
# {count} {0} {name!r:>10} {{jinja}} ${VAR} $VAR; ICU arguments with nested plural messages
# are one span (a level of nesting is enough for "{n, plural, one {# item} other {# items}}")
_BRACE = (
    r"\{\{[^{}\n]{1,200}\}\}"
    r"|\{[^{}\n]{0,200}(?:\{[^{}\n]{0,200}\}[^{}\n]{0,200}){0,16}\}"
    r"|\$\{[^{}\n]{1,200}\}"
    r"|\$[A-Z_][A-Z0-9_]{0,63}\b"
)
_CODE = r"``[^`\n]{1,500}``|`[^`\n]{1,500}`"
_URL = r"(?:https?|ftp|file)://[^\s<>\"'`]{1,2000}|www\.[A-Za-z0-9-]{1,63}\.[^\s<>\"'`]{2,2000}"
_EMAIL = r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}"
_EXT = (
    "md|rst|txt|py|pyc|js|mjs|ts|tsx|jsx|json|ya?ml|toml|cfg|conf|ini|html?|xml|css|csv|log|"
    "sh|bash|zsh|c|h|cc|cpp|hpp|rs|go|java|kt|rb|php|pl|po|pot|mo|pdf|png|jpe?g|gif|svg|"
    "gz|tgz|bz2|xz|zip|tar|deb|rpm|so|dll|exe|bin|img|iso|sql|db|lock|env|mk|cmake|desktop|"
    "service|socket|timer|spm|onnx|npy"
)
# The last two start only where a name starts (the lookbehinds): tried from every character
# of a long name, each start backtracked through up to 32 x 255 lengths - 40 KB of
# ("b" * 250 + "/") took 2.1 s, holding the GIL. An earlier start matches whenever a later
# one inside the same name would (names under 255 characters), so the spans are the same.
_PATH = (
    # /etc/hosts ~/x ./a/b /tmp/%s.log; not "make/remove", "6/7" or "[Y/n]"
    r"(?<![\w/])(?:~|\.{1,2})?/(?:[\w.+@%-]{1,255}/){0,32}[\w.+@%-]{1,255}/?"
    r"|[A-Za-z]:\\(?:[\w .+@-]{1,255}\\){0,32}[\w.+@-]{1,255}"  # C:\dir\file
    r"|(?<![\w+@-])(?:[\w+@-]{1,255}/){1,32}[\w.+@-]{1,255}\.(?:" + _EXT + r")\b"  # src/app.py
    r"|(?<![\w+-])[\w+-]{1,255}(?:\.[\w+-]{1,64}){0,4}\.(?:" + _EXT + r")\b"  # README.md
)
_UNIT = (
    r"[KMGTPE]i?B|[kKMGT]?bps|[kMG]?Hz|[munµ]?s|ms|min|h|px|pt|em|rem|dpi|"
    r"[kcm]?m|[km]?g|[kmM]?W|kWh|mAh|[mk]?V|[kM]?L|ml|°[CF]|%|x"
)
_NUMBER = r"(?<![\w.,])\d{1,15}(?:[.,]\d{1,15}){0,3}\s?(?:" + _UNIT + r")(?![\w%])"
# command-line options: --version, --log-level=debug, -rf (not "well-known", "-5", " - ");
# the model made "--version" into "--versão" and "--debug" into "---debug"
_OPTION = r"(?<![\w-])(?:--[A-Za-z][\w-]{0,63}(?:=[^\s,;)]{1,200})?|-[A-Za-z]{1,3})(?![\w-])"
# ordered: the first kind to claim a character wins (a URL's path is not a file path),
# except that a path takes the placeholders inside it ("/tmp/%s.log" is one span)
_PATTERNS = (
    ("code", re.compile(_CODE)),
    ("url", re.compile(_URL)),
    ("email", re.compile(_EMAIL)),
    ("placeholder", re.compile(_PRINTF + "|" + _BRACE)),
    ("path", re.compile(_PATH)),
    ("number", re.compile(_NUMBER)),
    ("option", re.compile(_OPTION)),
)
_URL_TAIL = ".,;:!?)]}'\""  # sentence punctuation after a URL or path is not part of it
# quotes directly around a span go with it: every engine drops or mangles a quote left
# alone beside a mask ("“X1”" -> "-X1"); 65 of 1,000 gettext messages, +2.5 BLEU
_QUOTES = {"“": "”", '"': '"', "'": "'", "`": "'", "‘": "’", "«": "»", "„": "“", "<": ">"}
_JOINABLE = frozenset({"placeholder", "path", "number", "code", "url", "email", "option"})


@dataclass(frozen=True)
class Span:
    """``text[start:end]`` must appear in the translation as ``output``, exactly once.

    ``role`` is "open"/"close" for a paired inline tag (``name`` its element), "" for
    everything else; paired spans must stay properly nested in the output."""

    start: int
    end: int
    kind: str
    output: str
    role: str = ""
    name: str = ""


@dataclass(frozen=True)
class Protection:
    """A job's translation options that change what the engine must keep.

    ``glossary`` pairs are (source term, target term); ``format`` is "text", "html" or
    "xml" (markup segments carry inline tags)."""

    format: str = "text"
    do_not_translate: tuple[str, ...] = ()
    glossary: tuple[tuple[str, str], ...] = ()
    _glossary_re: re.Pattern | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(
        cls,
        format: str = "text",  # noqa: A002 - the API's field name
        do_not_translate: Iterable[str] = (),
        glossary: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    ) -> Protection:
        items = glossary.items() if isinstance(glossary, Mapping) else glossary
        terms = tuple(sorted((s, t) for s, t in items if s.strip()))
        dnt = tuple(sorted({s for s in do_not_translate if s.strip()}))
        pattern = None
        if terms:
            # longest first, so "pull request" wins over "request"; word-bounded, any case
            forms = {f for s, _ in terms for f in as_written(s.strip(), format)}
            alts = sorted(map(re.escape, forms), key=len, reverse=True)
            pattern = re.compile(r"(?<!\w)(?:" + "|".join(alts) + r")(?!\w)", re.IGNORECASE)
        return cls(format, dnt, terms, pattern)

    @classmethod
    def from_options(cls, options: Mapping | None) -> Protection:
        """From a job's stored options (``{"format", "do_not_translate", "glossary"}``)."""
        options = options or {}
        return cls.of(
            options.get("format") or "text",
            options.get("do_not_translate") or (),
            options.get("glossary") or {},
        )

    def options(self) -> dict:
        """JSON-able form for storage; ``Protection.from_options(p.options()) == p``."""
        out: dict = {"format": self.format}
        if self.do_not_translate:
            out["do_not_translate"] = list(self.do_not_translate)
        if self.glossary:
            out["glossary"] = dict(self.glossary)
        return out

    @property
    def fingerprint(self) -> str:
        """Part of every segment-cache key: the same segment under another glossary,
        format or span list is another translation. Content-hashed, so two users with the
        same glossary share cache entries."""
        blob = json.dumps(self.options(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def glossary_lookup(self) -> dict[str, str]:
        return {s.strip().casefold(): t for s, t in self.glossary}

    @functools.cached_property
    def user_strings(self) -> list[str]:
        """The ``do_not_translate`` strings as this format's segments write them, longest
        first: once per Protection, not once per segment."""
        forms = {f for s in self.do_not_translate for f in as_written(s, self.format)}
        return sorted(forms, key=len, reverse=True)

    @functools.cached_property
    def glossary_forms(self) -> dict[str, tuple[str, str]]:
        """Each written form of a glossary source term, casefolded -> (the source term,
        its target): what ``_glossary_re`` matched, looked up."""
        return {
            form.casefold(): (s.strip(), t)
            for s, t in self.glossary
            for form in as_written(s.strip(), self.format)
        }


def as_written(term: str, fmt: str) -> tuple[str, ...]:
    """How a caller's term appears in a segment: as is in plain text; in an HTML/XML
    segment (serialized markup) with ``&``, ``<``, ``>`` escaped, and ``"`` too inside an
    attribute value. Matching the raw term there, "R&D" never matched "R&amp;D"."""
    if fmt not in ("html", "xml"):
        return (term,)
    text = html.escape(term, quote=False)
    return tuple(dict.fromkeys((text, text.replace('"', "&quot;"))))


SPANS_VERSION = 3  # bump when detection or masking changes what a segment translates to


def cache_version(model_version: str, protection: Protection) -> str:
    """The segment cache's model-version key part: the model, this module's rules and the
    job's protection (glossary content, format, span list) all change the output."""
    return f"{model_version}+spans{SPANS_VERSION}-{protection.fingerprint}"


def _trim_tail(text: str, start: int, end: int) -> int:
    """A URL or path ends before trailing sentence punctuation, keeping balanced ()."""
    while end > start + 1 and text[end - 1] in _URL_TAIL:
        ch = text[end - 1]
        if ch == ")" and text.count("(", start, end) >= text.count(")", start, end):
            break
        end -= 1
    return end


def _match_case(found: str, source_term: str, target: str) -> str:
    """The target term exactly as the glossary gives it, except where the text's casing
    says otherwise: ALL CAPS in the text gives ALL CAPS, a capital first letter where the
    glossary's source term has a small one (a sentence start) gives a capital first letter."""
    if found.isupper() and len(found) > 1 and not source_term.isupper():
        return target.upper()
    if found[:1].isupper() and source_term[:1].islower():
        return target[:1].upper() + target[1:]
    return target


def find_spans(
    text: str, protection: Protection | None = None, extra: Iterable[Span] = ()
) -> list[Span]:
    """Non-overlapping spans of ``text`` in order. ``extra`` (markup tags from the parser)
    claim their characters first, then the caller's ``do_not_translate`` strings, then
    the built-in kinds in ``_PATTERNS`` order, then glossary terms (a term inside a
    placeholder, URL or path is not a term: ``%(file)s`` stays). Touching spans of the
    built-in kinds become one (``${HOME}/tmp``), and quotes directly around one join it."""
    protection = protection or Protection()
    taken: dict[int, Span] = {}  # start -> span
    starts: list[int] = []  # taken's keys in order (taken spans never overlap)

    def free(start: int, end: int) -> list[Span] | None:
        """The spans inside [start, end) when none sticks out of it, else None. Found by
        bisection: a markup segment can hold thousands of spans, and scanning all of them
        per claim was quadratic."""
        inside = []
        i = bisect.bisect_left(starts, end) - 1  # the last span starting before ``end``
        while i >= 0 and taken[starts[i]].end > start:
            s = taken[starts[i]]
            if s.start < start or s.end > end:
                return None
            inside.append(s)
            i -= 1
        return inside[::-1]

    def claim(span: Span, swallow: frozenset[str] = frozenset(), refs: bool = False) -> None:
        """``refs``: the span may swallow markup's character references (a caller's
        "R&D" is "R&amp;D" in an HTML segment, whose "&amp;" the parser made a span)."""
        inside = free(span.start, span.end) if span.end > span.start else None
        if inside is None or any(
            s.kind not in swallow and not (refs and s.kind == "tag" and s.output[:1] == "&")
            for s in inside
        ):
            return
        for s in inside:
            del taken[s.start]
            starts.pop(bisect.bisect_left(starts, s.start))
        taken[span.start] = span
        bisect.insort(starts, span.start)

    for span in extra:
        claim(span)
    for s in protection.user_strings:
        pos = text.find(s)
        while pos >= 0:
            claim(Span(pos, pos + len(s), "user", s), refs=True)
            pos = text.find(s, pos + len(s))
    for kind, pattern in _PATTERNS:
        for m in pattern.finditer(text):
            start, end = m.span()
            if kind in ("url", "path"):
                end = _trim_tail(text, start, end)
            if kind == "placeholder" and m.group(0) == "%%":
                continue  # an escaped percent sign is text
            swallow = frozenset({"placeholder"}) if kind == "path" else frozenset()
            claim(Span(start, end, kind, text[start:end]), swallow)
    if protection._glossary_re is not None:  # noqa: SLF001 - built by Protection.of
        lookup = protection.glossary_forms
        for m in protection._glossary_re.finditer(text):  # noqa: SLF001
            source_term, target = lookup[m.group(0).casefold()]
            output = _match_case(m.group(0), source_term, target)
            claim(Span(m.start(), m.end(), "glossary", output), refs=True)
    return _quoted(text, _joined(text, sorted(taken.values(), key=lambda s: s.start)))


def _joined(text: str, spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for s in spans:
        prev = out[-1] if out else None
        if prev and prev.end == s.start and {prev.kind, s.kind} <= _JOINABLE:
            out[-1] = Span(prev.start, s.end, prev.kind, text[prev.start : s.end])
        else:
            out.append(s)
    return out


def _quoted(text: str, spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for i, s in enumerate(spans):
        if s.kind in _JOINABLE or s.kind == "user":
            before = text[s.start - 1] if s.start else ""
            after = text[s.end] if s.end < len(text) else ""
            room_left = s.start - 1 >= (out[-1].end if out else 0)
            room_right = i + 1 == len(spans) or spans[i + 1].start > s.end
            if before and _QUOTES.get(before) == after and room_left and room_right:
                s = Span(s.start - 1, s.end + 1, s.kind, text[s.start - 1 : s.end + 1])
        out.append(s)
    return out


def has_text(text: str) -> bool:
    """Whether ``text`` holds anything a model should translate: a letter (of any script).
    Numbers, list markers, punctuation, symbols and lone spans pass through unchanged."""
    return any(unicodedata.category(ch).startswith("L") for ch in text)


def outside(text: str, spans: list[Span]) -> str:
    """``text`` without its spans (what is left for the model)."""
    parts, pos = [], 0
    for s in spans:
        parts.append(text[pos : s.start])
        pos = s.end
    parts.append(text[pos:])
    return "".join(parts)


def substitute(text: str, spans: list[Span]) -> str:
    """``text`` with every span replaced by its output (the pass-through translation)."""
    parts, pos = [], 0
    for s in spans:
        parts.append(text[pos : s.start])
        parts.append(s.output)
        pos = s.end
    parts.append(text[pos:])
    return "".join(parts)


def well_nested(spans: Iterable[Span]) -> bool:
    """Paired tag spans, in the order given, open before they close and nest properly."""
    stack: list[str] = []
    for s in spans:
        if s.role == "open":
            stack.append(s.name)
        elif s.role == "close":
            if not stack or stack.pop() != s.name:
                return False
    return not stack
