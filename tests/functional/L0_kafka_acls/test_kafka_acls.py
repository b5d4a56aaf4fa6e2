"""Kafka as k8s/ deploys it, on a real broker that enforces ACLs: the topics of
k8s/base/kafka/topics.yaml, the SCRAM-SHA-512 users of k8s/base/kafka/users.yaml with
exactly their ACLs (Strimzi's ``authorization: simple`` translated one to one), `mtctl
serve` as mtb-api and one `mtctl worker` per worker pool of k8s/scaling-policy.yaml as
mtb-worker (one consumer group, ``--priorities``). Jobs of every priority and an ingest
message produced as mtb-client complete; KEDA's user reads the group's lag; what a user is
not granted is refused (a missing ACL in users.yaml fails here, not in a cluster). The
pools split the group as the policy says: each owns exactly its topics' partitions, and
with the normal pool scaled to zero critical work is served while normal work waits for
its pool (which KEDA's Kafka trigger then wakes)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import devstack
from control_plane.capacity.policy import load_policy

pytestmark = pytest.mark.services

K8S = Path(__file__).resolve().parents[3] / "k8s"
MECHANISM = "SCRAM-SHA-512"  # the listener's authentication in k8s/base/kafka/kafka.yaml
ADMIN = "admin"  # the broker's super user (Strimzi's operators play this part)
# Kafka's protocol codes (org.apache.kafka.common.{resource,acl})
RESOURCE = {"topic": 2, "group": 3, "cluster": 4, "transactionalId": 5}
PATTERN = {"literal": 3, "prefix": 4}
OPERATION = {
    "All": 2, "Read": 3, "Write": 4, "Create": 5, "Delete": 6, "Alter": 7, "Describe": 8,
    "ClusterAction": 9, "DescribeConfigs": 10, "AlterConfigs": 11, "IdempotentWrite": 12,
}  # fmt: skip
ALLOW = 3


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


USERS = {d["metadata"]["name"]: d["spec"] for d in _docs(K8S / "base/kafka/users.yaml")}
TOPICS = [d["spec"] for d in _docs(K8S / "base/kafka/topics.yaml")]


def _auth(bootstrap: str, user: str, password: str) -> dict[str, Any]:
    return {
        "bootstrap_servers": bootstrap,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": MECHANISM,
        "sasl_plain_username": user,
        "sasl_plain_password": password,
    }


async def _provision(bootstrap: str, passwords: dict[str, str]) -> None:
    """What Strimzi's topic and user operators do: the KafkaTopics and every user's ACLs."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.protocol.admin import CreateAclsRequest

    admin = AIOKafkaAdminClient(**_auth(bootstrap, ADMIN, passwords[ADMIN]))
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(t["topicName"], t["partitions"], 1) for t in TOPICS], timeout_ms=30_000
        )
        for user, spec in USERS.items():
            assert spec["authentication"]["type"] == "scram-sha-512"
            for acl in spec["authorization"]["acls"]:
                res = acl["resource"]
                for op in acl["operations"]:
                    resp = await admin._send_request(
                        CreateAclsRequest(
                            RESOURCE[res["type"]],
                            res.get("name", "kafka-cluster"),
                            PATTERN[res.get("patternType", "literal")],
                            f"User:{user}",
                            acl.get("host", "*"),
                            OPERATION[op],
                            ALLOW,
                        )  # fmt: skip
                    )
                    assert all(r[0] == 0 for r in resp.creation_responses), resp
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    passwords = {u: secrets.token_hex(12) for u in (ADMIN, *USERS)}
    info = devstack.start_kafka_sasl(
        tmp_path_factory.mktemp("kafka-acls"),
        username=ADMIN,
        password=passwords[ADMIN],
        mechanism=MECHANISM,
        users={u: passwords[u] for u in USERS},
        authorizer=True,
    )
    try:
        asyncio.run(_provision(info.url, passwords))
        yield info.url, passwords
    finally:
        info.stop()


@pytest.fixture(scope="module")
def stack(broker, make_stack):  # the broker outlives the stack (torn down after it)
    bootstrap, passwords = broker
    s = make_stack(
        "acls",
        workers=0,
        bootstrap=bootstrap,
        MTB_KAFKA_TOPIC_PREFIX="mtb.",  # the names the ACLs grant (k8s ConfigMap mtb-common)
        MTB_KAFKA_GROUP="mtb-workers",
        MTB_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        MTB_KAFKA_SASL_MECHANISM=MECHANISM,
        MTB_KAFKA_SASL_USERNAME="mtb-api",
        MTB_KAFKA_SASL_PASSWORD=passwords["mtb-api"],
    )
    for pool in load_policy().workers:
        s.start_worker(
            pool.name,
            MTB_WORKER_PRIORITIES=",".join(pool.priorities),
            MTB_KAFKA_SASL_USERNAME="mtb-worker",
            MTB_KAFKA_SASL_PASSWORD=passwords["mtb-worker"],
        )
    return s


def chunk_partitions(worker) -> set[str]:  # noqa: ANN001
    return {p for p in worker.assigned() if p.startswith("mtb.chunks.")}


def pool_partitions(priorities: tuple[str, ...]) -> set[str]:
    parts = {t["topicName"]: t["partitions"] for t in TOPICS}
    return {f"mtb.chunks.{p}[{i}]" for p in priorities for i in range(parts[f"mtb.chunks.{p}"])}


