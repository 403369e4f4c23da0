"""The lean verifier answers exactly as a straightforward one does.

``trust.Verifier`` computes what depends only on the trust list once, and
remembers headers and status URIs it has judged. ``ReferenceVerifier``
(tests/trust/reference_verifier.py) is the verifier before that work: every
check computed afresh for every licence. On a few thousand generated licences,
valid ones and every kind of failure the verifier's own tests know, under
several trust lists, both give equal verdicts: indication, sub-indication, the
same checks with the same details, the licence read, the anchor, the validity
limit and the status list used.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from mocks import DELETE, Federation, MockRegion
from tests.tokens import resign_raw
from tests.trust.conftest import NOW, T, anchor, partner
from tests.trust.reference_verifier import ReferenceVerifier
from trust import (
    Partner,
    StatusList,
    StatusUnavailable,
    TrustList,
    Verdict,
    Verifier,
    iso7064_check_char,
    parse_status_list,
)

Build = Callable[..., TrustList]
Case = tuple[str, int]
"""A credential and the offset of its verification time from ``NOW``, in seconds."""

ROUNDS_PER_KIND = 45
OTHER_LISTS_SLICE = 150


def _kinds(sh: MockRegion, bj: MockRegion) -> dict[str, Callable[[random.Random], Case]]:
    """Each kind of licence the verifier's tests make, as a maker of one instance."""

    def issued(**kwargs: Any) -> Callable[[random.Random], Case]:
        def make(rng: random.Random) -> Case:
            return sh.issue(iat=T - rng.randrange(60, 86400 * 30), **kwargs).token, 0
        return make

    def valid(rng: random.Random) -> Case:
        region = sh if rng.random() < 0.8 else bj
        return region.issue(iat=T - rng.randrange(60, 86400 * 300)).token, 0

    def edge(rng: random.Random) -> Case:
        # exp one second either side of the verification time
        return sh.issue(iat=T - 3600, exp=T + rng.choice((-1, 0, 1))).token, rng.choice((0, 1))

    def nbf(rng: random.Random) -> Case:
        return sh.issue(iat=T - 60, nbf=T + rng.choice((-1, 0, 1, 400))).token, 0

    def future(rng: random.Random) -> Case:
        return sh.issue(iat=T + rng.choice((1, 299, 301, 900))).token, 0

    def tampered(rng: random.Random) -> Case:
        one = sh.issue(iat=T - 60).token.split(".")
        two = sh.issue(iat=T - 120).token.split(".")
        return f"{one[0]}.{two[1]}.{one[2]}", 0

    def payload_not_base64(rng: random.Random) -> Case:
        head, body, sig = sh.issue(iat=T - 60).token.split(".")
        broken = rng.choice((f"{head}.{body}!.{sig}", f"{head}.{body}.{sig}=",
                             f"{head}.{body[:-1]}.{sig}", f"{head}..{sig}", f"{head}.{body}"))
        return broken, 0

    def repeated_member(rng: random.Random) -> Case:
        token = sh.issue(iat=T - 60).token
        return resign_raw(sh, token, "payload", b'"iss":', b'"iss":"320500","iss":'), 0

    def not_json(rng: random.Random) -> Case:
        return sh.sign(b'{"alg":"ES256","typ":"ecert+jwt","kid":"310000-lic-2026a"}',
                       rng.choice((b"[1,2]", b"{", b'"text"'))), 0

    def structure(rng: random.Random) -> Case:
        return rng.choice(("", "a.b", "a.b.c.d", "e30.e30.", "ｅ.b.c", "!!.e30.AA")), 0

    def header(rng: random.Random) -> Case:
        override: dict[str, Any] = rng.choice(({"alg": "none"}, {"alg": "HS256"}, {"typ": "JWT"},
                               {"kid": "310000-nope"}, {"kid": sh.status_kid},
                               {"jku": "https://x.invalid/"}, {"crit": ["exp"]},
                               {"b64": False}, {"kid": DELETE}, {"alg": DELETE},
                               {"typ": "application/ECERT+JWT"}))
        return sh.issue(iat=T - 60, header_override=override).token, 0

    def claims(rng: random.Random) -> Case:
        override = rng.choice(({"iss": "520500"}, {"iss": "31000"}, {"jti": DELETE},
                               {"iat": "yesterday"}, {"iat": True}, {"lic": DELETE},
                               {"status": {"status_list": {"idx": -1, "uri": "x"}}},
                               {"status": {"status_list": {"idx": 3,
                                           "uri": "https://elsewhere.invalid/s"}}},
                               {"status": {"status_list": {"idx": 3,
                                           "uri": f"{sh.status_uri}/../../admin"}}}))
        return sh.issue(iat=T - 60, claims_override=override).token, 0

    def lic(rng: random.Random) -> Case:
        override: dict[str, Any] = rng.choice(({"type_code": "short"}, {"holder_name": ""},
                                                {"valid_from": "2026-13-01"},
                                                {"issuer_code": "91330500MA2B3C4D5E"},
                                                {"matters": "310000-XK-0001"}, {"fields": []},
                                                {"valid_until": "2020-01-01"}))
        return sh.issue(iat=T - 60, lic_override=override).token, 0

    def identifier(rng: random.Random) -> Case:
        check = rng.choice(("wrong", "lenient", "strict"))
        return sh.issue(iat=T - 60, check_char=check).token, 0  # type: ignore[arg-type]

    def malformed_identifier(rng: random.Random) -> Case:
        jti = rng.choice(("1.2.156.3005.2.x", "urn:uuid:1", "1.2.156.3005.2." + "A" * 60))
        return sh.issue(iat=T - 60, claims_override={"jti": jti}).token, 0

    def x5c(rng: random.Random) -> Case:
        return sh.issue(iat=T - rng.randrange(60, 86400), use_x5c=True).token, 0

    return {
        "valid": valid,
        "no status claim": issued(with_status=False),
        "long term": issued(valid_until=None),
        "revoked entry": issued(state="revoked"),
        "suspended entry": issued(state="suspended"),
        "valid from tomorrow": issued(valid_from=(NOW + timedelta(days=2)).date()),
        "matters": issued(matters=["310000-XK-0001", "310000-XK-0002"]),
        "exp edge": edge,
        "nbf": nbf,
        "iat in the future": future,
        "tampered": tampered,
        "payload not base64url": payload_not_base64,
        "repeated member": repeated_member,
        "payload not an object": not_json,
        "structure": structure,
        "header": header,
        "claims": claims,
        "lic": lic,
        "identifier check": identifier,
        "malformed identifier": malformed_identifier,
        "x5c": x5c,
    }


