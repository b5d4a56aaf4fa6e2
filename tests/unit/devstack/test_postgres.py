"""PostgreSQL's generated configuration and database-name checks, without a server."""

from __future__ import annotations

import pytest

from devstack import postgres


def test_postgres_conf_and_hba(tmp_path):
    conf = postgres.postgres_conf(5555, tmp_path)
    assert "port = 5555" in conf
    assert "listen_addresses = '127.0.0.1'" in conf
    assert f"unix_socket_directories = '{tmp_path}'" in conf
    host_lines = [line for line in postgres.pg_hba_conf().splitlines() if line.startswith("host")]
    assert host_lines and all(line.endswith("scram-sha-256") for line in host_lines)


def test_database_names_are_checked_before_connecting():
    with pytest.raises(ValueError):
        postgres.create_database('x"; DROP DATABASE mtb; --', url="postgresql://nowhere:1/x")
    assert postgres._with_database("postgresql://u:p@h:1/mtb", "t1") == "postgresql://u:p@h:1/t1"
