"""Provisioning the model store: the bundled Bergamot models exported on first use.

This lives in ``export`` (not in ``control_plane.engine``) so the engine never imports the
exporter: the engine reads exported folders; who wants them created calls this first
(``mtctl models ensure``, the in-process inference client, tests and benchmarks).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from control_plane.engine.store import store_lock
from export.bergamot import FORMAT_VERSION, bundled_model_dir, export_bergamot

log = logging.getLogger(__name__)

DEFAULT_PAIRS = ("en-pt", "pt-en")


def _current(folder: Path) -> bool:
    meta_file = folder / "metadata.json"
    return meta_file.exists() and (
        json.loads(meta_file.read_text()).get("format_version") == FORMAT_VERSION
    )


def ensure_default_models(root: Path, pairs: tuple[str, ...] = DEFAULT_PAIRS) -> list[Path]:
    """Export the bundled Bergamot models into ``root`` unless already there."""
    root = Path(root)
    folders = [root / f"bergamot-{pair}" for pair in pairs]
    if all(_current(f) for f in folders):  # no lock: a read-only store (a container image)
        return folders
    done = []
    root.mkdir(parents=True, exist_ok=True)
    with store_lock(root):
        for pair in pairs:
            folder = root / f"bergamot-{pair}"
            if not _current(folder):
                log.warning("exporting the bundled %s model into %s (first use)", pair, folder)
                export_bergamot(bundled_model_dir(pair), folder, pair)
            done.append(folder)
    return done
