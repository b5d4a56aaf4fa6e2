"""Every Grafana panel's PromQL, against the real Prometheus after a short workload: the
query parses (Prometheus answers "success", not a bad_data error) and returns at least one
series with a number (a dashboard that shows nothing is a bug).

Workload: ``mtctl serve`` (SQLite, in-process queue) on the session's Triton
(``MTB_INFERENCE=triton``), both registered as scrape targets (``register_target``); two
waves of jobs at every priority (the second one repeats the texts: cache hits), a
basic-tier key over its rate limit (errors by kind), each wave scraped twice.

Panels that need ``mtctl worker`` (``needs`` "worker") are checked against a Kafka stack
(``make_stack``: ``mtctl serve`` with MTB_QUEUE=kafka, one ``mtctl worker`` with
MTB_METRICS_PORT; devstack.processes makes both targets): jobs of every priority and one
ingest message with an API key that does not exist (a dead letter, reason
"unauthorized"). The Kafka dashboard's lag panels are checked on the same stack: the API's
consumer-group lag per chunk topic is scraped from it.
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

from dashboards import build, names  # noqa: E402

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
        prom.reload(info.url)  # one already running: the rules of this checkout
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


@pytest.fixture(scope="module")
def kafka_workload(prometheus, make_stack):
    """(Prometheus URL, API target, worker target) after jobs of every priority and one
    refused ingest message went through a Kafka stack, scraped twice."""
    base, cfg = prometheus
    t0 = time.monotonic()
    stack = make_stack("dashboards", workers=0)
    port = devstack.free_port()
    worker = stack.start_worker("worker-0", MTB_METRICS_PORT=str(port))
    api_target, worker_target = _host_port(stack.url), f"127.0.0.1:{port}"
    # devstack.processes registered both in the default services folder; the fixture's
    # Prometheus may watch another one (a private server)
    for job, target in (("mtb-api", api_target), ("mtb-worker", worker_target)):
        prom.register_target(job, target, cfg, labels={"test": "L0_dashboards"})
    try:
        wait_scrapes(base, worker_target, 1)
        jobs = [stack.submit(text, priority=p)["job_id"] for p, text in TEXTS.items()]
        bad = {"api_key": "mtb_not_a_real_key", "text": "Hello.", "source_lang": "en"}
        stack.produce("ingest", [json.dumps({**bad, "target_lang": "pt"}).encode()])
        for job_id in jobs:
            assert stack.wait(job_id)["status"] == "completed"
        deadline = time.monotonic() + 60
        while 'mtb_dead_letters_total{reason="unauthorized"}' not in (
            requests.get(f"http://{worker_target}/metrics", timeout=10).text
        ):
            assert time.monotonic() < deadline, f"no dead letter:\n{worker.log_tail()}"
            time.sleep(0.3)
        wait_scrapes(base, worker_target, 2)
        wait_scrapes(base, api_target, 1)
        print(f"\nKafka workload ready in {time.monotonic() - t0:.1f} s")
        yield base, api_target, worker_target
    finally:
        prom.unregister_target("mtb-api", api_target, cfg)
        prom.unregister_target("mtb-worker", worker_target, cfg)


def _raw_metrics(expr: str) -> set[str]:
    """Scraped metric names behind ``expr``: recording rules expanded to their inputs."""
    exprs: dict[str, list[str]] = {}
    for rule in names.rules():
        if "record" in rule:
            exprs.setdefault(rule["record"], []).append(rule["expr"])
    out: set[str] = set()
    for name in names.expr_metric_names(expr):
        if name in exprs:
            for inner in exprs[name]:
                out |= _raw_metrics(inner)
        else:
            out.add(name)
    return out


def _check_panels(base: str, panels: list, target: str) -> list[str]:
    """Problems: a query without series or with only NaN, or a metric behind it that
    ``target`` does not expose (so the series came from this stack, not another one)."""
    problems = []
    for dash, panel in panels:
        for q in panel.queries:
            where = f"{dash.uid} / {panel.title}: {q.expr}"
            result = query(base, q.expr)
            if not result:
                problems.append(f"no series: {where}")
            elif all(math.isnan(v) for v in _numbers(result)):
                problems.append(f"only NaN: {where}")
            for name in sorted(_raw_metrics(q.expr) - names.PROMETHEUS_METRICS):
                if not query(base, f'{name}{{instance="{target}"}}'):
                    problems.append(f"{target} has no {name}: {where}")
    return problems


def test_worker_panels(kafka_workload):
    base, _, worker_target = kafka_workload
    needing = [(d, p) for d, p in build.panels() if "worker" in p.needs]
    assert len(needing) >= 2
    problems = _check_panels(base, needing, worker_target)
    assert not problems, "\n".join(problems)
    (dead,) = query(base, 'reason:mtb_dead_letters:increase10m{reason="unauthorized"}')
    assert float(dead["value"][1]) >= 1


def test_dead_letter_alert_fires(kafka_workload):
    base = kafka_workload[0]
    expr = 'ALERTS{alertname="MtbDeadLetters",reason="unauthorized",alertstate="firing"}'
    deadline = time.monotonic() + 30
    while not query(base, expr):
        assert time.monotonic() < deadline, f"{expr} not in 30 s"
        time.sleep(0.5)


def test_kafka_lag_panels(kafka_workload):
    """The lag panels (the API's view of the consumer group, per chunk topic) on Kafka."""
    base, api_target, _ = kafka_workload
    lag = [(d, p) for d, p in build.panels() if d.uid == "mtb-kafka" and "worker" not in p.needs]
    assert len(lag) >= 3
    problems = _check_panels(base, lag, api_target)
    assert not problems, "\n".join(problems)
    depth = query(base, f'mtb_queue_depth{{job="mtb-api",instance="{api_target}"}}')
    assert {r["metric"]["priority"] for r in depth} == set(TEXTS)
