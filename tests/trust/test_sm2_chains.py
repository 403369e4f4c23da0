"""x5c chains of SM2 certificates up to an SM2 ``root-ca`` anchor, under the ECDSA chains' rules.

毕节 (520500) and 白山 (220600) have SM2 PKIs in the mocks: roots, CAs and signer
certificates signed SM2-with-SM3 by mocks/_sm2.py (pure Python), validated by
trust/_sm2cert.py on OpenSSL's SM2. Every x5c attack of test_verifier.py is
run again over them: ``TestSm2X5cBounds`` is ``TestX5cBounds`` with Bijie as
the region, and the constraint tests are parametrised over Shanghai (ES256)
and Bijie (SM2), so both validators are held to the same verdicts.
"""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

import tests.trust.test_verifier as ecdsa
from mocks import SM2_ALG, Federation, MockRegion
from tests.trust.conftest import NOW, T
from tests.trust.test_verifier import Build, assert_sub, verify
from trust import CheckResult, SubIndication, Verifier
from trust._sm2cert import SM2_WITH_SM3, is_sm2_certificate

# The ES256 region and the SM2 one, with a second region of the same kind each.
_PAIRS = {"ES256": ("310000", "320500"), "SM2SM3": ("520500", "220600")}


@pytest.fixture(scope="module")
def federation() -> Federation:
    """Shanghai and Suzhou (ES256), Bijie and Baishan (SM2), seeded."""
    return Federation.standard(seed=36, codes=[c for p in _PAIRS.values() for c in p])


@pytest.fixture(params=sorted(_PAIRS))
def pair(request: pytest.FixtureRequest, federation: Any) -> tuple[MockRegion, MockRegion]:
    """A region and another of the same algorithm (ES256, or SM2 with an SM2 PKI)."""
    first, second = _PAIRS[request.param]
    return federation[first], federation[second]


@pytest.fixture
def region(pair: tuple[MockRegion, MockRegion]) -> MockRegion:
    """The first region of the pair."""
    return pair[0]


def test_the_sm2_regions_have_sm2_chains(federation: Any) -> None:
    """Bijie's and Baishan's roots and signer certificates are SM2 ones (so the tests
    below exercise the SM2 validator, not the ECDSA one)."""
    for code in _PAIRS["SM2SM3"]:
        region: MockRegion = federation[code]
        assert SM2_ALG == region.root_alg
        for cert in (region.root_certificate, region.signer_certificate):
            assert is_sm2_certificate(cert)
            assert SM2_WITH_SM3 == cert.signature_algorithm_oid


