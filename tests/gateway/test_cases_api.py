"""POST /v1/cases over HTTP: 免证办 for a matter or 一件事, partners queried for real."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.credentials.store import IdentityKind, Role, add_identity
from gateway.settings import load_settings
from gateway.web.app import create_app
from mocks import (
    QUERY_PATH,
    SM2_ALG,
    Federation,
    IssuedLicence,
    MockRegion,
    RunningFederation,
    make_resident_id,
    make_uscc,
    serve_federation,
)
from tests.fakes import MemoryAudit
from tests.gateway.conftest import trust_document
from trust import TrustList

pytestmark = pytest.mark.asyncio

Client = TestClient[web.Request, web.Application]

BUSINESS_LICENCE = "11100000MB0143028R001"
ID_CARD = "11100000000013127D001"
PROPERTY = "11100000MB03271699001"
USE_CAUSE = "办理「高效办成一件事」"


@pytest.fixture
async def partners() -> AsyncIterator[RunningFederation]:
    """Shanghai and the three 跨省通办 partners, each answering Huzhou's queries."""
    federation = Federation.standard(seed=25, codes=["310000", "652929", "220600", "520500"])
    async with serve_federation(federation) as served:
        for region in federation:
            region.query_url = region.base_url + QUERY_PATH
        yield served


Start = Callable[..., Awaitable[Client]]


@pytest.fixture
def start(aiohttp_client: Callable[..., Awaitable[Client]], tmp_path: Path,
          partners: RunningFederation) -> Start:
    """Start a gateway on the partners' trust list; the partners accept its request key."""

    async def go(*, audit: MemoryAudit | None = None, **settings: Any) -> Client:
        config = load_settings({}, None, {"data_dir": tmp_path, **settings})
        tl = TrustList.from_json(trust_document(partners.federation))
        client = await aiohttp_client(create_app(config, audit=audit, trust_list=tl))
        jwks = await (await client.get("/.well-known/jwks.json")).json()
        for region in partners.federation:
            region.accept_huzhou_keys(jwks)
        return client

    return go


@pytest.fixture
async def key(tmp_path: Path) -> str:
    """A local system's API key."""
    return await asyncio.to_thread(add_identity, tmp_path, IdentityKind.CLIENT, "window-01")


def _person(region: MockRegion, seed: int) -> str:
    return make_resident_id(region.id_prefixes, random.Random(seed))


def _company(division: str, seed: int) -> str:
    return make_uscc("91", division, f"{random.Random(seed).randrange(10**8):08d}")


def _issue(region: MockRegion, type_code: str, holder: str, *, state: str = "valid"
           ) -> IssuedLicence:
    code_type = "001" if type_code == BUSINESS_LICENCE else "111"
    return region.issue(type_code=type_code, state=state,  # type: ignore[arg-type]
                        lic_override={"holder_code": holder, "holder_code_type": code_type})


