"""The scaling policy (``k8s/scaling-policy.yaml``): every autoscaling rule, loaded once.

Two consumers read the same numbers so they cannot disagree: the manifest generator
(``python -m k8s.generate``: KEDA ScaledObjects, per-pool Deployments) and the capacity
simulator (``python -m bench capacity``). The file's keys are camelCase like KEDA's; each
maps to the snake_case attribute of the same words (``pollingIntervalSeconds`` ->
``polling_interval_seconds``). Unknown keys, wrong units (a fraction above 1, a negative
time) and references to pools that do not exist are errors naming the offending key
(``workers[1].maxReplicas: ...``), raised as :class:`PolicyError` at load time rather than
as a strange manifest or a silent simulator result later.

    from control_plane.capacity.policy import load_policy
    policy = load_policy()                      # the repo's k8s/scaling-policy.yaml
    policy.worker("worker-critical").min_replicas
    policy.worker_for("high").name              # which worker Deployment consumes "high"
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic.alias_generators import to_camel
from pydantic.dataclasses import dataclass

from control_plane.domain import PRIORITIES

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PATH = REPO_ROOT / "k8s" / "scaling-policy.yaml"

# what a worker may consume: the priority topics mtb.chunks.<priority> and the retry topic
RETRY = "retry"
WORKER_TOPICS = (*PRIORITIES, RETRY)
# Kubernetes object names (RFC 1123 label: the names become Deployment/Service names)
NAME_PATTERN = r"^[a-z]([-a-z0-9]{0,40}[a-z0-9])?$"

_CONFIG = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=False)

Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Seconds = Annotated[int, Field(ge=0, le=86_400)]
PositiveSeconds = Annotated[int, Field(gt=0, le=86_400)]
Replicas = Annotated[int, Field(ge=0, le=1000)]
Fraction = Annotated[float, Field(gt=0.0, le=1.0)]


class PolicyError(ValueError):
    """The policy file is unreadable or breaks a rule; the message names the key."""


@dataclass(frozen=True, config=_CONFIG)
class Keda:
    polling_interval_seconds: PositiveSeconds
    cooldown_period_seconds: Seconds


@dataclass(frozen=True, config=_CONFIG)
class HpaBehavior:
    """``advanced.horizontalPodAutoscalerConfig.behavior`` of every ScaledObject: at most
    ``scale_up_pods`` added per ``scale_up_period_seconds``, at most ``scale_down_percent``
    removed per ``scale_down_period_seconds``, each after its stabilisation window."""

    scale_up_stabilization_seconds: Annotated[int, Field(ge=0, le=3600)]
    scale_down_stabilization_seconds: Annotated[int, Field(ge=0, le=3600)]
    scale_up_pods: Annotated[int, Field(gt=0, le=1000)]
    scale_up_period_seconds: Annotated[int, Field(gt=0, le=1800)]  # HPA's own limits
    scale_down_percent: Annotated[int, Field(gt=0, le=100)]
    scale_down_period_seconds: Annotated[int, Field(gt=0, le=1800)]


@dataclass(frozen=True, config=_CONFIG)
class Toleration:
    key: str
    operator: Annotated[str, Field(pattern=r"^(Exists|Equal)$")] = "Exists"
    value: str = ""
    effect: Annotated[str, Field(pattern=r"^(NoSchedule|PreferNoSchedule|NoExecute|)$")] = ""


@dataclass(frozen=True, config=_CONFIG)
class NodePool:
    """Where pods of a pool run: its nodes' labels and taints. Workers go to the pool's CPU
    nodes, Triton pools to its GPU nodes."""

    name: Name
    spot: bool
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()


@dataclass(frozen=True, config=_CONFIG)
class Scaled:
    """What every scaled target has: a name, its node pool, its replica range."""

    name: Name
    node_pool: Name
    min_replicas: Replicas
    max_replicas: Annotated[int, Field(gt=0, le=1000)]

    @model_validator(mode="after")
    def _range(self) -> Scaled:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"maxReplicas ({self.max_replicas}) < minReplicas ({self.min_replicas})"
            )
        return self


@dataclass(frozen=True, config=_CONFIG)
class WorkerPool(Scaled):
    """One worker Deployment: ``mtctl worker --priorities ...`` in consumer group
    ``MTB_KAFKA_GROUP``, scaled on the group's lag on its topics (KEDA's Kafka scaler)."""

    priorities: tuple[str, ...] = ()
    triton: Name = ""  # the Triton pool its inference calls go to
    lag_threshold: Annotated[int, Field(gt=0)] = 10  # target lag (chunks) per replica
    activation_lag_threshold: Annotated[int, Field(ge=0)] = 0  # lag that wakes it from 0
    ingest: bool = False  # also consumes the ingest topic

    @model_validator(mode="after")
    def _topics(self) -> WorkerPool:
        if not self.priorities:
            raise ValueError("priorities: at least one")
        unknown = [p for p in self.priorities if p not in WORKER_TOPICS]
        if unknown:
            raise ValueError(f"priorities: unknown {unknown}; known: {list(WORKER_TOPICS)}")
        if len(set(self.priorities)) != len(self.priorities):
            raise ValueError(f"priorities: repeated in {list(self.priorities)}")
        return self


@dataclass(frozen=True, config=_CONFIG)
class TritonPool(Scaled):
    """One Triton Deployment on GPU nodes, scaled on Triton's own Prometheus metrics: up
    at ``gpu_utilization_up`` or an average queue time per request of ``queue_time_up_ms``;
    down once utilisation stayed under ``gpu_utilization_down`` for ``idle_minutes_down``."""

    serves: tuple[str, ...] = ()
    gpu_utilization_up: Fraction = 0.8
    queue_time_up_ms: Annotated[float, Field(gt=0, le=600_000)] = 250.0
    gpu_utilization_down: Fraction = 0.3
    idle_minutes_down: Annotated[float, Field(gt=0, le=1440)] = 10.0

    @model_validator(mode="after")
    def _thresholds(self) -> TritonPool:
        unknown = [p for p in self.serves if p not in PRIORITIES]
        if not self.serves or unknown:
            raise ValueError(f"serves: priorities from {list(PRIORITIES)}, got {self.serves}")
        if self.gpu_utilization_down >= self.gpu_utilization_up:
            raise ValueError(
                f"gpuUtilizationDown ({self.gpu_utilization_down}) must be below "
                f"gpuUtilizationUp ({self.gpu_utilization_up}): fractions, 0.8 = 80%"
            )
        return self

    @property
    def idle_seconds_down(self) -> int:
        return round(self.idle_minutes_down * 60)


@dataclass(frozen=True, config=_CONFIG)
class Api:
    min_replicas: Annotated[int, Field(gt=0, le=1000)]
    max_replicas: Annotated[int, Field(gt=0, le=1000)]
    requests_per_second_per_replica: Annotated[float, Field(gt=0)]

    @model_validator(mode="after")
    def _range(self) -> Api:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"maxReplicas ({self.max_replicas}) < minReplicas ({self.min_replicas})"
            )
        return self


CRON = r"^\S+ \S+ \S+ \S+ \S+$"  # five fields, as KEDA's cron scaler takes them


@dataclass(frozen=True, config=_CONFIG)
class Schedule:
    """A known daily peak: ``target`` holds at least ``desired_replicas`` from ``start``
    to ``end`` (cron expressions in ``timezone``), KEDA's cron trigger."""

    name: Name
    target: Name
    timezone: str
    start: Annotated[str, Field(pattern=CRON)]
    end: Annotated[str, Field(pattern=CRON)]
    desired_replicas: Annotated[int, Field(gt=0, le=1000)]

    @model_validator(mode="after")
    def _zone(self) -> Schedule:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: unknown IANA zone {self.timezone!r}") from None
        return self


