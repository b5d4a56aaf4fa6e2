"""The production stack for the L0_kafka_* scenarios: `mtctl serve` with MTB_QUEUE=kafka
on a PostgreSQL database of its own, `mtctl worker` subprocesses, and small Kafka/DB
helpers. Each scenario gets its own database, topic prefix and consumer group on the
shared local broker, so scenarios never see each other's messages.

Processes are booted with ``devstack.processes`` (readiness: /readyz for serve, the
MTB_READY_FILE for workers); ``make_stack`` (tests/functional/conftest.py) is the usual
way in, ``start_stack`` the one for a stack of a single test.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

import devstack
from devstack.processes import MtctlProcess, ProcessError, serve_env, start_worker
from tests.functional.api_service import (
    JWT_SECRET,
    Service,
    boot_service,
    shutdown_problems,
    wait_for,
)

__all__ = ["KafkaStack", "WorkerProc", "private_broker", "start_stack", "wait_for"]


@dataclass
class WorkerProc(MtctlProcess):
    """An `mtctl worker` whose failures fail the test (with its log tail)."""

    @classmethod
    def of(cls, proc: MtctlProcess) -> WorkerProc:
        return cls(**{f.name: getattr(proc, f.name) for f in dataclasses.fields(proc)})

    def wait_ready(self, timeout: float = 180) -> WorkerProc:
        try:
            super().wait_ready(timeout)
        except ProcessError as exc:
            pytest.fail(str(exc))
        return self

    def assigned(self) -> set[str]:
        """Partitions of its last 'partitions assigned' log line (``topic[n]``)."""
        parts: set[str] = set()
        for line in self.log().splitlines():
            if '"partitions assigned"' in line:
                parts = set(json.loads(line).get("partitions", "").split(","))
            elif '"partitions revoked"' in line:
                parts = set()
        return parts

    def stop(self, timeout: float = 60) -> int:
        was_running = self.proc.poll() is None
        rc = super().stop(timeout)
        if was_running and self.ignored_sigterm:
            pytest.fail(f"{self.name} ignored SIGTERM for {timeout} s:\n{self.log_tail()}")
        return rc


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
        w = WorkerProc.of(start_worker({**self.env, **env}, self.tmp / f"{name}.log", name=name))
        self.workers.append(w)
        if wait:
            w.wait_ready()
        return w

    def submit(
        self, text: str, priority: str = "normal", who: str = "enterprise", **options
    ) -> dict:
        """``options``: more request fields (format, glossary, do_not_translate, ...)."""
        body = {"text": text, "source_lang": "en", "target_lang": "pt", "priority": priority}
        r = requests.post(
            f"{self.url}/api/v1/translate",
            json={**body, **options},
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

    def produce(
        self,
        topic: str,
        values: list[bytes],
        keys: list[bytes | None] | None = None,
        headers: dict[str, str] | None = None,
    ):
        """``headers``: put on every record (e.g. a producer's ``traceparent``)."""
        asyncio.run(produce(self.bootstrap, self.topic(topic), values, keys, headers))

    def read(self, topic: str, at_least: int, timeout: float = 60) -> list:
        return asyncio.run(read_topic(self.bootstrap, self.topic(topic), at_least, timeout))

    def close(self) -> None:
        problems = []
        for w in self.workers:
            rc = w.stop()
            if rc not in (0, -signal.SIGKILL):
                problems.append(f"{w.name} exited {rc}:\n{w.log_tail()}")
        problems += shutdown_problems(self.service.server, expect_exit_0=False)
        with contextlib.suppress(Exception):  # left behind, they load the shared broker
            devstack.delete_topics(self.bootstrap, self.prefix)
        if problems:
            pytest.fail("\n".join(problems))


async def produce(bootstrap: str, topic: str, values, keys=None, headers=None) -> None:  # noqa: ANN001
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic,
                v,
                key=(keys[i] if keys else None),
                headers=[(k, h.encode()) for k, h in (headers or {}).items()] or None,
            )
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
    database_url = devstack.create_database(f"mtb_kafka_{name}", postgres_url)
    settings = {
        "MTB_QUEUE": "kafka",
        "MTB_INFERENCE": "local",  # L0_kafka_triton passes MTB_INFERENCE=triton
        "MTB_KAFKA_BOOTSTRAP": bootstrap,
        "MTB_KAFKA_TOPIC_PREFIX": prefix,
        "MTB_KAFKA_GROUP": f"{prefix}workers",
        "MTB_KAFKA_PARTITIONS": "3",
        "MTB_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "MTB_KAFKA_LAG_INTERVAL_S": "1",
        "MTB_DATABASE_URL": database_url,
        "MTB_RATE_LIMIT_ENTERPRISE": "100000",
        "MTB_MAX_WORDS": "20000",
        "MTB_JWT_SECRET": JWT_SECRET,
    }
    full_env = serve_env(os.environ, tmp, model_dir, **{**settings, **env})
    users = [("enterprise", "enterprise"), ("other", "enterprise"), ("basic", "basic")]
    svc = boot_service("postgres", full_env, tmp / "serve.log", users)
    return KafkaStack(svc, full_env, tmp, prefix, bootstrap, database_url)


@contextlib.contextmanager
def private_broker(state: Path, shared: devstack.Config) -> Iterator[tuple[devstack.Config, str]]:
    """A Kafka broker of its own (state folder ``state``, free ports) that a scenario may
    stop and start without touching the shared one; it reuses the shared broker's jars
    (``shared`` must run, so they are in place). Yields its Config and bootstrap."""
    cfg = devstack.Config.from_env(
        state_dir=state,
        kafka_port=devstack.free_port(),
        kafka_controller_port=devstack.free_port(),
    )
    (state / "kafka").mkdir(parents=True)
    (state / "kafka" / "libs").symlink_to(shared.service_dir("kafka") / "libs")
    info = devstack.ensure_service("kafka", cfg)
    try:
        yield cfg, info.url
    finally:
        devstack.stop_service("kafka", cfg)
