"""Fixtures shared by the functional scenarios: the real exported models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The model store with the bundled en-pt and pt-en models exported (once per run).

    MTB_MODEL_DIR wins; otherwise the repository's ignored .models folder, which `make
    test` fills before pytest starts."""
    from export.provision import ensure_default_models

    root = Path(os.environ.get("MTB_MODEL_DIR") or REPO / ".models")
    ensure_default_models(root)
    return root


@pytest.fixture(scope="session")
def translator_triton(triton_factory, model_dir):
    """One private tritonserver per session on model_repository/ (committed CPU config,
    free loopback ports) reading the test model store; scenarios measure deltas of its
    counters, so they can share it."""
    saved = os.environ.get("MTB_MODEL_DIR")
    os.environ["MTB_MODEL_DIR"] = str(model_dir)  # the server's model.py reads it
    try:
        return triton_factory(REPO / "model_repository")
    finally:
        if saved is None:
            os.environ.pop("MTB_MODEL_DIR", None)
        else:
            os.environ["MTB_MODEL_DIR"] = saved


@pytest.fixture(scope="session")
def local_engine(model_dir):
    from control_plane.engine import load_engine

    return load_engine(model_dir, precision="int8")
