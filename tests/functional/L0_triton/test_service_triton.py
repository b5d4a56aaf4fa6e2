"""``mtctl serve`` with MTB_INFERENCE=triton: jobs are translated by the real tritonserver."""

from __future__ import annotations

import os
import re
import time
import urllib.request

import pytest
import requests

from devstack.processes import serve_env
from tests.functional.api_service import JWT_SECRET, running_service

pytestmark = pytest.mark.services

TEXT = "The meeting starts at noon.\n\nPlease save your changes before closing the file."


def _segments_total(metrics_url: str) -> float:
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    pattern = r'^mtb_translator_segments_total\{pair="en-pt"\} (\S+)'
    return sum(float(m) for m in re.findall(pattern, text, re.M))


def test_service_translates_through_triton(server, model_dir, tmp_path):
    env = serve_env(
        os.environ,
        tmp_path,
        model_dir,
        MTB_INFERENCE="triton",
        MTB_TRITON_URL=server.url,
        MTB_DATABASE_URL=f"sqlite:///{tmp_path / 'service.db'}",
        MTB_QUEUE="memory",
        MTB_JWT_SECRET=JWT_SECRET,
    )
    before = _segments_total(server.urls["metrics"])
    users = [("enterprise", "enterprise")]
    with running_service(
        "sqlite", env, tmp_path / "serve.log", users, expect_exit_0=False, timeout=120
    ) as svc:
        url = svc.url
        r = requests.get(url + "/readyz", timeout=2)
        assert r.json()["checks"]["inference"] == "ok"
        headers = svc.headers("enterprise")
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
