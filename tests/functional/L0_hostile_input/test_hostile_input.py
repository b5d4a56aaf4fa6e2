"""Hostile input against the real service (issue 10): every input gets a 4xx with a
readable reason or a correct result, and /healthz keeps answering within 200 ms while it is
being submitted (measured by a second client, a process of its own, polling it meanwhile).

Runs on ``hostile_service`` (conftest.py: `mtctl serve` booted like L0_service's, on sqlite
and on postgres, default limits); bodies of several MiB run on sqlite only, to keep this
folder short. Jobs that would keep the workers busy for
minutes (a 1 MB word, 8 MiB of CJK full stops) are cancelled once accepted."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import requests

from devstack.healthz import HealthzPoller
from tests.functional.api_service import Service, wait_for

MIB = 1024 * 1024
BODY_LIMIT = 8 * MIB  # MTB_MAX_BODY_BYTES's default
HEALTHZ_LIMIT_S = 0.2
SHORT = "The file could not be opened.\n\n  - Check the path. Try again!\n"


def doc(content: object, ascii_only: bool = False, **fields: object) -> bytes:
    body = {"content": content, "source_language": "en", "target_language": "pt", **fields}
    return json.dumps(body, ensure_ascii=ascii_only).encode()


def fill(unit: str, size: int = BODY_LIMIT - 256) -> str:
    """``unit`` repeated to about ``size`` bytes of UTF-8."""
    return unit * (size // len(unit.encode()))


def raw(content: bytes, tail: bytes = b"") -> bytes:
    return (
        b'{"content": '
        + content
        + b', "source_language": "en", "target_language": "pt"'
        + (tail + b"}")
    )


@dataclass
class Case:
    name: str
    body: Callable[[], bytes]
    status: int
    code: str | None = None  # the error code a 4xx must carry
    content_type: str | None = "application/json"
    big: bool = False  # several MiB: sqlite only
    then: str | None = None  # 202: "same" (result == source), "done" (translated), "cancel"


CASES = [
    # numbers, literals, keys (Python's json gave 500s or let them through)
    Case("5000-digit integer", lambda: raw(b'"Hi."', b', "priority": ' + b"7" * 5000), 400,
         "malformed_json"),
    Case("5000-digit integer in metadata", lambda: raw(b'"Hi."', b', "metadata": {"n": '
         + b"1" * 5000 + b"}"), 400, "malformed_json"),
    Case("float out of range", lambda: raw(b'"Hi."', b', "metadata": {"n": 1e999}'), 400,
         "malformed_json"),
    Case("NaN", lambda: raw(b'"Hi."', b', "metadata": {"n": NaN}'), 400, "malformed_json"),
    Case("Infinity", lambda: raw(b'"Hi."', b', "metadata": {"n": -Infinity}'), 400,
         "malformed_json"),
    Case("duplicate keys", lambda: raw(b'"Hi."', b', "content": "Bye."'), 400, "malformed_json"),
    Case("lone surrogate in content", lambda: raw(b'"Hi \\ud800 there."'), 400,
         "malformed_json"),
    Case("lone surrogate in a key", lambda: raw(b'"Hi."', b', "\\udfff": 1'), 400,
         "malformed_json"),
    Case("lone surrogate in metadata", lambda: raw(b'"Hi."', b', "metadata": {"k": "\\udc00"}'),
         400, "malformed_json"),
    # encodings and framing
    Case("UTF-8 byte order mark", lambda: b"\xef\xbb\xbf" + doc(SHORT), 202, then="done"),
    Case("invalid UTF-8", lambda: raw(b'"caf\xe9 au lait"'), 400, "malformed_json"),
    Case("UTF-16 body", lambda: doc("Hi.").decode().encode("utf-16"), 400, "malformed_json"),
    Case("raw control character", lambda: raw(b'"tab\there"'), 400, "malformed_json"),
    Case("empty body", lambda: b"", 400, "malformed_json"),
    Case("truncated JSON", lambda: doc(SHORT)[:-5], 400, "malformed_json"),
    Case("form content type", lambda: doc("Hi."), 415, "unsupported_media_type",
         content_type="application/x-www-form-urlencoded"),
    Case("text/plain content type", lambda: doc(SHORT), 202, content_type="text/plain",
         then="done"),
    Case("over the body limit", lambda: doc(fill("word ", BODY_LIMIT + 4096)), 413,
         "content_too_large"),
    # shape
    Case("deep nesting", lambda: b"[" * 100_000, 400, "json_too_complex"),
    Case("deep metadata", lambda: raw(b'"Hi."', b', "metadata": ' + b'{"a":' * 100 + b"1"
         + b"}" * 100), 400, "json_too_complex"),
    Case("20,000 keys", lambda: raw(b'"Hi."', b"".join(b', "k%d": 0' % i
         for i in range(20_000))), 400, "json_too_complex"),
    Case("8 MiB of empty arrays", lambda: b"[" + b"[]," * (BODY_LIMIT // 3 - 2) + b"[]]", 400,
         "json_too_complex", big=True),
    Case("array body", lambda: b"[1, 2]", 422, "invalid_request"),
    Case("string body", lambda: b'"translate me"', 422, "invalid_request"),
    Case("number body", lambda: b"42", 422, "invalid_request"),
    Case("null body", lambda: b"null", 422, "invalid_request"),
    Case("content not a string", lambda: doc(123), 422, "invalid_request"),
    Case("unknown field", lambda: doc("Hi.", colour="blue"), 422, "invalid_request"),
    Case("metadata over 4 KiB", lambda: doc("Hi.", metadata={"k": "v" * 5000}), 422,
         "invalid_request"),
    Case("NUL in content", lambda: doc("a\u0000b"), 422, "invalid_request"),
    Case("blank content", lambda: doc(" \n\t\u3000 "), 422, "invalid_request"),
    # odd text that is valid: a correct result
    Case("escaped control characters", lambda: doc("Bell \u0007 and escape \u001b[1m here."),
         202, then="done"),
    Case("RTL, zero-width and combining", lambda: doc(
        "\u202eThe \u200bfile\u200d could not be ope\u0301ned.\n\n\u05e9\u05dc\u05d5\u05dd."),
         202, then="done"),
    Case("zero-width characters only", lambda: doc("\u200b\u200c\u200d\ufeff"), 202,
         then="same"),
    Case("20,000 dots", lambda: doc("." * 20_000), 202, then="same"),
    Case("10,000 dot-space sentences", lambda: doc(". " * 10_000), 202, then="same"),
    Case("a dot run inside a sentence", lambda: doc("Hello" + "." * 20_000 + " world."), 202,
         then="cancel"),
    Case("5,000 abbreviations", lambda: doc("Dr. " * 5_000), 202, then="cancel"),
    Case("1 MB single word", lambda: doc("a" * 1_000_000), 202, then="cancel"),
    # 8 MiB bodies (the worst found for submit: CJK full stops)
    Case("8 MiB single word", lambda: doc(fill("a")), 202, big=True, then="cancel"),
    Case("8 MiB of CJK full stops", lambda: doc(fill("a\u3002")), 202, big=True,
         then="cancel"),
    Case("8 MiB of blank lines", lambda: doc("Hi." + fill(" \n", BODY_LIMIT * 2 // 3 - 256)
         + "Bye."), 202, big=True, then="cancel"),
    Case("8 MiB of \\u escapes", lambda: doc(fill("\u00e9", BODY_LIMIT // 3 - 256),
         ascii_only=True),
         202, big=True, then="cancel"),
]  # fmt: skip


def submit(
    svc: Service, body: bytes, content_type: str | None
) -> tuple[requests.Response, HealthzPoller, float]:  # noqa: E501
    headers = svc.headers("enterprise")
    if content_type:
        headers["Content-Type"] = content_type
    with HealthzPoller(svc.url) as watch:
        t0 = time.perf_counter()
        r = requests.post(f"{svc.url}/api/v1/translate", data=body, headers=headers, timeout=120)
        seconds = time.perf_counter() - t0
    return r, watch, seconds


def result(svc: Service, job_id: str) -> dict:
    r = requests.get(
        f"{svc.url}/api/v1/jobs/{job_id}/result", headers=svc.headers("enterprise"), timeout=30
    )
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_body(hostile_service, case):
    service = hostile_service
    if case.big and service.backend != "sqlite":
        pytest.skip("multi-MiB bodies run on sqlite only (runtime)")
    body = case.body()
    r, watch, seconds = submit(service, body, case.content_type)
    worst = max(watch.latencies)
    print(f"\n{case.name}: {len(body):,} bytes -> {r.status_code} in {seconds:.2f} s; "
          f"/healthz worst {worst * 1000:.0f} ms over {len(watch.latencies)} polls")  # fmt: skip
    assert not watch.failures, watch.failures
    assert worst < HEALTHZ_LIMIT_S, f"/healthz took {worst * 1000:.0f} ms during the submit"
    assert r.status_code == case.status, r.text[:2000]
    assert r.headers["Content-Type"].startswith("application/json")
    if r.status_code >= 400:
        error = r.json()["error"]
        assert error["code"] == case.code and error["message"], error
        return
    job_id = r.json()["job_id"]
    source = json.loads(body.decode("utf-8-sig"))["content"]
    if case.then == "cancel":
        c = requests.delete(
            f"{service.url}/api/v1/jobs/{job_id}", headers=service.headers("enterprise"),
            timeout=30,
        )  # fmt: skip
        assert c.status_code in (200, 409), c.text  # 409: it finished first
        return
    job = wait_for(service, job_id, timeout=120)
    assert job["status"] == "completed", job
    out = result(service, job_id)["translated_content"]
    if case.then == "same":  # nothing to translate: the layout alone comes back
        assert out == source
    else:
        assert out.strip() and out.count("\n") == source.count("\n")


def _raw_http(svc: Service, request: bytes) -> tuple[int, dict]:
    """One HTTP/1.1 exchange with bytes no client library sends (header values that are
    not ASCII, undecodable escapes in the path)."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(svc.url)
    with socket.create_connection((where.hostname, where.port), timeout=30) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, (json.loads(body) if body.startswith(b"{") else {})


