"""``mtctl models``: list the model store, or fill it with the bundled models."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list or prepare installed translation models",
        description="Models live in MTB_MODEL_DIR (default ~/.cache/mt-backend"
        "/models). 'ensure' exports the bundled en-pt and pt-en models there.",
    )
    p.add_argument("action", choices=["list", "ensure"], nargs="?", default="list")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from control_plane.engine.store import installed_models
    from control_plane.settings import Settings
    from export.provision import ensure_default_models

    settings = Settings.from_env()
    if args.action == "ensure":
        ensure_default_models(settings.model_dir)
    models = installed_models(settings.model_dir)
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    print(f"model store: {settings.model_dir}")
    for name, meta in models.items():
        pair = f"{meta.get('source', '*')}-{meta.get('target', '*')}"
        precisions = ",".join(meta.get("precisions", {}))
        print(
            f"  {name:24} {pair:8} {meta.get('kind', '?'):9} {precisions:16} "
            f"{meta.get('model_version', '')}"
        )
    if not models:
        print("  (empty: run `mtctl models ensure`)")
    return 0
