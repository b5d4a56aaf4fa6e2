"""Request bodies (REST and the ingest topic): any bytes give a value or a 4xx reason,
and no input makes one call long (json.loads holds the GIL for a whole document)."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.api.errors import HTTP_STATUS  # where the API maps codes
from control_plane.jobs import json_body
from control_plane.jobs.json_body import MAX_DEPTH, MAX_TOKENS, BodyError, parse_json

OK = {"content": "Hello.", "source_language": "en", "target_language": "pt"}
MIB = 1024 * 1024


def reason(raw: bytes) -> tuple[int, str, str]:
    with pytest.raises(BodyError) as info:
        parse_json(raw)
    return HTTP_STATUS[info.value.code], info.value.code, info.value.message


@pytest.mark.parametrize(
    ("raw", "code", "words"),
    [
        (b"", "malformed_json", "empty"),
        (b"  \n ", "malformed_json", "empty"),
        (b"{nope", "malformed_json", "line 1, column 2"),
        (b'{"a": 1,}', "malformed_json", "not valid JSON"),
        (b'{"a": "\xff"}', "malformed_json", "UTF-8"),
        (b'{"a": "\xed\xa0\x80"}', "malformed_json", "UTF-8"),  # a surrogate, UTF-8 encoded
        (b"\xff\xfe{\x00}\x00", "malformed_json", "UTF-8"),  # UTF-16
        (b'{"a": NaN}', "malformed_json", "NaN"),
        (b'{"a": -Infinity}', "malformed_json", "-Infinity"),
        (b'{"a": ' + b"1" * 5000 + b"}", "malformed_json", "5000 characters"),
        (b'{"a": 1e999}', "malformed_json", "out of range"),
        (b'{"a": 0.' + b"1" * 200 + b"}", "malformed_json", "202 characters"),
        (b'{"text": "a", "text": "b"}', "malformed_json", "duplicate key 'text'"),
        (b'{"text": "hi \\ud800"}', "malformed_json", "text contains an unpaired surrogate"),
        (b'{"\\udfff": 1}', "malformed_json", "a key in body"),
        (b'{"m": {"k": ["\\udc00x"]}}', "malformed_json", "m.k[0]"),
        (b'{"a": "tab\there"}', "malformed_json", "Invalid control character"),
        (b"[" * 10_000, "json_too_complex", f"more than {MAX_DEPTH} levels"),
        (b'{"a":' * 100 + b"1" + b"}" * 100, "json_too_complex", "levels"),
        (b"[" + b"1," * MAX_TOKENS + b"1]", "json_too_complex", f"more than {MAX_TOKENS}"),
        (
            b"{" + b",".join(b'"k%d":0' % i for i in range(MAX_TOKENS)) + b"}",
            "json_too_complex",
            "",
        ),
    ],
)
def test_rejected_with_a_reason(raw, code, words):
    status, got, message = reason(raw)
    assert status == 400 and got == code
    assert words in message


@pytest.mark.parametrize(
    "raw",
    [
        b"\xef\xbb\xbf" + json.dumps(OK).encode(),  # a BOM is skipped
        json.dumps(OK, ensure_ascii=False).encode(),
        json.dumps(
            {**OK, "content": "\u202e\u05d0\u05d1 \u200b\u200d a\u0301 \U0001f600"}
        ).encode(),
        json.dumps({**OK, "content": "ctl \u0001\u001f escaped"}).encode(),
        b'{"content": "a \\ud83d\\ude00 pair"}',  # an escaped surrogate pair is one character
        b'{"a": 1.5e10, "b": -0, "c": [true, false, null], "d": {}}',
        b"[1, 2]",
        b'"just a string"',
        b"12",
    ],
)
def test_accepted(raw):
    assert parse_json(raw) == json.loads(raw.decode("utf-8-sig"))


def test_the_structure_check_reads_long_strings_and_escapes(monkeypatch):
    monkeypatch.setattr(json_body, "SCAN_CHARS", 5)
    text = 'x \\" \\\\ y \\u00e9 \\' + "n" + "z" * 20
    assert parse_json(json.dumps({"a": [text, "]", "{"]}).encode()) == {"a": [text, "]", "{"]}
    assert reason(b'{"a": "unterminated \\"')[1] == "malformed_json"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60))
def test_any_bytes_give_a_value_or_a_reason(raw):
    try:
        parse_json(raw)
    except BodyError as exc:
        assert 400 <= HTTP_STATUS[exc.code] < 500 and exc.message


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_JSON = st.recursive(
    _SCALARS,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_valid_json_round_trips(value):
    for ensure_ascii in (True, False):
        assert parse_json(json.dumps(value, ensure_ascii=ensure_ascii).encode()) == value


@pytest.mark.parametrize(
    "raw",
    [
        b"[" + b"[]," * (8 * MIB // 3) + b"[]]",  # json.loads alone: 0.7 s holding the GIL
        b'{"a": "' + b"\\u00e9" * (8 * MIB // 6) + b'"}',
        b"[" + b"1" * 8 * MIB + b"]",
        b"{" + b" " * 8 * MIB + b"}",
        b'"' + b'\\"' * (4 * MIB),
    ],
    ids=["arrays", "escapes", "digits", "spaces", "unterminated"],
)
def test_8_mib_bodies_are_quick(raw):
    t0 = time.perf_counter()
    try:
        parse_json(raw)
    except BodyError:
        pass
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        (None, None),
        ("application/json", None),
        ("application/json; charset=utf-8", None),
        ("text/plain", None),
        ("application/octet-stream", None),
        ("application/x-www-form-urlencoded", 415),
        ("multipart/form-data; boundary=x", 415),
    ],
)
def test_media_types(content_type, status):
    if status is None:
        json_body.check_media_type(content_type)
    else:
        with pytest.raises(BodyError) as info:
            json_body.check_media_type(content_type)
        assert HTTP_STATUS[info.value.code] == status


_TEXT = st.text(
    st.sampled_from(
        [
            '"',
            "\\",
            "/",
            "\n",
            "\t",
            "\x00",
            "\x1f",
            "a",
            "\u00e9",
            "\u4e2d",
            "\U0001f600",
            "\ud7ff",
            "\ue000",
            "u",
            " ",
        ]
    ),  # fmt: skip
    max_size=40,
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_TEXT, min_size=1, max_size=4), st.booleans(), st.integers(1, 9))
def test_long_strings_decode_in_pieces_exactly(strings_, ensure_ascii, piece):
    """Strings over LONG_STRING are decoded piece by piece (one json.loads of an 8 MiB
    string with millions of escapes holds the GIL for 80 ms); pieces never split an escape
    or a surrogate pair, so the value is json.loads's."""
    strings = strings_
    value = {"content": strings[0], "list": strings, "k": {"v": "x", strings[-1] + "k": 1}}
    raw = json.dumps(value, ensure_ascii=ensure_ascii).encode()
    saved = json_body.LONG_STRING, json_body.PIECE_CHARS
    json_body.LONG_STRING, json_body.PIECE_CHARS = 4, piece
    try:
        assert parse_json(raw) == value
    finally:
        json_body.LONG_STRING, json_body.PIECE_CHARS = saved


