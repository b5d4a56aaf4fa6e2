"""``mtctl trace JOB_ID``: where did a job's time go? Fetches the job's trace from Jaeger's
query API (``MTB_JAEGER_URL``; the traces whose spans carry ``mtb.job_id=JOB_ID``) and
prints the time per stage as a table plus a text waterfall of its spans.

Stages come from span names (and a few OpenTelemetry attributes): the queue wait per
priority (the submit span's end to each ``chunk.translate`` span's start), the API
(``job.submit``, HTTP server spans), the worker's chunks, inference calls, Triton's queue
and compute (its ``QUEUE_START``/``COMPUTE_START``/``COMPUTE_END`` span events), DB,
cache, Kafka, assembly and webhook spans; spans of any other name are grouped by name.
Stages nest (a chunk contains its inference calls), so their times do not add up.

The pure functions (``spans_from_jaeger``, ``stage_rows``, ``render_table``,
``render_waterfall``) take Jaeger's v1 JSON (``GET /api/traces``), so benchmarks can reuse
them on traces they fetched.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SERVICE_NAME = "mt-backend"  # control_plane.tracing's resource service.name
JOB_ID_TAG = "mtb.job_id"


class TraceError(RuntimeError):
    """A message for the user (no MTB_JAEGER_URL, Jaeger unreachable, no trace)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    service: str
    start_us: int
    duration_us: int
    tags: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[int, str]] = field(default_factory=list)  # (timestamp us, name)

    @property
    def end_us(self) -> int:
        return self.start_us + self.duration_us


# ------------------------------------------------------------------ Jaeger's API


