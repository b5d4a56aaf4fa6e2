"""API keys (hashed), JWTs, tiers and the per-key rate limit."""

from __future__ import annotations

import time

import jwt
import pytest
from sqlalchemy import select

from control_plane.auth import (
    Authenticator,
    AuthError,
    Forbidden,
    RateLimiter,
    create_user,
    hash_key,
    issue_jwt,
)
from control_plane.db import Database, User

SECRET = "unit-test-secret-that-is-32-bytes-long"


@pytest.fixture
def db(tmp_path):
    d = Database(f"sqlite:///{tmp_path / 'a.db'}")
    d.migrate()
    return d


def test_keys_are_stored_hashed(db):
    user, key = create_user(db.engine, "a@x.io", "pro")
    assert key.startswith("mtb_") and len(key) > 40
    with db.session() as s:
        row = s.execute(select(User)).scalar_one()
    assert row.api_key_hash == hash_key(key) and key not in (row.api_key_hash, row.api_key_prefix)
    who = Authenticator(db.engine, SECRET).authenticate(f"Bearer {key}")
    assert (who.user_id, who.tier) == (user.id, "pro")
    with pytest.raises(ValueError):
        create_user(db.engine, "b@x.io", "gold")


def test_bad_credentials_and_jwt(db):
    user, _ = create_user(db.engine, "a@x.io", "basic")
    auth = Authenticator(db.engine, SECRET, cache_s=0)
    for header in [None, "", "Bearer", "Basic abc", "Bearer mtb_wrong", "Bearer a.b.c"]:
        with pytest.raises(AuthError):
            auth.authenticate(header)
    assert auth.authenticate(f"Bearer {issue_jwt(user.id, SECRET)}").user_id == user.id
    with pytest.raises(AuthError, match="expired"):
        auth.authenticate(f"Bearer {issue_jwt(user.id, SECRET, ttl_s=-10)}")
    with pytest.raises(AuthError):
        auth.authenticate(f"Bearer {issue_jwt(user.id, 'another-secret-of-32-bytes-length!')}")
    no_exp = jwt.encode({"sub": user.id}, SECRET, "HS256")
    with pytest.raises(AuthError):
        auth.authenticate(f"Bearer {no_exp}")
    with db.session() as s:
        u = s.get(User, user.id)
        u.active = False
        s.add(u)
        s.commit()
    with pytest.raises(Forbidden):
        auth.authenticate(f"Bearer {issue_jwt(user.id, SECRET)}")


def test_tiers_cap_priority(db):
    auth = Authenticator(db.engine, SECRET)
    allowed = {}
    for tier in ("basic", "pro", "enterprise"):
        _, key = create_user(db.engine, f"{tier}@x.io", tier)
        who = auth.authenticate(f"Bearer {key}")
        allowed[tier] = [p for p in ("critical", "high", "normal") if who.allows(p)]
    assert allowed == {
        "basic": ["normal"],
        "pro": ["high", "normal"],
        "enterprise": ["critical", "high", "normal"],
    }


def test_rate_limiter_token_bucket():
    now = [100.0]
    rl = RateLimiter({"basic": 60, "pro": 600}, clock=lambda: now[0])
    assert all(rl.check("k", "basic") == 0 for _ in range(60))
    wait = rl.check("k", "basic")
    assert 0.9 < wait <= 1.0 and RateLimiter.retry_after_header(wait) == "1"
    assert rl.check("other", "basic") == 0  # per key
    now[0] += 1.0
    assert rl.check("k", "basic") == 0  # one token refilled per second
    assert rl.check("k", "basic") > 0
    assert time.monotonic()  # (real clock unused)


def test_successful_lookups_are_cached(db):
    _, key = create_user(db.engine, "c@x.io", "pro")
    auth = Authenticator(db.engine, SECRET, cache_s=60)
    header = f"Bearer {key}"
    assert auth.cached(header) is None
    who = auth.authenticate(header)
    assert auth.cached(header) == who
    assert auth.cached("Bearer mtb_other") is None
