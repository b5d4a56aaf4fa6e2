"""Fixtures shared by the functional scenarios: the real exported models, a private
Triton, and ``make_stack`` for the Kafka scenarios."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
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
    # the server's model.py reads MTB_MODEL_DIR
    return triton_factory(REPO / "model_repository", extra_env={"MTB_MODEL_DIR": str(model_dir)})


@pytest.fixture(scope="session")
def local_engine(model_dir):
    from control_plane.engine import load_engine

    return load_engine(model_dir, precision="int8")


@pytest.fixture(scope="module")
def make_stack(request, model_dir, tmp_path_factory) -> Iterator[Callable[..., object]]:
    """``make_stack(name, workers=1, **settings)``: a Kafka stack (see kafka_stack.py) on
    the shared PostgreSQL and broker, or on ``postgres_url=``/``bootstrap=`` given; closed
    (workers and serve SIGTERMed, clean exits checked) at the end of the module."""
    from tests.functional.kafka_stack import KafkaStack, start_stack

    closing = contextlib.ExitStack()

    def make(
        name: str,
        *,
        workers: int = 1,
        postgres_url: str | None = None,
        bootstrap: str | None = None,
        **settings: str,
    ) -> KafkaStack:
        stack = start_stack(
            tmp_path_factory.mktemp(f"kafka-{name}"),
            postgres_url or request.getfixturevalue("postgres_url"),
            bootstrap or request.getfixturevalue("kafka_bootstrap"),
            model_dir,
            name,
            **settings,
        )
        closing.callback(stack.close)  # closed last-made first
        for i in range(workers):
            stack.start_worker(f"worker-{i}")
        return stack

    with closing:  # every stack is closed, even when closing another one fails
        yield make


@pytest.fixture(scope="module")
def private_kafka(kafka_bootstrap, services_config, tmp_path_factory):
    """``(Config, bootstrap)`` of a broker of the module's own that its scenario may stop
    and start (broker restart, broker outage) without touching the shared one.
    kafka_bootstrap: the shared broker runs, so its Maven jars are in place to share."""
    from tests.functional.kafka_stack import private_broker

    with private_broker(tmp_path_factory.mktemp("kafka-private-state"), services_config) as b:
        yield b
