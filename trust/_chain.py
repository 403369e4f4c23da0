"""X.509 chains from a licence's ``x5c`` to a partner's ``root-ca`` anchor.

Path building and validation are cryptography's (``x509.verification``) under
the ecert signer-certificate profile rather than the web PKI's: the end-entity
certificate needs basicConstraints CA=false and keyUsage digitalSignature, and
no subjectAltName or extendedKeyUsage. Validity is judged at the licence's
signing time (``iat``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from trust._anchors import Anchor, AnchorUse, TrustList

__all__ = ["ChainResult", "candidate_roots", "validate_chain"]


def _ee_basic_constraints(
    _policy: Policy, _cert: x509.Certificate, ext: x509.BasicConstraints | None
) -> None:
    if ext is None or ext.ca:
        raise ValueError("signer certificate must have basicConstraints CA=false")


def _ee_key_usage(_policy: Policy, _cert: x509.Certificate, ext: x509.KeyUsage | None) -> None:
    if ext is None or not ext.digital_signature:
        raise ValueError("signer certificate must have keyUsage digitalSignature")


def _ee_aki(
    _policy: Policy, _cert: x509.Certificate, ext: x509.AuthorityKeyIdentifier | None
) -> None:
    if ext is None or ext.key_identifier is None:
        raise ValueError("signer certificate must carry an authority key identifier")


_EE_POLICY = (
    ExtensionPolicy.permit_all()
    .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _ee_basic_constraints)
    .require_present(x509.KeyUsage, Criticality.AGNOSTIC, _ee_key_usage)
    .require_present(x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, _ee_aki)
)
_CA_POLICY = ExtensionPolicy.webpki_defaults_ca()


def _key_id(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def _authority_key_id(cert: x509.Certificate) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except x509.ExtensionNotFound:
        return None
    return ext.value.key_identifier


def candidate_roots(certs: Sequence[x509.Certificate], trust_list: TrustList) -> list[Anchor]:
    """``root-ca`` anchors that issued some certificate of the chain (by name and key id)."""
    found: list[Anchor] = []
    for cert in certs:
        for anchor in trust_list.roots_by_subject.get(cert.issuer.public_bytes(), ()):
            if anchor.use is not AnchorUse.ROOT_CA or anchor in found:
                continue
            aki = _authority_key_id(cert)
            ski = _key_id(anchor.certificates[0])
            if aki is not None and ski is not None and aki != ski:
                continue
            found.append(anchor)
    return found


@dataclass(frozen=True, slots=True)
class ChainResult:
    """The outcome of validating one chain against one root."""

    ok: bool
    detail: str


def validate_chain(
    certs: Sequence[x509.Certificate], root: Anchor, *, at: datetime
) -> ChainResult:
    """Validate leaf ``certs[0]`` with ``certs[1:]`` as intermediates up to ``root`` at ``at``."""
    naive_utc = at.astimezone(UTC).replace(tzinfo=None)
    verifier = (
        PolicyBuilder()
        .store(Store([root.certificates[0]]))
        .time(naive_utc)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
        .build_client_verifier()
    )
    try:
        verifier.verify(certs[0], list(certs[1:]))
    except VerificationError as exc:
        return ChainResult(False, str(exc))
    return ChainResult(True, f"chain of {len(certs)} to root {root.kid!r}")
