"""The /healthz poller (a child process) reports each round trip and each failure."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devstack.healthz import HealthzPoller


class _Server(ThreadingHTTPServer):
    mode = "ok"  # "ok", "slow" (one answer after 150 ms, then ok), "down" (503)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the poller expects
    disable_nagle_algorithm = True  # headers and body go out apart: no 40 ms ACK waits

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        server = self.server
        status = 503 if server.mode == "down" else 200
        if server.mode == "slow":
            time.sleep(0.15)
            server.mode = "ok"
        body = b'{"status": "ok"}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    srv = _Server(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()


def test_latencies_and_failures(server):
    url = f"http://127.0.0.1:{server.server_port}"
    with HealthzPoller(url, interval=0.01) as poll:
        time.sleep(0.1)
        server.mode = "slow"
        time.sleep(0.3)
        server.mode = "down"
        time.sleep(0.1)
        server.mode = "ok"
        time.sleep(0.05)
    assert len(poll.latencies) >= 10
    assert 0.15 <= max(poll.latencies) < 1.0
    assert sorted(poll.latencies)[len(poll.latencies) // 2] < 0.05
    assert poll.failures and set(poll.failures) == {"HTTP 503"}
    assert poll.errors == {"HTTP 503": len(poll.failures)}


def test_a_service_that_is_not_there_is_a_failure_each_time():
    with HealthzPoller("http://127.0.0.1:9", interval=0.01) as poll:
        time.sleep(0.05)
    assert poll.failures and len(poll.failures) == len(poll.latencies)
    assert poll.errors == {"ConnectionRefusedError": len(poll.failures)}
