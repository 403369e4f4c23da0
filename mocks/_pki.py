"""X.509 certificates of a mock region: its root CA and licence-signing certificates.

The profile (spec/ecert-profile.md) asks for a root with CA=true and
keyCertSign, and signer certificates with CA=false, keyUsage
digitalSignature only, an authority key identifier matching the root's
subject key identifier, and no subjectAltName or extendedKeyUsage. The
knobs of :func:`make_signer` exist to make the negative cases.

SM2 certificates (GB/T 20518: an SM2 key, curve 1.2.156.10197.1.301, signed
SM2-with-SM3, 1.2.156.10197.1.501, under the signer ID 1234567812345678) are
made here too, although cryptography neither holds an SM2 key nor signs with
one: the TBSCertificate is built by cryptography around a stand-in P-256 key
and algorithm, whose DER encodings have the same lengths as the SM2 ones, so
they are swapped in place, and the TBS is signed by ``mocks._sm2`` (mocks do not
import trust/).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Collection
from datetime import datetime
from typing import Literal, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

from mocks._jws import PublicKey, SigningKey, VerifyingKey
from mocks._sm2 import Sm2Key, Sm2Public

__all__ = [
    "KeyUsageName",
    "der_b64",
    "make_lookalike_ca",
    "make_root",
    "make_signer",
    "sm2_spki",
]

KeyUsageName: TypeAlias = Literal[
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
]


_SIGNING: tuple[KeyUsageName, ...] = ("digital_signature",)


def _name(organisation: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


# An extension no verifier knows: an OID under the example enterprise number 32473
# (RFC 5612), its value NULL.
_UNKNOWN_EXTENSION = x509.UnrecognizedExtension(
    x509.ObjectIdentifier("1.3.6.1.4.1.32473.1.1"), bytes.fromhex("0500"))


def _key_usage(names: Collection[KeyUsageName]) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature="digital_signature" in names,
        content_commitment="content_commitment" in names,
        key_encipherment="key_encipherment" in names,
        data_encipherment="data_encipherment" in names,
        key_agreement="key_agreement" in names,
        key_cert_sign="key_cert_sign" in names,
        crl_sign="crl_sign" in names,
        encipher_only=False,
        decipher_only=False,
    )


# RFC 5480 SubjectPublicKeyInfo of an SM2 key (id-ecPublicKey, the SM2 curve), and the
# AlgorithmIdentifiers ecdsa-with-SHA256 and SM2-with-SM3 (both 12 bytes).
_SM2_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d03420004")
_ECDSA_SHA256_ALG = bytes.fromhex("300a06082a8648ce3d040302")
_SM2_SM3_ALG = bytes.fromhex("300a06082a811ccf55018375")
# The stand-in key whose place an SM2 key takes in a TBSCertificate (any P-256 key).
_STAND_IN = ec.derive_private_key(1 << 200, ec.SECP256R1())
_STAND_IN_SPKI = _STAND_IN.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def sm2_spki(public: Sm2Public) -> bytes:
    """The DER SubjectPublicKeyInfo of an SM2 key."""
    return _SM2_SPKI_PREFIX + public.x + public.y


def _subject_key(public: VerifyingKey) -> PublicKey:
    """The key cryptography's builder is given: ``public``, or the stand-in of an SM2 key."""
    return _STAND_IN.public_key() if isinstance(public, Sm2Public) else public


def _ski(public: VerifyingKey) -> x509.SubjectKeyIdentifier:
    """RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits."""
    if isinstance(public, Sm2Public):
        point = b"\x04" + public.x + public.y
        return x509.SubjectKeyIdentifier(hashlib.sha1(point, usedforsecurity=False).digest())
    return x509.SubjectKeyIdentifier.from_public_key(public)


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _sign(builder: x509.CertificateBuilder, issuer_key: SigningKey,
          subject: VerifyingKey | None = None) -> x509.Certificate:
    """Sign ``builder``; with an SM2 issuer or ``subject`` key, by the stand-in swap."""
    if isinstance(issuer_key, Sm2Key) or isinstance(subject, Sm2Public):
        return _sign_sm2(builder, issuer_key, subject)
    if isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        return builder.sign(issuer_key, hashes.SHA256(), ecdsa_deterministic=True)
    if isinstance(issuer_key, rsa.RSAPrivateKey):
        return builder.sign(issuer_key, hashes.SHA256())
    return builder.sign(issuer_key, None)


