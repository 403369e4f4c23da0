"""The event loop ``serve`` runs on: uvloop's where it is installed, asyncio's own as the
fallback or when ``uvloop = false``; the gateway answers on either."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.audit.event import EventType
from gateway.credentials.store import IdentityKind, add_identity
from gateway.settings import load_settings
from gateway.web.app import create_app
from gateway.web.runner import loop_factory
from mocks import Federation, serve_federation
from tests.fakes import MemoryAudit
from tests.gateway.conftest import trust_document
from trust import TrustList


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_verification_on_the_loop_serve_picks(tmp_path: Path, use_uvloop: bool) -> None:
    """``serve``'s loop choice: uvloop's loop when the setting is on, asyncio's own when
    off; the gateway verifies and audits a licence on either."""
    settings = load_settings({}, None, {"data_dir": tmp_path, "uvloop": use_uvloop})
    name, new_loop = loop_factory(settings)
    assert ("uvloop" if use_uvloop else "asyncio") == name
    key = add_identity(tmp_path, IdentityKind.CLIENT, "window-01")
    audit = MemoryAudit()

    async def scenario() -> tuple[str, int, str]:
        federation = Federation.standard(seed=5, codes=["310000"])
        async with serve_federation(federation) as served:
            tl = TrustList.from_json(trust_document(served.federation))
            app = create_app(settings, audit=audit, trust_list=tl)
            async with TestClient(TestServer(app)) as client:
                resp = await client.post(
                    "/v1/verifications", headers={"Authorization": f"Bearer {key}"},
                    json={"credential": served.federation["310000"].issue().token})
                body = await resp.json()
        return type(asyncio.get_running_loop()).__module__, resp.status, body["indication"]

    with asyncio.Runner(loop_factory=new_loop) as runner:
        module, status, indication = runner.run(scenario())
    assert name == module.split(".")[0]
    assert (200, "TOTAL_PASSED") == (status, indication)
    assert 1 == len(audit.of(EventType.VERIFICATION))


def test_environment_turns_uvloop_off(tmp_path: Path) -> None:
    """``ECERT_UVLOOP=0`` selects asyncio's own loop; the default is uvloop."""
    assert "uvloop" == loop_factory(load_settings({}, None, {"data_dir": tmp_path}))[0]
    off = load_settings({"ECERT_UVLOOP": "0"}, None, {"data_dir": tmp_path})
    assert ("asyncio", asyncio.new_event_loop) == loop_factory(off)
