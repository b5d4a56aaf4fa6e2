"""Signed webhook callbacks on job completion and failure.

Each POST carries the JSON event and two headers:

- ``X-MTB-Timestamp``: unix seconds when the attempt was signed
- ``X-MTB-Signature``: ``sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>``

Receivers recompute the HMAC with the shared secret (``MTB_CALLBACK_SECRET``) and reject
old timestamps to stop replays. Delivery runs in its own task with exponential backoff
(``callback_backoff_s`` * 2**attempt, up to ``callback_attempts`` tries); workers only
enqueue, so a slow receiver never blocks translation.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from typing import Any

import aiohttp

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
        secret: str,
        attempts: int = 5,
        backoff_s: float = 1.0,
        timeout_s: float = 10.0,
        on_result=None,  # noqa: ANN001 - callable(ok: bool) for metrics
    ):
        self.secret = secret
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.on_result = on_result
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._tasks: set[asyncio.Task] = set()
        self._runner: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        self._runner = asyncio.create_task(self._run(), name="callbacks")

    def send(self, url: str, event: dict[str, Any]) -> None:
        """Queue a delivery; returns at once."""
        self._queue.put_nowait((url, event))

    async def _run(self) -> None:
        while True:
            url, event = await self._queue.get()
            task = asyncio.create_task(self._deliver(url, event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, event: dict[str, Any]) -> bool:
        body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode("utf-8")
        for attempt in range(self.attempts):
            ts = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: ts,
                SIGNATURE_HEADER: sign(self.secret, ts, body),
                "User-Agent": "mt-backend-callbacks/1",
            }
            try:
                assert self._session is not None
                async with self._session.post(url, data=body, headers=headers) as resp:
                    if 200 <= resp.status < 300:
                        self._report(True)
                        return True
                    status: Any = resp.status
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                status = repr(exc)
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
