"""Who a partner request comes from, and whether it may be answered.

* ``check_request_token`` (pure: bytes, trust list and time in) authenticates an
  ``ecert-request+jwt`` (http-api.md, "Partner queries of Huzhou licences"):
  ``typ``, an allow-listed ``alg``, ``kid`` naming an active ``request-signing``
  anchor whose window contains ``iat``, ``iss`` = the anchor's region, ``aud`` =
  the gateway, ``exp - iat`` at most 300 s and not past (a small skew either
  way), ``htm``/``htu``/``body_sha256`` binding the token to this very request.
* ``ReplayCache`` remembers ``jti``s until their token expires: in memory
  (``MemoryReplayCache``) or in Redis with ``SET NX EX`` (``RedisReplayCache``,
  shared by every instance). A cache that cannot answer refuses the request.
* ``RateLimiter`` is a token bucket per partner region.
* ``check_agreement`` applies the partner's agreement: licence type in
  ``recognised_licence_types`` and the partner's matter (its own scheme) in
  ``recognised_matters``; a wildcard accepts anything.

Errors (they carry data, never HTTP; ``gateway.partner.routes`` maps them)::

    * PartnerError
      x RequestTokenError        the request token is missing, malformed, badly signed,
                                 expired, replayed or bound to another request (401, cn 11)
      x AgreementError           the agreement does not cover this request (403, cn 100)
      x ReplayCacheUnavailableError  the replay cache cannot answer (503)
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.infra.coalesce import Coalescer
from gateway.infra.redislink import RedisLink
from trust import (
    Alg,
    Anchor,
    AnchorStatus,
    AnchorUse,
    CompactJWS,
    JoseError,
    Partner,
    PartnerStatus,
    TrustList,
    parse_compact,
    parse_json,
)

__all__ = [
    "MAX_REQUEST_LIFETIME_S",
    "MAX_TOKEN_BYTES",
    "REQUEST_SKEW_S",
    "REQUEST_TYP",
    "AgreementError",
    "MemoryReplayCache",
    "PartnerError",
    "PartnerRequest",
    "RateLimiter",
    "RedisReplayCache",
    "ReplayCache",
    "ReplayCacheUnavailableError",
    "RequestTokenError",
    "check_agreement",
    "check_request_token",
]

REQUEST_TYP = "ecert-request+jwt"
MAX_REQUEST_LIFETIME_S = 300
"""http-api.md: ``exp`` at most 300 s after ``iat``."""
REQUEST_SKEW_S = 30
"""Clock difference tolerated between a partner and Huzhou, either way."""
MAX_TOKEN_BYTES = 8 * 1024
MAX_JTI = 128
_FOREIGN_KEY_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c", "crit"})
_ALGS: Mapping[str, Alg] = {alg.value: alg for alg in Alg}
"""The allow-list by name (a dict lookup is cheaper than ``Alg(name)`` and its error)."""


class PartnerError(Exception):
    """Root of the partner-request errors."""


class RequestTokenError(PartnerError):
    """The request token does not authenticate this request; ``reason`` says why."""

    def __init__(self, reason: str, *, claimed_iss: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.claimed_iss = claimed_iss
        """The ``iss`` the token claimed, unverified (for the audit record only)."""


class AgreementError(PartnerError):
    """The partner's agreement does not cover this request."""

    def __init__(self, reason: str, *, suspended: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.suspended = suspended
        """True when the partner as a whole is suspended (try again later)."""


class ReplayCacheUnavailableError(PartnerError):
    """The replay cache cannot say whether a ``jti`` was seen: the request is refused."""


@dataclass(frozen=True, slots=True)
class PartnerRequest:
    """An authenticated partner request."""

    partner: Partner
    kid: str
    jti: str
    issued_at: int
    expires_at: int

    @property
    def region(self) -> str:
        """The partner's region code."""
        return self.partner.region_code

    @property
    def replay_key(self) -> str:
        """The key the replay cache remembers (a ``jti`` is unique per partner)."""
        return f"{self.region}:{self.jti}"


_MAX_NUMERIC_DATE = 253402300800
"""NumericDates from 1970 up to the end of 9999, as datetime can hold them."""


def _int_claim(claims: Mapping[str, object], name: str, iss: str | None) -> int:
    value = claims.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestTokenError(f"{name} must be a NumericDate integer", claimed_iss=iss)
    if not 0 <= value < _MAX_NUMERIC_DATE:
        raise RequestTokenError(f"{name} is out of range", claimed_iss=iss)
    return value


def check_request_token(
    token: str,
    *,
    trust_list: TrustList,
    audience: str,
    method: str,
    path: str,
    body: bytes,
    now: int,
    skew_s: int = REQUEST_SKEW_S,
) -> PartnerRequest:
    """Authenticate a partner's request token for this request; raise ``RequestTokenError``.

    Pure: the replay check is the caller's (``ReplayCache``), after this passes,
    so that only signed tokens can spend a ``jti``. A suspended partner
    authenticates (its key is checked) and is refused by ``check_agreement``.
    """
    parts = _token_parts(token, trust_list)
    return _token_claims(parts, _first_verifying(parts), trust_list=trust_list, audience=audience,
                         method=method, path=path, body=body, now=now, skew_s=skew_s)


async def check_request_token_async(
    token: str,
    *,
    trust_list: TrustList,
    audience: str,
    method: str,
    path: str,
    body: bytes,
    now: int,
    run: Callable[..., Awaitable[Any]],
    skew_s: int = REQUEST_SKEW_S,
) -> PartnerRequest:
    """``check_request_token`` with the signature check run through ``run(fn, *args)``
    (one call, whatever the number of anchors under the ``kid``)."""
    parts = _token_parts(token, trust_list)
    verified = await run(_first_verifying, parts)
    return _token_claims(parts, verified, trust_list=trust_list, audience=audience,
                         method=method, path=path, body=body, now=now, skew_s=skew_s)


@dataclass(frozen=True, slots=True)
class _TokenParts:
    jws: CompactJWS
    claims: dict[str, object]
    iss: str
    kid: str
    alg: Alg
    anchors: list[Anchor]


def _first_verifying(parts: _TokenParts) -> Anchor | None:
    """The first anchor under the token's ``kid`` whose key verifies its signature."""
    for anchor in parts.anchors:
        if anchor.key is None:
            continue
        try:
            if anchor.key.verify(parts.alg, parts.jws.signing_input, parts.jws.signature):
                return anchor
        except JoseError:
            continue  # a key the allow-list forbids verifies nothing
    return None


def _token_parts(token: str, trust_list: TrustList) -> _TokenParts:
    try:
        jws = parse_compact(token, max_bytes=MAX_TOKEN_BYTES)
    except JoseError as exc:
        raise RequestTokenError(f"not a compact JWS: {exc}") from exc
    header = jws.header
    try:
        raw_claims = parse_json(jws.payload)
    except JoseError as exc:
        raise RequestTokenError(str(exc)) from exc
    if not isinstance(raw_claims, dict):
        raise RequestTokenError("payload is not a JSON object")
    claims: dict[str, object] = raw_claims
    iss_raw = claims.get("iss")
    iss = iss_raw if isinstance(iss_raw, str) and len(iss_raw) <= 16 else None
    if header.get("typ") != REQUEST_TYP:
        raise RequestTokenError(f"typ must be {REQUEST_TYP}", claimed_iss=iss)
    alg_name = header.get("alg")
    alg = _ALGS.get(alg_name) if isinstance(alg_name, str) else None
    if alg is None:
        raise RequestTokenError("alg is not on the profile's allow-list", claimed_iss=iss)
    if not _FOREIGN_KEY_HEADERS.isdisjoint(header):
        raise RequestTokenError("header names a key or extension the gateway does not accept",
                                claimed_iss=iss)
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise RequestTokenError("kid is required", claimed_iss=iss)
    if iss is None:
        raise RequestTokenError("iss must be the partner's region code")
    anchors = [a for a in trust_list.anchors(kid)
               if a.use is AnchorUse.REQUEST_SIGNING and a.region == iss]
    if not anchors:
        raise RequestTokenError("kid is not a request-signing key of the issuing region",
                                claimed_iss=iss)
    return _TokenParts(jws, claims, iss, kid, alg, anchors)


def _token_claims(parts: _TokenParts, verified: Anchor | None, *, trust_list: TrustList,
                  audience: str, method: str, path: str, body: bytes, now: int,
                  skew_s: int) -> PartnerRequest:
    iss, claims, kid = parts.iss, parts.claims, parts.kid
    if verified is None:
        raise RequestTokenError("signature does not verify", claimed_iss=iss)
    if verified.status is not AnchorStatus.ACTIVE:
        raise RequestTokenError(f"request-signing key is {verified.status.value}",
                                claimed_iss=iss)
    partner = trust_list.partner(iss)
    if partner is None:  # an anchor always has its partner; kept for the type checker
        raise RequestTokenError("unknown partner", claimed_iss=iss)
    iat = _int_claim(claims, "iat", iss)
    exp = _int_claim(claims, "exp", iss)
    if not verified.window_contains(datetime.fromtimestamp(iat, UTC)):
        raise RequestTokenError("request-signing key is outside its validity window at iat",
                                claimed_iss=iss)
    aud = claims.get("aud")
    if not (aud == audience or (isinstance(aud, list) and audience in aud)):
        raise RequestTokenError(f"aud must be {audience}", claimed_iss=iss)
    if exp <= iat or exp - iat > MAX_REQUEST_LIFETIME_S:
        raise RequestTokenError(f"exp must be within {MAX_REQUEST_LIFETIME_S} s after iat",
                                claimed_iss=iss)
    if iat > now + skew_s:
        raise RequestTokenError("iat is in the future", claimed_iss=iss)
    if now > exp + skew_s:
        raise RequestTokenError("token expired", claimed_iss=iss)
    # The profile names no nbf, but one that is present is honoured (RFC 7519 4.1.5).
    if "nbf" in claims and _int_claim(claims, "nbf", iss) > now + skew_s:
        raise RequestTokenError("token not valid yet (nbf)", claimed_iss=iss)
    if claims.get("htm") != method:
        raise RequestTokenError(f"htm must be {method}", claimed_iss=iss)
    if claims.get("htu") != path:
        raise RequestTokenError("htu does not name this request's path", claimed_iss=iss)
    digest = claims.get("body_sha256")
    if not isinstance(digest, str) or not digest.isascii() or not hmac.compare_digest(
            digest.lower(), hashlib.sha256(body).hexdigest()):
        raise RequestTokenError("body_sha256 does not match the request body", claimed_iss=iss)
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI or not jti.isprintable():
        raise RequestTokenError(f"jti must be a string of 1..{MAX_JTI} characters",
                                claimed_iss=iss)
    return PartnerRequest(partner=partner, kid=kid, jti=jti, issued_at=iat, expires_at=exp)


def check_agreement(partner: Partner, *, type_code: str, matter_code: str) -> None:
    """Raise ``AgreementError`` unless the partner is active and its agreement covers
    ``type_code`` and its own ``matter_code``."""
    if partner.status is not PartnerStatus.ACTIVE:
        raise AgreementError(f"partner {partner.region_code} is suspended", suspended=True)
    if not partner.covers_type(type_code):
        raise AgreementError(f"the agreement does not cover licence type {type_code}")
    if not partner.covers_matter(frozenset({matter_code})):
        raise AgreementError(f"the agreement does not cover matter {matter_code}")


# ----------------------------------------------------------------------- replay cache


class ReplayCache:
    """Port: remembers request ``jti``s until their tokens expire."""

    async def first_use(self, key: str, ttl_s: int) -> bool:
        """Record ``key`` for ``ttl_s`` seconds; True when it was not held already.

        Raises ``ReplayCacheUnavailableError`` when it cannot tell.
        """
        raise NotImplementedError

    async def ping(self) -> None:
        """Raise unless the cache answers (readiness)."""

    async def close(self) -> None:
        """Release connections."""


class MemoryReplayCache(ReplayCache):
    """Per-process replay cache with expiry; refuses (fails closed) when full."""

    def __init__(self, *, max_entries: int = 1_000_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[str, float] = {}
        self._max = max_entries
        self._clock = clock
        self._next_sweep = 0.0

    def _sweep(self, now: float) -> None:
        self._entries = {k: until for k, until in self._entries.items() if until > now}
        self._next_sweep = now + 10.0

    async def first_use(self, key: str, ttl_s: int) -> bool:
        """Record ``key`` unless it is held and unexpired."""
        now = self._clock()
        if now >= self._next_sweep or len(self._entries) >= self._max:
            self._sweep(now)
        until = self._entries.get(key)
        if until is not None and until > now:
            return False
        if len(self._entries) >= self._max:
            raise ReplayCacheUnavailableError("replay cache is full")
        self._entries[key] = now + max(1, ttl_s)
        return True


_FIRST_USES = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('SET', key, '1', 'NX', 'EX', ARGV[i]) and 1 or 0
end
return out
"""
"""SET key 1 NX EX ttl for every key; 1 where it was set (first use), 0 where it was held."""


class RedisReplayCache(ReplayCache):
    """Replay cache shared by every gateway instance: ``SET key 1 NX EX ttl``."""

    PREFIX = "ecert:v1:request-jti:"

    def __init__(self, client: aioredis.Redis, *, owns_client: bool = True) -> None:
        self._client = client
        self._owns = owns_client
        # Concurrent requests share one round trip (see gateway.infra.coalesce), sent on a
        # connection of its own (see gateway.infra.redislink).
        self._link = RedisLink(client)
        self._first_use: Coalescer[tuple[str, int], bool] = Coalescer(self._first_uses)

    async def _first_uses(self, items: list[tuple[str, int]]) -> list[bool]:
        stored = await self._link.run_script(_FIRST_USES, [key for key, _ in items],
                                             [ttl for _, ttl in items])
        return [bool(flag) for flag in stored]

    async def first_use(self, key: str, ttl_s: int) -> bool:
        """True when Redis set the key (it was not there)."""
        try:
            return await self._first_use((self.PREFIX + key, max(1, ttl_s)))
        except (RedisError, OSError, TimeoutError) as exc:
            raise ReplayCacheUnavailableError(
                f"replay cache (Redis) unavailable: {type(exc).__name__}") from exc

    async def ping(self) -> None:
        """Raise unless Redis answers."""
        await self._client.ping()

    async def close(self) -> None:
        """Close the link's connection, and the client when it is ours."""
        await self._link.close()
        if self._owns:
            await self._client.aclose()


# ----------------------------------------------------------------------- rate limits


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per key (partner region): ``rate`` tokens a second, ``burst`` at most.

    ``limits`` overrides ``(rate, burst)`` for some keys. In-process: each gateway
    instance counts its own requests.
    """

    def __init__(self, rate: float, burst: int, *,
                 limits: Mapping[str, tuple[float, int]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self._default = (rate, burst)
        self._limits = dict(limits or {})
        self._buckets: dict[str, _Bucket] = {}
        self._clock = clock

    def take(self, key: str) -> float | None:
        """Spend one token; None when allowed, else the seconds until one is available."""
        rate, burst = self._limits.get(key, self._default)
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(burst), now)
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / rate

    @staticmethod
    def retry_after(wait_s: float) -> str:
        """The ``Retry-After`` header value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(wait_s)))
