"""Grafana dashboards for mt-backend, generated from code (grafana-foundation-sdk):

    python -m dashboards.build           # writes dashboards/grafana/*.json
    python -m dashboards.build --check   # exit 1 when a committed file differs

Panels are declared once in ``DASHBOARDS`` (title, PromQL, unit, what must run for the
query to return data); tests read the same declarations: every expression's metric names
exist in the code or in Triton, and every panel returns series from the live Prometheus
after a workload (tests/functional/L0_dashboards). The expressions use the recording rules
of ``dashboards/rules/mtb.rules.yml`` where one exists.

``needs`` of a panel: ``api`` (``mtctl serve``, embedded or Kafka), ``triton`` (the API on
``MTB_INFERENCE=triton`` and Triton's metrics port scraped), ``worker`` (``mtctl worker``
exposing /metrics on ``MTB_METRICS_PORT``; the live test's Kafka workload also produces a
refused ingest message, so the dead-letter panel has a series).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent / "grafana"
DATASOURCE = "${datasource}"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class PanelSpec:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    needs: frozenset[str] = frozenset({"api"})
    description: str = ""


@dataclass(frozen=True)
class DashboardSpec:
    uid: str
    title: str
    file: str
    rows: tuple[tuple[str, tuple[PanelSpec, ...]], ...]
    tags: tuple[str, ...] = field(default=("mt-backend",))


def P(  # noqa: N802 - reads like a table below
    title: str,
    *queries: tuple[str, str] | str,
    unit: str = "short",
    kind: str = "timeseries",
    needs: tuple[str, ...] = ("api",),
    description: str = "",
) -> PanelSpec:
    qs = tuple(Query(q) if isinstance(q, str) else Query(*q) for q in queries)
    return PanelSpec(title, qs, unit, kind, frozenset(needs), description)


TRITON = ("api", "triton")

OVERVIEW = DashboardSpec(
    uid="mtb-overview",
    title="mt-backend / Overview",
    file="overview.json",
    rows=(
        (
            "Throughput and backlog",
            (
                P(
                    "Words per minute",
                    ("mtb:words_translated:per_minute_5m", "all pairs (5m rate)"),
                    ("sum(mtb_words_per_minute)", "last minute (gauge)"),
                    description="Alert MtbWordsPerMinuteLow: < 1000 while chunks wait.",
                ),
                P(
                    "Chunks waiting per priority",
                    ("priority:mtb_queue_depth:max", "{{priority}}"),
                    description="Alert MtbQueueDepthHigh: > 100 over all priorities.",
                ),
                P(
                    "Jobs submitted per second",
                    ("sum by (priority) (rate(mtb_jobs_submitted_total[5m]))", "{{priority}}"),
                    unit="reqps",
                ),
                P(
                    "Jobs ended per second",
                    ("sum by (status) (rate(mtb_jobs_finished_total[5m]))", "{{status}}"),
                    unit="reqps",
                ),
            ),
        ),
        (
            "Errors",
            (
                P(
                    "Error ratios",
                    ("mtb:job_failure_ratio:rate5m", "failed jobs"),
                    ("mtb:http_5xx_ratio:rate5m", "HTTP 5xx"),
                    unit="percentunit",
                    description="Alerts MtbErrorRateHigh / MtbHttpErrorRateHigh: > 5 %.",
                ),
                P(
                    "Errors by kind",
                    ("sum by (kind) (rate(mtb_errors_total[5m]))", "{{kind}}"),
                    unit="reqps",
                ),
                P(
                    "Dead letters by reason (10m)",
                    ("reason:mtb_dead_letters:increase10m", "{{reason}}"),
                    needs=("worker",),
                    description=(
                        "Ingest messages refused (reason: the API's error code) and chunks"
                        " failed for good (chunk_failed), on the dead-letter topic. Alerts"
                        " MtbDeadLetters / MtbChunksFailed."
                    ),
                ),
                P(
                    "HTTP requests by status",
                    ("sum by (status) (rate(mtb_http_requests_total[5m]))", "{{status}}"),
                    unit="reqps",
                ),
                P(
                    "HTTP p95 latency by route",
                    (
                        "histogram_quantile(0.95, sum by (route, le)"
                        " (rate(mtb_http_request_seconds_bucket[5m])))",
                        "{{route}}",
                    ),
                    unit="s",
                ),
            ),
        ),
        (
            "Targets",
            (
                P("Scrape targets up", ('up{job=~"mtb-.*|triton"}', "{{job}} {{instance}}")),
                P(
                    "Segments by protected-span outcome",
                    ("sum by (outcome) (rate(mtb_segments_protected_total[5m]))", "{{outcome}}"),
                    unit="reqps",
                ),
            ),
        ),
    ),
)

SLA = DashboardSpec(
    uid="mtb-sla",
    title="mt-backend / SLA per priority",
    file="sla.json",
    rows=(
        (
            "Job latency (submit -> completed)",
            tuple(
                P(
                    f"Job latency p{q}",
                    (
                        f"histogram_quantile(0.{q}, sum by (priority, le)"
                        " (rate(mtb_job_latency_seconds_bucket[5m])))",
                        "{{priority}}",
                    ),
                    unit="s",
                )
                for q in ("50", "95", "99")
            ),
        ),
        (
            "SLA: critical 30 s, high 5 min (error budget 1 %)",
            (
                P(
                    "Jobs over their SLA (5m)",
                    ("priority:mtb_job_sla_miss_ratio:rate5m", "{{priority}} > {{sla_seconds}} s"),
                    unit="percentunit",
                ),
                P(
                    "SLA burn rate (1h)",
                    (
                        "priority:mtb_job_sla_miss_ratio:rate1h / 0.01",
                        "{{priority}} (x budget)",
                    ),
                    description="Alert MtbSlaBurnFast: > 14.4x on both 5m and 1h windows.",
                ),
                P(
                    "Inference call p95 by priority",
                    (
                        "histogram_quantile(0.95, sum by (priority, le)"
                        " (rate(mtb_inference_seconds_bucket[5m])))",
                        "{{priority}}",
                    ),
                    unit="s",
                ),
            ),
        ),
    ),
)

TRITON_DASH = DashboardSpec(
    uid="mtb-triton",
    title="mt-backend / Triton batching, queue and compute",
    file="triton.json",
    rows=(
        (
            "Server (Triton's metrics port)",
            (
                P(
                    "Requests per execution (batching)",
                    ("model:nv_inference_batch_ratio:rate5m", "{{model}}"),
                    needs=TRITON,
                ),
                P(
                    "Queue vs compute time per request",
                    ("model:nv_inference_queue_ms:avg5m", "queue {{model}}"),
                    ("model:nv_inference_compute_ms:avg5m", "compute {{model}}"),
                    unit="ms",
                    needs=TRITON,
                    description="Alert MtbTritonQueueTimeHigh: queue > 2 s per request.",
                ),
                P(
                    "Pending requests",
                    ("sum by (model) (nv_inference_pending_request_count)", "{{model}}"),
                    needs=TRITON,
                ),
                P(
                    "Successful requests per second",
                    ("sum by (model) (rate(nv_inference_request_success[5m]))", "{{model}}"),
                    unit="reqps",
                    needs=TRITON,
                ),
                P(
                    "Segments per second by pair (model.py)",
                    ("sum by (pair) (rate(mtb_translator_segments_total[5m]))", "{{pair}}"),
                    unit="reqps",
                    needs=TRITON,
                ),
                P(
                    "CPU and memory",
                    ("max by (instance) (nv_cpu_utilization)", "CPU {{instance}}"),
                    unit="percentunit",
                    needs=TRITON,
                ),
            ),
        ),
        (
            "Client (control plane)",
            (
                P(
                    "Triton requests by outcome",
                    ("sum by (outcome) (rate(mtb_triton_requests_total[5m]))", "{{outcome}}"),
                    unit="reqps",
                    needs=TRITON,
                ),
                P(
                    "Triton request p95 by priority",
                    (
                        "histogram_quantile(0.95, sum by (priority, le)"
                        " (rate(mtb_triton_request_seconds_bucket[5m])))",
                        "{{priority}}",
                    ),
                    unit="s",
                    needs=TRITON,
                ),
                P(
                    "Circuit breaker and readiness",
                    ("max by (instance) (mtb_triton_circuit_open)", "circuit {{instance}}"),
                    ("min by (instance) (mtb_triton_ready)", "ready {{instance}}"),
                    needs=TRITON,
                    description="Circuit: 0 closed, 0.5 half-open, 1 open (MtbTritonCircuitOpen).",
                ),
                P(
                    "Fallback to the in-process engine",
                    ("sum(rate(mtb_triton_fallback_total[5m]))", "calls/s"),
                    unit="reqps",
                    needs=TRITON,
                ),
                P(
                    "Segments per inference call (p50, p95)",
                    (
                        "histogram_quantile(0.5, sum by (le)"
                        " (rate(mtb_inference_batch_segments_bucket[5m])))",
                        "p50",
                    ),
                    (
                        "histogram_quantile(0.95, sum by (le)"
                        " (rate(mtb_inference_batch_segments_bucket[5m])))",
                        "p95",
                    ),
                ),
            ),
        ),
    ),
)

KAFKA = DashboardSpec(
    uid="mtb-kafka",
    title="mt-backend / Kafka lag per topic",
    file="kafka.json",
    rows=(
        (
            "Consumer group lag (chunks.<priority> topics; embedded: in-process queue)",
            (
                P(
                    "Lag per priority topic",
                    ("priority:mtb_queue_depth:max", "chunks.{{priority}}"),
                ),
                P(
                    "Lag change per second (10m)",
                    ("deriv(priority:mtb_queue_depth:max[10m])", "chunks.{{priority}}"),
                    description="Alert MtbKafkaConsumerLagGrowing: > 0 for 10 minutes.",
                ),
                P("Total lag", ("mtb:queue_depth:total", "all topics"), kind="stat"),
                P(
                    "Worker backlog (buffer + own partitions)",
                    (
                        'sum by (instance, priority) (mtb_queue_depth{job="mtb-worker"})',
                        "{{instance}} {{priority}}",
                    ),
                    needs=("worker",),
                ),
            ),
        ),
    ),
)

CACHE = DashboardSpec(
    uid="mtb-cache",
    title="mt-backend / Segment cache",
    file="cache.json",
    rows=(
        (
            "Segment cache",
            (
                P(
                    "Hit ratio",
                    ("mtb:cache_hit_ratio:rate5m", "5m"),
                    ("max by (instance) (mtb_cache_hit_ratio)", "since start {{instance}}"),
                    unit="percentunit",
                ),
                P(
                    "Lookups per second",
                    ("sum(rate(mtb_cache_hits_total[5m]))", "hits"),
                    ("sum(rate(mtb_cache_misses_total[5m]))", "misses"),
                    unit="reqps",
                ),
                P(
                    "Segments sent to the engine per second",
                    ("sum by (pair) (rate(mtb_segments_translated_total[5m]))", "{{pair}}"),
                    unit="reqps",
                ),
            ),
        ),
    ),
)

COST = DashboardSpec(
    uid="mtb-cost",
    title="mt-backend / Cost",
    file="cost.json",
    rows=(
        (
            "Cost (the cost model: instance time at MTB_PRICE_*, storage, transfer)",
            (
                P(
                    "Cost of the last hour",
                    ("mtb:cost_usd:increase1h", "USD"),
                    unit="currencyUSD",
                    kind="stat",
                    description="Alert MtbHourlyCostHigh: > 500 USD.",
                ),
                P(
                    "Cost rate (USD per hour)",
                    ("sum(rate(mtb_cost_usd_total[5m])) * 3600", "USD/h"),
                    unit="currencyUSD",
                ),
                P(
                    "Cost per 1,000 words",
                    (
                        "sum(rate(mtb_cost_usd_total[5m]))"
                        " / sum(rate(mtb_words_translated_total[5m])) * 1000",
                        "USD / 1k words",
                    ),
                    unit="currencyUSD",
                ),
                P(
                    "Words per minute by pair",
                    ("pair:mtb_words_translated:per_minute_5m", "{{pair}}"),
                ),
            ),
        ),
    ),
)

DASHBOARDS: tuple[DashboardSpec, ...] = (OVERVIEW, SLA, TRITON_DASH, KAFKA, CACHE, COST)


def panels() -> Iterator[tuple[DashboardSpec, PanelSpec]]:
    for dash in DASHBOARDS:
        for _, row_panels in dash.rows:
            for panel in row_panels:
                yield dash, panel


def build_dashboard(spec: DashboardSpec) -> str:
    """One dashboard's JSON text (sorted keys: stable, diffable)."""
    from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    ds = DataSourceRef(type_val="prometheus", uid=DATASOURCE)
    board = (
        dashboard.Dashboard(spec.title)
        .uid(spec.uid)
        .tags(list(spec.tags))
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("utc")
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
    )
    panel_id = 1
    for row_title, row_panels in spec.rows:
        board = board.with_row(dashboard.Row(row_title).id(panel_id))
        panel_id += 1
        for p in row_panels:
            builder = stat.Panel() if p.kind == "stat" else timeseries.Panel()
            builder = (
                builder.id(panel_id)
                .title(p.title)
                .datasource(ds)
                .unit(p.unit)
                .height(8)
                .span(6 if p.kind == "stat" else 12)
            )
            if p.description:
                builder = builder.description(p.description)
            for i, q in enumerate(p.queries):
                target = prometheus.Dataquery().expr(q.expr).ref_id(chr(ord("A") + i))
                if q.legend:
                    target = target.legend_format(q.legend)
                builder = builder.with_target(target.datasource(ds))
            board = board.with_panel(builder)
            panel_id += 1
    return JSONEncoder(sort_keys=True, indent=2).encode(board.build()) + "\n"


def build_all() -> dict[str, str]:
    """file name -> JSON text of every dashboard."""
    return {spec.file: build_dashboard(spec) for spec in DASHBOARDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.build", description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on drift")
    args = parser.parse_args(argv)
    built = build_all()
    drift = []
    for name, text in built.items():
        path = args.out / name
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        drift.append(name)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check and drift:
        print(f"out of date: {', '.join(drift)} (run python -m dashboards.build)", file=sys.stderr)
        return 1
    n_panels = sum(1 for _ in panels())
    print(
        f"{len(built)} dashboards, {n_panels} panels in {args.out}"
        + (f" ({len(drift)} written)" if drift and not args.check else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
