"""The inference client interface the workers call (in-process engine now, Triton later)."""

from __future__ import annotations

from typing import Any, Protocol

from control_plane.engine.base import Translation


class InferenceUnavailable(RuntimeError):
    """The backend cannot serve right now (loading, down, circuit open); retry later."""


class InferenceClient(Protocol):
    # what serves the calls, for the job record's assigned_instance ("local engine",
    # "triton HOST:PORT")
    backend: str

    async def start(self) -> None:
        """Connect / load models. May take a while; ``ready()`` is False until done."""
        ...

    def ready(self) -> bool: ...

    def pairs(self) -> list[tuple[str, str]]:
        """Language pairs served (known once ready)."""
        ...

    def model_version(self, source: str, target: str) -> str: ...

    async def translate(
        self,
        segments: list[str],
        source: str,
        target: str,
        priority: str = "normal",
        timeout: float | None = None,
    ) -> list[Translation]:
        """Translate single sentences in order. ``priority`` is critical|high|normal."""
        ...

    def bind_metrics(self, registry: Any) -> None:
        """Register the client's own metrics (Triton: retries, circuit, fallback) in the
        process's registry so /metrics shows them; a client without any does nothing."""
        ...

    async def close(self) -> None: ...
