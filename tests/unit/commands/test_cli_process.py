"""``mtctl`` as a process: Ctrl-C, a reader that goes away, closed stdin/stdout. Each
case runs ``python -m control_plane.cli`` with every wait bounded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTB_")}
    env["MTB_MODEL_DIR"] = os.environ.get("MTB_MODEL_DIR") or str(REPO / ".models")
    env["MTB_DATA_DIR"] = str(tmp_path / "data")
    env["MTB_PRECISION"] = "int8"
    env["PYTHONPATH"] = str(REPO)
    return env


@pytest.fixture
def models(env) -> None:
    from control_plane.engine.store import installed_models

    try:
        found = installed_models(Path(env["MTB_MODEL_DIR"]))
    except OSError:
        found = {}
    if not any(m.get("source") == "en" and m.get("target") == "pt" for m in found.values()):
        pytest.skip("no en-pt model in MTB_MODEL_DIR")


def mtctl(*args: str) -> list[str]:
    return [sys.executable, "-m", "control_plane.cli", *args]


def test_ctrl_c_while_translating_exits_130_without_an_abort(models, env, tmp_path):
    src = tmp_path / "big.txt"
    src.write_text("".join(f"This is sentence {i} about the weather.\n" for i in range(4000)))
    out = tmp_path / "out.txt"
    proc = subprocess.Popen(
        mtctl("translate", "-s", "en", "-t", "pt", "--no-cache", str(src)),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip
    try:
        first = proc.stdout.readline()  # the engine is working: a batch came out
        assert first, proc.stderr.read().decode()
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    text = err.decode()
    assert proc.returncode == 130, text
    assert "terminate called" not in text and "Traceback" not in text
    assert not out.exists()


def test_ctrl_c_with_output_leaves_no_temporary_file(models, env, tmp_path):
    src = tmp_path / "big.txt"
    src.write_text("".join(f"Sentence number {i} is here.\n" for i in range(4000)))
    out = tmp_path / "out.txt"
    out.write_text("previous\n")
    proc = subprocess.Popen(
        mtctl("translate", "-s", "en", "-t", "pt", "--no-cache", "-o", str(out), str(src)),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            temps = [p for p in tmp_path.iterdir() if p.name.startswith(".out.txt.")]
            if temps and temps[0].stat().st_size > 0:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 130, err.decode()
    assert "terminate called" not in err.decode()
    assert out.read_text() == "previous\n"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.txt.")]


@pytest.mark.parametrize("args", [["models", "--json"], ["cost", "--json"]])
def test_a_reader_that_goes_away_ends_quietly(env, args):
    # `true` has gone long before mtctl has started up and prints: a closed pipe for sure
    proc = subprocess.run(
        f"{' '.join(mtctl(*args))} | true; echo \"${{PIPESTATUS[0]}}\"",
        shell=True, executable="/bin/bash", env=env, capture_output=True, timeout=60,
    )  # fmt: skip
    assert proc.stdout.decode().strip() == "141", proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode() and "BrokenPipe" not in proc.stderr.decode()


def test_translate_into_head_ends_quietly(models, env, tmp_path):
    src = tmp_path / "many.txt"
    src.write_text("Good morning.\n" * 2000)
    proc = subprocess.run(
        f"{' '.join(mtctl('translate', '-s', 'en', '-t', 'pt', '--no-cache', str(src)))}"
        ' | head -1; echo "rc=${PIPESTATUS[0]}"',
        shell=True, executable="/bin/bash", env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == 2 and lines[1] == "rc=141", proc.stderr.decode()
    assert proc.stderr.decode() == ""


@pytest.mark.parametrize(
    ("redirect", "message"),
    [
        ("<&-", "mtctl translate: stdin is closed"),
        (">&-", "mtctl translate: stdout is closed"),
    ],
)
def test_closed_stdin_or_stdout_is_a_clear_error(env, redirect, message):
    cmd = " ".join(mtctl("translate", "-s", "en", "-t", "pt", "--no-cache"))
    proc = subprocess.run(
        f"{cmd} {redirect}", shell=True, executable="/bin/bash", env=env,
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL if redirect == "<&-" else None,
        timeout=60,
    )  # fmt: skip
    err = proc.stderr.decode()
    assert proc.returncode == 2 and message in err and "Traceback" not in err


def test_printing_commands_refuse_a_closed_stdout(env):
    proc = subprocess.run(
        f"{' '.join(mtctl('models'))} >&-", shell=True, executable="/bin/bash", env=env,
        stderr=subprocess.PIPE, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "stdout is closed" in proc.stderr.decode()
