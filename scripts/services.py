#!/usr/bin/env python3
"""Real local PostgreSQL, Apache Kafka and Triton for tests and ``make services``.

The project installs and starts what it needs itself (no Docker here):

* PostgreSQL from Debian's packages (``apt-get install postgresql`` when missing), a
  cluster of our own under ``.services/postgres`` on 127.0.0.1, run as the ``postgres``
  system user when we are root. Database and user ``mtb`` (password ``mtb``).
* Apache Kafka (KRaft, single node, broker+controller) from Maven Central jars, fetched by
  ``scripts/kafka/pom.xml`` into ``.services/kafka/libs`` and run with ``java``.
* Triton: the ``tritonserver`` binary bundled in the ``nvidia-pytriton`` wheel, python
  backend only, on a model repository (default ``model_repository/``).

Everything lives under ``.services/`` in the repository root (``MTB_SERVICES_DIR``
overrides it): data, logs, ``state.json`` (pid, ports) per service, and ``.services/env``
with the connection settings of the running services (``MTB_DATABASE_URL``,
``MTB_KAFKA_BOOTSTRAP``, ``MTB_TRITON_URL``, ...) for shells and tests to source:

    set -a; . .services/env; set +a

Command line::

    .venv/bin/python scripts/services.py up [--only postgres,kafka,triton] [ports...]
    .venv/bin/python scripts/services.py status | env | down [--purge]

Importable API (tests load this file by path as ``mtb_services``; see tests/conftest.py):
``Config``, ``up``/``down``/``status``, ``ensure_service``/``release_service``/
``stop_service`` (leases let parallel test sessions share one server), ``start_triton``
(a private server on any model repository), ``create_database``/``drop_database``,
``create_topics``/``create_topics_async``, ``read_env_file``.

Servers run detached (own session) so they outlive ``up``; ``down`` stops them by pid
(PostgreSQL with SIGINT, its fast shutdown; Kafka and Triton with SIGTERM), then SIGKILLs
the process group after 30 s.

Only the standard library is needed to import this module; readiness checks use psycopg
and aiokafka when they are importable (they are in the project's venv) and fall back to
``pg_isready`` / the broker's log otherwise.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICES: tuple[str, ...] = ("postgres", "kafka", "triton")
KAFKA_POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
ENV_FILE_NAME = "env"

PG_USER = "mtb"
PG_PASSWORD = "mtb"
PG_DATABASE = "mtb"
PG_SUPERUSER = "postgres"

# How `down` stops each server: postgres' SIGTERM is a "smart" shutdown that waits for
# clients to disconnect, SIGINT is its documented fast shutdown.
STOP_SIGNALS = {"postgres": signal.SIGINT, "kafka": signal.SIGTERM, "triton": signal.SIGTERM}
# A word of the command line that proves a pid still belongs to our server.
PID_MARKERS = {"postgres": "postgres", "kafka": "kafka.Kafka", "triton": "tritonserver"}

# Popen objects of servers started by this process, kept so they can be reaped.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class ServiceError(RuntimeError):
    """A service could not be installed, started or stopped; the message says why."""


# ---------------------------------------------------------------------------- config


def _default_python() -> Path:
    venv_python = REPO_ROOT / ".venv" / "bin" / "python"
    return venv_python if venv_python.exists() else Path(sys.executable)


# Config field -> environment variable that overrides its default.
ENV_VARS: dict[str, str] = {
    "state_dir": "MTB_SERVICES_DIR",
    "pg_port": "MTB_PG_PORT",
    "kafka_port": "MTB_KAFKA_PORT",
    "kafka_controller_port": "MTB_KAFKA_CONTROLLER_PORT",
    "triton_http_port": "MTB_TRITON_HTTP_PORT",
    "triton_grpc_port": "MTB_TRITON_GRPC_PORT",
    "triton_metrics_port": "MTB_TRITON_METRICS_PORT",
    "model_repository": "MTB_MODEL_REPOSITORY",
    "python": "MTB_SERVICES_PYTHON",
    "timeout": "MTB_SERVICES_TIMEOUT",
}


_PORT_FIELDS = (
    "pg_port",
    "kafka_port",
    "kafka_controller_port",
    "triton_http_port",
    "triton_grpc_port",
    "triton_metrics_port",
)


@dataclass
class Config:
    """Where the services keep their state and which loopback ports they use."""

    state_dir: Path = REPO_ROOT / ".services"
    # Below Linux's ephemeral range (32768-60999): with the ports there before (55432,
    # 58000-58002, 59092), a test's client socket or a private server's free port once
    # took 58002 just before Triton's session server wanted it, and CI failed.
    pg_port: int = 25432
    kafka_port: int = 29092
    kafka_controller_port: int = 29093
    triton_http_port: int = 28000
    triton_grpc_port: int = 28001
    triton_metrics_port: int = 28002
    model_repository: Path = REPO_ROOT / "model_repository"
    python: Path = field(default_factory=_default_python)  # interpreter for Triton's stub
    timeout: float = 180.0  # seconds to wait for one service to become ready

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Defaults, then ``MTB_*`` variables (see ``ENV_VARS``), then non-None overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, var in ENV_VARS.items():
            raw = env.get(var, "")
            if raw:
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        cfg = cls(**values)
        for name in _PORT_FIELDS:
            setattr(cfg, name, int(getattr(cfg, name)))
        cfg.timeout = float(cfg.timeout)
        cfg.state_dir = Path(cfg.state_dir).expanduser().resolve()
        cfg.model_repository = Path(cfg.model_repository).expanduser().resolve()
        cfg.python = Path(cfg.python).expanduser()
        return cfg

    def service_dir(self, name: str) -> Path:
        return self.state_dir / name

    @property
    def env_file(self) -> Path:
        return self.state_dir / ENV_FILE_NAME

    @property
    def database_url(self) -> str:
        return pg_url(self.pg_port)


def parse_only(raw: str | Iterable[str] | None) -> list[str]:
    """``"kafka,postgres"`` -> services in canonical order; unknown names are an error."""
    if raw is None:
        return list(SERVICES)
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    names = {item.strip().lower() for item in items if item.strip()}
    unknown = names - set(SERVICES)
    if unknown:
        raise ServiceError(
            f"unknown service(s): {', '.join(sorted(unknown))}; choose from {', '.join(SERVICES)}"
        )
    return [name for name in SERVICES if name in names]


# ---------------------------------------------------------------------------- env file


def format_env_file(values: Mapping[str, str]) -> str:
    lines = [
        "# Written by scripts/services.py for the running local services.",
        "# Load it with: set -a; . .services/env; set +a",
    ]
    for key, value in values.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or re.search(r"[\s'\"$`\\]", value):
            raise ValueError(f"not a plain shell assignment: {key}={value!r}")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def parse_env_text(text: str) -> dict[str, str]:
    """Parse ``KEY=VALUE`` lines (comments, blank lines, ``export`` and quotes allowed)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def read_env_file(path: str | Path | None = None) -> dict[str, str]:
    """The settings in ``.services/env`` (or ``path``); empty when the file is missing."""
    path = Path(path) if path is not None else Config.from_env().env_file
    try:
        return parse_env_text(path.read_text())
    except FileNotFoundError:
        return {}


