
"""The region's root CA and licence-signing certificates, and ``x5c`` licences."""

from __future__ import annotations

import base64
import itertools

import jwt
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID

from mocks import KEYS_VALID_FROM, KEYS_VALID_UNTIL, Alg, MockRegion


def _public(certificate: x509.Certificate) -> ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey:
    key = certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey)
    return key


def _chain(token: str) -> list[x509.Certificate]:
    header = jwt.get_unverified_header(token)
    return [x509.load_der_x509_certificate(base64.b64decode(c)) for c in header["x5c"]]


class TestRoot:
    """The root is a P-256 CA restricted to signing certificates, one level deep."""

    def test_root_constraints(self, region: MockRegion) -> None:
        """CA=true with pathlen 0, keyCertSign and cRLSign only, and an SKI."""
        root = region.root_certificate
        basic = root.extensions.get_extension_for_class(x509.BasicConstraints)
        usage = root.extensions.get_extension_for_class(x509.KeyUsage).value
        assert (True, 0, True) == (basic.value.ca, basic.value.path_length, basic.critical)
        assert (True, True, False) == (
            usage.key_cert_sign,
            usage.crl_sign,
            usage.digital_signature,
        )
        root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)

    def test_root_key_and_self_signature(self, region: MockRegion) -> None:
        """The root has a P-256 key and verifies its own signature."""
        root = region.root_certificate
        public = root.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert ("secp256r1", 3) == (public.curve.name, root.version.value + 1)
        root.verify_directly_issued_by(root)


class TestSigner:
    """The licence-signing certificate is what the profile asks for, and nothing more."""

    def test_issued_by_root(self, region: MockRegion) -> None:
        """The signer certificate verifies directly under the region's root."""
        region.signer_certificate.verify_directly_issued_by(region.root_certificate)

    def test_extensions(self, region: MockRegion) -> None:
        """CA=false, keyUsage digitalSignature only, AKI = root SKI, no SAN and no EKU."""
        signer = region.signer_certificate
        ext = signer.extensions
        usage = ext.get_extension_for_class(x509.KeyUsage).value
        root_ski = region.root_certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        )
        aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        assert False is ext.get_extension_for_class(x509.BasicConstraints).value.ca
        assert (True, False, False, False) == (
            usage.digital_signature,
            usage.key_cert_sign,
            usage.crl_sign,
            usage.key_encipherment,
        )
        assert root_ski.value.digest == aki.key_identifier
        names = {e.oid for e in ext}
        assert set() == names & {
            x509.SubjectAlternativeName.oid,
            x509.ExtendedKeyUsage.oid,
        }

    def test_validity_window(self, region: MockRegion) -> None:
        """The signer certificate is valid for the default key window."""
        signer = region.signer_certificate
        assert (KEYS_VALID_FROM, KEYS_VALID_UNTIL) == (
            signer.not_valid_before_utc,
            signer.not_valid_after_utc,
        )


class TestX5cLicence:
    """Licences with ``x5c`` carry the chain instead of a kid."""

    def test_header_and_signature(self, region: MockRegion) -> None:
        """The header has alg, typ and x5c only, and the leaf's key verifies the token."""
        licence = region.issue(use_x5c=True)
        chain = _chain(licence.token)
        assert ["alg", "typ", "x5c"] == sorted(licence.header)
        assert region.signer_certificate == chain[0]
        claims = jwt.decode(licence.token, key=_public(chain[0]), algorithms=["ES256"])
        assert licence.claims == claims

    def test_chain_reaches_published_root(self, region: MockRegion) -> None:
        """The leaf verifies under the root published in the trust-list entry."""
        anchor = next(a for a in region.trust_list_entry()["anchors"] if a["use"] == "root-ca")
        root = x509.load_der_x509_certificate(base64.b64decode(anchor["x5c"][0]))
        _chain(region.issue(use_x5c=True).token)[0].verify_directly_issued_by(root)

    @pytest.mark.parametrize("alg", ["ES384", "EdDSA"])
    def test_other_algorithms(self, region: MockRegion, alg: Alg) -> None:
        """A certificate-bound key of another algorithm is made on demand and verifies."""
        licence = region.issue(use_x5c=True, alg=alg)
        leaf = _chain(licence.token)[0]
        leaf.verify_directly_issued_by(region.root_certificate)
        assert licence.claims == jwt.decode(licence.token, _public(leaf), algorithms=[alg])

    def test_intermediate_breaks_pathlen(self, region: MockRegion) -> None:
        """``via_intermediate`` puts a CA between root and leaf, against the root's pathlen 0."""
        kid = region.add_certificate_key(via_intermediate=True)
        leaf, inter = _chain(region.issue(kid=kid, use_x5c=True).token)
        leaf.verify_directly_issued_by(inter)
        inter.verify_directly_issued_by(region.root_certificate)
        assert True is inter.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    def test_rogue_root(self, region: MockRegion) -> None:
        """``rogue_root`` issues from a look-alike root the region does not publish."""
        kid = region.add_certificate_key(rogue_root=True)
        leaf = region.certificate_chain(kid)[0]
        assert region.root_certificate.subject == leaf.issuer
        with pytest.raises(InvalidSignature):
            leaf.verify_directly_issued_by(region.root_certificate)

    def test_lookalike_cas(self, region: MockRegion) -> None:
        """``lookalike_cas`` CAs bear the root's name and key id, and each issues every other."""
        kid = region.add_certificate_key(lookalike_cas=3)
        leaf, *cas = region.certificate_chain(kid)
        root = region.root_certificate
        ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        assert 3 == len(cas)
        for ca in cas:
            assert (root.subject, root.subject) == (ca.subject, ca.issuer)
            assert ski == ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            leaf.verify_directly_issued_by(ca)
            for other in cas:
                other.verify_directly_issued_by(ca)
        with pytest.raises(InvalidSignature):
            leaf.verify_directly_issued_by(root)

    def test_lookalike_cas_named_and_keyed_apart(self, region: MockRegion) -> None:
        """``distinct_names`` and ``distinct_keys`` make one chain of them up to the root's name."""
        kid = region.add_certificate_key(lookalike_cas=3, distinct_names=True, distinct_keys=True)
        chain = region.certificate_chain(kid)
        assert 3 == len({ca.subject for ca in chain[1:]})
        assert 3 == len({_public(ca).public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
                         for ca in chain[1:]})
        for child, parent in itertools.pairwise(chain):
            child.verify_directly_issued_by(parent)
        assert region.root_certificate.subject == chain[-1].issuer
        with pytest.raises(InvalidSignature):
            chain[-1].verify_directly_issued_by(region.root_certificate)

    def test_bent_signer(self, region: MockRegion) -> None:
        """A CA=true signer without keyUsage and AKI can be made for negative tests."""
        kid = region.add_certificate_key(ca=True, key_usage=None, include_aki=False)
        ext = region.certificate_chain(kid)[0].extensions
        oids = {e.oid for e in ext}
        assert (True, False, False) == (
            ext.get_extension_for_class(x509.BasicConstraints).value.ca,
            x509.KeyUsage.oid in oids,
            x509.AuthorityKeyIdentifier.oid in oids,
        )
        assert ExtendedKeyUsageOID.SERVER_AUTH not in oids
