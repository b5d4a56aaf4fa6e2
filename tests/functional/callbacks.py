"""A webhook receiver on loopback for the callback scenarios: every POST's headers and
body, optionally failing the first ``fail_first`` attempts with a 500 (the service must
retry)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Receiver:
    url: str
    received: list[tuple[dict, bytes]] = field(default_factory=list)  # accepted posts
    attempts: int = 0  # every POST, refused ones included

    def wait(self, timeout: float = 20) -> list[tuple[dict, bytes]]:
        deadline = time.monotonic() + timeout
        while not self.received and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.received, "no callback arrived"
        return self.received


@contextlib.contextmanager
def callback_receiver(fail_first: int = 0) -> Iterator[Receiver]:
    receiver = Receiver(url="")

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            receiver.attempts += 1
            if receiver.attempts <= fail_first:
                self.send_response(500)
                self.end_headers()
                return
            receiver.received.append((dict(self.headers), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield receiver
    finally:
        server.shutdown()
