"""The gateway on the full federation's trust list (43 partners with key histories), over HTTP.

Loaded from a file as ``serve --trust-list`` loads it, it verifies a licence of
every partner, keeps superseded keys verifying what they signed before their
retirement and the compromised key verifying nothing, answers every partner's
queries, and is served, exported and imported whole into a second instance.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.settings import load_settings
from gateway.web.app import create_app
from mocks import (
    COMPROMISED_REGION,
    KEYS_VALID_FROM,
    SM2_ALG,
    Federation,
    MockRegion,
    PartnerClient,
    RunningFederation,
    serve_federation,
)
from tests.fakes import MemoryAudit
from tests.gateway.conftest import trust_document
from tests.gateway.test_admin_api import _apply, _auth, _jwks_trust_key, _tokens
from tests.gateway.test_partner_api import HOLDER, import_rows, licence_row

pytestmark = pytest.mark.asyncio

Client = TestClient[web.Request, web.Application]
Start = Callable[..., Awaitable[Client]]


@pytest.fixture
async def full() -> AsyncIterator[RunningFederation]:
    """The full federation served on loopback, one port per region."""
    async with serve_federation(Federation.full(seed=26)) as served:
        yield served


@pytest.fixture
def start(aiohttp_client: Callable[..., Awaitable[Client]], audit: MemoryAudit) -> Start:
    """Start a gateway on a data folder, loading the trust list from a file if given."""

    async def _start(data_dir: Path, trust_list: dict[str, Any] | None = None) -> Client:
        path = None
        if trust_list is not None:
            path = data_dir / "full-trust-list.json"
            await asyncio.to_thread(path.write_bytes, orjson.dumps(trust_list))
        settings = load_settings({}, None, {"data_dir": data_dir, "trust_list_file": path})
        return await aiohttp_client(create_app(settings, audit=audit))

    return _start


async def _verify(client: Client, key: str, token: str) -> tuple[str, str | None]:
    resp = await client.post("/v1/verifications", headers=_auth(key),
                             json={"credential": token, "use_cause": "办理跨省通办事项"})
    assert 200 == resp.status
    body = await resp.json()
    return body["indication"], body.get("sub_indication")


async def _served(client: Client, token: str) -> dict[str, Any]:
    resp = await client.get("/v1/admin/trust-list", headers=_auth(token))
    assert 200 == resp.status
    document: dict[str, Any] = await resp.json()
    return document


def _ts(moment: datetime) -> int:
    return int(moment.timestamp())


def _signed_at(region: MockRegion, kid: str, at: datetime) -> str:
    """A licence signed with ``kid`` at ``at``, valid for good (长期: no ``exp``), so that
    only the key's rules decide."""
    licence = region.issue(kid=kid, iat=_ts(at), valid_until=None)
    assert (kid, region.alg_of(kid)) == (licence.header["kid"], licence.header["alg"])
    return licence.token


async def test_every_partner_verifies_and_retired_keys_keep_their_rules(
        full: RunningFederation, start: Start, tmp_path: Path) -> None:
    """One licence of each of the 43 partners passes; a superseded key passes only what it
    signed before its retirement; the compromised key fails after (and, as the profile says,
    before) its compromise."""
    federation = full.federation
    tokens = await _tokens(tmp_path)
    gateway = await start(tmp_path, trust_document(federation))
    key = tokens["client"]

    verdicts = {region.region_code: await _verify(gateway, key, region.issue().token)
                for region in federation}
    assert dict.fromkeys(federation.codes, ("TOTAL_PASSED", None)) == verdicts
    assert 43 == len(verdicts)

    second = timedelta(seconds=1)
    checked: dict[str, tuple[str, str | None]] = {}
    # A superseded key of each kind of region: ES256 (上海) and SM2SM3 (白山).
    for code in ("310000", "220600"):
        region = federation[code]
        retired = federation.retired_key(code, "superseded")
        assert retired.kid.endswith("-lic-2022a")
        for name, at in (("before", retired.retired_at - second), ("at", retired.retired_at),
                         ("after", retired.retired_at + timedelta(days=30))):
            checked[f"{code} superseded {name}"] = await _verify(
                gateway, key, _signed_at(region, retired.kid, at))
    # The key every region retired at the 2026 rotation, signing the day before and after.
    hefei = federation["340100"]
    for name, at in (("before", KEYS_VALID_FROM - timedelta(days=1)),
                     ("after", KEYS_VALID_FROM + timedelta(days=1))):
        checked[f"340100 2024a {name}"] = await _verify(
            gateway, key, _signed_at(hefei, "340100-lic-2024a", at))
    compromised = federation.retired_key(COMPROMISED_REGION, "key-compromise")
    region = federation[COMPROMISED_REGION]
    for name, at in (("after", compromised.retired_at + timedelta(days=1)),
                     ("before", compromised.retired_at - timedelta(days=90))):
        checked[f"compromised {name}"] = await _verify(
            gateway, key, _signed_at(region, compromised.kid, at))
    checked["replacement"] = await _verify(gateway, key, _signed_at(
        region, f"{COMPROMISED_REGION}-lic-2025a", compromised.retired_at + timedelta(days=1)))

    passed, revoked = ("TOTAL_PASSED", None), ("TOTAL_FAILED", "REVOKED")
    assert {
        "310000 superseded before": passed, "310000 superseded at": revoked,
        "310000 superseded after": revoked,
        "220600 superseded before": passed, "220600 superseded at": revoked,
        "220600 superseded after": revoked,
        "340100 2024a before": passed, "340100 2024a after": revoked,
        "compromised after": revoked, "compromised before": revoked,
        "replacement": passed,
    } == checked
    assert SM2_ALG == federation["220600"].licence_alg