def test_errors_after_a_long_string_point_at_the_body(monkeypatch):
    monkeypatch.setattr(json_body, "LONG_STRING", 10)
    monkeypatch.setattr(json_body, "PIECE_CHARS", 7)
    raw = b'{"content": "' + b"\\n" * 50 + b'",\n "x": tru}'
    message = reason(raw)[2]
    assert "line 2, column 7" in message, message
    raw = b'{"content": "' + b"ab" * 50 + b'\\x"}'
    assert "Invalid \\escape" in reason(raw)[2]
    assert reason(b'{"content": "' + b"ab" * 50 + b'\\ud800 lone"}')[1] == "malformed_json"


@settings(max_examples=300, deadline=None)
@given(_TEXT, st.integers(1, 9))
def test_string_ends_and_cuts_agree_with_the_regex(value, piece):
    """The str.find fast paths (quote to quote; cuts before an escape) against the
    regex they avoid."""
    text = json.dumps([value, "tail \\"])
    body = text.index('"') + 1
    assert json_body._string_end(text, body) == json_body._STRING_BODY.match(text, body).end() + 1
    stop = json_body._string_end(text, body) - 1
    for target in range(body + 1, stop):
        cut = json_body._cut(text, body, target)
        if cut is not None:  # both halves decode and join to the whole
            whole = json.loads(text[body - 1 : stop + 1])
            assert (
                json.loads('"' + text[body:cut] + '"') + json.loads('"' + text[cut:stop] + '"')
                == whole
            )


def test_strings_with_many_escaped_quotes_or_backslashes(monkeypatch):
    monkeypatch.setattr(json_body, "LONG_STRING", 10)
    monkeypatch.setattr(json_body, "PIECE_CHARS", 7)
    for content in ['"' * 200, "\\" * 200, '\\"' * 100 + "x", "\\" * 33 + '"']:
        value = {"content": content, "after": "x"}
        assert parse_json(json.dumps(value).encode()) == value
