"""Everything a request handler needs, built once per app."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from control_plane.auth import Authenticator, AuthError, Forbidden, Principal, RateLimiter
from control_plane.cache import SegmentCache
from control_plane.callbacks import CallbackSender
from control_plane.db import Database
from control_plane.inference.base import InferenceClient
from control_plane.jobs.service import JobService
from control_plane.metrics import Metrics
from control_plane.queue.base import ChunkQueue
from control_plane.settings import Settings

from .errors import ApiError


@dataclass
class Services:
    settings: Settings
    db: Database
    queue: ChunkQueue
    client: InferenceClient
    cache: SegmentCache
    jobs: JobService
    auth: Authenticator
    limiter: RateLimiter
    metrics: Metrics
    callbacks: CallbackSender
    workers: list = field(default_factory=list)  # asyncio tasks running Worker.run
    runners: list = field(default_factory=list)  # the Worker objects (stop() drains them)
    background: list = field(default_factory=list)  # other tasks, cancelled at stop
    engine_error: str | None = None


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


async def authenticate(request: web.Request) -> Principal:
    """401/403 for bad credentials, 429 (with Retry-After) over the key's rate limit."""
    svc = services(request)
    header = request.headers.get("Authorization")
    try:
        who = svc.auth.cached(header) or await svc.db.run(svc.auth.authenticate, header)
    except AuthError as exc:
        raise ApiError(
            401, "unauthorized", str(exc), headers={"WWW-Authenticate": 'Bearer realm="mtb"'}
        ) from exc
    except Forbidden as exc:
        raise ApiError(403, "forbidden", str(exc)) from exc
    wait = svc.limiter.check(who.key_id, who.tier, who.rate_limit_per_minute)
    if wait > 0:
        svc.metrics.errors.labels("rate_limited").inc()
        retry = RateLimiter.retry_after_header(wait)
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit of {svc.limiter.limit_for(who.tier, who.rate_limit_per_minute)} "
            f"requests/minute exceeded; retry after {retry} s",
            headers={"Retry-After": retry},
        )
    return who