def local_jwt_secret(cfg: Config) -> str:
    """A random JWT secret for the local stack, kept in ``.services/jwt-secret`` (0600):
    with PostgreSQL or Kafka configured `mtctl serve`/`worker` refuse to start without
    MTB_JWT_SECRET, and every process of the local stack must share one."""
    path = cfg.state_dir / "jwt-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".jwt-secret.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48) + "\n")
        os.replace(tmp, path)
    return path.read_text().strip()


def refresh_env_file(cfg: Config) -> dict[str, str]:
    """Rewrite ``.services/env`` from the services that run now (remove it when none),
    plus the local stack's MTB_JWT_SECRET (``local_jwt_secret``)."""
    values: dict[str, str] = {}
    for name in SERVICES:
        state = running_state(cfg, name)
        if state:
            values.update(state.get("env", {}))
    if values:
        values["MTB_JWT_SECRET"] = local_jwt_secret(cfg)
        _atomic_write(cfg.env_file, format_env_file(values))
    else:
        cfg.env_file.unlink(missing_ok=True)
    return values


# ---------------------------------------------------------------------------- processes


@dataclass
class ServiceInfo:
    """A running server: its pid, ports, the URL clients use and its env-file lines."""

    name: str
    pid: int
    url: str
    ports: dict[str, int]
    env: dict[str, str]
    log_path: Path
    started: bool = False  # True when this call started it, False when it was running
    urls: dict[str, str] = field(default_factory=dict)
    startup_s: float = 0.0

    def alive(self) -> bool:
        return pid_alive(self.pid, PID_MARKERS.get(self.name))

    def stop(self, timeout: float = 30.0) -> None:
        stop_pid(self.pid, STOP_SIGNALS.get(self.name, signal.SIGTERM), timeout)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _reap(pid: int) -> None:
    # Only servers that we spawned: waitpid() on another child would steal the exit
    # status from its owner's Popen. Zombies of others count as dead in pid_alive().
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        _CHILDREN.pop(pid, None)


def pid_alive(pid: int, marker: str | None = None) -> bool:
    """True when ``pid`` runs (not a zombie) and its command line contains ``marker``."""
    if pid <= 0:
        return False
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
            return False
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return marker is None or marker in cmdline


