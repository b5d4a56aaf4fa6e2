"""The scaling policy loader: the committed file loads, and each rule it enforces rejects a
broken variant with the key named (the generator and simulator rely on these rules)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from control_plane.capacity.policy import DEFAULT_PATH, PolicyError, load_policy, parse_policy
from control_plane.domain import PRIORITIES


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_PATH.read_text())


def test_committed_policy_loads_with_the_contract_keys() -> None:
    policy = load_policy()
    assert policy.keda.polling_interval_seconds > 0
    assert policy.worker_for("critical").min_replicas >= 1  # critical never waits
    assert policy.worker_for("normal").min_replicas == 0  # normal may scale to zero
    for p in PRIORITIES:
        assert p in policy.triton_for(p).serves
    assert policy.triton_for("critical").node_pool == "premium"
    assert not policy.node_pool(policy.triton_for("critical").node_pool).spot
    assert policy.hpa.scale_down_stabilization_seconds == 600  # 10 idle minutes
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.api.min_replicas = 0  # type: ignore[misc]


def test_load_from_explicit_path(tmp_path: Path, raw: dict[str, Any]) -> None:
    changed = copy.deepcopy(raw)
    changed["api"]["maxReplicas"] = 7
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(changed))
    assert load_policy(path).api.max_replicas == 7


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["keda"].update(pollingInterval=5), "keda.pollingInterval"),
        (lambda d: d["triton"][0].update(gpuUtilizationUp=80), "triton[0].gpuUtilizationUp"),
        (lambda d: d["triton"][0].update(gpuUtilizationDown=0.9), "must be below"),
        (lambda d: d["workers"][0].update(maxReplicas=0), "workers[0].maxReplicas"),
        (lambda d: d["workers"][1].update(minReplicas=50), "maxReplicas (8) < minReplicas"),
        (lambda d: d["workers"][0].update(priorities=["urgent"]), "unknown ['urgent']"),
        (lambda d: d["workers"][0].update(nodePool="gpu"), "workers[0].nodePool"),
        (lambda d: d["workers"][2].update(triton="triton-premium", priorities=[]), "at least"),
        (lambda d: d["workers"][1].update(priorities=["high"]), "'retry' must be consumed"),
        (lambda d: d["triton"][1].update(serves=["high"]), "serves only ['high']"),
        (lambda d: d["hpa"].update(scaleDownPercent=150), "hpa.scaleDownPercent"),
        (lambda d: d["schedules"][0].update(target="nope"), "schedules[0].target"),
        (lambda d: d["schedules"][0].update(timezone="Mars/Base"), "unknown IANA zone"),
        (lambda d: d["schedules"][0].update(start="8 * *"), "schedules[0].start"),
        (lambda d: d["schedules"][0].update(desiredReplicas=99), "> maxReplicas"),
        (lambda d: d.pop("startup"), "startup"),
        (lambda d: d["spot"].update(noticeSeconds=-1), "spot.noticeSeconds"),
    ],
)
def test_broken_policy_names_the_key(raw: dict[str, Any], edit, message: str) -> None:  # noqa: ANN001
    data = copy.deepcopy(raw)
    edit(data)
    with pytest.raises(PolicyError) as err:
        parse_policy(data)
    assert message in str(err.value)


def test_unreadable_file_is_a_policy_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("keda: [unclosed\n")
    with pytest.raises(PolicyError, match="bad.yaml"):
        load_policy(bad)
    with pytest.raises(PolicyError, match="mapping"):
        bad.write_text("- a list\n")
        load_policy(bad)
