"""API keys, JWTs, tiers and per-key rate limits.

- API keys look like ``mtb_<43 url-safe chars>`` (256 random bits); the database keeps only
  their sha256 (a slow hash adds nothing for keys this random) and an 8-char prefix.
- JWTs (HS256, ``MTB_JWT_SECRET``): ``sub`` is the user id; ``exp`` is honoured.
- Tiers cap the priority a user may ask for: basic -> normal, pro -> high,
  enterprise -> critical.
- Rate limit: a token bucket per key (or per JWT subject), ``MTB_RATE_LIMIT_<TIER>``
  requests per minute with a burst of the same size.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
import uuid
from dataclasses import dataclass

import jwt
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from control_plane.db.models import User, utcnow
from control_plane.domain import TIERS, DomainError, priority_allowed
from control_plane.security import new_webhook_secret

KEY_PREFIX = "mtb_"


class AuthError(DomainError):
    """No or bad credentials."""

    code = "unauthorized"


class Forbidden(DomainError):
    """Authenticated, but not allowed."""

    code = "forbidden"


@dataclass(frozen=True)
class Principal:
    user_id: str
    email: str
    tier: str
    key_id: str  # what the rate limit counts against
    rate_limit_per_minute: int | None = None  # the user's own limit; None: the tier's

    def allows(self, priority: str) -> bool:
        return priority_allowed(self.tier, priority)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_user(
    engine: Engine, email: str, tier: str = "basic", rate_limit_per_minute: int | None = None
) -> tuple[User, str]:
    """Insert a user; returns it with the plain API key (shown once, never stored). The
    user's webhook signing secret (``user.webhook_secret``) is generated here too: it must
    be kept in clear to sign, and is shown once by ``mtctl users create``."""
    if tier not in TIERS:
        raise ValueError(f"tier must be one of {', '.join(TIERS)}")
    if rate_limit_per_minute is not None and rate_limit_per_minute < 0:
        raise ValueError("rate_limit_per_minute must be >= 0 (0: unlimited)")
    key = new_api_key()
    user = User(
        id=str(uuid.uuid4()),
        email=email,
        tier=tier,
        api_key_hash=hash_key(key),
        api_key_prefix=key[:8],
        rate_limit_per_minute=rate_limit_per_minute,
        webhook_secret=new_webhook_secret(),
        created_at=utcnow(),
    )
    with Session(engine, expire_on_commit=False) as session:
        session.add(user)
        session.commit()
    return user, key


def issue_jwt(user_id: str, secret: str, ttl_s: int = 3600) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + ttl_s}, secret, "HS256")


class Authenticator:
    """Resolves credentials to a Principal. Successful lookups are remembered for
    ``cache_s`` seconds (so a disabled key keeps working at most that long), which keeps the
    database off the hot path of polling clients."""

    def __init__(self, engine: Engine, jwt_secret: str, cache_s: float = 10.0):
        self.engine = engine
        self.jwt_secret = jwt_secret
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def cached(self, header: str | None) -> Principal | None:
        """The remembered Principal for this header, without blocking; None if unknown."""
        if not header or self.cache_s <= 0:
            return None
        with self._lock:
            hit = self._cache.get(header)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    def authenticate(self, header: str | None) -> Principal:
        """Blocking (DB lookup): run in the DB executor."""
        hit = self.cached(header)
        if hit is not None:
            return hit
        who = self._authenticate(header)
        if self.cache_s > 0:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[header] = (time.monotonic() + self.cache_s, who)  # type: ignore[index]
        return who

    def _authenticate(self, header: str | None) -> Principal:
        if not header:
            raise AuthError("missing Authorization header (expected 'Bearer <api key or JWT>')")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("Authorization must be 'Bearer <api key or JWT>'")
        with Session(self.engine) as session:
            if token.startswith(KEY_PREFIX):
                user = session.execute(
                    select(User).where(User.api_key_hash == hash_key(token))
                ).scalar_one_or_none()
                if user is None:
                    raise AuthError("invalid API key")
                key_id = user.api_key_hash[:16]
            else:
                try:
                    claims = jwt.decode(
                        token,
                        self.jwt_secret,
                        algorithms=["HS256"],
                        options={"require": ["sub", "exp"]},
                    )
                except jwt.ExpiredSignatureError as exc:
                    raise AuthError("token expired") from exc
                except jwt.PyJWTError as exc:
                    raise AuthError("invalid token") from exc
                user = session.get(User, str(claims["sub"]))
                if user is None:
                    raise AuthError("token subject is not a known user")
                key_id = "jwt:" + user.id
            if not user.active:
                raise Forbidden("this account is disabled")
            return Principal(user.id, user.email, user.tier, key_id, user.rate_limit_per_minute)


class RateLimiter:
    """Token buckets: ``limits[tier]`` requests per minute, burst of the same size."""

    def __init__(self, limits: dict[str, int], clock=time.monotonic):  # noqa: ANN001
        self.limits = limits
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last)
        self._lock = threading.Lock()

    def limit_for(self, tier: str, per_user: int | None = None) -> int:
        """Requests per minute: the user's own limit where set, else the tier's."""
        return per_user if per_user is not None else self.limits.get(tier, 60)

    def check(self, key: str, tier: str, per_user: int | None = None) -> float:
        """0.0 when allowed (and counted); else seconds until the next request may pass."""
        per_min = self.limit_for(tier, per_user)
        if per_min <= 0:
            return 0.0
        rate = per_min / 60.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(per_min), now))
            tokens = min(float(per_min), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        return str(max(1, math.ceil(seconds)))
