"""Prometheus: Debian's ``prometheus`` package (2.42 on Debian 12, with ``promtool``), run
by hand on a loopback port with its own data folder and a generated configuration, never
the package's systemd service.

It scrapes the jobs ``mtb-api`` (``mtctl serve``), ``mtb-worker`` (``mtctl worker``),
``triton`` (Triton's metrics port) and itself. Targets come from file_sd files in
``.services/prometheus/targets/<job>.json``: processes started on random ports (tests,
``make services``, bench) add themselves with ``register_target(job, "127.0.0.1:PORT")``
and leave with ``unregister_target``; Prometheus notices the file change within seconds.
A Triton started by devstack is added when Prometheus starts. Rules: every
``dashboards/rules/*.yml`` (recording and alert rules), reloaded by ``reload()``.

``.services/env`` gains ``MTB_PROMETHEUS_URL`` (the HTTP API's base URL).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devstack.config import REPO_ROOT, Config
from devstack.daemon import (
    ServiceInfo,
    apt_install,
    atomic_write,
    check_ports_free,
    file_lock,
    spawn,
    wait_ready,
)
from devstack.errors import ServiceError
from devstack.spec import Port, ServiceSpec

PROMETHEUS_BIN = Path("/usr/bin/prometheus")
PROMTOOL_BIN = Path("/usr/bin/promtool")
RULES_DIR = REPO_ROOT / "dashboards" / "rules"
# job name -> what it scrapes; each has a file_sd targets file of the same name
JOBS: dict[str, str] = {
    "mtb-api": "mtctl serve (/metrics)",
    "mtb-worker": "mtctl worker (/metrics)",
    "triton": "Triton's metrics port (/metrics)",
    "prometheus": "this Prometheus",
}
SCRAPE_INTERVAL_S = 2  # short: tests wait for two scrapes after a workload
EVALUATION_INTERVAL_S = 2


def promtool() -> Path | None:
    """``promtool`` (from the same package) or None when it is not installed."""
    found = shutil.which("promtool")
    if found:
        return Path(found)
    return PROMTOOL_BIN if PROMTOOL_BIN.exists() else None


def prometheus_binary() -> Path | None:
    found = shutil.which("prometheus")
    if found:
        return Path(found)
    return PROMETHEUS_BIN if PROMETHEUS_BIN.exists() else None


def ensure_installed(log_path: Path) -> Path:
    """The prometheus binary; installs Debian's package (as root) when it is missing."""
    binary = prometheus_binary()
    if binary is None:
        apt_install(["prometheus"], log_path)
        binary = prometheus_binary()
    if binary is None:
        raise ServiceError("prometheus: /usr/bin/prometheus is missing after apt-get install")
    return binary


# -- targets (file_sd) ----------------------------------------------------------------------


def targets_dir(cfg: Config | None = None) -> Path:
    cfg = cfg or Config.from_env()
    return cfg.service_dir("prometheus") / "targets"


