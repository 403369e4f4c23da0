"""SM2 keys in the operators' input checks: proposed as JWK, JWKS or PEM, with a signer ID."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from mocks import SM2_ALG, Federation, MockRegion, b64url_decode, b64url_encode
from tests.openssl import OpenSslSm2Key
from tests.trust.conftest import NOW, anchor
from trust import (
    Sm2PrivateKey,
    Sm2PublicKey,
    TrustList,
    apply_changes,
    check_changes,
    diff_documents,
    key_from_jwk,
    parse_changes,
)

Doc = dict[str, Any]
_WINDOW = {"valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-12-31T23:59:59Z"}


@pytest.fixture
def doc(federation: Federation) -> Doc:
    """The federation's list, version 12, issued a day before NOW for a week."""
    return federation.trust_list(version=12, issued_at=NOW - timedelta(days=1),
                                 next_update=NOW + timedelta(days=6))


@pytest.fixture
def bj(federation: Federation) -> MockRegion:
    """Bijie, which signs with SM2."""
    return federation["520500"]


def _change(kid: str, **given: Any) -> dict[str, Any]:
    return {"kind": "add-anchor", "region_code": "520500",
            "anchor": {"kid": kid, "use": "licence-signing", **_WINDOW, **given}}


def _problems(doc: Doc, change: dict[str, Any]) -> list[str]:
    return check_changes(doc, parse_changes([change]), at=NOW)


def _apply(doc: Doc, change: dict[str, Any]) -> Doc:
    return apply_changes(doc, parse_changes([change]), at=NOW)


def _pem(spki: bytes) -> str:
    body = base64.encodebytes(spki).decode()
    return f"-----BEGIN PUBLIC KEY-----\n{body}-----END PUBLIC KEY-----\n"


class TestSm2Anchors:
    """An SM2 key is accepted on the curve and refused off it, whatever form it comes in."""

    def test_jwk(self, doc: Doc, bj: MockRegion) -> None:
        """An SM2 JWK becomes an anchor with its public members, and the list loads it."""
        kid = bj.add_signing_key(SM2_ALG, kid="520500-lic-new", publish=False)
        jwk = bj.public_jwk(kid)
        new = _apply(doc, _change(kid, jwk=jwk))
        entry = anchor(new, kid)
        assert {"kty": "EC", "crv": "SM2", "x": jwk["x"], "y": jwk["y"], "alg": "SM2SM3",
                "kid": kid} == entry["jwk"]
        assert "sm2_id" not in entry
        assert TrustList.from_json(new).anchors(kid)[0].key is not None

    def test_jwks(self, doc: Doc, bj: MockRegion) -> None:
        """One SM2 key named by kid out of a JWKS."""
        new = _apply(doc, _change(bj.licence_kid + "-copy", jwks={"keys": [
            {**bj.public_jwk(bj.licence_kid), "kid": bj.licence_kid + "-copy"},
            bj.public_jwk(bj.status_kid)]}))
        assert "SM2" == anchor(new, bj.licence_kid + "-copy")["jwk"]["crv"]

    def test_pem_public_key(self, doc: Doc) -> None:
        """A PEM SubjectPublicKeyInfo of an SM2 key (as ``openssl pkey -pubout`` writes it;
        cryptography cannot read it) becomes an SM2 JWK anchor."""
        public = Sm2PrivateKey.generate().public_key()
        new = _apply(doc, _change("520500-lic-pem", pem=_pem(public.spki())))
        assert public == key_from_jwk(anchor(new, "520500-lic-pem")["jwk"]).public_key

    @pytest.mark.parametrize("where", ["x", "y"])
    def test_off_curve_jwk_is_refused(self, doc: Doc, bj: MockRegion, where: str) -> None:
        """One bit of x or y changed: refused with the reason, nothing applied."""
        jwk = bj.public_jwk(bj.licence_kid)
        bent = bytearray(b64url_decode(jwk[where]))
        bent[-1] ^= 1
        problems = _problems(doc, _change("520500-lic-bent",
                                          jwk={**jwk, "kid": "520500-lic-bent",
                                               where: b64url_encode(bytes(bent))}))
        assert [("change #1 (add-anchor) anchor '520500-lic-bent': unsupported key: SM2 point "
                 "is not on the curve")] == problems

    def test_off_curve_pem_is_refused(self, doc: Doc) -> None:
        """An SM2 PEM whose point is off the curve is refused, as is one of the wrong size."""
        point = bytearray(Sm2PrivateKey.generate().public_key().point)
        point[-1] ^= 1
        spki = Sm2PublicKey(Sm2PrivateKey.generate().public_key().point).spki()
        bent = spki[:-65] + bytes(point)
        problems = _problems(doc, _change("520500-lic-pem", pem=_pem(bent)))
        assert 1 == len(problems)
        assert "unsupported key" in problems[0]
        assert "SM2 point is not on the curve" in problems[0]
        short = _problems(doc, _change("520500-lic-pem", pem=_pem(spki[:-1])))
        assert 1 == len(short)
        assert "pem is neither a certificate nor a public key" in short[0]

    def test_pem_of_a_curve_nobody_reads(self, doc: Doc) -> None:
        """A PEM key on a curve neither cryptography nor the SM2 reader knows (here the
        SM2 OID with its last arc changed) is refused with the reason, not an exception."""
        spki = Sm2PrivateKey.generate().public_key().spki()
        other = spki.replace(bytes.fromhex("2a811ccf5501822d"), bytes.fromhex("2a811ccf5501822e"))
        problems = _problems(doc, _change("520500-lic-other", pem=_pem(other)))
        assert [("change #1 (add-anchor): unsupported key: Curve 1.2.156.10197.1.302 is not "
                 "supported")] == problems

    def test_compressed_pem_is_refused(self, doc: Doc) -> None:
        """An SM2 key whose point is compressed (``openssl ec -conv_form compressed``)
        is refused: keys are written uncompressed, as in the JWK."""
        public = Sm2PrivateKey.generate().public_key()
        prefix = bytes([2 + public.y[-1] % 2]) + public.x
        spki = (bytes.fromhex("3039301306072a8648ce3d020106082a811ccf5501822d032200")
                + prefix)
        assert [("change #1 (add-anchor): unsupported key: an SM2 key is given "
                 "uncompressed (04 ‖ x ‖ y)")] == _problems(doc, _change("520500-lic-c",
                                                                          pem=_pem(spki)))

    def test_coordinate_not_below_p(self, doc: Doc, bj: MockRegion) -> None:
        """x = p (the field element 0, written out of range) is refused."""
        jwk = {**bj.public_jwk(bj.licence_kid), "kid": "520500-lic-p",
               "x": b64url_encode(bytes.fromhex(
                   "fffffffeffffffffffffffffffffffffffffffff00000000ffffffffffffffff"))}
        assert [("change #1 (add-anchor) anchor '520500-lic-p': unsupported key: SM2 point "
                 "coordinate is not below p")] == _problems(doc, _change("520500-lic-p",
                                                                         jwk=jwk))


