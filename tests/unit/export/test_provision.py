"""The model store on a read-only filesystem (Triton's image in Kubernetes): models already
exported are used without taking the store's lock, which would need a writable file."""

from __future__ import annotations

import json
from pathlib import Path

from export.bergamot import FORMAT_VERSION
from export.provision import DEFAULT_PAIRS, ensure_default_models


def test_a_current_store_is_used_without_writing(tmp_path: Path) -> None:
    for pair in DEFAULT_PAIRS:
        folder = tmp_path / f"bergamot-{pair}"
        folder.mkdir()
        (folder / "metadata.json").write_text(json.dumps({"format_version": FORMAT_VERSION}))
    tmp_path.chmod(0o555)
    try:
        done = ensure_default_models(tmp_path)
    finally:
        tmp_path.chmod(0o755)
    assert done == [tmp_path / f"bergamot-{p}" for p in DEFAULT_PAIRS]
    assert not (tmp_path / ".lock").exists()  # nothing written (also when run as root)
