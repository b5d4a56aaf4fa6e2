"""dashboards/rules: promtool check rules + promtool test rules (unit tests with input
series in dashboards/tests/*.yml), every alert tested firing and not firing, and only
metric names that exist in the code, in Triton or in the recording rules."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from dashboards import names
from devstack.prometheus import promtool

ROOT = Path(__file__).resolve().parents[3] / "dashboards"
RULE_FILES = sorted((ROOT / "rules").glob("*.yml"))
TEST_FILES = sorted((ROOT / "tests").glob("*.yml"))


def _promtool() -> Path:
    tool = promtool()
    if tool is None:
        pytest.skip(
            "promtool is not installed (Debian package `prometheus`: "
            "apt-get install -y --no-install-recommends prometheus, or `make services`)"
        )
    return tool


def test_promtool_check_rules():
    out = subprocess.run(
        [str(_promtool()), "check", "rules", *map(str, RULE_FILES)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("SUCCESS") == len(RULE_FILES)


def test_promtool_test_rules():
    out = subprocess.run(
        [str(_promtool()), "test", "rules", *map(str, TEST_FILES)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT / "tests",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "FAILED" not in out.stdout


def test_every_alert_fires_in_one_test_and_stays_quiet_in_another():
    alerts = {r["alert"] for r in names.rules() if "alert" in r}
    design = {"MtbQueueDepthHigh", "MtbWordsPerMinuteLow", "MtbErrorRateHigh", "MtbHourlyCostHigh"}
    assert design <= alerts
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", ()):
                (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts - fires == set(), "alerts without a firing test"
    assert alerts - quiet == set(), "alerts without a test where they stay quiet"


def test_rules_use_only_existing_metrics():
    pytest.importorskip("promql_parser", reason="PyPI promql-parser (dev extra) is missing")
    known = names.known_metric_names()
    unknown = {
        r.get("record") or r["alert"]: names.expr_metric_names(r["expr"]) - known
        for r in names.rules()
    }
    assert {k: v for k, v in unknown.items() if v} == {}


def test_metric_name_check_catches_a_missing_metric():
    pytest.importorskip("promql_parser", reason="PyPI promql-parser (dev extra) is missing")
    used = names.expr_metric_names(
        "sum(rate(mtb_no_such_metric_total[5m])) / on() group_left deriv(mtb:queue_depth:total[5m])"
    )
    assert used == {"mtb_no_such_metric_total", "mtb:queue_depth:total"}
    assert used - names.known_metric_names() == {"mtb_no_such_metric_total"}
