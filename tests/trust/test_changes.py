"""Operators' changes to the trust list, diffs and signed exports (pure)."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from mocks import Federation, MockRegion, rfc3339, sign_compact
from tests.trust.conftest import NOW, anchor, partner
from trust import (
    AnchorStatus,
    ChangeError,
    ImportRefusal,
    PartnerStatus,
    SignedListError,
    TrustList,
    apply_changes,
    check_changes,
    diff_documents,
    export_claims,
    export_signed,
    is_region_code,
    key_from_jwk,
    parse_changes,
    verify_export,
)

Doc = dict[str, Any]


@pytest.fixture
def doc(federation: Federation) -> Doc:
    """The federation's list, version 12, issued a day before NOW for a week."""
    return federation.trust_list(version=12, issued_at=NOW - timedelta(days=1),
                                 next_update=NOW + timedelta(days=6))


def _apply(doc: Doc, *changes: dict[str, Any], at: datetime = NOW) -> Doc:
    return apply_changes(doc, parse_changes(list(changes)), at=at)


def _problems(doc: Doc, *changes: dict[str, Any], at: datetime = NOW) -> list[str]:
    return check_changes(doc, parse_changes(list(changes)), at=at)


def _pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _self_signed(*, ca: bool, cert_sign: bool) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "测试根CA")])
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(7)
        .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2030, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
            crl_sign=cert_sign, encipher_only=False, decipher_only=False), critical=True)
    )
    return builder.sign(key, hashes.SHA256())


def _jwk_anchor(region: MockRegion, kid: str, **extra: Any) -> dict[str, Any]:
    jwk = region.public_jwk(kid)
    return {"kind": "add-anchor", "region_code": region.region_code,
            "anchor": {"kid": extra.pop("new_kid", kid), "use": "licence-signing",
                       "jwk": {**jwk, "kid": extra.pop("new_kid_in_jwk", jwk["kid"])},
                       "valid_from": "2026-01-01T00:00:00Z",
                       "valid_until": "2027-12-31T23:59:59Z", **extra}}


