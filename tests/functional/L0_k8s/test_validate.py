"""Issue 14, point 3: every overlay of k8s/ built with the real kustomize and validated
offline - Kubernetes' strict OpenAPI schemas, the operators' published CRD schemas and the
deployment policy - and the validation seen to fail when a probe or a CRD field is broken
on purpose (on copies of built objects, and through a temporary overlay over the real base).

The tools come from package registries once and are cached (devstack/kube.py); without the
Go toolchain or the module proxy these tests skip naming the reason.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devstack import kube

HERE = Path(__file__).parent
FIXTURE = HERE / "fixture" / "overlay"


@pytest.fixture(scope="module")
def schemas() -> dict[str, Any]:
    try:
        kube.kustomize_binary()
        return kube.crd_schemas()
    except kube.KubeToolsUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def fixture_objects(schemas: dict[str, Any]) -> list[dict[str, Any]]:
    return kube.kustomize_build(FIXTURE)


def errors_of(objects: list[dict[str, Any]], schemas: dict[str, Any]) -> list[str]:
    report = kube.validate_objects(objects, schemas)
    return report.errors + kube.policy_findings(objects) + sorted(report.unchecked)


def broken(
    objects: list[dict[str, Any]], kind: str, change: Callable[[dict[str, Any]], None]
) -> list[dict[str, Any]]:
    """A deep copy of the built objects with ``change`` applied to the first of ``kind``."""
    objects = copy.deepcopy(objects)
    change(next(o for o in objects if o["kind"] == kind))
    return objects


def container(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]["containers"][0]


def test_fixture_deployment_keeps_every_rule(
    fixture_objects: list[dict[str, Any]], schemas: dict[str, Any]
) -> None:
    report = kube.validate_objects(fixture_objects, schemas)
    assert report.errors == []
    assert report.unchecked == set()
    assert kube.policy_findings(fixture_objects) == []
    # each family of custom resources was checked by its operator's own schema
    assert "kedacore/keda" in report.checked["keda.sh/v1alpha1/ScaledObject"]
    assert "crd-generator" in report.checked["kafka.strimzi.io/v1beta2/KafkaNodePool"]
    assert "cloudnative-pg" in report.checked["postgresql.cnpg.io/v1/Cluster"]
    assert "prometheus-operator" in report.checked["monitoring.coreos.com/v1/ServiceMonitor"]
    assert "strict" in report.checked["apps/v1/Deployment"]


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_overlay_validates(overlay: str, schemas: dict[str, Any]) -> None:
    path = kube.ROOT / overlay
    if not (path / "kustomization.yaml").exists():
        pytest.skip(f"{overlay} does not exist yet")
    report, policy = kube.validate_overlay(path, schemas)
    problems = report.errors + policy + [f"no schema for {k}" for k in sorted(report.unchecked)]
    assert not problems, f"{overlay}:\n" + "\n".join(problems)


# ------------------------------------------------------- broken on purpose: probes


def test_missing_readiness_probe_fails(
    fixture_objects: list[dict[str, Any]], schemas: dict[str, Any]
) -> None:
    objects = broken(fixture_objects, "Deployment", lambda d: container(d).pop("readinessProbe"))
    assert errors_of(objects, schemas) == [
        "Deployment mtb-fixture/api: container api: no readinessProbe"
    ]


def test_probe_on_a_port_name_the_container_lacks_fails(
    fixture_objects: list[dict[str, Any]], schemas: dict[str, Any]
) -> None:
    def bad_port(d: dict[str, Any]) -> None:
        container(d)["livenessProbe"]["httpGet"]["port"] = "htp"

    assert errors_of(broken(fixture_objects, "Deployment", bad_port), schemas) == [
        "Deployment mtb-fixture/api: container api: livenessProbe port 'htp' names no port"
        " of the container (it has ['http'])"
    ]


def test_misspelt_probe_field_fails_the_kubernetes_schema(
    fixture_objects: list[dict[str, Any]], schemas: dict[str, Any]
) -> None:
    def typo(d: dict[str, Any]) -> None:
        container(d)["readinessProbe"]["httpGett"] = container(d)["readinessProbe"].pop("httpGet")

    errors = errors_of(broken(fixture_objects, "Deployment", typo), schemas)
    assert errors == [
        "Deployment mtb-fixture/api: .spec.template.spec.containers[0].readinessProbe:"
        " Additional properties are not allowed ('httpGett' was unexpected)"
    ]


# ------------------------------------------------------- broken on purpose: CRD fields


def test_misspelt_scaledobject_trigger_field_fails_keda_schema(
    fixture_objects: list[dict[str, Any]], schemas: dict[str, Any]
) -> None:
    def typo(so: dict[str, Any]) -> None:
        so["spec"]["triggers"][0]["metdata"] = so["spec"]["triggers"][0].pop("metadata")

    errors = errors_of(broken(fixture_objects, "ScaledObject", typo), schemas)
    assert errors == [
        "ScaledObject mtb-fixture/api: .spec.triggers[0]: 'metadata' is a required property",
        "ScaledObject mtb-fixture/api: .spec.triggers[0]: Additional properties are not"
        " allowed ('metdata' was unexpected)",
    ]


def test_misspelt_kafka_trigger_parameter_fails_kedas_scaler_parameters(
    fixture_objects: list[dict[str, Any]], schemas: dict[str, Any]
) -> None:
    """A trigger's metadata is a free string map in KEDA's CRD; the scaler's own parameter
    names (from KEDA's source) catch the typo a real KEDA would silently default."""

    def typo(so: dict[str, Any]) -> None:
        meta = so["spec"]["triggers"][0]["metadata"]
        meta["lagTreshold"] = meta.pop("lagThreshold")
        meta["topicFromEnv"] = meta.pop("topic")  # the FromEnv form of a real parameter

    assert errors_of(broken(fixture_objects, "ScaledObject", typo), schemas) == [
        "ScaledObject mtb-fixture/api: .spec.triggers[0].metadata: 'lagTreshold' is no"
        " parameter of KEDA's kafka scaler"
    ]


def test_kafka_replicas_of_the_wrong_type_fail_strimzi_schema(
    fixture_objects: list[dict[str, Any]], schemas: dict[str, Any]
) -> None:
    def as_text(pool: dict[str, Any]) -> None:
        pool["spec"]["replicas"] = "three"

    errors = errors_of(broken(fixture_objects, "KafkaNodePool", as_text), schemas)
    assert errors == [
        "KafkaNodePool mtb-fixture/dual: .spec.replicas: 'three' is not of type 'integer'"
    ]


def test_unknown_field_in_cnpg_cluster_and_servicemonitor_fails(
    fixture_objects: list[dict[str, Any]], schemas: dict[str, Any]
) -> None:
    objects = broken(fixture_objects, "Cluster", lambda c: c["spec"].update(instance=3))
    objects = broken(
        objects, "ServiceMonitor", lambda m: m["spec"]["endpoints"][0].update(intervall="1m")
    )
    assert sorted(errors_of(objects, schemas)) == [
        "Cluster mtb-fixture/mtb-db: .spec: Additional properties are not allowed"
        " ('instance' was unexpected)",
        "ServiceMonitor mtb-fixture/api: .spec.endpoints[0]: Additional properties are not"
        " allowed ('intervall' was unexpected)",
    ]


def test_temporary_overlay_over_the_real_base_without_readiness_probe_fails(
    schemas: dict[str, Any], tmp_path: Path
) -> None:
    """The real k8s/base, patched by an overlay of this test: the first Deployment loses its
    first container's readinessProbe and the policy names it."""
    base = kube.ROOT / "k8s" / "base"
    if not (base / "kustomization.yaml").exists():
        pytest.skip("k8s/base does not exist yet")
    deployments = [o for o in kube.kustomize_build(base) if o["kind"] == "Deployment"]
    target = next(d for d in deployments if "readinessProbe" in container(d))
    name = target["metadata"]["name"]
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        f"resources: [{os.path.relpath(base, tmp_path)}]\n"
        "patches:\n"
        f"  - target: {{kind: Deployment, name: {name}}}\n"
        "    patch: |-\n"
        "      - op: remove\n"
        "        path: /spec/template/spec/containers/0/readinessProbe\n"
    )
    objects = kube.kustomize_build(tmp_path)
    wanted = f"{kube.name_of(target)}: container {container(target)['name']}: no readinessProbe"
    assert wanted in kube.policy_findings(objects)
    assert wanted not in kube.policy_findings(kube.kustomize_build(base))