def _trust_lists(federation: Federation) -> dict[str, TrustList]:
    """The federation's list, and lists that make otherwise valid licences fail."""

    def build(mutate: Callable[[dict[str, Any]], None] | None = None, *,
              next_update: timedelta = timedelta(days=6)) -> TrustList:
        doc = federation.trust_list(version=12, issued_at=NOW - timedelta(days=1),
                                    next_update=NOW + next_update)
        if mutate is not None:
            mutate(doc)
        return TrustList.from_json(doc)

    def lenient(doc: dict[str, Any]) -> None:
        partner(doc, "310000")["identifier_check"] = "lenient"

    def suspended_partner(doc: dict[str, Any]) -> None:
        partner(doc, "310000")["status"] = "suspended"

    def narrow(doc: dict[str, Any]) -> None:
        partner(doc, "310000")["recognised_licence_types"] = ["11100000MB0143028R001"]
        partner(doc, "310000")["recognised_matters"] = ["310000-XK-0001"]

    def revoked(doc: dict[str, Any]) -> None:
        entry = anchor(doc, "310000-lic-2026a")
        entry["status"] = "revoked"
        entry["revocation_reason"] = "superseded"
        entry["revoked_at"] = (NOW - timedelta(days=3)).isoformat()

    def suspended_anchor(doc: dict[str, Any]) -> None:
        anchor(doc, "310000-lic-2026a")["status"] = "suspended"

    def window(doc: dict[str, Any]) -> None:
        anchor(doc, "310000-lic-2026a")["valid_until"] = (NOW - timedelta(days=2)).isoformat()

    def prefixes(doc: dict[str, Any]) -> None:
        partner(doc, "310000")["endpoints"]["status_uri_prefixes"] = ["https://other.invalid/"]

    return {
        "as published": build(),
        "lenient": build(lenient),
        "partner suspended": build(suspended_partner),
        "narrow agreement": build(narrow),
        "anchor revoked": build(revoked),
        "anchor suspended": build(suspended_anchor),
        "anchor window ended": build(window),
        "status prefixes": build(prefixes),
        "stale": build(next_update=timedelta(seconds=-1)),
    }