class TestInputChecks:
    """Every input check refuses with a clear message."""

    def test_weak_rsa_key(self, doc: Doc, sh: MockRegion) -> None:
        """A 1024-bit RSA key is refused as weak (the list loader would keep it)."""
        kid = sh.add_signing_key("RS256", kid="310000-weak-1024", rsa_bits=1024, publish=False)
        problems = _problems(doc, _jwk_anchor(sh, kid))
        assert [("change #1 (add-anchor) anchor '310000-weak-1024': weak key: RSA key of 1024 "
                "bits is under the 2048-bit minimum")] == problems

    def test_unsupported_curve_jwk(self, doc: Doc, sh: MockRegion) -> None:
        """A P-521 JWK is refused as an unsupported key."""
        change = _jwk_anchor(sh, sh.licence_kid, new_kid="310000-p521",
                             new_kid_in_jwk="310000-p521")
        change["anchor"]["jwk"]["crv"] = "P-521"
        problems = _problems(doc, change)
        assert 1 == len(problems)
        assert "unsupported key: EC curve 'P-521' is not on the allow-list" in problems[0]

    def test_unsupported_curve_pem(self, doc: Doc) -> None:
        """A secp256k1 public key in PEM is refused as an unsupported key."""
        pem = ec.generate_private_key(ec.SECP256K1()).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        problems = _problems(doc, {"kind": "add-anchor", "region_code": "310000", "anchor": {
            "kid": "310000-k1", "use": "licence-signing", "pem": pem,
            "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z"}})
        assert 1 == len(problems)
        assert "unsupported key: EC curve secp256k1 is not on the allow-list" in problems[0]

    def test_kid_used_by_another_anchor(self, doc: Doc, sh: MockRegion) -> None:
        """A kid already in the list, even under another partner, is refused."""
        bijie_kid = "520500-lic-2026a"
        problems = _problems(doc, _jwk_anchor(sh, sh.licence_kid, new_kid=bijie_kid,
                                              new_kid_in_jwk=bijie_kid))
        assert [(f"change #1 (add-anchor) anchor {bijie_kid!r}: kid {bijie_kid!r} is already "
                "used by an anchor of partner 520500")] == problems

    def test_root_ca_that_is_no_ca(self, doc: Doc, sh: MockRegion) -> None:
        """A signer certificate offered as root-ca is refused: basicConstraints CA false."""
        problems = _problems(doc, {"kind": "add-anchor", "region_code": "310000", "anchor": {
            "kid": "310000-root-bad", "use": "root-ca", "pem": _pem_cert(sh.signer_certificate)}})
        assert [("change #1 (add-anchor) anchor '310000-root-bad': root-ca certificate is not a "
                "CA: basicConstraints CA is false")] == problems

    def test_root_ca_without_key_cert_sign(self, doc: Doc) -> None:
        """A CA certificate whose keyUsage lacks keyCertSign is refused as root-ca."""
        cert = _self_signed(ca=True, cert_sign=False)
        problems = _problems(doc, {"kind": "add-anchor", "region_code": "310000", "anchor": {
            "kid": "310000-root-nosign", "use": "root-ca", "pem": _pem_cert(cert)}})
        assert [("change #1 (add-anchor) anchor '310000-root-nosign': root-ca certificate is not "
                "a CA: keyUsage lacks keyCertSign")] == problems

    def test_root_ca_needs_a_certificate(self, doc: Doc, sh: MockRegion) -> None:
        """A bare JWK cannot be a root-ca anchor."""
        change = _jwk_anchor(sh, sh.licence_kid, new_kid="310000-root-jwk",
                             new_kid_in_jwk="310000-root-jwk")
        change["anchor"]["use"] = "root-ca"
        assert [("change #1 (add-anchor) anchor '310000-root-jwk': a root-ca anchor needs a "
                "certificate (pem or x5c)")] == _problems(doc, change)

    @pytest.mark.parametrize("until", ["2026-03-01T00:00:00Z", "2026-02-01T00:00:00Z"])
    def test_empty_window(self, doc: Doc, sh: MockRegion, until: str) -> None:
        """valid_until not after valid_from is an empty window."""
        kid = sh.add_signing_key("ES256", kid=f"310000-empty-{until[5:7]}", publish=False)
        change = _jwk_anchor(sh, kid, valid_from="2026-03-01T00:00:00Z", valid_until=until)
        assert [(f"change #1 (add-anchor) anchor {kid!r}: validity window is empty (valid_from "
                f"2026-03-01T00:00:00Z is not before valid_until {until})")] == _problems(
            doc, change)

    def test_window_already_over_one_second_either_side(self, doc: Doc, sh: MockRegion) -> None:
        """A window that ended a second before ``at`` is refused; ending at or after is fine."""
        kid = sh.add_signing_key("ES256", kid="310000-old", publish=False)
        ended = _jwk_anchor(sh, kid, valid_from="2025-01-01T00:00:00Z",
                            valid_until=rfc3339(NOW - timedelta(seconds=1)))
        assert [(f"change #1 (add-anchor) anchor {kid!r}: validity window is already over "
                f"(valid_until {rfc3339(NOW - timedelta(seconds=1))} is before "
                f"{rfc3339(NOW)})")] == _problems(doc, ended)
        for end in (NOW, NOW + timedelta(seconds=1)):
            ok = _jwk_anchor(sh, kid, valid_from="2025-01-01T00:00:00Z", valid_until=rfc3339(end))
            assert [] == _problems(doc, ok)

    @pytest.mark.parametrize("code", ["31000", "3100000", "990000", "031000", "31000A"])
    def test_region_code_not_gbt2260(self, doc: Doc, code: str) -> None:
        """A region code that is not 6 digits naming a province is refused."""
        problems = _problems(doc, {"kind": "upsert-partner",
                                   "partner": {"region_code": code, "name": "某地"}})
        assert [(f"change #1 (upsert-partner): region_code {code!r} is not a 6-digit GB/T 2260 "
                "code")] == problems
        assert not is_region_code(code)

    def test_every_problem_is_reported_at_once(self, doc: Doc, sh: MockRegion) -> None:
        """Two bad changes give two messages, numbered by change."""
        kid = sh.add_signing_key("RS256", kid="310000-weak-b", rsa_bits=1024, publish=False)
        problems = _problems(doc, _jwk_anchor(sh, kid),
                             {"kind": "suspend-partner", "region_code": "999999"})
        assert 2 == len(problems)
        assert problems[0].startswith("change #1 (add-anchor)")
        assert problems[1].startswith("change #2 (suspend-partner)")

    def test_malformed_changes(self) -> None:
        """Unknown kinds and missing members are refused by the parser."""
        with pytest.raises(ChangeError) as caught:
            parse_changes([{"kind": "delete-everything"}, {"kind": "revoke-anchor",
                                                            "region_code": "310000"}])
        assert 2 == len(caught.value.problems)
        assert "kind 'delete-everything' is not one of" in caught.value.problems[0]
        assert "change #2 (revoke-anchor): needs a kid" == caught.value.problems[1]
        with pytest.raises(ChangeError, match="at least one change"):
            parse_changes([])

    def test_agreement_fields_are_checked(self, doc: Doc) -> None:
        """Bad agreement fields each get a message; anchors cannot be set through upsert."""
        problems = _problems(doc, {"kind": "upsert-partner", "partner": {
            "region_code": "310000", "identifier_check": "loose", "status_max_age_s": 0,
            "recognised_licence_types": ["*", "11100000000013338W032"],
            "endpoints": {"status_uri_prefixes": ["ftp://x"], "query": None},
            "anchors": []}})
        text = " | ".join(problems)
        assert "unknown partner field(s) ['anchors'] (anchors change with add-anchor" in text
        assert "identifier_check must be 'strict' or 'lenient'" in text
        assert "status_max_age_s must be an integer" in text
        assert "'*' (every code) must stand alone" in text
        assert "status_uri_prefixes must be a list of http(s) URL prefixes" in text

    @pytest.mark.parametrize("prefix", [
        "https://gw.example/status/../", "https://gw.example/%2e%2e/status/",
        "https://u@gw.example/status/", "https://gw.example/status/?x=1",
        "https://gw.example/status/#x", "https://gw.example\\status/"])
    def test_status_prefix_that_could_be_read_two_ways_is_refused(
            self, doc: Doc, prefix: str) -> None:
        """A prefix with a dot segment, userinfo, query, fragment or backslash is refused."""
        problems = _problems(doc, {"kind": "upsert-partner", "partner": {
            "region_code": "310000", "endpoints": {"status_uri_prefixes": [prefix]}}})
        assert any("status_uri_prefixes must be a list of http(s) URL prefixes" in p
                   for p in problems), problems


