"""SM2SM3 licences and status lists through the verifier: same verdicts, same precedence.

毕节 (520500) of the seeded federation signs its licences and status lists with
SM2 (its mock signer is plain Python, the gateway's verifier OpenSSL: each
verdict here is one implementation checked against the other).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import pytest

from mocks import SM2_ALG, MockRegion, b64url_encode
from tests.openssl import OpenSslSm2Key
from tests.trust.conftest import T, anchor
from tests.trust.test_verifier import Build, _pad, assert_sub, resign, status_of, verify
from trust import (
    Alg,
    AnchorUse,
    CheckResult,
    Sm2UnavailableError,
    StatusListError,
    SubIndication,
    TrustListError,
    _sm2,
    parse_status_list,
)


@pytest.fixture
def bj(federation: Any) -> MockRegion:
    """Bijie, which signs with SM2."""
    region: MockRegion = federation["520500"]
    assert SM2_ALG == region.licence_alg
    return region


def _alg(token: str, alg: str) -> str:
    """The token with its header's alg replaced (the signature left as it is)."""
    head_b64, rest = token.split(".", 1)
    head = orjson.loads(_pad(head_b64))
    head["alg"] = alg
    return b64url_encode(orjson.dumps(head)) + "." + rest


class TestSm2Licences:
    """A licence signed SM2SM3 by a ``kid`` anchor is judged as any other."""

    def test_passes_with_its_sm2_status_list(self, bj: MockRegion, trust_list: Build) -> None:
        """Licence and status list both SM2-signed: TOTAL_PASSED, the status consulted."""
        licence = bj.issue(iat=T - 60)
        assert {"alg": "SM2SM3", "typ": "ecert+jwt", "kid": "520500-lic-2026a"} == licence.header
        verdict = verify(trust_list(), licence.token, bj)
        assert_sub(None, verdict)
        signature = verdict.check("signature")
        assert signature is not None
        assert "SM2SM3 signature verifies with '520500-lic-2026a'" == signature.detail
        assert verdict.status_used is not None

    def test_revoked_in_its_sm2_status_list(self, bj: MockRegion, trust_list: Build) -> None:
        """An entry marked invalid in the SM2-signed list is REVOKED."""
        licence = bj.issue(iat=T - 60)
        assert licence.status_idx is not None
        bj.revoke(licence.status_idx)
        assert_sub(SubIndication.REVOKED, verify(trust_list(), licence.token, bj))

    def test_payload_changed_after_signing(self, bj: MockRegion, trust_list: Build) -> None:
        """A changed payload under an intact SM2 signature is SIG_CRYPTO_FAILURE."""
        licence = bj.issue(iat=T - 60)
        head, _, sig = licence.token.split(".")
        body = {**licence.claims, "lic": {**licence.claims["lic"], "holder_name": "张三"}}
        token = f"{head}.{b64url_encode(orjson.dumps(body))}.{sig}"
        assert_sub(SubIndication.SIG_CRYPTO_FAILURE, verify(trust_list(), token, bj))

    @pytest.mark.parametrize("signature", ["", "AAAA", "A" * 86, "A" * 88],
                             ids=["empty", "3-bytes", "64-zero-bytes", "66-bytes"])
    def test_bad_signature_part(self, bj: MockRegion, trust_list: Build,
                                signature: str) -> None:
        """Empty, short, all-zero (r = s = 0) or long: SIG_CRYPTO_FAILURE, the checks in order."""
        token = bj.issue(iat=T - 60).token.rsplit(".", 1)[0] + "." + signature
        assert_sub(SubIndication.SIG_CRYPTO_FAILURE, verify(trust_list(), token, bj))

    def test_es256_claimed_over_an_sm2_key(self, bj: MockRegion, trust_list: Build) -> None:
        """alg ES256 on Bijie's SM2 key never verifies (no algorithm confusion)."""
        token = _alg(bj.issue(iat=T - 60).token, "ES256")
        assert_sub(SubIndication.SIG_CRYPTO_FAILURE, verify(trust_list(), token, bj))

    def test_sm2sm3_claimed_over_a_p256_key(self, sh: MockRegion, trust_list: Build) -> None:
        """alg SM2SM3 on Shanghai's P-256 key never verifies."""
        token = _alg(sh.issue(iat=T - 60).token, "SM2SM3")
        assert_sub(SubIndication.SIG_CRYPTO_FAILURE, verify(trust_list(), token, sh))

    def test_status_key_is_not_a_licence_key(self, bj: MockRegion, trust_list: Build) -> None:
        """A licence signed with the SM2 status-signing key: SIGNING_KEY_NOT_VALID."""
        token = bj.issue(iat=T - 60, kid=bj.status_kid).token
        assert_sub(SubIndication.SIGNING_KEY_NOT_VALID, verify(trust_list(), token, bj))

    def test_signed_outside_the_anchor_window(self, bj: MockRegion, trust_list: Build) -> None:
        """Signed before the SM2 anchor's window opened: SIGNING_KEY_NOT_VALID, which
        comes before the signature and the claims."""
        token = bj.issue(iat=1_700_000_000, exp=1_900_000_000).token
        assert_sub(SubIndication.SIGNING_KEY_NOT_VALID, verify(trust_list(), token, bj))

    def test_key_compromise_reaches_back(self, bj: MockRegion, trust_list: Build) -> None:
        """An SM2 anchor revoked for key compromise verifies nothing: REVOKED."""
        def revoke(doc: dict[str, Any]) -> None:
            anchor(doc, bj.licence_kid).update(status="revoked", revoked_at="2026-11-20T00:00:00Z",
                                               revocation_reason="key-compromise")

        assert_sub(SubIndication.REVOKED, verify(trust_list(revoke),
                                                 bj.issue(iat=T - 60).token, bj))

    def test_jurisdiction_after_a_good_sm2_signature(self, bj: MockRegion,
                                                     trust_list: Build) -> None:
        """Bijie's key signing a Shanghai iss: the signature passes, jurisdiction fails."""
        token = resign(bj, bj.issue(iat=T - 60).token,
                       claims=lambda c: c.update(iss="310000"))
        verdict = verify(trust_list(), token, bj)
        assert_sub(SubIndication.JURISDICTION_MISMATCH, verdict)
        signature = verdict.check("signature")
        assert signature is not None
        assert CheckResult.PASSED == signature.result