def _sign_sm2(builder: x509.CertificateBuilder, issuer_key: SigningKey,
              subject: VerifyingKey | None) -> x509.Certificate:
    tbs = builder.sign(_STAND_IN, hashes.SHA256(), ecdsa_deterministic=True).tbs_certificate_bytes
    if isinstance(subject, Sm2Public):
        assert tbs.count(_STAND_IN_SPKI) == 1
        tbs = tbs.replace(_STAND_IN_SPKI, sm2_spki(subject))
    if isinstance(issuer_key, Sm2Key):
        # The signature field is the third of the TBS, the first 12-byte AlgorithmIdentifier.
        assert tbs.count(_ECDSA_SHA256_ALG) == 1
        tbs = tbs.replace(_ECDSA_SHA256_ALG, _SM2_SM3_ALG)
        signature = issuer_key.sign(tbs)
        value = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                     int.from_bytes(signature[32:], "big"))
        algorithm = _SM2_SM3_ALG
    elif isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        value = issuer_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
        algorithm = _ECDSA_SHA256_ALG
    else:
        raise TypeError("an SM2 certificate is issued by an SM2 or a P-256 key")
    der = _der(0x30, tbs + algorithm + _der(0x03, b"\x00" + value))
    return x509.load_der_x509_certificate(der)


def make_root(
    key: SigningKey,
    *,
    organisation: str,
    common_name: str,
    not_before: datetime,
    not_after: datetime,
    serial_number: int,
) -> x509.Certificate:
    """Return a self-signed root: CA=true pathlen 0, keyCertSign and cRLSign, with SKI."""
    public = key.public_key()
    subject = _name(organisation, common_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(_subject_key(public))
        .serial_number(serial_number)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(("key_cert_sign", "crl_sign")), critical=True)
        .add_extension(_ski(public), critical=False)
    )
    return _sign(builder, key, public)


def make_signer(
    public_key: VerifyingKey,
    *,
    issuer_certificate: x509.Certificate,
    issuer_key: SigningKey,
    organisation: str,
    common_name: str,
    not_before: datetime,
    not_after: datetime,
    serial_number: int,
    ca: bool = False,
    key_usage: Collection[KeyUsageName] | None = _SIGNING,
    include_aki: bool = True,
    unknown_critical: bool = False,
) -> x509.Certificate:
    """Return a certificate for ``public_key`` issued by ``issuer_certificate``.

    With the defaults it is a licence-signing certificate as the profile
    wants; ``ca``, ``key_usage`` (``None`` leaves the extension out),
    ``include_aki`` and ``unknown_critical`` (an extension no verifier knows,
    marked critical) make the broken variants.
    """
    ski = issuer_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(organisation, common_name))
        .issuer_name(issuer_certificate.subject)
        .public_key(_subject_key(public_key))
        .serial_number(serial_number)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(_ski(public_key), critical=False)
    )
    if key_usage is not None:
        builder = builder.add_extension(_key_usage(key_usage), critical=True)
    if include_aki:
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)
        builder = builder.add_extension(aki, critical=False)
    if unknown_critical:
        builder = builder.add_extension(_UNKNOWN_EXTENSION, critical=True)
    return _sign(builder, issuer_key, public_key)


def make_lookalike_ca(
    public_key: VerifyingKey,
    *,
    root: x509.Certificate,
    issuer_key: SigningKey,
    subject: x509.Name | None = None,
    issuer: x509.Name | None = None,
    not_before: datetime,
    not_after: datetime,
    serial_number: int,
) -> x509.Certificate:
    """Return an attacker's CA certificate dressed as ``root``: its key identifiers, its name.

    By default it is self-issued under the root's own name (``subject`` and
    ``issuer`` name others); it carries the root's subject key identifier as
    both its own and its authority's, so that a path builder sees it as a
    candidate wherever the root is one.
    """
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject or root.subject)
        .issuer_name(issuer or root.subject)
        .public_key(_subject_key(public_key))
        .serial_number(serial_number)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(("key_cert_sign", "crl_sign")), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
    )
    return _sign(builder, issuer_key, public_key)


def der_b64(certificate: x509.Certificate) -> str:
    """Standard base64 (with padding) of the DER encoding, as ``x5c`` wants (RFC 7515 4.1.6)."""
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode("ascii")
