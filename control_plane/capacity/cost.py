"""The cost model: what translating N words a day costs, and what one job costs.

One model for both so the API's figures and ``mtctl cost`` cannot disagree: instance time
(from measured words/min, :mod:`control_plane.capacity.rates`) at the kind's price, plus
storage of what is kept and transfer of what goes in and out (settings, ``MTB_COST_*``).

A day's cost is not words x price per word: a pool that keeps a warm minimum (critical
work never waits for a scale-up) pays 24 hours of it however few words arrive, and a pool
that may scale to zero still pays a cooldown after every busy period. Which rule applies
to which kind comes from the scaling policy (``k8s/scaling-policy.yaml``): ``cpu`` and
``gpu`` are on-demand instances serving critical work, priced with the warm minimum of the
Triton pool that serves critical; ``gpu-spot`` with the pool on the spot node pool.

    model = CostModel.from_settings(settings)
    model.table([10_000, 100_000, 1_000_000], cache_hit_rate=0.3)
    model.job_cost(1250, engine_seconds=0.8)       # the job's cost_usd
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from control_plane.capacity.rates import CPU, GPU, GPU_SPOT, InstanceKind, measured_kinds
from control_plane.settings import Settings

log = logging.getLogger(__name__)

# the prod-gpu overlay as deployed: critical and high work on the premium (on-demand, warm)
# GPU pool, normal work on the spot pool that may scale to zero
PROD_GPU = "prod-gpu"
# MTB_COST_INSTANCE_KIND=policy: each job billed as the kind its priority's pool runs on
POLICY = "policy"

DAYS_PER_MONTH = 365.25 / 12
GB = 1e9


@dataclass(frozen=True)
class PoolRule:
    """How a kind's pool scales, as far as a day's cost is concerned."""

    min_replicas: int
    max_replicas: int
    utilisation: float  # the pool scales up at this utilisation: the usable share of a replica
    idle_s: float  # a scale-to-zero pool stays up this long after its last work
    scheduled_hours: float  # replica-hours/day held by cron schedules above min_replicas
    scheduled_window: float  # hours/day some schedule holds replicas (their work is paid for)
    source: str

    @property
    def scale_to_zero(self) -> bool:
        return self.min_replicas == 0

    def describe(self) -> str:
        if self.scale_to_zero:
            rule = f"scale to zero ({self.idle_s / 60:g} min idle)"
        else:
            rule = f"warm minimum {self.min_replicas}"
        if self.scheduled_hours:
            rule += f" + schedules {self.scheduled_hours:.1f} h/day"
        return rule


# without a readable policy: the design's rules (a warm on-demand instance for critical
# work, spot capacity that scales to zero after 10 idle minutes, scale up at 80%)
DEFAULT_RULES = {
    CPU: PoolRule(1, 20, 0.8, 600.0, 0.0, 0.0, "default: no scaling policy"),
    GPU: PoolRule(1, 20, 0.8, 600.0, 0.0, 0.0, "default: no scaling policy"),
    GPU_SPOT: PoolRule(0, 20, 0.8, 600.0, 0.0, 0.0, "default: no scaling policy"),
}

_CRON = re.compile(r"^(\d+) (\d+) \* \* (\*|[0-6](?:-[0-6])?(?:,[0-6](?:-[0-6])?)*)$")


def _days(field: str) -> int:
    if field == "*":
        return 7
    days: set[int] = set()
    for part in field.split(","):
        lo, _, hi = part.partition("-")
        days.update(range(int(lo), int(hi or lo) + 1))
    return len(days)


def schedule_hours(start: str, end: str) -> float | None:
    """Average hours a day a daily ``M H * * DOW`` cron window covers (None: a form this
    does not read; the caller says the schedule was left out)."""
    a, b = _CRON.match(start), _CRON.match(end)
    if not a or not b or a.group(3) != b.group(3):
        return None
    begin = int(a.group(2)) + int(a.group(1)) / 60
    finish = int(b.group(2)) + int(b.group(1)) / 60
    if finish <= begin:
        return None
    return (finish - begin) * _days(a.group(3)) / 7


def _rule(pool: Any, policy: Any, path: str) -> PoolRule:
    extra, window, skipped = 0.0, 0.0, []
    for s in policy.schedules_for(pool.name):
        hours = schedule_hours(s.start, s.end)
        if hours is None:
            skipped.append(s.name)
        else:
            extra += hours * max(0, s.desired_replicas - pool.min_replicas)
            window = max(window, hours)  # overlapping windows: the longest one counts
    source = f"{path}: triton {pool.name}"
    if skipped:
        source += f" (schedules not counted: {', '.join(skipped)})"
    return PoolRule(
        pool.min_replicas,
        pool.max_replicas,
        pool.gpu_utilization_up,
        float(pool.idle_seconds_down),
        extra,
        window,
        source,
    )


def _policy(path: Path | None) -> Any:
    try:
        from control_plane.capacity.policy import load_policy

        return load_policy(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable policy: the design's rules
        log.warning("cost model: scaling policy not read (%s); the design's rules apply", exc)
        return None


def policy_rules(path: Path | None = None, policy: Any = None) -> dict[str, PoolRule]:
    """Each kind's :class:`PoolRule` from the scaling policy: the on-demand kinds from the
    Triton pool that serves critical work, ``gpu-spot`` from the pool on spot nodes.
    Falls back to :data:`DEFAULT_RULES` (logged) when the policy cannot be read."""
    from control_plane.capacity.policy import DEFAULT_PATH

    policy = policy if policy is not None else _policy(path)
    if policy is None:
        return dict(DEFAULT_RULES)
    name = str(Path(path or DEFAULT_PATH).name)
    premium = policy.triton_for("critical")
    spot_pools = [t for t in policy.triton if policy.node_pool(t.node_pool).spot]
    spot = spot_pools[0] if spot_pools else policy.triton_for("normal")
    rule = _rule(premium, policy, name)
    return {CPU: rule, GPU: rule, GPU_SPOT: _rule(spot, policy, name)}


# the design's layout: critical and high on the on-demand premium pool, normal on spot
DEFAULT_PRIORITY_KINDS = {"critical": GPU, "high": GPU, "normal": GPU_SPOT}


def priority_kinds(path: Path | None = None, policy: Any = None) -> dict[str, str]:
    """Which GPU kind translates each priority in the prod-gpu layout: ``gpu-spot`` when
    the Triton pool its worker calls runs on a spot node pool, else ``gpu``."""
    policy = policy if policy is not None else _policy(path)
    if policy is None:
        return dict(DEFAULT_PRIORITY_KINDS)
    out = {}
    for priority in DEFAULT_PRIORITY_KINDS:
        pool = policy.triton_for(priority)
        out[priority] = GPU_SPOT if policy.node_pool(pool.node_pool).spot else GPU
    return out


@dataclass(frozen=True)
class CostRow:
    """One line of the table: a day of ``words_per_day`` on one instance kind."""

    kind: str
    words_per_day: int
    cache_hit_rate: float
    computed_words: int  # the words the engine translates (cache hits cost no compute)
    words_per_minute: float  # one instance's measured (or estimated) speed
    measured: bool
    price_per_hour: float
    scaling: str  # which rule applies: warm minimum or scale to zero
    instances: int  # at the busiest hour (never below the warm minimum)
    instance_hours: float  # per day
    compute_usd: float
    storage_usd: float
    transfer_usd: float
    total_usd: float
    usd_per_1k_words: float
    source: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class CostModel:
    """Prices instance time, storage and transfer for a day of traffic or for one job."""

    def __init__(
        self,
        kinds: Mapping[str, InstanceKind],
        settings: Settings | None = None,
        rules: Mapping[str, PoolRule] | None = None,
        by_priority: Mapping[str, str] | None = None,
    ):
        self.kinds = dict(kinds)
        self.settings = settings if settings is not None else Settings.from_env()
        self.rules = dict(rules) if rules is not None else dict(DEFAULT_RULES)
        # MTB_COST_INSTANCE_KIND=policy: a job is billed as the kind its priority runs on
        self.by_priority = dict(by_priority or DEFAULT_PRIORITY_KINDS)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        results_dir: Path | None = None,
        policy_path: Path | None = None,
    ) -> CostModel:
        """Measured kinds from ``results_dir``, pool rules and the kind each priority runs
        on from the scaling policy (read once)."""
        kinds = measured_kinds(results_dir, settings)
        policy_path = policy_path or settings.cost_policy_path
        policy = _policy(policy_path)
        if policy is None:  # logged once by _policy
            return cls(kinds, settings, DEFAULT_RULES, DEFAULT_PRIORITY_KINDS)
        return cls(
            kinds,
            settings,
            policy_rules(policy_path, policy),
            priority_kinds(policy_path, policy),
        )

    def kind(self, name: str | None = None, priority: str | None = None) -> InstanceKind:
        """``name``, else this process's kind (``MTB_COST_INSTANCE_KIND``); ``policy``
        there means the kind ``priority`` runs on (the premium ``gpu`` without one)."""
        name = name or self.settings.cost_instance_kind
        if name == POLICY:
            name = self.by_priority.get(priority or "critical", GPU)
        try:
            return self.kinds[name]
        except KeyError:
            known = sorted(self.kinds)
            raise ValueError(f"unknown instance kind {name!r}; known: {known}") from None

    # -- per word ------------------------------------------------------------------

    @property
    def storage_usd_per_word(self) -> float:
        """Keeping one word's text (job, chunks, cache) for the retention period."""
        s = self.settings
        months = s.cost_retention_days / DAYS_PER_MONTH
        return s.cost_stored_bytes_per_word / GB * s.cost_storage_price_gb_month * months

    @property
    def transfer_usd_per_word(self) -> float:
        s = self.settings
        return s.cost_transfer_bytes_per_word / GB * s.cost_transfer_price_gb

    # -- one job -------------------------------------------------------------------

    def instance_seconds(
        self,
        words: int,
        engine_seconds: float | None = None,
        kind: str | None = None,
        priority: str | None = None,
    ) -> float:
        """A job's share of an instance: its engine seconds over the engine calls that
        share an instance (``MTB_COST_ENGINE_OVERLAP``), or before it ran, its words at
        the kind's measured speed."""
        if engine_seconds is not None:
            return max(0.0, engine_seconds) / max(self.settings.cost_engine_overlap, 1e-9)
        return max(0, words) / self.kind(kind, priority).words_per_second

    def job_cost(
        self,
        words: int,
        engine_seconds: float | None = None,
        kind: str | None = None,
        priority: str | None = None,
    ) -> float:
        """USD for one job: instance seconds at the price of ``kind`` (default: the kind
        this process runs on, ``MTB_COST_INSTANCE_KIND``) plus its storage and transfer.
        ``estimated_cost`` on submit passes the engine seconds expected from measured
        throughput, ``cost_usd`` on completion the ones its chunks took."""
        seconds = self.instance_seconds(words, engine_seconds, kind, priority)
        compute = seconds * self.kind(kind, priority).price_per_second
        per_word = self.storage_usd_per_word + self.transfer_usd_per_word
        return round(compute + max(0, words) * per_word, 10)

    # -- a day ---------------------------------------------------------------------

    def hourly_words(self, words_per_day: float) -> list[float]:
        """A day's words hour by hour on a diurnal curve (a cosine peaking at 14:00) whose
        busiest hour is ``MTB_COST_PEAK_TO_MEAN`` times the mean; the hours sum to the day."""
        ratio = self.settings.cost_peak_to_mean
        if not 1.0 <= ratio <= 2.0:
            raise ValueError(f"cost_peak_to_mean {ratio} outside [1, 2] (1: a flat day)")
        mean = words_per_day / 24.0
        return [mean * (1 + (ratio - 1) * math.cos(2 * math.pi * (h - 14) / 24)) for h in range(24)]

    def cost_per_day(
        self, words_per_day: int, cache_hit_rate: float = 0.0, kind: str = CPU
    ) -> CostRow:
        if kind == PROD_GPU:
            return self.deployment_cost(words_per_day, cache_hit_rate)
        if not 0.0 <= cache_hit_rate <= 1.0:
            raise ValueError(f"cache hit rate {cache_hit_rate} is not a fraction in [0, 1]")
        if words_per_day < 0:
            raise ValueError(f"words per day {words_per_day} < 0")
        k = self.kind(kind)
        rule = self.rules.get(kind, DEFAULT_RULES.get(kind, DEFAULT_RULES[CPU]))
        s = self.settings
        computed = words_per_day * (1.0 - cache_hit_rate)
        per_instance_hour = k.words_per_minute * 60.0 * rule.utilisation
        work_hours = computed / per_instance_hour
        # replicas are whole: each hour of the day's curve runs enough of them for its load
        needed = [math.ceil(w / per_instance_hour - 1e-9) for w in self.hourly_words(computed)]
        instances = max(rule.min_replicas, *needed, 1 if rule.scheduled_hours else 0)
        if rule.scale_to_zero:
            # up only while there is work, plus a cooldown after each busy period; the
            # hours a schedule holds replicas up are paid anyway and absorb their share
            busy = work_hours
            if computed > 0:
                busy += s.cost_active_periods_per_day * rule.idle_s / 3600.0
            hours = rule.scheduled_hours + busy * (1.0 - rule.scheduled_window / 24.0)
        else:
            hours = float(sum(max(rule.min_replicas, n) for n in needed))
            hours = max(hours, rule.min_replicas * 24.0 + rule.scheduled_hours)
        if instances:
            hours = min(hours, instances * 24.0)
        compute_usd = hours * k.price_per_hour
        storage_usd = (
            words_per_day
            * s.cost_stored_bytes_per_word
            / GB
            * (s.cost_storage_price_gb_month * s.cost_retention_days / DAYS_PER_MONTH)
        )
        transfer_usd = words_per_day * self.transfer_usd_per_word
        total = compute_usd + storage_usd + transfer_usd
        return CostRow(
            kind=kind,
            words_per_day=words_per_day,
            cache_hit_rate=cache_hit_rate,
            computed_words=round(computed),
            words_per_minute=k.words_per_minute,
            measured=k.measured,
            price_per_hour=k.price_per_hour,
            scaling=rule.describe(),
            instances=instances,
            instance_hours=hours,
            compute_usd=compute_usd,
            storage_usd=storage_usd,
            transfer_usd=transfer_usd,
            total_usd=total,
            usd_per_1k_words=total / words_per_day * 1000.0 if words_per_day else 0.0,
            source=k.source,
        )

    def deployment_cost(self, words_per_day: int, cache_hit_rate: float = 0.0) -> CostRow:
        """The prod-gpu overlay: the normal share of the words (``MTB_COST_NORMAL_SHARE``)
        on ``gpu-spot``, the rest (critical, high) on the warm on-demand ``gpu`` pool. Each
        pool pays its own rule: the premium its warm minimum, the spot pool its hours."""
        share = self.settings.cost_normal_share
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"cost_normal_share {share} is not a fraction in [0, 1]")
        normal = round(words_per_day * share)
        premium = self.cost_per_day(words_per_day - normal, cache_hit_rate, GPU)
        spot = self.cost_per_day(normal, cache_hit_rate, GPU_SPOT)
        hours = premium.instance_hours + spot.instance_hours
        compute = premium.compute_usd + spot.compute_usd
        total = premium.total_usd + spot.total_usd
        return CostRow(
            kind=PROD_GPU,
            words_per_day=words_per_day,
            cache_hit_rate=cache_hit_rate,
            computed_words=premium.computed_words + spot.computed_words,
            words_per_minute=premium.words_per_minute,
            measured=premium.measured and spot.measured,
            price_per_hour=compute / hours if hours else 0.0,
            scaling=f"premium gpu: {premium.scaling}; spot: {spot.scaling}",
            instances=premium.instances + spot.instances,
            instance_hours=hours,
            compute_usd=compute,
            storage_usd=premium.storage_usd + spot.storage_usd,
            transfer_usd=premium.transfer_usd + spot.transfer_usd,
            total_usd=total,
            usd_per_1k_words=total / words_per_day * 1000.0 if words_per_day else 0.0,
            source=f"{1 - share:.0%} of the words (critical, high) on gpu, {share:.0%} "
            f"(normal) on gpu-spot; {premium.source}",
        )

    def table(
        self,
        words_per_day_list: Iterable[int],
        cache_hit_rate: float = 0.0,
        kinds: Iterable[str] | None = None,
    ) -> list[CostRow]:
        """Rows for every volume on every kind (``cpu``, ``gpu``, ``gpu-spot``) and, when
        both GPU kinds are known, the ``prod-gpu`` deployment that combines them."""
        if kinds is not None:
            names = list(kinds)
        else:
            names = list(self.kinds)
            if GPU in self.kinds and GPU_SPOT in self.kinds:
                names.append(PROD_GPU)
        return [
            self.cost_per_day(words, cache_hit_rate, name)
            for words in words_per_day_list
            for name in names
        ]
