"""``python -m devstack up|down|status|env|install``: the local services from a shell or
``make services`` / ``make services-down``; ``install`` puts a package in place without
starting anything (``make test``: tests that need it run instead of skipping)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from devstack.config import Config, parse_only, port_specs
from devstack.envfile import read_env_file
from devstack.errors import ServiceError
from devstack.leases import down, ensure_service, status
from devstack.registry import SERVICES


def _parser() -> argparse.ArgumentParser:
    """Subcommands up/down/status/env; the port flags come from the registered services."""
    d = Config.from_env()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--only",
        metavar="LIST",
        help=f"comma-separated subset of {','.join(SERVICES)} (default: all)",
    )
    common.add_argument(
        "--state-dir", type=Path, help=f"state folder (MTB_SERVICES_DIR; now {d.state_dir})"
    )
    ports = common.add_argument_group("ports (127.0.0.1 only)")
    for attr, port in port_specs().items():
        ports.add_argument(
            port.flag, dest=attr, type=int, help=f"{port.env_var}; now {getattr(d, attr)}"
        )
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description=(
            "Install, start and stop the local PostgreSQL, Kafka (KRaft) and Triton used by"
            " tests and `make services`. State, logs and the env file live in"
            " .services/; load the settings with: set -a; . .services/env; set +a"
        ),
        epilog=(
            "examples:  python -m devstack up   |   python -m devstack up --only"
            " postgres,kafka   |   python -m devstack status   |   python -m devstack down"
            ' --purge   |   eval "$(python -m devstack env --export)"   |   python -m devstack'
            " install prometheus"
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p_up = sub.add_parser(
        "up", parents=[common], help="start services (reuses running ones), wait until ready"
    )
    p_up.add_argument(
        "--model-repository",
        type=Path,
        help=f"Triton model repository (MTB_MODEL_REPOSITORY; now {d.model_repository})",
    )
    p_up.add_argument(
        "--timeout", type=float, help=f"seconds to wait per service (now {d.timeout:.0f})"
    )
    p_down = sub.add_parser("down", parents=[common], help="stop services (SIGTERM, then KILL)")
    p_down.add_argument("--purge", action="store_true", help="also delete their data")
    p_status = sub.add_parser(
        "status", parents=[common], help="show what runs; exit 3 if something is down"
    )
    p_status.add_argument("--json", action="store_true", help="machine-readable output")
    p_env = sub.add_parser("env", parents=[common], help="print .services/env")
    p_env.add_argument("--export", action="store_true", help="prefix lines with `export `")
    p_install = sub.add_parser(
        "install", help="install a package the tests use, start nothing (root: apt-get)"
    )
    p_install.add_argument("package", choices=sorted(INSTALLERS))
    return parser


def _install_prometheus(cfg: Config) -> str:
    from devstack import prometheus

    had = prometheus.prometheus_binary()
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    binary = prometheus.ensure_installed(cfg.state_dir / "prometheus-install.log")
    return f"{binary} {'already installed' if had else 'installed'}"


# what `install` can put in place: Debian's prometheus (with promtool) for the live
# dashboard tests and promtool's rule checks
INSTALLERS = {"prometheus": _install_prometheus}


def _config_from_args(args: argparse.Namespace) -> Config:
    keys = ("state_dir", *port_specs(), "model_repository", "timeout")
    overrides = {key: getattr(args, key, None) for key in keys}
    return Config.from_env(**overrides)


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success, 1 on a ServiceError (its message, no traceback), 3 when
    ``status``/``env`` find something down."""
    args = _parser().parse_args(argv)
    try:
        cfg = _config_from_args(args)
        only = parse_only(getattr(args, "only", None))
        if args.command == "up":
            for name in only:
                t0 = time.monotonic()
                info = ensure_service(name, cfg)
                how = (
                    f"started in {time.monotonic() - t0:.1f} s"
                    if info.started
                    else "already running"
                )
                print(f"{name:8} {how} (pid {info.pid}) {info.url}  log: {info.log_path}")
            print(f"env file: {cfg.env_file}")
        elif args.command == "down":
            for name, was_running in down(cfg, only, purge=args.purge).items():
                print(f"{name:8} {'stopped' if was_running else 'was not running'}")
        elif args.command == "status":
            states = status(cfg, only)
            if args.json:
                print(json.dumps(states, indent=2))
            for name, state in states.items():
                if args.json:
                    break
                if state is None:
                    print(f"{name:8} stopped")
                else:
                    ready = "ready" if state["ready"] else "NOT READY"
                    print(f"{name:8} running, {ready} (pid {state['pid']}) {state['url']}")
            return 0 if all(s and s["ready"] for s in states.values()) else 3
        elif args.command == "install":
            print(f"{args.package:8} {INSTALLERS[args.package](cfg)}")
        elif args.command == "env":
            values = read_env_file(cfg.env_file)
            if not values:
                print(f"no services running ({cfg.env_file} is missing)", file=sys.stderr)
                return 3
            prefix = "export " if args.export else ""
            for key, value in values.items():
                print(f"{prefix}{key}={value}")
    except ServiceError as exc:
        print(f"devstack: error: {exc}", file=sys.stderr)
        return 1
    return 0
