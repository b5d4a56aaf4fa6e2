"""``mtctl serve``: what stops it from starting is one line and exit code 2, found before
the app starts its workers."""

from __future__ import annotations

import os
import socket

import pytest

from control_plane.cli import main


@pytest.fixture
def env(tmp_path, monkeypatch):
    for name in [n for n in os.environ if n.startswith("MTB_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MTB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MTB_MODEL_DIR", str(tmp_path / "models"))
    return tmp_path


def serve(capsys, *args: str) -> tuple[int, str]:
    try:
        code = main(["serve", *args])
    except SystemExit as exc:  # argparse
        code = exc.code
    return code, capsys.readouterr().err


def test_port_out_of_range(env, capsys, monkeypatch):
    code, err = serve(capsys, "--port", "70000")
    assert code == 2 and "0..65535" in err
    monkeypatch.setenv("MTB_PORT", "-1")
    code, err = serve(capsys)
    assert code == 2 and "MTB_PORT='-1'" in err and "Traceback" not in err


def test_port_in_use(env, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, err = serve(capsys, "--port", str(port))
    assert code == 2 and f"cannot listen on 127.0.0.1:{port}" in err
    assert len(err.strip().splitlines()) == 1


def test_unresolvable_host(env, capsys):
    code, err = serve(capsys, "--host", "no-such-host.invalid", "--port", "0")
    assert code == 2 and "cannot resolve host 'no-such-host.invalid'" in err


def test_data_dir_that_is_a_file(env, capsys, monkeypatch):
    afile = env / "afile"
    afile.write_text("x")
    for bad in (afile, afile / "sub"):
        monkeypatch.setenv("MTB_DATA_DIR", str(bad))
        code, err = serve(capsys, "--port", "0")
        assert code == 2 and f"MTB_DATA_DIR {bad}:" in err and "Traceback" not in err


def test_help_says_what_it_runs(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for needle in ("REST API", "MTB_DATA_DIR", "SIGINT", "SIGTERM", "drain"):
        assert needle in text, needle
