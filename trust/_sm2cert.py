"""SM2 certificates: their keys and signatures, and the narrow path validation of SM2 chains.

cryptography parses an SM2 certificate (GB/T 20518, GM/T 0015) but reads
neither its key (curve 1.2.156.10197.1.301) nor checks its signature
(SM2-with-SM3, 1.2.156.10197.1.501). What it cannot do is done here, on the
SM2 primitive of ``trust._sm2``:

* the SubjectPublicKeyInfo is taken from the DER of the TBSCertificate (its
  seventh field, RFC 5280 4.1), and read by ``Sm2PublicKey.from_spki``;
* a signature is SM2 over ``SM3(Z_A ‖ tbsCertificate)``, ``Z_A`` of the
  issuer's key under the signer ID ``1234567812345678`` (GM/T 0009, GB/T 20518;
  OpenSSL 3 signs so with ``-sigopt distid:1234567812345678``; without it
  OpenSSL 3.0 uses an empty ID, which is not accepted) or the ID the ``root-ca``
  anchor sets (``sm2_id``) for the root's own signatures; the algorithm must be
  SM2-with-SM3 both outside and inside the TBSCertificate;
* ``validate_sm2_path`` applies the rules the ECDSA path gets from
  cryptography's verifier with the ecert profile: version 3, validity at the
  signing time for every certificate up to the root, CA=true and keyCertSign
  on every issuer, path lengths, no unknown critical extension, and the
  signer-certificate profile (CA=false, digitalSignature, an authority key
  identifier matching its issuer's). It is handed a path whose signatures
  ``find_path`` checked, and checks no signature itself.

An SM2 chain is SM2 throughout: one certificate of another kind in the path
(or a root of another kind) makes it fail, never a mix of validators.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtensionOID

from trust._errors import JoseError
from trust._jose import VerifyingKey, key_from_public
from trust._sm2 import SM2_DEFAULT_SIGNER_ID, Sm2PublicKey, is_sm2_spki

__all__ = [
    "SM2_WITH_SM3",
    "certificate_key",
    "certificate_spki",
    "is_sm2_certificate",
    "sm2_certificate_key",
    "sm2_signed_by",
    "validate_sm2_path",
]

SM2_WITH_SM3 = x509.ObjectIdentifier("1.2.156.10197.1.501")
"""The signature algorithm SM2-with-SM3 (GM/T 0006, GB/T 33560)."""
# AlgorithmIdentifier { SM2-with-SM3 } as OpenSSL writes it (no parameters).
_SM2_WITH_SM3_DER = bytes.fromhex("300a06082a811ccf55018375")
# Extensions this validator reads: any other marked critical fails the path (RFC 5280 4.2).
_UNDERSTOOD = frozenset({ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE,
                         ExtensionOID.SUBJECT_KEY_IDENTIFIER,
                         ExtensionOID.AUTHORITY_KEY_IDENTIFIER})


def _tlv(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of contents, end) of the DER element at ``at``, or ValueError."""
    if at + 2 > len(data):
        raise ValueError("DER element cut short")
    tag, first = data[at], data[at + 1]
    at += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if not 1 <= count <= 3 or at + count > len(data):
            raise ValueError("DER length out of range")
        length = int.from_bytes(data[at:at + count], "big")
        at += count
    if at + length > len(data):
        raise ValueError("DER element runs past its container")
    return tag, at, at + length


def _tbs_fields(cert: x509.Certificate) -> list[bytes]:
    """The TBSCertificate's fields up to subjectPublicKeyInfo, each as its whole DER."""
    tbs = cert.tbs_certificate_bytes
    tag, at, end = _tlv(tbs, 0)
    if tag != 0x30:
        raise ValueError("TBSCertificate is not a SEQUENCE")
    fields: list[bytes] = []
    while at < end and len(fields) < 7:
        _, _, next_at = _tlv(tbs, at)
        fields.append(tbs[at:next_at])
        at = next_at
    if fields and fields[0][:1] != b"\xa0":
        fields.insert(0, b"")  # version absent (v1): keep the positions of RFC 5280 4.1
    if len(fields) < 7:
        raise ValueError("TBSCertificate has too few fields")
    return fields


def certificate_spki(cert: x509.Certificate) -> bytes | None:
    """The certificate's SubjectPublicKeyInfo (DER) as written, or None when unreadable."""
    try:
        return _tbs_fields(cert)[6]
    except ValueError:
        return None


def is_sm2_certificate(cert: x509.Certificate) -> bool:
    """True when the certificate carries an SM2 key or is signed SM2-with-SM3."""
    spki = certificate_spki(cert)
    return (spki is not None and is_sm2_spki(spki)) or cert.signature_algorithm_oid == SM2_WITH_SM3


def sm2_certificate_key(cert: x509.Certificate, *,
                        signer_id: bytes | None = None) -> Sm2PublicKey:
    """The SM2 key of ``cert`` (under ``signer_id``, default the profile's), or JoseError."""
    spki = certificate_spki(cert)
    if spki is None or not is_sm2_spki(spki):
        raise JoseError("certificate key is not an SM2 key")
    return Sm2PublicKey.from_spki(
        spki, signer_id=SM2_DEFAULT_SIGNER_ID if signer_id is None else signer_id)