def stop_pid(pid: int, sig: int = signal.SIGTERM, timeout: float = 30.0) -> bool:
    """Send ``sig``; after ``timeout`` s SIGKILL the process group. True if it was running."""
    if not pid_alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            break
        time.sleep(0.1)
    else:
        # Our servers lead their own session/process group: take helpers (stubs) too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        for _ in range(50):
            if not pid_alive(pid):
                break
            time.sleep(0.1)
    proc = _CHILDREN.pop(pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    return True


def _current_run_log(path: Path) -> str:
    """The log text written since the last start (``_spawn`` writes a ``====`` header)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 256 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return text[text.rfind("\n==== ") + 1 :]


_ERROR_LINE = re.compile(r"^E\d{4} |\b(ERROR|FATAL|PANIC|UNAVAILABLE|Traceback)\b|Error\b")


def log_tail(path: Path, lines: int = 30) -> str:
    """Error-looking lines of the last run, then its last ``lines`` lines (for messages)."""
    text = _current_run_log(path)
    if not text:
        return f"({path} is empty or missing)"
    squeeze = [(re.compile(r" {3,}"), "  "), (re.compile(r"-{10,}"), "-" * 10)]
    all_lines = [line.rstrip() for line in text.splitlines()]
    for pattern, repl in squeeze:
        all_lines = [pattern.sub(repl, line) for line in all_lines]
    tail = all_lines[-lines:]
    errors = [line for line in all_lines[:-lines] if _ERROR_LINE.search(line)][-15:]
    parts = (["error lines:", *errors, "last lines:"] if errors else []) + tail
    return "\n".join(parts)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port that is free right now (for tests that need private servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _check_ports_free(name: str, ports: Mapping[str, int]) -> None:
    busy = [f"{what} {port}" for what, port in ports.items() if not port_free(port)]
    if busy:
        raise ServiceError(
            f"{name}: port(s) {', '.join(busy)} on 127.0.0.1 are taken by a process that"
            " scripts/services.py did not start; pick others (--help lists the port flags"
            " and MTB_*_PORT variables) or stop that process"
        )


def _spawn(
    cmd: list[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        kwargs: dict[str, Any] = {}
        if user is not None:
            kwargs.update(user=user, group=user, extra_groups=[])
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,  # survives the CLI; own group for stop_pid's SIGKILL
            **kwargs,
        )
    _CHILDREN[proc.pid] = proc
    return proc


def _wait_ready(
    name: str,
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    timeout: float,
    log_path: Path,
) -> None:
    try:
        _poll_ready(name, proc, ready, timeout, log_path)
    except KeyboardInterrupt:
        stop_pid(proc.pid, signal.SIGKILL, 5)  # no half-started server left behind
        raise


def _poll_ready(
    name: str,
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    timeout: float,
    log_path: Path,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            _CHILDREN.pop(proc.pid, None)
            raise ServiceError(
                f"{name} exited with code {proc.returncode} before it was ready."
                f" Last lines of {log_path}:\n{log_tail(log_path)}"
            )
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001 - a failed probe means "not yet"
            pass
        if time.monotonic() > deadline:
            stop_pid(proc.pid, signal.SIGKILL, 5)
            raise ServiceError(
                f"{name} was not ready after {timeout:.0f} s (killed it)."
                f" Last lines of {log_path}:\n{log_tail(log_path)}"
            )
        time.sleep(0.25)


def _run(cmd: list[str], what: str, log_path: Path | None = None, **kwargs: Any) -> str:
    """Run a short command; raise ServiceError with its output when it fails."""
    try:
        res = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kwargs
        )
    except FileNotFoundError as exc:
        raise ServiceError(f"{what}: {exc}") from exc
    output = (res.stdout or "") + (res.stderr or "")
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as fh:
            fh.write(f"\n==== {' '.join(cmd)}\n{output}")
    if res.returncode != 0:
        tail = "\n".join(output.splitlines()[-30:])
        raise ServiceError(f"{what} failed (exit {res.returncode}): {' '.join(cmd)}\n{tail}")
    return output


def _is_root() -> bool:
    return os.geteuid() == 0


def apt_install(packages: list[str], log_path: Path) -> None:
    """``apt-get install -y`` as root (``apt-get update`` and retry once if it fails)."""
    if not _is_root():
        raise ServiceError(
            f"missing {' '.join(packages)}: run `sudo apt-get install -y {' '.join(packages)}`"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    try:
        _run(cmd, "apt-get install", log_path, env=env)
    except ServiceError:
        _run(["apt-get", "update"], "apt-get update", log_path, env=env)
        _run(cmd, "apt-get install", log_path, env=env)


@contextlib.contextmanager
def _service_lock(cfg: Config, name: str) -> Iterator[None]:
    """One `up`/`down` per service at a time (parallel test sessions, make services)."""
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    with open(cfg.state_dir / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _state_path(cfg: Config, name: str) -> Path:
    return cfg.service_dir(name) / "state.json"


def read_state(cfg: Config, name: str) -> dict[str, Any] | None:
    try:
        return json.loads(_state_path(cfg, name).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def running_state(cfg: Config, name: str) -> dict[str, Any] | None:
    """The recorded state of ``name`` if its pid still runs our server, else None."""
    state = read_state(cfg, name)
    if state and pid_alive(int(state.get("pid", 0)), PID_MARKERS[name]):
        return state
    return None


def _info_from_state(name: str, state: Mapping[str, Any], started: bool) -> ServiceInfo:
    return ServiceInfo(
        name=name,
        pid=int(state["pid"]),
        url=state["url"],
        ports={k: int(v) for k, v in state["ports"].items()},
        env=dict(state["env"]),
        log_path=Path(state["log"]),
        started=started,
        urls=dict(state.get("urls", {})),
        startup_s=float(state.get("startup_s", 0.0)),
    )


def _record(cfg: Config, info: ServiceInfo, **extra: Any) -> None:
    state = {
        "pid": info.pid,
        "url": info.url,
        "ports": info.ports,
        "env": info.env,
        "urls": info.urls,
        "log": str(info.log_path),
        "startup_s": round(info.startup_s, 2),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }
    _atomic_write(_state_path(cfg, info.name), json.dumps(state, indent=2) + "\n")


# ---------------------------------------------------------------------------- postgres


def pg_url(port: int, database: str = PG_DATABASE, host: str = "127.0.0.1") -> str:
    return f"postgresql://{PG_USER}:{PG_PASSWORD}@{host}:{port}/{database}"


def find_pg_bindir() -> Path | None:
    """Newest ``/usr/lib/postgresql/<ver>/bin`` that has initdb (Debian's layout)."""
    found = []
    for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
        with contextlib.suppress(ValueError):
            found.append((int(initdb.parent.parent.name.split(".")[0]), initdb.parent))
    return max(found)[1] if found else None


def postgres_conf(port: int, socket_dir: Path) -> str:
    """Our settings, included from postgresql.conf (rewritten at every start)."""
    return (
        "# Written by scripts/services.py at every start; edits here are lost.\n"
        "listen_addresses = '127.0.0.1'\n"
        f"port = {port}\n"
        f"unix_socket_directories = '{socket_dir}'\n"
        "max_connections = 200\n"
        "shared_buffers = 128MB\n"
        # Throwaway local data: trade crash safety for test speed on small machines.
        "fsync = off\n"
        "synchronous_commit = off\n"
        "full_page_writes = off\n"
        "log_min_messages = warning\n"
        "log_timezone = 'UTC'\n"
        "timezone = 'UTC'\n"
    )


def pg_hba_conf() -> str:
    """Unix socket (inside .services): trust; TCP on loopback: password (scram)."""
    return (
        "# Written by scripts/services.py.\n"
        "# TYPE  DATABASE  USER  ADDRESS       METHOD\n"
        "local   all       all                 trust\n"
        "host    all       all   127.0.0.1/32  scram-sha-256\n"
        "host    all       all   ::1/128       scram-sha-256\n"
    )


def _pg_fallback_dir(cfg: Config, what: str) -> Path:
    digest = hashlib.sha1(str(cfg.state_dir).encode()).hexdigest()[:10]
    return Path("/var/tmp") / f"mtb-postgres-{digest}" / what


def _pg_socket_dir(cfg: Config, data_dir: Path) -> Path:
    sock_dir = data_dir.parent / "run"
    # A unix socket path must fit in 107 bytes.
    if len(str(sock_dir / f".s.PGSQL.{cfg.pg_port}")) > 100:
        sock_dir = _pg_fallback_dir(cfg, "run")
    return sock_dir


def _pg_data_dir(cfg: Config, user: str | None) -> Path:
    """``.services/postgres/data``, unless the server's user cannot reach it (a checkout
    under a private home folder): then a folder under /var/tmp named after the checkout."""
    data_dir = cfg.service_dir("postgres") / "data"
    if user is None:
        return data_dir
    probe = subprocess.run(
        ["test", "-w", str(data_dir.parent), "-a", "-x", str(data_dir.parent)],
        stdin=subprocess.DEVNULL,
        user=user,
        group=user,
        extra_groups=[],
    )
    if probe.returncode == 0:
        return data_dir
    fallback = _pg_fallback_dir(cfg, "data")
    print(
        f"postgres: user {user} cannot reach {data_dir.parent}; using {fallback}",
        file=sys.stderr,
    )
    return fallback


def _pg_user() -> str | None:
    """PostgreSQL refuses to run as root: use the package's ``postgres`` user then."""
    return PG_SUPERUSER if _is_root() else None


def _chown_tree(path: Path, user: str) -> None:
    import pwd

    pw = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for entry in [root, *(os.path.join(root, d) for d in dirs)]:
            os.chown(entry, pw.pw_uid, pw.pw_gid)
        for f in files:
            os.chown(os.path.join(root, f), pw.pw_uid, pw.pw_gid)


def _psql_superuser(cfg: Config, socket_dir: Path, bindir: Path, sql: str) -> str:
    cmd = [
        str(bindir / "psql"),
        "-X",
        "-q",
        "-tA",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        str(socket_dir),
        "-p",
        str(cfg.pg_port),
        "-U",
        PG_SUPERUSER,
        "-d",
        "postgres",
        "-c",
        sql,
    ]
    return _run(cmd, "psql").strip()


def _pg_query_ok(url: str) -> bool:
    try:
        import psycopg
    except ImportError:
        return True  # pg_isready already passed and psql ran the bootstrap
    with psycopg.connect(url, connect_timeout=3) as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)


def _postgres_start(cfg: Config) -> ServiceInfo:
    pg_dir = cfg.service_dir("postgres")
    log_path = pg_dir / "postgres.log"
    user = _pg_user()
    pg_dir.mkdir(parents=True, exist_ok=True)
    bindir = find_pg_bindir()
    if bindir is None:
        print("postgres: installing PostgreSQL with apt-get ...", file=sys.stderr, flush=True)
        apt_install(["postgresql"], pg_dir / "apt.log")
        bindir = find_pg_bindir()
        if bindir is None:
            raise ServiceError("postgres: apt-get installed postgresql but no initdb was found")
    _check_ports_free("postgres", {"port": cfg.pg_port})
    if user is not None:
        cfg.state_dir.chmod(cfg.state_dir.stat().st_mode | 0o011)  # let postgres traverse
        _chown_tree(pg_dir, user)
    data_dir = _pg_data_dir(cfg, user)
    if data_dir.parent != pg_dir:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        if user is not None:
            _chown_tree(data_dir.parent, user)
    if not (data_dir / "PG_VERSION").exists():
        if data_dir.exists():
            shutil.rmtree(data_dir)  # a half-done initdb
        _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                PG_SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ],
            "postgres initdb",
            pg_dir / "initdb.log",
            cwd=data_dir.parent,
            **({"user": user, "group": user, "extra_groups": []} if user else {}),
        )
        with open(data_dir / "postgresql.conf", "a") as fh:
            fh.write("\ninclude_if_exists = 'mtb.conf'\n")
    socket_dir = _pg_socket_dir(cfg, data_dir)
    socket_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "mtb.conf").write_text(postgres_conf(cfg.pg_port, socket_dir))
    (data_dir / "pg_hba.conf").write_text(pg_hba_conf())
    if user is not None:
        _chown_tree(data_dir.parent, user)
        _chown_tree(socket_dir, user)
    lock = data_dir / "postmaster.pid"
    if lock.exists():
        first = lock.read_text().split("\n", 1)[0].strip()
        if first.isdigit() and pid_alive(int(first), "postgres"):
            raise ServiceError(
                f"postgres: pid {first} already runs on {data_dir} but is not recorded in"
                f" {_state_path(cfg, 'postgres')}; stop it (kill -INT {first}) and retry"
            )
        lock.unlink()  # left by a killed server

    t0 = time.monotonic()
    proc = _spawn(
        [str(bindir / "postgres"), "-D", str(data_dir)],
        log_path,
        cwd=data_dir.parent,
        user=user,
        env=dict(os.environ, HOME=str(data_dir.parent)),
    )
    url = pg_url(cfg.pg_port)
    isready = [str(bindir / "pg_isready"), "-q", "-h", str(socket_dir), "-p", str(cfg.pg_port)]
    isready += ["-U", PG_SUPERUSER, "-d", "postgres"]
    _wait_ready(
        "postgres",
        proc,
        lambda: subprocess.run(isready, stdin=subprocess.DEVNULL).returncode == 0,
        cfg.timeout,
        log_path,
    )
    try:
        _pg_bootstrap(cfg, socket_dir, bindir)
        _wait_ready("postgres", proc, lambda: _pg_query_ok(url), cfg.timeout, log_path)
    except ServiceError:
        stop_pid(proc.pid, signal.SIGINT, 15)
        raise
    return ServiceInfo(
        name="postgres",
        pid=proc.pid,
        url=url,
        ports={"port": cfg.pg_port},
        env={"MTB_DATABASE_URL": url},
        log_path=log_path,
        started=True,
        urls={"database": url, "socket_dir": str(socket_dir), "data_dir": str(data_dir)},
        startup_s=time.monotonic() - t0,
    )


