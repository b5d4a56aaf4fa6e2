"""One embedded `mtctl serve` (SQLite, in-process queue) for the trust-boundary tests,
started WITHOUT MTB_JWT_SECRET (it must generate its own), with a small basic word quota
and callbacks allowed to 127.0.0.1 only (so `localhost` and other non-public targets are
still refused)."""

from __future__ import annotations

import os

import pytest

from devstack.processes import serve_env
from tests.functional.api_service import running_service

QUOTA_MINUTE_BASIC = 60  # words per minute for basic users here


@pytest.fixture(scope="session")
def secure_service(model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("security")
    base = {k: v for k, v in os.environ.items() if not k.startswith("MTB_")}
    env = serve_env(
        base,
        tmp,
        model_dir,
        MTB_RATE_LIMIT_BASIC="100000",
        MTB_QUOTA_WORDS_PER_MINUTE_BASIC=str(QUOTA_MINUTE_BASIC),
        MTB_CALLBACK_ALLOW_HOSTS="127.0.0.1",
        MTB_CALLBACK_BACKOFF_S="0.2",
        # 1 USD per engine second: a short job's cost stays far above the 6-decimal
        # rounding, so "cost 0" cannot pass for "served from the cache" by accident
        MTB_PRICE_CPU_PER_HOUR="3600",
    )
    users = [("enterprise", "enterprise"), ("pro", "pro"), ("basic", "basic"), ("basic2", "basic")]
    with running_service("sqlite", env, tmp / "serve.log", users, expect_exit_0=False) as svc:
        yield svc