@pytest.fixture(scope="module")
def cases(federation: Federation) -> list[tuple[str, str, int]]:
    """About a thousand licences, each with its kind, in a seeded order."""
    sh, bj = federation["310000"], federation["520500"]
    rng = random.Random(22)
    made = [(name, *make(rng)) for name, make in _kinds(sh, bj).items()
            for _ in range(ROUNDS_PER_KIND)]
    rng.shuffle(made)
    return made


def _statuses(federation: Federation, tl: TrustList) -> dict[str, StatusList | StatusUnavailable]:
    found: dict[str, StatusList | StatusUnavailable] = {}
    for code in ("310000", "520500"):
        region = federation[code]
        found[region.status_uri] = parse_status_list(
            region.status_list_token(iat=T - 60), trust_list=tl, region=code,
            uri=region.status_uri)
    return found


def _same(reference: Verdict, lean: Verdict) -> None:
    assert reference.checks == lean.checks
    assert reference == lean


class TestLeanMatchesReference:
    """Equal verdicts, check for check, from the lean and the reference verifier."""

    def test_generated_licences_under_each_trust_list(
            self, federation: Federation, cases: list[tuple[str, str, int]]) -> None:
        """Every generated licence, verified under each list, gets the same verdict from
        both, also when the lean verifier answers from its memos."""
        kinds: set[str] = set()
        outcomes: set[str | None] = set()
        compared = 0
        unavailable = StatusUnavailable("status endpoint timed out")
        for name, tl in _trust_lists(federation).items():
            statuses = _statuses(federation, tl)
            for skew in (0, 300) if name == "as published" else (0,):
                lean = Verifier(tl, clock_skew_s=skew)
                reference = ReferenceVerifier(tl, clock_skew_s=skew)
                # All, twice, under the published list (the second time the lean verifier
                # answers from its memos); a slice under each list that fails some.
                chosen = cases * 2 if name == "as published" else cases[:OTHER_LISTS_SLICE]
                for index, (kind, token, offset) in enumerate(chosen):
                    at = NOW + timedelta(seconds=offset)
                    supplied = statuses if index % 7 else dict.fromkeys(statuses, unavailable)
                    codes = frozenset({"310000-XK-0002"}) if index % 5 == 0 else None
                    expected = reference.check(token, at=at, status=supplied, matter_codes=codes)
                    actual = lean.check(token, at=at, status=supplied, matter_codes=codes)
                    _same(expected, actual)
                    kinds.add(kind)
                    outcomes.add(None if expected.sub_indication is None
                                 else expected.sub_indication.value)
                    compared += 1
        assert compared >= 2000
        # The generated licences reach every outcome the verifier has.
        assert {None, "FORMAT_FAILURE", "CRYPTO_CONSTRAINTS_FAILURE", "UNKNOWN_ISSUER",
                "SIGNING_KEY_NOT_VALID", "REVOKED", "SIG_CRYPTO_FAILURE",
                "JURISDICTION_MISMATCH", "IDENTIFIER_CHECK_FAILURE",
                "ISSUER_NOT_RECOGNISED_FOR_TYPE", "NOT_YET_VALID", "EXPIRED", "SUSPENDED",
                "TRY_LATER"} <= outcomes

    def test_start_and_finish_match_with_a_status_list_fetched_later(
            self, federation: Federation, cases: list[tuple[str, str, int]]) -> None:
        """``start`` then ``finish`` (as the gateway calls them) agree with the reference,
        the status needed included."""
        tl = _trust_lists(federation)["as published"]
        statuses = _statuses(federation, tl)
        lean, reference = Verifier(tl), ReferenceVerifier(tl)
        for _, token, offset in cases:
            at = NOW + timedelta(seconds=offset)
            expected, actual = reference.start(token, at=at), lean.start(token, at=at)
            if isinstance(expected, Verdict):
                assert isinstance(actual, Verdict)
                _same(expected, actual)
                continue
            assert not isinstance(actual, Verdict)
            assert expected.status_needed == actual.status_needed
            assert expected.partner is actual.partner
            status = None if expected.status_needed is None else statuses[
                expected.status_needed.uri]
            _same(expected.finish(status, consulted_at=at + timedelta(seconds=5)),
                  actual.finish(status, consulted_at=at + timedelta(seconds=5)))


