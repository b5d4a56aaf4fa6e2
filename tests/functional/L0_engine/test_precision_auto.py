"""MTB_PRECISION=auto on the real Bergamot graphs: a measured choice, kept in the store."""

from __future__ import annotations

import json

from control_plane.engine import load_engine
from control_plane.engine import precision as auto


def test_auto_measures_int8_and_fp32_once_then_reads_the_store(model_dir, tmp_path, monkeypatch):
    # a store of its own (links to the exported models) so the answer lands in tmp_path
    for folder in model_dir.iterdir():
        if folder.is_dir():
            (tmp_path / folder.name).symlink_to(folder)
    engine = load_engine(tmp_path, precision="auto")
    assert engine.precision in ("int8", "fp32")
    (entry,) = json.loads((tmp_path / auto.CACHE_FILE).read_text()).values()
    assert entry["precision"] == engine.precision
    assert set(entry["words_per_s"]) == {"int8", "fp32"}
    assert all(v > 0 for v in entry["words_per_s"].values())
    assert engine.model_version("en", "pt").endswith(f"-{engine.precision}")
    [out] = engine.translate(["The file could not be opened."], "en", "pt")
    assert out.text and out.text != "The file could not be opened."
    monkeypatch.setattr(auto, "measure", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    assert load_engine(tmp_path, precision="auto").precision == engine.precision
