"""Strict unpadded base64url (RFC 4648 section 5; RFC 7515 section 2): one encoding per value."""

from __future__ import annotations

import base64
import binascii

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trust import b64url_decode, b64url_encode

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _reference(text: str) -> bytes | None:
    """What the profile accepts, by definition: the stdlib decodes the text (after
    padding), and encoding the result again gives back exactly the text."""
    raw = text.encode("ascii")
    if len(raw) % 4 == 1 or any(c not in _ALPHABET.encode() for c in raw):
        return None
    try:
        data = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except binascii.Error:
        return None
    return data if base64.urlsafe_b64encode(data).rstrip(b"=") == raw else None


@given(st.binary(max_size=200))
def test_round_trip(data: bytes) -> None:
    """Every byte string comes back from its encoding, which has no padding."""
    text = b64url_encode(data)
    assert "=" not in text
    assert data == b64url_decode(text)
    assert data == b64url_decode(text.encode("ascii"))


@given(st.text(alphabet=_ALPHABET, max_size=64))
def test_accepts_exactly_the_canonical_encodings(text: str) -> None:
    """Any string over the alphabet: accepted iff it is the canonical encoding of its bytes."""
    expected = _reference(text)
    if expected is None:
        with pytest.raises(ValueError, match="base64url"):
            b64url_decode(text)
    else:
        assert expected == b64url_decode(text)


@pytest.mark.parametrize(("canonical", "other", "data"), [
    ("QQ", "QR", b"A"),    # 1-byte tail: the last character's low 4 bits are unused
    ("QQ", "QY", b"A"),
    ("QUI", "QUJ", b"AB"),  # 2-byte tail: the low 2 bits are unused
], ids=repr)
def test_non_canonical_tails(canonical: str, other: str, data: bytes) -> None:
    """The stdlib decodes a tail with unused bits set to the same bytes; the profile takes
    only the canonical text."""
    assert data == b64url_decode(canonical)
    assert data == base64.urlsafe_b64decode(other + "=" * (-len(other) % 4))
    with pytest.raises(ValueError, match="non-canonical"):
        b64url_decode(other)


@pytest.mark.parametrize("text", [
    "QQ==", "QQ=", "Q", "QUJD=", "QU+D", "QU/D", "QU D", "QU\nD", "QUJDé", "QUJD!",
], ids=repr)
def test_refuses_padding_and_stray_characters(text: str) -> None:
    """Padding, the standard alphabet's + and /, whitespace and other characters."""
    with pytest.raises(ValueError, match=r"base64url|ascii"):
        b64url_decode(text)