async def test_full_list_is_served_queried_and_propagated(
        full: RunningFederation, start: Start, tmp_path: Path) -> None:
    """The served list carries every partner's anchors, every partner's query is answered,
    a change approved on one instance is served by a twin on the same folder, and the signed
    export of the list imports into a second data folder's instance, which verifies."""
    federation = full.federation
    document = trust_document(federation)
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    rows = [licence_row(1)]
    await asyncio.to_thread(import_rows, a_dir, rows)
    a_tokens, b_tokens = await _tokens(a_dir), await _tokens(b_dir)
    a = await start(a_dir, document)

    served = await _served(a, a_tokens["vera"])
    anchors = {p["region_code"]: {x["kid"] for x in p["anchors"]} for p in served["partners"]}
    assert {p["region_code"]: {x["kid"] for x in p["anchors"]}
            for p in document["partners"]} == anchors
    assert 43 == len(anchors)
    assert 43 * 7 + 1 == sum(len(kids) for kids in anchors.values())  # 蚌埠 has 2025a too

    answers = {}
    for region in federation:
        client = PartnerClient(region, str(a.make_url("")), session=a.session)
        answer = await client.query(client.by_identifier(
            rows[0]["identifier"], matter_code=f"{region.region_code}-20-TEST-0001"))
        answers[region.region_code] = (answer.status, answer.cn_status,
                                       len(answer.body.get("licences", [])))
    assert dict.fromkeys(federation.codes, (200, 0, 1)) == answers
    by_holder = PartnerClient(federation["652929"], str(a.make_url("")), session=a.session)
    found = await by_holder.query(by_holder.by_holder(HOLDER, rows[0]["type_code"],
                                                      matter_code="652929-20-TEST-0001"))
    assert (200, 0) == (found.status, found.cn_status)

    # A change approved on one instance is served by another on the same data folder.
    twin = await start(a_dir, document)
    await _apply(a, a_tokens, {"kind": "suspend-partner", "region_code": "341800"})
    deadline = time.monotonic() + 10
    served_version = document["version"]
    while time.monotonic() < deadline:
        served_version = (await (await twin.get("/readyz")).json())["trust_list_version"]
        if served_version == document["version"] + 1:
            break
        await asyncio.sleep(0.05)
    assert document["version"] + 1 == served_version
    assert ("INDETERMINATE", "TRY_LATER") == await _verify(
        twin, a_tokens["client"], federation["341800"].issue().token)

    await asyncio.to_thread((b_dir / "trust-list-signers.json").write_bytes,
                            orjson.dumps({"keys": [await _jwks_trust_key(a)]}))
    b = await start(b_dir)
    export = await a.get("/v1/admin/trust-list/export", headers=_auth(a_tokens["vera"]))
    assert 200 == export.status
    resp = await b.post("/v1/admin/trust-list/import", headers=_auth(b_tokens["adam"]),
                        data=await export.text())
    assert (201, True) == (resp.status, (await resp.json())["imported"])
    assert await _served(a, a_tokens["vera"]) == await _served(b, b_tokens["vera"])
    sm2 = federation["520500"].issue().token
    assert ("TOTAL_PASSED", None) == await _verify(b, b_tokens["client"], sm2)
    old = _signed_at(federation["331100"], "331100-lic-2024a", datetime(2025, 6, 1, tzinfo=UTC))
    assert ("TOTAL_PASSED", None) == await _verify(b, b_tokens["client"], old)
