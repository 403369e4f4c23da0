"""The partner checks that need I/O or a thread; the decisions themselves are ``trust``'s.

* ``check_request_token_async`` authenticates a request token as
  ``trust.check_request_token`` does (pure: http-api.md's rules, with the trust
  list and the time as arguments), with the signature check handed to ``run``
  (``gateway.infra.crypto_thread.CryptoThread.run``): ``trust.start_request_token``
  → ``PendingRequest.verify_signature`` on the thread → ``PendingRequest.finish``.
* ``ReplayCache`` remembers ``jti``s until their token expires: in memory
  (``MemoryReplayCache``) or in Redis with ``SET NX EX`` (``RedisReplayCache``,
  shared by every instance). A cache that cannot answer refuses the request.
* ``RateLimiter`` is a token bucket per partner region, in this process;
  ``RedisRateLimiter`` keeps the buckets in Redis, so that every worker and
  instance sharing it spends from one bucket per partner (the configured limit
  in total, not once per process).
* ``admit`` asks both in order (a replayed request is not charged); with both
  in Redis that is one script call per batch of requests (``RedisAdmission``),
  not two.

``check_request_token``, ``RequestTokenError`` and ``MAX_TOKEN_BYTES`` are
``trust``'s, named here too so that the partner room offers both variants of the
check side by side.

Errors (they carry data, never HTTP)::

    * PartnerError
      x ReplayCacheUnavailableError  the replay cache cannot answer
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.infra.coalesce import Coalescer
from gateway.infra.redislink import RedisLink
from trust import MAX_REQUEST_TOKEN_BYTES as MAX_TOKEN_BYTES
from trust import (
    REQUEST_SKEW_S,
    Anchor,
    PartnerRequest,
    RequestTokenError,
    TrustList,
    check_request_token,
    start_request_token,
)

__all__ = [
    "MAX_TOKEN_BYTES",
    "MemoryReplayCache",
    "PartnerError",
    "RateLimiter",
    "RedisRateLimiter",
    "RedisReplayCache",
    "ReplayCache",
    "RedisAdmission",
    "ReplayCacheUnavailableError",
    "RequestTokenError",
    "admit",
    "check_request_token",
    "check_request_token_async",
]


_log = logging.getLogger("gateway.partner")


class PartnerError(Exception):
    """Root of the partner room's own errors (the trust decisions raise ``TrustError``s)."""


class ReplayCacheUnavailableError(PartnerError):
    """The replay cache cannot say whether a ``jti`` was seen: the request is refused."""


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
    """``trust.check_request_token`` with the signature check run through ``run(fn)``
    (one call, whatever the number of anchors under the ``kid``)."""
    pending = start_request_token(token, trust_list=trust_list, audience=audience,
                                  method=method, path=path, body=body, now=now, skew_s=skew_s)
    verified: Anchor | None = await run(pending.verify_signature)
    return pending.finish(verified)


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
        self.admission = RedisAdmission(self._link)
        """This cache's replay check and a Redis rate limit together (``admit``)."""

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

    ``limits`` overrides ``(rate, burst)`` for some keys. In-process: each process
    counts its own requests (``RedisRateLimiter`` shares the buckets).
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

    def limits_of(self, key: str) -> tuple[float, int]:
        """``(rate, burst)`` of ``key``."""
        return self._limits.get(key, self._default)

    async def acquire(self, key: str) -> float | None:
        """``take``, for callers that also accept a shared limiter (``RedisRateLimiter``)."""
        return self.take(key)

    async def close(self) -> None:
        """Release connections (none here)."""

    def take(self, key: str) -> float | None:
        """Spend one token; None when allowed, else the seconds until one is available."""
        rate, burst = self.limits_of(key)
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


_CLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local stamp = string.format('%.6f', now)
local again = math.max(0, now - tonumber(stamp))
local buckets = {}
local out = {}
"""
"""Lua: Redis's clock (``now``; every process reads the same one, and a script may write
after TIME since Redis 5, which replicates its effects), the time as a bucket stores it
(``stamp``), what a bucket read back in the same call would gain since (``again``), the
buckets the call steps and its answers."""

_STEP = """
  local b = buckets[key]
  local tokens
  if b == nil then
    local held = redis.call('HMGET', key, 'tokens', 'updated')
    tokens = tonumber(held[1]) or burst
    tokens = math.min(burst, tokens + math.max(0, now - (tonumber(held[2]) or now)) * rate)
    b = {}
    buckets[key] = b
  else
    tokens = math.min(burst, b.tokens + again * rate)
  end
  local wait = 0
  if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
  b.tokens = tonumber(string.format('%.6f', tokens))
  b.ttl = math.ceil(burst / rate) + 1
