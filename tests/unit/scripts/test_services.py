"""scripts/services.py without starting servers: config, generated files, env file, CLI."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mtb_services as services  # scripts/services.py, registered by tests/conftest.py
import pytest

SCRIPT = services.REPO_ROOT / "scripts" / "services.py"


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")
    return {k: v for k, v in pairs}


def test_config_defaults_env_and_overrides(tmp_path):
    cfg = services.Config.from_env({})
    assert cfg.state_dir == services.REPO_ROOT / ".services"
    assert (cfg.pg_port, cfg.kafka_port, cfg.kafka_controller_port) == (25432, 29092, 29093)
    assert (cfg.triton_http_port, cfg.triton_grpc_port, cfg.triton_metrics_port) == (
        28000,
        28001,
        28002,
    )
    assert cfg.env_file == cfg.state_dir / "env"

    env = {"MTB_PG_PORT": "6543", "MTB_SERVICES_DIR": str(tmp_path), "MTB_KAFKA_PORT": "7000"}
    cfg = services.Config.from_env(env, kafka_port=7001, triton_grpc_port=None)
    assert cfg.pg_port == 6543 and isinstance(cfg.pg_port, int)
    assert cfg.kafka_port == 7001  # an explicit override beats the environment
    assert cfg.triton_grpc_port == 28001  # None means "not given"
    assert cfg.state_dir == tmp_path.resolve()
    assert cfg.database_url == "postgresql://mtb:mtb@127.0.0.1:6543/mtb"


def test_parse_only():
    assert services.parse_only(None) == ["postgres", "kafka", "triton"]
    assert services.parse_only("triton, postgres") == ["postgres", "triton"]
    assert services.parse_only(["kafka"]) == ["kafka"]
    with pytest.raises(services.ServiceError, match="redis"):
        services.parse_only("postgres,redis")


def test_env_file_round_trip(tmp_path):
    values = {
        "MTB_DATABASE_URL": "postgresql://mtb:mtb@127.0.0.1:25432/mtb",
        "MTB_KAFKA_BOOTSTRAP": "127.0.0.1:29092",
        "MTB_TRITON_URL": "127.0.0.1:28001",
    }
    path = tmp_path / "env"
    path.write_text(services.format_env_file(values))
    assert services.read_env_file(path) == values
    # Sourced by a real shell, it sets the same values.
    out = subprocess.run(
        ["bash", "-c", f"set -a; . {path}; set +a; echo $MTB_KAFKA_BOOTSTRAP"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "127.0.0.1:29092"


def test_parse_env_text_accepts_shell_syntax():
    text = """
    # comment
    export A=1
    B='two words'
    C="x=y"
    not a line
    D=
    """
    assert services.parse_env_text(text) == {"A": "1", "B": "two words", "C": "x=y", "D": ""}


def test_format_env_file_rejects_what_a_shell_would_mangle():
    with pytest.raises(ValueError):
        services.format_env_file({"A": "has space"})
    with pytest.raises(ValueError):
        services.format_env_file({"BAD-KEY": "x"})


def test_read_env_file_missing_is_empty(tmp_path):
    assert services.read_env_file(tmp_path / "nope") == {}


def test_kafka_server_properties(tmp_path):
    props = _props(
        services.kafka_server_properties(port=1234, controller_port=1235, log_dir=tmp_path)
    )
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:1235"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:1234,CONTROLLER://127.0.0.1:1235"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:1234"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert "CONTROLLER:PLAINTEXT" in props["listener.security.protocol.map"]
    assert props["log.dirs"] == str(tmp_path)
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
    ):
        assert props[key] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_new_cluster_id():
    ids = {services.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cid in ids:
        assert len(cid) == 22 and not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_postgres_conf_and_hba(tmp_path):
    conf = services.postgres_conf(5555, tmp_path)
    assert "port = 5555" in conf
    assert "listen_addresses = '127.0.0.1'" in conf
    assert f"unix_socket_directories = '{tmp_path}'" in conf
    host_lines = [line for line in services.pg_hba_conf().splitlines() if line.startswith("host")]
    assert host_lines and all(line.endswith("scram-sha-256") for line in host_lines)


def test_database_names_are_checked_before_connecting():
    with pytest.raises(ValueError):
        services.create_database('x"; DROP DATABASE mtb; --', url="postgresql://nowhere:1/x")
    assert services._with_database("postgresql://u:p@h:1/mtb", "t1") == "postgresql://u:p@h:1/t1"


def _fake_triton_paths(tmp_path: Path) -> services.TritonPaths:
    wheel = tmp_path / "wheel"
    backend = wheel / "backends" / "python"
    (backend / "__pycache__").mkdir(parents=True)
    (backend / "libtriton_python.so").write_bytes(b"so")
    (backend / "__pycache__" / "x.pyc").write_bytes(b"")
    stub = wheel / "stubs" / "3.11" / "triton_python_backend_stub"
    stub.parent.mkdir(parents=True)
    stub.write_bytes(b"stub")
    return services.TritonPaths(
        server=wheel / "bin" / "tritonserver",
        libs=tmp_path / "nvidia_pytriton.libs",
        python_backend=backend,
        stub=stub,
        python_libdir=Path("/opt/python/lib"),
        python_bin=Path("/repo/.venv/bin"),
    )


def test_prepare_triton_backends_places_the_stub(tmp_path):
    paths = _fake_triton_paths(tmp_path)
    dest = services.prepare_triton_backends(tmp_path / "backends", paths)
    python = dest / "python"
    assert (python / "libtriton_python.so").read_bytes() == b"so"
    assert (python / "triton_python_backend_stub").read_bytes() == b"stub"
    assert not (python / "__pycache__").exists()
    mtime = (python / "triton_python_backend_stub").stat().st_mtime_ns
    services.prepare_triton_backends(tmp_path / "backends", paths)  # cached: no copy
    assert (python / "triton_python_backend_stub").stat().st_mtime_ns == mtime


def test_triton_env_and_command(tmp_path):
    paths = _fake_triton_paths(tmp_path)
    env = services.triton_env(paths, {"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/x"})
    assert env["LD_LIBRARY_PATH"] == f"/opt/python/lib:{paths.libs}:/x"
    assert env["PATH"] == "/repo/.venv/bin:/usr/bin"
    cmd = services.triton_command(
        paths.server,
        model_repository=tmp_path / "repo",
        backend_directory=tmp_path / "backends",
        http_port=1,
        grpc_port=2,
        metrics_port=3,
    )
    assert cmd[0] == str(paths.server)
    for flag in (
        f"--model-repository={tmp_path / 'repo'}",
        f"--backend-directory={tmp_path / 'backends'}",
        "--model-control-mode=none",
        "--strict-readiness=true",
        "--log-verbose=0",
        "--http-port=1",
        "--grpc-port=2",
        "--metrics-port=3",
        "--grpc-address=127.0.0.1",
    ):
        assert flag in cmd


def test_stop_pid_terminates_and_reports(tmp_path):
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        deadline = time.monotonic() + 5  # until exec, /proc/PID/cmdline is still Python's
        while not services.pid_alive(proc.pid, "sleep") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert services.pid_alive(proc.pid, "sleep")
        assert not services.pid_alive(proc.pid, "postgres")  # marker guards against reuse
        t0 = time.monotonic()
        assert services.stop_pid(proc.pid, signal.SIGTERM, timeout=5)
        assert time.monotonic() - t0 < 5
        assert proc.wait(timeout=5) == -signal.SIGTERM
        assert not services.pid_alive(proc.pid)
        assert not services.stop_pid(proc.pid)
    finally:
        proc.kill()


def test_stale_or_foreign_state_is_not_running(tmp_path):
    cfg = services.Config.from_env({"MTB_SERVICES_DIR": str(tmp_path)})
    state = tmp_path / "postgres" / "state.json"
    state.parent.mkdir()
    # Our own pid: alive, but not a postgres server.
    record = {"pid": os.getpid(), "url": "u", "ports": {}, "env": {"MTB_X": "u"}, "log": "l"}
    state.write_text(json.dumps(record))
    assert services.running_state(cfg, "postgres") is None
    assert services.status(cfg) == {"postgres": None, "kafka": None, "triton": None}
    assert services.refresh_env_file(cfg) == {}
    assert not cfg.env_file.exists()


def test_cli(tmp_path):
    run = [sys.executable, str(SCRIPT)]
    out = subprocess.run([*run, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "up" in out.stdout and "down" in out.stdout
    out = subprocess.run([*run, "up", "--help"], capture_output=True, text=True)
    assert "--pg-port" in out.stdout and "--model-repository" in out.stdout
    state = ["--state-dir", str(tmp_path)]
    out = subprocess.run([*run, "status", *state], capture_output=True, text=True)
    assert out.returncode == 3 and out.stdout.count("stopped") == 3
    out = subprocess.run([*run, "env", *state], capture_output=True, text=True)
    assert out.returncode == 3 and "no services running" in out.stderr
    out = subprocess.run([*run, "up", "--only", "redis", *state], capture_output=True, text=True)
    assert out.returncode == 1 and "unknown service" in out.stderr
    out = subprocess.run([*run, "down", *state], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.count("was not running") == 3


def test_leases_stop_a_test_started_server_after_its_last_user(tmp_path, monkeypatch):
    cfg = services.Config.from_env({"MTB_SERVICES_DIR": str(tmp_path)})
    log = tmp_path / "fake.log"

    def fake_start(cfg):
        proc = services._spawn(["sleep", "60"], log)
        return services.ServiceInfo(
            name="postgres",
            pid=proc.pid,
            url="u",
            ports={"port": cfg.pg_port},
            env={"MTB_DATABASE_URL": "u"},
            log_path=log,
            started=True,
        )

    monkeypatch.setitem(services._STARTERS, "postgres", fake_start)
    monkeypatch.setitem(services.PID_MARKERS, "postgres", "sleep")
    monkeypatch.setitem(services.STOP_SIGNALS, "postgres", signal.SIGTERM)

    info = services.ensure_service("postgres", cfg, lease=True)
    assert info.started and info.alive()
    assert services.read_env_file(cfg.env_file) == {
        "MTB_DATABASE_URL": "u",
        "MTB_JWT_SECRET": services.local_jwt_secret(cfg),  # the local stack's shared secret
    }
    # Another live test session holds a lease: releasing ours keeps the server.
    other = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "postgres" / "leases" / str(other.pid)).touch()
        assert not services.release_service("postgres", cfg)
        assert info.alive()
    finally:
        other.kill()
        other.wait()
    again = services.ensure_service("postgres", cfg, lease=True)
    assert not again.started and again.pid == info.pid
    assert services.release_service("postgres", cfg)  # the other session died: last user
    assert not info.alive() and not cfg.env_file.exists()

    # Started by `up` (no lease): a test session's release never stops it.
    info = services.ensure_service("postgres", cfg)
    services.ensure_service("postgres", cfg, lease=True)
    assert not services.release_service("postgres", cfg)
    assert info.alive()
    assert services.stop_service("postgres", cfg) and not info.alive()
