
"""Status lists: tokens signed by the status key, with entries at the right bits."""

from __future__ import annotations

import zlib

import jwt
import pytest

from mocks import MockRegion, b64url_decode


def _read(region: MockRegion, token: str) -> tuple[int, bytes, dict[str, object]]:
    claims = jwt.decode(
        token, key=jwt.PyJWK(region.public_jwk(region.status_kid)), algorithms=["ES256"]
    )
    status_list = claims["status_list"]
    assert isinstance(status_list, dict)
    return status_list["bits"], zlib.decompress(b64url_decode(status_list["lst"])), claims


def _entry(data: bytes, bits: int, idx: int) -> int:
    # Token Status List: entry idx starts at the least significant bit of byte idx*bits/8.
    offset = idx * bits
    return (data[offset // 8] >> (offset % 8)) & ((1 << bits) - 1)


class TestStatusList:
    """The status list reflects revocations and suspensions."""

    def test_revoke_suspend_reinstate(self, region: MockRegion) -> None:
        """Revoked reads 1, suspended 2, reinstated and untouched 0."""
        idx = [region.issue().status_idx for _ in range(5)]
        assert None not in idx
        a, b, c, d, e = (i for i in idx if i is not None)
        region.revoke(b)
        region.suspend(c)
        region.suspend(d)
        region.reinstate(d)
        bits, data, _ = _read(region, region.status_list_token())
        assert (2, [0, 1, 2, 0, 0]) == (bits, [_entry(data, 2, i) for i in (a, b, c, d, e)])

    def test_issue_with_state(self, region: MockRegion) -> None:
        """``state="revoked"`` issues a licence already revoked in the list."""
        idx = region.issue(state="revoked").status_idx
        assert idx is not None
        assert 1 == region.status_of(idx)

    def test_one_bit_list(self, region: MockRegion) -> None:
        """With bits=1 the revoked entry is the single bit at its index."""
        for _ in range(9):
            region.issue()
        region.revoke(8)
        bits, data, _ = _read(region, region.status_list_token(bits=1))
        assert (1, 0b1, 0) == (bits, data[1], data[0])

    def test_one_bit_cannot_hold_suspended(self, region: MockRegion) -> None:
        """A 1-bit list refuses to encode a suspension rather than lose it."""
        region.suspend(3)
        with pytest.raises(ValueError, match="SUSPENDED"):
            region.status_list_token(bits=1)

    def test_token_header_and_claims(self, region: MockRegion) -> None:
        """typ statuslist+jwt, the status kid, sub = the licences' status URI, iat/exp/ttl."""
        licence = region.issue()
        token = region.status_list_token(iat=1_790_000_000, exp=4_000_000_000, ttl=300)
        _, _, claims = _read(region, token)
        header = jwt.get_unverified_header(token)
        assert ("statuslist+jwt", region.status_kid) == (header["typ"], header["kid"])
        assert licence.claims["status"]["status_list"]["uri"] == claims["sub"]
        assert (1_790_000_000, 4_000_000_000, 300) == (claims["iat"], claims["exp"], claims["ttl"])

    def test_list_is_padded_for_privacy(self, region: MockRegion) -> None:
        """The encoded list is large even with few licences, so its size reveals little."""
        _, data, _ = _read(region, region.status_list_token())
        assert 4096 == len(data)
