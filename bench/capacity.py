"""``python -m bench capacity``: a simulated day of traffic at 10k, 1M and 100M words/day
through the scaling policy (k8s/scaling-policy.yaml) at the cost model's per-replica
speeds: replicas over time, SLA compliance per priority, words/min, GPU-hours and cost per
day, and a few policy variants side by side (bench/results/capacity.{json,md,png}).

``--replay``: also check the simulator's model of a replica against the real local stack
(bench/capacity_replay.py; bench/results/capacity_replay.{json,md}); ``--replay-only``:
only that.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.common import RESULTS, machine


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m bench capacity", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--replay", action="store_true", help="also replay a trace on the local stack")
    ap.add_argument("--replay-only", action="store_true", help="only the replay")
    ap.add_argument("--no-variants", action="store_true", help="the committed policy only")
    ap.add_argument("--seconds", type=float, default=300.0, help="replay: trace length")
    ap.add_argument("--load", type=float, default=0.3, help="replay: share of the calibrated speed")
    ap.add_argument("--jobs", type=int, default=400, help="replay: at most this many jobs")
    ap.add_argument("--probes", type=int, default=15, help="replay: small jobs for the latency")
    ap.add_argument("--calibration-words", type=int, default=24_000)
    ap.add_argument("--settle", type=float, default=8.0, help="replay: s for the rebalance")
    ap.add_argument("--timeout", type=float, default=1200.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--call-cost",
        action="store_true",
        help="replay: model an engine call's cost measured from ~300-word jobs (an "
        "experiment: it made the match worse; results to capacity_replay_callcost.*)",
    )
    return ap


def run_replay(args: argparse.Namespace) -> int:
    from bench.capacity_replay import replay, table
    from control_plane.settings import Settings
    from export.provision import ensure_default_models

    settings = Settings.from_env()
    ensure_default_models(Path(settings.model_dir))
    report = replay(args, str(settings.model_dir))
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "capacity_replay_callcost" if args.call_cost else "capacity_replay"
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = table(report)
    (RESULTS / f"{name}.md").write_text(text + "\n")
    print(text)
    return 0


def _sla_cell(day: dict, prio: str) -> str:
    row = day["sla"].get(prio, {})
    if "within_sla" in row:
        return f"{row['within_sla']:.2%} (p99 {row['p99_s']} s)"
    return f"p50 {row.get('p50_s')} s, p99 {row.get('p99_s')} s" if row else "-"


def run_days(args: argparse.Namespace) -> int:
    from bench.capacity_day import VARIANTS, VOLUMES, policy_data, run_day, variant
    from control_plane.capacity.cost import CostModel
    from control_plane.capacity.policy import load_policy
    from control_plane.capacity.rates import InstanceKind
    from control_plane.settings import Settings

    settings = Settings.from_env()
    model = CostModel.from_settings(settings)
    policy = load_policy()
    days = {}
    for words in VOLUMES:
        day = run_day(policy, model, words, args.seed)
        days[str(words)] = day
        print(f"  {words:>11,} words/day: GPU-hours {day['gpu_hours_total']}, "
              f"${day['cost_per_day_usd']}/day, critical {_sla_cell(day, 'critical')}, "
              f"high {_sla_cell(day, 'high')}")  # fmt: skip
    variants = []
    if not args.no_variants:
        data = policy_data()
        for name, changes in VARIANTS.items():
            for words in (1_000_000, 100_000_000):
                day = run_day(variant(data, changes), model, words, args.seed)
                day.pop("series")
                variants.append({"variant": name, "changes": changes, **day})
        # the GPU figure is an estimate: the committed policy with a GPU 10x slower
        slow_kinds = dict(model.kinds)
        for k in ("gpu", "gpu-spot"):
            g = model.kind(k)
            slow_kinds[k] = InstanceKind(g.name, g.words_per_minute / 10, g.price_per_hour,
                                         g.gpu, False, "estimate / 10")  # fmt: skip
        slow = CostModel(slow_kinds, settings, model.rules)
        day = run_day(policy, slow, 100_000_000, args.seed)
        day.pop("series")
        variants.append({"variant": "policy as committed, GPU 10x slower than the estimate",
                         "changes": {}, **day})  # fmt: skip
    kinds = {k: {"words_per_minute": model.kind(k).words_per_minute,
                 "price_per_hour": model.kind(k).price_per_hour,
                 "measured": model.kind(k).measured, "source": model.kind(k).source}
             for k in ("gpu", "gpu-spot")}  # fmt: skip
    report = {
        "section": "capacity",
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "kinds": kinds,
        "policy": str(Path("k8s/scaling-policy.yaml")),
        "days": days,
        "variants": variants,
    }
    plot(days, RESULTS / "capacity.png")
    for d in days.values():  # kept in the JSON every 5 minutes (the plot has every minute)
        d["series"] = {k: v[::5] for k, v in d["series"].items()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "capacity.json").write_text(json.dumps(report, indent=1) + "\n")
    text = table(report)
    (RESULTS / "capacity.md").write_text(text + "\n")
    print(text)
    return 0


def table(report: dict) -> str:
    gpu = report["kinds"]["gpu"]
    est = "measured" if gpu["measured"] else "an ESTIMATE, not measured"
    rows = [
        f"Simulated day (k8s/scaling-policy.yaml, seed 1, a weekday), GPU replica "
        f"{gpu['words_per_minute']:,.0f} words/min ({est}: {gpu['source']}); "
        f"on-demand ${gpu['price_per_hour']}/h, "
        f"spot ${report['kinds']['gpu-spot']['price_per_hour']}/h. "
        f"Simulated on {report['machine']['cpu']}, {report['date']}.",
        "",
        "| words/day | jobs | critical < 30 s | high < 5 min | normal | peak words/min "
        "| replicas max (worker c/h/n, triton premium/spot) | GPU-hours | cost/day |",
        "|---:|---:|---|---|---|---:|---|---:|---:|",
    ]
    for words, d in report["days"].items():
        r = d["replicas"]
        reps = (f"{r['worker-critical']['max']}/{r['worker-high']['max']}/"
                f"{r['worker-normal']['max']}, {r['triton-premium']['max']}/"
                f"{r['triton-spot']['max']}")  # fmt: skip
        rows.append(
            f"| {int(words):,} | {d['traffic']['jobs']:,} | {_sla_cell(d, 'critical')} | "
            f"{_sla_cell(d, 'high')} | {_sla_cell(d, 'normal')} | "
            f"{d['words_per_min']['peak_minute']:,} | {reps} | {d['gpu_hours_total']} | "
            f"${d['cost_per_day_usd']:,.2f} |"
        )
    if report["variants"]:
        rows += ["", "Policy variants:", "",
                 "| variant | words/day | critical < 30 s | high < 5 min | normal p99 "
                 "| GPU-hours (premium + spot) | cost/day |",
                 "|---|---:|---|---|---:|---:|---:|"]  # fmt: skip
        for v in report["variants"]:
            g = v["gpu_hours"]
            rows.append(
                f"| {v['variant']} | {v['words_per_day']:,} | {_sla_cell(v, 'critical')} | "
                f"{_sla_cell(v, 'high')} | {v['sla']['normal'].get('p99_s')} s | "
                f"{g['triton-premium']} + {g['triton-spot']} | ${v['cost_per_day_usd']:,.2f} |"
            )
    return "\n".join(rows)


def plot(days: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [w for w in days if int(w) >= 1_000_000]
    fig, axes = plt.subplots(2, len(shown), figsize=(6 * len(shown), 6.5), sharex=True)
    for col, words in enumerate(shown):
        s = days[words]["series"]
        hours = [t / 3600.0 for t in s["t_s"]]
        top, bottom = axes[0][col], axes[1][col]
        top.plot(hours, s["words_per_min"], lw=0.8, color="#2a6")
        top.set_title(f"{int(words):,} words/day: words translated per minute")
        for key in sorted(k for k in s if k.startswith("replicas.")):
            bottom.step(hours, s[key], where="post", lw=1.0, label=key.removeprefix("replicas."))
        bottom.set_xlabel("hour of the day (UTC)")
        bottom.set_ylabel("replicas (pods, incl. starting)")
        bottom.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    rc = 0
    if not args.replay_only:
        rc |= run_days(args)
    if args.replay or args.replay_only:
        rc |= run_replay(args)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