class TestSm2Chains:
    """The path rules, the same for an SM2 chain as for an ECDSA one."""

    def test_chain_to_partner_root_passes(self, region: MockRegion,
                                          trust_list: Build) -> None:
        """A licence whose x5c chains to the region's root-ca anchor passes."""
        verdict = verify(trust_list(), region.issue(iat=T - 60, use_x5c=True).token, region)
        assert_sub(None, verdict)
        assert region.root_kid == verdict.anchor_kid
        signature = verdict.check("signature")
        assert signature is not None
        assert CheckResult.PASSED is signature.result

    def test_rogue_root_of_the_same_name(self, region: MockRegion, trust_list: Build) -> None:
        """A chain from a look-alike root (same name, other key) finds no chain."""
        kid = region.add_certificate_key(rogue_root=True)
        token = region.issue(iat=T - 60, kid=kid, use_x5c=True).token
        assert_sub(SubIndication.NO_CERTIFICATE_CHAIN_FOUND, verify(trust_list(), token, region))

    @pytest.mark.parametrize("bend", [
        {"via_intermediate": True}, {"ca": True}, {"key_usage": ("key_cert_sign",)},
        {"key_usage": None}, {"include_aki": False}, {"unknown_critical": True},
    ], ids=["path-length", "ca-signer", "no-digital-signature", "no-key-usage", "no-aki",
            "unknown-critical-extension"])
    def test_chain_breaks_a_constraint(self, region: MockRegion, trust_list: Build,
                                       bend: dict[str, Any]) -> None:
        """Path length, CA flag, key usage, AKI and critical extensions are enforced."""
        kid = region.add_certificate_key(**bend)
        token = region.issue(iat=T - 60, kid=kid, use_x5c=True).token
        verdict = verify(trust_list(), token, region)
        assert_sub(SubIndication.CHAIN_CONSTRAINTS_FAILURE, verdict)

    def test_certificate_not_valid_at_iat(self, region: MockRegion, trust_list: Build) -> None:
        """A signer certificate whose validity ends before iat breaks the chain."""
        kid = region.add_certificate_key(not_after=NOW - timedelta(days=2))
        token = region.issue(iat=T - 60, kid=kid, use_x5c=True).token
        assert_sub(SubIndication.CHAIN_CONSTRAINTS_FAILURE, verify(trust_list(), token, region))

    def test_certificate_not_yet_valid_at_iat(self, region: MockRegion,
                                              trust_list: Build) -> None:
        """A signer certificate whose validity starts after iat breaks the chain."""
        kid = region.add_certificate_key(not_before=NOW - timedelta(days=1))
        token = region.issue(iat=T - 2 * 86400, kid=kid, use_x5c=True, with_status=False,
                             exp=T + 86400).token
        assert_sub(SubIndication.CHAIN_CONSTRAINTS_FAILURE, verify(trust_list(), token, region))

    def test_validated_chain_is_reused_only_inside_its_validity(
            self, region: MockRegion, trust_list: Build) -> None:
        """A chain validated once is not re-validated, yet still fails outside its window."""
        kid = region.add_certificate_key(not_before=NOW - timedelta(days=10),
                                         not_after=NOW - timedelta(days=1))
        verifier = Verifier(trust_list())
        inside = region.issue(iat=T - 5 * 86400, use_x5c=True, kid=kid, with_status=False,
                              exp=T + 86400).token
        outside = region.issue(iat=T - 3600, use_x5c=True, kid=kid, with_status=False,
                               exp=T + 86400).token
        assert_sub(None, verifier.check(inside, at=NOW))
        assert_sub(SubIndication.CHAIN_CONSTRAINTS_FAILURE, verifier.check(outside, at=NOW))
        assert_sub(None, verifier.check(inside, at=NOW))

    def test_another_regions_ca(self, pair: tuple[MockRegion, MockRegion],
                                trust_list: Build) -> None:
        """A licence claiming one region, its chain to another region's root: the chain
        holds, the jurisdiction does not."""
        claimed, other = pair
        licence = other.issue(iat=T - 60, use_x5c=True, with_status=False)
        token = other.sign(licence.header, {**licence.claims, "iss": claimed.region_code},
                           kid=other.x509_kid)
        verdict = verify(trust_list(), token, claimed)
        assert_sub(SubIndication.JURISDICTION_MISMATCH, verdict)
        assert other.root_kid == verdict.anchor_kid

    def test_other_regions_root_appended_to_the_chain(
            self, pair: tuple[MockRegion, MockRegion], trust_list: Build) -> None:
        """Another region's root certificate appended to x5c does not make the chain its."""
        region, other = pair
        licence = region.issue(iat=T - 60, use_x5c=True, with_status=False)
        foreign = base64.b64encode(other.root_certificate.public_bytes(Encoding.DER)).decode()
        token = region.sign({**licence.header, "x5c": [*licence.header["x5c"], foreign]},
                            licence.claims, kid=region.x509_kid)
        verdict = verify(trust_list(), token, region)
        assert_sub(None, verdict)
        assert region.root_kid == verdict.anchor_kid

    def test_signature_of_a_chain_certificate_changed(self, region: MockRegion,
                                                      trust_list: Build) -> None:
        """A signer certificate whose signature bytes were changed: no chain verifies."""
        licence = region.issue(iat=T - 60, use_x5c=True, with_status=False)
        der = bytearray(base64.b64decode(licence.header["x5c"][0]))
        der[-5] ^= 1  # inside the signature value, the last field of the certificate
        x5c = [base64.b64encode(bytes(der)).decode()]
        token = region.sign({**licence.header, "x5c": x5c}, licence.claims,
                            kid=region.x509_kid)
        verdict = verify(trust_list(), token, region)
        assert verdict.check("anchor") is not None
        assert_sub(SubIndication.CHAIN_CONSTRAINTS_FAILURE, verdict)


class TestSm2X5cBounds(ecdsa.TestX5cBounds):
    """Every bound of ``TestX5cBounds`` (long chains, path-building bombs, repeated
    certificates, subjects and keys, the root budget), over Bijie's SM2 chains."""

    @pytest.fixture
    def sh(self, federation: Any) -> MockRegion:
        """Bijie in the place of Shanghai."""
        region: MockRegion = federation["520500"]
        assert is_sm2_certificate(region.root_certificate)
        return region
