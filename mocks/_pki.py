"""X.509 certificates of a mock region: its root CA and licence-signing certificates.

The profile (spec/ecert-profile.md) asks for a root with CA=true and
keyCertSign, and signer certificates with CA=false, keyUsage
digitalSignature only, an authority key identifier matching the root's
subject key identifier, and no subjectAltName or extendedKeyUsage. The
knobs of :func:`make_signer` exist to make the negative cases.
"""

from __future__ import annotations

import base64
from collections.abc import Collection
from datetime import datetime
from typing import Literal, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from mocks._jws import PrivateKey, PublicKey

__all__ = ["KeyUsageName", "der_b64", "make_lookalike_ca", "make_root", "make_signer"]

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


def _sign(builder: x509.CertificateBuilder, issuer_key: PrivateKey) -> x509.Certificate:
    if isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        return builder.sign(issuer_key, hashes.SHA256(), ecdsa_deterministic=True)
    if isinstance(issuer_key, rsa.RSAPrivateKey):
        return builder.sign(issuer_key, hashes.SHA256())
    return builder.sign(issuer_key, None)


def make_root(
    key: PrivateKey,
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
        .public_key(public)
        .serial_number(serial_number)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(("key_cert_sign", "crl_sign")), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    return _sign(builder, key)


def make_signer(
    public_key: PublicKey,
    *,
    issuer_certificate: x509.Certificate,
    issuer_key: PrivateKey,
    organisation: str,
    common_name: str,
    not_before: datetime,
    not_after: datetime,
    serial_number: int,
    ca: bool = False,
    key_usage: Collection[KeyUsageName] | None = _SIGNING,
    include_aki: bool = True,
) -> x509.Certificate:
    """Return a certificate for ``public_key`` issued by ``issuer_certificate``.

    With the defaults it is a licence-signing certificate as the profile
    wants; ``ca``, ``key_usage`` (``None`` leaves the extension out) and
    ``include_aki`` make the broken variants.
    """
    ski = issuer_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(organisation, common_name))
        .issuer_name(issuer_certificate.subject)
        .public_key(public_key)
        .serial_number(serial_number)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if key_usage is not None:
        builder = builder.add_extension(_key_usage(key_usage), critical=True)
    if include_aki:
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)
        builder = builder.add_extension(aki, critical=False)
    return _sign(builder, issuer_key)


def make_lookalike_ca(
    public_key: PublicKey,
    *,
    root: x509.Certificate,
    issuer_key: PrivateKey,
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
        .public_key(public_key)
        .serial_number(serial_number)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(("key_cert_sign", "crl_sign")), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
    )
    return _sign(builder, issuer_key)


def der_b64(certificate: x509.Certificate) -> str:
    """Standard base64 (with padding) of the DER encoding, as ``x5c`` wants (RFC 7515 4.1.6)."""
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode("ascii")