def _pg_bootstrap(cfg: Config, socket_dir: Path, bindir: Path) -> None:
    """Role and database ``mtb`` (idempotent)."""

    def psql(sql: str) -> str:
        return _psql_superuser(cfg, socket_dir, bindir, sql)

    if psql(f"SELECT 1 FROM pg_roles WHERE rolname='{PG_USER}'") != "1":
        psql(f"CREATE ROLE {PG_USER} LOGIN CREATEDB PASSWORD '{PG_PASSWORD}'")
    if psql(f"SELECT 1 FROM pg_database WHERE datname='{PG_DATABASE}'") != "1":
        psql(f"CREATE DATABASE {PG_DATABASE} OWNER {PG_USER}")


_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _check_identifier(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"database name must match {_IDENTIFIER.pattern}: {name!r}")
    return name


def _admin_sql(url: str, statements: list[str]) -> None:
    """Run statements outside a transaction (CREATE/DROP DATABASE) as the URL's user."""
    try:
        import psycopg
    except ImportError:
        bindir = find_pg_bindir()
        if bindir is None:
            raise ServiceError("neither psycopg nor psql is available") from None
        for sql in statements:
            _run([str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql], sql)
        return
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        for sql in statements:
            conn.execute(sql)


def _with_database(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


def create_database(name: str, url: str | None = None, *, replace: bool = True) -> str:
    """Create (by default: drop and re-create) database ``name`` owned by ``mtb``.

    ``url`` is any database URL of a user with CREATEDB (default: ``MTB_DATABASE_URL``, else
    the local server's). Returns the URL of the new database.
    """
    _check_identifier(name)
    url = url or os.environ.get("MTB_DATABASE_URL") or Config.from_env().database_url
    statements = [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'] if replace else []
    statements.append(f'CREATE DATABASE "{name}"')
    _admin_sql(url, statements)
    return _with_database(url, name)


def drop_database(name: str, url: str | None = None) -> None:
    """Drop database ``name`` (closing its connections) if it exists."""
    _check_identifier(name)
    url = url or os.environ.get("MTB_DATABASE_URL") or Config.from_env().database_url
    _admin_sql(url, [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'])


# ---------------------------------------------------------------------------- kafka


def kafka_server_properties(
    *, port: int, controller_port: int, log_dir: Path, node_id: int = 1
) -> str:
    """server.properties of a single-node KRaft cluster (broker+controller) on 127.0.0.1."""
    return (
        "# Written by scripts/services.py at every start; edits here are lost.\n"
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
        "num.network.threads=2\n"
        "num.io.threads=4\n"
        "num.recovery.threads.per.data.dir=1\n"
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
    _run(
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
        return "Kafka Server started" in _current_run_log(log_path)
    return _kafka_probe(bootstrap)


def _kafka_start(cfg: Config) -> ServiceInfo:
    kafka_dir = cfg.service_dir("kafka")
    kafka_dir.mkdir(parents=True, exist_ok=True)
    log_path = kafka_dir / "kafka.log"
    libs = ensure_kafka_libs(cfg)
    ports = {"port": cfg.kafka_port, "controller_port": cfg.kafka_controller_port}
    _check_ports_free("kafka", ports)
    data_dir = kafka_dir / "data"
    props = kafka_dir / "server.properties"
    props.write_text(
        kafka_server_properties(
            port=cfg.kafka_port, controller_port=cfg.kafka_controller_port, log_dir=data_dir
        )
    )
    log4j = kafka_dir / "log4j.properties"
    log4j.write_text(kafka_log4j_properties())
    java = [_java(), f"-Dlog4j.configuration=file:{log4j}", "-cp", f"{libs}/*"]
    if not (data_dir / "meta.properties").exists():
        shutil.rmtree(data_dir, ignore_errors=True)
        cluster_id = new_cluster_id()
        _run(
            [*java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)],
            "kafka: StorageTool format",
            kafka_dir / "format.log",
        )
    t0 = time.monotonic()
    proc = _spawn(
        [
            java[0],
            "-Xms128m",
            "-Xmx512m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            *java[1:],
            "kafka.Kafka",
            str(props),
        ],
        log_path,
        cwd=kafka_dir,
    )
    bootstrap = f"127.0.0.1:{cfg.kafka_port}"
    _wait_ready("kafka", proc, lambda: _kafka_ready(bootstrap, log_path), cfg.timeout, log_path)
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
) -> ServiceInfo:
    """A private single-node KRaft broker whose client listener is SASL_PLAINTEXT with
    ``mechanism`` (SCRAM), on free loopback ports, the credential created at format time
    (``StorageTool format --add-scram``). Inter-broker and controller traffic stay on
    PLAINTEXT loopback listeners of their own. Uses the jars of the shared broker
    (``ensure_kafka_libs``). Returns a handle with ``url`` (the SASL bootstrap) and
    ``stop()``; nothing is recorded in ``.services/env``."""
    cfg = cfg or Config.from_env()
    libs = ensure_kafka_libs(cfg)
    work = Path(workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    port, internal, controller = free_port(), free_port(), free_port()
    data_dir = work / "data"
    props = work / "server.properties"
    base = kafka_server_properties(port=port, controller_port=controller, log_dir=data_dir)
    keep = [
        line for line in base.splitlines()
        if not line.startswith(("listeners=", "advertised.listeners=",
                                "inter.broker.listener.name=", "listener.security.protocol.map="))
    ]  # fmt: skip
    if '"' in password or '"' in username:
        raise ServiceError("kafka-sasl: quotes in the username or password are not supported")
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
    props.write_text("\n".join(keep) + "\n")
    log4j = work / "log4j.properties"
    log4j.write_text(kafka_log4j_properties())
    log_path = work / "kafka.log"
    java = [_java(), f"-Dlog4j.configuration=file:{log4j}", "-cp", f"{libs}/*"]
    shutil.rmtree(data_dir, ignore_errors=True)
    _run(
        [*java, "kafka.tools.StorageTool", "format", "-t", new_cluster_id(), "-c", str(props),
         "--add-scram", f"{mechanism}=[name={username},password={password}]"],
        "kafka-sasl: StorageTool format",
        work / "format.log",
    )  # fmt: skip
    t0 = time.monotonic()
    proc = _spawn(
        [java[0], "-Xms128m", "-Xmx384m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
         *java[1:], "kafka.Kafka", str(props)],
        log_path,
        cwd=work,
    )  # fmt: skip
    bootstrap = f"127.0.0.1:{port}"
    auth = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": username,
        "sasl_plain_password": password,
    }
    _wait_ready("kafka-sasl", proc, lambda: _kafka_probe(bootstrap, **auth), timeout, log_path)
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


# ---------------------------------------------------------------------------- triton


@dataclass
class TritonPaths:
    """Pieces of the nvidia-pytriton wheel and the interpreter that runs python models."""

    server: Path
    libs: Path
    python_backend: Path
    stub: Path
    python_libdir: Path
    python_bin: Path

    @classmethod
    def discover(cls, python: str | Path | None = None) -> TritonPaths:
        python = Path(python) if python else _default_python()
        probe = (
            "import importlib.util, json, sys, sysconfig, pathlib\n"
            "spec = importlib.util.find_spec('pytriton')\n"
            "pkg = pathlib.Path(spec.submodule_search_locations[0]) if spec else None\n"
            "print(json.dumps({'pkg': str(pkg) if pkg else None,\n"
            "  'libdir': sysconfig.get_config_var('LIBDIR'),\n"
            "  'ver': '%d.%d' % sys.version_info[:2]}))\n"
        )
        out = _run([str(python), "-c", probe], f"triton: probing {python}")
        info = json.loads(out.strip().splitlines()[-1])
        if not info["pkg"]:
            raise ServiceError(
                f"triton: nvidia-pytriton is not installed for {python};"
                " run `make venv` (the venv installs the [triton] extra)"
            )
        pkg = Path(info["pkg"])
        root = pkg / "tritonserver"
        paths = cls(
            server=root / "bin" / "tritonserver",
            libs=pkg.parent / "nvidia_pytriton.libs",
            python_backend=root / "backends" / "python",
            stub=root / "python_backend_stubs" / info["ver"] / "triton_python_backend_stub",
            python_libdir=Path(info["libdir"]),
            python_bin=python.parent,
        )
        for p in (paths.server, paths.libs, paths.python_backend, paths.stub):
            if not p.exists():
                raise ServiceError(f"triton: {p} is missing from the nvidia-pytriton wheel")
        return paths


def prepare_triton_backends(dest: Path, paths: TritonPaths) -> Path:
    """``dest/python``: the wheel's python backend with the stub of our Python inside."""
    backend = dest / "python"
    stamp = f"{paths.python_backend}\n{paths.stub}\n{paths.stub.stat().st_size}\n"
    marker = dest / ".prepared"
    if marker.exists() and marker.read_text() == stamp and (backend / paths.stub.name).exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(paths.python_backend, backend, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(paths.stub, backend / "triton_python_backend_stub")
    (backend / "triton_python_backend_stub").chmod(0o755)
    marker.write_text(stamp)
    return dest


def triton_env(paths: TritonPaths, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """LIBDIR first (else the stub picks Debian's libpython), venv bin first on PATH."""
    env = dict(os.environ if base is None else base)
    ld = [str(paths.python_libdir), str(paths.libs)]
    if env.get("LD_LIBRARY_PATH"):
        ld.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(ld)
    env["PATH"] = f"{paths.python_bin}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def triton_command(
    server: Path,
    *,
    model_repository: Path,
    backend_directory: Path,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    extra_args: Iterable[str] = (),
) -> list[str]:
    return [
        str(server),
        f"--model-repository={model_repository}",
        f"--backend-directory={backend_directory}",
        "--model-control-mode=none",
        "--strict-readiness=true",
        "--exit-on-error=true",
        "--log-verbose=0",
        "--exit-timeout-secs=10",
        "--http-address=127.0.0.1",
        f"--http-port={http_port}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={grpc_port}",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={metrics_port}",
        "--allow-gpu-metrics=false",
        *extra_args,
    ]


def triton_http_ready(http_port: int, host: str = "127.0.0.1") -> bool:
    url = f"http://{host}:{http_port}/v2/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_triton(
    model_repository: str | Path,
    *,
    http_port: int | None = None,
    grpc_port: int | None = None,
    metrics_port: int | None = None,
    workdir: str | Path | None = None,
    python: str | Path | None = None,
    timeout: float = 180.0,
    extra_args: Iterable[str] = (),
) -> ServiceInfo:
    """Start tritonserver on ``model_repository`` and wait until it is ready.

    Ports default to free ones; ``workdir`` (default: a fresh ``.services/triton-<pid>``)
    holds the backend directory and ``triton.log``. Returns a handle with ``url`` (gRPC
    ``host:port``), ``urls['http']``, ``urls['metrics']`` and ``stop()``. Nothing is
    recorded in ``.services/env``: ``up``/``ensure_service`` do that for the shared server.
    """
    repo = Path(model_repository).resolve()
    if not repo.is_dir():
        raise ServiceError(f"triton: model repository {repo} is not a directory")
    ports = {
        "http": http_port or free_port(),
        "grpc": grpc_port or free_port(),
        "metrics": metrics_port or free_port(),
    }
    _check_ports_free("triton", ports)
    work = Path(workdir) if workdir else REPO_ROOT / ".services" / f"triton-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    paths = TritonPaths.discover(python)
    backends = prepare_triton_backends(work / "backends", paths)
    log_path = work / "triton.log"
    cmd = triton_command(
        paths.server,
        model_repository=repo,
        backend_directory=backends,
        http_port=ports["http"],
        grpc_port=ports["grpc"],
        metrics_port=ports["metrics"],
        extra_args=extra_args,
    )
    t0 = time.monotonic()
    proc = _spawn(cmd, log_path, env=triton_env(paths), cwd=work)
    _wait_ready("triton", proc, lambda: triton_http_ready(ports["http"]), timeout, log_path)
    grpc = f"127.0.0.1:{ports['grpc']}"
    urls = {
        "grpc": grpc,
        "http": f"http://127.0.0.1:{ports['http']}",
        "metrics": f"http://127.0.0.1:{ports['metrics']}/metrics",
        "model_repository": str(repo),
    }
    return ServiceInfo(
        name="triton",
        pid=proc.pid,
        url=grpc,
        ports=ports,
        env={
            "MTB_TRITON_URL": grpc,
            "MTB_TRITON_HTTP_URL": urls["http"],
            "MTB_TRITON_METRICS_URL": urls["metrics"],
        },
        log_path=log_path,
        started=True,
        urls=urls,
        startup_s=time.monotonic() - t0,
    )


def _triton_start(cfg: Config) -> ServiceInfo:
    return start_triton(
        cfg.model_repository,
        http_port=cfg.triton_http_port,
        grpc_port=cfg.triton_grpc_port,
        metrics_port=cfg.triton_metrics_port,
        workdir=cfg.service_dir("triton"),
        python=cfg.python,
        timeout=cfg.timeout,
    )


# ---------------------------------------------------------------------------- up / down

_STARTERS: dict[str, Callable[[Config], ServiceInfo]] = {
    "postgres": _postgres_start,
    "kafka": _kafka_start,
    "triton": _triton_start,
}


def _wanted_ports(cfg: Config, name: str) -> dict[str, int]:
    if name == "postgres":
        return {"port": cfg.pg_port}
    if name == "kafka":
        return {"port": cfg.kafka_port, "controller_port": cfg.kafka_controller_port}
    return {
        "http": cfg.triton_http_port,
        "grpc": cfg.triton_grpc_port,
        "metrics": cfg.triton_metrics_port,
    }


def _lease_dir(cfg: Config, name: str) -> Path:
    return cfg.service_dir(name) / "leases"


def _live_leases(cfg: Config, name: str) -> list[int]:
    """Pids of processes (test sessions) that use the service; drops dead ones."""
    pids = []
    for lease in _lease_dir(cfg, name).glob("*"):
        if lease.name.isdigit() and pid_alive(int(lease.name)):
            pids.append(int(lease.name))
        else:
            lease.unlink(missing_ok=True)
    return pids


def ensure_service(name: str, cfg: Config | None = None, *, lease: bool = False) -> ServiceInfo:
    """Start ``name`` unless our server already runs; ``info.started`` says which.

    ``lease=True`` (test fixtures) registers this process as a user, to be undone with
    ``release_service``; a server started under a lease is stopped when its last lease is
    released. Without a lease (``up``, ``make services``) the server is kept until ``down``.
    """
    cfg = cfg or Config.from_env()
    if name not in _STARTERS:
        raise ServiceError(f"unknown service {name!r}; choose from {', '.join(SERVICES)}")
    with _service_lock(cfg, name):
        state = running_state(cfg, name)
        if state:
            info = _info_from_state(name, state, started=False)
            if info.ports != _wanted_ports(cfg, name):
                print(
                    f"{name}: already running with ports {info.ports}; reusing it"
                    f" (run `down --only {name}` to change ports)",
                    file=sys.stderr,
                )
            running_repo = info.urls.get("model_repository")
            if name == "triton" and running_repo != str(cfg.model_repository):
                raise ServiceError(
                    f"triton already runs on {running_repo}, not {cfg.model_repository};"
                    " run `scripts/services.py down --only triton` first"
                )
            if not lease and state.get("started_by") != "cli":
                _atomic_write(
                    _state_path(cfg, name), json.dumps(dict(state, started_by="cli"), indent=2)
                )
        else:
            info = _STARTERS[name](cfg)
            _record(cfg, info, started_by="lease" if lease else "cli")
        if lease:
            _lease_dir(cfg, name).mkdir(parents=True, exist_ok=True)
            (_lease_dir(cfg, name) / str(os.getpid())).touch()
        refresh_env_file(cfg)
        return info


def release_service(name: str, cfg: Config | None = None, *, stop_if_unused: bool = True) -> bool:
    """Drop this process's lease; stop the server if it was started under a lease and no
    live process holds one any more (and ``stop_if_unused``). True if it stopped it."""
    cfg = cfg or Config.from_env()
    with _service_lock(cfg, name):
        (_lease_dir(cfg, name) / str(os.getpid())).unlink(missing_ok=True)
        state = running_state(cfg, name)
        if not (stop_if_unused and state and state.get("started_by") == "lease"):
            return False
        if _live_leases(cfg, name):
            return False
        return _stop_unlocked(name, cfg)


def stop_service(name: str, cfg: Config | None = None, *, purge: bool = False) -> bool:
    """Stop our ``name`` server if it runs (True if it did); ``purge`` deletes its data."""
    cfg = cfg or Config.from_env()
    with _service_lock(cfg, name):
        return _stop_unlocked(name, cfg, purge=purge)


def _stop_unlocked(name: str, cfg: Config, *, purge: bool = False) -> bool:
    state = read_state(cfg, name)
    was_running = False
    if state and pid_alive(int(state["pid"]), PID_MARKERS[name]):
        was_running = stop_pid(int(state["pid"]), STOP_SIGNALS[name], 30.0)
    _state_path(cfg, name).unlink(missing_ok=True)
    shutil.rmtree(_lease_dir(cfg, name), ignore_errors=True)
    if purge:
        for sub in ("data", "backends"):
            shutil.rmtree(cfg.service_dir(name) / sub, ignore_errors=True)
        if name == "postgres":
            shutil.rmtree(_pg_fallback_dir(cfg, "data").parent, ignore_errors=True)
    refresh_env_file(cfg)
    return was_running


def up(
    cfg: Config | None = None, only: Iterable[str] | str | None = None
) -> dict[str, ServiceInfo]:
    cfg = cfg or Config.from_env()
    return {name: ensure_service(name, cfg) for name in parse_only(only)}


def down(
    cfg: Config | None = None, only: Iterable[str] | str | None = None, *, purge: bool = False
) -> dict[str, bool]:
    cfg = cfg or Config.from_env()
    # Reverse order: Triton and Kafka before the database.
    return {name: stop_service(name, cfg, purge=purge) for name in reversed(parse_only(only))}


def status(cfg: Config | None = None, only: Iterable[str] | str | None = None) -> dict[str, Any]:
    """name -> state dict (with ``ready``) of running services, None for stopped ones."""
    cfg = cfg or Config.from_env()
    result: dict[str, Any] = {}
    for name in parse_only(only):
        state = running_state(cfg, name)
        if state:
            state = dict(state, ready=_probe_ready(name, state))
        result[name] = state
    return result


def _probe_ready(name: str, state: Mapping[str, Any]) -> bool:
    try:
        if name == "postgres":
            return _pg_query_ok(state["url"])
        if name == "kafka":
            return _kafka_ready(state["url"], Path(state["log"]))
        return triton_http_ready(int(state["ports"]["http"]))
    except Exception:  # noqa: BLE001
        return False


# ---------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    d = Config.from_env()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--only",
        metavar="LIST",
        help=f"comma-separated subset of {','.join(SERVICES)} (default: all)",
    )
    common.add_argument(
        "--state-dir", type=Path, help=f"state folder (MTB_SERVICES_DIR; now {d.state_dir})"
    )
    ports = common.add_argument_group("ports (127.0.0.1 only)")
    for opt, attr in [
        ("--pg-port", "pg_port"),
        ("--kafka-port", "kafka_port"),
        ("--kafka-controller-port", "kafka_controller_port"),
        ("--triton-http-port", "triton_http_port"),
        ("--triton-grpc-port", "triton_grpc_port"),
        ("--triton-metrics-port", "triton_metrics_port"),
    ]:
        ports.add_argument(
            opt, dest=attr, type=int, help=f"{ENV_VARS[attr]}; now {getattr(d, attr)}"
        )
    parser = argparse.ArgumentParser(
        prog="services.py",
        description=(
            "Install, start and stop the local PostgreSQL, Kafka (KRaft) and Triton used by"
            " tests and `make services`. State, logs and the env file live in"
            " .services/; load the settings with: set -a; . .services/env; set +a"
        ),
        epilog=(
            "examples:  services.py up   |   services.py up --only postgres,kafka   |"
            "   services.py status   |   services.py down --purge"
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p_up = sub.add_parser(
        "up", parents=[common], help="start services (reuses running ones), wait until ready"
    )
    p_up.add_argument(
        "--model-repository",
        type=Path,
        help=f"Triton model repository (MTB_MODEL_REPOSITORY; now {d.model_repository})",
    )
    p_up.add_argument(
        "--timeout", type=float, help=f"seconds to wait per service (now {d.timeout:.0f})"
    )
    p_down = sub.add_parser("down", parents=[common], help="stop services (SIGTERM, then KILL)")
    p_down.add_argument("--purge", action="store_true", help="also delete their data")
    p_status = sub.add_parser(
        "status", parents=[common], help="show what runs; exit 3 if something is down"
    )
    p_status.add_argument("--json", action="store_true", help="machine-readable output")
    p_env = sub.add_parser("env", parents=[common], help="print .services/env")
    p_env.add_argument("--export", action="store_true", help="prefix lines with `export `")
    return parser


def _config_from_args(args: argparse.Namespace) -> Config:
    overrides = {
        key: getattr(args, key, None)
        for key in (
            "state_dir",
            "pg_port",
            "kafka_port",
            "kafka_controller_port",
            "triton_http_port",
            "triton_grpc_port",
            "triton_metrics_port",
            "model_repository",
            "timeout",
        )
    }
    return Config.from_env(**overrides)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = _config_from_args(args)
        only = parse_only(args.only)
        if args.command == "up":
            for name in only:
                t0 = time.monotonic()
                info = ensure_service(name, cfg)
                how = (
                    f"started in {time.monotonic() - t0:.1f} s"
                    if info.started
                    else "already running"
                )
                print(f"{name:8} {how} (pid {info.pid}) {info.url}  log: {info.log_path}")
            print(f"env file: {cfg.env_file}")
        elif args.command == "down":
            for name, was_running in down(cfg, only, purge=args.purge).items():
                print(f"{name:8} {'stopped' if was_running else 'was not running'}")
        elif args.command == "status":
            states = status(cfg, only)
            if args.json:
                print(json.dumps(states, indent=2))
            for name, state in states.items():
                if args.json:
                    break
                if state is None:
                    print(f"{name:8} stopped")
                else:
                    ready = "ready" if state["ready"] else "NOT READY"
                    print(f"{name:8} running, {ready} (pid {state['pid']}) {state['url']}")
            return 0 if all(s and s["ready"] for s in states.values()) else 3
        elif args.command == "env":
            values = read_env_file(cfg.env_file)
            if not values:
                print(f"no services running ({cfg.env_file} is missing)", file=sys.stderr)
                return 3
            prefix = "export " if args.export else ""
            for key, value in values.items():
                print(f"{prefix}{key}={value}")
    except ServiceError as exc:
        print(f"services.py: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
