"""Every Grafana panel's PromQL, against the real Prometheus after a short workload: the
query parses (Prometheus answers "success", not a bad_data error) and returns at least one
series with a number (a dashboard that shows nothing is a bug).

Workload: ``mtctl serve`` (SQLite, in-process queue) on the session's Triton
(``MTB_INFERENCE=triton``), both registered as scrape targets (``register_target``); two
waves of jobs at every priority (the second one repeats the texts: cache hits), a
basic-tier key over its rate limit (errors by kind), each wave scraped twice.
Panels that need ``mtctl worker`` to expose /metrics are checked in their own test.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import requests

import devstack
from devstack import prometheus as prom
from devstack.processes import serve_env
from tests.functional.api_service import JWT_SECRET, running_service

ROOT = str(Path(__file__).resolve().parents[3])
if ROOT not in sys.path:  # dashboards/ is a folder at the root, not an installed package
    sys.path.insert(0, ROOT)

from dashboards import build  # noqa: E402

pytestmark = pytest.mark.services

TEXTS = {
    "critical": "The meeting starts at noon. Please save your changes.",
    "high": "The file could not be opened because it is in use.",
    "normal": "Click the button to download the report.\n\nThank you for waiting.",
}
USERS = [("enterprise", "enterprise"), ("spam", "basic")]


def _skip_without_prometheus() -> None:
    if prom.prometheus_binary() is None:
        pytest.skip(
            "Debian's prometheus package is not installed (/usr/bin/prometheus) and could not"
            " be: run `make services` or apt-get install -y --no-install-recommends prometheus"
        )


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    """(base URL, devstack Config whose targets folder it watches): the shared server when
    devstack's registry has it (lease), else a private one on a free port."""
    _skip_without_prometheus()
    if "prometheus" in devstack.SPECS:
        cfg = devstack.Config.from_env()
        info = devstack.ensure_service("prometheus", cfg, lease=True)
        yield info.url, cfg
        devstack.release_service("prometheus", cfg)
        return
    cfg = devstack.Config.from_env(
        {"MTB_SERVICES_DIR": str(tmp_path_factory.mktemp("prometheus-services"))}
    )
    cfg.ports["prometheus_port"] = devstack.free_port()
    try:
        info = prom.start_prometheus(cfg)
    except devstack.ServiceError as exc:
        pytest.skip(f"prometheus could not start here: {exc}")
    yield info.url, cfg
    info.stop()


def query(base: str, expr: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # 400 bad_data: the expression does not parse
        raise AssertionError(f"{expr!r}: {exc.read().decode()}") from None
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_scrapes(base: str, instance: str, n: int = 2, timeout: float = 60) -> None:
    """Wait until Prometheus has scraped ``instance`` ``n`` more times (and the rules ran)."""

    def last() -> float:
        res = query(base, f'timestamp(up{{instance="{instance}"}})')
        return float(res[0]["value"][1]) if res else 0.0

    seen, deadline = [last()], time.monotonic() + timeout
    while len(seen) <= n:
        assert time.monotonic() < deadline, f"{instance} not scraped {n} times in {timeout} s"
        time.sleep(0.5)
        ts = last()
        if ts > seen[-1]:
            seen.append(ts)
    time.sleep(prom.EVALUATION_INTERVAL_S + 0.5)  # recording rules see the new samples


def _host_port(url: str) -> str:
    return urllib.parse.urlparse(url).netloc


def _submit_wave(svc, results: list[str], wave: int) -> None:
    for priority, text in TEXTS.items():
        body = {
            "source_language": "en",
            "target_language": "pt",
            # the same sentences each wave (cache hits) plus a new one (inference)
            "content": f"{text} This is update number {wave}.",
            "priority": priority,
        }
        r = requests.post(
            f"{svc.url}/api/v1/translate",
            json=body,
            headers=svc.headers("enterprise"),
            timeout=30,
        )
        assert r.status_code == 202, r.text
        results.append(r.json()["job_id"])
    # another basic key over the tier's rate limit: 429s, counted as errors{kind="rate_limited"}
    codes = [
        requests.get(f"{svc.url}/api/v1/jobs", headers=svc.headers("spam"), timeout=10).status_code
        for _ in range(4)
    ]
    assert 429 in codes, codes


def _wait_finished(svc, n: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        text = requests.get(f"{svc.url}/metrics", timeout=10).text
        done = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("mtb_jobs_finished_total{")
        )
        if done >= n:
            return
        assert time.monotonic() < deadline, f"{done}/{n} jobs finished:\n{svc.log_tail()}"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def workload(prometheus, translator_triton, model_dir, tmp_path_factory):
    base, cfg = prometheus
    tmp = tmp_path_factory.mktemp("dashboards")
    env = serve_env(
        os.environ,
        tmp,
        model_dir,
        MTB_INFERENCE="triton",
        MTB_TRITON_URL=translator_triton.url,
        MTB_DATABASE_URL=f"sqlite:///{tmp / 'service.db'}",
        MTB_QUEUE="memory",
        MTB_JWT_SECRET=JWT_SECRET,
        MTB_RATE_LIMIT_BASIC="3",
    )
    triton_target = _host_port(translator_triton.urls["metrics"])
    with running_service("sqlite", env, tmp / "serve.log", USERS, timeout=180) as svc:
        api_target = _host_port(svc.url)
        prom.register_target("mtb-api", api_target, cfg, labels={"test": "L0_dashboards"})
        prom.register_target("triton", triton_target, cfg, labels={"test": "L0_dashboards"})
        try:
            wait_scrapes(base, api_target, 1)
            jobs: list[str] = []
            for wave in (1, 2):
                _submit_wave(svc, jobs, wave)
                _wait_finished(svc, len(jobs))
                wait_scrapes(base, api_target, 2)
            yield base, api_target
        finally:
            prom.unregister_target("mtb-api", api_target, cfg)
            prom.unregister_target("triton", triton_target, cfg)


def _numbers(result: list[dict]) -> list[float]:
    return [float(r["value"][1]) for r in result]


def test_every_panel_returns_series_after_a_workload(workload):
    base, api_target = workload
    empty, nan_only, counted = [], [], 0
    for dash, panel in build.panels():
        if "worker" in panel.needs:
            continue
        for q in panel.queries:
            result = query(base, q.expr)
            counted += 1
            where = f"{dash.uid} / {panel.title}: {q.expr}"
            if not result:
                empty.append(where)
            elif all(math.isnan(v) for v in _numbers(result)):
                nan_only.append(where)
    assert not empty, "panels without any series:\n" + "\n".join(empty)
    assert not nan_only, "panels with only NaN:\n" + "\n".join(nan_only)
    assert counted >= 40


def test_alert_rules_are_loaded_and_evaluate(workload):
    base, _ = workload
    with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=10) as resp:
        groups = json.loads(resp.read())["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert {r["name"] for r in rules if r["type"] == "alerting"} >= {
        "MtbQueueDepthHigh",
        "MtbWordsPerMinuteLow",
        "MtbErrorRateHigh",
        "MtbHourlyCostHigh",
    }
    assert all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]


def test_worker_panels():
    needing = [f"{d.uid} / {p.title}" for d, p in build.panels() if "worker" in p.needs]
    if needing:
        pytest.skip(
            "`mtctl worker` exposes no /metrics yet (control_plane/commands/worker.py):"
            f" not checked live: {', '.join(needing)}"
        )
