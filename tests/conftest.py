"""Fixtures shared by the whole suite: offline environment, CDM URLs on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from omopfed import offline
from tests.pgserver import PostgresServer, PostgresUnavailable

offline.apply()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster per test session. Never skips: no server is a failure."""
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL tests need a server and none could be started: {exc}")
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return pg_server.create_database()


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def cdm_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each backend: tests using it run on DuckDB and PostgreSQL."""
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'cdm.duckdb'}"
    return str(request.getfixturevalue("pg_url"))
