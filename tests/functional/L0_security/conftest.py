"""One embedded `mtctl serve` (SQLite, in-process queue) for the trust-boundary tests,
started WITHOUT MTB_JWT_SECRET (it must generate its own), with a small basic word quota
and callbacks allowed to 127.0.0.1 only (so `localhost` and other non-public targets are
still refused)."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from bench.server import free_port

from ..conftest import REPO
from ..L0_service.conftest import MTCTL, Service, wait_until_ready

QUOTA_MINUTE_BASIC = 60  # words per minute for basic users here


@pytest.fixture(scope="session")
def secure_service(model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("security")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTB_")}
    env.update(
        {
            "MTB_DATA_DIR": str(tmp),
            "MTB_MODEL_DIR": str(model_dir),
            "MTB_HOST": "127.0.0.1",
            "MTB_PORT": str(port),
            "MTB_RATE_LIMIT_BASIC": "100000",
            "MTB_QUOTA_WORDS_PER_MINUTE_BASIC": str(QUOTA_MINUTE_BASIC),
            "MTB_CALLBACK_ALLOW_HOSTS": "127.0.0.1",
            "MTB_CALLBACK_BACKOFF_S": "0.2",
            # 1 USD per engine second: a short job's cost stays far above the 6-decimal
            # rounding, so "cost 0" cannot pass for "served from the cache" by accident
            "MTB_PRICE_PER_HOUR": "3600",
            "PYTHONUNBUFFERED": "1",
        }
    )
    log_path = tmp / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*MTCTL, "serve"], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )
    svc = Service("sqlite", f"http://127.0.0.1:{port}", env, proc, log_path)
    try:
        wait_until_ready(svc)
        for who, tier in [
            ("enterprise", "enterprise"),
            ("pro", "pro"),
            ("basic", "basic"),
            ("basic2", "basic"),
        ]:
            svc.keys[who] = svc.new_user(tier)
        yield svc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
