"""What a request handler needs: the process's ``Runtime`` and the caller's identity."""

from __future__ import annotations

from aiohttp import web

from control_plane.auth import Principal, RateLimiter
from control_plane.runtime import Runtime

from .errors import ApiError

RUNTIME = web.AppKey("runtime", Runtime)


def runtime_of(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


async def authenticate(request: web.Request) -> Principal:
    """401/403 for bad credentials, 429 (with Retry-After) over the key's rate limit."""
    svc = runtime_of(request)
    header = request.headers.get("Authorization")
    # AuthError / Forbidden are DomainErrors: the error middleware answers 401 / 403
    who = svc.auth.cached(header) or await svc.db.run(svc.auth.authenticate, header)
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
