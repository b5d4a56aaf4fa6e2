"""Tools built or fetched once per machine (Jaeger's Go build, kustomize, the operators'
CRDs): where they are cached and how their build commands run.

One place for both, so every cached tool follows the XDG rule the same way and every
failed build step reads the same: the step, its exit code, the tail of its output and the
log file holding all of it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/mt-backend``, else ``~/.cache/mt-backend``: outside the checkout,
    shared by every checkout and worktree of the machine. The XDG spec: a relative
    XDG_CACHE_HOME is invalid and ignored."""
    env = os.environ if env is None else env
    xdg = env.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "mt-backend"


def go_env() -> dict[str, str]:
    """The environment for ``go`` building a downloaded module: that folder is no VCS
    checkout (``-buildvcs=false``) and a static binary needs no C toolchain."""
    env = dict(os.environ)
    flags = env.get("GOFLAGS", "")
    if "-buildvcs" not in flags:
        env["GOFLAGS"] = (flags + " -buildvcs=false").strip()
    env.setdefault("CGO_ENABLED", "0")
    return env


def run_logged(
    cmd: list[str],
    what: str,
    log_path: Path,
    *,
    error: type[Exception],
    prefix: str,
    timeout_s: float,
    cwd: Path | None = None,
    tail_lines: int = 20,
) -> str:
    """Run one build step with ``go_env()``, append its output to ``log_path`` and return
    its stdout; raise ``error`` (``"<prefix>: <what> ..."``) when it cannot start, runs
    past ``timeout_s`` or exits non-zero."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        res = subprocess.run(
            cmd,
            cwd=cwd,
            env=go_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except FileNotFoundError as exc:
        raise error(f"{prefix}: {what}: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise error(f"{prefix}: {what} did not finish within {timeout_s:.0f} s") from exc
    with open(log_path, "a") as fh:
        fh.write(f"\n==== {' '.join(cmd)}\n{res.stdout}{res.stderr}")
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).splitlines()[-tail_lines:])
        raise error(
            f"{prefix}: {what} failed (exit {res.returncode}): {' '.join(cmd)}\n{tail}\n"
            f"(full output in {log_path})"
        )
    return res.stdout
