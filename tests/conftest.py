"""Shared fixtures: the blocking-call guard, real Redis and PostgreSQL, data folders, and
gateway applications served as ``serve`` serves them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestClient, TestServer
from blockbuster import BlockBuster, blockbuster_ctx

from gateway.web.appkeys import SETTINGS_KEY
from gateway.web.runner import GatewayRunner
from tests.services import postgres_server, redis_server, unavailable

REPO = Path(__file__).resolve().parents[1]
"""The repository's root."""
VECTORS = REPO / "tests" / "vectors"
"""Public conformance vectors the tests use, kept in the repository (their sources and
licences are in ``tests/vectors/SOURCES.md``)."""


class GatewayTestServer(TestServer):
    """aiohttp's test server, serving through the runner ``serve`` uses (``GatewayRunner``):
    parser refusals as problems, and the lane (``gateway.web.lane``) when ``lane``."""

    def __init__(self, app: web.Application, *, lane: bool, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.lane = lane

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        return GatewayRunner(self.app, lane=self.lane, **kwargs)


ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def aiohttp_client(aiohttp_client: ClientFactory) -> ClientFactory:
    """pytest-aiohttp's client factory, but a gateway application (one with settings) is
    served as ``serve`` serves it (``GatewayTestServer``, the lane as its settings say):
    every test of a lane's route goes through the lane, unless it turns the lane off."""

    async def go(param: web.Application | BaseTestServer, *,
                 server_kwargs: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> TestClient[Any, Any]:
        if isinstance(param, web.Application) and SETTINGS_KEY in param:
            param = GatewayTestServer(param, lane=param[SETTINGS_KEY].http_lane,
                                      **(server_kwargs or {}))
            server_kwargs = None
        return await aiohttp_client(param, server_kwargs=server_kwargs, **kwargs)

    return go


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
