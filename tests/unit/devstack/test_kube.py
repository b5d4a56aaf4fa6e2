"""devstack.kube's pure parts: the CRD schema conversion (what a real API server would
prune is an error here), label-selector semantics and image pinning. The tools themselves
are exercised in tests/functional/L0_k8s."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from devstack import kube

CRD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["port"],
            "properties": {
                "port": {
                    "x-kubernetes-int-or-string": True,
                    "anyOf": [{"type": "integer"}, {"type": "string"}],
                },
                "note": {"type": "string", "nullable": True},
                "mode": {"type": "string", "enum": ["a", "b"], "nullable": True},
                "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "properties": {
                        "spec": {"type": "object", "properties": {"x": {"type": "integer"}}}
                    },
                },
                "min": {"type": "integer", "minimum": 0, "exclusiveMinimum": True},
            },
        }
    },
}


def errors(spec: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft4Validator(kube.structural_to_jsonschema(CRD_SCHEMA))
    return sorted(e.message for e in validator.iter_errors({"spec": spec}))


def test_a_valid_object_passes() -> None:
    assert (
        errors(
            {
                "port": "http",
                "note": None,
                "mode": None,
                "config": {"anything": {"goes": 1}},
                "labels": {"a": "b"},
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {"x": 1}},
                "min": 1,
            }
        )
        == []
    )
    assert errors({"port": 8080}) == []


def test_unknown_fields_are_errors_where_the_server_would_prune_them() -> None:
    assert errors({"port": 1, "prot": 2}) == [
        "Additional properties are not allowed ('prot' was unexpected)"
    ]
    assert errors({"port": 1, "template": {"spec": {"y": 1}}}) == [
        "Additional properties are not allowed ('y' was unexpected)"
    ]


def test_types_nullable_int_or_string_and_draft4_bounds() -> None:
    assert errors({"port": 1.5}) == ["1.5 is not of type 'integer', 'string'"]
    assert errors({"port": 1, "mode": "c"}) == ["'c' is not one of ['a', 'b', None]"]
    assert errors({"port": 1, "labels": {"a": 1}}) == ["1 is not of type 'string'"]
    assert errors({"port": 1, "min": 0}) == ["0 is less than or equal to the minimum of 0"]
    assert errors({}) == ["'port' is a required property"]


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ({"app": "api"}, {"app": "api", "tier": "x"}, True),
        ({"app": "api"}, {"app": "worker"}, False),
        ({"matchLabels": {"app": "api"}}, {"app": "api"}, True),
        (
            {"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]},
            {"app": "b"},
            True,
        ),
        (
            {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["b"]}]},
            {"app": "b"},
            False,
        ),
        ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, {}, True),
        ({}, {"app": "api"}, True),
        (None, {"app": "api"}, False),
    ],
)
def test_selector_semantics(selector: Any, labels: dict[str, str], matches: bool) -> None:
    assert kube.selector_matches(selector, labels) is matches


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("nvcr.io/nvidia/tritonserver:25.01-py3", True),
        ("registry:5000/mt-backend:0.1.0", True),
        ("ghcr.io/cloudnative-pg/postgresql:16.4", True),
        ("busybox@sha256:" + "a" * 64, True),
        ("registry:5000/mt-backend", False),
        ("mt-backend:latest", False),
        ("mt-backend:stable", False),
        ("mt-backend:16", False),
    ],
)
def test_image_pinning(image: str, pinned: bool) -> None:
    assert kube._image_pinned(image) is pinned