async def _case(client: Client, key: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post("/v1/cases", json={"use_cause": USE_CAUSE, **body},
                             headers={"Authorization": f"Bearer {key}"})
    assert 200 == resp.status, await resp.text()
    answer: dict[str, Any] = await resp.json()
    return answer


def _by_id(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in answer["requirements"]}


class TestCases:
    async def test_bundle_met_with_every_licence_presented(
            self, start: Start, key: str, partners: RunningFederation) -> None:
        """开办餐饮店 with its three requirements presented is met, each by its licence,
        and no partner is asked."""
        client = await start()
        sh = partners.federation["310000"]
        rep, owner, manager = _person(sh, 1), _person(sh, 2), _person(sh, 3)
        licences = [_issue(sh, ID_CARD, rep), _issue(sh, PROPERTY, owner),
                    _issue(sh, ID_CARD, manager)]
        answer = await _case(client, key, {
            "bundle": "open-restaurant",
            "applicant": {"legal_representative": rep, "premises_owner": owner,
                          "food_safety_manager": manager},
            "licences": [lic.token for lic in licences]})
        assert answer["met"] is True
        reqs = _by_id(answer)
        assert {"legal-representative-id", "premises", "food-safety-manager-id"} == set(reqs)
        assert 0 == reqs["legal-representative-id"]["met_by"]["presented_index"]
        assert 1 == reqs["premises"]["met_by"]["presented_index"]
        assert 2 == reqs["food-safety-manager-id"]["met_by"]["presented_index"]
        # The premises requirement serves all three matters of the bundle.
        assert ["许可-00906-001", "许可-00910-001", "许可-00912-001"] == reqs["premises"]["matters"]
        assert ["TOTAL_PASSED"] * 3 == [p["indication"] for p in answer["presented"]]
        assert all(r["partners_asked"] == [] for r in answer["requirements"])
        assert 0 == sum(r.queries_seen for r in partners.federation)

    async def test_missing_licence_is_fetched_from_the_issuing_partner(
            self, start: Start, key: str, partners: RunningFederation) -> None:
        """A 营业执照 not presented is asked of the partner its USCC names (毕节, SM2) and
        meets the requirement; the answer says who supplied it and translates the matter."""
        client = await start()
        bijie = partners.federation["520500"]
        company, rep = _company("520502", 7), _person(bijie, 8)
        held = _issue(bijie, BUSINESS_LICENCE, company)
        answer = await _case(client, key, {
            "bundle": "enterprise-change",
            "applicant": {"enterprise": company, "legal_representative": rep},
            "licences": [_issue(bijie, ID_CARD, rep).token]})
        assert answer["met"] is True
        reqs = _by_id(answer)
        supplied = reqs["business-licence"]["met_by"]
        assert ("partner", "520500", held.identifier) == (
            supplied["source"], supplied["partner"], supplied["identifier"])
        assert [0] == [a["cn_status"] for a in reqs["business-licence"]["partners_asked"]]
        assert "presented" == reqs["legal-representative-id"]["met_by"]["source"]
        assert SM2_ALG == held.header["alg"]
        assert all("520500" in m["translations"] for m in answer["matters"])

    async def test_a_query_two_requirements_share_is_sent_once(
            self, start: Start, key: str, partners: RunningFederation) -> None:
        """When the legal representative is also the food safety manager, their 居民身份证
        is asked of the partner once and meets both requirements."""
        client = await start()
        sh = partners.federation["310000"]
        rep, owner = _person(sh, 30), _person(sh, 31)
        card = _issue(sh, ID_CARD, rep)
        _issue(sh, PROPERTY, owner)
        answer = await _case(client, key, {
            "bundle": "open-restaurant", "partners": ["310000"],
            "applicant": {"legal_representative": rep, "premises_owner": owner,
                          "food_safety_manager": rep}})
        assert answer["met"] is True
        reqs = _by_id(answer)
        assert card.identifier == reqs["legal-representative-id"]["met_by"]["identifier"]
        assert card.identifier == reqs["food-safety-manager-id"]["met_by"]["identifier"]
        # One query for the shared 居民身份证, one for each kind of premises proof.
        assert 3 == sh.queries_seen

    async def test_matters_are_translated_into_the_partner_catalogue(
            self, start: Start, key: str, partners: RunningFederation) -> None:
        """The case's matter is given in the catalogue of the partner that supplied the
        licence, through the matter registry (失业登记 -> 毕节 GG0090200Y)."""
        client = await start()
        bijie = partners.federation["520500"]
        person = _person(bijie, 40)
        _issue(bijie, ID_CARD, person)
        answer = await _case(client, key, {
            "matter": {"region": "330500", "code": "公共服务-00902-001"},
            "applicant": {"person": person}, "partners": ["520500"]})
        assert answer["met"] is True
        [matter] = answer["matters"]
        assert ("公共服务-00902-001", "失业登记") == (matter["code"], matter["name"])
        assert [("GG0090200Y", "equivalent")] == [
            (m["code"], m["relationship"]) for m in matter["translations"]["520500"]]

    async def test_partner_down_is_not_met_quickly(
            self, start: Start, key: str, partners: RunningFederation) -> None:
        """A partner that does not answer within the deadline makes the requirement
        "partner-unavailable", in well under a second more than the deadline."""
        client = await start(partner_query_timeout_s=0.3)
        bijie = partners.federation["520500"]
        bijie.query_delay_s = 1.5
        company, rep = _company("520502", 9), _person(bijie, 10)
        _issue(bijie, BUSINESS_LICENCE, company)
        began = time.perf_counter()
        answer = await _case(client, key, {
            "bundle": "enterprise-change",
            "applicant": {"enterprise": company, "legal_representative": rep},
            "licences": [_issue(bijie, ID_CARD, rep).token]})
        assert time.perf_counter() - began < 1.2
        assert answer["met"] is False
        req = _by_id(answer)["business-licence"]
        assert (False, "partner-unavailable") == (req["met"], req["reason"])
        assert "no answer within 0.3 s" == req["partners_asked"][0]["error"]

    async def test_partner_refusing_is_unavailable(
            self, start: Start, key: str, partners: RunningFederation) -> None:
        """A partner answering 503 is unavailable too, never a 500."""
        client = await start()
        kalpin = partners.federation["652929"]
        kalpin.query_available = False
        person = _person(kalpin, 11)
        _issue(kalpin, ID_CARD, person)
        answer = await _case(client, key, {"bundle": "kstb-652929-unemployment",
                                           "applicant": {"person": person}})
        req = _by_id(answer)["person-id"]
        assert (False, "partner-unavailable", "HTTP 503") == (
            answer["met"], req["reason"], req["partners_asked"][0]["error"])

    async def test_licence_of_another_holder_is_not_met(
            self, start: Start, key: str, partners: RunningFederation) -> None:
        """A valid 居民身份证 of someone else does not meet the applicant's requirement."""
        client = await start()
        sh = partners.federation["310000"]
        applicant, other = _person(sh, 12), _person(sh, 13)
        answer = await _case(client, key, {
            "matter": {"region": "330500", "code": "公共服务-00902-001"},
            "applicant": {"person": applicant}, "partners": [],
            "licences": [_issue(sh, ID_CARD, other).token]})
        req = _by_id(answer)["person-id"]
        assert (False, False, "holder-mismatch") == (answer["met"], req["met"], req["reason"])
        assert [("TOTAL_PASSED", False)] == [(e["indication"], e["holder_match"])
                                             for e in req["evidence"]]

    async def test_revoked_licence_is_not_met(
            self, start: Start, key: str, partners: RunningFederation) -> None:
        """The applicant's own licence, revoked by its issuer, does not meet it."""
        client = await start()
        sh = partners.federation["310000"]
        applicant = _person(sh, 14)
        lic = _issue(sh, ID_CARD, applicant, state="revoked")
        answer = await _case(client, key, {
            "matter": {"region": "330500", "code": "公共服务-00902-001"},
            "applicant": {"person": applicant}, "partners": [], "licences": [lic.token]})
        req = _by_id(answer)["person-id"]
        assert (False, "licence-not-valid") == (answer["met"], req["reason"])
        assert [("TOTAL_FAILED", "REVOKED", True)] == [
            (e["indication"], e["sub_indication"], e["holder_match"]) for e in req["evidence"]]

    @pytest.mark.parametrize("case", [
        ("kstb-652929-unemployment", "652929", {"person": (ID_CARD,)}),
        ("kstb-220600-mortgage", "220600", {"person": (PROPERTY, ID_CARD)}),
        ("kstb-520500-enterprise-change", "520500",
         {"enterprise": (BUSINESS_LICENCE,), "legal_representative": (ID_CARD,)}),
    ], ids=["kalpin", "baishan-sm2", "bijie-sm2"])
    async def test_cross_province_case_fetches_from_its_partner(
            self, start: Start, key: str, partners: RunningFederation,
            case: tuple[str, str, dict[str, tuple[str, ...]]]) -> None:
        """Each 跨省通办 case, nothing presented, is met by licences its partner hands over
        (柯坪 ES256; 白山 and 毕节 SM2), verified like presented ones."""
        bundle, region, holders = case
        client = await start()
        partner = partners.federation[region]
        applicant: dict[str, str] = {}
        for n, (role, types) in enumerate(holders.items()):
            code = (_company(partner.id_prefixes[0], n) if role == "enterprise"
                    else _person(partner, 100 + n))
            applicant[role] = code
            for type_code in types:
                _issue(partner, type_code, code)
        answer = await _case(client, key, {"bundle": bundle, "applicant": applicant})
        assert answer["met"] is True, answer["requirements"]
        for req in answer["requirements"]:
            assert ("partner", region) == (req["met_by"]["source"], req["met_by"]["partner"])
            assert "TOTAL_PASSED" == req["evidence"][0]["indication"]
        assert (SM2_ALG if region != "652929" else "ES256") == partner.licence_alg

    @pytest.mark.parametrize(("body", "status"), [
        ({"bundle": "open-restaurant", "applicant": {"person": "x"}}, 400),  # no use_cause
        ({"use_cause": "x", "applicant": {"person": "1" * 18}}, 400),  # neither form
        ({"use_cause": "x", "bundle": "open-restaurant",
          "matter": {"code": "许可-00906-001"}, "applicant": {"person": "1" * 18}}, 400),
        ({"use_cause": "x", "bundle": "open-restaurant", "applicant": []}, 400),
        ({"use_cause": "x", "bundle": "open-restaurant", "applicant": {"person": "1" * 18},
          "licences": "eyJ"}, 400),
        ({"use_cause": "x", "bundle": "no-such-bundle", "applicant": {"person": "1" * 18}}, 422),
        ({"use_cause": "x", "bundle": "open-restaurant", "applicant": {"mayor": "1" * 18}}, 422),
        ({"use_cause": "x", "bundle": "open-restaurant", "applicant": {"person": "short"}}, 400),
        ({"use_cause": "x", "matter": {"code": "许可-99999-001"},
          "applicant": {"person": "1" * 18}}, 422),
    ])
    async def test_malformed_requests_are_problems(
            self, start: Start, key: str, body: dict[str, Any], status: int) -> None:
        """A request that is not a case request is a 4xx problem body, never a 500."""
        client = await start()
        resp = await client.post("/v1/cases", json=body,
                                 headers={"Authorization": f"Bearer {key}"})
        assert status == resp.status
        assert "application/problem+json" == resp.content_type

    async def test_needs_a_local_system_key(self, start: Start) -> None:
        """Without a local system's key the answer is 401."""
        client = await start()
        resp = await client.post("/v1/cases", json={})
        assert 401 == resp.status


class TestCaseAudit:
    async def test_case_record_links_its_verifications_without_raw_identity(
            self, start: Start, key: str, partners: RunningFederation, tmp_path: Path) -> None:
        """One ``case`` record and the verifications it caused share its case id (presented
        and fetched alike), and no identity number reaches the audit database."""
        client = await start()  # the real audit log, in the data folder
        bijie = partners.federation["520500"]
        company, rep = _company("520502", 21), _person(bijie, 22)
        _issue(bijie, BUSINESS_LICENCE, company)
        answer = await _case(client, key, {
            "bundle": "enterprise-change",
            "applicant": {"enterprise": company, "legal_representative": rep},
            "licences": [_issue(bijie, ID_CARD, rep).token]})
        assert answer["met"] is True
        auditor = await asyncio.to_thread(add_identity, tmp_path, IdentityKind.OPERATOR,
                                          "alice", Role.AUDITOR)
        resp = await client.get("/v1/audit/records?limit=1000",
                                headers={"Authorization": f"Bearer {auditor}"})
        records = [r["record"] for r in (await resp.json())["records"]]
        linked = [r for r in records if r["details"].get("case_id") == answer["case_id"]]
        assert ["verification", "verification", "case"] == [r["event_type"] for r in linked]
        case = linked[-1]
        assert ("met", "enterprise-change") == (case["outcome"], case["details"]["bundle"])
        assert {"applicant_enterprise", "applicant_legal_representative"} == set(
            case["personal"])
        assert case["personal"]["applicant_enterprise"]["hmac"].startswith("hmac:v1:")
        assert [("520500", 0, None)] == [
            (a["region"], a["cn_status"], a["error"])
            for r in case["details"]["requirements"] for a in r["partners_asked"]]
        # The same keyed pseudonym as the verification record of the person's licence.
        card = next(r for r in linked if r["licence_type"] == ID_CARD)
        assert card["personal"]["holder_code"]["hmac"] == (
            case["personal"]["applicant_legal_representative"]["hmac"])
        blob = b"".join(p.read_bytes() for p in tmp_path.iterdir()  # noqa: ASYNC240
                        if p.name.startswith("audit.db"))
        assert blob
        for raw in (company, rep):
            assert raw.encode() not in blob
