"""The PromQL of the generated KEDA triggers, evaluated by Prometheus' own engine (promtool
test rules) on synthetic Triton and API series: each query returns the figure its
threshold is written in (ms per request, a 0-1 utilisation, a 0/1 hold, requests/s), only
from its own pool's pods, and 0 rather than nothing when a pool is idle."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from control_plane.capacity.policy import load_policy
from devstack.prometheus import promtool
from k8s import generate


def _promtool() -> Path:
    tool = promtool()
    if tool is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`, or `make services`)")
    return tool


def _series(metric: str, pool: str, pod: int, values: str) -> dict[str, str]:
    labels = f'job="triton",pool="{pool}",instance="10.0.0.{pod}:8002",model="translator"'
    return {"series": f"{metric}{{{labels}}}", "values": values}


def test_trigger_queries_compute_what_their_thresholds_mean(tmp_path: Path) -> None:
    policy = load_policy()
    busy, idle = policy.triton_for("critical"), policy.triton_for("normal")
    assert busy.name != idle.name
    q_busy, q_idle = generate.triton_queries(busy), generate.triton_queries(idle)
    (api,) = [d for d in generate.autoscaling(policy) if d["metadata"]["name"] == "mtb-api"]
    api_query = api["spec"]["triggers"][0]["metadata"]["query"]
    series = [
        # busy pool, two pods: 2 requests/s each with 0.5 s of queue per second each
        # -> 250 ms per request; utilisation 0.9 and 0.7 -> 0.8
        _series("nv_inference_request_success", busy.name, 1, "0+120x10"),
        _series("nv_inference_request_success", busy.name, 2, "0+120x10"),
        _series("nv_inference_queue_duration_us", busy.name, 1, "0+30000000x10"),
        _series("nv_inference_queue_duration_us", busy.name, 2, "0+30000000x10"),
        _series("nv_gpu_utilization", busy.name, 1, "0.9x10"),
        _series("nv_gpu_utilization", busy.name, 2, "0.7x10"),
        # idle pool: no requests at all, a GPU at 20%; its slow queue must not leak into
        # the busy pool's figures
        _series("nv_inference_request_success", idle.name, 3, "5x10"),
        _series("nv_inference_queue_duration_us", idle.name, 3, "900000000x10"),
        _series("nv_gpu_utilization", idle.name, 3, "0.2x10"),
        # the API: two replicas at 50 and 70 requests/s
        {"series": 'mtb_http_requests_total{job="mtb-api",instance="a",route="/x"}',
         "values": "0+3000x10"},
        {"series": 'mtb_http_requests_total{job="mtb-api",instance="b",route="/y"}',
         "values": "0+4200x10"},
    ]  # fmt: skip

    def sample(expr: str, value: float) -> dict:
        return {"expr": expr, "eval_time": "5m", "exp_samples": [{"labels": "{}", "value": value}]}

    tests = {
        "rule_files": ["empty.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    sample(q_busy["queue_time_ms"], 250),
                    sample(q_busy["gpu_utilization"], 0.8),
                    sample(q_busy["hold"], 1),
                    sample(q_idle["queue_time_ms"], 0),  # no requests: 0, not NaN or nothing
                    sample(q_idle["gpu_utilization"], 0.2),
                    sample(q_idle["hold"], 0),  # under gpuUtilizationDown: may scale down
                    sample(api_query, 120),
                ],
            }
        ],
    }
    (tmp_path / "empty.yml").write_text("groups: []\n")
    (tmp_path / "triggers_test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    out = subprocess.run(
        [str(_promtool()), "test", "rules", "triggers_test.yml"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert busy.gpu_utilization_down < 0.8 and idle.gpu_utilization_down > 0.2  # the cases' premise
