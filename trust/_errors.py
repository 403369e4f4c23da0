"""The root of the trust core's errors and its direct kinds (the whole tree is drawn in
``trust.__doc__``; ``ChangeError`` and ``SignedListError`` are ``TrustListError``s of
``trust._changes``, ``MerkleProofError`` and ``NoteError`` live beside their code).

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