class TestMatterCodesOnceThePartnerIsKnown:
    """``start(matter_codes_for=...)`` answers as the two-step call it replaces."""

    def test_generated_licences_with_and_without_agreed_matters(
            self, federation: Federation, cases: list[tuple[str, str, int]]) -> None:
        """Every generated licence, under agreements naming matters (covering the requested
        one or not) and covering every matter: one ``start`` given ``matter_codes_for``
        gives the verdict of ``start`` without codes followed, when the partner's agreement
        names matters, by ``start`` with that partner's codes (the gateway before)."""
        translations = {"310000": frozenset({"310000-XK-0002", "310000-XK-0009"}),
                        "520500": frozenset({"520500-XK-0002"})}

        def matters(covered: list[str], other: list[str]) -> Callable[[dict[str, Any]], None]:
            def mutate(doc: dict[str, Any]) -> None:
                partner(doc, "310000")["recognised_matters"] = covered
                partner(doc, "520500")["recognised_matters"] = other
            return mutate

        lists = {
            "both cover it": matters(["310000-XK-0009"], ["520500-XK-0002"]),
            "neither covers it": matters(["310000-XK-0001"], ["520500-XK-0001"]),
            "one names every matter": matters(["*"], ["520500-XK-0001"]),
        }
        asked: list[str] = []
        answers: set[str | None] = set()

        def codes_for(found: Partner) -> frozenset[str]:
            asked.append(found.region_code)
            return translations[found.region_code]

        for mutate in lists.values():
            doc = federation.trust_list(version=12, issued_at=NOW - timedelta(days=1),
                                        next_update=NOW + timedelta(days=6))
            mutate(doc)
            tl = TrustList.from_json(doc)
            statuses = _statuses(federation, tl)
            one, two = Verifier(tl), Verifier(tl)
            for _, token, offset in cases:
                at = NOW + timedelta(seconds=offset)
                expected = two.start(token, at=at)
                if not isinstance(expected, Verdict) and expected.partner is not None \
                        and expected.partner.matters is not None:
                    expected = two.start(token, at=at,
                                         matter_codes=translations[expected.partner.region_code])
                asked.clear()
                actual = one.start(token, at=at, matter_codes_for=codes_for)
                if isinstance(expected, Verdict):
                    assert isinstance(actual, Verdict)
                    _same(expected, actual)
                    continue
                assert not isinstance(actual, Verdict)
                assert asked == ([] if actual.partner is None or actual.partner.matters is None
                                 else [actual.partner.region_code])
                status = None if expected.status_needed is None else statuses[
                    expected.status_needed.uri]
                verdict = expected.finish(status)
                _same(verdict, actual.finish(status))
                answers.add(None if verdict.sub_indication is None
                            else verdict.sub_indication.value)
        assert {None, "ISSUER_NOT_RECOGNISED_FOR_TYPE"} <= answers


class TestIdentifierTable:
    """The table-driven MOD 37,36 equals python-stdnum's on random bodies."""

    def test_random_bodies(self) -> None:
        """Ten thousand random bodies of 0-9A-Z get stdnum's check character."""
        from stdnum.iso7064 import mod_37_36

        rng = random.Random(7064)
        alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        for _ in range(10_000):
            body = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 110)))
            assert mod_37_36.calc_check_digit(body) == iso7064_check_char(body)
