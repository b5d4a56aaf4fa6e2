"""Apache Kafka (KRaft, single node, broker+controller) from Maven Central jars, fetched
by ``devstack/kafka-pom.xml`` into ``.services/kafka/libs`` and run with ``java``; the
shared broker on ``127.0.0.1:MTB_KAFKA_PORT``, private SASL/SCRAM brokers for the
security tests (``start_kafka_sasl``), and topic creation for tests.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from devstack.config import Config
from devstack.daemon import (
    ServiceInfo,
    apt_install,
    check_ports_free,
    current_run_log,
    free_port,
    run_command,
    spawn,
    wait_ready,
)
from devstack.errors import ServiceError
from devstack.spec import Port, ServiceSpec

KAFKA_POM = Path(__file__).resolve().parent / "kafka-pom.xml"


def kafka_server_properties(
    *, port: int, controller_port: int, log_dir: Path, node_id: int = 1
) -> str:
    """server.properties of a single-node KRaft cluster (broker+controller) on 127.0.0.1."""
    return (
        "# Written by devstack at every start; edits here are lost.\n"
        "process.roles=broker,controller\n"
        f"node.id={node_id}\n"
        f"controller.quorum.voters={node_id}@127.0.0.1:{controller_port}\n"
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}\n"
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n"
        "inter.broker.listener.name=PLAINTEXT\n"
        "controller.listener.names=CONTROLLER\n"
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n"
        f"log.dirs={log_dir}\n"
        "num.partitions=1\n"
        "default.replication.factor=1\n"
        "min.insync.replicas=1\n"
        "offsets.topic.replication.factor=1\n"
        "offsets.topic.num.partitions=4\n"
        "transaction.state.log.replication.factor=1\n"
        "transaction.state.log.min.isr=1\n"
        "transaction.state.log.num.partitions=4\n"
        "group.initial.rebalance.delay.ms=0\n"
        # the broker's heartbeat to its own controller every 5 s instead of 2 s, and 4
        # background threads instead of 10: three idle brokers side by side (4 x 30 s),
        # 0.051 of a core against 0.071 with Kafka's defaults (that run also had 1 network /
        # 2 io threads, worth ~0.005 alone: not kept, the tests' bursts of clients get them)
        "num.network.threads=2\n"
        "num.io.threads=4\n"
        "background.threads=4\n"
        "broker.heartbeat.interval.ms=5000\n"
        "broker.session.timeout.ms=18000\n"
        "num.recovery.threads.per.data.dir=1\n"
        # no no-op record in the metadata log every 500 ms: a single node needs no
        # liveness proof through it, and each one is a write the idle broker does
        "metadata.max.idle.interval.ms=0\n"
    )


def kafka_log4j_properties() -> str:
    """Kafka 3.9 logs through slf4j-reload4j: everything to stdout (our log file)."""
    return (
        "log4j.rootLogger=INFO, stdout\n"
        "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
        "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        "log4j.logger.kafka.request.logger=WARN\n"
        "log4j.logger.state.change.logger=WARN\n"
        "log4j.logger.org.apache.kafka.controller=INFO\n"
    )


def new_cluster_id() -> str:
    """A KRaft cluster id like ``StorageTool random-uuid``: 22 base64url characters."""
    while True:
        raw = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not raw.startswith("-"):  # Kafka's Uuid.randomUuid() avoids these too
            return raw


def _java() -> str:
    """``$JAVA_HOME/bin/java`` when set, else the one on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java") or "java"


