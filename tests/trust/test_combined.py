"""Combined certificates (多证合一): the claims, and a verdict for each component."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from mocks import DELETE, SHIP_COMPONENT_TYPES, MockRegion
from tests.trust.conftest import NOW, T, partner
from tests.trust.test_verifier import resign, status_of, verify
from trust import (
    MAX_COMPONENTS,
    CheckResult,
    Component,
    Indication,
    StatusUnavailable,
    SubIndication,
    TrustList,
    Verifier,
)

Build = Callable[..., TrustList]
NATIONALITY, INSPECTION, OPERATION, MANNING = SHIP_COMPONENT_TYPES


def _subs(verdict: Any) -> list[SubIndication | None]:
    return [c.sub_indication for c in verdict.components]


class TestClaims:
    """``lic.components`` is part of the claims: any fault is the document's FORMAT_FAILURE."""

    @pytest.mark.parametrize(("bend", "message"), [
        (lambda c: c["lic"].update(components=[]), "non-empty list"),
        (lambda c: c["lic"]["components"].append(c["lic"]["components"][0]),
         "repeat an identifier"),
        (lambda c: c["lic"]["components"][1].update(type_code=NATIONALITY),
         "repeat a type_code"),
        (lambda c: c["lic"]["components"][2].pop("status"), "components[2].status"),
        (lambda c: c["lic"]["components"][0].update(valid_until="2099-12-31"),
         "beyond the document"),
        (lambda c: c["lic"]["components"][3].update(valid_until=None),
         "beyond the document"),
        (lambda c: c["lic"]["components"][1].update(valid_from="2030-01-01",
                                                     valid_until="2029-01-01"),
         "before valid_from"),
        (lambda c: c["lic"]["components"][0].update(type_code="SHIP"), "21 characters"),
        (lambda c: c["lic"]["components"].__setitem__(0, "x"), "must be an object"),
    ])
    def test_malformed_components(self, sh: MockRegion, trust_list: Build,
                                  bend: Callable[[dict[str, Any]], None], message: str) -> None:
        """Each malformed shape is FORMAT_FAILURE of the document, no component judged."""
        token = resign(sh, sh.issue_combined(iat=T - 60).token, claims=bend)
        verdict = verify(trust_list(), token, sh)
        assert SubIndication.FORMAT_FAILURE == verdict.sub_indication
        claims = verdict.check("claims")
        assert claims is not None
        assert message in claims.detail
        assert () == verdict.components

    def test_component_limit_boundary(self, sh: MockRegion, trust_list: Build) -> None:
        """16 components pass; 17 are FORMAT_FAILURE."""
        types = [f"11100000000019713D{901 + n:03d}" for n in range(MAX_COMPONENTS + 1)]
        tl = trust_list()
        at_limit = verify(tl, sh.issue_combined(types=types[:-1], iat=T - 60).token, sh)
        assert (Indication.TOTAL_PASSED, 16) == (at_limit.overall[0], len(at_limit.components))
        over = verify(tl, sh.issue_combined(types=types, iat=T - 60).token, sh)
        assert SubIndication.FORMAT_FAILURE == over.sub_indication

    def test_issuer_defaults_to_the_documents(self, sh: MockRegion, trust_list: Build) -> None:
        """A component without issuer_name/issuer_code is the document's issuer's."""
        issued = sh.issue_combined(iat=T - 60, component_override={
            NATIONALITY: {"issuer_name": DELETE, "issuer_code": DELETE}})
        verdict = verify(trust_list(), issued.token, sh)
        first = verdict.components[0].licence
        assert isinstance(first, Component)
        assert issued.claims["lic"]["issuer_code"] == first.issuer_code
        # The identifier names another issuer than the document: the component fails alone.
        assert [SubIndication.IDENTIFIER_CHECK_FAILURE, None, None, None] == _subs(verdict)


