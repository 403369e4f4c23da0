"""Combined ship certificates (多证合一) through POST /v1/verifications.

Nanjing, a Yangtze river port, issues them; its status list is served for real.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from gateway.audit.event import EventType
from gateway.verification.cache import CacheEntry, MemoryTier
from mocks import SHIP_COMPONENT_TYPES, Federation, RunningFederation, serve_federation
from tests.fakes import MemoryAudit
from tests.gateway.conftest import AppFactory

NANJING = "320100"
NATIONALITY, INSPECTION, OPERATION, MANNING = SHIP_COMPONENT_TYPES


@pytest.fixture
async def running() -> AsyncIterator[RunningFederation]:
    """Shanghai and Nanjing served on loopback ports (overrides the package fixture)."""
    federation = Federation.standard(seed=5, codes=["310000", NANJING])
    async with serve_federation(federation) as served:
        yield served


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _verify(client: Any, key: str, token: str) -> dict[str, Any]:
    resp = await client.post("/v1/verifications", headers=_auth(key),
                             json={"credential": token, "use_cause": "船舶进出港报告"})
    assert 200 == resp.status
    body: dict[str, Any] = await resp.json()
    return body


def _outcomes(body: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(c["indication"], c["sub_indication"]) for c in body["components"]]


async def test_all_components_valid(gateway_client: AppFactory, running: RunningFederation,
                                    client_key: str, audit: MemoryAudit) -> None:
    """A combined certificate whose components are all valid passes, each component too,
    and one audit record names every component's outcome without personal data."""
    client = await gateway_client()
    issued = running.federation[NANJING].issue_combined()
    body = await _verify(client, client_key, issued.token)
    assert ("TOTAL_PASSED", None, 0) == (body["indication"], body["sub_indication"],
                                         body["cn_status"])
    assert {"indication": "TOTAL_PASSED", "sub_indication": None,
            "cn_status": 0} == body["document"]
    assert [("TOTAL_PASSED", None)] * 4 == _outcomes(body)
    assert list(SHIP_COMPONENT_TYPES) == [c["component"]["type_code"]
                                          for c in body["components"]]
    assert [c.claims["number"] for c in issued.components] == [
        c["component"]["number"] for c in body["components"]]
    assert all(c["status_list"]["uri"].startswith(running.url(NANJING))
               for c in body["components"])
    records = audit.of(EventType.VERIFICATION)
    assert 1 == len(records)
    details = records[0].details
    assert [c.identifier for c in issued.components] == [
        c["identifier"] for c in details["components"]]  # type: ignore[attr-defined]
    text = orjson.dumps(details).decode()
    lic = issued.claims["lic"]
    for personal in (lic["holder_code"], lic["holder_name"],
                     *(c.claims["number"] for c in issued.components)):
        assert personal not in text


async def test_revoked_component_fails_alone(
        gateway_client: AppFactory, running: RunningFederation, client_key: str) -> None:
    """A component revoked in its status list fails, the others pass, and the document as a
    whole does not pass (REVOKED, cn 21) although its own checks do."""
    client = await gateway_client()
    issued = running.federation[NANJING].issue_combined(states={OPERATION: "revoked"})
    body = await _verify(client, client_key, issued.token)
    assert ("TOTAL_FAILED", "REVOKED", 21) == (body["indication"], body["sub_indication"],
                                              body["cn_status"])
    assert "TOTAL_PASSED" == body["document"]["indication"]
    assert [("TOTAL_PASSED", None), ("TOTAL_PASSED", None), ("TOTAL_FAILED", "REVOKED"),
            ("TOTAL_PASSED", None)] == _outcomes(body)
    assert 21 == body["components"][2]["cn_status"]


async def test_expired_component_fails_alone(
        gateway_client: AppFactory, running: RunningFederation, client_key: str) -> None:
    """A component past its valid_until is EXPIRED (cn 22); the others pass."""
    client = await gateway_client()
    issued = running.federation[NANJING].issue_combined(component_override={
        INSPECTION: {"issue_date": "2021-03-01", "valid_from": "2021-03-01",
                     "valid_until": "2024-02-29"}})
    body = await _verify(client, client_key, issued.token)
    assert ("TOTAL_FAILED", "EXPIRED", 22) == (body["indication"], body["sub_indication"],
                                              body["cn_status"])
    assert [("TOTAL_PASSED", None), ("TOTAL_FAILED", "EXPIRED"), ("TOTAL_PASSED", None),
            ("TOTAL_PASSED", None)] == _outcomes(body)


async def test_bad_document_signature_fails_every_component(
        gateway_client: AppFactory, running: RunningFederation, client_key: str) -> None:
    """A document whose signature does not verify fails as a whole and in every component."""
    client = await gateway_client()
    head, payload, sig = running.federation[NANJING].issue_combined().token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[10] ^= 0xFF
    bad = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    body = await _verify(client, client_key, f"{head}.{payload}.{bad}")
    assert ("TOTAL_FAILED", "SIG_CRYPTO_FAILURE") == (body["indication"],
                                                      body["sub_indication"])
    assert "SIG_CRYPTO_FAILURE" == body["document"]["sub_indication"]
    assert [("TOTAL_FAILED", "SIG_CRYPTO_FAILURE")] * 4 == _outcomes(body)
    assert all(c["checks"][0] == {"name": "document", "result": "FAILED",
                                  "detail": "the combined certificate failed: "
                                            "SIG_CRYPTO_FAILURE",
                                  "sub_indication": "SIG_CRYPTO_FAILURE"}
               for c in body["components"])


