"""Partner request tokens and agreements: the pure checks, with the time as an argument."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from mocks import DELETE, Federation, MockRegion, public_jwk, sign_compact
from tests.tokens import resign_raw
from tests.trust.conftest import NOW, T, anchor, partner
from trust import (
    MAX_REQUEST_LIFETIME_S,
    MAX_REQUEST_TOKEN_BYTES,
    REQUEST_SKEW_S,
    AgreementError,
    AnchorUse,
    CheckResult,
    PartnerRequest,
    RequestTokenError,
    SubIndication,
    TrustList,
    Verifier,
    check_agreement,
    check_request_token,
    start_request_token,
)

Build = Callable[..., TrustList]

BODY = b'{"matter":{"region":"310000","code":"310000-20-SFJ-0001"}}'
PATH = "/v1/partner/licences/query"
GATEWAY = "330500"
SH = "310000"


def _rfc3339(offset_s: int) -> str:
    return (NOW + timedelta(seconds=offset_s)).strftime("%Y-%m-%dT%H:%M:%SZ")


def token(region: MockRegion, *, iat: int = T, lifetime: int = 120, **args: Any) -> str:
    """A request token of ``region`` for ``BODY`` on ``PATH``, issued at ``iat``."""
    return region.request_token(body=BODY, path=PATH, iat=iat, lifetime=lifetime, **args)


def claims(**changes: Any) -> dict[str, Any]:
    """Shanghai's request claims for ``BODY`` issued at ``T`` (``DELETE`` drops one)."""
    found: dict[str, Any] = {"iss": SH, "aud": GATEWAY, "iat": T, "exp": T + 60, "jti": "j-1",
                             "htm": "POST", "htu": PATH,
                             "body_sha256": hashlib.sha256(BODY).hexdigest()}
    for name, value in changes.items():
        if value is DELETE:
            found.pop(name, None)
        else:
            found[name] = value
    return found


def signed(region: MockRegion, header: dict[str, Any], payload: dict[str, Any] | bytes) -> str:
    """``header`` and ``payload`` signed as they are with the region's request key."""
    head = {"alg": "ES256", "typ": "ecert-request+jwt", "kid": region.request_kid}
    for name, value in header.items():
        if value is DELETE:
            head.pop(name, None)
        else:
            head[name] = value
    return region.sign(head, payload, kid=region.request_kid)


def check(tl: TrustList, credential: str, *, now: int = T, body: bytes = BODY,
          method: str = "POST", path: str = PATH, skew_s: int = REQUEST_SKEW_S
          ) -> PartnerRequest:
    """``check_request_token`` for the query endpoint of gateway 330500."""
    return check_request_token(credential, trust_list=tl, audience=GATEWAY, method=method,
                               path=path, body=body, now=now, skew_s=skew_s)


def refused(tl: TrustList, credential: str, **args: Any) -> RequestTokenError:
    """The error ``check`` raises."""
    with pytest.raises(RequestTokenError) as info:
        check(tl, credential, **args)
    return info.value


class TestAccepted:
    """A token that binds this request authenticates its partner."""

    def test_good_token(self, sh: MockRegion, trust_list: Build) -> None:
        """The answer names the partner, the key and the token's jti and times."""
        tl = trust_list()
        auth = check(tl, token(sh, jti="q-1"))
        assert (SH, sh.request_kid, "q-1", T, T + 120) == (
            auth.region, auth.kid, auth.jti, auth.issued_at, auth.expires_at)
        assert tl.partner(SH) is auth.partner
        assert f"{SH}:q-1" == auth.replay_key

    def test_three_steps_give_the_one_step_answer(self, sh: MockRegion,
                                                  trust_list: Build) -> None:
        """start, verify_signature and finish answer as check_request_token does; the
        pending check names the kid, the claimed iss and the candidate anchors."""
        tl = trust_list()
        credential = token(sh)
        pending = start_request_token(credential, trust_list=tl, audience=GATEWAY,
                                      method="POST", path=PATH, body=BODY, now=T)
        assert (sh.request_kid, SH) == (pending.kid, pending.claimed_iss)
        assert [sh.request_kid] == [a.kid for a in pending.anchors]
        verified = pending.verify_signature()
        assert verified is pending.anchors[0]
        assert check(tl, credential) == pending.finish(verified)

    def test_finish_without_a_verifying_anchor(self, sh: MockRegion,
                                               trust_list: Build) -> None:
        """finish refuses when no anchor verified the signature, naming the claimed iss."""
        pending = start_request_token(token(sh), trust_list=trust_list(), audience=GATEWAY,
                                      method="POST", path=PATH, body=BODY, now=T)
        with pytest.raises(RequestTokenError, match="signature does not verify") as info:
            pending.finish(None)
        assert SH == info.value.claimed_iss

    def test_suspended_partner_authenticates(self, sh: MockRegion, trust_list: Build) -> None:
        """A suspended partner's token is checked like any other (the agreement refuses it)."""
        tl = trust_list(lambda doc: partner(doc, SH).update(status="suspended"))
        assert SH == check(tl, token(sh)).region


