"""Jaeger v2: the ``jaeger`` binary (an OpenTelemetry-collector distribution) built once
with the Go toolchain from the Go module proxy (module ``github.com/jaegertracing/jaeger``,
``cmd/jaeger``) into a cache folder outside the checkout, run with a generated config:
in-memory trace store, OTLP gRPC and HTTP receivers and the ``jaeger_query`` extension (the
HTTP query API and UI, and its gRPC API), every port on 127.0.0.1.

``.services/env`` gains ``MTB_OTLP_ENDPOINT`` (``http://127.0.0.1:PORT``, the OTLP gRPC
receiver, what ``OTLPSpanExporter(endpoint=...)`` takes) and ``MTB_JAEGER_URL`` (the query
API's base URL). The binary lives in ``$XDG_CACHE_HOME/mt-backend/jaeger/<version>/jaeger``
(``~/.cache`` without XDG_CACHE_HOME; ``MTB_JAEGER_CACHE`` overrides the folder,
``MTB_JAEGER_BINARY`` names a ready binary and skips the build). A build that cannot happen
here (no ``go``, the module proxy refused, a compile error) raises ``JaegerUnavailable``,
so tests that need Jaeger can skip naming the reason.

The module's source carries no built UI assets (they come from the jaeger-ui repository's
npm build), so the UI path serves Jaeger's placeholder page; the query API is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devstack.config import Config
from devstack.daemon import (
    ServiceInfo,
    atomic_write,
    check_ports_free,
    file_lock,
    free_port,
    spawn,
    wait_ready,
)
from devstack.errors import ServiceError
from devstack.spec import Port, ServiceSpec
from devstack.toolcache import cache_root, run_logged

JAEGER_MODULE = "github.com/jaegertracing/jaeger"
JAEGER_VERSION = "v1.76.0"  # the module version that holds Jaeger v2's code
JAEGER_PACKAGE = "./cmd/jaeger"
BUILD_TIMEOUT_S = 3600.0  # a cold build on 2 cores downloads ~500 modules and compiles them


class JaegerUnavailable(ServiceError):
    """The jaeger binary cannot be built on this machine (no Go toolchain, the module proxy
    refused, the build failed): tests that need Jaeger skip with this message."""


def cache_dir(version: str = JAEGER_VERSION, env: Mapping[str, str] | None = None) -> Path:
    """``$MTB_JAEGER_CACHE/<version>``, else ``$XDG_CACHE_HOME/mt-backend/jaeger/<version>``,
    else ``~/.cache/mt-backend/jaeger/<version>``: outside the checkout, shared by every
    checkout and worktree of the machine."""
    env = os.environ if env is None else env
    if env.get("MTB_JAEGER_CACHE"):
        root = Path(env["MTB_JAEGER_CACHE"]).expanduser()
    else:
        root = cache_root(env) / "jaeger"
    return root / version


def binary_path(version: str = JAEGER_VERSION, env: Mapping[str, str] | None = None) -> Path:
    """Where the built binary is (or will be): ``MTB_JAEGER_BINARY`` or the cache's."""
    env = os.environ if env is None else env
    if env.get("MTB_JAEGER_BINARY"):
        return Path(env["MTB_JAEGER_BINARY"]).expanduser()
    return cache_dir(version, env) / "jaeger"


def go_build_commands(version: str, out: Path) -> list[list[str]]:
    """``go mod download`` of the module, then ``go build`` of ``cmd/jaeger`` inside the
    downloaded (read-only) module folder, so the module's own go.mod, go.sum and replace
    directives apply (``go install module/cmd/jaeger@version`` refuses modules with replace
    directives). ``-trimpath`` and ``-s -w`` keep the binary reproducible and smaller."""
    return [
        ["go", "mod", "download", "-json", f"{JAEGER_MODULE}@{version}"],
        ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(out), JAEGER_PACKAGE],
    ]


def _run_go(cmd: list[str], what: str, log_path: Path, cwd: Path | None = None) -> str:
    return run_logged(
        cmd, what, log_path, error=JaegerUnavailable, prefix="jaeger",
        timeout_s=BUILD_TIMEOUT_S, cwd=cwd,
    )  # fmt: skip


