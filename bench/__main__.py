"""``python -m bench [SECTION ...]`` (``make bench``): measured numbers, JSON + table + plot.

Sections are modules of this package with a ``main(argv) -> int``; results land in
bench/results/<section>.json (and .md, .png). ``--all`` runs every section present.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SECTIONS = [
    "engine",
    "quality",
    "spans",
    "formats",
    "service",
    "triton",
    "stack",
    "latency",
    "capacity",
    "gpu",
    "large_models",
]


def main(argv: list[str] | None = None) -> int:
    # no automatic -h: ``python -m bench stack --help`` is the section's own help
    ap = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.splitlines()[0], add_help=False
    )
    ap.add_argument("sections", nargs="*", help=f"any of: {', '.join(SECTIONS)}")
    ap.add_argument("--all", action="store_true", help="run every section")
    ap.add_argument("-h", "--help", action="store_true", help="this help, or a section's")
    args, rest = ap.parse_known_args(argv)
    if args.help and not args.sections:
        ap.print_help()
        return 0
    if args.help:
        rest.append("--help")
    chosen = SECTIONS if args.all or not args.sections else args.sections
    failed = []
    for name in chosen:
        if name not in SECTIONS:
            ap.error(f"unknown section {name!r}; choose from {', '.join(SECTIONS)}")
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}":
                print(f"== {name}: not built yet, skipped", flush=True)
                continue
            raise
        print(f"== {name}", flush=True)
        if module.main(rest) != 0:
            failed.append(name)
    if failed:
        print(f"failed sections: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
