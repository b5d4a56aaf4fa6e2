"""L0_triton: the session's private tritonserver on model_repository/
(``translator_triton`` in tests/functional/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def server(translator_triton):
    return translator_triton