"""
"""Lua: one token from the bucket at ``key`` (``rate`` and ``burst`` in scope), leaving
``wait``: the seconds until one is there, 0 when one was taken. A bucket is read at its
first step in a call and stepped in Lua after that, each step starting from what reading
it back after the step before would give (the tokens and the time as stored, to the
microsecond): the answers of a read and a write a step, with one HMGET a bucket, not one
a request (the requests a loop turn gathers mostly share one region's bucket)."""

_STORE = """
for key, b in pairs(buckets) do
  redis.call('HSET', key, 'tokens', string.format('%.6f', b.tokens), 'updated', stamp)
  redis.call('EXPIRE', key, b.ttl)
end
return out
"""
"""Lua: each bucket the call stepped written once (HSET, EXPIRE); the answers returned."""

_TAKE = _CLOCK + """
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
""" + _STEP + """  out[i] = string.format('%.6f', wait)
end
""" + _STORE
"""One token from each key's bucket, on Redis's clock: the wait in seconds as text,
"0.000000" where a token was taken. A bucket left alone until it is full again is dropped
(EXPIRE)."""


class RedisRateLimiter(RateLimiter):
    """Token buckets in Redis, shared by every process that uses the same Redis.

    Redis failing (down, slower than the client's timeout) does not stop partners:
    the limit is then kept in this process with its share of the rate and burst
    (``1 / share`` of each, ``share`` being the number of worker processes), and a
    warning is logged once per failure spell.
    """

    PREFIX = "ecert:v1:partner-rate:"

    def __init__(self, client: aioredis.Redis, rate: float, burst: int, *,
                 limits: Mapping[str, tuple[float, int]] | None = None, share: int = 1,
                 owns_client: bool = True) -> None:
        super().__init__(rate, burst, limits=limits)
        share = max(1, share)
        self._local = RateLimiter(
            rate / share, max(1, burst // share),
            limits={key: (r / share, max(1, b // share)) for key, (r, b) in (limits or {}).items()})
        self._client = client
        self._owns = owns_client
        self._link = RedisLink(client)
        self._take: Coalescer[str, float] = Coalescer(self._take_many)
        self._failing = False

    async def _take_many(self, keys: list[str]) -> list[float]:
        args: list[Any] = []
        for key in keys:
            args.extend(self.limits_of(key))
        waits = await self._link.run_script(_TAKE, [self.PREFIX + key for key in keys], args)
        return [float(wait) for wait in waits]

    async def acquire(self, key: str) -> float | None:
        """One token from the shared bucket of ``key``: None, or the seconds to wait."""
        try:
            wait = await self._take(key)
        except (RedisError, OSError, TimeoutError) as exc:
            if not self._failing:
                self._failing = True
                _log.warning("rate limits kept per process: Redis unavailable",
                             extra={"error": type(exc).__name__})
            return self._local.take(key)
        self._failing = False
        return wait if wait > 0 else None

    async def close(self) -> None:
        """Close the link's connection, and the client when it is ours."""
        await self._link.close()
        if self._owns:
            await self._client.aclose()


# ----------------------------------------------------------------------- both, in one trip


_ADMIT = _CLOCK + """
for i = 1, #KEYS / 2 do
  if redis.call('SET', KEYS[2 * i - 1], '1', 'NX', 'EX', ARGV[3 * i - 2]) then
    local key = KEYS[2 * i]
    local rate = tonumber(ARGV[3 * i - 1])
    local burst = tonumber(ARGV[3 * i])
""" + _STEP + """    out[i] = string.format('%.6f', wait)
  else
    out[i] = 'replayed'
  end
end
""" + _STORE
"""For each request (a jti key, its bucket key; ttl, rate, burst): ``_FIRST_USES``'s SET
NX EX, and only when it set the key (a first use), ``_TAKE``'s bucket step: the wait as
``_TAKE`` answers it, or "replayed"."""


class RedisAdmission:
    """The replay check and the rate limit of a request in one Redis script call, for a
    ``RedisReplayCache`` and a ``RedisRateLimiter`` (the same keys and bucket steps as
    theirs, so every process spends from the same buckets whichever path it takes)."""

    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self._admit: Coalescer[tuple[str, int, str, float, int], str] = Coalescer(
            self._admit_many)

    async def _admit_many(self, items: list[tuple[str, int, str, float, int]]) -> list[str]:
        keys: list[str] = []
        args: list[Any] = []
        for jti_key, ttl_s, bucket, rate, burst in items:
            keys += (jti_key, bucket)
            args += (ttl_s, rate, burst)
        answers = await self._link.run_script(_ADMIT, keys, args)
        return [a.decode() if isinstance(a, bytes) else str(a) for a in answers]

    async def admit(self, replay_key: str, ttl_s: int, limiter: RedisRateLimiter,
                    region: str) -> tuple[bool, float | None]:
        """As ``admit``; Redis failing is ``ReplayCacheUnavailableError`` (the replay check
        cannot answer, whatever the rate limit would have said)."""
        rate, burst = limiter.limits_of(region)
        try:
            answer = await self._admit((RedisReplayCache.PREFIX + replay_key, max(1, ttl_s),
                                        RedisRateLimiter.PREFIX + region, rate, burst))
        except (RedisError, OSError, TimeoutError) as exc:
            raise ReplayCacheUnavailableError(
                f"replay cache (Redis) unavailable: {type(exc).__name__}") from exc
        if answer == "replayed":
            return False, None
        wait = float(answer)
        return True, (wait if wait > 0 else None)


async def admit(replay: ReplayCache, limiter: RateLimiter, replay_key: str, ttl_s: int,
                region: str) -> tuple[bool, float | None]:
    """Whether the request's ``jti`` is fresh (``replay.first_use``) and, when it is, the
    rate limit's answer for ``region`` (``limiter.acquire``: None, or the seconds to wait).

    A replayed request is not charged. With a Redis replay cache and a Redis rate limiter
    both steps are one script call (``RedisAdmission``); otherwise two calls, in order.
    Raises ``ReplayCacheUnavailableError`` when the replay cache cannot answer.
    """
    if isinstance(replay, RedisReplayCache) and isinstance(limiter, RedisRateLimiter):
        return await replay.admission.admit(replay_key, ttl_s, limiter, region)
    if not await replay.first_use(replay_key, ttl_s):
        return False, None
    return True, await limiter.acquire(region)