class TestTime:
    """iat, nbf, exp and the anchor window, one second either side of each boundary."""

    def test_iat_ahead_by_the_skew(self, sh: MockRegion, trust_list: Build) -> None:
        """iat up to the skew ahead passes; one second more is in the future."""
        tl = trust_list()
        check(tl, token(sh, iat=T + REQUEST_SKEW_S))
        assert "iat is in the future" == refused(tl, token(sh, iat=T + REQUEST_SKEW_S + 1)).reason

    def test_exp_past_by_the_skew(self, sh: MockRegion, trust_list: Build) -> None:
        """A token is accepted up to exp + skew and refused one second later."""
        tl = trust_list()
        credential = token(sh, iat=T - 200, lifetime=100)
        check(tl, credential, now=T - 100 + REQUEST_SKEW_S)
        assert "token expired" == refused(tl, credential, now=T - 100 + REQUEST_SKEW_S + 1).reason

    def test_nbf_ahead_by_the_skew(self, sh: MockRegion, trust_list: Build) -> None:
        """An nbf up to the skew ahead passes; one second more is not valid yet."""
        tl = trust_list()
        check(tl, token(sh, claims_override={"nbf": T + REQUEST_SKEW_S}))
        late = token(sh, claims_override={"nbf": T + REQUEST_SKEW_S + 1})
        assert "token not valid yet (nbf)" == refused(tl, late).reason

    def test_lifetime(self, sh: MockRegion, trust_list: Build) -> None:
        """exp - iat of 300 s passes; 301 s, or exp not after iat, is refused."""
        tl = trust_list()
        check(tl, token(sh, lifetime=MAX_REQUEST_LIFETIME_S))
        for lifetime in (MAX_REQUEST_LIFETIME_S + 1, 0):
            assert "exp must be within 300 s after iat" == refused(
                tl, token(sh, lifetime=lifetime)).reason

    def test_skew_is_an_argument(self, sh: MockRegion, trust_list: Build) -> None:
        """With no skew, iat one second ahead of now is in the future."""
        tl = trust_list()
        check(tl, token(sh, iat=T), skew_s=0)
        assert "iat is in the future" == refused(tl, token(sh, iat=T + 1), skew_s=0).reason

    @pytest.mark.parametrize(("iat_offset", "accepted"), [
        (-10, True), (-11, False), (10, True), (11, False)])
    def test_anchor_window_contains_iat(self, sh: MockRegion, trust_list: Build,
                                        iat_offset: int, accepted: bool) -> None:
        """The request-signing anchor's window (both ends included) must contain iat."""

        def window(doc: dict[str, Any]) -> None:
            anchor(doc, sh.request_kid).update(valid_from=_rfc3339(-10), valid_until=_rfc3339(10))

        tl = trust_list(window)
        credential = token(sh, iat=T + iat_offset)
        if accepted:
            check(tl, credential)
        else:
            assert "request-signing key is outside its validity window at iat" == refused(
                tl, credential).reason

    @pytest.mark.parametrize(("value", "reason"), [
        (True, "iat must be a NumericDate integer"), (1.5e9, "iat must be a NumericDate integer"),
        ("now", "iat must be a NumericDate integer"), (DELETE, "iat must be a NumericDate integer"),
        (-1, "iat is out of range"), (253402300800, "iat is out of range"),
    ], ids=repr)
    def test_iat_is_a_whole_numeric_date(self, sh: MockRegion, trust_list: Build,
                                         value: object, reason: str) -> None:
        """iat must be an integer NumericDate from 1970 to 9999."""
        assert reason == refused(trust_list(), signed(sh, {}, claims(iat=value))).reason


