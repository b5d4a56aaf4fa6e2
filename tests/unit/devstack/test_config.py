"""Config (defaults, MTB_* variables, overrides, port fields from the services) and parse_only."""

from __future__ import annotations

import pytest

import devstack


def test_config_defaults_env_and_overrides(tmp_path):
    cfg = devstack.Config.from_env({})
    assert cfg.state_dir == devstack.REPO_ROOT / ".services"
    assert (cfg.pg_port, cfg.kafka_port, cfg.kafka_controller_port) == (25432, 29092, 29093)
    assert (cfg.triton_http_port, cfg.triton_grpc_port, cfg.triton_metrics_port) == (
        28000,
        28001,
        28002,
    )
    assert cfg.env_file == cfg.state_dir / "env"

    env = {"MTB_PG_PORT": "6543", "MTB_SERVICES_DIR": str(tmp_path), "MTB_KAFKA_PORT": "7000"}
    cfg = devstack.Config.from_env(env, kafka_port=7001, triton_grpc_port=None)
    assert cfg.pg_port == 6543 and isinstance(cfg.pg_port, int)
    assert cfg.kafka_port == 7001  # an explicit override beats the environment
    assert cfg.triton_grpc_port == 28001  # None means "not given"
    assert cfg.state_dir == tmp_path.resolve()
    assert cfg.database_url == "postgresql://mtb:mtb@127.0.0.1:6543/mtb"


def test_parse_only():
    assert devstack.parse_only(None) == ["postgres", "kafka", "triton", "jaeger", "prometheus"]
    assert devstack.parse_only("triton, postgres") == ["postgres", "triton"]
    assert devstack.parse_only(["kafka"]) == ["kafka"]
    with pytest.raises(devstack.ServiceError, match="redis"):
        devstack.parse_only("postgres,redis")
