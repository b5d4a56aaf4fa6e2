"""devstack.prometheus: generated configuration, file_sd targets, and a real Prometheus
(Debian's package) on a free port loading dashboards/rules and discovering a target."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest

import devstack
from devstack import prometheus as prom


def _cfg(tmp_path, port: int = 29090):
    cfg = devstack.Config.from_env({"MTB_SERVICES_DIR": str(tmp_path)})
    cfg.ports["prometheus_port"] = port
    return cfg


def test_config_has_a_file_sd_job_per_process_kind_and_the_rule_files(tmp_path):
    targets = tmp_path / "targets"
    text = prom.prometheus_config(targets, 29999)
    config = json.loads(text.split("\n", 1)[1])  # after the comment line; JSON is YAML
    jobs = {c["job_name"]: c for c in config["scrape_configs"]}
    assert set(jobs) == {"mtb-api", "mtb-worker", "triton", "prometheus"}
    assert jobs["mtb-api"]["file_sd_configs"][0]["files"] == [str(targets / "mtb-api.json")]
    assert jobs["prometheus"]["static_configs"][0]["targets"] == ["127.0.0.1:29999"]
    rule_files = config["rule_files"]
    assert rule_files and all(f.endswith(".yml") and "/dashboards/rules/" in f for f in rule_files)


def test_register_and_unregister_targets(tmp_path):
    cfg = _cfg(tmp_path)
    path = prom.register_target("mtb-api", "127.0.0.1:8080", cfg)
    prom.register_target("mtb-api", "127.0.0.1:8080", cfg)  # idempotent
    prom.register_target("mtb-api", "127.0.0.1:8081", cfg, labels={"backend": "sqlite"})
    groups = json.loads(path.read_text())
    assert [g["targets"] for g in groups] == [["127.0.0.1:8080"], ["127.0.0.1:8081"]]
    assert groups[1]["labels"] == {"backend": "sqlite"}
    assert prom.unregister_target("mtb-api", "127.0.0.1:8080", cfg)
    assert not prom.unregister_target("mtb-api", "127.0.0.1:8080", cfg)
    assert [g["targets"] for g in prom.read_targets("mtb-api", cfg)] == [["127.0.0.1:8081"]]
    with pytest.raises(ValueError, match="unknown Prometheus job"):
        prom.register_target("postgres", "127.0.0.1:5432", cfg)


def test_parallel_registrations_are_all_kept(tmp_path):
    cfg = _cfg(tmp_path)
    threads = [
        threading.Thread(
            target=prom.register_target, args=("mtb-worker", f"127.0.0.1:{9100 + i}", cfg)
        )
        for i in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(prom.read_targets("mtb-worker", cfg)) == 20


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def test_real_prometheus_loads_the_rules_and_discovers_targets(tmp_path):
    if prom.prometheus_binary() is None:
        pytest.skip(
            "Debian's prometheus package is not installed (/usr/bin/prometheus);"
            " `make services` or apt-get install -y --no-install-recommends prometheus"
        )
    cfg = _cfg(tmp_path, devstack.free_port())
    cfg.timeout = 60
    info = prom.start_prometheus(cfg)
    try:
        assert info.env == {"MTB_PROMETHEUS_URL": info.url}
        groups = _get(f"{info.url}/api/v1/rules")["data"]["groups"]
        loaded = {r["name"] for g in groups for r in g["rules"]}
        assert {"MtbQueueDepthHigh", "MtbHourlyCostHigh", "mtb:queue_depth:total"} <= loaded
        # a target registered while it runs is discovered (file_sd watches the file)
        prom.register_target("mtb-api", "127.0.0.1:9", cfg)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            active = _get(f"{info.url}/api/v1/targets")["data"]["activeTargets"]
            if any(t["labels"].get("job") == "mtb-api" for t in active):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"mtb-api target not discovered: {active}")
    finally:
        info.stop()
    assert not info.alive()