def build_jaeger(version: str = JAEGER_VERSION, env: Mapping[str, str] | None = None) -> Path:
    """The jaeger binary of ``version``, built once into ``cache_dir(version)`` (reused
    afterwards; ``build.json`` records how long the build took). JaegerUnavailable when
    it cannot be built here."""
    env = os.environ if env is None else env
    target = binary_path(version, env)
    if env.get("MTB_JAEGER_BINARY"):
        if not os.access(target, os.X_OK):
            raise JaegerUnavailable(f"jaeger: MTB_JAEGER_BINARY={target} is not an executable")
        return target
    if os.access(target, os.X_OK):
        return target
    folder = target.parent
    with file_lock(folder / ".build.lock"):  # one build per cache folder
        if os.access(target, os.X_OK):  # built by whoever held the lock before us
            return target
        if shutil.which("go") is None:
            raise JaegerUnavailable(
                "jaeger: the Go toolchain (`go`) is not on PATH, so the jaeger binary cannot"
                f" be built from {JAEGER_MODULE}@{version}; install Go >= 1.24 (or set"
                " MTB_JAEGER_BINARY to a built jaeger v2 binary)"
            )
        log_path = folder / "build.log"
        print(
            f"jaeger: building {JAEGER_MODULE}/cmd/jaeger@{version} with Go into {folder}"
            " (once; several minutes) ...",
            file=sys.stderr,
            flush=True,
        )
        t0 = time.monotonic()
        download, build = go_build_commands(version, folder / "jaeger.tmp")
        out = _run_go(download, f"downloading {JAEGER_MODULE}@{version}", log_path)
        try:
            module_dir = Path(json.loads(out)["Dir"])
        except (ValueError, KeyError) as exc:
            raise JaegerUnavailable(
                f"jaeger: `go mod download -json` gave no module folder: {out[:500]!r}"
            ) from exc
        _run_go(build, f"building {JAEGER_PACKAGE}", log_path, cwd=module_dir)
        seconds = time.monotonic() - t0
        os.replace(folder / "jaeger.tmp", target)
        go_version = subprocess.run(
            ["go", "version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        info = {
            "module": JAEGER_MODULE,
            "version": version,
            "build_s": round(seconds, 1),
            "bytes": target.stat().st_size,
            "go": go_version,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write(folder / "build.json", json.dumps(info, indent=2) + "\n")
        print(f"jaeger: built in {seconds:.0f} s: {target}", file=sys.stderr, flush=True)
        return target


def jaeger_config(
    *,
    otlp_grpc_port: int,
    otlp_http_port: int,
    query_http_port: int,
    query_grpc_port: int,
    max_traces: int = 50_000,
    host: str = "127.0.0.1",
) -> str:
    """Jaeger v2's YAML config (OpenTelemetry collector layout): the in-memory store, OTLP
    receivers, ``jaeger_query`` on ``host`` and no other listener (the collector's own
    metrics are off, so no port 8888). JSON is YAML, so it is written as JSON."""
    config: dict[str, Any] = {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["batch"],
                    "exporters": ["jaeger_storage_exporter"],
                }
            },
            "telemetry": {
                "resource": {"service.name": "jaeger"},
                "metrics": {"level": "none"},
                "logs": {"level": "info"},
            },
        },
        "extensions": {
            "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": max_traces}}}},
            "jaeger_query": {
                "storage": {"traces": "memstore"},
                "enable_tracing": False,  # Jaeger's own query spans would fill the store
                "http": {"endpoint": f"{host}:{query_http_port}"},
                "grpc": {"endpoint": f"{host}:{query_grpc_port}"},
            },
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"{host}:{otlp_grpc_port}"},
                    "http": {"endpoint": f"{host}:{otlp_http_port}"},
                }
            }
        },
        "processors": {"batch": {"timeout": "200ms"}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
    }
    return (
        "# Written by devstack at every start; edits here are lost.\n"
        + json.dumps(config, indent=2)
        + "\n"
    )