class TestHeader:
    """The header of a request token."""

    def test_typ(self, sh: MockRegion, trust_list: Build) -> None:
        """A licence-typed (or untyped) token is no request token."""
        for typ in ("ecert+jwt", DELETE, "ECERT-REQUEST+JWT"):
            assert "typ must be ecert-request+jwt" == refused(
                trust_list(), signed(sh, {"typ": typ}, claims())).reason

    @pytest.mark.parametrize("alg", ["none", "HS256", "ES512", DELETE, 7], ids=repr)
    def test_alg_off_the_allow_list(self, sh: MockRegion, trust_list: Build, alg: object) -> None:
        """An alg off the profile's allow-list (or none at all) is refused before any key."""
        error = refused(trust_list(), signed(sh, {"alg": alg}, claims()))
        assert ("alg is not on the profile's allow-list", SH) == (error.reason, error.claimed_iss)

    @pytest.mark.parametrize("header", [
        {"jku": "https://evil.example/jwks"}, {"x5u": "https://evil.example/c"},
        {"jwk": {"kty": "EC"}}, {"x5c": ["AAAA"]}, {"crit": ["exp"]},
    ], ids=lambda h: next(iter(h)))
    def test_keys_and_extensions_refused(self, sh: MockRegion, trust_list: Build,
                                         header: dict[str, Any]) -> None:
        """A header naming a key of its own, or an extension, is refused."""
        assert "header names a key or extension the gateway does not accept" == refused(
            trust_list(), signed(sh, header, claims())).reason

    @pytest.mark.parametrize("kid", [DELETE, "", 7], ids=repr)
    def test_kid_required(self, sh: MockRegion, trust_list: Build, kid: object) -> None:
        """A kid is required, as a non-empty string."""
        assert "kid is required" == refused(trust_list(), signed(sh, {"kid": kid}, claims())).reason

    def test_kid_must_name_a_request_signing_anchor_of_iss(
            self, federation: Federation, sh: MockRegion, trust_list: Build) -> None:
        """An unknown kid, Shanghai's licence-signing kid and Bijie's request-signing kid
        cannot authenticate Shanghai."""
        bijie = federation["520500"]
        for kid in ("310000-unlisted", sh.licence_kid, bijie.request_kid):
            error = refused(trust_list(), signed(sh, {"kid": kid}, claims()))
            assert "kid is not a request-signing key of the issuing region" == error.reason
            assert SH == error.claimed_iss

    @pytest.mark.parametrize("iss", [DELETE, 310000, "3" * 17], ids=repr)
    def test_iss_required(self, sh: MockRegion, trust_list: Build, iss: object) -> None:
        """iss must name a region; an unusable one is not repeated as claimed."""
        error = refused(trust_list(), signed(sh, {}, claims(iss=iss)))
        assert ("iss must be the partner's region code", None) == (error.reason,
                                                                    error.claimed_iss)

    @pytest.mark.parametrize(("credential", "reason"), [
        ("x" * 43, "not a compact JWS: not three dot-separated parts"),
        ("x" * (MAX_REQUEST_TOKEN_BYTES + 1),
         f"not a compact JWS: credential longer than {MAX_REQUEST_TOKEN_BYTES} bytes"),
        ("a.b.c", "not a compact JWS: a part is not base64url"),
    ], ids=["garbage", "over-8-KiB", "not-base64url"])
    def test_not_a_compact_jws(self, trust_list: Build, credential: str, reason: str) -> None:
        """Anything but a compact JWS of at most 8 KiB is refused, and says so."""
        assert refused(trust_list(), credential).reason.startswith(reason)

    def test_size_limit(self, trust_list: Build) -> None:
        """A token of 8 KiB is read (and judged on its form); one byte more is refused unread."""
        assert "not a compact JWS: not three dot-separated parts" == refused(
            trust_list(), "x" * MAX_REQUEST_TOKEN_BYTES).reason
        assert "not a compact JWS: credential longer than 8192 bytes" == refused(
            trust_list(), "x" * (MAX_REQUEST_TOKEN_BYTES + 1)).reason

    def test_payload_not_an_object(self, sh: MockRegion, trust_list: Build) -> None:
        """Signed claims that are not a JSON object are refused."""
        assert "payload is not a JSON object" == refused(trust_list(),
                                                         signed(sh, {}, b"[1]")).reason

    @pytest.mark.parametrize(("part", "old", "new"), [
        ("payload", b'"aud":', b'"aud":"320500","aud":'),
        ("header", b'"typ":', b'"typ":"JWT","typ":'),
    ], ids=["payload-aud", "header-typ"])
    def test_repeated_member_name(self, sh: MockRegion, trust_list: Build, part: str,
                                  old: bytes, new: bytes) -> None:
        """A repeated name in the header or the claims is refused; without it, accepted."""
        tl = trust_list()
        check(tl, resign_raw(sh, token(sh), part, old, old))
        reason = refused(tl, resign_raw(sh, token(sh), part, old, new)).reason
        assert reason.endswith(f"{part} repeats a member name in an object")


