"""Triton's backend folder, environment and command line, without starting it."""

from __future__ import annotations

from pathlib import Path

from devstack import triton


def _fake_triton_paths(tmp_path: Path) -> triton.TritonPaths:
    wheel = tmp_path / "wheel"
    backend = wheel / "backends" / "python"
    (backend / "__pycache__").mkdir(parents=True)
    (backend / "libtriton_python.so").write_bytes(b"so")
    (backend / "__pycache__" / "x.pyc").write_bytes(b"")
    stub = wheel / "stubs" / "3.11" / "triton_python_backend_stub"
    stub.parent.mkdir(parents=True)
    stub.write_bytes(b"stub")
    return triton.TritonPaths(
        server=wheel / "bin" / "tritonserver",
        libs=tmp_path / "nvidia_pytriton.libs",
        python_backend=backend,
        stub=stub,
        python_libdir=Path("/opt/python/lib"),
        python_bin=Path("/repo/.venv/bin"),
    )


def test_prepare_triton_backends_places_the_stub(tmp_path):
    paths = _fake_triton_paths(tmp_path)
    dest = triton.prepare_triton_backends(tmp_path / "backends", paths)
    python = dest / "python"
    assert (python / "libtriton_python.so").read_bytes() == b"so"
    assert (python / "triton_python_backend_stub").read_bytes() == b"stub"
    assert not (python / "__pycache__").exists()
    mtime = (python / "triton_python_backend_stub").stat().st_mtime_ns
    triton.prepare_triton_backends(tmp_path / "backends", paths)  # cached: no copy
    assert (python / "triton_python_backend_stub").stat().st_mtime_ns == mtime


def test_triton_env_and_command(tmp_path):
    paths = _fake_triton_paths(tmp_path)
    env = triton.triton_env(paths, {"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/x"})
    assert env["LD_LIBRARY_PATH"] == f"/opt/python/lib:{paths.libs}:/x"
    assert env["PATH"] == "/repo/.venv/bin:/usr/bin"
    cmd = triton.triton_command(
        paths.server,
        model_repository=tmp_path / "repo",
        backend_directory=tmp_path / "backends",
        http_port=1,
        grpc_port=2,
        metrics_port=3,
    )
    assert cmd[0] == str(paths.server)
    for flag in (
        f"--model-repository={tmp_path / 'repo'}",
        f"--backend-directory={tmp_path / 'backends'}",
        "--model-control-mode=none",
        "--strict-readiness=true",
        "--log-verbose=0",
        "--http-port=1",
        "--grpc-port=2",
        "--metrics-port=3",
        "--grpc-address=127.0.0.1",
    ):
        assert flag in cmd


def test_triton_command_explicit_model_control(tmp_path):
    import pytest

    ports = dict(http_port=1, grpc_port=2, metrics_port=3)
    common = dict(model_repository=tmp_path, backend_directory=tmp_path, **ports)
    cmd = triton.triton_command(Path("tritonserver"), model_control="explicit", **common)
    assert "--model-control-mode=explicit" in cmd and "--model-control-mode=none" not in cmd
    with pytest.raises(ValueError, match="model_control"):
        triton.triton_command(Path("tritonserver"), model_control="poll", **common)
