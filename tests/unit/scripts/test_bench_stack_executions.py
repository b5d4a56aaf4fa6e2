"""``bench stack`` reads the size of Triton's executions per model from the metrics
endpoint (the counters' ``_created`` samples and label-less families left out). Run as a
subprocess: tests do not import bench code."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
METRICS = """\
# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="translator",version="1"} 595
nv_inference_request_success{model="translator_urgent",version="1"} 13
# HELP nv_inference_exec_count Number of model executions performed
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="translator",version="1"} 14
nv_inference_exec_count{model="translator_urgent",version="1"} 13
# HELP mtb_translator_segments_total Segments translated by the translator model
# TYPE mtb_translator_segments_total counter
mtb_translator_segments_total{pair="en-pt"} 9000
# HELP nv_cpu_utilization CPU utilization rate
# TYPE nv_cpu_utilization gauge
nv_cpu_utilization 0.5
"""
PROBE = """
import json, sys
from types import SimpleNamespace
import requests
from bench.stack import Stack
fake = SimpleNamespace(requests=requests, triton=SimpleNamespace(urls={"metrics": sys.argv[1]}))
print(json.dumps(Stack.triton_executions(fake)))
"""


class _Metrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = METRICS.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_executions_and_requests_per_model():
    server = HTTPServer(("127.0.0.1", 0), _Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        out = subprocess.run(
            [sys.executable, "-c", PROBE, url], cwd=ROOT, capture_output=True, text=True,
            timeout=120, check=True,
        )  # fmt: skip
    finally:
        server.shutdown()
    assert json.loads(out.stdout) == {
        "translator": {"executions": 14, "requests": 595},
        "translator_urgent": {"executions": 13, "requests": 13},
    }
