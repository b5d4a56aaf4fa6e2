"""Triton: the ``tritonserver`` binary bundled in the ``nvidia-pytriton`` wheel, python
backend only, on a model repository (default ``model_repository/``). The shared server
(``up``/leases) and private ones on any repository (``start_triton``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.config import REPO_ROOT, Config, default_python
from devstack.daemon import (
    ServiceInfo,
    check_ports_free,
    free_port,
    run_command,
    spawn,
    wait_ready,
)
from devstack.errors import ServiceError
from devstack.spec import Port, ServiceSpec


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
        """Ask ``python`` (the venv) where its pytriton wheel is; ServiceError if absent."""
        python = Path(python) if python else default_python()
        probe = (
            "import importlib.util, json, sys, sysconfig, pathlib\n"
            "spec = importlib.util.find_spec('pytriton')\n"
            "pkg = pathlib.Path(spec.submodule_search_locations[0]) if spec else None\n"
            "print(json.dumps({'pkg': str(pkg) if pkg else None,\n"
            "  'libdir': sysconfig.get_config_var('LIBDIR'),\n"
            "  'ver': '%d.%d' % sys.version_info[:2]}))\n"
        )
        out = run_command([str(python), "-c", probe], f"triton: probing {python}")
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
    model_control: str = "none",
) -> list[str]:
    """tritonserver on loopback only, failing fast on any model error. ``model_control``
    none: the repository's models, all loaded at start; explicit: none loaded until the
    control plane asks (repository API; control_plane/inference/lifecycle.py)."""
    if model_control not in ("none", "explicit"):
        raise ValueError(f"model_control must be none or explicit, not {model_control!r}")
    return [
        str(server),
        f"--model-repository={model_repository}",
        f"--backend-directory={backend_directory}",
        f"--model-control-mode={model_control}",
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


def trace_args(url: str | None, rate: int = 1, service: str = "triton") -> list[str]:
    """tritonserver flags sending its own spans (request, compute, queue timestamps) to an
    OTLP/HTTP endpoint: ``url`` is the collector's base URL (``http://127.0.0.1:4318``)
    or its ``.../v1/traces`` URL; None or empty: no tracing flags. Triton continues the
    ``traceparent`` gRPC metadata the inference client sends, so its spans join each
    job's trace. ``rate=1`` traces every request (Triton samples 1 in ``rate``)."""
    if not url:
        return []
    url = url.rstrip("/")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    return [
        "--trace-config",
        "mode=opentelemetry",
        "--trace-config",
        f"rate={rate}",
        "--trace-config",
        "level=TIMESTAMPS",
        "--trace-config",
        "count=-1",
        "--trace-config",
        f"opentelemetry,url={url}",
        "--trace-config",
        f"opentelemetry,resource=service.name={service}",
    ]


def stub_instance(cmdline: list[str]) -> str | None:
    """A python-backend stub's model instance name (``translator_urgent_0_0``) from its
    command line; None for any other process (the server itself)."""
    if not cmdline or not cmdline[0].endswith("triton_python_backend_stub"):
        return None
    return next((a for a in cmdline if a.startswith("translator")), "stub")


def triton_http_ready(http_port: int, host: str = "127.0.0.1") -> bool:
    """``/v2/health/ready`` answers 200 (with --strict-readiness: every model loaded)."""
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
    extra_env: Mapping[str, str] | None = None,
    trace_url: str | None = None,
    model_control: str = "none",
) -> ServiceInfo:
    """Start tritonserver on ``model_repository`` and wait until it is ready.

    Ports default to free ones; ``workdir`` (default: a fresh ``.services/triton-<pid>``)
    holds the backend directory and ``triton.log``. Returns a handle with ``url`` (gRPC
    ``host:port``), ``urls['http']``, ``urls['metrics']`` and ``stop()``. Nothing is
    recorded in ``.services/env``: ``up``/``ensure_service`` do that for the shared server.
    ``extra_env`` reaches the models' Python (e.g. ``MTB_MODEL_DIR`` for our model.py).
    ``trace_url`` (default: ``MTB_TRITON_TRACE_URL``; empty: off) is an OTLP/HTTP endpoint
    for Triton's own spans (``trace_args``). ``model_control="explicit"`` starts it with
    nothing loaded (``triton_command``); the shared server keeps ``none``.
    """
    repo = Path(model_repository).resolve()
    if not repo.is_dir():
        raise ServiceError(f"triton: model repository {repo} is not a directory")
    ports = {
        "http": http_port or free_port(),
        "grpc": grpc_port or free_port(),
        "metrics": metrics_port or free_port(),
    }
    check_ports_free("triton", ports)
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
        model_control=model_control,
        extra_args=[
            *trace_args(os.environ.get("MTB_TRITON_TRACE_URL") if trace_url is None else trace_url),
            *extra_args,
        ],
    )
    t0 = time.monotonic()
    env = triton_env(paths, {**os.environ, **(extra_env or {})})
    proc = spawn(cmd, log_path, env=env, cwd=work)
    wait_ready("triton", proc, lambda: triton_http_ready(ports["http"]), timeout, log_path)
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


def _check_reuse(cfg: Config, info: ServiceInfo) -> None:
    """A running shared server on another model repository would serve the wrong models."""
    running_repo = info.urls.get("model_repository")
    if running_repo != str(cfg.model_repository):
        raise ServiceError(
            f"triton already runs on {running_repo}, not {cfg.model_repository};"
            " run `python -m devstack down --only triton` first"
        )


def _probe(state: Mapping[str, Any]) -> bool:
    return triton_http_ready(int(state["ports"]["http"]))


SPEC = ServiceSpec(
    name="triton",
    start=_triton_start,
    probe=_probe,
    ports=(
        Port("triton_http_port", "http", "MTB_TRITON_HTTP_PORT", 28000),
        Port("triton_grpc_port", "grpc", "MTB_TRITON_GRPC_PORT", 28001),
        Port("triton_metrics_port", "metrics", "MTB_TRITON_METRICS_PORT", 28002),
    ),
    pid_marker="tritonserver",
    check_reuse=_check_reuse,
)
