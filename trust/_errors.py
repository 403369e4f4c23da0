"""Errors raised by the trust core.

* TrustError
  x TrustListError         the anchor list itself is unusable
  x StatusListError        a status list cannot be used (malformed, badly signed, stale)
  x IdentifierError        a 证照标识 is malformed
  x RequestTokenError      a partner's request token is refused (trust._request)
  x AgreementError         a partner's agreement does not cover its request (trust._request)
  x JoseError              a compact JWS is malformed or its key unusable
  x MerkleProofError       a Merkle proof does not hold (trust.merkle)
  x NoteError              a signed note or checkpoint is unusable (trust.note)

A bad licence is never an exception: ``Verifier`` answers it with a ``Verdict``.
"""

from __future__ import annotations

__all__ = ["IdentifierError", "JoseError", "StatusListError", "TrustError", "TrustListError"]


class TrustError(Exception):
    """Root of every error the trust core raises."""


class TrustListError(TrustError):
    """The trust-list document is not usable."""


class StatusListError(TrustError):
    """A status list is malformed, badly signed, or not fresh enough."""


class IdentifierError(TrustError):
    """A licence identifier (证照标识) is malformed."""


class JoseError(TrustError):
    """A JWS or JWK is malformed, or its key is not acceptable."""

    def __init__(self, message: str, *, constraint: bool = False) -> None:
        super().__init__(message)
        self.constraint = constraint
        """True when the failure is a crypto constraint (algorithm or key strength)."""
