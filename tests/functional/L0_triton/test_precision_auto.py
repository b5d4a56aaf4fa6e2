"""A Triton repository whose models say ``precision: auto`` (triton_config --precision
auto): the normal and urgent stubs start together on a store without an answer, one of
them measures, both load the same precision, and Triton's translations are the in-process
engine's at that precision."""

from __future__ import annotations

import dataclasses
import json

import pytest

from control_plane.engine import load_engine
from control_plane.engine.precision import CACHE_FILE
from control_plane.inference.triton_config import CPU, URGENT_CPU, copy_repository

from .test_triton import EVAL, client_for

pytestmark = pytest.mark.services


def urgent_catalog(url: str) -> dict[tuple[str, str], str]:
    """The urgent model's own pair catalog (the client reads only the translator's)."""
    import numpy as np
    import tritonclient.grpc as grpcclient

    inputs = []
    for name in ("TEXT", "SOURCE_LANG", "TARGET_LANG"):
        x = np.array([[b""]], dtype=np.object_)
        inputs.append(grpcclient.InferInput(name, x.shape, "BYTES"))
        inputs[-1].set_data_from_numpy(x)
    with grpcclient.InferenceServerClient(url) as client:
        out = client.infer("translator_urgent", inputs).as_numpy("TRANSLATION").reshape(-1)
    rows = [line.decode().split("\t") for line in out]
    return {(src, tgt): version for src, tgt, version in rows}


async def test_both_models_load_the_one_measured_precision(
    triton_factory, model_dir, tmp_path_factory
):
    store = tmp_path_factory.mktemp("auto-store")  # the models, without a kept answer
    for folder in model_dir.iterdir():
        if (folder / "metadata.json").is_file():
            (store / folder.name).symlink_to(folder)
    repo = copy_repository(
        tmp_path_factory.mktemp("repo"),
        dataclasses.replace(CPU, precision="auto", model_dir=str(store)),
        dataclasses.replace(URGENT_CPU, precision="auto", model_dir=str(store)),
    )
    server = triton_factory(repo)

    kept = json.loads((store / CACHE_FILE).read_text())
    assert len(kept) == 1, kept  # measured once, by whichever stub came first
    chosen = next(iter(kept.values()))["precision"]
    assert chosen in ("int8", "fp32")
    local = load_engine(model_dir, precision=chosen)

    c = await client_for(server.url)
    assert c.model_version("en", "pt") == local.model_version("en", "pt")
    assert urgent_catalog(server.url)[("en", "pt")] == local.model_version("en", "pt")

    sentences = EVAL["en-pt"][:8]
    normal = await c.translate(sentences, "en", "pt", timeout=120)
    critical = await c.translate(sentences, "en", "pt", priority="critical", timeout=120)
    want = [t.text for t in local.translate(sentences, "en", "pt")]
    assert [t.text for t in normal] == want
    assert [t.text for t in critical] == want
    await c.close()
