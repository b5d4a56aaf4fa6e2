"""A tiny deterministic engine for unit tests: reverses the words of each segment."""

from __future__ import annotations

import threading
import time

from control_plane.engine.base import Translation, UnsupportedPair


class FakeEngine:
    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.calls: list[list[str]] = []
        self._lock = threading.Lock()

    def pairs(self) -> list[tuple[str, str]]:
        return [("en", "pt"), ("pt", "en")]

    def model_version(self, source: str, target: str) -> str:
        return f"fake-{source}{target}-1"

    def translate(self, segments: list[str], source: str, target: str) -> list[Translation]:
        if (source, target) not in self.pairs():
            raise UnsupportedPair(source, target, self.pairs())
        with self._lock:
            self.calls.append(list(segments))
        if self.delay_s:
            time.sleep(self.delay_s * len(segments))
        return [Translation(" ".join(reversed(s.split())) + f" [{target}]", 0.9) for s in segments]

    @property
    def segments_seen(self) -> int:
        return sum(len(c) for c in self.calls)
