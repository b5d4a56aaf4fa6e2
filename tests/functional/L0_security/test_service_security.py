"""Trust boundaries against the real `mtctl serve` (issue 10, item 5): the generated JWT
secret, start-up refusals, per-user webhook signatures, callback URL checks at submit and
the per-user word quota."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time

import pytest
import requests

from control_plane.callbacks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from devstack.processes import MTCTL
from tests.functional.api_service import wait_for
from tests.functional.callbacks import callback_receiver

from ..conftest import REPO
from .conftest import QUOTA_MINUTE_BASIC


def post(svc, body: dict, who: str = "enterprise") -> requests.Response:
    return requests.post(
        f"{svc.url}/api/v1/translate", json=body, headers=svc.headers(who), timeout=60
    )


def words(n: int, seed: str) -> str:
    return " ".join(f"{seed}{i}" for i in range(n)) + "."


# -- no known default secret ----------------------------------------------------------


def test_generated_jwt_secret_is_private_and_shared_with_mtctl(secure_service):
    svc = secure_service
    path = svc.env["MTB_DATA_DIR"] + "/jwt-secret"
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600, oct(mode)
    secret = open(path).read().strip()
    assert len(secret) >= 32 and secret != "change-me-in-production"
    email = "jwt-user@example.com"
    svc.mtctl("users", "create", "--email", email, "--tier", "pro")
    token = svc.mtctl("users", "token", "--email", email).strip()
    r = requests.get(
        f"{svc.url}/api/v1/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert r.status_code == 200, r.text
    import jwt

    forged = jwt.encode(
        {"sub": "x", "exp": int(time.time()) + 60}, "change-me-in-production", "HS256"
    )
    r = requests.get(
        f"{svc.url}/api/v1/jobs", headers={"Authorization": f"Bearer {forged}"}, timeout=10
    )
    assert r.status_code == 401  # the old well-known default signs nothing


@pytest.mark.parametrize(
    "env",
    [
        {"MTB_QUEUE": "kafka"},
        {"MTB_DATABASE_URL": "postgresql+psycopg://mtb@127.0.0.1:1/nothing"},
        {"MTB_QUEUE": "kafka", "MTB_JWT_SECRET": "too-short"},
    ],
    ids=["kafka", "postgres", "short"],
)
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_shared_stacks_refuse_to_start_without_a_secret(tmp_path, env, command):
    base = {k: v for k, v in os.environ.items() if not k.startswith("MTB_")}
    full = {**base, "MTB_DATA_DIR": str(tmp_path), **env}
    out = subprocess.run(
        [*MTCTL, command], env=full, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert "MTB_JWT_SECRET" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "jwt-secret").exists()


# -- per-user webhook secrets and callback targets -------------------------------------


def test_callback_signed_with_the_users_own_secret(secure_service):
    svc = secure_service
    with callback_receiver() as hook:
        sub = post(svc, {"content": "Sign this callback, please.", "source_language": "en",
                         "target_language": "pt", "callback_url": hook.url})  # fmt: skip
        assert sub.status_code == 202, sub.text
        wait_for(svc, sub.json()["job_id"])
        headers, body = hook.wait()[0]
    own = svc.webhook_secrets[svc.keys["enterprise"]]
    other = svc.webhook_secrets[svc.keys["basic"]]
    jwt_secret = open(svc.env["MTB_DATA_DIR"] + "/jwt-secret").read().strip()
    ts, sig = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    assert verify(own, ts, body, sig)
    assert not verify(other, ts, body, sig) and not verify(jwt_secret, ts, body, sig)
    assert json.loads(body)["job_id"] == sub.json()["job_id"]


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://localhost:9/hook", "loopback"),  # a name: judged by what it resolves to
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.5/hook", "private"),
        ("http://[::1]:9/hook", "loopback"),
        ("http://[::ffff:192.168.0.1]/hook", "private"),
        ("http://0.0.0.0:9/hook", "unspecified"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://no-such-host.invalid/hook", "does not resolve"),
    ],
)
def test_unsafe_callback_urls_are_refused_at_submit(secure_service, url, reason):
    r = post(secure_service, {"content": "Hi.", "source_language": "en",
                              "target_language": "pt", "callback_url": url})  # fmt: skip
    assert r.status_code == 422, r.text
    body = r.json()
    text = json.dumps(body)
    assert reason in text and "callback_url" in text


# -- fair use ---------------------------------------------------------------------------


def test_word_quota_429_with_retry_after(secure_service):
    svc = secure_service
    first = post(svc, {"content": words(QUOTA_MINUTE_BASIC - 10, "a"), "source_language": "en",
                       "target_language": "pt"}, who="basic")  # fmt: skip
    assert first.status_code == 202, first.text
    over = post(svc, {"content": words(20, "b"), "source_language": "en",
                      "target_language": "pt"}, who="basic")  # fmt: skip
    assert over.status_code == 429, over.text
    retry = int(over.headers["Retry-After"])
    assert 1 <= retry <= 61
    message = over.json()
    assert "quota" in json.dumps(message) and f"{QUOTA_MINUTE_BASIC} words per minute" in (
        json.dumps(message)
    )
    # per user: another basic user is not affected
    ok = post(svc, {"content": words(20, "c"), "source_language": "en",
                    "target_language": "pt"}, who="basic2")  # fmt: skip
    assert ok.status_code == 202, ok.text


# -- the segment cache does not reveal other tenants' text -----------------------------


def run_job(svc, who: str, content: str) -> tuple[dict, list[str], dict, dict]:
    sub = post(svc, {"content": content, "source_language": "en", "target_language": "pt"},
               who=who)  # fmt: skip
    assert sub.status_code == 202, sub.text
    body = sub.json()
    seen = [body["status"]]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        view = requests.get(
            f"{svc.url}/api/v1/jobs/{body['job_id']}", headers=svc.headers(who), timeout=10
        ).json()
        if view["status"] != seen[-1]:
            seen.append(view["status"])
        if view["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.01)
    res = requests.get(
        f"{svc.url}/api/v1/jobs/{body['job_id']}/result", headers=svc.headers(who), timeout=10
    ).json()
    return body, seen, view, res


def shape(d: dict) -> dict:
    return {k: type(v).__name__ for k, v in d.items()}


def test_a_job_served_from_another_tenants_cache_looks_translated(secure_service):
    svc = secure_service
    secret = "The board approves the acquisition of Northwind on the first of June."
    run_job(svc, "enterprise", secret)  # another tenant's text is now in the cache
    c_sub, c_seen, c_view, c_res = run_job(svc, "pro", secret)  # the probe
    f_sub, _, f_view, f_res = run_job(svc, "pro", "Rain is expected over the hills tonight.")
    assert c_sub["status"] == f_sub["status"] == "queued"
    assert shape(c_sub) == shape(f_sub)
    assert c_seen[0] == "queued" and c_seen[-1] == "completed", c_seen
    assert shape(c_view) == shape(f_view) and "cached_segments" not in c_view
    assert shape(c_res) == shape(f_res)
    for res in (c_res, f_res):
        assert res["processing_time_ms"] > 0 and res["cost_usd"] > 0, res
        assert "cache" not in json.dumps(res).lower()
