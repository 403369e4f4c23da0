"""The verifier reaches every sub-indication of spec/verdicts.md, in the stated order."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from mocks import DELETE, MockRegion, b64url_encode
from tests.tokens import resign_raw
from tests.trust.conftest import NOW, T, anchor, partner
from trust import (
    MAX_X5C_CERTIFICATES,
    MAX_X5C_ROOTS,
    MAX_X5C_SIGNATURE_CHECKS,
    CheckResult,
    Indication,
    StatusList,
    StatusUnavailable,
    SubIndication,
    TrustList,
    Verdict,
    Verifier,
    parse_status_list,
)

Build = Callable[..., TrustList]


def status_of(region: MockRegion, tl: TrustList, **kwargs: Any) -> StatusList:
    """The region's current status list, verified."""
    token = region.status_list_token(iat=kwargs.pop("iat", T - 60), **kwargs)
    return parse_status_list(token, trust_list=tl, region=region.region_code,
                             uri=region.status_uri)


def verify(tl: TrustList, token: str, region: MockRegion | None = None, *,
           at_offset: int = 0, matter_codes: frozenset[str] | None = None,
           skew: int = 0, status: object = None) -> Verdict:
    """Verify with the region's fresh status list (unless ``status`` is given)."""
    supplied: dict[str, Any] = {}
    if region is not None:
        supplied[region.status_uri] = status if status is not None else status_of(region, tl)
    return Verifier(tl, clock_skew_s=skew).check(
        token, at=NOW + timedelta(seconds=at_offset), status=supplied,
        matter_codes=matter_codes)


def assert_sub(expected: SubIndication | None, verdict: Verdict) -> None:
    """The verdict reports ``expected`` (None: passed), with a consistent indication."""
    assert expected == verdict.sub_indication, [c.to_json() for c in verdict.checks]
    if expected is None:
        assert Indication.TOTAL_PASSED == verdict.indication
        assert 0 == verdict.cn_status
    else:
        assert expected.indication == verdict.indication
        assert expected.cn_status == verdict.cn_status


def resign(region: MockRegion, token: str, *, header: dict[str, Any] | None = None,
           claims: Callable[[dict[str, Any]], None] | None = None) -> str:
    """Decode a mock licence, change it, and sign it again with the same key."""
    head_b64, body_b64, _ = token.split(".")
    head = orjson.loads(_pad(head_b64))
    body = orjson.loads(_pad(body_b64))
    if claims is not None:
        claims(body)
    head.update(header or {})
    return region.sign(head, body, kid=head.get("kid"))


