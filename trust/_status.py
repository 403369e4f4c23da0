"""IETF Token Status Lists (draft-ietf-oauth-status-list), as the ecert profile uses them.

A status list is a JWS (``typ`` ``statuslist+jwt``) signed by a ``status-signing``
anchor of the licence's region; its ``status_list`` claim holds ``bits`` (1 or 2)
and ``lst``, the base64url of ZLIB-compressed bytes. Entry ``idx`` occupies
``bits`` bits starting at the least significant bit of byte ``idx * bits // 8``.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum

from trust._anchors import AnchorStatus, AnchorUse, TrustList
from trust._b64 import b64url_decode
from trust._claims import ClaimsError, numeric_date
from trust._errors import JoseError, StatusListError
from trust._jose import ALLOWED_ALGS, Alg, parse_compact, parse_json

__all__ = ["MAX_STATUS_LIST_BYTES", "StatusList", "StatusValue", "parse_status_list"]

MAX_STATUS_LIST_BYTES = 16 * 1024 * 1024
"""Refuse lists that decompress to more than this (a zip bomb guard)."""
_MAX_TOKEN_BYTES = 4 * 1024 * 1024
_TYP = {"statuslist+jwt", "application/statuslist+jwt"}


class StatusValue(IntEnum):
    """Status values the draft defines."""

    VALID = 0
    INVALID = 1
    SUSPENDED = 2


@dataclass(frozen=True, slots=True)
class StatusList:
    """A verified status list."""

    uri: str
    region: str
    kid: str
    issued_at: datetime
    expires_at: datetime | None
    ttl_s: int | None
    bits: int
    data: bytes

    def value(self, idx: int) -> int | None:
        """The status of entry ``idx``, or None when the list is too short for it."""
        bit = idx * self.bits
        byte = bit // 8
        if byte >= len(self.data):
            return None
        return (self.data[byte] >> (bit % 8)) & ((1 << self.bits) - 1)

    def fresh_until(self, max_age_s: int) -> datetime:
        """The instant after which this list is too old to rely on."""
        limit = self.issued_at + timedelta(seconds=max_age_s)
        if self.expires_at is not None and self.expires_at < limit:
            return self.expires_at
        return limit


def parse_status_list(
    token: bytes | str, *, trust_list: TrustList, region: str, uri: str
) -> StatusList:
    """Verify a status list token for ``region`` published at ``uri``.

    Raises ``StatusListError`` for anything that makes it unusable: structure,
    ``typ``, ``sub``, signer (a ``status-signing`` anchor of the same region, inside
    its window at the list's ``iat``, neither suspended nor revoked for it) and size.
    Freshness is judged by the caller at verification time (``fresh_until``).
    """
    try:
        jws = parse_compact(token, max_bytes=_MAX_TOKEN_BYTES)
    except JoseError as exc:
        raise StatusListError(f"status list is not a compact JWS: {exc}") from exc
    header = jws.header
    alg = header.get("alg")
    if alg not in ALLOWED_ALGS:
        raise StatusListError(f"status list alg {alg!r} is not on the allow-list")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in _TYP:
        raise StatusListError("status list typ must be statuslist+jwt")
    if any(name in header for name in ("jku", "x5u", "jwk", "crit")):
        raise StatusListError("status list header carries a forbidden parameter")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise StatusListError("status list header has no kid")
    try:
        claims = parse_json(jws.payload)
    except JoseError as exc:
        raise StatusListError(f"status list {exc}") from exc
    if not isinstance(claims, Mapping):
        raise StatusListError("status list payload is not an object")
    try:
        issued_at = numeric_date(claims.get("iat"), "iat")
        expires_at = (numeric_date(claims["exp"], "exp")
                      if claims.get("exp") is not None else None)
    except ClaimsError as exc:
        raise StatusListError(f"status list {exc}") from exc
    ttl = claims.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0):
        raise StatusListError("status list ttl must be a positive integer")
    if claims.get("sub") != uri:
        raise StatusListError("status list sub does not match the URI it was fetched from")
    anchors = [a for a in trust_list.anchors(kid)
               if a.region == region and a.use is AnchorUse.STATUS_SIGNING]
    if not anchors:
        raise StatusListError(f"no status-signing anchor {kid!r} of region {region}")
    problems = []
    for anchor in anchors:
        if anchor.key is None:
            problems.append(f"anchor key unusable: {anchor.key_problem}")
            continue
        if not anchor.window_contains(issued_at):
            problems.append("list signed outside the anchor's validity window")
            continue
        if anchor.status is AnchorStatus.SUSPENDED:
            problems.append("status-signing anchor is suspended")
            continue
        if anchor.revoked_for(issued_at):
            problems.append("status-signing anchor is revoked")
            continue
        try:
            ok = anchor.key.verify(Alg(alg), jws.signing_input, jws.signature)
        except JoseError as exc:
            problems.append(str(exc))
            continue
        if ok:
            break
        problems.append("signature does not verify")
    else:
        raise StatusListError("status list rejected: " + "; ".join(problems))
    entry = claims.get("status_list")
    if not isinstance(entry, Mapping):
        raise StatusListError("status_list claim missing")
    bits = entry.get("bits")
    if bits not in (1, 2, 4, 8) or isinstance(bits, bool):
        raise StatusListError("status_list.bits must be 1, 2, 4 or 8")
    lst = entry.get("lst")
    if not isinstance(lst, str):
        raise StatusListError("status_list.lst must be a string")
    try:
        compressed = b64url_decode(lst)
        inflater = zlib.decompressobj()
        data = inflater.decompress(compressed, MAX_STATUS_LIST_BYTES)
        if inflater.unconsumed_tail or not inflater.eof:
            raise StatusListError("status list is truncated or too large")
    except (ValueError, zlib.error) as exc:
        raise StatusListError(f"status_list.lst cannot be decoded: {exc}") from exc
    assert isinstance(bits, int)
    return StatusList(uri=uri, region=region, kid=kid, issued_at=issued_at,
                      expires_at=expires_at, ttl_s=ttl, bits=bits, data=data)
