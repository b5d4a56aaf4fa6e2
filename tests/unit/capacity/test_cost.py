"""The cost model (control_plane.capacity.cost): a day of words, one job."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from control_plane.capacity.cost import (
    DAYS_PER_MONTH,
    DEFAULT_PRIORITY_KINDS,
    DEFAULT_RULES,
    PROD_GPU,
    CostModel,
    PoolRule,
    policy_rules,
    priority_kinds,
    schedule_hours,
)
from control_plane.capacity.policy import DEFAULT_PATH, load_policy
from control_plane.capacity.rates import InstanceKind

# 60,000 words/min = 1,000 words/s; $3.6/h = $0.001/s
WARM = InstanceKind("cpu", 60_000.0, 3.6, gpu=False, measured=True, source="test")
SPOT = InstanceKind("gpu-spot", 60_000.0, 3.6, gpu=True, measured=False, source="estimate: t")
RULES = {
    "cpu": PoolRule(1, 10, 0.5, 600.0, 0.0, 0.0, "test"),
    "gpu-spot": PoolRule(0, 10, 0.5, 600.0, 0.0, 0.0, "test"),
}


def settings(**over):
    from control_plane.settings import Settings

    base = {"cost_stored_bytes_per_word": 0.0, "cost_transfer_bytes_per_word": 0.0,
            "cost_peak_to_mean": 1.0, "cost_active_periods_per_day": 6.0}  # fmt: skip
    return Settings(**{**base, **over})


def model(**over) -> CostModel:
    return CostModel({"cpu": WARM, "gpu-spot": SPOT}, settings(**over), RULES)


def test_a_warm_minimum_is_paid_all_day_however_few_words():
    row = model().cost_per_day(10_000, kind="cpu")
    assert row.instances == 1 and row.instance_hours == 24.0
    assert row.compute_usd == pytest.approx(24 * 3.6) and row.total_usd == row.compute_usd
    assert row.usd_per_1k_words == pytest.approx(24 * 3.6 / 10)
    assert row.scaling == "warm minimum 1" and row.measured


def test_beyond_the_warm_minimum_whole_replicas_run_each_hour():
    # 1,000 words/s at 50% utilisation: 1.8M words per instance-hour; 108M words a flat
    # day = 4.5M words an hour = 2.5 instances' worth: 3 replicas all day
    row = model().cost_per_day(108_000_000, kind="cpu")
    assert row.instances == 3 and row.instance_hours == pytest.approx(72.0)
    # a diurnal day of the same words: 5 at the peak (9M/h), fewer at night
    m = model(cost_peak_to_mean=2.0)
    hourly = m.hourly_words(108_000_000)
    assert sum(hourly) == pytest.approx(108_000_000) and max(hourly) == pytest.approx(9e6)
    curved = m.cost_per_day(108_000_000, kind="cpu")
    assert curved.instances == 5
    assert curved.instance_hours == sum(max(1, math.ceil(w / 1.8e6 - 1e-9)) for w in hourly)
    # below the warm minimum's capacity all day: the minimum is all it pays
    assert m.cost_per_day(1_800_000, kind="cpu").instance_hours == 24.0
    with pytest.raises(ValueError, match="outside"):
        model(cost_peak_to_mean=3.0).cost_per_day(1000, kind="cpu")


def test_scale_to_zero_pays_work_plus_a_cooldown_per_busy_period():
    m = model()
    assert m.cost_per_day(0, kind="gpu-spot").instance_hours == 0.0
    row = m.cost_per_day(1_800_000, kind="gpu-spot")  # one instance-hour of work
    assert row.instance_hours == pytest.approx(1.0 + 6 * 600 / 3600)  # + 6 cooldowns
    assert row.scaling == "scale to zero (10 min idle)" and not row.measured
    assert row.kind == "gpu-spot" and row.source == "estimate: t"


def test_cache_hits_cost_no_compute_but_are_still_stored_and_sent():
    m = model(cost_stored_bytes_per_word=100.0, cost_transfer_bytes_per_word=10.0)
    cold = m.cost_per_day(36_000_000, 0.0, "gpu-spot")
    warm = m.cost_per_day(36_000_000, 0.5, "gpu-spot")
    assert warm.computed_words == 18_000_000 and cold.computed_words == 36_000_000
    assert cold.instance_hours - 1.0 == pytest.approx(2 * (warm.instance_hours - 1.0))
    assert warm.storage_usd == cold.storage_usd > 0 and warm.transfer_usd == cold.transfer_usd
    all_cached = m.cost_per_day(36_000_000, 1.0, "gpu-spot")
    assert all_cached.computed_words == 0 and all_cached.compute_usd == 0.0
    with pytest.raises(ValueError, match="fraction"):
        m.cost_per_day(1000, 1.5, "cpu")


def test_storage_and_transfer_follow_the_settings():
    m = model(cost_stored_bytes_per_word=100.0, cost_retention_days=DAYS_PER_MONTH,
              cost_storage_price_gb_month=0.5, cost_transfer_bytes_per_word=20.0,
              cost_transfer_price_gb=0.1)  # fmt: skip
    row = m.cost_per_day(10_000_000, kind="cpu")  # 1 GB kept a month, 0.2 GB sent
    assert row.storage_usd == pytest.approx(0.5)
    assert row.transfer_usd == pytest.approx(0.02)
    assert row.total_usd == pytest.approx(row.compute_usd + 0.52)


def test_table_is_every_volume_on_every_kind():
    rows = model().table([10_000, 100_000, 1_000_000], 0.25)
    assert [(r.words_per_day, r.kind) for r in rows] == [
        (w, k) for w in (10_000, 100_000, 1_000_000) for k in ("cpu", "gpu-spot")
    ]
    assert {r.cache_hit_rate for r in rows} == {0.25}
    assert [r.kind for r in model().table([5], kinds=["gpu-spot"])] == ["gpu-spot"]
    with pytest.raises(ValueError, match="unknown instance kind 'tpu'"):
        model().table([5], kinds=["tpu"])


def test_job_cost_from_engine_seconds_or_from_measured_speed():
    m = model(cost_stored_bytes_per_word=1000.0, cost_retention_days=DAYS_PER_MONTH,
              cost_storage_price_gb_month=1.0)  # fmt: skip
    per_word = 1000 / 1e9  # 1 GB-month per million words at $1
    assert m.job_cost(1000, engine_seconds=2.0) == pytest.approx(2 * 0.001 + 1000 * per_word)
    # before it ran: its words at the kind's measured speed (1,000 words/s)
    assert m.job_cost(1000) == pytest.approx(1.0 * 0.001 + 1000 * per_word)
    overlapped = model(cost_engine_overlap=4.0)
    assert overlapped.job_cost(0, engine_seconds=2.0) == pytest.approx(0.0005)


def test_job_cost_at_the_process_kind_price():
    spot = replace(SPOT, price_per_hour=0.36)
    m = CostModel({"cpu": WARM, "gpu-spot": spot}, settings(cost_instance_kind="gpu-spot"), RULES)
    assert m.job_cost(0, engine_seconds=10.0) == pytest.approx(0.001)
    assert m.job_cost(0, engine_seconds=10.0, kind="cpu") == pytest.approx(0.01)


def test_schedule_hours():
    assert schedule_hours("0 8 * * 1-5", "0 18 * * 1-5") == pytest.approx(10 * 5 / 7)
    assert schedule_hours("30 6 * * *", "0 7 * * *") == pytest.approx(0.5)
    assert schedule_hours("0 8 * * 1,3,5", "0 9 * * 1,3,5") == pytest.approx(3 / 7)
    assert schedule_hours("*/5 * * * *", "0 9 * * *") is None  # not a daily window
    assert schedule_hours("0 18 * * *", "0 8 * * *") is None  # over midnight: not read


def test_policy_rules_follow_the_repo_policy():
    policy = load_policy()
    rules = policy_rules()
    premium = policy.triton_for("critical")
    assert rules["cpu"] == rules["gpu"]
    assert rules["gpu"].min_replicas == premium.min_replicas
    assert rules["gpu"].utilisation == premium.gpu_utilization_up
    spot = next(t for t in policy.triton if policy.node_pool(t.node_pool).spot)
    assert rules["gpu-spot"].min_replicas == spot.min_replicas
    assert rules["gpu-spot"].idle_s == spot.idle_seconds_down
    assert DEFAULT_PATH.name in rules["gpu-spot"].source


def test_policy_rules_from_another_policy(tmp_path):
    data = yaml.safe_load(DEFAULT_PATH.read_text())
    changed = copy.deepcopy(data)
    for pool in changed["triton"]:
        pool["minReplicas"] = 2
        pool["idleMinutesDown"] = 5
    changed["schedules"] = [
        {"name": "peak", "target": changed["triton"][0]["name"], "timezone": "UTC",
         "start": "0 9 * * *", "end": "0 12 * * *", "desiredReplicas": 3},
    ]  # fmt: skip
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(changed))
    rules = policy_rules(path)
    assert rules["gpu"].min_replicas == 2 and rules["gpu"].idle_s == 300
    target = changed["triton"][0]["name"]
    which = "gpu" if load_policy(path).triton_for("critical").name == target else "gpu-spot"
    assert rules[which].scheduled_hours == pytest.approx(3.0)  # 1 replica above min, 3 h
    assert rules[which].describe() == "warm minimum 2 + schedules 3.0 h/day"


def test_an_unreadable_policy_falls_back_to_the_design_rules(tmp_path, caplog):
    path = tmp_path / "policy.yaml"
    path.write_text("workers: [")
    assert policy_rules(path) == DEFAULT_RULES
    assert "scaling policy not read" in caplog.text


def test_prod_gpu_is_the_premium_pool_plus_the_spot_pool():
    """The prod-gpu overlay: critical/high words on the warm on-demand pool, the normal
    share on spot; each pool pays its own rule, the row is their sum."""
    gpu = replace(WARM, name="gpu", gpu=True)
    rules = {"gpu": RULES["cpu"], "gpu-spot": RULES["gpu-spot"]}
    m = CostModel({"gpu": gpu, "gpu-spot": SPOT}, settings(cost_normal_share=0.75), rules)
    assert [r.kind for r in m.table([1000])] == ["gpu", "gpu-spot", PROD_GPU]
    row = m.cost_per_day(7_200_000, kind=PROD_GPU)
    premium = m.cost_per_day(1_800_000, kind="gpu")
    spot = m.cost_per_day(5_400_000, kind="gpu-spot")
    assert row.instance_hours == pytest.approx(premium.instance_hours + spot.instance_hours)
    assert row.total_usd == pytest.approx(premium.total_usd + spot.total_usd)
    assert row.instances == premium.instances + spot.instances
    assert not row.measured  # the spot kind is an estimate
    assert row.scaling == "premium gpu: warm minimum 1; spot: scale to zero (10 min idle)"
    assert "75% (normal) on gpu-spot" in row.source
    with pytest.raises(ValueError, match="cost_normal_share"):
        CostModel(m.kinds, settings(cost_normal_share=1.5), rules).cost_per_day(1, 0.0, PROD_GPU)


def test_policy_kind_bills_each_priority_as_the_pool_it_runs_on():
    """MTB_COST_INSTANCE_KIND=policy (prod-gpu): a job costs what the Triton pool its
    priority goes to costs - spot for normal work, on demand for critical and high."""
    policy = load_policy()
    kinds = priority_kinds()
    for priority, kind in kinds.items():
        pool = policy.triton_for(priority)
        assert kind == ("gpu-spot" if policy.node_pool(pool.node_pool).spot else "gpu")
    assert kinds == {"critical": "gpu", "high": "gpu", "normal": "gpu-spot"}
    gpu = replace(WARM, name="gpu", gpu=True, price_per_hour=3.6)
    spot = replace(SPOT, price_per_hour=0.9)
    m = CostModel({"gpu": gpu, "gpu-spot": spot}, settings(cost_instance_kind="policy"),
                  RULES, kinds)  # fmt: skip
    assert m.job_cost(0, engine_seconds=10.0, priority="critical") == pytest.approx(0.01)
    assert m.job_cost(0, engine_seconds=10.0, priority="normal") == pytest.approx(0.0025)
    assert m.kind().name == "gpu"  # no priority: the premium kind
    assert priority_kinds(Path("/nonexistent/policy.yaml")) == DEFAULT_PRIORITY_KINDS


def test_from_settings_without_a_policy_uses_the_design_rules(tmp_path, caplog):
    m = CostModel.from_settings(settings(), tmp_path, tmp_path / "none.yaml")
    assert m.rules == DEFAULT_RULES and m.by_priority == DEFAULT_PRIORITY_KINDS
    assert caplog.text.count("scaling policy not read") == 1
    assert not m.kind("cpu").measured  # an empty results folder: an estimate


def test_from_settings_reads_the_policy_at_mtb_cost_policy_path(tmp_path, monkeypatch):
    """The image keeps the policy outside the installed package (Containerfile: /app/k8s),
    so the path is a setting; a policy there is the one the job costs follow."""
    data = yaml.safe_load(DEFAULT_PATH.read_text())
    for pool in data["triton"]:
        pool["minReplicas"] = 3
    path = tmp_path / "scaling-policy.yaml"
    path.write_text(yaml.safe_dump(data))
    from control_plane.settings import Settings

    monkeypatch.setenv("MTB_COST_POLICY_PATH", str(path))
    m = CostModel.from_settings(Settings.from_env(), tmp_path)
    assert m.rules["gpu"].min_replicas == 3 and m.rules["gpu-spot"].min_replicas == 3
    assert CostModel.from_settings(settings(), tmp_path).rules["gpu"].min_replicas != 3