def until(condition, timeout: float, what) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not in {timeout} s: {what()}"
        time.sleep(0.5)


def test_each_pool_owns_exactly_its_topics(stack) -> None:  # noqa: ANN001
    pools = load_policy().workers
    workers = {w.name: w for w in stack.workers}
    until(
        lambda: all(
            chunk_partitions(workers[p.name]) == pool_partitions(p.priorities) for p in pools
        ),
        timeout=60,
        what=lambda: {p.name: sorted(chunk_partitions(workers[p.name])) for p in pools},
    )


def test_every_priority_completes_with_the_components_acls(stack) -> None:  # noqa: ANN001
    jobs = {p: stack.submit(f"The meeting starts at nine ({p}).", p)["job_id"] for p in
            ("critical", "high", "normal")}  # fmt: skip
    for priority, job_id in jobs.items():
        assert stack.wait(job_id, timeout=90)["status"] == "completed", priority


def test_ingest_from_a_client_becomes_a_job(stack, broker) -> None:  # noqa: ANN001
    from aiokafka import AIOKafkaProducer

    bootstrap, passwords = broker
    message = {
        "api_key": stack.service.keys["enterprise"],
        "request_id": "acl-ingest-1",
        "text": "The train leaves at noon.",
        "source_lang": "en",
        "target_lang": "pt",
        "priority": "high",
    }

    async def produce() -> None:
        producer = AIOKafkaProducer(
            acks="all", **_auth(bootstrap, "mtb-client", passwords["mtb-client"])
        )
        await producer.start()
        try:
            await producer.send_and_wait("mtb.ingest", json.dumps(message).encode(), key=b"acl-1")
        finally:
            await producer.stop()

    asyncio.run(produce())
    deadline = time.monotonic() + 90
    query = "select status from jobs where source_text = %(t)s"
    while (rows := stack.sql(query, t=message["text"])) != [("completed",)]:
        assert time.monotonic() < deadline, rows
        time.sleep(0.5)


def test_keda_reads_the_lag_and_nothing_else(stack, broker) -> None:  # noqa: ANN001
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    bootstrap, passwords = broker
    auth = _auth(bootstrap, "mtb-keda", passwords["mtb-keda"])
    chunk_topics = [t for t in TOPICS if t["topicName"].startswith("mtb.chunks.")]

    async def lag() -> tuple[dict, dict]:
        admin = AIOKafkaAdminClient(**auth)
        probe = AIOKafkaConsumer(**auth)
        await admin.start()
        await probe.start()
        try:
            tps = [
                TopicPartition(t["topicName"], i)
                for t in chunk_topics
                for i in range(t["partitions"])
            ]
            ends = await probe.end_offsets(tps)
            committed = await admin.list_consumer_group_offsets("mtb-workers", partitions=tps)
            return ends, committed
        finally:
            await probe.stop()
            await admin.close()

    ends, committed = asyncio.run(lag())
    assert sum(ends.values()) >= 3  # the jobs above went through the chunk topics
    assert sum(m.offset for m in committed.values() if m.offset > 0) >= 3

    async def read_chunks() -> None:
        consumer = AIOKafkaConsumer(
            "mtb.chunks.critical", group_id="mtb-keda-probe", auto_offset_reset="earliest", **auth
        )
        await consumer.start()
        try:
            await asyncio.wait_for(consumer.getone(), 20)
        finally:
            await consumer.stop()

    with pytest.raises(KafkaError, match="Authorization"):
        asyncio.run(read_chunks())


def test_normal_waits_for_its_pool_while_critical_is_served(stack, broker) -> None:  # noqa: ANN001
    _, passwords = broker
    normal_pool = load_policy().worker_for("normal")
    critical_pool = load_policy().worker_for("critical")
    workers = {w.name: w for w in stack.workers}
    assert workers[normal_pool.name].stop() == 0  # the pool at zero
    until(
        lambda: (
            chunk_partitions(workers[critical_pool.name])
            == pool_partitions(critical_pool.priorities)
        ),
        timeout=60,
        what=lambda: sorted(chunk_partitions(workers[critical_pool.name])),
    )
    normal = stack.submit("The shop opens at ten.", "normal")["job_id"]
    urgent = stack.submit("The shop opens at eight.", "critical")["job_id"]
    assert stack.wait(urgent, timeout=60)["status"] == "completed"
    time.sleep(3)  # every other pool had the chance to take the normal chunk
    (row,) = stack.sql("select status from jobs where id = %(j)s", j=normal)
    assert row == ("queued",)
    stack.start_worker(
        f"{normal_pool.name}-woken",
        MTB_WORKER_PRIORITIES=",".join(normal_pool.priorities),
        MTB_KAFKA_SASL_USERNAME="mtb-worker",
        MTB_KAFKA_SASL_PASSWORD=passwords["mtb-worker"],
    )
    assert stack.wait(normal, timeout=90)["status"] == "completed"


def test_the_client_cannot_write_chunks(broker) -> None:  # noqa: ANN001
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    bootstrap, passwords = broker

    async def write() -> None:
        producer = AIOKafkaProducer(**_auth(bootstrap, "mtb-client", passwords["mtb-client"]))
        await producer.start()
        try:
            await asyncio.wait_for(producer.send_and_wait("mtb.chunks.critical", b"x"), 20)
        finally:
            await producer.stop()

    with pytest.raises(KafkaError, match="Authorization"):
        asyncio.run(write())