def _pad(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class TestPass:
    """Licences that every check accepts."""

    def test_es256_kid_licence_passes_with_every_check_listed(self, sh: MockRegion,
                                                              trust_list: Build) -> None:
        """A fresh ES256 licence passes, and each of the seven steps shows in the checks."""
        tl = trust_list()
        verdict = verify(tl, sh.issue(iat=T - 3600).token, sh)
        assert_sub(None, verdict)
        names = [c.name for c in verdict.checks]
        expected = ["structure", "header.alg", "header", "trust_list", "anchor", "signature",
                    "claims", "jurisdiction", "identifier", "issuer_code", "agreement",
                    "validity", "status"]
        assert expected == names
        assert all(c.result is CheckResult.PASSED for c in verdict.checks)
        assert 12 == verdict.trust_list_version
        assert verdict.status_used is not None

    @pytest.mark.parametrize("alg", ["ES384", "EdDSA", "PS256", "RS256"])
    def test_every_allowed_algorithm_passes(self, sh: MockRegion, trust_list: Build,
                                            alg: str) -> None:
        """Licences signed with each algorithm of the allow-list pass."""
        kid = sh.add_signing_key(alg, kid=f"310000-lic-{alg.lower()}")  # type: ignore[arg-type]
        tl = trust_list()
        assert_sub(None, verify(tl, sh.issue(iat=T - 60, kid=kid).token, sh))

    def test_x5c_chain_to_partner_root_passes(self, sh: MockRegion, trust_list: Build) -> None:
        """A licence whose x5c chains to the region's root-ca anchor passes."""
        tl = trust_list()
        verdict = verify(tl, sh.issue(iat=T - 60, use_x5c=True).token, sh)
        assert_sub(None, verdict)
        assert sh.root_kid == verdict.anchor_kid

    def test_licence_without_status_claim_is_judged_without_one(
            self, sh: MockRegion, trust_list: Build) -> None:
        """No status claim: the status check is skipped and the licence passes."""
        verdict = verify(trust_list(), sh.issue(iat=T - 60, with_status=False).token)
        assert_sub(None, verdict)
        status = verdict.check("status")
        assert status is not None
        assert CheckResult.SKIPPED == status.result

    def test_long_term_licence_without_end_passes(self, sh: MockRegion,
                                                  trust_list: Build) -> None:
        """A 长期 licence (no exp, no valid_until) passes and has no end."""
        verdict = verify(trust_list(), sh.issue(iat=T - 60, valid_until=None).token, sh)
        assert_sub(None, verdict)


class TestFormat:
    """FORMAT_FAILURE: the credential is not a well-formed ecert+jwt."""

    @pytest.mark.parametrize("credential", [
        "", "abc", "a.b", "a.b.c.d", "!!.e30.AA", "e30.e30.", ".e30.AA",
        "eyJhbGciOiJFUzI1NiJ9=.e30.AA",
    ])
    def test_malformed_compact_serialisation(self, trust_list: Build, credential: str) -> None:
        """Anything that is not three unpadded base64url parts fails on structure."""
        assert_sub(SubIndication.FORMAT_FAILURE, verify(trust_list(), credential))

    def test_header_not_an_object(self, trust_list: Build) -> None:
        """A header that is JSON but not an object is a format failure."""
        token = b64url_encode(b"[1]") + "." + b64url_encode(b"{}") + ".AAAA"
        assert_sub(SubIndication.FORMAT_FAILURE, verify(trust_list(), token))

    def test_payload_not_an_object(self, sh: MockRegion, trust_list: Build) -> None:
        """A validly signed payload that is not a JSON object is a format failure."""
        token = sh.sign({"alg": "ES256", "typ": "ecert+jwt", "kid": sh.licence_kid}, b"[1,2]")
        assert_sub(SubIndication.FORMAT_FAILURE, verify(trust_list(), token))

    def test_over_64_kib_refused_unread(self, sh: MockRegion, trust_list: Build) -> None:
        """A credential longer than 64 KiB fails without being parsed."""
        token = sh.issue(iat=T - 60, fields={"blob": "x" * 70000}).token
        verdict = verify(trust_list(), token, sh)
        assert_sub(SubIndication.FORMAT_FAILURE, verdict)
        assert 1 == len(verdict.checks)

    @pytest.mark.parametrize("header", [
        {"typ": "JWT"}, {"typ": DELETE}, {"jku": "https://evil.example/jwks"},
        {"x5u": "https://evil.example/cert"}, {"jwk": {"kty": "EC"}}, {"crit": ["exp"]},
        {"kid": DELETE}, {"kid": 7}, {"x5c": "notalist"}, {"x5c": ["***"]},
    ])
    def test_forbidden_or_wrong_header(self, sh: MockRegion, trust_list: Build,
                                       header: dict[str, Any]) -> None:
        """Wrong typ, jku/x5u/jwk, unknown crit, or a missing kid fail the header check."""
        token = sh.issue(iat=T - 60, header_override=header).token
        verdict = verify(trust_list(), token, sh)
        assert_sub(SubIndication.FORMAT_FAILURE, verdict)
        failed = verdict.check("header")
        assert failed is not None
        assert CheckResult.FAILED == failed.result

    @pytest.mark.parametrize(("part", "old", "new"), [
        # The last value is the genuine one: a reader keeping it would pass the licence.
        ("payload", b'{"iss":"310000"', b'{"iss":"520500","iss":"310000"'),
        ("payload", b'"holder_code":', b'"holder_code":"110101199003077777","holder_code":'),
        ("payload", b'"status_list":{', b'"status_list":{"idx":1,'),
        ("header", b'{"alg":"ES256"', b'{"alg":"none","alg":"ES256"'),
        ("header", b'"typ":"ecert+jwt"', b'"typ":"ecert+jwt","typ":"ecert+jwt"'),
    ])
    def test_repeated_member_name(self, sh: MockRegion, trust_list: Build, part: str,
                                  old: bytes, new: bytes) -> None:
        """A name repeated in the header, the claims or a nested claim is a format failure
        (RFC 7515 4, RFC 7519 4), reported at the structure check; the same licence
        signed again without the repeat passes."""
        token = sh.issue(iat=T - 60).token
        assert_sub(None, verify(trust_list(), resign_raw(sh, token, part, old, old), sh))
        verdict = verify(trust_list(), resign_raw(sh, token, part, old, new), sh)
        assert_sub(SubIndication.FORMAT_FAILURE, verdict)
        structure = verdict.check("structure")
        assert structure is not None
        assert f"{part} repeats a member name in an object" == structure.detail

    @pytest.mark.parametrize("claims", [
        {"lic": {"type_code": DELETE}}, {"iat": DELETE}, {"iat": "yesterday"},
        {"iss": 310000}, {"lic": {"valid_from": "2026-13-01"}}, {"lic": DELETE},
        {"status": {"status_list": {"idx": -1, "uri": "x"}}}, {"exp": True},
    ])
    def test_claims_schema(self, sh: MockRegion, trust_list: Build,
                           claims: dict[str, Any]) -> None:
        """A missing or mistyped claim is a format failure at the claims step."""
        verdict = verify(trust_list(), sh.issue(iat=T - 60, claims_override=claims).token, sh)
        assert_sub(SubIndication.FORMAT_FAILURE, verdict)
        failed = verdict.check("claims")
        assert failed is not None
        assert CheckResult.FAILED == failed.result


class TestCrypto:
    """CRYPTO_CONSTRAINTS_FAILURE and SIG_CRYPTO_FAILURE."""

    @pytest.mark.parametrize("alg", ["none", "HS256", "HS512", "PS384", "ES512", "SM2",
                                     "SM2-SM3", "sm2sm3"])
    def test_algorithm_off_the_list(self, sh: MockRegion, trust_list: Build, alg: str) -> None:
        """An alg outside the allow-list fails before any key is looked at."""
        good = sh.issue(iat=T - 60).token
        head = orjson.loads(_pad(good.split(".")[0]))
        head["alg"] = alg
        token = b64url_encode(orjson.dumps(head)) + "." + good.split(".", 2)[1] + ".AAAA"
        verdict = verify(trust_list(), token, sh)
        assert_sub(SubIndication.CRYPTO_CONSTRAINTS_FAILURE, verdict)

    @pytest.mark.parametrize("alg", [
        "none", "None", "NONE", "", "HS256", "HS384", "HS512", "RS384", "RS512", "PS384",
        "PS512", "ES256K", "ES512", "Ed25519", "SM2", "sm2sm3",
    ])
    def test_unsecured_form_refused_for_its_algorithm(self, sh: MockRegion,
                                                      trust_list: Build, alg: str) -> None:
        """An alg off the allow-list with an empty signature part (the unsecured JWS form,
        RFC 7519 6.1) is CRYPTO_CONSTRAINTS_FAILURE, as with any signature."""
        good = sh.issue(iat=T - 60).token
        head = orjson.loads(_pad(good.split(".")[0]))
        head["alg"] = alg
        token = b64url_encode(orjson.dumps(head)) + "." + good.split(".")[1] + "."
        verdict = verify(trust_list(), token, sh)
        assert_sub(SubIndication.CRYPTO_CONSTRAINTS_FAILURE, verdict)
        assert [("structure", CheckResult.PASSED), ("header.alg", CheckResult.FAILED)] == [
            (c.name, c.result) for c in verdict.checks[:2]]

    @pytest.mark.parametrize(("header", "expected"), [
        ({}, SubIndication.SIG_CRYPTO_FAILURE),  # an allowed alg: the signature fails
        ({"kid": "310000-unlisted"}, SubIndication.UNKNOWN_ISSUER),  # the anchor first
        ({"alg": DELETE}, SubIndication.FORMAT_FAILURE),  # no alg at all: a header flaw
    ])
    def test_empty_signature_under_an_allowed_or_missing_alg(
            self, sh: MockRegion, trust_list: Build, header: dict[str, Any],
            expected: SubIndication) -> None:
        """An empty signature part is not a format flaw by itself: the checks run in
        their order and an allowed alg's signature check fails it."""
        good = sh.issue(iat=T - 60, header_override=header).token
        token = good.rsplit(".", 1)[0] + "."
        assert_sub(expected, verify(trust_list(), token, sh))

    def test_rsa_under_2048_bits(self, sh: MockRegion, trust_list: Build) -> None:
        """An RS256 licence from a 1024-bit anchor key fails the crypto constraints."""
        kid = sh.add_signing_key("RS256", kid="310000-lic-weak", rsa_bits=1024)
        verdict = verify(trust_list(), sh.issue(iat=T - 60, kid=kid).token, sh)
        assert_sub(SubIndication.CRYPTO_CONSTRAINTS_FAILURE, verdict)

    def test_payload_changed_after_signing(self, sh: MockRegion, trust_list: Build) -> None:
        """Changing the payload under an intact signature fails the signature check."""
        good = sh.issue(iat=T - 60)
        body = dict(good.claims)
        body["lic"] = {**body["lic"], "holder_name": "张三"}
        head_b64, _, sig = good.token.split(".")
        token = f"{head_b64}.{b64url_encode(orjson.dumps(body))}.{sig}"
        assert_sub(SubIndication.SIG_CRYPTO_FAILURE, verify(trust_list(), token, sh))

    def test_signature_by_another_regions_key(self, federation: Any, sh: MockRegion,
                                              trust_list: Build) -> None:
        """A licence naming Shanghai's kid but signed by Bijie's key fails the signature."""
        bj = federation["520500"]
        token = bj.sign({"alg": "ES256", "typ": "ecert+jwt", "kid": sh.licence_kid},
                        sh.issue(iat=T - 60).claims, kid=bj.licence_kid)
        assert_sub(SubIndication.SIG_CRYPTO_FAILURE, verify(trust_list(), token, sh))

    def test_alg_not_matching_key_type(self, sh: MockRegion, trust_list: Build) -> None:
        """ES384 claimed over Shanghai's P-256 key never verifies (no alg confusion)."""
        good = sh.issue(iat=T - 60).token
        head = orjson.loads(_pad(good.split(".")[0]))
        head["alg"] = "ES384"
        token = b64url_encode(orjson.dumps(head)) + "." + ".".join(good.split(".")[1:])
        assert_sub(SubIndication.SIG_CRYPTO_FAILURE, verify(trust_list(), token, sh))


class TestAnchors:
    """UNKNOWN_ISSUER, chains, key validity, suspension and revocation."""

    def test_unknown_kid(self, sh: MockRegion, trust_list: Build) -> None:
        """A kid no partner has is UNKNOWN_ISSUER."""
        kid = sh.add_signing_key("ES256", kid="310000-lic-unlisted", publish=False)
        assert_sub(SubIndication.UNKNOWN_ISSUER,
                   verify(trust_list(), sh.issue(iat=T - 60, kid=kid).token, sh))

    def test_x5c_from_rogue_root(self, sh: MockRegion, trust_list: Build) -> None:
        """A chain from a look-alike root (same name, other key) finds no chain."""
        kid = sh.add_certificate_key(rogue_root=True)
        token = sh.issue(iat=T - 60, kid=kid, use_x5c=True).token
        assert_sub(SubIndication.NO_CERTIFICATE_CHAIN_FOUND, verify(trust_list(), token, sh))

    @pytest.mark.parametrize("bend", [
        {"via_intermediate": True}, {"ca": True}, {"key_usage": ("key_cert_sign",)},
    ])
    def test_x5c_chain_breaks_a_constraint(self, sh: MockRegion, trust_list: Build,
                                           bend: dict[str, Any]) -> None:
        """Path length, CA flag and key usage are enforced on the chain."""
        kid = sh.add_certificate_key(**bend)
        token = sh.issue(iat=T - 60, kid=kid, use_x5c=True).token
        assert_sub(SubIndication.CHAIN_CONSTRAINTS_FAILURE, verify(trust_list(), token, sh))

    def test_x5c_certificate_not_valid_at_iat(self, sh: MockRegion, trust_list: Build) -> None:
        """A signer certificate whose validity ends before iat breaks the chain."""
        kid = sh.add_certificate_key(not_after=NOW - timedelta(days=2))
        token = sh.issue(iat=T - 60, kid=kid, use_x5c=True).token
        assert_sub(SubIndication.CHAIN_CONSTRAINTS_FAILURE, verify(trust_list(), token, sh))

    def test_validated_chain_is_reused_only_inside_its_validity(
            self, sh: MockRegion, trust_list: Build) -> None:
        """A chain validated once is not re-validated, yet still fails outside its window."""
        kid = sh.add_certificate_key(not_before=NOW - timedelta(days=10),
                                     not_after=NOW - timedelta(days=1))
        verifier = Verifier(trust_list())
        inside = sh.issue(iat=T - 5 * 86400, use_x5c=True, kid=kid, with_status=False,
                          exp=T + 86400).token
        outside = sh.issue(iat=T - 3600, use_x5c=True, kid=kid, with_status=False,
                           exp=T + 86400).token
        assert_sub(None, verifier.check(inside, at=NOW))
        assert_sub(SubIndication.CHAIN_CONSTRAINTS_FAILURE, verifier.check(outside, at=NOW))
        assert_sub(None, verifier.check(inside, at=NOW))

    def test_key_for_another_use(self, sh: MockRegion, trust_list: Build) -> None:
        """A licence signed with the status-signing key fails: wrong use."""
        token = sh.issue(iat=T - 60, kid=sh.status_kid).token
        assert_sub(SubIndication.SIGNING_KEY_NOT_VALID, verify(trust_list(), token, sh))

    @pytest.mark.parametrize(("offset", "expected"), [
        (-1, None), (0, None), (1, SubIndication.SIGNING_KEY_NOT_VALID)])
    def test_anchor_window_end_judged_at_iat(self, sh: MockRegion, trust_list: Build,
                                             offset: int,
                                             expected: SubIndication | None) -> None:
        """An anchor counts for licences signed up to its valid_until, not one second after."""
        end = T - 3600

        def shorten(doc: dict[str, Any]) -> None:
            anchor(doc, sh.licence_kid)["valid_until"] = _rfc(end)

        token = sh.issue(iat=end + offset).token
        assert_sub(expected, verify(trust_list(shorten), token, sh))

    @pytest.mark.parametrize(("offset", "expected"), [
        (-1, SubIndication.SIGNING_KEY_NOT_VALID), (0, None), (1, None)])
    def test_anchor_window_start_judged_at_iat(self, sh: MockRegion, trust_list: Build,
                                               offset: int,
                                               expected: SubIndication | None) -> None:
        """An anchor counts from its valid_from on, not one second before."""
        start = T - 3600

        def later(doc: dict[str, Any]) -> None:
            anchor(doc, sh.licence_kid)["valid_from"] = _rfc(start)

        assert_sub(expected, verify(trust_list(later), sh.issue(iat=start + offset).token, sh))

    def test_old_anchor_still_verifies_what_it_signed(self, sh: MockRegion,
                                                      trust_list: Build) -> None:
        """An anchor whose window is over still verifies licences signed inside it."""
        def over(doc: dict[str, Any]) -> None:
            anchor(doc, sh.licence_kid)["valid_until"] = _rfc(T - 86400)

        assert_sub(None, verify(trust_list(over), sh.issue(iat=T - 2 * 86400).token, sh))

    @pytest.mark.parametrize(("offset", "expected"), [
        (-1, None), (0, SubIndication.REVOKED), (1, SubIndication.REVOKED)])
    def test_superseded_revocation_is_not_retroactive(self, sh: MockRegion, trust_list: Build,
                                                      offset: int,
                                                      expected: SubIndication | None) -> None:
        """Revoked as superseded: licences signed before revoked_at still pass."""
        revoked_at = T - 600

        def revoke(doc: dict[str, Any]) -> None:
            anchor(doc, sh.licence_kid).update(status="revoked", revoked_at=_rfc(revoked_at),
                                               revocation_reason="superseded")

        token = sh.issue(iat=revoked_at + offset).token
        assert_sub(expected, verify(trust_list(revoke), token, sh))

    def test_key_compromise_reaches_back(self, sh: MockRegion, trust_list: Build) -> None:
        """Revoked for key compromise: even licences signed long before fail."""
        def revoke(doc: dict[str, Any]) -> None:
            anchor(doc, sh.licence_kid).update(status="revoked", revoked_at=_rfc(T - 60),
                                               revocation_reason="key-compromise")

        token = sh.issue(iat=T - 86400 * 30).token
        assert_sub(SubIndication.REVOKED, verify(trust_list(revoke), token, sh))

    def test_suspended_anchor(self, sh: MockRegion, trust_list: Build) -> None:
        """A suspended anchor verifies nothing while suspended: TRY_LATER."""
        def suspend(doc: dict[str, Any]) -> None:
            anchor(doc, sh.licence_kid)["status"] = "suspended"

        assert_sub(SubIndication.TRY_LATER,
                   verify(trust_list(suspend), sh.issue(iat=T - 60).token, sh))

    def test_suspended_partner(self, sh: MockRegion, trust_list: Build) -> None:
        """A suspended partner verifies nothing while suspended: TRY_LATER."""
        def suspend(doc: dict[str, Any]) -> None:
            partner(doc, "310000")["status"] = "suspended"

        assert_sub(SubIndication.TRY_LATER,
                   verify(trust_list(suspend), sh.issue(iat=T - 60).token, sh))

    @pytest.mark.parametrize(("offset", "expected"), [
        (-1, None), (0, None), (1, SubIndication.TRY_LATER)])
    def test_stale_trust_list(self, sh: MockRegion, trust_list: Build, offset: int,
                              expected: SubIndication | None) -> None:
        """Past next_update the trust list is stale and nothing passes."""
        tl = trust_list(next_update=NOW + timedelta(seconds=-offset))
        assert_sub(expected, verify(tl, sh.issue(iat=T - 60).token, sh))


class TestX5cBounds:
    """An x5c chain costs a bounded number of signature checks, whatever the attacker puts in."""

    def test_x5c_cpu_amplification_seven_lookalike_cas(self, sh: MockRegion,
                                                       trust_list: Build) -> None:
        """Seven self-issued CAs named after the root, sharing one key, are refused unchecked.

        Each of them verifies as the issuer of every other, so a path builder
        tried their permutations (up to its own limit, tens of milliseconds a
        licence). Eight certificates are more than a chain may carry: a format
        failure, before any certificate is read; the same CAs within the
        count repeat a subject (the next test).
        """
        kid = sh.add_certificate_key(lookalike_cas=7)
        token = sh.issue(iat=T - 60, kid=kid, use_x5c=True).token
        verifier = Verifier(trust_list())
        verdict = verifier.check(token, at=NOW)
        assert_sub(SubIndication.FORMAT_FAILURE, verdict)
        signature = verdict.check("signature")
        assert signature is None or CheckResult.PASSED != signature.result
        assert (0, 0) == (verifier.x5c_signature_checks, verifier.x5c_paths_validated)

    @pytest.mark.parametrize(("bend", "what"), [
        ({"lookalike_cas": 2}, "subject"),
        ({"lookalike_cas": MAX_X5C_CERTIFICATES - 1}, "subject"),
        ({"lookalike_cas": 2, "distinct_names": True}, "key"),
        ({"lookalike_cas": MAX_X5C_CERTIFICATES, "distinct_names": True,
          "distinct_keys": True}, "at most"),
    ], ids=["two-lookalike-cas", "three-lookalike-cas", "one-key-two-names", "too-many"])
    def test_x5c_that_cannot_be_one_path_is_refused_unchecked(
            self, sh: MockRegion, trust_list: Build, bend: dict[str, Any], what: str) -> None:
        """A repeated subject or key, or too many certificates, fail before any signature."""
        kid = sh.add_certificate_key(**bend)
        token = sh.issue(iat=T - 60, kid=kid, use_x5c=True).token
        verifier = Verifier(trust_list())
        verdict = verifier.check(token, at=NOW)
        assert_sub(SubIndication.FORMAT_FAILURE, verdict)
        header = verdict.check("header")
        assert header is not None
        assert what in header.detail
        assert 0 == verifier.x5c_signature_checks

    def test_x5c_repeating_a_certificate_is_refused(self, sh: MockRegion,
                                                    trust_list: Build) -> None:
        """The signer certificate sent twice is not a certification path (RFC 5280 6.1)."""
        licence = sh.issue(iat=T - 60, use_x5c=True)
        x5c = licence.header["x5c"]
        token = sh.sign({**licence.header, "x5c": [*x5c, x5c[0]]}, licence.claims,
                        kid=sh.x509_kid)
        verifier = Verifier(trust_list())
        assert_sub(SubIndication.FORMAT_FAILURE, verifier.check(token, at=NOW))
        assert 0 == verifier.x5c_signature_checks

    def test_x5c_of_forged_cas_costs_at_most_the_budget(self, sh: MockRegion,
                                                        trust_list: Build) -> None:
        """Forged CAs with their own names and keys cost one check a link, within the budget."""
        kid = sh.add_certificate_key(lookalike_cas=MAX_X5C_CERTIFICATES - 1,
                                     distinct_names=True, distinct_keys=True)
        token = sh.issue(iat=T - 60, kid=kid, use_x5c=True).token
        verifier = Verifier(trust_list())
        assert_sub(SubIndication.CHAIN_CONSTRAINTS_FAILURE, verifier.check(token, at=NOW))
        # Three links verify, the last certificate does not verify under the root.
        assert MAX_X5C_CERTIFICATES == verifier.x5c_signature_checks
        assert verifier.x5c_signature_checks <= MAX_X5C_SIGNATURE_CHECKS
        assert 0 == verifier.x5c_paths_validated

    def test_candidate_roots_tried_are_bounded(self, sh: MockRegion, trust_list: Build) -> None:
        """However many root-ca anchors share the issuer's name, at most the bound are tried."""
        def copies(doc: dict[str, Any]) -> None:
            root = anchor(doc, sh.root_kid)
            partner(doc, "310000")["anchors"].extend(
                {**root, "kid": f"{sh.root_kid}-copy{i}"} for i in range(MAX_X5C_ROOTS + 3))

        kid = sh.add_certificate_key(ca=True)
        token = sh.issue(iat=T - 60, kid=kid, use_x5c=True).token
        verifier = Verifier(trust_list(copies))
        assert_sub(SubIndication.CHAIN_CONSTRAINTS_FAILURE, verifier.check(token, at=NOW))
        assert MAX_X5C_ROOTS == verifier.x5c_paths_validated
        # The one link (signer under the root's certificate) is checked once.
        assert 1 == verifier.x5c_signature_checks

    def test_valid_chain_costs_one_check_and_is_then_reused(self, sh: MockRegion,
                                                            trust_list: Build) -> None:
        """A valid signer certificate costs one signature check and one path validation, once."""
        verifier = Verifier(trust_list())
        for _ in range(2):
            token = sh.issue(iat=T - 60, use_x5c=True, with_status=False).token
            assert_sub(None, verifier.check(token, at=NOW))
        assert (1, 1) == (verifier.x5c_signature_checks, verifier.x5c_paths_validated)

    def test_chain_with_the_root_itself_passes(self, sh: MockRegion, trust_list: Build) -> None:
        """An x5c that ends with the partner's root certificate is still one path."""
        licence = sh.issue(iat=T - 60, use_x5c=True, with_status=False)
        root = base64.b64encode(sh.root_certificate.public_bytes(Encoding.DER)).decode()
        x5c = [*licence.header["x5c"], root]
        token = sh.sign({**licence.header, "x5c": x5c}, licence.claims, kid=sh.x509_kid)
        assert_sub(None, Verifier(trust_list()).check(token, at=NOW))


class TestClaims:
    """Jurisdiction, identifier and agreement."""

    def test_iss_of_another_region(self, sh: MockRegion, trust_list: Build) -> None:
        """Shanghai's key signing a licence that says it is from Bijie: mismatch."""
        token = sh.issue(iat=T - 60, claims_override={"iss": "520500"}).token
        assert_sub(SubIndication.JURISDICTION_MISMATCH, verify(trust_list(), token, sh))

    def test_wrong_check_character(self, sh: MockRegion, trust_list: Build) -> None:
        """A check character neither correct nor the known variant fails."""
        token = sh.issue(iat=T - 60, check_char="wrong").token
        assert_sub(SubIndication.IDENTIFIER_CHECK_FAILURE, verify(trust_list(), token, sh))

    def test_known_variant_refused_under_strict_policy(self, sh: MockRegion,
                                                       trust_list: Build) -> None:
        """The widely copied wrong variant fails when the partner's policy is strict."""
        token = sh.issue(iat=T - 60, check_char="lenient").token
        assert_sub(SubIndication.IDENTIFIER_CHECK_FAILURE, verify(trust_list(), token, sh))

    def test_known_variant_accepted_under_lenient_policy(self, sh: MockRegion,
                                                         trust_list: Build) -> None:
        """The known variant, and only it, passes under identifier_check lenient."""
        def lenient(doc: dict[str, Any]) -> None:
            partner(doc, "310000")["identifier_check"] = "lenient"

        tl = trust_list(lenient)
        assert_sub(None, verify(tl, sh.issue(iat=T - 60, check_char="lenient").token, sh))
        assert_sub(SubIndication.IDENTIFIER_CHECK_FAILURE,
                   verify(tl, sh.issue(iat=T - 60, check_char="wrong").token, sh))

    def test_malformed_identifier(self, sh: MockRegion, trust_list: Build) -> None:
        """A jti that is not GB/T 36904-shaped fails the identifier check."""
        token = sh.issue(iat=T - 60, claims_override={"jti": "1.2.156.3005.2.123"}).token
        assert_sub(SubIndication.IDENTIFIER_CHECK_FAILURE, verify(trust_list(), token, sh))

    def test_identifier_naming_another_issuer(self, sh: MockRegion, trust_list: Build) -> None:
        """The identifier's issuer code must be lic.issuer_code."""
        token = sh.issue(iat=T - 60, lic_override={"issuer_code": "91330500MA2B3C4D5E"}).token
        assert_sub(SubIndication.IDENTIFIER_CHECK_FAILURE, verify(trust_list(), token, sh))

    def test_type_outside_agreement(self, sh: MockRegion, trust_list: Build) -> None:
        """An agreement listing other types does not cover this one."""
        def narrow(doc: dict[str, Any]) -> None:
            partner(doc, "310000")["recognised_licence_types"] = ["11100000MB0143028R001"]

        assert_sub(SubIndication.ISSUER_NOT_RECOGNISED_FOR_TYPE,
                   verify(trust_list(narrow), sh.issue(iat=T - 60).token, sh))

    def test_matter_outside_agreement(self, sh: MockRegion, trust_list: Build) -> None:
        """A named matter whose codes the agreement does not list fails; a listed one passes."""
        def narrow(doc: dict[str, Any]) -> None:
            partner(doc, "310000")["recognised_matters"] = ["310000-XK-0001"]

        tl = trust_list(narrow)
        token = sh.issue(iat=T - 60).token
        assert_sub(SubIndication.ISSUER_NOT_RECOGNISED_FOR_TYPE,
                   verify(tl, token, sh, matter_codes=frozenset({"310000-XK-0002"})))
        assert_sub(None, verify(tl, token, sh, matter_codes=frozenset({"310000-XK-0001"})))


class TestValidity:
    """NOT_YET_VALID and EXPIRED, one second either side."""

    @pytest.mark.parametrize(("offset", "expected"), [
        (-1, None), (0, None), (1, SubIndication.NOT_YET_VALID)])
    def test_nbf(self, sh: MockRegion, trust_list: Build, offset: int,
                 expected: SubIndication | None) -> None:
        """Valid from nbf on, not one second before."""
        token = sh.issue(iat=T - 60, nbf=T + offset).token
        assert_sub(expected, verify(trust_list(), token, sh))

    @pytest.mark.parametrize(("offset", "expected"), [
        (1, None), (0, SubIndication.EXPIRED), (-1, SubIndication.EXPIRED)])
    def test_exp(self, sh: MockRegion, trust_list: Build, offset: int,
                 expected: SubIndication | None) -> None:
        """Not acceptable on or after exp (RFC 7519 4.1.4)."""
        token = sh.issue(iat=T - 60, exp=T + offset).token
        assert_sub(expected, verify(trust_list(), token, sh))

    @pytest.mark.parametrize(("skew", "offset", "expected"), [
        (0, -1, None), (0, 0, None), (0, 1, SubIndication.NOT_YET_VALID),
        (5, 4, None), (5, 5, None), (5, 6, SubIndication.NOT_YET_VALID),
        (300, 299, None), (300, 300, None), (300, 301, SubIndication.NOT_YET_VALID),
    ])
    def test_iat_in_the_future(self, sh: MockRegion, trust_list: Build, skew: int,
                               offset: int, expected: SubIndication | None) -> None:
        """A licence signed up to the skew allowance ahead passes; one second more is
        NOT_YET_VALID (it may pass once that time comes, so it is no format failure)."""
        token = sh.issue(iat=T + offset, valid_from=NOW.date()).token
        verdict = verify(trust_list(), token, sh, skew=skew)
        assert_sub(expected, verdict)
        if expected is not None:
            validity = verdict.check("validity")
            assert validity is not None
            assert validity.detail.startswith("signed in the future: iat ")

    def test_iat_in_a_key_window_not_yet_begun(self, sh: MockRegion,
                                               trust_list: Build) -> None:
        """The red-team case: a key valid from next June signs a licence claiming iat in
        July. Its window contains that iat, so the anchor check passes; the future iat
        is what refuses it, today and up to the day before that iat."""
        starts = NOW + timedelta(days=187)
        kid = sh.add_signing_key("ES256", kid="310000-lic-2027a", valid_from=starts)
        iat = int((starts + timedelta(days=30)).timestamp())
        token = sh.issue(iat=iat, kid=kid, valid_from=NOW.date(), issue_date=NOW.date(),
                         with_status=False).token
        tl = trust_list(next_update=NOW + timedelta(days=400))
        verdict = verify(tl, token)
        assert_sub(SubIndication.NOT_YET_VALID, verdict)
        anchor_check = verdict.check("anchor")
        assert anchor_check is not None
        assert CheckResult.PASSED == anchor_check.result
        assert_sub(SubIndication.NOT_YET_VALID, verify(tl, token, at_offset=iat - T - 1))
        assert_sub(None, verify(tl, token, at_offset=iat - T))

    def test_skew_allowance(self, sh: MockRegion, trust_list: Build) -> None:
        """A configured clock-skew allowance covers a licence one second past exp."""
        token = sh.issue(iat=T - 60, exp=T - 1).token
        assert_sub(SubIndication.EXPIRED, verify(trust_list(), token, sh))
        assert_sub(None, verify(trust_list(), token, sh, skew=5))

    @pytest.mark.parametrize(("offset", "expected"), [
        (-1, None), (0, SubIndication.EXPIRED), (1, SubIndication.EXPIRED)])
    def test_valid_until_is_inclusive_in_china_time(
            self, sh: MockRegion, trust_list: Build, offset: int,
            expected: SubIndication | None) -> None:
        """valid_until covers its whole day in UTC+8 and ends at the next midnight there."""
        # NOW is 2026-11-26 14:00 +08:00; a licence valid until 2026-11-26 ends 10 h later.
        token = sh.issue(iat=T - 60, exp=None, valid_from=NOW.date() - timedelta(days=30),
                         valid_until=NOW.date()).token
        verdict = verify(trust_list(), token, sh, at_offset=10 * 3600 + offset)
        if expected is None:
            verdict = verify(trust_list(), token, sh,
                             status=status_of(sh, trust_list(), iat=T + 10 * 3600 - 60),
                             at_offset=10 * 3600 + offset)
        assert_sub(expected, verdict)

    def test_valid_from_tomorrow(self, sh: MockRegion, trust_list: Build) -> None:
        """A licence whose validity starts tomorrow is not yet valid."""
        token = sh.issue(iat=T - 60, valid_from=NOW.date() + timedelta(days=1)).token
        assert_sub(SubIndication.NOT_YET_VALID, verify(trust_list(), token, sh))


class TestStatus:
    """Status lists: revoked, suspended, unavailable, stale, unregistered."""

    def test_revoked_entry(self, sh: MockRegion, trust_list: Build) -> None:
        """An entry marked invalid answers REVOKED (cn 21)."""
        issued = sh.issue(iat=T - 60)
        assert issued.status_idx is not None
        sh.revoke(issued.status_idx)
        assert_sub(SubIndication.REVOKED, verify(trust_list(), issued.token, sh))

    def test_suspended_entry(self, sh: MockRegion, trust_list: Build) -> None:
        """An entry marked suspended answers INDETERMINATE / SUSPENDED (cn 23)."""
        issued = sh.issue(iat=T - 60)
        assert issued.status_idx is not None
        sh.suspend(issued.status_idx)
        assert_sub(SubIndication.SUSPENDED, verify(trust_list(), issued.token, sh))

    def test_unavailable_list(self, sh: MockRegion, trust_list: Build) -> None:
        """A list that could not be fetched is TRY_LATER, never a pass."""
        verdict = verify(trust_list(), sh.issue(iat=T - 60).token, sh,
                         status=StatusUnavailable("connection refused"))
        assert_sub(SubIndication.TRY_LATER, verdict)

    @pytest.mark.parametrize(("offset", "expected"), [
        (1, None), (0, None), (-1, SubIndication.TRY_LATER)])
    def test_status_list_exp(self, sh: MockRegion, trust_list: Build, offset: int,
                             expected: SubIndication | None) -> None:
        """A status list is relied on up to its exp, not one second after."""
        tl = trust_list()
        status = status_of(sh, tl, exp=T + offset)
        assert_sub(expected, verify(tl, sh.issue(iat=T - 60).token, sh, status=status))

    def test_status_list_older_than_partner_max_age(self, sh: MockRegion,
                                                    trust_list: Build) -> None:
        """A list issued longer ago than status_max_age_s is stale: TRY_LATER."""
        tl = trust_list()
        status = status_of(sh, tl, iat=T - 86401)
        assert_sub(SubIndication.TRY_LATER,
                   verify(tl, sh.issue(iat=T - 90000).token, sh, status=status))

    @pytest.mark.parametrize(("times", "expected"), [
        # (iat, consulted, skew): seconds after the verification time, None = not given
        ((0, None, 0), None),
        ((1, None, 0), SubIndication.TRY_LATER),  # after the verification time, nothing else said
        ((1, None, 1), None),  # within the skew allowance
        ((1, 1, 0), None),  # signed after the request began, before it was consulted
        ((1, 2, 0), None),
        ((2, 1, 0), SubIndication.TRY_LATER),  # after it was consulted: from the future
        ((2, 1, 1), None),
        ((1, -5, 0), SubIndication.TRY_LATER),  # an earlier consulting time widens nothing
    ])
    def test_status_list_issued_in_the_future(
            self, sh: MockRegion, trust_list: Build, times: tuple[int, int | None, int],
            expected: SubIndication | None) -> None:
        """A list's iat may not lie past the later of the verification and consulting times."""
        iat_offset, consulted_offset, skew = times
        tl = trust_list()
        status = status_of(sh, tl, iat=T + iat_offset)
        pending = Verifier(tl, clock_skew_s=skew).start(sh.issue(iat=T - 60).token, at=NOW)
        assert not isinstance(pending, Verdict)
        consulted = (None if consulted_offset is None
                     else NOW + timedelta(seconds=consulted_offset))
        verdict = pending.finish(status, consulted_at=consulted)
        assert_sub(expected, verdict)
        if expected is not None:
            assert "status list issued in the future" == verdict.checks[-1].detail

    def test_status_uri_outside_registered_prefixes(self, sh: MockRegion,
                                                    trust_list: Build) -> None:
        """A status URI the partner did not register is not fetched and does not pass."""
        token = sh.issue(iat=T - 60, claims_override={
            "status": {"status_list": {"idx": 0, "uri": "http://169.254.169.254/latest"}}}).token
        verdict = Verifier(trust_list()).start(token, at=NOW)
        assert isinstance(verdict, Verdict) is False
        assert verdict.status_needed is None  # type: ignore[union-attr]
        assert_sub(SubIndication.TRY_LATER, verdict.finish())  # type: ignore[union-attr]

    def test_status_list_repeating_a_member_name_is_refused(self, sh: MockRegion,
                                                             trust_list: Build) -> None:
        """A status list whose claims repeat a name (the last value genuine) is unusable."""
        from trust import StatusListError

        token = sh.status_list_token(iat=T - 60)
        good = resign_raw(sh, token, "payload", b'"sub":', b'"sub":')
        parse_status_list(good, trust_list=trust_list(), region="310000", uri=sh.status_uri)
        repeated = resign_raw(sh, token, "payload", b'"sub":',
                              b'"sub":"https://elsewhere.invalid/status","sub":')
        with pytest.raises(StatusListError, match="repeats a member name"):
            parse_status_list(repeated, trust_list=trust_list(), region="310000",
                              uri=sh.status_uri)

    def test_status_list_signed_by_licence_key_is_refused(self, sh: MockRegion,
                                                          trust_list: Build) -> None:
        """Only a status-signing anchor may sign a status list."""
        from trust import StatusListError

        token = sh.status_list_token(iat=T - 60, kid=sh.licence_kid)
        with pytest.raises(StatusListError):
            parse_status_list(token, trust_list=trust_list(), region="310000",
                              uri=sh.status_uri)


def _rfc(ts: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