class TestSignerId:
    """``sm2_id``: the signer ID an SM2 anchor's signatures are made under."""

    def test_kept_in_the_anchor(self, doc: Doc, bj: MockRegion) -> None:
        """Given with an SM2 key, it is written into the anchor and the list loads it."""
        kid = bj.add_signing_key(SM2_ALG, kid="520500-lic-id", publish=False)
        new = _apply(doc, _change(kid, jwk=bj.public_jwk(kid), sm2_id="ALICE123@YAHOO.COM"))
        assert "ALICE123@YAHOO.COM" == anchor(new, kid)["sm2_id"]
        loaded = TrustList.from_json(new).anchors(kid)[0]
        assert loaded.key is not None
        assert isinstance(loaded.key.public_key, Sm2PublicKey)
        assert b"ALICE123@YAHOO.COM" == loaded.key.public_key.signer_id

    @pytest.mark.parametrize(("given", "problem"), [
        (5, "sm2_id must be a string"),
        ("i" * 8192, "unsupported key: an SM2 signer ID has at most 8191 bytes"),
        ("\ud800", "sm2_id is not valid Unicode text"),
    ], ids=["number", "too-long", "lone-surrogate"])
    def test_refused(self, doc: Doc, bj: MockRegion, given: object, problem: str) -> None:
        """Not a string, too long for ENTL_A, or not encodable: refused."""
        kid = "520500-lic-id"
        jwk = {**bj.public_jwk(bj.licence_kid), "kid": kid}
        problems = _problems(doc, _change(kid, jwk=jwk, sm2_id=given))
        assert [f"change #1 (add-anchor) anchor '520500-lic-id': {problem}"] == problems

    def test_only_for_sm2_keys(self, doc: Doc, sh: MockRegion) -> None:
        """With a P-256 key it is refused, not ignored."""
        kid = sh.add_signing_key("ES256", kid="310000-lic-id", publish=False)
        change = {"kind": "add-anchor", "region_code": "310000", "anchor": {
            "kid": kid, "use": "licence-signing", "jwk": sh.public_jwk(kid), "sm2_id": "x",
            **_WINDOW}}
        assert [("change #1 (add-anchor) anchor '310000-lic-id': unsupported key: a signer "
                 "ID (sm2_id) is for SM2 keys only")] == _problems(doc, change)

    def test_not_with_a_p256_certificate(self, doc: Doc, sh: MockRegion) -> None:
        """A certificate anchor whose key is not SM2 (a P-256 root) refuses it, not ignores."""
        root = base64.b64encode(sh.root_certificate.public_bytes(Encoding.DER)).decode()
        change = {"kind": "add-anchor", "region_code": "310000", "anchor": {
            "kid": "310000-root-id", "use": "root-ca", "x5c": [root], "sm2_id": "x"}}
        assert [("change #1 (add-anchor) anchor '310000-root-id': unsupported key: a signer "
                 "ID (sm2_id) is for SM2 keys only")] == _problems(doc, change)

    def test_kept_in_an_sm2_root_ca_anchor(self, doc: Doc, tmp_path: Path) -> None:
        """An SM2 root-ca certificate takes it (the ID its certificate signatures are made
        under): written into the anchor, loaded as the anchor's ID, and in the diff."""
        der = OpenSslSm2Key.generate(tmp_path).self_signed_ca(tmp_path)
        change = {"kind": "add-anchor", "region_code": "520500", "anchor": {
            "kid": "520500-root-id", "use": "root-ca",
            "x5c": [base64.b64encode(der).decode()], "sm2_id": "ALICE123@YAHOO.COM"}}
        new = _apply(doc, change)
        assert "ALICE123@YAHOO.COM" == anchor(new, "520500-root-id")["sm2_id"]
        assert b"ALICE123@YAHOO.COM" == TrustList.from_json(new).anchors(
            "520500-root-id")[0].sm2_id
        added = next(e for e in diff_documents(doc, new) if e.kid == "520500-root-id")
        assert ("anchor-added", (None, "ALICE123@YAHOO.COM")) == (added.op,
                                                                  added.fields["sm2_id"])

    @pytest.mark.parametrize(("given", "problem"), [
        (5, "sm2_id must be a string"),
        ("i" * 8192, "unsupported key: an SM2 signer ID has at most 8191 bytes"),
        ("\ud800", "sm2_id is not valid Unicode text"),
    ], ids=["number", "too-long", "lone-surrogate"])
    def test_refused_on_an_sm2_root_ca(self, doc: Doc, tmp_path: Path, given: object,
                                       problem: str) -> None:
        """On an SM2 certificate anchor, a malformed sm2_id is refused by name as with a key."""
        der = OpenSslSm2Key.generate(tmp_path).self_signed_ca(tmp_path)
        change = {"kind": "add-anchor", "region_code": "520500", "anchor": {
            "kid": "520500-root-id", "use": "root-ca",
            "x5c": [base64.b64encode(der).decode()], "sm2_id": given}}
        assert [f"change #1 (add-anchor) anchor '520500-root-id': {problem}"] == _problems(
            doc, change)