def jaeger_env(otlp_grpc_port: int, query_http_port: int, host: str = "127.0.0.1") -> dict:
    """The ``.services/env`` lines: where processes send spans, where to query them."""
    return {
        "MTB_OTLP_ENDPOINT": f"http://{host}:{otlp_grpc_port}",
        "MTB_JAEGER_URL": f"http://{host}:{query_http_port}",
    }


def jaeger_ready(query_url: str, otlp_grpc_port: int, host: str = "127.0.0.1") -> bool:
    """The query API answers ``/api/services`` and the OTLP gRPC port accepts connections."""
    try:
        with urllib.request.urlopen(f"{query_url}/api/services", timeout=2) as resp:
            if resp.status != 200:
                return False
        with socket.create_connection((host, otlp_grpc_port), timeout=2):
            return True
    except (urllib.error.URLError, OSError):
        return False


def start_jaeger(
    workdir: str | Path,
    *,
    otlp_grpc_port: int | None = None,
    otlp_http_port: int | None = None,
    query_port: int | None = None,
    query_grpc_port: int | None = None,
    timeout: float = 180.0,
) -> ServiceInfo:
    """Build (once) and start Jaeger with its config and log in ``workdir``; ports default
    to free ones. Returns a handle with ``url`` (the query API), ``env`` (the
    ``.services/env`` lines) and ``stop()``; nothing is recorded in ``.services/env``:
    ``up``/``ensure_service`` do that for the shared server."""
    binary = build_jaeger()
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    ports = {
        "otlp_grpc": otlp_grpc_port or free_port(),
        "otlp_http": otlp_http_port or free_port(),
        "query_http": query_port or free_port(),
        "query_grpc": query_grpc_port or free_port(),
    }
    check_ports_free("jaeger", ports)
    config_path = work / "config.yaml"
    config_path.write_text(
        jaeger_config(
            otlp_grpc_port=ports["otlp_grpc"],
            otlp_http_port=ports["otlp_http"],
            query_http_port=ports["query_http"],
            query_grpc_port=ports["query_grpc"],
        )
    )
    log_path = work / "jaeger.log"
    env = jaeger_env(ports["otlp_grpc"], ports["query_http"])
    query_url = env["MTB_JAEGER_URL"]
    t0 = time.monotonic()
    proc = spawn([str(binary), "--config", f"file:{config_path}"], log_path, cwd=work)
    wait_ready(
        "jaeger", proc, lambda: jaeger_ready(query_url, ports["otlp_grpc"]), timeout, log_path
    )
    return ServiceInfo(
        name="jaeger",
        pid=proc.pid,
        url=query_url,
        ports=ports,
        env=env,
        log_path=log_path,
        started=True,
        urls={
            "query": query_url,
            "otlp_grpc": env["MTB_OTLP_ENDPOINT"],
            "otlp_http": f"http://127.0.0.1:{ports['otlp_http']}",
            "binary": str(binary),
        },
        startup_s=time.monotonic() - t0,
    )


def _jaeger_start(cfg: Config) -> ServiceInfo:
    return start_jaeger(
        cfg.service_dir("jaeger"),
        otlp_grpc_port=cfg.jaeger_otlp_grpc_port,
        otlp_http_port=cfg.jaeger_otlp_http_port,
        query_port=cfg.jaeger_query_port,
        query_grpc_port=cfg.jaeger_query_grpc_port,
        timeout=cfg.timeout,
    )


def _probe(state: Mapping[str, Any]) -> bool:
    return jaeger_ready(state["url"], int(state["ports"]["otlp_grpc"]))


SPEC = ServiceSpec(
    name="jaeger",
    start=_jaeger_start,
    probe=_probe,
    ports=(
        Port("jaeger_otlp_grpc_port", "otlp_grpc", "MTB_JAEGER_OTLP_GRPC_PORT", 24317),
        Port("jaeger_otlp_http_port", "otlp_http", "MTB_JAEGER_OTLP_HTTP_PORT", 24318),
        Port("jaeger_query_port", "query_http", "MTB_JAEGER_QUERY_PORT", 26686),
        Port("jaeger_query_grpc_port", "query_grpc", "MTB_JAEGER_QUERY_GRPC_PORT", 26685),
    ),
    pid_marker="jaeger",
)
