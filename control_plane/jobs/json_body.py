"""JSON request bodies parsed within fixed bounds: any input is a value or a 4xx with a
readable reason, and no single step holds the GIL for long.

``parse_json(raw)`` is shared by ``POST /api/v1/translate`` (``read_json`` in
control_plane/api/routes/translate.py), the JSON form fields of ``POST /api/v1/documents``
(named in messages, one level less deep) and the Kafka ingest consumer
(``control_plane.jobs.ingest``), so it lives below the web layer; it raises
``BodyError(code, message)`` (a ``DomainError``; the API maps the code to 400/415):

- 400 ``malformed_json``: empty body, invalid UTF-8, invalid JSON (with line and column),
  NaN / Infinity, a number of more than ``MAX_NUMBER_CHARS`` characters (Python's int()
  refuses 4,300 digits with a ValueError: that was a 500) or out of float range, a
  duplicate key in an object, an unpaired surrogate escape (``"\\ud800"``) in a key or a
  string (not Unicode text: it cannot be stored or encoded).
- 400 ``json_too_complex``: nesting deeper than ``MAX_DEPTH`` or more than ``MAX_TOKENS``
  JSON tokens (strings, brackets, commas, colons). A translate request has a dozen; the
  4 KiB metadata object a few hundred. Checked before ``json.loads``, whose C scanner holds
  the GIL for the whole document (0.7 s for 8 MiB of ``[],``).

A UTF-8 byte order mark is skipped (RFC 8259 lets a parser ignore it). Control characters
raw inside strings are invalid JSON (400); escaped ones are text like any other.

Cost: the structure check looks at one slice of ``SCAN_CHARS`` per regex call and stops
at the token limit, so the longest uninterrupted C call on an 8 MiB body is json.loads
on a bounded number of tokens (about 10 ms, 45 ms for 8 MiB of ``\\u00e9`` escapes) or
UTF-8 decoding. REST bodies over ``THREAD_BYTES`` are parsed in a thread.
"""

from __future__ import annotations

import json
import math
import re
import secrets

from control_plane.domain import DomainError

MAX_DEPTH = 64
MAX_TOKENS = 10_000
MAX_NUMBER_CHARS = 100
SCAN_CHARS = 1 << 18
THREAD_BYTES = 64 * 1024  # REST bodies larger than this are parsed off the event loop
LONG_STRING = 1 << 18  # longer strings are decoded in pieces ...
PIECE_CHARS = 1 << 17  # ... of about this many characters
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/")

_STRUCT = re.compile(r'["\[\]{},:]')
# a string's body up to its closing quote (possessive: no backtracking; DOTALL: an escaped
# newline is invalid JSON, but must not make the scan fail and start again elsewhere)
_STRING_BODY = re.compile(r'[^"\\]*+(?:\\.[^"\\]*+)*+', re.S)
_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_SPACE = re.compile(r"\S")
# a string's characters and whole escapes: where endpos cuts the match, it ends between two
_PIECE = re.compile(r"[^\"\\]*+(?:(?:\\u[0-9a-fA-F]{4}|\\[^u])[^\"\\]*+)*+")
_HIGH = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}")
_LOW = re.compile(r"\\u[dD][c-fC-F][0-9a-fA-F]{2}")


class BodyError(DomainError):
    """A body that is not an acceptable JSON document."""

    def __init__(self, code: str, message: str):
        super().__init__(message, code=code)


class _Invalid(ValueError):
    """Raised from json.loads hooks; becomes a 400 malformed_json."""


def _search(pattern: re.Pattern, text: str, lo: int) -> re.Match | None:
    """``pattern.search(text, lo)`` for a one-character pattern, SCAN_CHARS per call."""
    n = len(text)
    while lo < n:
        m = pattern.search(text, lo, min(n, lo + SCAN_CHARS))
        if m is not None:
            return m
        lo += SCAN_CHARS
    return None


def check_structure(
    text: str, what: str = "request body", max_depth: int = MAX_DEPTH
) -> list[tuple[int, int]]:
    """BodyError for nesting deeper than ``max_depth`` or more than MAX_TOKENS tokens.
    Syntax errors are left to json.loads (an unterminated string ends the check). Returns
    the (start, end) of every string value (not key) longer than LONG_STRING, quotes
    included. ``what`` names the document in messages ("request body", "form field
    metadata")."""
    depth = tokens = pos = 0
    long: list[tuple[int, int]] = []
    while True:
        m = _search(_STRUCT, text, pos)
        if m is None:
            return long
        ch = text[m.start()]
        pos = m.end()
        tokens += 1
        if tokens > MAX_TOKENS:
            raise BodyError(
                "json_too_complex",
                f"{what} has more than {MAX_TOKENS} JSON tokens "
                "(strings, brackets, commas, colons)",
            )
        if ch == '"':
            end = _string_end(text, pos)
            if end is None:
                return long  # unterminated: json.loads says where
            pos = end
            if pos - m.start() > LONG_STRING:
                after = _search(_NOT_SPACE, text, pos)
                if after is None or text[after.start()] != ":":  # a value, not a key
                    long.append((m.start(), pos))
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                raise BodyError(
                    "json_too_complex", f"{what} nests JSON more than {max_depth} levels deep"
                )
        elif ch in "]}":
            depth -= 1


