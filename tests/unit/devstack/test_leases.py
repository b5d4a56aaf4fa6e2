"""Shared servers and leases, with a fake service (``sleep``) in place of a real one."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess

import devstack
from devstack import daemon, envfile


def test_stale_or_foreign_state_is_not_running(tmp_path):
    cfg = devstack.Config.from_env({"MTB_SERVICES_DIR": str(tmp_path)})
    state = tmp_path / "postgres" / "state.json"
    state.parent.mkdir()
    # Our own pid: alive, but not a postgres server.
    record = {"pid": os.getpid(), "url": "u", "ports": {}, "env": {"MTB_X": "u"}, "log": "l"}
    state.write_text(json.dumps(record))
    assert devstack.running_state(cfg, "postgres") is None
    assert devstack.status(cfg) == dict.fromkeys(devstack.SERVICES)
    assert devstack.refresh_env_file(cfg) == {}
    assert not cfg.env_file.exists()


def test_leases_stop_a_test_started_server_after_its_last_user(tmp_path, monkeypatch):
    cfg = devstack.Config.from_env({"MTB_SERVICES_DIR": str(tmp_path)})
    log = tmp_path / "fake.log"

    def fake_start(cfg):
        proc = daemon.spawn(["sleep", "60"], log)
        return devstack.ServiceInfo(
            name="postgres",
            pid=proc.pid,
            url="u",
            ports={"port": cfg.pg_port},
            env={"MTB_DATABASE_URL": "u"},
            log_path=log,
            started=True,
        )

    fake = dataclasses.replace(
        devstack.SPECS["postgres"], start=fake_start, pid_marker="sleep", stop_signal=signal.SIGTERM
    )
    monkeypatch.setitem(devstack.SPECS, "postgres", fake)

    info = devstack.ensure_service("postgres", cfg, lease=True)
    assert info.started and info.alive()
    assert devstack.read_env_file(cfg.env_file) == {
        "MTB_DATABASE_URL": "u",
        "MTB_JWT_SECRET": envfile.local_jwt_secret(cfg),  # the local stack's shared secret
    }
    # Another live test session holds a lease: releasing ours keeps the server.
    other = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "postgres" / "leases" / str(other.pid)).touch()
        assert not devstack.release_service("postgres", cfg)
        assert info.alive()
    finally:
        other.kill()
        other.wait()
    again = devstack.ensure_service("postgres", cfg, lease=True)
    assert not again.started and again.pid == info.pid
    assert devstack.release_service("postgres", cfg)  # the other session died: last user
    assert not info.alive() and not cfg.env_file.exists()

    # Started by `up` (no lease): a test session's release never stops it.
    info = devstack.ensure_service("postgres", cfg)
    devstack.ensure_service("postgres", cfg, lease=True)
    assert not devstack.release_service("postgres", cfg)
    assert info.alive()
    assert devstack.stop_service("postgres", cfg) and not info.alive()