class TestAnchors:
    """The anchor under the kid: its key, its state."""

    def _request_anchors(self, sh: MockRegion, trust_list: Build,
                         jwks: list[dict[str, Any]]) -> TrustList:
        """The trust list with Shanghai's request anchor replaced by one per JWK, each
        under the same kid, in this order."""

        def replace(doc: dict[str, Any]) -> None:
            entry = partner(doc, SH)
            real = anchor(doc, sh.request_kid)
            entry["anchors"] = [*(a for a in entry["anchors"] if a is not real),
                                *({**real, "jwk": jwk} for jwk in jwks)]

        return trust_list(replace)

    @pytest.mark.parametrize("status", ["suspended", "revoked"])
    def test_inactive_anchor(self, sh: MockRegion, trust_list: Build, status: str) -> None:
        """A suspended or revoked request-signing anchor authenticates nobody."""
        tl = trust_list(lambda doc: anchor(doc, sh.request_kid).update(
            status=status, revoked_at=_rfc3339(60) if status == "revoked" else None,
            revocation_reason="superseded" if status == "revoked" else None))
        assert f"request-signing key is {status}" == refused(tl, token(sh)).reason

    def test_bad_signature(self, sh: MockRegion, trust_list: Build) -> None:
        """Another message's signature does not verify."""
        forged = token(sh).rsplit(".", 1)[0] + "." + token(sh, jti="other").rsplit(".", 1)[1]
        assert "signature does not verify" == refused(trust_list(), forged).reason

    def test_second_anchor_under_the_kid_verifies(self, sh: MockRegion,
                                                  trust_list: Build) -> None:
        """Two anchors under one kid: the second anchor's key verifies after the first
        fails; without it, nothing does."""
        real = public_jwk(sh.private_key(sh.request_kid).public_key())
        stranger = public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key())
        tl = self._request_anchors(sh, trust_list, [stranger, real])
        pending = start_request_token(token(sh), trust_list=tl, audience=GATEWAY,
                                      method="POST", path=PATH, body=BODY, now=T)
        assert pending.verify_signature() is pending.anchors[1]
        alone = self._request_anchors(sh, trust_list, [stranger])
        assert "signature does not verify" == refused(alone, token(sh)).reason

    def test_unusable_or_weak_key_verifies_nothing(self, sh: MockRegion,
                                                   trust_list: Build) -> None:
        """An anchor whose JWK cannot be used, or whose RSA key is under 2048 bits,
        verifies nothing, even a token really signed with it."""
        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the point
        credential = sign_compact({"alg": "RS256", "typ": "ecert-request+jwt",
                                   "kid": sh.request_kid}, claims(), weak, "RS256")
        for jwk in ({"kty": "oct", "k": "c2VjcmV0"}, public_jwk(weak.public_key())):
            tl = self._request_anchors(sh, trust_list, [jwk])
            assert "signature does not verify" == refused(tl, credential).reason


class TestBinding:
    """aud, htm, htu, body_sha256 and jti bind the token to this request."""

    def test_audience(self, sh: MockRegion, trust_list: Build) -> None:
        """aud is the gateway, or a list holding it."""
        tl = trust_list()
        check(tl, signed(sh, {}, claims(aud=["320500", GATEWAY])))
        for aud in ("320500", ["320500"], DELETE):
            assert "aud must be 330500" == refused(tl, signed(sh, {}, claims(aud=aud))).reason

    def test_method_and_path(self, sh: MockRegion, trust_list: Build) -> None:
        """A token for another method or path is refused."""
        tl = trust_list()
        assert "htm must be POST" == refused(tl, token(sh, method="GET")).reason
        assert "htu does not name this request's path" == refused(
            tl, token(sh), path="/v1/verifications").reason

    def test_body_hash(self, sh: MockRegion, trust_list: Build) -> None:
        """The body's SHA-256 in hex, either case; another body's is refused."""
        tl = trust_list()
        upper = hashlib.sha256(BODY).hexdigest().upper()
        check(tl, signed(sh, {}, claims(body_sha256=upper)))
        for digest in (hashlib.sha256(b"{}").hexdigest(), 5, "é" * 64, DELETE):
            assert "body_sha256 does not match the request body" == refused(
                tl, signed(sh, {}, claims(body_sha256=digest))).reason
        assert "body_sha256 does not match the request body" == refused(
            tl, token(sh), body=BODY + b" ").reason

    @pytest.mark.parametrize(("jti", "accepted"), [
        ("j" * 128, True), ("j" * 129, False), ("", False), ("a\nb", False), (5, False),
    ], ids=["128", "129", "empty", "newline", "int"])
    def test_jti(self, sh: MockRegion, trust_list: Build, jti: object, accepted: bool) -> None:
        """A jti of 1..128 printable characters."""
        credential = signed(sh, {}, claims(jti=jti))
        if accepted:
            assert jti == check(trust_list(), credential).jti
        else:
            assert "jti must be a string of 1..128 characters" == refused(
                trust_list(), credential).reason


