"""Fixtures for gateway tests: a served mock federation, a gateway app, a local-system key."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gateway.credentials.store import IdentityKind, Role, add_identity
from gateway.settings import load_settings
from gateway.verification.service import Clock, VerificationService
from gateway.web.app import create_app
from gateway.web.appkeys import SETTINGS_KEY
from mocks import Federation, RunningFederation, serve_federation
from tests.fakes import MemoryAudit
from tests.services import free_port, unavailable
from trust import TrustList

AppFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def running() -> AsyncIterator[RunningFederation]:
    """Shanghai, Hefei and Bijie served on loopback ports."""
    federation = Federation.standard(seed=5, codes=["310000", "340100", "520500"])
    async with serve_federation(federation) as served:
        yield served


def trust_document(federation: Federation, **changes: Any) -> dict[str, Any]:
    """The federation's trust list as of now, valid for a week."""
    now = datetime.now(UTC)
    doc = federation.trust_list(version=changes.pop("version", 3),
                                issued_at=now - timedelta(hours=1),
                                next_update=now + timedelta(days=7))
    doc.update(changes)
    return doc


@pytest.fixture
async def client_key(tmp_path: Path) -> str:
    """A local system's API key in the test's data folder."""
    return await asyncio.get_running_loop().run_in_executor(
        None, add_identity, tmp_path, IdentityKind.CLIENT, "window-01")


async def scrape_metrics(client: TestClient[web.Request, web.Application]) -> str:
    """``GET /metrics`` as Prometheus scrapes it: with a scraper's token (role ``metrics``)
    made in the gateway's data folder."""
    token = await asyncio.to_thread(add_identity, client.app[SETTINGS_KEY].data_dir,
                                    IdentityKind.OPERATOR, f"scraper-{secrets.token_hex(4)}",
                                    Role.METRICS)
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert 200 == response.status
    return await response.text()


def metric_value(text: str, sample: str, **labels: str) -> float | None:
    """The value of ``sample`` (e.g. ``ecert_cache_events_total``) with exactly ``labels`` in
    a Prometheus text exposition, read by the reference parser; None when absent."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == sample and found.labels == labels:
                return float(found.value)
    return None


def verified_alone(service: VerificationService, monkeypatch: pytest.MonkeyPatch
                   ) -> list[object]:
    """The requests ``service`` verifies by themselves (out of a group), as it goes."""
    alone: list[object] = []
    by_itself = service._alone

    async def counted(item: Any, snapshot: Any = None) -> dict[str, Any]:
        alone.append(item)
        return await by_itself(item, snapshot)

    monkeypatch.setattr(service, "_alone", counted)
    return alone


@pytest.fixture
def audit() -> MemoryAudit:
    """The audit port, recording in memory."""
    return MemoryAudit()


@pytest.fixture
def gateway_client(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    tmp_path: Path, audit: MemoryAudit, running: RunningFederation,
) -> AppFactory:
    """Start a gateway on the served federation's trust list (or a given one).

    The federation's list is made once per test: two instances started on one folder
    get the very same list, as a restart would. (Made per start, a second boundary
    between the two made them differ in ``issued_at`` under the same version, which the
    second start refuses.)"""
    made: list[TrustList] = []

    async def start(trust_list: TrustList | None = None, *, clock: Clock | None = None,
                    data_dir: Path | None = None,
                    **settings: Any) -> TestClient[web.Request, web.Application]:
        config = load_settings({}, None, {"data_dir": data_dir or tmp_path, **settings})
        if trust_list is None and not made:
            made.append(TrustList.from_json(trust_document(running.federation)))
        tl = trust_list or made[0]
        app = create_app(config, audit=audit, trust_list=tl, clock=clock)
        return await aiohttp_client(app)  # served as serve serves it (tests/conftest.py)

    return start


class PrivateRedis:
    """A redis-server of a test's own, on a free port, that the test may stop and restart."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        """Start the server (again); it keeps nothing on disk."""
        self._procs.append(subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self) -> None:
        """Stop the running server and wait for it to exit."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A private Redis, started; stopped after the test."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server not on PATH: cannot stop and restart a private Redis")
    assert binary is not None
    server = PrivateRedis(binary)
    server.start()
    yield server
    server.stop()