def ensure_kafka_libs(cfg: Config) -> Path:
    """Kafka's jars in ``.services/kafka/libs`` via Maven (skipped when already there)."""
    kafka_dir = cfg.service_dir("kafka")
    libs = kafka_dir / "libs"
    pom_hash = hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()
    marker = libs / ".pom.sha256"
    if marker.exists() and marker.read_text().strip() == pom_hash:
        return libs
    if shutil.which("mvn") is None or shutil.which("java") is None:
        print("kafka: installing Java and Maven with apt-get ...", file=sys.stderr, flush=True)
        apt_install(["maven", "default-jre-headless"], kafka_dir / "apt.log")
    tmp = kafka_dir / "libs.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.monotonic()
    print("kafka: fetching broker jars with Maven ...", file=sys.stderr, flush=True)
    run_command(
        [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(KAFKA_POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
        ],
        "kafka: mvn dependency:copy-dependencies",
        kafka_dir / "mvn.log",
    )
    if not list(tmp.glob("kafka_2.13-*.jar")):
        raise ServiceError(f"kafka: Maven copied no kafka_2.13 jar into {tmp}")
    (tmp / ".pom.sha256").write_text(pom_hash + "\n")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    print(f"kafka: jars ready in {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    return libs


def _kafka_probe(bootstrap: str, **client_kwargs: Any) -> bool:
    """A metadata request that lists at least one broker (``client_kwargs``: SASL/TLS)."""
    import asyncio
    import logging

    from aiokafka import AIOKafkaClient

    async def probe() -> bool:
        client = AIOKafkaClient(
            bootstrap_servers=bootstrap, request_timeout_ms=5000, **client_kwargs
        )
        try:
            await client.bootstrap()
            return bool(client.cluster.brokers())
        finally:
            await client.close()

    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # connection refused while starting is expected
    try:
        return asyncio.run(probe())
    finally:
        logger.setLevel(level)


def _kafka_ready(bootstrap: str, log_path: Path) -> bool:
    try:
        import aiokafka  # noqa: F401
    except ImportError:
        host, _, port = bootstrap.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=2):
            pass
        return "Kafka Server started" in current_run_log(log_path)
    return _kafka_probe(bootstrap)


def _broker_files(work: Path, properties: str, libs: Path) -> tuple[Path, list[str]]:
    """Write ``server.properties`` and ``log4j.properties`` into ``work``; returns the
    properties path and the ``java ... -cp libs/*`` prefix shared by StorageTool and
    the broker."""
    props = work / "server.properties"
    props.write_text(properties)
    log4j = work / "log4j.properties"
    log4j.write_text(kafka_log4j_properties())
    return props, [_java(), f"-Dlog4j.configuration=file:{log4j}", "-cp", f"{libs}/*"]


def _format_storage(java: list[str], props: Path, what: str, log: Path, *extra: str) -> None:
    """``StorageTool format`` of a fresh data folder (a new cluster id)."""
    run_command(
        [*java, "kafka.tools.StorageTool", "format", "-t", new_cluster_id(), "-c", str(props),
         *extra],
        f"{what}: StorageTool format",
        log,
    )  # fmt: skip


def _spawn_broker(
    java: list[str], props: Path, log_path: Path, heap_max: str
) -> subprocess.Popen[bytes]:
    """The broker JVM (G1, small heap: it shares the machine with the tests). Tried and
    left: SerialGC + C1 only saved ~3 CPU-seconds of its first 150 s (18.8-22.9 against
    21.8-26.1), but with it the capacity replay (L0_capacity) failed twice in a row (the
    stack's jobs 17% slower than its model); C2's faster request handling is kept."""
    return spawn(
        [java[0], "-Xms128m", f"-Xmx{heap_max}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
         *java[1:], "kafka.Kafka", str(props)],
        log_path,
        cwd=props.parent,
    )  # fmt: skip


def _kafka_start(cfg: Config) -> ServiceInfo:
    kafka_dir = cfg.service_dir("kafka")
    kafka_dir.mkdir(parents=True, exist_ok=True)
    log_path = kafka_dir / "kafka.log"
    libs = ensure_kafka_libs(cfg)
    ports = {"port": cfg.kafka_port, "controller_port": cfg.kafka_controller_port}
    check_ports_free("kafka", ports)
    data_dir = kafka_dir / "data"
    properties = kafka_server_properties(
        port=cfg.kafka_port, controller_port=cfg.kafka_controller_port, log_dir=data_dir
    )
    props, java = _broker_files(kafka_dir, properties, libs)
    if not (data_dir / "meta.properties").exists():
        shutil.rmtree(data_dir, ignore_errors=True)
        _format_storage(java, props, "kafka", kafka_dir / "format.log")
    t0 = time.monotonic()
    proc = _spawn_broker(java, props, log_path, "512m")
    bootstrap = f"127.0.0.1:{cfg.kafka_port}"
    wait_ready("kafka", proc, lambda: _kafka_ready(bootstrap, log_path), cfg.timeout, log_path)
    return ServiceInfo(
        name="kafka",
        pid=proc.pid,
        url=bootstrap,
        ports=ports,
        env={"MTB_KAFKA_BOOTSTRAP": bootstrap},
        log_path=log_path,
        started=True,
        urls={"bootstrap": bootstrap},
        startup_s=time.monotonic() - t0,
    )


def start_kafka_sasl(
    workdir: str | Path,
    *,
    username: str = "mtb",
    password: str,
    mechanism: str = "SCRAM-SHA-256",
    cfg: Config | None = None,
    timeout: float = 180.0,
    users: Mapping[str, str] | None = None,
    authorizer: bool = False,
) -> ServiceInfo:
    """A private single-node KRaft broker whose client listener is SASL_PLAINTEXT with
    ``mechanism`` (SCRAM), on free loopback ports, the credential created at format time
    (``StorageTool format --add-scram``). Inter-broker and controller traffic stay on
    PLAINTEXT loopback listeners of their own. Uses the jars of the shared broker
    (``ensure_kafka_libs``). Returns a handle with ``url`` (the SASL bootstrap) and
    ``stop()``; nothing is recorded in ``.services/env``.

    ``users``: more SCRAM credentials (name -> password). ``authorizer``: ACLs enforced
    (KRaft's StandardAuthorizer, nothing allowed without an ACL) with ``username`` as the
    super user who may create them, as Strimzi's ``authorization: simple`` does."""
    cfg = cfg or Config.from_env()
    libs = ensure_kafka_libs(cfg)
    work = Path(workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    port, internal, controller = free_port(), free_port(), free_port()
    data_dir = work / "data"
    base = kafka_server_properties(port=port, controller_port=controller, log_dir=data_dir)
    keep = [
        line for line in base.splitlines()
        if not line.startswith(("listeners=", "advertised.listeners=",
                                "inter.broker.listener.name=", "listener.security.protocol.map="))
    ]  # fmt: skip
    credentials = {username: password, **(users or {})}
    if any('"' in f"{u}{p}" or "," in f"{u}{p}" for u, p in credentials.items()):
        raise ServiceError("kafka-sasl: quotes or commas in a username or password")
    listener = f"listener.name.sasl_plaintext.{mechanism.lower()}"
    keep += [
        f"listeners=SASL_PLAINTEXT://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal},"
        f"CONTROLLER://127.0.0.1:{controller}",
        f"advertised.listeners=SASL_PLAINTEXT://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal}",
        "inter.broker.listener.name=INTERNAL",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,"
        "SASL_PLAINTEXT:SASL_PLAINTEXT",
        f"sasl.enabled.mechanisms={mechanism}",
        f"{listener}.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule"
        f' required username="{username}" password="{password}";',
    ]
    if authorizer:  # the PLAINTEXT loopback listeners (broker, controller) are ANONYMOUS
        keep += [
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            f"super.users=User:{username};User:ANONYMOUS",
            "allow.everyone.if.no.acl.found=false",
        ]
    props, java = _broker_files(work, "\n".join(keep) + "\n", libs)
    log_path = work / "kafka.log"
    shutil.rmtree(data_dir, ignore_errors=True)
    scram = [
        arg for u, p in credentials.items()
        for arg in ("--add-scram", f"{mechanism}=[name={u},password={p}]")
    ]  # fmt: skip
    _format_storage(java, props, "kafka-sasl", work / "format.log", *scram)
    t0 = time.monotonic()
    proc = _spawn_broker(java, props, log_path, "384m")
    bootstrap = f"127.0.0.1:{port}"
    auth = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": username,
        "sasl_plain_password": password,
    }
    wait_ready("kafka-sasl", proc, lambda: _kafka_probe(bootstrap, **auth), timeout, log_path)
    return ServiceInfo(
        name="kafka-sasl",
        pid=proc.pid,
        url=bootstrap,
        ports={"port": port, "internal_port": internal, "controller_port": controller},
        env={"MTB_KAFKA_BOOTSTRAP": bootstrap, "MTB_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
             "MTB_KAFKA_SASL_MECHANISM": mechanism, "MTB_KAFKA_SASL_USERNAME": username,
             "MTB_KAFKA_SASL_PASSWORD": password},
        log_path=log_path,
        started=True,
        urls={"bootstrap": bootstrap},
        startup_s=time.monotonic() - t0,
    )  # fmt: skip


async def create_topics_async(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 1,
    replication_factor: int = 1,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create topics that do not exist yet; returns the names it created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    names = list(dict.fromkeys(names))
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [n for n in names if n not in existing]
        if not wanted:
            return []
        resp = await admin.create_topics(
            [NewTopic(n, partitions, replication_factor) for n in wanted],
            timeout_ms=int(timeout_s * 1000),
        )
        created = []
        for topic_error in resp.topic_errors:
            topic, code = topic_error[0], topic_error[1]
            if code == 0:
                created.append(topic)
            elif code != 36:  # 36: TOPIC_ALREADY_EXISTS (a racing creator)
                message = topic_error[2] if len(topic_error) > 2 else ""
                raise ServiceError(f"kafka: creating topic {topic!r}: error {code} {message}")
        return created
    finally:
        await admin.close()


def create_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 1,
    replication_factor: int = 1,
    timeout_s: float = 30.0,
) -> list[str]:
    """Blocking ``create_topics_async`` (call the async one inside an event loop)."""
    import asyncio

    return asyncio.run(
        create_topics_async(bootstrap, names, partitions, replication_factor, timeout_s)
    )


async def delete_topics_async(bootstrap: str, prefix: str, timeout_s: float = 30.0) -> list[str]:
    """Delete every topic whose name starts with ``prefix``; returns the names deleted.

    Benchmarks and test scenarios each make their own topics (a prefix per run) on the
    shared broker: left behind, they pile up (hundreds of partitions after a day of runs)
    and the broker's idle CPU grows with them, on the cores the next benchmark measures."""
    from aiokafka.admin import AIOKafkaAdminClient

    if not prefix:
        raise ValueError("delete_topics needs a prefix (it never deletes every topic)")
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics() if t.startswith(prefix))
        if names:
            await admin.delete_topics(names, timeout_ms=int(timeout_s * 1000))
        return names
    finally:
        await admin.close()


def delete_topics(bootstrap: str, prefix: str, timeout_s: float = 30.0) -> list[str]:
    """Blocking ``delete_topics_async``."""
    import asyncio

    return asyncio.run(delete_topics_async(bootstrap, prefix, timeout_s))


def _probe(state: Mapping[str, Any]) -> bool:
    return _kafka_ready(state["url"], Path(state["log"]))


SPEC = ServiceSpec(
    name="kafka",
    start=_kafka_start,
    probe=_probe,
    ports=(
        Port("kafka_port", "port", "MTB_KAFKA_PORT", 29092),
        Port("kafka_controller_port", "controller_port", "MTB_KAFKA_CONTROLLER_PORT", 29093),
    ),
    pid_marker="kafka.Kafka",
)
