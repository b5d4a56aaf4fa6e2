"""``mtctl``: one command-line entry point; each subcommand lives in control_plane.commands.

Subcommand modules expose ``register(subparsers)`` and set ``func(args) -> int`` as the
parser default, so new commands never edit a shared dispatch table.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Modules under control_plane.commands, in --help order.
COMMANDS = ["translate", "models", "serve", "users", "worker", "migrate", "trace", "cost"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtctl",
        description="mt-backend: translate text, run the service and manage it.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"control_plane.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
