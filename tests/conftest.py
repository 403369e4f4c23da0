"""Shared fixtures: the blocking-call guard, real Redis and PostgreSQL, data folders."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

from tests.services import postgres_server, redis_server, unavailable

REPO = Path(__file__).resolve().parents[1]
"""The repository's root."""
VECTORS = REPO / "tests" / "vectors"
"""Public conformance vectors the tests use, kept in the repository (their sources and
licences are in ``tests/vectors/SOURCES.md``)."""


@pytest.fixture(autouse=True)
async def blocking_guard(request: pytest.FixtureRequest) -> AsyncIterator[BlockBuster | None]:
    """Fail any test whose event loop makes a blocking call (file I/O, sleep, sqlite)."""
    if request.node.get_closest_marker("allow_blocking"):
        yield None
        return
    with blockbuster_ctx(["gateway", "trust", "registry", "mocks"]) as guard:
        yield guard


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis server (environment's or private)."""
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_server_dsn() -> Iterator[str]:
    """DSN of a real PostgreSQL server (environment's or private)."""
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture
def postgres_dsn(postgres_server_dsn: str) -> Iterator[str]:
    """DSN of a fresh, empty database on the real server, dropped after the test."""
    import psycopg

    name = f"ecert_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(postgres_server_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL at {postgres_server_dsn} refused: {exc}")
    base, _, _ = postgres_server_dsn.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(postgres_server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
