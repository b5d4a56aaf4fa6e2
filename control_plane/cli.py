"""``mtctl``: one command-line entry point; each subcommand lives in control_plane.commands.

Subcommand modules expose ``register(subparsers)`` and set ``func(args) -> int`` as the
parser default, so new commands never edit a shared dispatch table.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
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
    from control_plane.settings import SettingsError

    if sys.stdout is None and not getattr(args, "stdout_optional", False):
        # started with stdout closed (`>&-`): print() would drop the output silently
        # (an API key shown once, a table), so say so instead
        print(f"mtctl {args.command}: stdout is closed; nothing could be printed", file=sys.stderr)
        return 2
    try:
        code = int(args.func(args) or 0)
        if sys.stdout is not None:
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except SettingsError as exc:
        print(f"mtctl {args.command}: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (`mtctl translate ... | head -1`): what is left to print
        # goes to /dev/null so the final flush at exit cannot raise again. 141 (128 +
        # SIGPIPE) is what a shell reports for a tool killed by SIGPIPE (cat, grep): the
        # output was cut short, and `set -o pipefail` scripts see it as they would there
        _stdout_to_devnull()
        return 141
    except KeyboardInterrupt:
        # Ctrl-C: the engine's lane threads (control_plane/engine/lanes.py) may still be
        # inside ONNX Runtime, and an interpreter shutting down under them aborts the
        # process ("terminate called without an active exception", SIGABRT, exit 134).
        # The command's own cleanup (temporary output files) already ran while the
        # exception unwound to here, so end the process at once with the usual 130.
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):  # a closed pipe or stream: nothing left to save
                pass
        os._exit(130)


def _stdout_to_devnull() -> None:
    if sys.stdout is None:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (a test's capture): nothing to do
        pass


if __name__ == "__main__":
    sys.exit(main())
