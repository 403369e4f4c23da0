"""The trust-list workflow: one service for ``/v1/admin/`` and ``ecert-gateway trust``.

Every time the service records is its clock's: the gateway's, or the system's for the CLI.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.audit.event import EventType
from gateway.credentials.store import IdentityKind, Role, add_identity
from tests.fakes import MemoryAudit
from tests.gateway.conftest import AppFactory

OPERATORS = {"olga": Role.OPERATOR, "adam": Role.APPROVER, "alice": Role.APPROVER,
             "pete": Role.APPROVER}
SUSPEND = {"kind": "suspend-partner", "region_code": "520500"}


async def test_the_injected_clock_dates_every_step(
        gateway_client: AppFactory, tmp_path: Path, audit: MemoryAudit) -> None:
    """The gateway's clock, not the system's, dates the start-up version, proposals, votes,
    the applied version and their audit records."""
    at = (datetime.now(UTC) - timedelta(minutes=30)).replace(microsecond=0)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    client = await gateway_client(clock=lambda: at)
    tokens = {name: await asyncio.to_thread(add_identity, tmp_path, IdentityKind.OPERATOR,
                                            name, role)
              for name, role in OPERATORS.items()}

    def auth(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[name]}"}

    resp = await client.post("/v1/admin/proposals", headers=auth("olga"),
                             json={"changes": [SUSPEND]})
    proposal = await resp.json()
    for name in ("adam", "alice"):
        resp = await client.post(f"/v1/admin/proposals/{proposal['id']}/approve",
                                 headers=auth(name))
    applied = await resp.json()
    assert ("applied", stamp, [stamp, stamp]) == (
        applied["status"], applied["created_at"], [a["at"] for a in applied["approvals"]])
    versions = (await (await client.get("/v1/admin/trust-list/versions",
                                        headers=auth("olga"))).json())["versions"]
    assert [(3, stamp), (4, stamp)] == [(v["version"], v["created_at"]) for v in versions]
    changes = audit.of(EventType.OPERATOR_CHANGE) + audit.of(EventType.TRUST_LIST_LOADED)
    assert 4 == len(changes)
    assert {at} == {e.at for e in changes}