@dataclass(frozen=True, config=_CONFIG)
class Startup:
    """Pod start-up, for the simulator (and the probes' start-up budget)."""

    worker_seconds: Seconds
    triton_seconds: Seconds
    model_load_seconds: Seconds


@dataclass(frozen=True, config=_CONFIG)
class Spot:
    interruptions_per_node_hour: Annotated[float, Field(ge=0, le=60)]
    notice_seconds: Seconds


@dataclass(frozen=True, config=_CONFIG)
class ScalingPolicy:
    keda: Keda
    hpa: HpaBehavior
    node_pools: tuple[NodePool, ...]
    workers: tuple[WorkerPool, ...]
    triton: tuple[TritonPool, ...]
    api: Api
    startup: Startup
    spot: Spot
    schedules: tuple[Schedule, ...] = ()

    @model_validator(mode="after")
    def _references(self) -> ScalingPolicy:
        """Cross-references: names unique, pools and targets that exist, every priority
        consumed by exactly one worker and served by the Triton pool that worker calls."""
        pools = {p.name for p in self.node_pools}
        _unique("nodePools", [p.name for p in self.node_pools])
        _unique("workers/triton", [t.name for t in (*self.workers, *self.triton)])
        _unique("schedules", [s.name for s in self.schedules])
        tritons = {t.name: t for t in self.triton}
        for i, w in enumerate(self.workers):
            if w.node_pool not in pools:
                raise ValueError(f"workers[{i}].nodePool: no node pool {w.node_pool!r}")
            if w.triton not in tritons:
                raise ValueError(f"workers[{i}].triton: no Triton pool {w.triton!r}")
            missing = set(w.priorities) - {RETRY} - set(tritons[w.triton].serves)
            if missing:
                raise ValueError(
                    f"workers[{i}] ({w.name}) consumes {sorted(missing)} but its Triton pool "
                    f"{w.triton!r} serves only {list(tritons[w.triton].serves)}"
                )
        for i, t in enumerate(self.triton):
            if t.node_pool not in pools:
                raise ValueError(f"triton[{i}].nodePool: no node pool {t.node_pool!r}")
        consumed = [p for w in self.workers for p in w.priorities]
        for topic in WORKER_TOPICS:
            if consumed.count(topic) != 1:
                raise ValueError(
                    f"workers: {topic!r} must be consumed by exactly one worker, "
                    f"found {consumed.count(topic)}"
                )
        if not any(w.ingest for w in self.workers):
            raise ValueError("workers: at least one must consume the ingest topic (ingest)")
        targets = {t.name: t for t in (*self.workers, *self.triton)}
        for i, s in enumerate(self.schedules):
            if s.target not in targets:
                raise ValueError(f"schedules[{i}].target: no worker or Triton pool {s.target!r}")
            if s.desired_replicas > targets[s.target].max_replicas:
                raise ValueError(
                    f"schedules[{i}].desiredReplicas ({s.desired_replicas}) > maxReplicas "
                    f"of {s.target} ({targets[s.target].max_replicas})"
                )
        return self

    def node_pool(self, name: str) -> NodePool:
        return next(p for p in self.node_pools if p.name == name)

    def worker(self, name: str) -> WorkerPool:
        return next(w for w in self.workers if w.name == name)

    def triton_pool(self, name: str) -> TritonPool:
        return next(t for t in self.triton if t.name == name)

    def worker_for(self, priority: str) -> WorkerPool:
        """The worker Deployment that consumes ``priority``'s topic (or ``retry``)."""
        return next(w for w in self.workers if priority in w.priorities)

    def triton_for(self, priority: str) -> TritonPool:
        """The Triton pool a chunk of ``priority`` is translated on."""
        return self.triton_pool(self.worker_for(priority).triton)

    def schedules_for(self, target: str) -> tuple[Schedule, ...]:
        return tuple(s for s in self.schedules if s.target == target)


def _unique(what: str, names: list[str]) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{what}: names repeated: {repeated}")


_ADAPTER = TypeAdapter(ScalingPolicy)


def parse_policy(data: Mapping[str, Any], source: str = "<policy>") -> ScalingPolicy:
    """A policy from already-parsed YAML (tests build variants this way)."""
    try:
        return _ADAPTER.validate_python(dict(data))
    except ValidationError as exc:
        raise PolicyError(f"{source}: {_describe(exc)}") from None


def load_policy(path: Path | None = None) -> ScalingPolicy:
    """The policy at ``path`` (default: the repo's ``k8s/scaling-policy.yaml``)."""
    path = Path(path) if path is not None else DEFAULT_PATH
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: {exc}") from None
    if not isinstance(data, Mapping):
        raise PolicyError(f"{path}: expected a mapping at the top level")
    return parse_policy(data, str(path))


def _describe(exc: ValidationError) -> str:
    """Pydantic's errors as ``workers[1].maxReplicas: message`` lines (the file's keys)."""
    lines = []
    for err in exc.errors(include_url=False):
        where = ""
        for part in err["loc"]:
            where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else part)
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {msg}" if where else msg)
    return "; ".join(lines)
