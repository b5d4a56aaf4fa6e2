"""``mtctl cost``: what 10k / 100k / 1M words a day cost, from measured speed.

The same :class:`~control_plane.capacity.cost.CostModel` that prices every job's
``estimated_cost`` and ``cost_usd``: measured words/min per instance kind from
``bench/results``, prices and storage/transfer from settings (``MTB_PRICE_*``,
``MTB_SPOT_DISCOUNT``, ``MTB_COST_*``), warm minimum or scale-to-zero from the scaling
policy. The table is Markdown so a run can go into the README as printed.

    mtctl cost --words-per-day 10000,100000,1000000 [--cache-hit-rate 0.3] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

DEFAULT_VOLUMES = "10000,100000,1000000"
_SUFFIX = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


def parse_volumes(raw: str) -> list[int]:
    """``10000,100k,1M`` -> ``[10000, 100000, 1000000]``."""
    out = []
    for part in raw.split(","):
        part = part.strip().replace("_", "").lower()
        if not part:
            continue
        scale = _SUFFIX.get(part[-1], 1)
        number = part[:-1] if part[-1] in _SUFFIX else part
        try:
            figure = float(number) * scale
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of words: {part!r}") from None
        if not math.isfinite(figure):  # inf, nan, 1e400: round() would raise OverflowError
            raise argparse.ArgumentTypeError(f"not a finite number of words: {part!r}")
        value = round(figure)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"words per day must be > 0: {part!r}")
        out.append(value)
    if not out:
        raise argparse.ArgumentTypeError("no words-per-day figure given")
    return out


def _fraction(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a fraction in [0, 1] (0.3 = 30%), got {raw}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cost",
        help="cost per day of translating N words a day, from measured speed",
        description="The cost table per instance kind (CPU on demand, GPU on demand, GPU "
        "spot) from measured words/min in bench/results and the prices in settings "
        "(MTB_PRICE_CPU_PER_HOUR, MTB_PRICE_GPU_PER_HOUR, MTB_SPOT_DISCOUNT, MTB_COST_*). "
        "Kinds without a measured figure are marked 'estimate'.",
    )
    p.add_argument(
        "--words-per-day",
        type=parse_volumes,
        default=None,
        metavar="N,N,...",
        help=f"daily volumes, comma-separated; k/M suffixes allowed (default {DEFAULT_VOLUMES})",
    )
    p.add_argument(
        "--cache-hit-rate",
        type=_fraction,
        default=None,
        metavar="F",
        help="share of words served from the translation cache, 0..1: they cost no compute "
        "(default MTB_COST_CACHE_HIT_RATE, 0)",
    )
    p.add_argument("--kinds", default=None, help="comma-separated kinds (default: all)")
    p.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help="bench results to read words/min from (default MTB_COST_RESULTS_DIR: bench/results)",
    )
    p.add_argument(
        "--policy",
        type=Path,
        default=None,
        help="scaling policy for warm minimums (default k8s/scaling-policy.yaml)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _money(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:,.2f}"
    return f"{x:.2g}" if abs(x) < 0.001 else f"{x:.4f}".rstrip("0")


def render(model, rows, candidates, results_dir: Path) -> str:  # noqa: ANN001
    """The Markdown report: rates and their sources, then the table."""
    s = model.settings
    hit = rows[0].cache_hit_rate if rows else 0.0
    lines = [
        f"Cost per day from {results_dir} (cache hit rate {hit:.0%}; storage "
        f"{s.cost_stored_bytes_per_word:g} B/word kept {s.cost_retention_days:g} days at "
        f"${s.cost_storage_price_gb_month:g}/GB-month; transfer "
        f"{s.cost_transfer_bytes_per_word:g} B/word at ${s.cost_transfer_price_gb:g}/GB)",
        "",
        "| kind | words/min per instance | $/h | rate | scaling |",
        "|---|---:|---:|---|---|",
    ]
    for name, k in model.kinds.items():
        rule = model.rules.get(name)
        status = "measured" if k.measured else "**estimate**"
        lines.append(
            f"| {name} | {k.words_per_minute:,.0f} | {k.price_per_hour:.2f} | {status} | "
            f"{rule.describe() if rule else ''} |"
        )
    lines += ["", "Sources:"]
    for name, k in model.kinds.items():
        lines.append(f"- {name}: {k.source}")
    for name, rule in model.rules.items():
        lines.append(f"- {name} scaling: {rule.source}")
    if any(r.kind == "prod-gpu" for r in rows):
        lines.append(
            f"- prod-gpu: the prod-gpu overlay - critical and high work on gpu (warm), the "
            f"normal share of the words ({s.cost_normal_share:.0%}, MTB_COST_NORMAL_SHARE) "
            "on gpu-spot"
        )
    if len(candidates) > 1:
        lines.append("- other CPU figures found (not used):")
        lines += [f"  - {c.source}" for c in candidates[1:]]
    lines += [
        "",
        "| words/day | kind | instances | instance-h/day | compute $ | storage $ | "
        "transfer $ | total $/day | $/1k words |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        kind = r.kind if r.measured else f"{r.kind} (estimate)"
        lines.append(
            f"| {r.words_per_day:,} | {kind} | {r.instances} | {r.instance_hours:.1f} | "
            f"{_money(r.compute_usd)} | {_money(r.storage_usd)} | {_money(r.transfer_usd)} | "
            f"{_money(r.total_usd)} | {_money(r.usd_per_1k_words)} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from control_plane.capacity.cost import CostModel
    from control_plane.capacity.rates import cpu_candidates
    from control_plane.settings import Settings

    settings = Settings.from_env()
    results_dir = args.results_dir if args.results_dir is not None else settings.cost_results_dir
    model = CostModel.from_settings(settings, results_dir, args.policy)
    volumes = args.words_per_day or parse_volumes(DEFAULT_VOLUMES)
    hit = args.cache_hit_rate if args.cache_hit_rate is not None else settings.cost_cache_hit_rate
    kinds = [k.strip() for k in args.kinds.split(",")] if args.kinds else None
    try:
        rows = model.table(volumes, hit, kinds)
    except ValueError as exc:
        print(f"mtctl cost: {exc}", file=sys.stderr)
        return 2
    candidates = cpu_candidates(results_dir)
    if args.json:
        doc = {
            "results_dir": str(results_dir),
            "cache_hit_rate": hit,
            "kinds": {n: asdict(k) for n, k in model.kinds.items()},
            "scaling": {n: {**asdict(r), "rule": r.describe()} for n, r in model.rules.items()},
            "cpu_candidates": [asdict(c) for c in candidates],
            "rows": [r.as_dict() for r in rows],
        }
        print(json.dumps(doc, indent=2))
        return 0
    print(render(model, rows, candidates, results_dir))
    return 0