def _get_json(url: str, timeout: float) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read().decode())
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")[:300]
        raise TraceError(f"Jaeger answered {exc.code} for {url}: {body}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TraceError(f"Jaeger is unreachable at {url}: {reason}") from exc
    except ValueError as exc:
        raise TraceError(f"Jaeger sent something that is not JSON for {url}") from exc


def fetch_job_traces(
    base_url: str,
    job_id: str,
    *,
    service: str = SERVICE_NAME,
    lookback_s: float = 7 * 86400,
    limit: int = 20,
    timeout: float = 10.0,
) -> list[dict[str, Any]]:
    """Jaeger v1 trace objects whose spans carry ``mtb.job_id=job_id`` (tag search of the
    v1-compatible HTTP API that Jaeger v2 serves). [] when there are none."""
    now_us = int(time.time() * 1e6)
    query = urllib.parse.urlencode(
        {
            "service": service,
            "tags": json.dumps({JOB_ID_TAG: job_id}),
            "start": now_us - int(lookback_s * 1e6),
            "end": now_us + 60_000_000,  # a minute of clock skew between hosts
            "limit": limit,
        }
    )
    body = _get_json(f"{base_url.rstrip('/')}/api/traces?{query}", timeout)
    if body.get("errors"):
        raise TraceError(f"Jaeger reported errors: {body['errors']}")
    return list(body.get("data") or [])


# ------------------------------------------------------------------ model


def _tag_value(tag: Mapping[str, Any]) -> Any:
    value = tag.get("value")
    if tag.get("type") == "int64" and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def spans_from_jaeger(traces: Iterable[Mapping[str, Any]]) -> list[Span]:
    """Every span of the given v1 traces (a job may own several traces), start order."""
    spans: list[Span] = []
    seen: set[tuple[str, str]] = set()
    for tr in traces:
        processes = tr.get("processes") or {}
        for s in tr.get("spans") or []:
            key = (s["traceID"], s["spanID"])
            if key in seen:
                continue
            seen.add(key)
            parent = next(
                (r["spanID"] for r in s.get("references") or [] if r.get("refType") == "CHILD_OF"),
                None,
            )
            events = []
            for log in s.get("logs") or []:
                fields = {f.get("key"): f.get("value") for f in log.get("fields") or []}
                if "event" in fields:
                    events.append((int(log.get("timestamp", 0)), str(fields["event"])))
            proc = processes.get(s.get("processID"), {})
            spans.append(
                Span(
                    trace_id=s["traceID"],
                    span_id=s["spanID"],
                    parent_id=parent,
                    name=s.get("operationName", "?"),
                    service=proc.get("serviceName", "?"),
                    start_us=int(s.get("startTime", 0)),
                    duration_us=int(s.get("duration", 0)),
                    tags={t["key"]: _tag_value(t) for t in s.get("tags") or []},
                    events=sorted(events),
                )
            )
    spans.sort(key=lambda sp: (sp.start_us, -sp.duration_us))
    return spans


# ------------------------------------------------------------------ stages


def stage_of(span: Span) -> str:
    """The stage a span's duration counts for (``span: NAME`` when none fits)."""
    name, low, tags = span.name, span.name.lower(), span.tags
    if name == "job.submit":
        return "API: job.submit"
    if "http.method" in tags or "http.request.method" in tags:
        if tags.get("span.kind") in (None, "server"):
            return "API: HTTP"
    if name == "chunk.translate":
        return "worker: chunk.translate"
    if "db.system" in tags or low.startswith(("db.", "sql", "select", "insert", "update")):
        return "DB"
    if low.startswith("cache"):
        return "cache"
    if "triton" in span.service.lower():
        return "Triton: compute" if low == "compute" else f"Triton: {name}"
    if low.startswith("inference"):
        return "inference"
    if "messaging.system" in tags or low.startswith(("kafka", "publish", "consume")):
        return "Kafka"
    if "assembl" in low or low.startswith(("job.complete", "job.finish", "result")):
        return "assembly"
    if low.startswith(("webhook", "callback")):
        return "webhook"
    return f"span: {name}"


@dataclass
class StageRow:
    stage: str
    durations_us: list[int]

    @property
    def count(self) -> int:
        return len(self.durations_us)

    @property
    def total_us(self) -> int:
        return sum(self.durations_us)

    @property
    def max_us(self) -> int:
        return max(self.durations_us) if self.durations_us else 0


def _event_gap(span: Span, first: str, second: str) -> int | None:
    times = {name: ts for ts, name in reversed(span.events)}  # first occurrence wins
    if first in times and second in times and times[second] >= times[first]:
        return times[second] - times[first]
    return None


def stage_rows(spans: list[Span]) -> list[StageRow]:
    """Rows in order of first appearance: queue waits first, then spans' stages."""
    rows: dict[str, list[int]] = {}
    submits = [s for s in spans if s.name == "job.submit"]
    submit_end = max((s.end_us for s in submits), default=None)
    for s in spans:
        if s.name == "chunk.translate" and submit_end is not None:
            priority = s.tags.get("mtb.priority") or "?"
            rows.setdefault(f"queue wait [{priority}]", []).append(max(0, s.start_us - submit_end))
    # Triton (mode=opentelemetry, level=TIMESTAMPS) writes a model span with REQUEST_START
    # and QUEUE_START events and a "compute" child span with COMPUTE_START...COMPUTE_END;
    # older builds put every event on one span. Queue time: QUEUE_START to COMPUTE_START,
    # the latter the compute child's start when there is one. Compute counts once.
    compute_child = {s.parent_id: s for s in spans if s.name.lower() == "compute"}
    has_compute_child = set(compute_child)
    for s in spans:
        rows.setdefault(stage_of(s), []).append(s.duration_us)
        queued = _event_gap(s, "QUEUE_START", "COMPUTE_START")
        if queued is None and s.span_id in compute_child:
            start = next((ts for ts, name in s.events if name == "QUEUE_START"), None)
            if start is not None and compute_child[s.span_id].start_us >= start:
                queued = compute_child[s.span_id].start_us - start
        if queued is not None:
            rows.setdefault("Triton: queue", []).append(queued)
        computed = _event_gap(s, "COMPUTE_START", "COMPUTE_END")
        own = s.name.lower() == "compute"  # already counted by its duration
        if computed is not None and not own and s.span_id not in has_compute_child:
            rows.setdefault("Triton: compute", []).append(computed)
    return [StageRow(stage, durations) for stage, durations in rows.items()]


# ------------------------------------------------------------------ rendering


def _ms(us: float) -> str:
    return f"{us / 1000:.1f}"


def trace_window(spans: list[Span]) -> tuple[int, int]:
    """(first start, last end) in microseconds."""
    return min(s.start_us for s in spans), max(s.end_us for s in spans)


def render_table(rows: list[StageRow], wall_us: int) -> str:
    width = max([len("stage"), *(len(r.stage) for r in rows)])
    head = f"{'stage':<{width}}  {'spans':>5}  {'total ms':>10}  {'mean ms':>9}  {'max ms':>9}"
    lines = [head + f"  {'% trace':>7}", "-" * (len(head) + 9)]
    for r in rows:
        share = 100.0 * r.total_us / wall_us if wall_us > 0 else 0.0
        lines.append(
            f"{r.stage:<{width}}  {r.count:>5}  {_ms(r.total_us):>10}  "
            f"{_ms(r.total_us / max(1, r.count)):>9}  {_ms(r.max_us):>9}  {share:>7.1f}"
        )
    return "\n".join(lines)


def _tree_order(spans: list[Span]) -> list[tuple[int, Span]]:
    """(depth, span) depth first, children by start time; spans whose parent is not in
    the set (another trace, not exported) are roots."""
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[Span]] = {}
    for s in spans:
        parent = s.parent_id if s.parent_id in ids else None
        children.setdefault(parent, []).append(s)
    out: list[tuple[int, Span]] = []

    def walk(parent: str | None, depth: int) -> None:
        for child in sorted(children.get(parent, []), key=lambda c: (c.start_us, -c.duration_us)):
            out.append((depth, child))
            walk(child.span_id, depth + 1)

    walk(None, 0)
    return out


