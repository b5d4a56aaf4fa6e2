"""L0_triton: one private tritonserver per session on model_repository/ (committed CPU
config, free loopback ports via ``triton_factory``) reading the test model store."""

from __future__ import annotations

import os

import pytest

from ..conftest import REPO


@pytest.fixture(scope="session")
def server(triton_factory, model_dir):
    saved = os.environ.get("MTB_MODEL_DIR")
    os.environ["MTB_MODEL_DIR"] = str(model_dir)  # the server's model.py reads it
    try:
        return triton_factory(REPO / "model_repository")
    finally:
        if saved is None:
            os.environ.pop("MTB_MODEL_DIR", None)
        else:
            os.environ["MTB_MODEL_DIR"] = saved
