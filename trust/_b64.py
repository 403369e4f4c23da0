"""Strict base64url (RFC 4648 section 5, no padding), as JWS requires (RFC 7515 2)."""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["b64url_decode", "b64url_encode"]

_ALPHABET = re.compile(rb"\A[A-Za-z0-9_-]*\Z")
_TO_STD = bytes.maketrans(b"-_", b"+/")


def b64url_encode(data: bytes) -> str:
    """Encode without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str | bytes) -> bytes:
    """Decode unpadded base64url, refusing padding, stray characters and non-canonical tails.

    Raises ``ValueError`` on any deviation, so one token has exactly one encoding.
    """
    raw = text.encode("ascii", "strict") if isinstance(text, str) else text
    if not _ALPHABET.match(raw) or len(raw) % 4 == 1:
        raise ValueError("not unpadded base64url")
    padded = raw.translate(_TO_STD) + b"=" * (-len(raw) % 4)
    try:
        data = base64.b64decode(padded, validate=True)
    except binascii.Error as exc:
        raise ValueError("not unpadded base64url") from exc
    # Non-canonical encodings (unused low bits set) decode to the same bytes; refuse them.
    if base64.urlsafe_b64encode(data).rstrip(b"=") != raw:
        raise ValueError("non-canonical base64url")
    return data
