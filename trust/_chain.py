"""X.509 chains from a licence's ``x5c`` to a partner's ``root-ca`` anchor.

The chain is the attacker's input, so its cost is bounded before anything is
verified (``x5c_problem``): at most ``MAX_X5C_CERTIFICATES`` certificates, no
certificate, subject or key twice. Each certificate then has at most one
issuer in the chain, and the path to a root is followed link by link
(``find_path``), each signature checked once and charged to the licence's
``ChainBudget`` (``MAX_X5C_SIGNATURE_CHECKS`` over every candidate root, of
which at most ``MAX_X5C_ROOTS`` are tried). Only a path that reaches a root's
own signature goes to ``validate_chain``.

An SM2 chain (a certificate or the root with an SM2 key, or signed
SM2-with-SM3) has its signatures checked and its path validated by
``trust._sm2cert`` under the same rules, since cryptography does neither for SM2.

Validation of the others is cryptography's (``x509.verification``) under the ecert
signer-certificate profile rather than the web PKI's: the end-entity
certificate needs basicConstraints CA=false and keyUsage digitalSignature, and
no subjectAltName or extendedKeyUsage. Validity is judged at the licence's
signing time (``iat``). It is handed the path found and nothing else, so it
re-checks only that path's signatures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from trust._anchors import Anchor, AnchorUse, TrustList
from trust._sm2cert import (
    certificate_spki,
    is_sm2_certificate,
    sm2_signed_by,
    validate_sm2_path,
)

__all__ = [
    "MAX_X5C_CERTIFICATES",
    "MAX_X5C_ROOTS",
    "MAX_X5C_SIGNATURE_CHECKS",
    "ChainBudget",
    "ChainResult",
    "candidate_roots",
    "find_path",
    "validate_chain",
    "x5c_problem",
]

MAX_X5C_CERTIFICATES = 4
"""Certificates an ``x5c`` may carry: the signer, up to two intermediates, the root itself."""
MAX_X5C_ROOTS = 3
"""``root-ca`` anchors one licence's chain is tried against (the issuing region's first)."""
MAX_X5C_SIGNATURE_CHECKS = 8
"""Certificate signatures one licence's chain may cost over every root tried.

