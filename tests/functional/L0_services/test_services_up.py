"""The real local services start and answer: PostgreSQL, Kafka (KRaft) and Triton."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import urllib.request
import uuid

import numpy as np
import pytest

import devstack as services

pytestmark = pytest.mark.services


def test_postgres_answers_queries(postgres_url):
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (
            "mtb",
            "mtb",
        )
        conn.execute("CREATE TEMP TABLE t (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO t VALUES (1, 'olá mundo')")
        assert conn.execute("SELECT body FROM t WHERE id = 1").fetchone() == ("olá mundo",)


def test_postgres_throwaway_database(postgres_url):
    import psycopg

    name = f"mtb_test_{uuid.uuid4().hex[:8]}"
    url = services.create_database(name, postgres_url)
    try:
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (name,)
    finally:
        services.drop_database(name, postgres_url)
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        assert row is None


def test_up_reuses_a_running_server(postgres_url, services_config):
    # What a second test session does (the lease is this process's, already held).
    first = services.ensure_service("postgres", services_config, lease=True)
    again = services.ensure_service("postgres", services_config, lease=True)
    assert not again.started and again.pid == first.pid and again.url == postgres_url
    assert services.read_env_file(services_config.env_file)["MTB_DATABASE_URL"] == postgres_url


async def test_kafka_topic_produce_consume(kafka_bootstrap):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = f"mtb-test-{uuid.uuid4().hex[:8]}"
    assert await services.create_topics_async(kafka_bootstrap, [topic], partitions=2) == [topic]
    assert await services.create_topics_async(kafka_bootstrap, [topic], partitions=2) == []

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"job-1", headers=[("h", b"v")])
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"g-{topic}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        msg = await asyncio.wait_for(consumer.getone(), timeout=60)
    finally:
        await consumer.stop()
    assert (msg.topic, msg.key, msg.value, msg.headers) == (
        topic,
        b"job-1",
        b"hello",
        (("h", b"v"),),
    )


async def test_kafka_delete_topics_takes_only_the_prefix(kafka_bootstrap):
    run = f"mtb-del-{uuid.uuid4().hex[:8]}."
    mine = [f"{run}chunks.normal", f"{run}results"]
    other = f"{run[:-1]}x.results"  # shares the text before the dot, not the prefix
    await services.create_topics_async(kafka_bootstrap, [*mine, other])
    assert await services.delete_topics_async(kafka_bootstrap, run) == sorted(mine)
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        left = {t for t in await admin.list_topics() if t.startswith(run[:-1])}
    finally:
        await admin.close()
    assert left == {other}
    await services.delete_topics_async(kafka_bootstrap, other)
    with pytest.raises(ValueError, match="prefix"):
        await services.delete_topics_async(kafka_bootstrap, "")


def test_cli_status_sees_the_servers(postgres_url, kafka_bootstrap, services_config):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "devstack",
            "status",
            "--only",
            "postgres,kafka",
            "--state-dir",
            str(services_config.state_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert postgres_url in out.stdout and kafka_bootstrap in out.stdout


IDENTITY_CONFIG = """
name: "identity"
backend: "python"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] },
  { name: "TEXT" data_type: TYPE_STRING dims: [ -1 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] },
  { name: "TEXT_OUT" data_type: TYPE_STRING dims: [ -1 ] }
]
instance_group [ { kind: KIND_CPU count: 1 } ]
dynamic_batching { }
"""

IDENTITY_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            text = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("OUTPUT0", x), pb_utils.Tensor("TEXT_OUT", text)]
                )
            )
        return responses
"""


def _write_model(repo, name, config, model_py):
    version = repo / name / "1"
    version.mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(textwrap.dedent(config))
    (version / "model.py").write_text(textwrap.dedent(model_py))


def test_triton_serves_a_python_backend_model(triton_factory, tmp_path):
    import tritonclient.grpc as grpcclient

    repo = tmp_path / "repo"
    _write_model(repo, "identity", IDENTITY_CONFIG, IDENTITY_MODEL)
    server = triton_factory(repo)

    client = grpcclient.InferenceServerClient(server.url)
    try:
        assert client.is_server_ready() and client.is_model_ready("identity")
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        text = np.array([["olá", "mundo"], ["bom", "dia"]], dtype=object)
        inputs = [
            grpcclient.InferInput("INPUT0", x.shape, "FP32"),
            grpcclient.InferInput("TEXT", text.shape, "BYTES"),
        ]
        inputs[0].set_data_from_numpy(x)
        inputs[1].set_data_from_numpy(text)
        result = client.infer("identity", inputs)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), x)
        got = [[s.decode() for s in row] for row in result.as_numpy("TEXT_OUT")]
        assert got == [["olá", "mundo"], ["bom", "dia"]]
    finally:
        client.close()

    with urllib.request.urlopen(server.urls["metrics"], timeout=10) as resp:
        metrics = resp.read().decode()
    assert 'nv_inference_request_success{model="identity",version="1"} 1' in metrics

    server.stop()
    assert not server.alive()


def test_triton_start_failure_reports_the_log(tmp_path):
    repo = tmp_path / "repo"
    _write_model(
        repo,
        "broken",
        IDENTITY_CONFIG.replace('"identity"', '"broken"'),
        "raise RuntimeError('model file is broken on purpose')\n",
    )
    with pytest.raises(services.ServiceError) as err:
        services.start_triton(repo, workdir=tmp_path / "work", timeout=60)
    message = str(err.value)
    assert "triton exited" in message and "broken on purpose" in message


def test_triton_on_model_repository(triton_server):
    """Skipped until model_repository/ holds a model; then all of them must load."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(triton_server.url)
    try:
        assert client.is_server_ready()
    finally:
        client.close()
