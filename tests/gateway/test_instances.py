"""Two gateway processes sharing one data folder and one real Redis.

A licence verified on A is a cache hit on B; revoking its signing anchor
through A's admin API makes B answer REVOKED; a status-list change makes both
stop passing a licence. Deadlines are generous: the propagation time itself is
measured in bench/.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.credentials.store import IdentityKind, Role, add_identity
from mocks import Federation, RunningFederation, serve_federation
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.allow_blocking]


class Instance:
    """One `ecert-gateway serve` process."""

    def __init__(self, data: Path, trust: Path, redis_url: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "ECERT_REDIS_URL": redis_url, "ECERT_APPROVALS_REQUIRED": "1",
               "ECERT_LOG_LEVEL": "WARNING"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--listen", f"127.0.0.1:{self.port}",
             "--data-dir", str(data), "--trust-list", str(trust)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def ready(self, session: aiohttp.ClientSession) -> None:
        for _ in range(200):
            try:
                async with session.get(f"{self.base}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"instance on {self.port} did not become ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
async def federation() -> AsyncIterator[RunningFederation]:
    """Shanghai, unseeded (fresh keys, so nothing in the shared Redis matches by chance)."""
    async with serve_federation(Federation.standard(codes=["310000"])) as running:
        running.federation["310000"].status_ttl_s = 1
        yield running


async def test_two_instances_share_cache_and_trust_changes(
        tmp_path: Path, redis_url: str, federation: RunningFederation) -> None:
    """Hit on B after A; anchor revoked through A reaches B; a status change reaches both."""
    sh = federation.federation["310000"]
    now = datetime.now(UTC)
    trust = tmp_path / "trust.json"
    trust.write_bytes(orjson.dumps(federation.federation.trust_list(
        version=1, issued_at=now - timedelta(hours=1), next_update=now + timedelta(days=3))))
    data = tmp_path / "data"
    client_key = add_identity(data, IdentityKind.CLIENT, "window")
    proposer = add_identity(data, IdentityKind.OPERATOR, "zhang", Role.OPERATOR)
    approver = add_identity(data, IdentityKind.OPERATOR, "li", Role.APPROVER)
    a = Instance(data, trust, redis_url)
    b = Instance(data, trust, redis_url)
    try:
        async with aiohttp.ClientSession() as session:
            await a.ready(session)
            await b.ready(session)

            async def verify(node: Instance, token: str) -> dict[str, Any]:
                async with session.post(f"{node.base}/v1/verifications",
                                        headers={"Authorization": f"Bearer {client_key}"},
                                        json={"credential": token}) as resp:
                    assert 200 == resp.status
                    answer: dict[str, Any] = await resp.json()
                    return answer

            licence = sh.issue().token
            on_a = await verify(a, licence)
            on_b = await verify(b, licence)
            assert ("TOTAL_PASSED", False) == (on_a["indication"], on_a["cached"])
            assert ("TOTAL_PASSED", True) == (on_b["indication"], on_b["cached"])

            # A status-list change: both stop passing the licence once they hold the new list.
            revoked_later = sh.issue()
            assert revoked_later.status_idx is not None
            for node in (a, b):
                assert "TOTAL_PASSED" == (await verify(node, revoked_later.token))["indication"]
            sh.revoke(revoked_later.status_idx)
            for node in (a, b):
                deadline = time.monotonic() + 15
                answer = await verify(node, revoked_later.token)
                while answer["sub_indication"] != "REVOKED" and time.monotonic() < deadline:
                    await asyncio.sleep(0.3)
                    answer = await verify(node, revoked_later.token)
                assert "REVOKED" == answer["sub_indication"]

            # Revoke the signing anchor through A (dual control: propose, then approve).
            change = {"kind": "revoke-anchor", "region_code": "310000", "kid": sh.licence_kid,
                      "reason": "key-compromise"}
            async with session.post(f"{a.base}/v1/admin/proposals",
                                    headers={"Authorization": f"Bearer {proposer}"},
                                    json={"changes": [change], "note": "key leaked"}) as resp:
                assert 201 == resp.status, await resp.text()
                proposal = await resp.json()
            async with session.post(f"{a.base}/v1/admin/proposals/{proposal['id']}/approve",
                                    headers={"Authorization": f"Bearer {approver}"}) as resp:
                assert 200 == resp.status, await resp.text()
            deadline = time.monotonic() + 15
            answer = await verify(b, licence)
            while answer["sub_indication"] != "REVOKED" and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                answer = await verify(b, licence)
            assert ("REVOKED", 2) == (answer["sub_indication"], answer["trust_list_version"])
    finally:
        a.stop()
        b.stop()