def _string_end(text: str, pos: int) -> int | None:
    """Just after the closing quote of the string whose body starts at ``pos``, or None if
    it has none. Jumps from quote to quote with str.find; a string with many escaped
    quotes (or long runs of backslashes) is read by a regex, SCAN_CHARS per call."""
    start, n = pos, len(text)
    for _ in range(64):
        quote = text.find('"', pos)
        if quote < 0:
            return None
        run = 0
        while run < 16 and quote - run > start and text[quote - run - 1] == "\\":
            run += 1
        if run == 16:
            break  # a long run of backslashes: let the regex count them
        if run % 2 == 0:
            return quote + 1
        pos = quote + 1  # an escaped quote
    pos = start
    while True:
        pos = _STRING_BODY.match(text, pos, min(n, pos + SCAN_CHARS)).end()
        if pos >= n:
            return None
        if text[pos] == '"':
            return pos + 1


def _cut(text: str, lo: int, target: int) -> int | None:
    """A place near ``target`` (at most 64 characters before it, after ``lo``) to split a
    JSON string's body into two that decode apart: before an escape's backslash (not a
    low surrogate's: it may be a pair's second half), or where no escape can be open (no
    backslash in the 5 characters before)."""
    for c in range(target, max(lo, target - 64), -1):
        if text[c] == "\\":
            if text[c - 1] != "\\" and not _LOW.match(text, c):
                return c
        elif "\\" not in text[max(lo, c - 5) : c]:
            return c
    return None


def _decode_long(text: str, start: int, end: int, what: str = "request body") -> str:
    """The JSON string text[start:end] (quotes included), decoded PIECE_CHARS at a time:
    json.loads decodes a string in one C call that holds the GIL (80 ms for 8 MiB of
    ``\\n``). Pieces end between escapes, never inside one or inside a surrogate pair."""
    parts: list[str] = []
    pos, stop = start + 1, end - 1
    while pos < stop:
        cut = stop
        if stop - pos > PIECE_CHARS:
            cut = _cut(text, pos, pos + PIECE_CHARS)
            if cut is None:  # escapes all along: a regex finds the last whole one
                cut = _PIECE.match(text, pos, pos + PIECE_CHARS).end()
                if _HIGH.match(text, cut - 6, cut) and _LOW.match(text, cut):  # a pair whole
                    cut -= 6
            if cut <= pos:  # an invalid escape here: json.loads says so at once
                cut = stop
        try:
            parts.append(json.loads('"' + text[pos:cut] + '"'))
        except json.JSONDecodeError as exc:
            line, column = _where(text, pos - 1 + exc.pos)
            raise BodyError(
                "malformed_json",
                f"{what} is not valid JSON: {exc.msg} (line {line}, column {column})",
            ) from exc
        pos = cut
    return "".join(parts)


