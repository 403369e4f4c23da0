"""Strict base64url (RFC 4648 section 5, no padding), as JWS requires (RFC 7515 2)."""

from __future__ import annotations

import base64
import binascii

__all__ = ["b64url_decode", "b64url_encode"]

_TO_STD = bytes.maketrans(b"-_", b"+/")
_VALUE = {c: i for i, c in enumerate(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}


def b64url_encode(data: bytes) -> str:
    """Encode without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str | bytes) -> bytes:
    """Decode unpadded base64url, refusing padding, stray characters and non-canonical tails.

    Raises ``ValueError`` on any deviation, so one token has exactly one encoding.
    """
    raw = text.encode("ascii", "strict") if isinstance(text, str) else text
    # The standard alphabet's "+" and "/" and padding are foreign here; after mapping
    # "-_" to "+/", binascii's strict mode refuses every other stray byte (whitespace,
    # non-ASCII) and a length that leaves one character over.
    if b"+" in raw or b"/" in raw or b"=" in raw:
        raise ValueError("not unpadded base64url")
    try:
        data = binascii.a2b_base64(raw.translate(_TO_STD) + b"=" * (-len(raw) % 4),
                                   strict_mode=True)
    except binascii.Error as exc:
        raise ValueError("not unpadded base64url") from exc
    # Non-canonical encodings decode to the same bytes; refuse them. A tail of 2 (or 3)
    # characters carries 1 (or 2) bytes, and the last character's low 4 (or 2) bits
    # are unused: canonical when they are zero (RFC 4648 3.5).
    tail = len(raw) % 4
    if tail and _VALUE[raw[-1]] & (0x0F if tail == 2 else 0x03):
        raise ValueError("non-canonical base64url")
    return data