@pytest.mark.parametrize(
    ("request_line", "headers", "status"),
    [
        (b"GET /api/v1/jobs", b"Authorization: Bearer \xe9t\xe9\r\n", 401),
        (b"GET /api/v1/jobs", b"Authorization: Bearer mtb_\xed\xa0\x80\r\n", 401),
        (b"POST /api/v1/translate", b"Authorization: Bearer a.\xff.c\r\n", 401),
        (b"GET /api/v1/jobs/%00", None, 404),
        (b"GET /api/v1/jobs/%00/result", None, 404),
        (b"DELETE /api/v1/jobs/%00", None, 404),
        (b"GET /api/v1/jobs/%ED%A0%80", None, 404),
        (b"GET /api/v1/jobs/" + b"f" * 4000, None, 404),
        (b"GET /api/v1/jobs?status=%00", None, 422),
        (b"GET /api/v1/jobs?limit=" + b"9" * 5000, None, 422),
        (b"GET /api/v1/jobs?offset=-1", None, 422),
        (b"GET /api/v1/jobs?limit=%ED%A0%80", None, 422),
    ],
    ids=["auth-latin1", "auth-surrogate-bytes", "auth-jwt-ff", "job-nul", "result-nul",
         "cancel-nul", "job-bad-escape", "job-4000-chars", "status-nul", "limit-5000-digits",
         "offset-negative", "limit-bad-escape"],
)  # fmt: skip
def test_odd_bytes_on_other_routes(hostile_service, request_line, headers, status):
    service = hostile_service
    auth = headers or f"Authorization: Bearer {service.keys['enterprise']}\r\n".encode()
    request = request_line + b" HTTP/1.1\r\nHost: x\r\n" + auth + b"Connection: close\r\n\r\n"
    got, body = _raw_http(service, request)
    assert got == status, body
    assert body["error"]["code"] and body["error"]["message"]
