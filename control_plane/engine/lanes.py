"""Lanes: a few threads that run an engine's batches side by side, most urgent first.

concurrent.futures' pools are FIFO: a long normal-priority call would queue all its
batches in front of a critical one. Here every batch carries its caller's rank
(0 critical, 1 high, 2 normal) and a free lane takes the lowest rank, then the oldest, so
a critical batch waits for at most the batches already running. ONNX Runtime releases
the GIL inside ``run``, so the lanes compute in parallel.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class Lanes:
    def __init__(self, count: int, name: str = "lane") -> None:
        self.count = max(1, count)
        self._heap: list[tuple[int, int, Callable[[], Any], Future]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}_{i}", daemon=True)
            for i in range(self.count)
        ]
        for t in self._threads:
            t.start()

    def run_all(self, jobs: list[Callable[[], Any]], rank: int = 2) -> list[Any]:
        """Run ``jobs`` on the lanes, wait for all and return their results in order;
        re-raise the first failure."""
        futures: list[Future] = []
        with self._cond:
            for job in jobs:
                f: Future = Future()
                heapq.heappush(self._heap, (rank, next(self._seq), job, f))
                futures.append(f)
            self._cond.notify(len(jobs))
        return [f.result() for f in futures]

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                _, _, job, fut = heapq.heappop(self._heap)
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                result = job()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                fut.set_exception(exc)
            else:
                fut.set_result(result)