class TestComponents:
    """Each component is judged on its own once the document passed."""

    def test_every_check_listed(self, sh: MockRegion, trust_list: Build) -> None:
        """A passing component lists document, identifier, issuer code, agreement,
        validity and status, all PASSED, and carries its status list."""
        verdict = verify(trust_list(), sh.issue_combined(iat=T - 60).token, sh)
        assert (Indication.TOTAL_PASSED, None) == verdict.overall
        for component in verdict.components:
            assert ["document", "identifier", "issuer_code", "agreement", "validity",
                    "status"] == [c.name for c in component.checks]
            assert all(c.result is CheckResult.PASSED for c in component.checks)
            assert component.status_used is not None

    def test_suspended_component_makes_the_whole_indeterminate(
            self, sh: MockRegion, trust_list: Build) -> None:
        """A suspended component is INDETERMINATE / SUSPENDED; so is the whole, while the
        document itself passed."""
        verdict = verify(trust_list(), sh.issue_combined(
            iat=T - 60, states={MANNING: "suspended"}).token, sh)
        assert verdict.passed
        assert (Indication.INDETERMINATE, SubIndication.SUSPENDED) == verdict.overall
        assert [None, None, None, SubIndication.SUSPENDED] == _subs(verdict)

    def test_failed_before_indeterminate_in_the_whole(self, sh: MockRegion,
                                                      trust_list: Build) -> None:
        """The whole reports a TOTAL_FAILED component before an earlier INDETERMINATE one."""
        verdict = verify(trust_list(), sh.issue_combined(
            iat=T - 60, states={NATIONALITY: "suspended", MANNING: "revoked"}).token, sh)
        assert (Indication.TOTAL_FAILED, SubIndication.REVOKED) == verdict.overall

    def test_component_type_outside_the_agreement(self, sh: MockRegion,
                                                  trust_list: Build) -> None:
        """An agreement that covers the combined type but not the operation certificate
        fails that component alone (ISSUER_NOT_RECOGNISED_FOR_TYPE)."""
        issued = sh.issue_combined(iat=T - 60)
        combined = issued.claims["lic"]["type_code"]

        def narrow(doc: dict[str, Any]) -> None:
            partner(doc, "310000")["recognised_licence_types"] = [
                combined, NATIONALITY, INSPECTION, MANNING]

        verdict = verify(trust_list(narrow), issued.token, sh)
        assert [None, None, SubIndication.ISSUER_NOT_RECOGNISED_FOR_TYPE, None] == \
            _subs(verdict)

    def test_validity_boundaries(self, sh: MockRegion, trust_list: Build) -> None:
        """A component valid until yesterday (China time) is EXPIRED; one starting tomorrow
        is NOT_YET_VALID; neither consults its status."""
        tl = trust_list()
        issued = sh.issue_combined(iat=T - 86400, component_override={
            INSPECTION: {"valid_from": "2025-01-01", "valid_until": "2026-11-25"},
            OPERATION: {"valid_from": "2026-11-27"}})
        listed = status_of(sh, tl, iat=T - 20 * 3600)
        verdict = verify(tl, issued.token, sh, status=listed)
        assert [None, SubIndication.EXPIRED, SubIndication.NOT_YET_VALID, None] == \
            _subs(verdict)
        assert verdict.components[1].status_used is None
        # 2026-11-25 (China time) ends at 16:00 UTC on the 25th, 14 h before NOW.
        at_end = verify(tl, issued.token, sh, at_offset=-14 * 3600, status=listed)
        assert SubIndication.EXPIRED == _subs(at_end)[1]
        before_end = verify(tl, issued.token, sh, at_offset=-14 * 3600 - 1, status=listed)
        assert before_end.components[1].passed

    def test_unavailable_component_list_is_try_later(self, sh: MockRegion,
                                                     trust_list: Build) -> None:
        """A component list that cannot be had is TRY_LATER for the components only when
        the document's own status came from elsewhere."""
        tl = trust_list()
        issued = sh.issue_combined(iat=T - 60, with_status=False)
        verdict = Verifier(tl).check(issued.token, at=NOW,
                                     status={sh.status_uri: StatusUnavailable("down")})
        assert verdict.passed
        assert [SubIndication.TRY_LATER] * 4 == _subs(verdict)

    def test_component_status_uri_outside_prefixes(self, sh: MockRegion,
                                                   trust_list: Build) -> None:
        """A component pointing at a status list outside the partner's prefixes is
        TRY_LATER, not fetched."""
        issued = sh.issue_combined(iat=T - 60, component_override={OPERATION: {"status": {
            "status_list": {"idx": 1, "uri": "https://elsewhere.example/status/1"}}}})
        verdict = verify(trust_list(), issued.token, sh)
        assert SubIndication.TRY_LATER == _subs(verdict)[2]
        status = verdict.components[2].check("status")
        assert status is not None
        assert "not fetched" in status.detail

    def test_document_revoked_fails_every_component(self, sh: MockRegion,
                                                    trust_list: Build) -> None:
        """The document's own status entry revoked: every component REVOKED too, and no
        component list is consulted."""
        issued = sh.issue_combined(iat=T - 60)
        assert issued.status_idx is not None
        sh.revoke(issued.status_idx)
        verdict = verify(trust_list(), issued.token, sh)
        assert SubIndication.REVOKED == verdict.sub_indication
        assert [SubIndication.REVOKED] * 4 == _subs(verdict)
        assert all(c.status_used is None for c in verdict.components)

    def test_expired_document_fails_every_component(self, sh: MockRegion,
                                                    trust_list: Build) -> None:
        """A document past its exp fails every component, valid or not on its own."""
        issued = sh.issue_combined(iat=T - 60, exp=T - 1)
        verdict = verify(trust_list(), issued.token, sh)
        assert [SubIndication.EXPIRED] * 4 == _subs(verdict)
        assert all(c.check("document") is not None for c in verdict.components)

    def test_component_verdict_bounded_by_document(self, sh: MockRegion,
                                                   trust_list: Build) -> None:
        """A passing component's verdict holds no longer than the document's."""
        verdict = verify(trust_list(), sh.issue_combined(iat=T - 60).token, sh)
        assert verdict.valid_until is not None
        assert all(c.valid_until is not None and c.valid_until <= verdict.valid_until
                   for c in verdict.components)
        assert verdict.valid_until <= NOW + timedelta(days=6)
