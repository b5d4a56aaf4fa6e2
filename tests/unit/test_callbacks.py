"""Webhook signatures and delivery with retries (a real local HTTP receiver)."""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from control_plane.callbacks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    CallbackSender,
    sign,
    verify,
)

LOOPBACK = frozenset({"127.0.0.1"})  # the receivers here listen on loopback


def test_signature_round_trip():
    body = b'{"job_id":"x"}'
    ts = str(int(time.time()))
    sig = sign("s3cret", ts, body)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify("s3cret", ts, body, sig)
    assert not verify("wrong", ts, body, sig)
    assert not verify("s3cret", ts, body + b" ", sig)
    assert not verify("s3cret", str(int(time.time()) - 3600), body, sign("s3cret", ts, body))
    assert not verify("s3cret", "nan-ish", body, sig)


async def test_delivery_retries_until_success(aiohttp_server):
    seen = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        ok = verify("k", request.headers[TIMESTAMP_HEADER], body, request.headers[SIGNATURE_HEADER])
        seen.append((ok, json.loads(body)))
        return web.Response(status=503 if len(seen) < 3 else 200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app)
    outcomes = []
    sender = CallbackSender(
        "k", attempts=4, backoff_s=0.01, on_result=outcomes.append, allow_hosts=LOOPBACK
    )
    await sender.start()
    t0 = time.monotonic()
    sender.send(str(server.make_url("/hook")), {"event": "job.completed", "job_id": "j1"})
    assert time.monotonic() - t0 < 0.01  # never blocks the caller
    for _ in range(200):
        if outcomes:
            break
        await asyncio.sleep(0.01)
    await sender.close()
    assert outcomes == [True]
    assert len(seen) == 3 and all(ok for ok, _ in seen)
    assert seen[0][1] == {"event": "job.completed", "job_id": "j1"}


async def test_delivery_gives_up():
    outcomes = []
    sender = CallbackSender(
        "k", attempts=2, backoff_s=0.01, timeout_s=1, on_result=outcomes.append,
        allow_hosts=LOOPBACK,
    )  # fmt: skip
    await sender.start()
    sender.send("http://127.0.0.1:9/nothing-listens", {"job_id": "j"})
    for _ in range(300):
        if outcomes:
            break
        await asyncio.sleep(0.01)
    await sender.close()
    assert outcomes == [False]
