"""JSON that reaches a terminal (``curl``, as the demo suggests) ends with a newline.

Runs the real ``ecert-gateway serve`` process and the mock regions, and reads the raw
bytes of every kind of JSON answer: the app's own, a verification, a problem, the admin
trust list, an audit entry, a partner's query and the mocks' own documents.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson
import pytest

from gateway.credentials.store import IdentityKind, Role, add_identity
from gateway.infra.datafolder import create_data_folder
from mocks import Federation, PartnerClient, serve_federation
from tests.gateway.test_partner_api import SH_MATTER, SHANGHAI, licence_row
from tests.gateway.test_serve_process import _wait_ready
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.allow_blocking]


async def _raw(session: aiohttp.ClientSession, method: str, url: str,
               **kwargs: object) -> tuple[int, bytes]:
    async with session.request(method, url, **kwargs) as resp:  # type: ignore[arg-type]
        assert resp.content_type in ("application/json", "application/problem+json"), url
        return resp.status, await resp.read()


async def test_every_json_answer_ends_with_a_newline(tmp_path: Path) -> None:
    """The prompt no longer lands on the JSON's last line."""
    data = tmp_path / "data"
    create_data_folder(data)
    key = add_identity(data, IdentityKind.CLIENT, "window-01")
    viewer = add_identity(data, IdentityKind.OPERATOR, "vera", Role.VIEWER)
    auditor = add_identity(data, IdentityKind.OPERATOR, "alice", Role.AUDITOR)
    federation = Federation.standard(seed=9, codes=[SHANGHAI])
    async with serve_federation(federation) as running:
        now = datetime.now(UTC)
        trust = tmp_path / "trust.json"
        trust.write_bytes(orjson.dumps(running.federation.trust_list(
            version=1, issued_at=now - timedelta(hours=1), next_update=now + timedelta(days=1))))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once; the test then only awaits
            [sys.executable, "-m", "gateway", "serve", "--listen", f"127.0.0.1:{port}",
             "--data-dir", str(data), "--trust-list", str(trust)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "ECERT_LOG_LEVEL": "WARNING"},
        )
        try:
            async with aiohttp.ClientSession() as session:
                await _wait_ready(session, base)
                bearer = {"Authorization": f"Bearer {key}"}
                licence = running.federation[SHANGHAI].issue().token
                shanghai = PartnerClient(running.federation[SHANGHAI], base, session=session)
                body = orjson.dumps(shanghai.by_identifier(licence_row(1)["identifier"],
                                                           matter_code=SH_MATTER))
                answers = {
                    "healthz": await _raw(session, "GET", f"{base}/healthz"),
                    "readyz": await _raw(session, "GET", f"{base}/readyz"),
                    "jwks": await _raw(session, "GET", f"{base}/.well-known/jwks.json"),
                    "verification": await _raw(session, "POST", f"{base}/v1/verifications",
                                               headers=bearer, json={"credential": licence}),
                    "no key": await _raw(session, "POST", f"{base}/v1/verifications",
                                         json={"credential": licence}),
                    "no route": await _raw(session, "GET", f"{base}/v1/nothing-here"),
                    "trust list": await _raw(session, "GET", f"{base}/v1/admin/trust-list",
                                             headers={"Authorization": f"Bearer {viewer}"}),
                    "audit entry": await _raw(session, "GET", f"{base}/v1/audit/entries/0",
                                              headers={"Authorization": f"Bearer {auditor}"}),
                    "partner query": await _raw(
                        session, "POST", base + shanghai.path, data=body,
                        headers={"Authorization": f"Bearer {shanghai.sign(body)}",
                                 "Content-Type": "application/json"}),
                    "mock jwks": await _raw(session, "GET",
                                            running.url(SHANGHAI) + "/jwks.json"),
                }
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    statuses = {name: status for name, (status, _) in answers.items()}
    assert {"no key": 401, "no route": 404} == {k: v for k, v in statuses.items() if v != 200}
    for name, (_, raw) in answers.items():
        assert raw.endswith(b"\n"), name
        assert not raw.endswith(b"\n\n"), name
        orjson.loads(raw)