def read_targets(job: str, cfg: Config | None = None) -> list[dict[str, Any]]:
    """The file_sd groups of ``job`` (``[{"targets": [...], "labels": {...}}, ...]``)."""
    try:
        groups = json.loads((targets_dir(cfg) / f"{job}.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    return groups if isinstance(groups, list) else []


def _check_job(job: str) -> None:
    if job not in JOBS:
        raise ValueError(f"unknown Prometheus job {job!r}; choose from {', '.join(JOBS)}")


def register_target(
    job: str,
    host_port: str,
    cfg: Config | None = None,
    labels: Mapping[str, str] | None = None,
) -> Path:
    """Add ``host_port`` (``"127.0.0.1:PORT"``) to ``job``'s targets file (``mtb-api``,
    ``mtb-worker``, ``triton``); idempotent, safe between processes (a file lock, atomic
    writes). Works whether or not Prometheus runs: it reads the file when it starts.
    Returns the targets file."""
    _check_job(job)
    directory = targets_dir(cfg)
    path = directory / f"{job}.json"
    group = {"targets": [host_port], "labels": dict(labels or {})}
    with file_lock(directory / ".lock"):
        groups = [g for g in read_targets(job, cfg) if host_port not in g.get("targets", ())]
        groups.append(group)
        atomic_write(path, json.dumps(groups, indent=2) + "\n")
    return path


def unregister_target(job: str, host_port: str, cfg: Config | None = None) -> bool:
    """Remove ``host_port`` from ``job``'s targets (when its process stops); True if it
    was there."""
    _check_job(job)
    directory = targets_dir(cfg)
    with file_lock(directory / ".lock"):
        groups = read_targets(job, cfg)
        kept = [g for g in groups if host_port not in g.get("targets", ())]
        if len(kept) == len(groups):
            return False
        atomic_write(directory / f"{job}.json", json.dumps(kept, indent=2) + "\n")
    return True


# -- configuration --------------------------------------------------------------------------


def rule_files(rules_dir: Path = RULES_DIR) -> list[Path]:
    return sorted(rules_dir.glob("*.yml"))


def prometheus_config(
    targets: Path,
    port: int,
    *,
    rules_dir: Path = RULES_DIR,
    scrape_interval_s: int = SCRAPE_INTERVAL_S,
    evaluation_interval_s: int = EVALUATION_INTERVAL_S,
) -> str:
    """prometheus.yml (JSON is valid YAML): one file_sd job per ``JOBS`` entry, the rule
    files of ``rules_dir``."""
    scrape_configs = []
    for job in JOBS:
        entry: dict[str, Any] = {"job_name": job, "metrics_path": "/metrics"}
        if job == "prometheus":
            entry["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
        else:
            entry["file_sd_configs"] = [
                {"files": [str(targets / f"{job}.json")], "refresh_interval": "5s"}
            ]
        scrape_configs.append(entry)
    config = {
        "global": {
            "scrape_interval": f"{scrape_interval_s}s",
            "scrape_timeout": f"{max(1, scrape_interval_s - 1)}s",
            "evaluation_interval": f"{evaluation_interval_s}s",
            "external_labels": {"stack": "mtb-local"},
        },
        "rule_files": [str(p) for p in rule_files(rules_dir)],
        "scrape_configs": scrape_configs,
    }
    return "# Generated by devstack.prometheus; edits are overwritten.\n" + json.dumps(
        config, indent=2
    )


def prometheus_command(
    binary: Path, config: Path, data: Path, port: int, retention: str = "2d"
) -> list[str]:
    return [
        str(binary),
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--storage.tsdb.retention.time={retention}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",  # POST /-/reload after rule changes
        "--log.level=warn",
    ]


def prometheus_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def reload(url: str) -> None:
    """Re-read the configuration and the rule files (``--web.enable-lifecycle``)."""
    req = urllib.request.Request(f"{url}/-/reload", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        if resp.status != 200:
            raise ServiceError(f"prometheus: reload answered {resp.status}")


def _seed_triton(cfg: Config) -> None:
    """A Triton that devstack runs is a target from the start."""
    from devstack.leases import running_state

    state = running_state(cfg, "triton")
    if state and "metrics" in state.get("ports", {}):
        register_target("triton", f"127.0.0.1:{state['ports']['metrics']}", cfg)


def prometheus_port(cfg: Config) -> int:
    """``cfg.prometheus_port`` (a field once ``SPEC`` is in the registry), else the default
    or ``MTB_PROMETHEUS_PORT``."""
    port = cfg.ports.get("prometheus_port")
    if port is None:
        port = os.environ.get(PORT.env_var) or PORT.default
    return int(port)


def start_prometheus(cfg: Config) -> ServiceInfo:
    work = cfg.service_dir("prometheus")
    log_path = work / "prometheus.log"
    binary = ensure_installed(log_path)
    port = prometheus_port(cfg)
    check_ports_free("prometheus", {"http": port})
    targets = targets_dir(cfg)
    for job in JOBS:
        if job != "prometheus" and not (targets / f"{job}.json").exists():
            with file_lock(targets / ".lock"):
                atomic_write(targets / f"{job}.json", "[]\n")
    _seed_triton(cfg)
    config = work / "prometheus.yml"
    atomic_write(config, prometheus_config(targets, port))
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    proc = spawn(prometheus_command(binary, config, data, port), log_path, cwd=work)
    wait_ready("prometheus", proc, lambda: prometheus_ready(url), cfg.timeout, log_path)
    return ServiceInfo(
        name="prometheus",
        pid=proc.pid,
        url=url,
        ports={"http": port},
        env={"MTB_PROMETHEUS_URL": url},
        log_path=log_path,
        started=True,
        urls={"http": url, "config": str(config), "targets": str(targets)},
        startup_s=time.monotonic() - t0,
    )


def _probe(state: Mapping[str, Any]) -> bool:
    return prometheus_ready(state["url"])


def _purge(cfg: Config) -> None:
    shutil.rmtree(targets_dir(cfg), ignore_errors=True)


PORT = Port("prometheus_port", "http", "MTB_PROMETHEUS_PORT", 29090)
SPEC = ServiceSpec(
    name="prometheus",
    start=start_prometheus,
    probe=_probe,
    ports=(PORT,),
    pid_marker="prometheus.yml",
    stop_signal=signal.SIGTERM,
    purge=_purge,
)