def certificate_key(cert: x509.Certificate, *, sm2_id: bytes | None = None) -> VerifyingKey:
    """The verifying key of ``cert``: its SM2 key (signing under ``sm2_id``, default the
    profile's) read here, any other through cryptography (which may raise
    ``UnsupportedAlgorithm``); JoseError for a key off the allow-list or off the curve,
    or an ``sm2_id`` given with a certificate that is not SM2."""
    if is_sm2_certificate(cert):
        return key_from_public(sm2_certificate_key(cert, signer_id=sm2_id))
    if sm2_id is not None:
        raise JoseError("a signer ID (sm2_id) is for SM2 keys only")
    return key_from_public(cert.public_key())


def sm2_signed_by(cert: x509.Certificate, issuer: x509.Certificate, *,
                  signer_id: bytes | None = None) -> bool:
    """Whether ``issuer``'s SM2 key signed ``cert`` SM2-with-SM3 under ``signer_id``."""
    if cert.signature_algorithm_oid != SM2_WITH_SM3:
        return False
    try:
        if _tbs_fields(cert)[2] != _SM2_WITH_SM3_DER:
            return False  # RFC 5280 4.1.1.2: the same algorithm inside and outside
        key = sm2_certificate_key(issuer, signer_id=signer_id)
        r, s = decode_dss_signature(cert.signature)
    except (JoseError, ValueError):
        return False
    if not (0 < r < 1 << 256 and 0 < s < 1 << 256):
        return False
    return key.verify(r.to_bytes(32, "big") + s.to_bytes(32, "big"), cert.tbs_certificate_bytes)


_E = TypeVar("_E", bound=x509.ExtensionType)


def _extension(cert: x509.Certificate, kind: type[_E]) -> x509.Extension[_E] | None:
    try:
        return cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None


def _ski(cert: x509.Certificate) -> bytes | None:
    ext = _extension(cert, x509.SubjectKeyIdentifier)
    return None if ext is None else ext.value.digest


def _describe(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _common_problem(cert: x509.Certificate, at: datetime) -> str | None:
    name = _describe(cert)
    if cert.version is not x509.Version.v3:
        return f"{name!r} is not an X.509 v3 certificate"
    if not is_sm2_certificate(cert) or cert.signature_algorithm_oid != SM2_WITH_SM3:
        return f"{name!r} is not an SM2-with-SM3 certificate in an SM2 chain"
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        return (f"{name!r} is valid {cert.not_valid_before_utc.isoformat()}.."
                f"{cert.not_valid_after_utc.isoformat()}, not at {at.isoformat()}")
    try:
        extensions = cert.extensions
    except ValueError as exc:  # a duplicate extension, a malformed one
        return f"{name!r} has unreadable extensions: {exc}"
    for ext in extensions:
        if ext.critical and ext.oid not in _UNDERSTOOD:
            return f"{name!r} has an unknown critical extension {ext.oid.dotted_string}"
    return None


def _issuer_problem(cert: x509.Certificate, below: int) -> str | None:
    """Why ``cert`` cannot issue, ``below`` CA certificates being under it in the path."""
    name = _describe(cert)
    bc = _extension(cert, x509.BasicConstraints)
    if bc is None or not bc.value.ca:
        return f"{name!r} issues a certificate without basicConstraints CA=true"
    if bc.value.path_length is not None and below > bc.value.path_length:
        return f"{name!r} allows {bc.value.path_length} CA certificates below it, not {below}"
    ku = _extension(cert, x509.KeyUsage)
    if ku is None or not ku.value.key_cert_sign:
        return f"{name!r} issues a certificate without keyUsage keyCertSign"
    return None


def _signer_problem(cert: x509.Certificate, issuer: x509.Certificate) -> str | None:
    name = _describe(cert)
    bc = _extension(cert, x509.BasicConstraints)
    if bc is None or bc.value.ca:
        return "signer certificate must have basicConstraints CA=false"
    ku = _extension(cert, x509.KeyUsage)
    if ku is None or not ku.value.digital_signature:
        return "signer certificate must have keyUsage digitalSignature"
    aki = _extension(cert, x509.AuthorityKeyIdentifier)
    if aki is None or aki.value.key_identifier is None:
        return "signer certificate must carry an authority key identifier"
    issuer_ski = _ski(issuer)
    if issuer_ski is not None and aki.value.key_identifier != issuer_ski:
        return f"{name!r} names another authority key than its issuer's"
    try:
        sm2_certificate_key(cert)
    except JoseError as exc:
        return f"{name!r}: {exc}"
    return None


def validate_sm2_path(path: Sequence[x509.Certificate], root: x509.Certificate, *,
                      at: datetime) -> str | None:
    """Why the SM2 path ``path`` (leaf first, each signed by the next, the last by
    ``root``) breaks a rule at ``at``, or None when it holds. Signatures are not checked."""
    chain = [*path, root]
    for cert in chain:
        problem = _common_problem(cert, at)
        if problem is not None:
            return problem
    problem = _signer_problem(chain[0], chain[1])
    if problem is not None:
        return problem
    for index, issuer in enumerate(chain[1:], start=1):
        if chain[index - 1].issuer != issuer.subject:
            return f"{_describe(chain[index - 1])!r} is not issued by {_describe(issuer)!r}"
        problem = _issuer_problem(issuer, index - 1)
        if problem is not None:
            return problem
    return None
