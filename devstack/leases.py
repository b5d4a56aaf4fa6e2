"""Shared servers with leases: start a service unless ours already runs, record it in
``<state_dir>/<name>/state.json``, and stop it when its last user is gone.

Test sessions take a lease (one file per pid under ``<name>/leases``); a server started
under a lease stops when the last live lease is released, so parallel sessions in one
checkout share it. ``python -m devstack up`` (``make services``) takes none: its servers
stay until ``down``. One ``up``/``down`` per service at a time (a file lock).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from devstack.config import Config, parse_only
from devstack.daemon import ServiceInfo, atomic_write, file_lock, pid_alive, stop_pid
from devstack.envfile import refresh_env_file
from devstack.errors import ServiceError
from devstack.registry import SERVICES, SPECS


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
    if state and pid_alive(int(state.get("pid", 0)), SPECS[name].pid_marker):
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
    atomic_write(_state_path(cfg, info.name), json.dumps(state, indent=2) + "\n")


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
    if name not in SPECS:
        raise ServiceError(f"unknown service {name!r}; choose from {', '.join(SERVICES)}")
    with file_lock(cfg.state_dir / f".{name}.lock"):  # one up/down per service
        state = running_state(cfg, name)
        if state:
            info = _info_from_state(name, state, started=False)
            spec = SPECS[name]
            if info.ports != spec.wanted_ports(cfg):
                print(
                    f"{name}: already running with ports {info.ports}; reusing it"
                    f" (run `down --only {name}` to change ports)",
                    file=sys.stderr,
                )
            if spec.check_reuse is not None:
                spec.check_reuse(cfg, info)
            if not lease and state.get("started_by") != "cli":
                atomic_write(
                    _state_path(cfg, name), json.dumps(dict(state, started_by="cli"), indent=2)
                )
        else:
            info = SPECS[name].start(cfg)
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
    with file_lock(cfg.state_dir / f".{name}.lock"):  # one up/down per service
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
    with file_lock(cfg.state_dir / f".{name}.lock"):  # one up/down per service
        return _stop_unlocked(name, cfg, purge=purge)


def _stop_unlocked(name: str, cfg: Config, *, purge: bool = False) -> bool:
    state = read_state(cfg, name)
    was_running = False
    if state and pid_alive(int(state["pid"]), SPECS[name].pid_marker):
        was_running = stop_pid(int(state["pid"]), SPECS[name].stop_signal, 30.0)
    _state_path(cfg, name).unlink(missing_ok=True)
    shutil.rmtree(_lease_dir(cfg, name), ignore_errors=True)
    if purge:
        for sub in ("data", "backends"):
            shutil.rmtree(cfg.service_dir(name) / sub, ignore_errors=True)
        if SPECS[name].purge is not None:
            SPECS[name].purge(cfg)
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
            state = dict(state, ready=probe_ready(name, state))
        result[name] = state
    return result


def probe_ready(name: str, state: Mapping[str, Any]) -> bool:
    """Does the recorded running server answer like a ready one? False on any error."""
    try:
        return SPECS[name].probe(state)
    except Exception:  # noqa: BLE001 - a failed probe means "not ready"
        return False