_FUZZ_TRUST_LIST = TrustList.from_json(Federation.standard(seed=11, codes=[SH]).trust_list(
    version=1, issued_at=NOW - timedelta(days=1), next_update=NOW + timedelta(days=6)))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_is_refused_with_its_own_error(text: str) -> None:
    """Arbitrary text is refused with RequestTokenError, never another exception."""
    with pytest.raises(RequestTokenError):
        check(_FUZZ_TRUST_LIST, text)


class TestAgreement:
    """check_agreement: the partner's agreement covers the type and its own matter."""

    def _partner(self, trust_list: Build, **entry: Any) -> Any:
        tl = trust_list(lambda doc: partner(doc, SH).update(entry))
        return tl.partner(SH)

    def test_covered(self, trust_list: Build) -> None:
        """Listed codes, or wildcards, are covered."""
        listed = self._partner(trust_list, recognised_licence_types=["T1"],
                               recognised_matters=["M1"])
        check_agreement(listed, type_code="T1", matter_code="M1")
        wildcard = self._partner(trust_list, recognised_licence_types=["*"],
                                 recognised_matters=["*"])
        check_agreement(wildcard, type_code="T9", matter_code="M9")

    @pytest.mark.parametrize(("type_code", "matter_code", "reason"), [
        ("T2", "M1", "the agreement does not cover licence type T2"),
        ("T1", "M2", "the agreement does not cover matter M2"),
    ])
    def test_not_covered(self, trust_list: Build, type_code: str, matter_code: str,
                         reason: str) -> None:
        """A type or matter the agreement does not list is refused, not as a suspension."""
        listed = self._partner(trust_list, recognised_licence_types=["T1"],
                               recognised_matters=["M1"])
        with pytest.raises(AgreementError) as info:
            check_agreement(listed, type_code=type_code, matter_code=matter_code)
        assert (reason, False) == (info.value.reason, info.value.suspended)

    def test_suspended_partner(self, trust_list: Build) -> None:
        """A suspended partner is refused whatever it asks, as a suspension."""
        suspended = self._partner(trust_list, status="suspended")
        with pytest.raises(AgreementError) as info:
            check_agreement(suspended, type_code="T1", matter_code="M1")
        assert ("partner 310000 is suspended", True) == (info.value.reason,
                                                         info.value.suspended)


class TestOneRuleForLicencesAndRequests:
    """Licences and request tokens follow the same header and anchor rules."""

    @pytest.mark.parametrize("header", [
        {"jku": "https://evil.example/jwks"}, {"x5u": "https://evil.example/c"},
        {"jwk": {"kty": "EC"}}, {"crit": ["exp"]}, {"alg": "none"}, {"alg": "HS256"},
    ], ids=lambda h: f"{next(iter(h))}={h[next(iter(h))]}")
    def test_both_refuse_the_same_header(self, sh: MockRegion, trust_list: Build,
                                         header: dict[str, Any]) -> None:
        """A header parameter or alg a licence may not carry, a request token may not
        either."""
        tl = trust_list()
        licence = sh.issue(iat=T - 60, header_override=header).token
        verdict = Verifier(tl).check(licence, at=NOW)
        failed = [c for c in verdict.checks if c.result is not CheckResult.PASSED]
        assert failed[0].name in {"header", "header.alg"}
        with pytest.raises(RequestTokenError):
            check(tl, signed(sh, header, claims()))

    def test_an_anchor_verifies_only_its_use(self, sh: MockRegion, trust_list: Build) -> None:
        """A request-signing key signs no licence, and a licence-signing key no request."""
        tl = trust_list()
        assert [sh.request_kid] == [
            a.kid for a in tl.anchors_for(sh.request_kid, AnchorUse.REQUEST_SIGNING, region=SH)]
        assert [] == tl.anchors_for(sh.request_kid, AnchorUse.LICENCE_SIGNING)
        assert [] == tl.anchors_for(sh.request_kid, AnchorUse.REQUEST_SIGNING, region="520500")
        licence = sh.issue(iat=T - 60, kid=sh.request_kid).token
        assert SubIndication.SIGNING_KEY_NOT_VALID == Verifier(tl).check(
            licence, at=NOW).sub_indication
        request = sh.request_token(body=BODY, path=PATH, iat=T, kid=sh.licence_kid)
        assert "kid is not a request-signing key of the issuing region" == refused(
            tl, request).reason
