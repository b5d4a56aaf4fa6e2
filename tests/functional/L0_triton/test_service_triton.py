"""``mtctl serve`` with MTB_INFERENCE=triton: jobs are translated by the real tritonserver."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import requests

from bench.server import free_port, wait_ready

from ..conftest import REPO

pytestmark = pytest.mark.services

MTCTL = [sys.executable, "-m", "control_plane.cli"]
TEXT = "The meeting starts at noon.\n\nPlease save your changes before closing the file."


def _segments_total(metrics_url: str) -> float:
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    pattern = r'^mtb_translator_segments_total\{pair="en-pt"\} (\S+)'
    return sum(float(m) for m in re.findall(pattern, text, re.M))


def test_service_translates_through_triton(server, model_dir, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "MTB_INFERENCE": "triton",
        "MTB_TRITON_URL": server.url,
        "MTB_DATA_DIR": str(tmp_path),
        "MTB_MODEL_DIR": str(model_dir),
        "MTB_DATABASE_URL": f"sqlite:///{tmp_path / 'service.db'}",
        "MTB_QUEUE": "memory",
        "MTB_HOST": "127.0.0.1",
        "MTB_PORT": str(port),
        "MTB_JWT_SECRET": "functional-tests-secret-at-least-32-bytes",
        "PYTHONUNBUFFERED": "1",
    }
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    before = _segments_total(server.urls["metrics"])
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*MTCTL, "serve"], env=env, cwd=REPO, stdout=log, stderr=log)
    try:
        wait_ready(url, proc, 120, lambda: log_path.read_text()[-3000:])
        r = requests.get(url + "/readyz", timeout=2)
        assert r.json()["checks"]["inference"] == "ok"
        out = subprocess.run(
            [*MTCTL, "users", "create", "--email", "t@example.com", "--tier", "enterprise"],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        headers = {"Authorization": f"Bearer {out.stdout.strip().splitlines()[-1]}"}
        body = {"text": TEXT, "source_lang": "en", "target_lang": "pt", "priority": "critical"}
        r = requests.post(url + "/api/v1/translate", json=body, headers=headers, timeout=30)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        deadline = time.monotonic() + 120
        while True:
            job = requests.get(f"{url}/api/v1/jobs/{job_id}", headers=headers, timeout=10).json()
            if job["status"] in ("completed", "failed", "cancelled"):
                break
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["status"] == "completed", job
        res = requests.get(f"{url}/api/v1/jobs/{job_id}/result", headers=headers, timeout=10)
        translated = res.json()["translated_content"]
        assert "reunião" in translated.lower() and "\n\n" in translated
        assert _segments_total(server.urls["metrics"]) >= before + 2  # Triton did the work
        metrics = requests.get(url + "/metrics", timeout=10).text
        assert 'mtb_triton_requests_total{outcome="ok"}' in metrics
        assert "mtb_triton_fallback_total 0.0" in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