A valid chain of ``MAX_X5C_CERTIFICATES`` costs three (each link once, the
root's signature last); the rest is room for a second root of the same name.
"""

_SHA256 = hashes.SHA256()


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


def _key_bytes(cert: x509.Certificate) -> bytes | None:
    """The certificate's SubjectPublicKeyInfo, or None when its key type is not readable."""
    if is_sm2_certificate(cert):
        return certificate_spki(cert)
    try:
        return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except (UnsupportedAlgorithm, ValueError):
        return None  # no signature can be checked with such a key either


def x5c_problem(certs: Sequence[x509.Certificate]) -> str | None:
    """Why ``certs`` cannot be one certification path, decided without a signature check.

    RFC 7515 4.1.6: each certificate after the first certifies the one before;
    RFC 5280 6.1: a certificate appears once in a path. Asking the same of
    subjects and keys leaves every certificate at most one possible issuer in
    the chain, so no path is searched for: seven self-issued CAs bearing a
    root's name and sharing one key would each verify as the issuer of every
    other, and a path builder would try their permutations.
    """
    if len(certs) > MAX_X5C_CERTIFICATES:
        return f"x5c carries {len(certs)} certificates, at most {MAX_X5C_CERTIFICATES} are allowed"
    seen: dict[tuple[str, bytes], int] = {}
    for index, cert in enumerate(certs):
        marks = (("certificate", cert.fingerprint(_SHA256)),
                 ("subject", cert.subject.public_bytes()),
                 ("key", _key_bytes(cert)))
        for what, value in marks:
            if value is None:
                continue
            first = seen.setdefault((what, value), index)
            if first != index:
                return f"x5c entries {first} and {index} repeat a {what}"
    return None


class ChainBudget:
    """The certificate signature checks one licence may still spend on its chain.

    Each (certificate, issuer) pair is checked once, whichever root asks.
    """

    __slots__ = ("_known", "limit", "spent")

    def __init__(self, limit: int = MAX_X5C_SIGNATURE_CHECKS) -> None:
        self.limit = limit
        self.spent = 0
        """Signature checks made so far."""
        self._known: dict[tuple[bytes, bytes, bytes | None], bool] = {}

    @property
    def exhausted(self) -> bool:
        """True once every check is spent."""
        return self.spent >= self.limit

    def signed_by(self, cert: x509.Certificate, issuer: x509.Certificate, *,
                  sm2_id: bytes | None = None) -> bool | None:
        """Whether ``issuer``'s key signed ``cert`` (None: the budget is spent, not checked).

        An SM2 issuer's signature is checked under ``sm2_id`` (None: the profile's ID).
        """
        pair = (cert.fingerprint(_SHA256), issuer.fingerprint(_SHA256), sm2_id)
        known = self._known.get(pair)
        if known is not None:
            return known
        if self.exhausted:
            return None
        self.spent += 1
        if is_sm2_certificate(issuer) or is_sm2_certificate(cert):
            verdict = sm2_signed_by(cert, issuer, signer_id=sm2_id)
            self._known[pair] = verdict
            return verdict
        try:
            cert.verify_directly_issued_by(issuer)
        except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
            verdict = False
        else:
            verdict = True
        self._known[pair] = verdict
        return verdict


def _describe(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def find_path(certs: Sequence[x509.Certificate], root: Anchor,
              budget: ChainBudget) -> list[x509.Certificate] | str:
    """The path from leaf ``certs[0]`` through ``certs`` to ``root``'s signature, or why none.

    ``certs`` must have passed ``x5c_problem``: with one certificate per
    subject, each step has one candidate in the chain, and the root when the
    issuer is named after it. Every signature checked is charged to ``budget``.
    """
    root_cert = root.certificates[0]
    root_name = root_cert.subject.public_bytes()
    by_subject = {cert.subject.public_bytes(): cert for cert in certs[1:]}
    path = [certs[0]]
    while True:
        current = path[-1]
        issuer_name = current.issuer.public_bytes()
        if issuer_name == root_name:
            signed = budget.signed_by(current, root_cert, sm2_id=root.sm2_id)
            if signed is None:
                break
            if signed:
                return path
        issuer = by_subject.get(issuer_name)
        if issuer is None or issuer in path:
            return (f"{_describe(current)!r} is issued neither by root {root.kid!r} nor by "
                    "another certificate of x5c")
        signed = budget.signed_by(current, issuer)
        if signed is None:
            break
        if not signed:
            return (f"the signature of {_describe(current)!r} does not verify with the key of "
                    f"{_describe(issuer)!r}")
        path.append(issuer)
    return f"the chain needs more than {budget.limit} signature checks"


@dataclass(frozen=True, slots=True)
class ChainResult:
    """The outcome of validating one chain against one root."""

    ok: bool
    detail: str


def validate_chain(
    certs: Sequence[x509.Certificate], root: Anchor, *, at: datetime
) -> ChainResult:
    """Validate leaf ``certs[0]`` with ``certs[1:]`` as intermediates up to ``root`` at ``at``.

    Give it a path ``find_path`` found: the library builds paths itself and is
    bounded here only by the chain depth.
    """
    root_cert = root.certificates[0]
    if any(is_sm2_certificate(cert) for cert in (*certs, root_cert)):
        problem = validate_sm2_path(certs, root_cert, at=at.astimezone(UTC))
        if problem is not None:
            return ChainResult(False, problem)
        return ChainResult(True, f"chain of {len(certs)} to root {root.kid!r}")
    naive_utc = at.astimezone(UTC).replace(tzinfo=None)
    verifier = (
        PolicyBuilder()
        .store(Store([root.certificates[0]]))
        .time(naive_utc)
        .max_chain_depth(MAX_X5C_CERTIFICATES)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
        .build_client_verifier()
    )
    try:
        verifier.verify(certs[0], list(certs[1:]))
    except VerificationError as exc:
        return ChainResult(False, str(exc))
    return ChainResult(True, f"chain of {len(certs)} to root {root.kid!r}")