class TestSm2Anchors:
    """SM2 keys in the trust list: parsed at load, refused there when off the curve."""

    def test_off_curve_key_is_refused_at_load(self, bj: MockRegion, trust_list: Build) -> None:
        """An SM2 JWK with y changed loads as an unusable anchor; its licences then fail
        CRYPTO_CONSTRAINTS_FAILURE, as for any key the list cannot use."""
        def bend(doc: dict[str, Any]) -> None:
            jwk = anchor(doc, bj.licence_kid)["jwk"]
            y = bytearray(_pad(jwk["y"]))
            y[-1] ^= 1
            jwk["y"] = b64url_encode(bytes(y))

        tl = trust_list(bend)
        loaded = tl.anchors(bj.licence_kid)[0]
        assert (None, "SM2 point is not on the curve") == (loaded.key, loaded.key_problem)
        assert_sub(SubIndication.CRYPTO_CONSTRAINTS_FAILURE,
                   verify(tl, bj.issue(iat=T - 60).token, bj))

    def test_signer_id_of_the_anchor(self, bj: MockRegion, trust_list: Build) -> None:
        """An anchor's sm2_id is the ID its licences are verified under: a key signing
        under ``ALICE123@YAHOO.COM`` passes with that sm2_id, and fails without it."""
        kid = bj.add_signing_key(SM2_ALG, kid="520500-lic-alice", sm2_id="ALICE123@YAHOO.COM")
        token = bj.issue(iat=T - 60, kid=kid).token
        tl = trust_list()
        assert b"ALICE123@YAHOO.COM" == tl.anchors(kid)[0].sm2_id
        assert_sub(None, verify(tl, token, bj))

        def default_id(doc: dict[str, Any]) -> None:
            del anchor(doc, kid)["sm2_id"]

        assert_sub(SubIndication.SIG_CRYPTO_FAILURE, verify(trust_list(default_id), token, bj))

    def test_empty_signer_id(self, bj: MockRegion, trust_list: Build) -> None:
        """Some issuers sign with an empty ID: ``sm2_id: ""`` verifies them."""
        kid = bj.add_signing_key(SM2_ALG, kid="520500-lic-empty-id", sm2_id="")
        assert_sub(None, verify(trust_list(), bj.issue(iat=T - 60, kid=kid).token, bj))

    @pytest.mark.parametrize("value", [1234567812345678, ["1234"], {"id": "x"}])
    def test_sm2_id_must_be_a_string(self, bj: MockRegion, trust_list: Build,
                                     value: object) -> None:
        """An sm2_id that is not a string makes the list unusable (a shape error)."""
        with pytest.raises(TrustListError, match="sm2_id must be a string"):
            trust_list(lambda doc: anchor(doc, bj.licence_kid).update(sm2_id=value))

    def test_sm2_id_on_a_p256_anchor(self, sh: MockRegion, trust_list: Build) -> None:
        """An sm2_id on a P-256 anchor makes that key unusable: it would be ignored."""
        tl = trust_list(lambda doc: anchor(doc, sh.licence_kid).update(sm2_id="x"))
        assert "a signer ID (sm2_id) is for SM2 keys only" == tl.anchors(
            sh.licence_kid)[0].key_problem

    def test_sm2_id_on_a_p256_root_ca(self, trust_list: Build) -> None:
        """So does an sm2_id on a certificate anchor whose key is not SM2 (a P-256 root)."""
        kids: list[str] = []

        def bend(doc: dict[str, Any]) -> None:
            partner = next(p for p in doc["partners"] if p["region_code"] == "310000")
            root = next(a for a in partner["anchors"] if a["use"] == "root-ca")
            root["sm2_id"] = "x"
            kids.append(root["kid"])

        tl = trust_list(bend)
        assert "a signer ID (sm2_id) is for SM2 keys only" == tl.anchors(kids[0])[0].key_problem

    def test_without_the_sm2_library(self, bj: MockRegion, sh: MockRegion, trust_list: Build,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
        """Without libcrypto's SM2 an SM2 anchor is unusable (CRYPTO_CONSTRAINTS_FAILURE);
        every other algorithm still verifies."""
        monkeypatch.setattr(_sm2, "_library",
                            lambda: Sm2UnavailableError("libcrypto (OpenSSL 3) was not found"))
        tl = trust_list()
        problem = tl.anchors(bj.licence_kid)[0].key_problem
        assert "SM2 is unavailable: libcrypto (OpenSSL 3) was not found" == problem
        verdict = verify(tl, bj.issue(iat=T - 60, with_status=False).token)
        assert_sub(SubIndication.CRYPTO_CONSTRAINTS_FAILURE, verdict)
        assert_sub(None, verify(tl, sh.issue(iat=T - 60).token, sh))


    @pytest.mark.parametrize("signing_alg", ["RS256", 7, ["SM2SM3"]])
    def test_unknown_agreement_signing_alg_is_refused_at_load(
            self, trust_list: Build, signing_alg: object) -> None:
        """A partner's signing_alg other than ES256 or SM2SM3 stops the load, named."""
        def bend(doc: dict[str, Any]) -> None:
            next(p for p in doc["partners"] if p["region_code"] == "520500")[
                "signing_alg"] = signing_alg

        with pytest.raises(TrustListError, match="partner 520500: signing_alg must be one of "
                                                 "ES256, SM2SM3"):
            trust_list(bend)

    def test_agreement_signing_alg_is_read(self, trust_list: Build) -> None:
        """signing_alg SM2SM3 is read into the partner; absent, it is ES256."""
        def bend(doc: dict[str, Any]) -> None:
            next(p for p in doc["partners"] if p["region_code"] == "520500")[
                "signing_alg"] = "SM2SM3"

        tl = trust_list(bend)
        assert (Alg.SM2SM3, Alg.ES256) == (tl.partners["520500"].signing_alg,
                                           tl.partners["310000"].signing_alg)

    def test_sm2_root_certificate_is_read_at_load(self, bj: MockRegion, trust_list: Build,
                                                  tmp_path: Path) -> None:
        """A list holding an SM2 root-ca certificate made by openssl loads: that anchor's
        key is the certificate's SM2 key, and the other anchors verify."""
        der = OpenSslSm2Key.generate(tmp_path).self_signed_ca(tmp_path)

        def add_root(doc: dict[str, Any]) -> None:
            entry = next(p for p in doc["partners"] if p["region_code"] == "520500")
            entry["anchors"].append({
                "kid": "520500-root-sm2", "use": "root-ca",
                "x5c": [base64.b64encode(der).decode()],
                "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2036-01-01T00:00:00Z"})

        tl = trust_list(add_root)
        root = tl.anchors("520500-root-sm2")[0]
        assert root.key is not None
        assert (None, frozenset({Alg.SM2SM3})) == (root.key_problem, root.key.algs)
        assert isinstance(root.key.public_key, _sm2.Sm2PublicKey)
        assert root.key.public_key.spki() in der
        assert_sub(None, verify(tl, bj.issue(iat=T - 60).token, bj))


class TestSm2StatusLists:
    """A region's status list signed with SM2 by its ``status-signing`` anchor."""

    def test_verifies(self, bj: MockRegion, trust_list: Build) -> None:
        """The SM2-signed list is accepted and read."""
        tl = trust_list()
        listed = status_of(bj, tl)
        assert (bj.status_kid, "520500") == (listed.kid, listed.region)
        assert AnchorUse.STATUS_SIGNING is tl.anchors(bj.status_kid)[0].use

    def test_tampered_list_is_refused(self, bj: MockRegion, trust_list: Build) -> None:
        """A list whose claims changed after signing is refused."""
        head, body, sig = bj.status_list_token(iat=T - 60).split(".")
        claims = orjson.loads(_pad(body))
        claims["iat"] += 1
        token = f"{head}.{b64url_encode(orjson.dumps(claims))}.{sig}"
        with pytest.raises(StatusListError, match="signature does not verify"):
            parse_status_list(token, trust_list=trust_list(), region="520500",
                              uri=bj.status_uri)

    def test_signed_by_the_licence_key_is_refused(self, bj: MockRegion,
                                                  trust_list: Build) -> None:
        """The SM2 licence key is no status-signing anchor."""
        token = bj.status_list_token(iat=T - 60, kid=bj.licence_kid)
        with pytest.raises(StatusListError, match="no status-signing anchor"):
            parse_status_list(token, trust_list=trust_list(), region="520500",
                              uri=bj.status_uri)

    def test_off_curve_status_key(self, bj: MockRegion, trust_list: Build) -> None:
        """A status-signing SM2 key off the curve is unusable: the list is refused."""
        def bend(doc: dict[str, Any]) -> None:
            jwk = anchor(doc, bj.status_kid)["jwk"]
            jwk["x"] = jwk["y"]

        with pytest.raises(StatusListError, match="not on the curve"):
            parse_status_list(bj.status_list_token(iat=T - 60), trust_list=trust_list(bend),
                              region="520500", uri=bj.status_uri)

