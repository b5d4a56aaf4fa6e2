"""``HealthzPoller``: GET /healthz every ``interval`` seconds from a child process over one
keep-alive connection, for as long as a ``with`` block lasts. Used by the hostile-input
tests and ``bench service`` to see whether a service keeps answering while it is loaded.

A child process and not a thread: in a thread of the measuring process the round trips
also counted that process's own pauses (the GIL while it uploads 8 MiB, garbage
collections of a test session's heap), which are not the service's."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

_POLLER = r"""
import http.client, json, sys, threading, time
host, port, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
latencies, failures = [], []
conn = http.client.HTTPConnection(host, port, timeout=30)
while not stop.is_set():
    t0 = time.perf_counter()
    try:
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            failures.append(f"HTTP {r.status}")
    except (OSError, http.client.HTTPException) as exc:
        failures.append(f"{type(exc).__name__}: {exc}")
        conn.close()
        conn = http.client.HTTPConnection(host, port, timeout=30)
    latencies.append(time.perf_counter() - t0)
    if len(latencies) == 1:
        print("ready", flush=True)
    stop.wait(interval)
print(json.dumps({"latencies": latencies, "failures": failures}), flush=True)
"""


class HealthzPoller:
    """``with HealthzPoller(url) as poll: ...``; afterwards ``poll.latencies`` (seconds,
    one per request), ``poll.failures`` (``"HTTP 503"``, ``"ConnectionResetError: ..."``)
    and ``poll.errors`` (failures counted by kind). The block starts once the first
    answer came back."""

    def __init__(self, url: str, interval: float = 0.01):
        where = urlsplit(url)
        self.args = [where.hostname or "127.0.0.1", str(where.port or 80), str(interval)]
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._proc: subprocess.Popen | None = None

    @property
    def errors(self) -> Counter:
        return Counter(f.split(":")[0] for f in self.failures)

    def __enter__(self) -> HealthzPoller:
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _POLLER, *self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        first = self._proc.stdout.readline()
        if first.strip() != "ready":
            self._proc.kill()
            raise RuntimeError(f"the /healthz poller did not start: {first!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.02)  # a last answer after the block's own last request
        out, _ = self._proc.communicate(timeout=60)  # closing its stdin stops it
        got = json.loads(out.strip().splitlines()[-1])
        self.latencies, self.failures = got["latencies"], got["failures"]