async def test_untrusted_document_issuer_fails_every_component(
        gateway_client: AppFactory, running: RunningFederation, client_key: str) -> None:
    """A combined certificate signed by a key no trust list names fails every component."""
    client = await gateway_client()
    nj = running.federation[NANJING]
    kid = nj.add_signing_key("ES256", publish=False)
    body = await _verify(client, client_key, nj.issue_combined(kid=kid).token)
    assert "UNKNOWN_ISSUER" == body["sub_indication"]
    assert [("TOTAL_FAILED", "UNKNOWN_ISSUER")] * 4 == _outcomes(body)


async def test_too_many_components_is_a_format_failure(
        gateway_client: AppFactory, running: RunningFederation, client_key: str) -> None:
    """17 components (the limit is 16) make the document a FORMAT_FAILURE (cn 12)."""
    client = await gateway_client()
    types = [f"11100000000019713D{900 + n + 1:03d}" for n in range(17)]
    body = await _verify(client, client_key,
                         running.federation[NANJING].issue_combined(types=types).token)
    assert ("TOTAL_FAILED", "FORMAT_FAILURE", 12) == (body["indication"],
                                                     body["sub_indication"],
                                                     body["cn_status"])
    claims = next(c for c in body["checks"] if c["name"] == "claims")
    assert "at most 16" in claims["detail"]
    sixteen = running.federation[NANJING].issue_combined(types=types[:16]).token
    assert "TOTAL_PASSED" == (await _verify(client, client_key, sixteen))["indication"]


async def test_component_revocation_is_not_hidden_by_the_cache(
        gateway_client: AppFactory, running: RunningFederation, client_key: str) -> None:
    """A cached pass of a combined certificate ends once the gateway holds a status list
    that revokes one component, even when the document itself has no status entry."""
    client = await gateway_client()
    nj = running.federation[NANJING]
    nj.status_ttl_s = 1
    issued = nj.issue_combined(with_status=False)
    first = await _verify(client, client_key, issued.token)
    assert "TOTAL_PASSED" == first["indication"]
    second = await _verify(client, client_key, issued.token)
    assert second["cached"]
    # Component numbers are not cached: a hit reads them again from the credential.
    assert [c["component"]["number"] for c in first["components"]] == [
        c["component"]["number"] for c in second["components"]]
    nj.revoke(issued.components[3].status_idx)
    deadline = time.monotonic() + 10
    answer = first
    while time.monotonic() < deadline and answer["sub_indication"] != "REVOKED":
        await asyncio.sleep(0.2)
        answer = await _verify(client, client_key, issued.token)
    assert "REVOKED" == answer["sub_indication"]
    assert ("TOTAL_FAILED", "REVOKED") == _outcomes(answer)[3]
    assert "TOTAL_PASSED" == answer["document"]["indication"]


@pytest.mark.parametrize("batch", [False, True])
async def test_matter_judges_the_components_it_needs(
        gateway_client: AppFactory, running: RunningFederation, client_key: str,
        audit: MemoryAudit, batch: bool) -> None:
    """Named with a Huzhou matter, the whole is judged on the components the registry says
    the matter needs: 船舶国籍登记 passes with a revoked 营业运输证, 国内水路运输经营许可
    does not; without a matter every component counts. Batch and single agree."""
    client = await gateway_client()
    token = running.federation[NANJING].issue_combined(states={OPERATION: "revoked"}).token
    items = [{"credential": token, "matter": {"code": "确认-01002-001"}},
             {"credential": token, "matter": {"code": "许可-01001-001"}},
             {"credential": token}]
    if batch:
        resp = await client.post("/v1/verifications/batch", headers=_auth(client_key),
                                 json={"items": items})
        answers = (await resp.json())["results"]
    else:
        answers = [await (await client.post("/v1/verifications", headers=_auth(client_key),
                                            json=item)).json() for item in items]
    assert [("TOTAL_PASSED", None), ("TOTAL_FAILED", "REVOKED"),
            ("TOTAL_FAILED", "REVOKED")] == [(a["indication"], a["sub_indication"])
                                             for a in answers]
    assert [True, False, False, False] == [c["needed"] for c in answers[0]["components"]]
    assert [True, True, True, False] == [c["needed"] for c in answers[1]["components"]]
    assert all(c["needed"] for c in answers[2]["components"])
    assert all(("TOTAL_FAILED", "REVOKED") == _outcomes(a)[2] for a in answers)
    events = audit.of(EventType.VERIFICATION)
    assert ["TOTAL_PASSED", "TOTAL_FAILED", "TOTAL_FAILED"] == [e.outcome for e in events]


def test_entry_with_several_status_lists_round_trips() -> None:
    """An entry that depends on several status lists keeps them all, in Redis's encoding
    and in the memory tier; an entry with one list encodes as before."""
    entry = CacheEntry(b'{"x":1}', 12.5, "http://s/1", 7, "tag",
                       (("http://s/2", 9), ("http://s/3", 11)))
    assert entry == CacheEntry.decode(entry.encode())
    assert (("http://s/1", 7), ("http://s/2", 9), ("http://s/3", 11)) == entry.statuses()
    tier = MemoryTier(4)
    tier.put("k", entry)
    assert entry == tier.get("k", 0.0)
    single = CacheEntry(b"{}", 1.0, "http://s/1", 7, "tag")
    assert b'"m"' not in single.encode()
