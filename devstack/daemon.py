"""Detached server processes: spawn with a log file, wait until ready, check a pid is
still ours, stop (signal, then SIGKILL of the process group), plus the small system
helpers (ports, short commands, apt-get) the service modules share.

Servers run in their own session so they outlive ``python -m devstack up``; ``down``
stops them by the pid recorded in their ``state.json``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.errors import ServiceError

# Popen objects of servers started by this process, kept so they can be reaped.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


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
        spec = _spec(self.name)
        return pid_alive(self.pid, spec.pid_marker if spec else None)

    def stop(self, timeout: float = 30.0) -> None:
        spec = _spec(self.name)
        stop_pid(self.pid, spec.stop_signal if spec else signal.SIGTERM, timeout)


def _spec(name: str) -> Any:
    from devstack.registry import SPECS

    return SPECS.get(name)


def atomic_write(path: Path, text: str) -> None:
    """Readers (parallel sessions, shells sourcing the env file) never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created with its folder) for the block: one
    `up`/`down` per service, one Jaeger build, one targets-file writer at a time, across
    processes (parallel test sessions, `make services`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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


def current_run_log(path: Path) -> str:
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
    text = current_run_log(path)
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


def check_ports_free(name: str, ports: Mapping[str, int]) -> None:
    busy = [f"{what} {port}" for what, port in ports.items() if not port_free(port)]
    if busy:
        raise ServiceError(
            f"{name}: port(s) {', '.join(busy)} on 127.0.0.1 are taken by a process that"
            " devstack did not start; pick others (--help lists the port flags"
            " and MTB_*_PORT variables) or stop that process"
        )


def spawn(
    cmd: list[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start a detached server logging to ``log_path`` after a ``====`` header line (so
    ``log_tail`` shows this run only); ``user``: run as that system user (we are root)."""
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


def wait_ready(
    name: str,
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    timeout: float,
    log_path: Path,
) -> None:
    """Poll ``ready()`` until it is true; ServiceError with the log's tail when the server
    exits or ``timeout`` passes (then it is killed: no half-started server is left, also
    not on Ctrl-C)."""
    deadline = time.monotonic() + timeout
    try:
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
    except KeyboardInterrupt:
        stop_pid(proc.pid, signal.SIGKILL, 5)
        raise


def run_command(cmd: list[str], what: str, log_path: Path | None = None, **kwargs: Any) -> str:
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


def is_root() -> bool:
    return os.geteuid() == 0


def apt_install(packages: list[str], log_path: Path) -> None:
    """``apt-get install -y`` as root (``apt-get update`` and retry once if it fails)."""
    if not is_root():
        raise ServiceError(
            f"missing {' '.join(packages)}: run `sudo apt-get install -y {' '.join(packages)}`"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    try:
        run_command(cmd, "apt-get install", log_path, env=env)
    except ServiceError:
        run_command(["apt-get", "update"], "apt-get update", log_path, env=env)
        run_command(cmd, "apt-get install", log_path, env=env)