class TestSm2Certificates:
    """SM2 certificates (x5c chains to an SM2 root-ca anchor) are read: their keys are SM2."""

    def test_sm2_root_certificate_is_accepted(self, doc: Doc, tmp_path: Path) -> None:
        """An SM2 root-ca certificate (openssl req -x509 -sm3), as x5c or PEM: no problem,
        and the anchor added carries the certificate."""
        der = OpenSslSm2Key.generate(tmp_path).self_signed_ca(tmp_path)
        pem = ("-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der).decode()
               + "-----END CERTIFICATE-----\n")
        for given in ({"x5c": [base64.b64encode(der).decode()]}, {"pem": pem}):
            change = {"kind": "add-anchor", "region_code": "520500", "anchor": {
                "kid": "520500-root-sm2", "use": "root-ca", **given}}
            assert [] == _problems(doc, change)
            added = next(a for p in _apply(doc, change)["partners"] for a in p["anchors"]
                         if a["kid"] == "520500-root-sm2")
            assert [base64.b64encode(der).decode()] == added["x5c"]

    def test_sm2_certificate_that_is_no_ca_is_refused(self, doc: Doc, tmp_path: Path) -> None:
        """An SM2 certificate without CA=true as a root-ca anchor: the CA problem, as for
        any other key type."""
        der = OpenSslSm2Key.generate(tmp_path).self_signed_ca(tmp_path, ca=False)
        change = {"kind": "add-anchor", "region_code": "520500", "anchor": {
            "kid": "520500-root-sm2", "use": "root-ca",
            "x5c": [base64.b64encode(der).decode()]}}
        assert [("change #1 (add-anchor) anchor '520500-root-sm2': root-ca certificate is "
                 "not a CA: basicConstraints CA is false")] == _problems(doc, change)