def render_waterfall(spans: list[Span], width: int = 50, label_width: int = 40) -> str:
    """One line per span: indented name, start offset and duration (ms), and a bar of
    ``width`` columns scaled to the trace's duration."""
    t0, t1 = trace_window(spans)
    wall = max(1, t1 - t0)
    services = {s.service for s in spans}
    header = (
        f"{'span':<{label_width}}  {'start ms':>9}  {'dur ms':>9}  "
        f"|0 ms{'':{max(0, width - 4 - len(_ms(wall)) - 3)}}{_ms(wall)} ms|"
    )
    lines = [header]
    for depth, s in _tree_order(spans):
        label = "  " * depth + s.name + (f" [{s.service}]" if len(services) > 1 else "")
        if len(label) > label_width:
            label = label[: label_width - 1] + "~"
        col = min(width - 1, int((s.start_us - t0) * width / wall))
        length = max(1, round(s.duration_us * width / wall))
        length = min(length, width - col)
        bar = " " * col + "#" * length + " " * (width - col - length)
        lines.append(
            f"{label:<{label_width}}  {_ms(s.start_us - t0):>9}  {_ms(s.duration_us):>9}  |{bar}|"
        )
    return "\n".join(lines)


def render_report(job_id: str, spans: list[Span], width: int = 50) -> str:
    t0, t1 = trace_window(spans)
    trace_ids = sorted({s.trace_id for s in spans})
    services = sorted({s.service for s in spans})
    head = (
        f"job {job_id}: {len(trace_ids)} trace(s) {', '.join(trace_ids)}\n"
        f"{len(spans)} spans from {', '.join(services)}; {_ms(t1 - t0)} ms from the first"
        " span's start to the last span's end"
    )
    table = render_table(stage_rows(spans), t1 - t0)
    note = "(stages nest: a chunk's time includes its inference calls)"
    return f"{head}\n\n{table}\n{note}\n\n{render_waterfall(spans, width)}\n"


def report_json(job_id: str, spans: list[Span]) -> dict[str, Any]:
    t0, t1 = trace_window(spans)
    return {
        "job_id": job_id,
        "trace_ids": sorted({s.trace_id for s in spans}),
        "duration_ms": (t1 - t0) / 1000,
        "stages": [
            {"stage": r.stage, "spans": r.count, "total_ms": r.total_us / 1000,
             "max_ms": r.max_us / 1000}
            for r in stage_rows(spans)
        ],
        "spans": [
            {"depth": depth, "name": s.name, "service": s.service, "span_id": s.span_id,
             "parent_id": s.parent_id, "start_ms": (s.start_us - t0) / 1000,
             "duration_ms": s.duration_us / 1000, "attributes": s.tags}
            for depth, s in _tree_order(spans)
        ],
    }  # fmt: skip


# ------------------------------------------------------------------ command


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trace",
        help="where a job's time went: its trace from Jaeger as stages and a waterfall",
        description="Fetch the job's trace from Jaeger's query API (MTB_JAEGER_URL, which"
        " `make services` writes into .services/env) by the span attribute mtb.job_id and"
        " print the time per stage and a waterfall of its spans. The service must run"
        " with MTB_TRACING=otlp and MTB_OTLP_ENDPOINT pointing at that Jaeger.",
    )
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--jaeger-url", help="query API base URL (default: $MTB_JAEGER_URL)")
    p.add_argument("--service", default=SERVICE_NAME, help="service name to search under")
    p.add_argument(
        "--lookback-hours", type=float, default=168.0, help="how far back to search (168)"
    )
    p.add_argument("--width", type=int, default=50, help="waterfall bar columns (50)")
    p.add_argument("--json", action="store_true", help="stages and spans as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    base = (args.jaeger_url or os.environ.get("MTB_JAEGER_URL", "")).strip()
    try:
        if not base:
            raise TraceError(
                "no Jaeger: set MTB_JAEGER_URL (`make services` starts Jaeger and writes it"
                " into .services/env: set -a; . .services/env; set +a) or pass --jaeger-url",
                code=2,
            )
        traces = fetch_job_traces(
            base, args.job_id, service=args.service, lookback_s=args.lookback_hours * 3600
        )
        spans = spans_from_jaeger(traces)
        if not spans:
            raise TraceError(
                f"no trace for job {args.job_id} in Jaeger at {base} (service {args.service},"
                f" last {args.lookback_hours:g} h): was the service started with"
                " MTB_TRACING=otlp and MTB_OTLP_ENDPOINT of this Jaeger, and was the job"
                " sampled? Jaeger's in-memory store also forgets everything on restart."
            )
    except TraceError as exc:
        print(f"mtctl trace: {exc}", file=sys.stderr)
        return exc.code
    if args.json:
        print(json.dumps(report_json(args.job_id, spans), indent=2))
    else:
        sys.stdout.write(render_report(args.job_id, spans, max(10, args.width)))
    return 0