# ------------------------------------------------------- broken on purpose: policy


@pytest.mark.parametrize(
    ("kind", "change", "finding"),
    [
        (
            "Deployment",
            lambda d: container(d)["resources"].pop("limits"),
            "Deployment mtb-fixture/api: container api: resources.limits lacks cpu, memory",
        ),
        (
            "Deployment",
            lambda d: d["spec"]["template"]["spec"]["initContainers"][0]["securityContext"].pop(
                "readOnlyRootFilesystem"
            ),
            "Deployment mtb-fixture/api: initContainer wait-db: "
            "securityContext.readOnlyRootFilesystem is not true",
        ),
        (
            "Deployment",
            lambda d: d["spec"]["template"]["spec"]["securityContext"].update(runAsUser=0),
            (
                "Deployment mtb-fixture/api: initContainer wait-db: runAsUser 0 is root",
                "Deployment mtb-fixture/api: container api: runAsUser 0 is root",
            ),
        ),
        (
            "Job",
            lambda j: container(j)["securityContext"]["capabilities"].update(drop=["NET_RAW"]),
            "Job mtb-fixture/migrate: container migrate: securityContext.capabilities.drop"
            " lacks ALL",
        ),
        (
            "Job",
            lambda j: container(j).update(image="registry.example/mt-backend:latest"),
            "Job mtb-fixture/migrate: spec.template.spec.containers[0].image: image"
            " 'registry.example/mt-backend:latest' is not pinned (a digest or an exact"
            " version tag)",
        ),
        (
            "Cluster",
            lambda c: c["spec"].update(imageName="ghcr.io/cloudnative-pg/postgresql"),
            "Cluster mtb-fixture/mtb-db: spec.imageName: image"
            " 'ghcr.io/cloudnative-pg/postgresql' is not pinned (a digest or an exact"
            " version tag)",
        ),
        (
            "ConfigMap",
            lambda cm: cm["data"].update(MTB_DRAIN_TIMEOUT=5),
            "Deployment mtb-fixture/api: container api: ConfigMap mtb-config-",
        ),
        (
            "ConfigMap",
            lambda cm: cm["data"].update(MTB_DRAIN_TIMEOUT_S="90"),
            "Deployment mtb-fixture/api: terminationGracePeriodSeconds 60 does not exceed"
            " MTB_DRAIN_TIMEOUT_S 90",
        ),
        (
            "Service",
            lambda s: s["spec"]["selector"].update({"app.kubernetes.io/component": "apii"}),
            "Service mtb-fixture/api: selector app.kubernetes.io/component=apii,"
            "app.kubernetes.io/name=mt-backend matches no pod template",
        ),
        (
            "Service",
            lambda s: s["spec"]["ports"][0].update(targetPort="metrics"),
            "Service mtb-fixture/api: targetPort 'metrics' names no container port",
        ),
        (
            "PodDisruptionBudget",
            lambda p: p["spec"]["selector"]["matchLabels"].update({"app": "api"}),
            "PodDisruptionBudget mtb-fixture/api: selector app=api,app.kubernetes.io/component=api"
            " matches no pod template",
        ),
        (
            "NetworkPolicy",
            lambda n: n["spec"]["podSelector"]["matchLabels"].update({"cnpg.io/cluster": "db"}),
            "NetworkPolicy mtb-fixture/api-to-postgres: podSelector cnpg.io/cluster=db matches"
            " no pod template",
        ),
        (
            "ScaledObject",
            lambda s: s["spec"]["scaleTargetRef"].update(name="worker"),
            "ScaledObject mtb-fixture/api: scaleTargetRef Deployment 'worker' not found",
        ),
        (
            "ServiceMonitor",
            lambda m: m["spec"]["endpoints"][0].update(port="metrics"),
            "ServiceMonitor mtb-fixture/api: endpoint port 'metrics' names no Service port",
        ),
    ],
)
def test_policy_names_what_is_broken(
    fixture_objects: list[dict[str, Any]],
    schemas: dict[str, Any],
    kind: str,
    change: Callable[[dict[str, Any]], None],
    finding: str | tuple[str, ...],
) -> None:
    wanted = (finding,) if isinstance(finding, str) else finding
    findings = kube.policy_findings(broken(fixture_objects, kind, change))
    assert len(findings) == len(wanted), findings
    for got, prefix in zip(findings, wanted, strict=True):
        assert got.startswith(prefix), findings
