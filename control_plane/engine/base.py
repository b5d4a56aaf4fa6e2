"""What every translation engine offers, whatever runs the model.

The control plane's workers, the CLI and the Triton model all talk to this interface, so
the in-process engine, Triton over gRPC and Hugging Face exports stay interchangeable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class UnsupportedPair(ValueError):
    """No installed model serves the requested language pair."""

    def __init__(self, source: str, target: str, supported: list[tuple[str, str]]):
        self.source, self.target, self.supported = source, target, supported
        listed = ", ".join(f"{s}-{t}" for s, t in supported) or "none"
        super().__init__(f"no installed model translates {source}->{target}; supported: {listed}")


@dataclass(frozen=True)
class Translation:
    text: str
    # exp(mean log-probability of the chosen tokens): 1.0 is certain, near 0 is a guess.
    score: float


class TranslationEngine(Protocol):
    def pairs(self) -> list[tuple[str, str]]:
        """Language pairs served, e.g. [("en", "pt"), ("pt", "en")]."""
        ...

    def model_version(self, source: str, target: str) -> str:
        """Stable id of the model serving a pair; part of every cache key."""
        ...

    def translate(self, segments: list[str], source: str, target: str) -> list[Translation]:
        """Translate single sentences/segments (no paragraph structure), order preserved."""
        ...
