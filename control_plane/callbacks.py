"""Signed webhook callbacks on job completion and failure.

Each POST carries the JSON event and two headers:

- ``X-MTB-Timestamp``: unix seconds when the attempt was signed
- ``X-MTB-Signature``: ``sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>``

The secret is the job owner's own webhook secret, shown once by ``mtctl users create``
(never the JWT secret: the holder of one could forge the other). Users created before
per-user secrets have none; their callbacks are signed with ``MTB_CALLBACK_SECRET`` when
set, else sent without the two headers (and a warning is logged), so receivers that verify
reject them. Receivers recompute the HMAC and reject old timestamps to stop replays.

The target is checked at every attempt (``control_plane.security``): the scheme (https in
production mode), IP literals, and, through the session's resolver, every address a name
resolves to, with the connection made to exactly the addresses checked. Redirects are not
followed (a 3xx counts as a failed attempt). Delivery runs in its own task with exponential backoff
(``callback_backoff_s`` * 2**attempt, up to ``callback_attempts`` tries); workers only
enqueue, so a slow receiver never blocks translation.

Tracing: ``send`` keeps the caller's trace context (the job's: the finisher runs in it);
each delivery attempt is a ``webhook.deliver`` span in the job's trace, and the POST
carries its W3C ``traceparent`` so a receiver's spans can join.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from typing import Any

import aiohttp
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind, Status, StatusCode

from control_plane import tracing
from control_plane.security import guarded_resolver, literal_problem

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-MTB-Signature"
TIMESTAMP_HEADER = "X-MTB-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, "sha256")
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, max_age_s: float = 300
) -> bool:
    try:
        if abs(time.time() - float(timestamp)) > max_age_s:
            return False
    except ValueError:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class CallbackSender:
    def __init__(
        self,
        secret: str = "",
        attempts: int = 5,
        backoff_s: float = 1.0,
        timeout_s: float = 10.0,
        on_result=None,  # noqa: ANN001 - callable(ok: bool) for metrics
        allow_hosts: frozenset[str] = frozenset(),
        production: bool = False,
    ):
        self.secret = secret  # fallback for users without their own webhook secret
        self.allow_hosts = allow_hosts
        self.production = production
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.on_result = on_result
        self._queue: asyncio.Queue[tuple[str, dict[str, Any], str | None, Any]] = asyncio.Queue()
        self._tasks: set[asyncio.Task] = set()
        self._runner: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            resolver=guarded_resolver(self.allow_hosts), use_dns_cache=False
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout_s)
        )
        self._runner = asyncio.create_task(self._run(), name="callbacks")

    def send(self, url: str, event: dict[str, Any], secret: str | None = None) -> None:
        """Queue a delivery signed with ``secret`` (the owner's webhook secret; None: the
        fallback ``MTB_CALLBACK_SECRET``, or unsigned without one); returns at once."""
        self._queue.put_nowait(
            (url, event, secret or self.secret or None, otel_context.get_current())
        )

    async def _run(self) -> None:
        while True:
            url, event, secret, ctx = await self._queue.get()
            task = asyncio.create_task(self._deliver(url, event, secret), context=_copy(ctx))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, event: dict[str, Any], secret: str | None = None) -> bool:
        body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode("utf-8")
        if secret is None:
            log.warning(
                "callback sent unsigned: the job's user has no webhook secret and "
                "MTB_CALLBACK_SECRET is not set",
                extra={"job_id": event.get("job_id")},
            )
        for attempt in range(self.attempts):
            problem = literal_problem(url, self.production, self.allow_hosts)
            if problem is not None:  # refused for good: no retry makes it acceptable
                self._report(False)
                log.error("callback refused", extra={"url": url, "error": problem,
                                                     "job_id": event.get("job_id")})  # fmt: skip
                return False
            ts = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "mt-backend-callbacks/1",
            }
            if secret is not None:
                headers[TIMESTAMP_HEADER] = ts
                headers[SIGNATURE_HEADER] = sign(secret, ts, body)
            with tracing.tracer.start_as_current_span(
                "webhook.deliver",
                kind=SpanKind.CLIENT,
                attributes={"mtb.job_id": str(event.get("job_id")), "mtb.attempt": attempt + 1,
                            "http.request.method": "POST", "mtb.signed": secret is not None,
                            "server.address": _host(url)},
            ) as span:  # fmt: skip
                tracing.inject(headers)  # traceparent: the receiver may continue the trace
                try:
                    assert self._session is not None
                    async with self._session.post(
                        url, data=body, headers=headers, allow_redirects=False
                    ) as resp:
                        span.set_attribute("http.response.status_code", resp.status)
                        if 200 <= resp.status < 300:
                            self._report(True)
                            return True
                        status: Any = resp.status
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    status = repr(exc)
                    span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(status)[:200]))
            log.warning(
                "callback attempt failed",
                extra={"url": url, "attempt": attempt + 1, "status": str(status),
                       "job_id": event.get("job_id")},
            )  # fmt: skip
            if attempt + 1 < self.attempts:
                await asyncio.sleep(self.backoff_s * (2**attempt))
        self._report(False)
        log.error("callback gave up", extra={"url": url, "job_id": event.get("job_id")})
        return False

    def _report(self, ok: bool) -> None:
        if self.on_result is not None:
            self.on_result(ok)

    async def close(self, grace_s: float = 2.0) -> None:
        if self._runner is not None:
            self._runner.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace_s)
            for t in self._tasks:
                t.cancel()
        if self._session is not None:
            await self._session.close()


def _copy(ctx: Any) -> Any:  # noqa: ANN401 - a contextvars.Context
    """A copy of the current contextvars context in which ``ctx`` (an OpenTelemetry
    context) is current: the delivery task runs in the job's trace, not the sender's."""
    import contextvars

    copied = contextvars.copy_context()
    copied.run(otel_context.attach, ctx)
    return copied


def _host(url: str) -> str:
    """The target's host only (a callback URL's path or query may carry a token)."""
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""
