"""Which metric names the rules and dashboards use, and which ones really exist: the
control plane's registries (control_plane/metrics.py, the Triton client), Triton's own
series and our python model's counter, Prometheus's ``up``/``ALERTS`` and the recording
rules of ``dashboards/rules``. Parsing is offline (PyPI ``promql-parser``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

RULES_DIR = Path(__file__).resolve().parent / "rules"

# Triton 2.51 (nvidia-pytriton 0.7.0) on CPU, per model; GPU nodes add nv_gpu_*.
TRITON_METRICS = frozenset(
    {
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_input_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_compute_output_duration_us",
        "nv_inference_pending_request_count",
        "nv_cpu_utilization",
        "nv_cpu_memory_total_bytes",
        "nv_cpu_memory_used_bytes",
        "mtb_translator_segments_total",  # model_repository/translator/1/model.py
    }
)
PROMETHEUS_METRICS = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})

_CHILDREN = ("lhs", "rhs", "expr", "args", "vector_selector", "param", "at")


def expr_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (ValueError when it does not parse)."""
    import promql_parser

    names: set[str] = set()

    def walk(node: object) -> None:
        if node is None or isinstance(node, (str, int, float)):
            return
        if isinstance(node, (list, tuple)):
            for child in node:
                walk(child)
            return
        if type(node).__name__ == "VectorSelector":
            name = getattr(node, "name", None)
            if name:
                names.add(name)
            return
        for attr in _CHILDREN:
            if hasattr(node, attr):
                walk(getattr(node, attr))

    walk(promql_parser.parse(expr))
    return names


def rule_groups(rules_dir: Path = RULES_DIR) -> list[dict]:
    import yaml

    groups: list[dict] = []
    for path in sorted(rules_dir.glob("*.yml")):
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    return groups


def rules(rules_dir: Path = RULES_DIR) -> Iterable[dict]:
    for group in rule_groups(rules_dir):
        yield from group["rules"]


def recorded_names(rules_dir: Path = RULES_DIR) -> set[str]:
    return {r["record"] for r in rules(rules_dir) if "record" in r}


def code_metric_names() -> set[str]:
    """Sample names (``_total``, ``_bucket``, ...) the control plane's registries expose."""
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry

    from control_plane.inference.triton import TritonInferenceClient
    from control_plane.metrics import Metrics

    triton_registry = CollectorRegistry()
    TritonInferenceClient._make_metrics(SimpleNamespace(), triton_registry)  # noqa: SLF001
    names: set[str] = set()
    for registry in (Metrics().registry, triton_registry):
        for family in registry.collect():
            names.add(family.name)
            for suffix in ("_total", "_bucket", "_count", "_sum", "_created"):
                names.add(family.name + suffix)
    return names


def known_metric_names(rules_dir: Path = RULES_DIR) -> set[str]:
    return code_metric_names() | TRITON_METRICS | PROMETHEUS_METRICS | recorded_names(rules_dir)
