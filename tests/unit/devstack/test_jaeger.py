"""Jaeger's generated config, env lines, cache folder and build, without Go or a server
(a fake ``go`` on PATH stands in for the toolchain)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

import devstack
from devstack import jaeger
from devstack.envfile import format_env_file, parse_env_text

# ---------------------------------------------------------------- config and env


def test_config_memory_store_otlp_receivers_and_query_on_loopback():
    text = jaeger.jaeger_config(
        otlp_grpc_port=1001, otlp_http_port=1002, query_http_port=1003, query_grpc_port=1004
    )
    cfg = yaml.safe_load(text)
    assert cfg["receivers"]["otlp"]["protocols"] == {
        "grpc": {"endpoint": "127.0.0.1:1001"},
        "http": {"endpoint": "127.0.0.1:1002"},
    }
    query = cfg["extensions"]["jaeger_query"]
    assert query["http"] == {"endpoint": "127.0.0.1:1003"}
    assert query["grpc"] == {"endpoint": "127.0.0.1:1004"}
    store = query["storage"]["traces"]
    assert "memory" in cfg["extensions"]["jaeger_storage"]["backends"][store]
    assert cfg["exporters"]["jaeger_storage_exporter"]["trace_storage"] == store
    service = cfg["service"]
    assert set(service["extensions"]) == {"jaeger_storage", "jaeger_query"}
    assert service["pipelines"]["traces"]["receivers"] == ["otlp"]
    assert service["pipelines"]["traces"]["exporters"] == ["jaeger_storage_exporter"]
    # no listener besides ours: the collector's own metrics (port 8888) are off
    assert service["telemetry"]["metrics"]["level"] == "none"
    endpoints = [v for v in _leaves(cfg) if isinstance(v, str) and ":" in v and "." in v]
    assert endpoints and all(e.startswith("127.0.0.1:") for e in endpoints)


def _leaves(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _leaves(value)
    elif isinstance(node, list):
        for value in node:
            yield from _leaves(value)
    else:
        yield node


def test_env_lines_are_plain_assignments_the_otlp_exporter_takes():
    env = jaeger.jaeger_env(24317, 26686)
    assert env == {
        "MTB_OTLP_ENDPOINT": "http://127.0.0.1:24317",
        "MTB_JAEGER_URL": "http://127.0.0.1:26686",
    }
    assert parse_env_text(format_env_file(env)) == env


def test_ports_below_the_ephemeral_range():
    ports = jaeger.SPEC.ports
    assert [p.key for p in ports] == ["otlp_grpc", "otlp_http", "query_http", "query_grpc"]
    assert {p.env_var for p in ports} == {
        "MTB_JAEGER_OTLP_GRPC_PORT",
        "MTB_JAEGER_OTLP_HTTP_PORT",
        "MTB_JAEGER_QUERY_PORT",
        "MTB_JAEGER_QUERY_GRPC_PORT",
    }
    assert all(p.default < 32768 for p in ports)  # like the other services (see Config)
    others = {p.default for s in devstack.SPECS.values() if s is not jaeger.SPEC for p in s.ports}
    assert not others & {p.default for p in ports}


@pytest.mark.skipif(
    "jaeger" not in devstack.SERVICES, reason="devstack.registry does not list jaeger yet"
)
def test_registered_with_ports_in_config():
    assert devstack.parse_only("jaeger") == ["jaeger"]
    cfg = devstack.Config.from_env({"MTB_JAEGER_QUERY_PORT": "16000"})
    assert cfg.jaeger_query_port == 16000
    assert cfg.jaeger_otlp_grpc_port == 24317
    assert devstack.SPECS["jaeger"].wanted_ports(cfg)["query_http"] == 16000


# ---------------------------------------------------------------- cache folder


def test_cache_dir_follows_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert jaeger.cache_dir("v9", {}) == tmp_path / "home/.cache/mt-backend/jaeger/v9"
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert jaeger.cache_dir("v9", env) == tmp_path / "xdg/mt-backend/jaeger/v9"
    # a relative XDG_CACHE_HOME is invalid (XDG spec) and ignored
    assert jaeger.cache_dir("v9", {"XDG_CACHE_HOME": "rel"}).is_relative_to(tmp_path / "home")
    env = {"MTB_JAEGER_CACHE": str(tmp_path / "mine"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert jaeger.cache_dir("v9", env) == tmp_path / "mine/v9"
    assert jaeger.binary_path("v9", env) == tmp_path / "mine/v9/jaeger"
    assert jaeger.binary_path("v9", {"MTB_JAEGER_BINARY": "/opt/j"}) == Path("/opt/j")
    assert jaeger.cache_dir().name == jaeger.JAEGER_VERSION == "v1.76.0"


def test_build_commands_build_inside_the_module_so_its_replaces_apply(tmp_path):
    download, build = jaeger.go_build_commands("v1.76.0", tmp_path / "out")
    assert download == ["go", "mod", "download", "-json", "github.com/jaegertracing/jaeger@v1.76.0"]
    assert build[:2] == ["go", "build"] and build[-1] == "./cmd/jaeger"
    assert build[build.index("-o") + 1] == str(tmp_path / "out")


# ---------------------------------------------------------------- build


def _fake_go(bin_dir: Path, script: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    go = bin_dir / "go"
    go.write_text("#!/bin/sh\n" + script)
    go.chmod(0o755)


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    monkeypatch.delenv("MTB_JAEGER_BINARY", raising=False)
    monkeypatch.setenv("MTB_JAEGER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    return tmp_path


def test_no_go_toolchain_is_a_clear_unavailable_error(cache_env, monkeypatch):
    monkeypatch.setenv("PATH", str(cache_env / "empty"))
    with pytest.raises(jaeger.JaegerUnavailable, match=r"Go toolchain \(`go`\) is not on PATH"):
        jaeger.build_jaeger("v1.76.0")


def test_refused_module_download_names_the_reason(cache_env):
    _fake_go(
        cache_env / "bin",
        'echo "go: github.com/jaegertracing/jaeger@v1.76.0: reading'
        ' https://proxy.golang.org/...: 403 Forbidden" >&2\nexit 1\n',
    )
    with pytest.raises(jaeger.JaegerUnavailable) as err:
        jaeger.build_jaeger("v1.76.0")
    message = str(err.value)
    assert "downloading github.com/jaegertracing/jaeger@v1.76.0 failed (exit 1)" in message
    assert "403 Forbidden" in message
    assert isinstance(err.value, devstack.ServiceError)
    folder = cache_env / "cache/v1.76.0"
    assert (folder / ".build.lock").exists() and "403 Forbidden" in (
        folder / "build.log"
    ).read_text()
    assert not (folder / "jaeger").exists()


def test_build_once_then_reuse(cache_env):
    module = cache_env / "module"
    module.mkdir()
    calls = cache_env / "calls"
    _fake_go(
        cache_env / "bin",
        f'echo "$PWD $*" >> {calls}\n'
        'case "$1" in\n'
        f'  mod) echo \'{{"Path": "x", "Dir": "{module}"}}\' ;;\n'
        '  build) while [ "$1" != "-o" ]; do shift; done; printf "#!/bin/sh\\n" > "$2";'
        ' chmod 755 "$2" ;;\n'
        "  version) echo go version go1.99 linux/amd64 ;;\n"
        "esac\n",
    )
    binary = jaeger.build_jaeger("v1.76.0")
    assert binary == cache_env / "cache/v1.76.0/jaeger" and os.access(binary, os.X_OK)
    lines = calls.read_text().splitlines()
    assert lines[0].endswith("mod download -json github.com/jaegertracing/jaeger@v1.76.0")
    assert lines[1].startswith(f"{module} build ")  # built inside the module folder
    info = json.loads((binary.parent / "build.json").read_text())
    assert info["version"] == "v1.76.0" and info["build_s"] >= 0 and info["bytes"] > 0
    assert not (binary.parent / "jaeger.tmp").exists()

    calls.unlink()
    assert jaeger.build_jaeger("v1.76.0") == binary
    assert not calls.exists()  # the cached binary: no go call at all


def test_jaeger_binary_override_must_be_executable(cache_env, monkeypatch):
    monkeypatch.setenv("MTB_JAEGER_BINARY", str(cache_env / "nope"))
    with pytest.raises(jaeger.JaegerUnavailable, match="MTB_JAEGER_BINARY"):
        jaeger.build_jaeger()
