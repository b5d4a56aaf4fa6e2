"""The two Containerfiles cannot be built here (no base image can be pulled); what can be
checked offline is checked: bases pinned to exact versions, a numeric non-root user, every
package pyproject.toml installs copied in, and the control plane image without torch."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
IMAGES = {
    "control-plane": ROOT / "Containerfile",
    "triton": ROOT / "k8s" / "images" / "triton.Containerfile",
}


def _packages() -> list[str]:
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    return [p.rstrip("*") for p in include]


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_containerfile_is_pinned_non_root_and_complete(name: str) -> None:
    text = IMAGES[name].read_text()
    bases = re.findall(r"^ARG \w+_IMAGE=(\S+)$", text, re.M)
    assert bases, "the base image is an ARG with a default"
    for image in bases:  # an exact version tag (or a digest), never latest
        assert re.search(r":\d+(\.\d+)+[-\w.]*$|@sha256:[0-9a-f]{64}$", image), image
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(stages) >= 2, "multi-stage"
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), users
    for package in _packages():  # pip install . needs every package it lists
        assert re.search(rf"^COPY {package} \./{package}$", text, re.M), package
    for path in re.findall(r"^COPY (?!--)(\S+) ", text, re.M):
        assert (ROOT / path).exists(), path


def test_control_plane_image_has_no_torch() -> None:
    text = IMAGES["control-plane"].read_text()
    assert 'RUN ! /opt/venv/bin/python -c "import torch"' in text
    assert "[hf]" not in text and "torch" not in re.sub(r"^#.*$|import torch", "", text, flags=re.M)


def test_containerignore_keeps_local_state_out() -> None:
    ignored = (ROOT / ".containerignore").read_text().split()
    assert {".venv", ".models", ".services", ".git"} <= set(ignored)


def test_control_plane_image_carries_what_the_cost_model_reads() -> None:
    """Installed as a package, the code no longer sits beside bench/results and the
    scaling policy: the image copies both and points the settings at them."""
    from control_plane.settings import Settings

    text = IMAGES["control-plane"].read_text()
    copied = dict((dst, src) for src, dst in re.findall(r"^COPY (?!--)(\S+) (\S+)$", text, re.M))
    env = dict(re.findall(r"\b(MTB_COST_\w+)=(\S+)", text))
    assert set(env) == {"MTB_COST_RESULTS_DIR", "MTB_COST_POLICY_PATH"}
    for key, value in env.items():
        assert hasattr(Settings(), key.removeprefix("MTB_").lower()), key
        assert value in copied and (ROOT / copied[value]).exists(), (key, value)
