"""The whole gateway with a witness policy: hanging witnesses never slow an answer, the
alert and metrics say the log is not witnessed, and witnessing resumes when they answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.audit import origin_for
from gateway.audit._keys import load_signing_key
from gateway.credentials.store import IdentityKind, add_identity
from gateway.settings import load_settings
from gateway.web.app import create_app
from mocks import ADD_CHECKPOINT_PATH, MockWitness, RunningFederation, create_witness_app
from tests.gateway.conftest import metric_value, scrape_metrics, trust_document
from trust import TrustList
from trust.note import NoteSigner

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def witnesses(tmp_path: Path) -> AsyncIterator[list[tuple[MockWitness, str]]]:
    """Three mock witnesses that trust the log key of the test's data folder."""
    key = await asyncio.to_thread(load_signing_key, tmp_path)
    verifier = NoteSigner(origin_for("330500"), key).verifier
    served: list[tuple[MockWitness, str]] = []
    servers = []
    for code in ("310000", "320500", "330100"):
        witness = MockWitness(f"{code}.ecert-gateway/witness", seed=11)
        witness.trust(verifier.to_vkey())
        server = TestServer(create_witness_app(witness))
        await server.start_server()
        servers.append(server)
        served.append((witness, str(server.make_url(ADD_CHECKPOINT_PATH))))
    yield served
    for server in servers:
        await server.close()


async def test_hanging_witnesses_delay_only_witnessing(
        aiohttp_client: Callable[..., Awaitable[Client]], tmp_path: Path,
        running: RunningFederation, witnesses: list[tuple[MockWitness, str]]) -> None:
    """Two of three witnesses hang (k = 2): answers stay fast, the alert rises and the
    witnessed checkpoint is missing; once they answer, the log is witnessed."""
    toml = ("[witness]\nk = 2\ninterval_s = 0.1\ntimeout_s = 0.3\nalert_after_s = 0.2\n"
            + "".join(f'[[witness.witnesses]]\nname = "{w.name}"\nvkey = "{w.vkey}"\n'
                      f'url = "{url}"\n' for w, url in witnesses))
    settings = load_settings({}, toml, {"data_dir": tmp_path})
    trust_list = TrustList.from_json(trust_document(running.federation))
    client = await aiohttp_client(create_app(settings, trust_list=trust_list))
    key = await asyncio.to_thread(add_identity, tmp_path, IdentityKind.CLIENT, "window-01")
    for witness, _ in witnesses[1:]:
        witness.delay_s = 10.0
    credential = running.federation["310000"].demo_licence(0).token
    slowest = 0.0
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # verifications while witnessing rounds time out
        started = time.perf_counter()
        response = await client.post("/v1/verifications", json={"credential": credential},
                                     headers={"Authorization": f"Bearer {key}"})
        slowest = max(slowest, time.perf_counter() - started)
        assert 200 == response.status
        await asyncio.sleep(0.05)
    assert slowest < 0.25, slowest  # a witness round waits up to timeout_s; answers never do
    assert 404 == (await client.get("/v1/audit/checkpoint/witnessed")).status
    metrics = await scrape_metrics(client)
    assert 1.0 == metric_value(metrics, "ecert_audit_witness_alert")
    assert 0.0 == metric_value(metrics, "ecert_audit_witnessed_size")
    assert (metric_value(metrics, "ecert_audit_witness_failures",
                         witness="320500.ecert-gateway/witness") or 0) >= 1
    for witness, _ in witnesses[1:]:
        witness.delay_s = 0.0
    for _ in range(60):  # back-off after a few failures: at most a few seconds here
        if (await client.get("/v1/audit/checkpoint/witnessed")).status == 200:
            break
        await asyncio.sleep(0.1)
    response = await client.get("/v1/audit/checkpoint/witnessed")
    assert 200 == response.status
    metrics = await scrape_metrics(client)
    assert 0.0 == metric_value(metrics, "ecert_audit_witness_alert")
