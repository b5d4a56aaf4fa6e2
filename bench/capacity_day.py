"""A simulated day through the scaling policy: replicas, SLA, words/min, GPU-hours and
cost per day at 10k, 1M and 100M words/day, and policy variants side by side."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import yaml

from control_plane.capacity.cost import CostModel
from control_plane.capacity.policy import DEFAULT_PATH, ScalingPolicy, parse_policy
from control_plane.capacity.simulate import Result, SimConfig, config_from_policy, simulate
from control_plane.capacity.traffic import Traffic, summary

VOLUMES = (10_000, 1_000_000, 100_000_000)


def policy_data(path: Path = DEFAULT_PATH) -> dict:
    return yaml.safe_load(path.read_text())


def variant(data: dict, changes: dict[str, object]) -> ScalingPolicy:
    """The policy with ``changes`` applied: keys like ``triton[1].minReplicas`` or
    ``keda.cooldownPeriodSeconds``; ``schedules`` -> a list replaces them all."""
    d = copy.deepcopy(data)
    for key, value in changes.items():
        node, parts = d, key.replace("]", "").split(".")
        for part in parts[:-1]:
            name, _, idx = part.partition("[")
            node = node[name][int(idx)] if idx else node[name]
        last, _, idx = parts[-1].partition("[")
        if idx:
            node[last][int(idx)] = value
        else:
            node[last] = value
    return parse_policy(d, f"variant {changes}")


def run_day(policy: ScalingPolicy, model: CostModel, words: int, seed: int = 1) -> dict:
    kinds = {name: model.kind(name).words_per_minute for name in ("gpu", "gpu-spot")}
    config = config_from_policy(policy, kinds, seed=seed)
    jobs = Traffic(words=words, seed=seed).jobs()
    t0 = time.perf_counter()
    result = simulate(config, jobs, until_s=86_400.0)
    return report_day(config, result, model, words, jobs, time.perf_counter() - t0)


def report_day(
    config: SimConfig, r: Result, model: CostModel, words: int, jobs, took: float
) -> dict:
    pools = {p.name: p for p in config.pools}
    gpu_hours = {name: r.replica_seconds[name] / 3600.0 for name in pools}
    gpu_usd = {
        name: h * model.kind(pools[name].kind).price_per_hour for name, h in gpu_hours.items()
    }
    per_word = model.storage_usd_per_word + model.transfer_usd_per_word
    replicas = {}
    for key, values in r.series.items():
        if key.startswith("replicas."):
            name = key.removeprefix("replicas.")
            replicas[name] = {"max": max(values), "mean": round(sum(values) / len(values), 2),
                              "hours": round(r.replica_seconds[name] / 3600.0, 2)}  # fmt: skip
    wpm = r.series["words_per_min"]
    return {
        "words_per_day": words,
        "traffic": summary(jobs),
        "sla": r.sla(),
        "replicas": replicas,
        "words_per_min": {"mean": round(r.words_done / 1440.0), "peak_minute": round(max(wpm))},
        "gpu_hours": {k: round(v, 2) for k, v in gpu_hours.items()},
        "gpu_hours_total": round(sum(gpu_hours.values()), 2),
        "gpu_usd": {k: round(v, 2) for k, v in gpu_usd.items()},
        "storage_transfer_usd": round(words * per_word, 2),
        "cost_per_day_usd": round(sum(gpu_usd.values()) + words * per_word, 2),
        "spot_interruptions": r.spot_interruptions,
        "requeued_chunks": r.requeued_chunks,
        "simulated_in_s": round(took, 1),
        "series": r.series,
    }


# name -> policy changes; each tried at 1M and 100M words/day
VARIANTS: dict[str, dict[str, object]] = {
    "policy as committed": {},
    "no weekday GPU floor (spot GPU only on demand)": {
        "schedules": [
            {
                "name": "weekday-peak",
                "target": "worker-normal",
                "timezone": "UTC",
                "start": "0 8 * * 1-5",
                "end": "0 18 * * 1-5",
                "desiredReplicas": 2,
            }
        ]
    },  # fmt: skip
    "cooldown 300 s, scale-down window 300 s": {
        "keda.cooldownPeriodSeconds": 300,
        "hpa.scaleDownStabilizationSeconds": 300,
        "triton[0].idleMinutesDown": 5,
        "triton[1].idleMinutesDown": 5,
    },
    "worker-normal lag 200 per replica": {"workers[2].lagThreshold": 200},
    "normal pool warm (spot GPU and worker-normal min 1)": {
        "triton[1].minReplicas": 1,
        "workers[2].minReplicas": 1,
    },
}