class TestChangeKinds:
    """Each kind of change does what it says, and only that."""

    def test_version_time_and_lifetime(self, doc: Doc) -> None:
        """The next list is version + 1, issued at ``at``, with the same lifetime."""
        before = copy.deepcopy(doc)
        new = _apply(doc, {"kind": "suspend-partner", "region_code": "520500"})
        assert 13 == new["version"]
        assert rfc3339(NOW) == new["issued_at"]
        assert rfc3339(NOW + timedelta(days=7)) == new["next_update"]
        assert before == doc

    def test_renew_sets_next_update(self, doc: Doc) -> None:
        """``renew`` moves next_update and nothing else; a past one is refused."""
        later = NOW + timedelta(days=30)
        new = _apply(doc, {"kind": "renew", "next_update": rfc3339(later)})
        assert rfc3339(later) == new["next_update"]
        assert doc["partners"] == new["partners"]
        assert 1 == len(_problems(doc, {"kind": "renew", "next_update": rfc3339(NOW)}))

    def test_upsert_new_and_existing_partner(self, doc: Doc) -> None:
        """A new partner gets safe defaults; an existing one keeps its anchors and status."""
        new = _apply(doc, {"kind": "upsert-partner", "partner": {
            "region_code": "220600", "name": "白山市", "groups": ["kstb"],
            "recognised_licence_types": ["11100000000013338W032"],
            "recognised_matters": ["*"], "identifier_check": "lenient",
            "status_max_age_s": 3600,
            "endpoints": {"status_uri_prefixes": ["https://gw.baishan.example/status/"],
                          "query": None}}},
            {"kind": "upsert-partner", "partner": {"region_code": "310000",
                                                   "recognised_matters": ["M1"]}})
        baishan = TrustList.from_json(new).partners["220600"]
        assert PartnerStatus.ACTIVE is baishan.status
        assert () == baishan.anchors
        assert 3600 == baishan.status_max_age_s
        shanghai = TrustList.from_json(new).partners["310000"]
        assert frozenset({"M1"}) == shanghai.matters
        assert len(partner(doc, "310000")["anchors"]) == len(shanghai.anchors)
        assert ["change #1 (upsert-partner): a new partner needs a name"] == _problems(
            doc, {"kind": "upsert-partner", "partner": {"region_code": "650000"}})

    def test_add_anchor_from_jwk_and_jwks(self, doc: Doc, sh: MockRegion) -> None:
        """A JWK or one key of a JWKS becomes an anchor with public members only."""
        kid = sh.add_signing_key("ES256", kid="310000-lic-new", publish=False)
        new = _apply(doc, _jwk_anchor(sh, kid))
        entry = anchor(new, kid)
        assert {"kty", "crv", "x", "y", "kid", "alg"} == set(entry["jwk"])
        assert "active" == entry["status"]
        other = sh.add_signing_key("ES256", kid="310000-lic-other", publish=False)
        jwks = {"keys": [sh.public_jwk(kid), sh.public_jwk(other)]}
        by_jwks: dict[str, Any] = {"kind": "add-anchor", "region_code": "310000", "anchor": {
            "kid": other, "use": "licence-signing", "jwks": jwks,
            "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z"}}
        assert other in TrustList.from_json(_apply(doc, by_jwks)).by_kid
        ambiguous = copy.deepcopy(by_jwks)
        del ambiguous["anchor"]["kid"]
        assert [("change #1 (add-anchor): jwks holds 2 keys; name exactly one of them with "
                "kid")] == _problems(doc, ambiguous)

    def test_add_anchor_from_pem(self, doc: Doc, sh: MockRegion) -> None:
        """A PEM CA certificate becomes a root-ca x5c anchor with the certificate's window;
        a PEM public key becomes a JWK anchor."""
        root = _self_signed(ca=True, cert_sign=True)
        new = _apply(doc, {"kind": "add-anchor", "region_code": "310000", "anchor": {
            "kid": "310000-root-2030", "use": "root-ca", "pem": _pem_cert(root)}})
        entry = anchor(new, "310000-root-2030")
        assert [base64.b64encode(root.public_bytes(serialization.Encoding.DER)).decode()] == \
            entry["x5c"]
        assert ("2026-01-01T00:00:00Z", "2030-01-01T00:00:00Z") == (entry["valid_from"],
                                                                    entry["valid_until"])
        public = ed25519.Ed25519PrivateKey.generate().public_key()
        pem = public.public_bytes(serialization.Encoding.PEM,
                                  serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        new = _apply(doc, {"kind": "add-anchor", "region_code": "310000", "anchor": {
            "kid": "310000-ed", "use": "status-signing", "pem": pem,
            "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z"}})
        assert key_from_jwk(anchor(new, "310000-ed")["jwk"]).public_key == public

    def test_suspend_and_resume(self, doc: Doc, sh: MockRegion) -> None:
        """Partners and anchors suspend and resume; doing it twice is refused."""
        kid = sh.licence_kid
        new = _apply(doc, {"kind": "suspend-partner", "region_code": "310000"},
                     {"kind": "suspend-anchor", "region_code": "310000", "kid": kid})
        assert "suspended" == partner(new, "310000")["status"]
        assert "suspended" == anchor(new, kid)["status"]
        assert [f"change #1 (suspend-anchor): anchor {kid!r} is already suspended"] == _problems(
            new, {"kind": "suspend-anchor", "region_code": "310000", "kid": kid})
        back = _apply(new, {"kind": "resume-partner", "region_code": "310000"},
                      {"kind": "resume-anchor", "region_code": "310000", "kid": kid})
        assert "active" == partner(back, "310000")["status"]
        assert "active" == anchor(back, kid)["status"]

    def test_revoke_superseded_is_not_retroactive(self, doc: Doc, sh: MockRegion) -> None:
        """Revoked as superseded at T: signatures before T stay good, from T on they do not."""
        at = NOW - timedelta(hours=1)
        new = _apply(doc, {"kind": "revoke-anchor", "region_code": "310000",
                           "kid": sh.licence_kid, "reason": "superseded",
                           "revoked_at": rfc3339(at)})
        revoked = TrustList.from_json(new).anchors(sh.licence_kid)[0]
        assert AnchorStatus.REVOKED is revoked.status
        assert not revoked.revoked_for(at - timedelta(seconds=1))
        assert revoked.revoked_for(at)

    def test_revocation_escalates_only_to_key_compromise(self, doc: Doc, sh: MockRegion) -> None:
        """A superseded anchor may later be marked compromised, never the other way round."""
        kid = sh.licence_kid
        superseded = _apply(doc, {"kind": "revoke-anchor", "region_code": "310000", "kid": kid,
                                  "reason": "superseded"})
        assert rfc3339(NOW) == anchor(superseded, kid)["revoked_at"]
        compromised = _apply(superseded, {"kind": "revoke-anchor", "region_code": "310000",
                                          "kid": kid, "reason": "key-compromise"})
        assert TrustList.from_json(compromised).anchors(kid)[0].revoked_for(
            datetime(2026, 1, 2, tzinfo=UTC))
        assert [(f"change #1 (revoke-anchor): anchor {kid!r} is already revoked "
                "(key-compromise); only an escalation to key-compromise may follow")] == _problems(
            compromised, {"kind": "revoke-anchor", "region_code": "310000", "kid": kid,
                          "reason": "cessation"})
        assert [f"change #1 (resume-anchor): anchor {kid!r} is revoked; revocation is final"
                ] == _problems(compromised, {"kind": "resume-anchor", "region_code": "310000",
                                             "kid": kid})
        assert 1 == len(_problems(doc, {"kind": "revoke-anchor", "region_code": "310000",
                                        "kid": kid, "reason": "lost"}))

    def test_remove_anchor_and_partner(self, doc: Doc, sh: MockRegion) -> None:
        """Removal takes the entry out; unknown ones are refused."""
        new = _apply(doc, {"kind": "remove-anchor", "region_code": "310000",
                           "kid": sh.status_kid})
        assert sh.status_kid not in TrustList.from_json(new).by_kid
        new = _apply(new, {"kind": "remove-partner", "region_code": "520500"})
        assert {"310000"} == set(TrustList.from_json(new).partners)
        assert ["change #1 (remove-partner): partner 520500 is not in the list"] == _problems(
            new, {"kind": "remove-partner", "region_code": "520500"})


class TestDiff:
    """The diff names what changed, by partner and kid."""

    def test_diff(self, doc: Doc, sh: MockRegion) -> None:
        """Added, removed and changed partners and anchors are each reported."""
        kid = sh.add_signing_key("ES256", kid="310000-lic-diff", publish=False)
        new = _apply(doc, _jwk_anchor(sh, kid),
                     {"kind": "revoke-anchor", "region_code": "310000", "kid": sh.licence_kid,
                      "reason": "superseded"},
                     {"kind": "remove-partner", "region_code": "520500"},
                     {"kind": "upsert-partner", "partner": {"region_code": "220600",
                                                            "name": "白山市"}})
        entries = [(e.op, e.region_code, e.kid) for e in diff_documents(doc, new)]
        assert [("list-changed", None, None), ("partner-added", "220600", None),
                ("anchor-changed", "310000", sh.licence_kid),
                ("anchor-added", "310000", kid),
                ("partner-removed", "520500", None)] == entries
        changed = diff_documents(doc, new)[2].to_json()
        assert ["active", "revoked"] == changed["fields"]["status"]
        assert () == diff_documents(doc, doc)


class TestSignedExport:
    """Signed exports verify, and refuse rollback, freeze, tampering and strangers."""

    @pytest.fixture
    def signer(self) -> tuple[Callable[[dict[str, Any], dict[str, Any]], str], dict[str, Any]]:
        """An EdDSA signer and the trusted-key map that accepts it."""
        private = ed25519.Ed25519PrivateKey.generate()

        def sign(header: dict[str, Any], claims: dict[str, Any]) -> str:
            return sign_compact({**header, "alg": "EdDSA", "kid": "330500-tl-test"}, claims,
                                private, "EdDSA")

        raw = private.public_key().public_bytes(serialization.Encoding.Raw,
                                                serialization.PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519",
               "x": base64.urlsafe_b64encode(raw).decode().rstrip("=")}
        return sign, {"330500-tl-test": key_from_jwk(jwk)}

    def test_round_trip(self, doc: Doc, signer: Any) -> None:
        """An export verifies and carries the document unchanged."""
        sign, keys = signer
        token = export_signed(doc, sign)
        result = verify_export(token, keys, at=NOW, current=None)
        assert doc == result.document
        assert 12 == result.trust_list.version
        assert "330500-tl-test" == result.kid
        head = orjson.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
        assert "trustlist+jwt" == head["typ"]

    def _refusal(self, token: str, keys: Any, **kwargs: Any) -> ImportRefusal:
        with pytest.raises(SignedListError) as caught:
            verify_export(token, keys, **kwargs)
        return caught.value.reason

    def test_rollback_refused(self, doc: Doc, signer: Any) -> None:
        """A lower version than the current list is refused as rollback."""
        sign, keys = signer
        current = {**doc, "version": 13}
        assert ImportRefusal.ROLLBACK == self._refusal(export_signed(doc, sign), keys, at=NOW,
                                                       current=current)

    def test_same_version(self, doc: Doc, signer: Any) -> None:
        """The current version with the same content is accepted; with other content refused."""
        sign, keys = signer
        token = export_signed(doc, sign)
        assert verify_export(token, keys, at=NOW, current=copy.deepcopy(doc)).same_as_current
        other = {**doc, "issuer": "330500x"}
        assert ImportRefusal.CONFLICT == self._refusal(token, keys, at=NOW, current=other)

    def test_freeze_one_second_either_side(self, doc: Doc, signer: Any) -> None:
        """An export past its next_update is refused (freeze); at next_update it is fine."""
        sign, keys = signer
        token = export_signed(doc, sign)
        next_update = NOW + timedelta(days=6)
        assert verify_export(token, keys, at=next_update)
        assert ImportRefusal.FREEZE == self._refusal(token, keys,
                                                     at=next_update + timedelta(seconds=1))

    def test_tampered_refused(self, doc: Doc, signer: Any) -> None:
        """A payload changed after signing fails the signature."""
        sign, keys = signer
        head, _, sig = export_signed(doc, sign).split(".")
        evil = {**doc, "version": 99}
        claims = {"iss": "330500", "iat": 0, "exp": int((NOW + timedelta(days=6)).timestamp()),
                  "trust_list_version": 99, "trust_list": evil}
        body = base64.urlsafe_b64encode(orjson.dumps(claims)).decode().rstrip("=")
        assert ImportRefusal.SIGNATURE == self._refusal(f"{head}.{body}.{sig}", keys, at=NOW)

    def test_repeated_member_name_refused(self, doc: Doc) -> None:
        """A signed export whose claims repeat a name (the last value genuine) is malformed."""
        private = ed25519.Ed25519PrivateKey.generate()
        raw = private.public_key().public_bytes(serialization.Encoding.Raw,
                                                serialization.PublicFormat.Raw)
        keys = {"330500-tl-test": key_from_jwk({
            "kty": "OKP", "crv": "Ed25519",
            "x": base64.urlsafe_b64encode(raw).decode().rstrip("=")})}
        header, claims = export_claims(doc)
        head = orjson.dumps({**header, "alg": "EdDSA", "kid": "330500-tl-test"})
        body = orjson.dumps(claims)
        assert verify_export(sign_compact(head, body, private, "EdDSA"), keys, at=NOW)
        repeated = body.replace(b'{"iss":', b'{"iss":"310000","iss":', 1)
        with pytest.raises(SignedListError, match="claims repeats a member name") as caught:
            verify_export(sign_compact(head, repeated, private, "EdDSA"), keys, at=NOW)
        assert ImportRefusal.FORMAT == caught.value.reason

    def test_unknown_signer_and_bad_form(self, doc: Doc, signer: Any) -> None:
        """A stranger's key, another typ, or junk are refused with their reasons."""
        sign, _ = signer
        token = export_signed(doc, sign)
        assert ImportRefusal.UNTRUSTED_KEY == self._refusal(token, {}, at=NOW)
        stranger = ed25519.Ed25519PrivateKey.generate()
        wrong_typ = sign_compact({"typ": "JWT", "alg": "EdDSA", "kid": "x"}, {}, stranger,
                                 "EdDSA")
        assert ImportRefusal.FORMAT == self._refusal(wrong_typ, {}, at=NOW)
        assert ImportRefusal.FORMAT == self._refusal("not-a-jws", {}, at=NOW)
