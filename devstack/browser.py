"""A real headless Chromium for the browser tests: Debian's ``chromium`` and
``chromium-driver`` (``/usr/bin/chromium``, ``/usr/bin/chromedriver``), driven by selenium.

    python -m devstack.browser ensure    # install them when missing (apt-get; root or sudo)
    python -m devstack.browser status    # say what is there; exit 1 when something is missing

``ensure`` prints what it did and exits non-zero, with the reason, when it cannot install
them (not Debian/Ubuntu, no apt-get, neither root nor sudo, or apt-get failed). Tests use
``missing()`` to skip with the names of what is absent. Standard library only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PACKAGES = ("chromium", "chromium-driver")
APT_TIMEOUT_S = 1800


class BrowserError(Exception):
    pass


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def missing() -> list[str]:
    """What the browser tests need and this machine lacks (empty when all is there)."""
    out = []
    if not _executable(CHROMIUM):
        out.append(f"{CHROMIUM} (Debian package chromium)")
    if not _executable(CHROMEDRIVER):
        out.append(f"{CHROMEDRIVER} (Debian package chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        out.append("the selenium Python package (pip install -e '.[dev]')")
    return out


def _privileged() -> list[str]:
    """The prefix that runs apt-get as root: nothing for root, sudo -n otherwise."""
    if os.geteuid() == 0:
        return []
    sudo = shutil.which("sudo")
    if sudo is None:
        raise BrowserError("not root and sudo is not installed: cannot run apt-get")
    return [sudo, "-n"]


def _apt(prefix: list[str], *args: str) -> None:
    cmd = [*prefix, "apt-get", *args]
    print("+", " ".join(cmd), flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(cmd, env=env, timeout=APT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BrowserError(f"{' '.join(cmd)} took over {APT_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        raise BrowserError(f"{' '.join(cmd)} exited {done.returncode}")


def _installable() -> bool:
    """Whether apt knows both packages without a fresh package list."""
    for pkg in PACKAGES:
        out = subprocess.run(
            ["apt-cache", "policy", pkg], capture_output=True, text=True, check=False
        ).stdout
        if "Candidate:" not in out or "Candidate: (none)" in out:
            return False
    return True


def ensure() -> list[str]:
    """Install chromium + chromium-driver when a binary is missing; returns what was done."""
    if _executable(CHROMIUM) and _executable(CHROMEDRIVER):
        return []
    if shutil.which("apt-get") is None:
        raise BrowserError(
            f"{CHROMIUM} / {CHROMEDRIVER} are missing and there is no apt-get here; "
            f"install Chromium and its driver ({' '.join(PACKAGES)}) by hand"
        )
    prefix = _privileged()
    done = []
    if not _installable():
        _apt(prefix, "update")
        done.append("apt-get update")
    _apt(prefix, "install", "-y", "--no-install-recommends", *PACKAGES)
    done.append(f"apt-get install {' '.join(PACKAGES)}")
    still = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not _executable(p)]
    if still:
        raise BrowserError(f"installed {' '.join(PACKAGES)} but {', '.join(still)} is missing")
    return done


def _version(path: Path) -> str:
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"({exc})"
    return out.stdout.strip() or out.stderr.strip()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "ensure"
    if command == "status":
        absent = missing()
        for path in (CHROMIUM, CHROMEDRIVER):
            if _executable(path):
                print(f"{path}: {_version(path)}")
        for what in absent:
            print(f"missing: {what}")
        return 1 if absent else 0
    if command != "ensure":
        print("usage: python -m devstack.browser [ensure|status]", file=sys.stderr)
        return 2
    try:
        done = ensure()
    except BrowserError as exc:
        print(f"devstack.browser: cannot provide a headless Chromium: {exc}", file=sys.stderr)
        return 1
    if done:
        print(f"devstack.browser: did {'; '.join(done)}")
    else:
        print(f"devstack.browser: {CHROMIUM} and {CHROMEDRIVER} already installed, nothing to do")
    print(f"{CHROMIUM}: {_version(CHROMIUM)}")
    print(f"{CHROMEDRIVER}: {_version(CHROMEDRIVER)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
