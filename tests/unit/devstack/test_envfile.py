""".services/env: written as plain shell assignments, read back the same."""

from __future__ import annotations

import subprocess

import pytest

from devstack import envfile


def test_env_file_round_trip(tmp_path):
    values = {
        "MTB_DATABASE_URL": "postgresql://mtb:mtb@127.0.0.1:25432/mtb",
        "MTB_KAFKA_BOOTSTRAP": "127.0.0.1:29092",
        "MTB_TRITON_URL": "127.0.0.1:28001",
    }
    path = tmp_path / "env"
    path.write_text(envfile.format_env_file(values))
    assert envfile.read_env_file(path) == values
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
    assert envfile.parse_env_text(text) == {"A": "1", "B": "two words", "C": "x=y", "D": ""}


def test_format_env_file_rejects_what_a_shell_would_mangle():
    with pytest.raises(ValueError):
        envfile.format_env_file({"A": "has space"})
    with pytest.raises(ValueError):
        envfile.format_env_file({"BAD-KEY": "x"})


def test_read_env_file_missing_is_empty(tmp_path):
    assert envfile.read_env_file(tmp_path / "nope") == {}
