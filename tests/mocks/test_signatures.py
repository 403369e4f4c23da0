
"""JWS signatures of mock licences, checked independently with PyJWT and cryptography."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mocks import ALGORITHMS, DELETE, Alg, Federation, MockRegion, b64url_decode


def _verify(region: MockRegion, token: str, kid: str, alg: str) -> dict[str, object]:
    key = jwt.PyJWK(region.public_jwk(kid))
    return jwt.decode(token, key=key, algorithms=[alg], options={"verify_exp": True})


class TestLicenceSignature:
    """Every algorithm of the profile makes signatures PyJWT accepts."""

    @pytest.mark.parametrize("alg", ALGORITHMS)
    def test_verifies_with_published_jwk(self, region: MockRegion, alg: Alg) -> None:
        """A licence signed with ``alg`` verifies with the key from the region's JWKS."""
        licence = region.issue(alg=alg)
        kid = licence.header["kid"]
        published = {k["kid"]: k for k in region.jwks()["keys"]}
        jwk = jwt.PyJWK(published[kid])
        claims = jwt.decode(licence.token, key=jwk, algorithms=[alg])
        assert licence.claims == claims

    def test_default_header(self, region: MockRegion) -> None:
        """The default header is exactly alg, typ and the region's licence kid."""
        header = jwt.get_unverified_header(region.issue().token)
        assert {"alg": "ES256", "typ": "ecert+jwt", "kid": "310000-lic-2026a"} == header

    def test_es256_signature_is_raw_r_s(self, region: MockRegion) -> None:
        """ES256 signatures are 64 bytes of R || S, not DER (RFC 7518 3.4)."""
        assert 64 == len(b64url_decode(region.issue().token.split(".")[2]))

    def test_ps256_uses_32_byte_salt(self, region: MockRegion) -> None:
        """PS256 verifies under PSS with MGF1-SHA256 and an explicit 32-byte salt."""
        token = region.issue(alg="PS256").token
        kid = jwt.get_unverified_header(token)["kid"]
        public = region.private_key(kid).public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        signing_input, _, sig = token.rpartition(".")
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        public.verify(b64url_decode(sig), signing_input.encode(), pss, hashes.SHA256())

    def test_weak_rsa_key(self, region: MockRegion) -> None:
        """``rsa_bits=1024`` makes the weak key the crypto-constraint tests need."""
        kid = region.add_signing_key("RS256", rsa_bits=1024)
        private = region.private_key(kid)
        assert isinstance(private, rsa.RSAPrivateKey)
        assert (1024, kid) == (private.key_size, region.issue(kid=kid).header["kid"])

    def test_kid_naming(self, region: MockRegion) -> None:
        """Extra licence keys are named 2026b, 2026c, ... after the region."""
        assert ["310000-lic-2026b", "310000-lic-2026c"] == [
            region.add_signing_key("ES384"),
            region.add_signing_key("EdDSA"),
        ]

    def test_unpublished_key_is_not_in_jwks(self, region: MockRegion) -> None:
        """``publish=False`` keeps a key out of the JWKS and the trust-list entry."""
        kid = region.add_signing_key("ES256", publish=False)
        anchors = {a["kid"] for a in region.trust_list_entry()["anchors"]}
        jwks = {k["kid"] for k in region.jwks()["keys"]}
        assert (False, False) == (kid in anchors, kid in jwks)


class TestRawSigning:
    """``sign`` and the overrides make tokens bent on purpose that still verify."""

    def test_resigned_mutation_verifies(self, region: MockRegion) -> None:
        """A mutated payload re-signed with ``sign`` verifies and carries the change."""
        licence = region.issue()
        claims = {**licence.claims, "iss": "320500"}
        token = region.sign(licence.header, claims)
        assert "320500" == _verify(region, token, region.licence_kid, "ES256")["iss"]

    def test_sign_bytes_payload(self, region: MockRegion) -> None:
        """A bytes payload is signed verbatim."""
        token = region.sign({"alg": "ES256", "typ": "ecert+jwt"}, b"not json")
        assert b"not json" == b64url_decode(token.split(".")[1])

    def test_header_override_deletes_and_adds(self, region: MockRegion) -> None:
        """``DELETE`` removes a header member and other values are merged in."""
        licence = region.issue(header_override={"kid": DELETE, "jku": "https://evil.example"})
        assert {"alg": "ES256", "typ": "ecert+jwt", "jku": "https://evil.example"} == (
            jwt.get_unverified_header(licence.token)
        )

    def test_claims_and_lic_override(self, region: MockRegion) -> None:
        """Claim and lic overrides are signed into the token."""
        licence = region.issue(claims_override={"iss": "999999"}, lic_override={"number": "X1"})
        claims = _verify(region, licence.token, region.licence_kid, "ES256")
        assert ("999999", "X1") == (claims["iss"], licence.claims["lic"]["number"])

    def test_header_alg_is_not_trusted(self, region: MockRegion) -> None:
        """``sign`` keeps the header's alg even when the key's differs (for confusion tests)."""
        token = region.sign({"alg": "HS256", "kid": region.licence_kid}, {"a": 1})
        assert "HS256" == jwt.get_unverified_header(token)["alg"]


class TestValidity:
    """Validity claims follow the arguments."""

    def test_explicit_times(self, region: MockRegion) -> None:
        """iat, nbf and exp are set as given."""
        claims = region.issue(iat=1_790_000_000, nbf=1_790_000_100, exp=1_800_000_000).claims
        assert (1_790_000_000, 1_790_000_100, 1_800_000_000) == (
            claims["iat"],
            claims["nbf"],
            claims["exp"],
        )

    def test_long_term_licence_has_no_exp(self, region: MockRegion) -> None:
        """``valid_until=None`` is 长期: a null valid_until and no exp."""
        claims = region.issue(valid_until=None).claims
        assert (None, False) == (claims["lic"]["valid_until"], "exp" in claims)

    def test_matters_and_no_status(self, region: MockRegion) -> None:
        """Matters are listed and ``with_status=False`` leaves status out."""
        licence = region.issue(matters=["许可-00393-002"], with_status=False)
        assert (["许可-00393-002"], None, False) == (
            licence.claims["lic"]["matters"],
            licence.status_idx,
            "status" in licence.claims,
        )


class TestDeterminism:
    """A seed makes the same keys, certificates and tokens."""

    def test_same_seed_same_output(self) -> None:
        """Two seeded federations publish the same keys and sign the same token."""
        first, second = Federation.standard(seed=9), Federation.standard(seed=9)
        assert first["330100"].jwks() == second["330100"].jwks()
        assert first["330100"].trust_list_entry() == second["330100"].trust_list_entry()
        assert first["330100"].issue(iat=1_790_000_000).token == (
            second["330100"].issue(iat=1_790_000_000).token
        )

    def test_other_seed_other_keys(self) -> None:
        """Different seeds give different keys."""
        assert Federation.standard(seed=1)["310000"].jwks() != (
            Federation.standard(seed=2)["310000"].jwks()
        )
