"""SM2 in the mocks: 毕节 and 白山 sign with it, checked against the ``openssl`` command.

The mocks' SM2 signer is plain Python; ``openssl pkeyutl -verify -rawin -digest sm3``
is the independent check (the gateway's own verifier is another: tests/trust).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mocks import SM2_ALG, Federation, MockRegion, b64url_decode
from mocks._jws import check_key_fits
from mocks._sm2 import Sm2Key
from tests.conftest import VECTORS
from tests.openssl import openssl_sm2_verify, sm2_spki

_N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
"""The order of the SM2 curve's base point (GB/T 32918.5)."""
_ANNEX_A_D = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8


def _spki(region: MockRegion, kid: str) -> bytes:
    jwk = region.public_jwk(kid)
    return sm2_spki(b64url_decode(jwk["x"]), b64url_decode(jwk["y"]))


def _parts(token: str) -> tuple[bytes, bytes]:
    head, body, sig = token.split(".")
    return f"{head}.{body}".encode(), b64url_decode(sig)


class TestSigner:
    """The plain-Python signer of GB/T 32918.2."""

    def test_annex_a_key_pair(self) -> None:
        """The private key of GM/T 0003.5 Annex A gives the public key of the vectors."""
        vectors = json.loads((VECTORS / "sm2" / "sm2_sm3_test.json").read_text("utf-8"))
        public = Sm2Key(_ANNEX_A_D).public_key()
        assert vectors["testGroups"][0]["publicKey"]["uncompressed"] == (
            "04" + public.x.hex() + public.y.hex())

    def test_openssl_verifies_its_signatures(self, tmp_path: Path) -> None:
        """Signatures of messages of several lengths verify with OpenSSL, under the default
        ID and under another, and not under the wrong ID."""
        key = Sm2Key.generate()
        spki = sm2_spki(key.public_key().x, key.public_key().y)
        for size in (0, 1, 63, 64, 65, 1000):
            message = bytes(range(256))[:size] * (1 + size // 256)
            assert openssl_sm2_verify(spki, message, key.sign(message), tmp_path)
        alice = key.with_signer_id(b"ALICE123@YAHOO.COM")
        signature = alice.sign(b"message digest")
        assert openssl_sm2_verify(spki, b"message digest", signature, tmp_path,
                                  distid="ALICE123@YAHOO.COM")
        assert not openssl_sm2_verify(spki, b"message digest", signature, tmp_path)

    def test_nonces_are_deterministic(self) -> None:
        """RFC 6979 with HMAC-SM3: the same key and message give the same signature."""
        key = Sm2Key.from_bytes(b"seed material")
        assert key.sign(b"m") == Sm2Key.from_bytes(b"seed material").sign(b"m")
        assert key.sign(b"m") != key.sign(b"n")

    @pytest.mark.parametrize("d", [0, -1, _N - 1, _N])
    def test_scalar_range(self, d: int) -> None:
        """A private key is in [1, n-2]."""
        with pytest.raises(ValueError, match=r"\[1, n-2\]"):
            Sm2Key(d)

    def test_keys_fit_only_their_algorithm(self) -> None:
        """An SM2 key signs SM2SM3 only, and SM2SM3 needs an SM2 key."""
        with pytest.raises(ValueError, match="not ES256"):
            check_key_fits(Sm2Key.generate(), "ES256")
        region = MockRegion("310000", "上海市", ("yrd",))
        with pytest.raises(ValueError, match="needs an SM2 key"):
            check_key_fits(region.private_key(region.licence_kid), SM2_ALG)


class TestSm2Regions:
    """The standard federation: two far partners sign with SM2."""

    def test_who_signs_with_sm2(self) -> None:
        """毕节 and 白山 sign licences and status lists with SM2SM3, the others with ES256;
        request keys stay ES256."""
        federation = Federation.standard(seed=23)
        algs = {r.region_code: (r.alg_of(r.licence_kid), r.alg_of(r.status_kid),
                                r.alg_of(r.request_kid)) for r in federation}
        sm2 = (SM2_ALG, SM2_ALG, "ES256")
        assert {"520500": sm2, "220600": sm2} == {k: v for k, v in algs.items() if v == sm2}
        assert all(v == ("ES256",) * 3 for k, v in algs.items() if k not in ("520500", "220600"))

    @pytest.mark.parametrize("code", ["520500", "220600"])
    def test_licence_and_status_list_verify_with_openssl(self, code: str,
                                                          tmp_path: Path) -> None:
        """A licence and the status list, each with the key its header names, published
        in the JWKS and the trust list as ``crv: SM2``."""
        region = Federation.standard(seed=23, codes=[code])[code]
        licence = region.issue()
        assert ("SM2SM3", f"{code}-lic-2026a") == (licence.header["alg"], licence.header["kid"])
        jwks = {k["kid"]: k for k in region.jwks()["keys"]}
        assert ("EC", "SM2", "SM2SM3") == (jwks[region.licence_kid]["kty"],
                                            jwks[region.licence_kid]["crv"],
                                            jwks[region.licence_kid]["alg"])
        anchors = {a["kid"]: a for a in region.trust_list_entry()["anchors"]}
        assert "SM2" == anchors[region.status_kid]["jwk"]["crv"]
        assert openssl_sm2_verify(_spki(region, region.licence_kid),
                                  *_parts(licence.token), tmp_path)
        status = region.status_list_token()
        assert openssl_sm2_verify(_spki(region, region.status_kid), *_parts(status), tmp_path)
        assert not openssl_sm2_verify(_spki(region, region.licence_kid), *_parts(status),
                                      tmp_path)

    def test_seeded_tokens_repeat(self) -> None:
        """A seeded SM2 region signs the same token on every run, as ES256 ones do."""
        def token() -> str:
            return Federation.standard(seed=23, codes=["520500"])["520500"].issue(iat=1).token

        assert token() == token()

    def test_signer_id_in_the_anchor(self, tmp_path: Path) -> None:
        """A key made with ``sm2_id`` signs under it, and its anchor carries it."""
        region = Federation.standard(seed=23, codes=["220600"])["220600"]
        kid = region.add_signing_key(SM2_ALG, sm2_id="白山市电子证照")
        anchor = next(a for a in region.trust_list_entry()["anchors"] if a["kid"] == kid)
        assert "白山市电子证照" == anchor["sm2_id"]
        assert openssl_sm2_verify(_spki(region, kid), *_parts(region.issue(kid=kid).token),
                                  tmp_path, distid="白山市电子证照")
        with pytest.raises(ValueError, match="sm2_id is for SM2SM3 keys"):
            region.add_signing_key("ES256", sm2_id="x")
