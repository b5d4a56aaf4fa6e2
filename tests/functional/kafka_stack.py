"""The production stack for the L0_kafka_* scenarios: `mtctl serve` with MTB_QUEUE=kafka
on a PostgreSQL database of its own, `mtctl worker` subprocesses, and small Kafka/DB
helpers. Each scenario gets its own database, topic prefix and consumer group on the
shared local broker, so scenarios never see each other's messages.

Reuses the L0_service helpers (Service, wait_for, free_port, MTCTL) for the REST side.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO_ROOT, mtb_services
from tests.functional.L0_service.conftest import (
    MTCTL,
    Service,
    free_port,
    wait_for,
    wait_until_ready,
)

__all__ = ["KafkaStack", "WorkerProc", "start_stack", "wait_for"]


@dataclass
class WorkerProc:
    name: str
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, n: int = 4000) -> str:
        return self.log()[-n:]

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while '"worker ready"' not in self.log():
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} not ready in {timeout} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def assigned(self) -> set[str]:
        """Partitions of its last 'partitions assigned' log line (``topic[n]``)."""
        parts: set[str] = set()
        for line in self.log().splitlines():
            if '"partitions assigned"' in line:
                parts = set(json.loads(line).get("partitions", "").split(","))
            elif '"partitions revoked"' in line:
                parts = set()
        return parts

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"{self.name} ignored SIGTERM for {timeout} s:\n{self.log_tail()}")
        return self.proc.returncode


@dataclass
class KafkaStack:
    service: Service
    env: dict[str, str]
    tmp: Path
    prefix: str
    bootstrap: str
    database_url: str
    workers: list[WorkerProc] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.service.url

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def start_worker(self, name: str | None = None, wait: bool = True, **env: str) -> WorkerProc:
        name = name or f"worker-{len(self.workers)}"
        log_path = self.tmp / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [*MTCTL, "worker"],
                env={**self.env, **env},
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        w = WorkerProc(name, proc, log_path)
        self.workers.append(w)
        if wait:
            w.wait_ready()
        return w

    def submit(self, text: str, priority: str = "normal", who: str = "enterprise") -> dict:
        r = requests.post(
            f"{self.url}/api/v1/translate",
            json={"text": text, "source_lang": "en", "target_lang": "pt", "priority": priority},
            headers=self.service.headers(who),
            timeout=60,
        )
        assert r.status_code == 202, r.text
        return r.json()

    def result(self, job_id: str, who: str = "enterprise") -> str:
        r = requests.get(
            f"{self.url}/api/v1/jobs/{job_id}/result", headers=self.service.headers(who), timeout=30
        )
        assert r.status_code == 200, r.text
        return r.json()["translated_content"]

    def wait(self, job_id: str, timeout: float = 120) -> dict:
        return wait_for(self.service, job_id, timeout=timeout)

    # -- database ------------------------------------------------------------------

    def sql(self, query: str, **params) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()

    # -- kafka ---------------------------------------------------------------------

    def produce(self, topic: str, values: list[bytes], keys: list[bytes | None] | None = None):
        asyncio.run(produce(self.bootstrap, self.topic(topic), values, keys))

    def read(self, topic: str, at_least: int, timeout: float = 60) -> list:
        return asyncio.run(read_topic(self.bootstrap, self.topic(topic), at_least, timeout))

    def close(self) -> None:
        problems = []
        for w in self.workers:
            rc = w.stop()
            if rc not in (0, -signal.SIGKILL):
                problems.append(f"{w.name} exited {rc}:\n{w.log_tail()}")
        proc = self.service.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                problems.append("mtctl serve ignored SIGTERM")
        if problems:
            pytest.fail("\n".join(problems))


async def produce(bootstrap: str, topic: str, values, keys=None) -> None:  # noqa: ANN001
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, v, key=(keys[i] if keys else None))
            for i, v in enumerate(values)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, at_least: int, timeout: float) -> list:
    """Records of ``topic`` from the beginning (no group) until ``at_least`` or timeout."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    out = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < at_least and time.monotonic() < deadline:
            data = await consumer.getmany(timeout_ms=500)
            for records in data.values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


def start_stack(
    tmp: Path,
    postgres_url: str,
    bootstrap: str,
    model_dir: Path,
    name: str,
    **env: str,
) -> KafkaStack:
    """`mtctl serve` on database ``mtb_<name>`` and topics ``t<hex>.``; no workers yet.
    Users: enterprise, other (enterprise), basic."""
    prefix = f"t{uuid.uuid4().hex[:8]}-{name}."
    database_url = mtb_services.create_database(f"mtb_kafka_{name}", postgres_url)
    port = free_port()
    full_env = {
        **os.environ,
        "MTB_QUEUE": "kafka",
        "MTB_INFERENCE": "local",  # L0_kafka_triton passes MTB_INFERENCE=triton
        "MTB_KAFKA_BOOTSTRAP": bootstrap,
        "MTB_KAFKA_TOPIC_PREFIX": prefix,
        "MTB_KAFKA_GROUP": f"{prefix}workers",
        "MTB_KAFKA_PARTITIONS": "3",
        "MTB_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "MTB_KAFKA_LAG_INTERVAL_S": "1",
        "MTB_DATABASE_URL": database_url,
        "MTB_DATA_DIR": str(tmp),
        "MTB_MODEL_DIR": str(model_dir),
        "MTB_HOST": "127.0.0.1",
        "MTB_PORT": str(port),
        "MTB_RATE_LIMIT_ENTERPRISE": "100000",
        "MTB_MAX_WORDS": "20000",
        "MTB_JWT_SECRET": "functional-tests-secret-at-least-32-bytes",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    log_path = tmp / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*MTCTL, "serve"], env=full_env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
        )
    svc = Service("postgres", f"http://127.0.0.1:{port}", full_env, proc, log_path)
    stack = KafkaStack(svc, full_env, tmp, prefix, bootstrap, database_url)
    try:
        wait_until_ready(svc)
        for who, tier in [
            ("enterprise", "enterprise"),
            ("other", "enterprise"),
            ("basic", "basic"),
        ]:
            svc.keys[who] = svc.new_user(tier)
    except BaseException:
        stack.close()
        raise
    return stack