def _where(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - text.rfind("\n", 0, pos)


def _number(kind: type):  # noqa: ANN202
    def parse(literal: str):  # noqa: ANN202
        if len(literal) > MAX_NUMBER_CHARS:
            raise _Invalid(
                f"a number in the body has {len(literal)} characters; "
                f"at most {MAX_NUMBER_CHARS} are accepted"
            )
        value = kind(literal)
        if kind is float and not math.isfinite(value):
            raise _Invalid(f"number {literal} is out of range")
        return value

    return parse


def _constant(name: str):  # noqa: ANN202
    raise _Invalid(f"{name} is not valid JSON (numbers must be finite)")


def _object(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Invalid(f"duplicate key {key[:100]!r} in a JSON object")
            seen.add(key)
    return obj


def _has_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    for lo in range(0, len(text), SCAN_CHARS):
        if _SURROGATE.search(text, lo, lo + SCAN_CHARS) is not None:
            return True
    return False


def _check_text(value: object, what: str = "body") -> None:
    """400 for an unpaired surrogate anywhere (keys included)."""
    stack = [(value, what)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _has_surrogate(item):
                raise BodyError(
                    "malformed_json",
                    f"{where} contains an unpaired surrogate escape (\\ud800-\\udfff "
                    "without its pair): JSON strings must be valid Unicode text",
                )
        elif isinstance(item, dict):
            for key, val in item.items():
                if _has_surrogate(key):
                    stack.append((key, f"a key in {where}"))
                else:
                    stack.append((val, key[:100] if where == "body" else f"{where}.{key[:100]}"))
        elif isinstance(item, list):
            stack.extend((val, f"{where}[{i}]") for i, val in enumerate(item))


def parse_json(raw: bytes, what: str = "request body", max_depth: int = MAX_DEPTH) -> object:
    """The JSON value in ``raw``, or BodyError (see the module docstring). ``what`` names
    it in messages; ``max_depth`` is less than MAX_DEPTH for a value that a request nests
    (a form field of an upload: the same bound as that field within a JSON body)."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw.strip():
        wanted = "a JSON object" if what == "request body" else "JSON"
        raise BodyError("malformed_json", f"{what} is empty; send {wanted}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(
            "malformed_json",
            f"{what} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset "
            f"{exc.start}: {exc.reason})",
        ) from exc
    long = check_structure(text, what, max_depth)
    markers: dict[str, tuple[int, int]] = {}
    shown = text
    if long:  # parsed with a short marker in their place, then decoded in pieces
        tag = secrets.token_hex(8)
        pieces, last = [], 0
        for i, (start, end) in enumerate(long):
            marker = f"\x00mtb-long-{i}-{tag}"
            markers[marker] = (start, end)
            pieces += [text[last:start], json.dumps(marker)]
            last = end
        shown = "".join([*pieces, text[last:]])
    try:
        value = json.loads(
            shown,
            parse_int=_number(int),
            parse_float=_number(float),
            parse_constant=_constant,
            object_pairs_hook=_object,
        )
    except _Invalid as exc:
        raise BodyError("malformed_json", f"{what} is not valid JSON: {exc}") from exc
    except json.JSONDecodeError as exc:
        line, column = _where(text, _unshift(exc.pos, long, markers))
        raise BodyError(
            "malformed_json",
            f"{what} is not valid JSON: {exc.msg} (line {line}, column {column})",
        ) from exc
    except (ValueError, RecursionError) as exc:  # not expected past the checks above
        raise BodyError("malformed_json", f"{what} is not valid JSON: {exc}") from exc
    if markers:
        value = _restore(value, {m: _decode_long(text, *span, what) for m, span in markers.items()})
    if "\\u" in text:  # an unpaired surrogate can only come from a \u escape
        _check_text(value, "body" if what == "request body" else what)
    return value


def too_deep(value: object, max_depth: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests lists and objects more than ``max_depth`` levels (the value
    itself, if a list or object, is level 1: as ``check_structure`` counts). For values
    that did not come through ``parse_json`` (a request assembled from form fields, a
    stored job's metadata): pydantic refuses to serialize past ~250 levels and json past
    ~1,000 (RecursionError), so a deeper value must be stopped before it is kept.
    Iterative, and it stops at the first path that is too deep."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend(
            (child, depth + 1) for child in children if isinstance(child, dict | list | tuple)
        )
    return False


def _unshift(pos: int, long: list[tuple[int, int]], markers: dict[str, tuple[int, int]]) -> int:
    """A position in the text json.loads saw (markers in place of long strings) as a
    position in the body."""
    shift = 0
    for (start, end), marker in zip(long, markers, strict=True):
        size = len(json.dumps(marker))
        if pos < start - shift + size:
            break
        shift += (end - start) - size
    return pos + shift


def _restore(value: object, strings: dict[str, str]) -> object:
    if isinstance(value, str):
        return strings.get(value, value)
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, val in item.items():
                if isinstance(val, str):
                    if val in strings:
                        item[key] = strings[val]
                elif isinstance(val, dict | list):
                    stack.append(val)
        elif isinstance(item, list):
            for i, val in enumerate(item):
                if isinstance(val, str):
                    if val in strings:
                        item[i] = strings[val]
                elif isinstance(val, dict | list):
                    stack.append(val)
    return value


def check_media_type(content_type: str | None) -> None:
    """415 for form data (curl -d without a Content-Type sends a form); no header, JSON,
    text/plain and octet-stream bodies are all read as JSON."""
    if content_type is None:
        return
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime.startswith(FORM_TYPES):
        raise BodyError(
            "unsupported_media_type",
            f"the body must be JSON (Content-Type: application/json), not {mime}",
        )
