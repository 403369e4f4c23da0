"""Verification cache in two tiers: in-process, then Redis shared by all instances.

What is cached is a definitive verdict, keyed by the trust list's tag (its
version and a digest of its content, ``TrustSnapshot.tag``), the credential's
SHA-256 and the requested matter, and only for as long as it can hold: never
past the licence's ``exp``/``valid_until``, the trust list's ``next_update``, or
the freshness of the status list it used. INDETERMINATE answers (and so every
answer shaped by a transport error) are never cached. Every entry also records
the tag it was made under, and a hit is served only under that same tag, in
either tier: a verdict made under another trust list is never an answer, even
if it reached a key it does not belong to.

Nothing that identifies a holder is cached: not the holder's name or code, and
not the licence number (for some types it is the holder's 身份证号). On a hit
they are read again from the credential the caller sent.

Redis is an optimisation, never a dependency: an error, a timeout or a
restart makes the tier miss (and, for a moment, stop asking), so answers get
slower, never wrong and never 5xx. The client reconnects by itself.
"""

from __future__ import annotations

import binascii
import logging
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.infra.coalesce import Coalescer
from gateway.infra.metrics import MetricFamily
from gateway.infra.redislink import RedisLink

__all__ = [
    "CacheEntry",
    "CacheMetrics",
    "MemoryTier",
    "RedisTier",
    "VerdictCache",
]

_log = logging.getLogger("gateway.verification.cache")

KEY_PREFIX = "ecert:v3:verdict:"
"""Followed by ``<trust-list tag>:<credential SHA-256>:<matter>``. (``v1`` keys had no
trust-list tag, ``v2`` values held the answer uncompressed: neither is read.)"""
REDIS_BACKOFF_S = 1.0
"""After a Redis error, tier 2 is skipped for this long (no timeout per request)."""


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A cached verdict: the answer without receipt or holder data, and its limits."""

    answer: bytes
    """orjson of the answer's verdict fields (no receipt, no holder, no licence number)."""
    expires_at: float
    """Unix time after which the entry must not be served."""
    status_uri: str | None = None
    status_iat: int | None = None
    """The status list the verdict used: a newer one held locally voids the entry."""
    trust_list: str = ""
    """The tag of the trust list the verdict was made under; served under no other."""
    more_status: tuple[tuple[str, int], ...] = ()
    """Further status lists (URI, ``iat``) the verdict used: a combined certificate's
    components may point to other lists than the document. A newer one held locally
    voids the entry, as for ``status_uri``."""
    packed: bytes = field(default=b"", compare=False, repr=False)
    """``answer`` compressed against the preset dictionary, once made (``with_packed``): the
    form both tiers keep, so an entry is compressed once, where it is made, and never again
    by an instance that finds it in Redis. It stands for ``answer``: a copy with another
    answer must clear it (``replace(entry, answer=..., packed=b"")``)."""

    def with_packed(self) -> CacheEntry:
        """This entry with ``packed`` made (itself when it already has it)."""
        return self if self.packed else replace(self, packed=_pack(self.answer))

    def statuses(self) -> tuple[tuple[str, int], ...]:
        """Every status list (URI, ``iat``) the verdict used."""
        first = (() if self.status_uri is None or self.status_iat is None
                 else ((self.status_uri, self.status_iat),))
        return first + self.more_status

    def encode(self) -> bytes:
        """Bytes for Redis: the limits as JSON, the answer as its compressed form (``z``,
        base64), which the instance that finds it keeps in its tier 1 as it is."""
        out: dict[str, Any] = {"z": binascii.b2a_base64(self.with_packed().packed,
                                                         newline=False).decode("ascii"),
                               "e": self.expires_at, "u": self.status_uri,
                               "i": self.status_iat, "t": self.trust_list}
        if self.more_status:
            out["m"] = [list(pair) for pair in self.more_status]
        return orjson.dumps(out)

    @classmethod
    def decode(cls, data: bytes | str) -> CacheEntry:
        """Parse bytes from Redis (raises ValueError when they are not an entry)."""
        try:
            raw: dict[str, Any] = orjson.loads(data)
            more = tuple((str(uri), int(iat)) for uri, iat in raw.get("m") or ())
            packed = binascii.a2b_base64(raw["z"], strict_mode=True)
            return cls(_unpack(packed), float(raw["e"]), raw.get("u"), raw.get("i"),
                       str(raw["t"]), more, packed)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, binascii.Error,
                zlib.error) as exc:
            raise ValueError("not a cache entry") from exc


class CacheMetrics:
    """Counters per tier: hits, misses, errors, stores."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def count(self, tier: str, event: str) -> None:
        """Add one to ``tier``/``event``."""
        key = (tier, event)
        self.counts[key] = self.counts.get(key, 0) + 1

    def get(self, tier: str, event: str) -> int:
        """The current count."""
        return self.counts.get((tier, event), 0)


# A preset dictionary for tier-1 compression (RFC 1950 FDICT): the shape every
# answer shares. It is a constant, so every process compresses alike.
_ZDICT = (
    b'{"indication":"TOTAL_FAILED","sub_indication":null,"cn_status":0,"checks":['
    b'{"name":"structure","result":"PASSED","detail":"compact JWS, header and payload are '
    b'JSON objects"},{"name":"header.alg","result":"PASSED","detail":"ES256 is allowed"},'
    b'{"name":"header","result":"PASSED","detail":"typ ecert+jwt, no forbidden parameter"},'
    b'{"name":"trust_list","result":"PASSED","detail":"version 1, fresh"},{"name":"anchor",'
    b'"result":"PASSED","detail":"licence-signing anchor \'-lic-2026a\' of "},{"name":'
    b'"signature","result":"PASSED","detail":"ES256 signature verifies with \'-lic-2026a\'"},'
    b'{"name":"claims","result":"PASSED","detail":"claims follow the ecert profile"},'
    b'{"name":"jurisdiction","result":"PASSED","detail":"iss  matches the anchor\'s region"},'
    b'{"name":"identifier","result":"PASSED","detail":"ISO 7064 MOD 37,36 check character '
    b'valid"},{"name":"issuer_code","result":"PASSED","detail":"issuer USCC valid (GB 32100)"},'
    b'{"name":"agreement","result":"PASSED","detail":"agreement with  covers type 1110000000'
    b'0013338W032"},{"name":"validity","result":"PASSED","detail":"valid now until 2029-11-25'
    b'T16:00:00+00:00"},{"name":"status","result":"PASSED","detail":"entry  valid"}],'
    b'"licence":{"identifier":"1.2.156.3005.2.11100000000013338W032.","type_code":'
    b'"11100000000013338W032","type_name":"","number":"","issuer_region":"","issuer_name":'
    b'"","issuer_code":"","issue_date":"2026-","valid_from":"2026-","valid_until":"2029-",'
    b'"matters":[]},"matters":[{"region":"330500","code":"","relationship":"equivalent",'
    b'"map":"urn:ecert:map:"}],"trust_list_version":1,"status_list":{"uri":"http://127.0.0.1:'
    b'/status/lic-2026","iat":17}}'
)


def _pack(data: bytes) -> bytes:
    packer = zlib.compressobj(1, zdict=_ZDICT)
    return packer.compress(data) + packer.flush()


def _unpack(data: bytes) -> bytes:
    unpacker = zlib.decompressobj(zdict=_ZDICT)
    answer = unpacker.decompress(data, _MAX_ANSWER)
    if not unpacker.eof or unpacker.unconsumed_tail or unpacker.unused_data:
        raise ValueError("not one complete compressed answer")
    return answer


_MAX_ANSWER = 1 << 20
"""Bytes an answer may unpack to: far above any verdict; a value from Redis that would
inflate beyond it is refused, not expanded."""


HOT_ENTRIES = 1024
"""Tier-1 entries also kept decoded (the most recently used)."""


class MemoryTier:
    """Tier 1: a size-bounded LRU of entries, in this process.

    Answers are kept compressed against a preset dictionary, which costs little
    CPU and saves most of the memory (bench/RESULTS.md), so 100,000 verdicts fit
    comfortably.
    In front of them, the most recently used ``hot_entries`` are also kept as
    their user decoded them (``keep_decoded``): the same entry with the same
    limits, without decompressing and parsing it again on every hit.
    """

    name = "memory"

    def __init__(self, max_entries: int, *, hot_entries: int = HOT_ENTRIES) -> None:
        self._max = max_entries
        self._data: OrderedDict[str, tuple[bytes, float, str | None, int | None, str,
                                           tuple[tuple[str, int], ...]]] = OrderedDict()
        self._hot_max = max(0, min(hot_entries, max_entries))
        self._hot: OrderedDict[str, tuple[CacheEntry, object]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, now: float) -> CacheEntry | None:
        """The live entry for ``key``, refreshed as most recently used."""
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] <= now:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return CacheEntry(_unpack(item[0]), item[1], item[2], item[3], item[4], item[5],
                          item[0])

    def get_decoded(self, key: str, now: float) -> tuple[CacheEntry, object] | None:
        """The live entry for ``key`` with what ``keep_decoded`` was given for it, if held."""
        item = self._hot.get(key)
        if item is None:
            return None
        if item[0].expires_at <= now:
            del self._hot[key]
            return None
        self._hot.move_to_end(key)
        return item

    def keep_decoded(self, key: str, entry: CacheEntry, decoded: object) -> None:
        """Keep ``decoded`` (the caller's parsed form of ``entry``) for the next hits."""
        if self._hot_max == 0:
            return
        # The decoded form stands for the answer bytes; only the limits are kept beside it.
        self._hot[key] = (replace(entry, answer=b"", packed=b""), decoded)
        self._hot.move_to_end(key)
        if len(self._hot) > self._hot_max:
            self._hot.popitem(last=False)

    def put(self, key: str, entry: CacheEntry) -> None:
        """Store, evicting the least recently used beyond the bound."""
        self._hot.pop(key, None)  # a decoded form belongs to the entry it was made from
        self._data[key] = (entry.packed or _pack(entry.answer), entry.expires_at,
                           entry.status_uri, entry.status_iat, entry.trust_list,
                           entry.more_status)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    def clear(self) -> None:
        """Drop everything (a new trust list makes every entry unreachable anyway)."""
        self._data.clear()
        self._hot.clear()


_SET_MANY = """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[2 * i - 1], 'PX', ARGV[2 * i])
end
return #KEYS
"""
"""SET key value PX ttl for every key: many stores in one round trip, one command."""


class RedisTier:
    """Tier 2: Redis, shared by every gateway instance."""

    name = "redis"

    def __init__(self, client: aioredis.Redis, metrics: CacheMetrics) -> None:
        self._client = client
        self._metrics = metrics
        self._skip_until = 0.0
        # Concurrent single lookups and stores share round trips (see gateway.infra.coalesce),
        # each on a connection of its own (see gateway.infra.redislink).
        self._reads = RedisLink(client)
        self._writes = RedisLink(client)
        self._get_one: Coalescer[str, bytes | None] = Coalescer(self._mget)
        self._put_one: Coalescer[tuple[str, bytes, int], None] = Coalescer(self._set_many)

    async def _mget(self, keys: list[str]) -> list[bytes | None]:
        values = await self._reads.execute("MGET", *keys)
        return [value.encode() if isinstance(value, str) else value for value in values]

    async def _set_many(self, items: list[tuple[str, bytes, int]]) -> list[None]:
        args: list[bytes | int] = []
        for _, value, ttl_ms in items:
            args += (value, ttl_ms)
        await self._writes.run_script(_SET_MANY, [key for key, _, _ in items], args)
        return [None] * len(items)

    def _failed(self, exc: BaseException) -> None:
        self._metrics.count(self.name, "error")
        self._skip_until = time.monotonic() + REDIS_BACKOFF_S
        _log.warning("redis cache unavailable", extra={"error": repr(exc)})

    async def get(self, key: str, now: float) -> CacheEntry | None:
        """The live entry, or None on a miss or any Redis trouble."""
        if time.monotonic() < self._skip_until:
            self._metrics.count(self.name, "skipped")
            return None
        try:
            data = await self._get_one(KEY_PREFIX + key)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return None
        if data is None:
            return None
        try:
            entry = CacheEntry.decode(data)
        except ValueError:
            self._metrics.count(self.name, "error")
            return None
        return entry if entry.expires_at > now else None

    async def put(self, key: str, entry: CacheEntry, now: float) -> None:
        """Store with a TTL that ends when the entry does; errors are counted, not raised."""
        ttl_ms = int((entry.expires_at - now) * 1000)
        if ttl_ms <= 0 or time.monotonic() < self._skip_until:
            return
        try:
            await self._put_one((KEY_PREFIX + key, entry.encode(), ttl_ms))
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)

    async def get_many(self, keys: list[str], now: float) -> list[CacheEntry | None]:
        """The live entries for ``keys`` in one round trip (MGET)."""
        if time.monotonic() < self._skip_until:
            self._metrics.count(self.name, "skipped")
            return [None] * len(keys)
        try:
            values = await self._reads.execute("MGET", *[KEY_PREFIX + key for key in keys])
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return [None] * len(keys)
        found: list[CacheEntry | None] = []
        for data in values:
            entry = None
            if data is not None:
                try:
                    entry = CacheEntry.decode(data)
                except ValueError:
                    self._metrics.count(self.name, "error")
            found.append(entry if entry is not None and entry.expires_at > now else None)
        return found

    async def put_many(self, items: list[tuple[str, CacheEntry]], now: float) -> None:
        """Store many entries in one round trip; errors are counted, not raised."""
        if not items or time.monotonic() < self._skip_until:
            return
        live: list[tuple[str, bytes, int]] = []
        for key, entry in items:
            ttl_ms = int((entry.expires_at - now) * 1000)
            if ttl_ms > 0:
                live.append((KEY_PREFIX + key, entry.encode(), ttl_ms))
        if not live:
            return
        try:
            await self._set_many(live)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)

    async def ping(self) -> None:
        """Raise when Redis does not answer."""
        await self._client.ping()

    async def close(self) -> None:
        """Close the connections of the coalesced lookups and stores (not the client)."""
        await self._reads.close()
        await self._writes.close()


class VerdictCache:
    """The two tiers behind one lookup, filed under the trust list's tag.

    Every method takes ``tag`` (``TrustSnapshot.tag`` of the snapshot the caller
    verifies with) and a key of the caller's; the tiers see ``<tag>:<key>``, so
    an entry made under one trust list is never found under another. An entry
    found anyway whose own ``trust_list`` is not ``tag`` (a key written by a
    faulty or older instance) is never served: it counts as ``stale``, a miss.
    """

    def __init__(self, memory: MemoryTier, redis: RedisTier | None,
                 metrics: CacheMetrics) -> None:
        self.memory = memory
        self.redis = redis
        self.metrics = metrics
        self._tag: str | None = None

    def _observe(self, tag: str) -> None:
        if self._tag != tag:
            # Keys carry the tag, so old entries can never match; free their memory.
            self.memory.clear()
            self._tag = tag

    def _current(self, tier: str, entry: CacheEntry | None, tag: str) -> CacheEntry | None:
        """``entry`` when it was made under ``tag``; a hit or a miss counted either way."""
        if entry is not None and entry.trust_list != tag:
            self.metrics.count(tier, "stale")
            entry = None
        self.metrics.count(tier, "miss" if entry is None else "hit")
        return entry

    def metric_families(self) -> list[MetricFamily]:
        """Events per tier and the verdicts held here, for ``/metrics``."""
        return [
            MetricFamily("ecert_cache_events", "counter",
                         "Verdict cache events, by tier and event.",
                         [({"tier": tier, "event": event}, count)
                          for (tier, event), count in sorted(self.metrics.counts.items())]),
            MetricFamily("ecert_cache_memory_entries", "gauge", "Verdicts held in this process.",
                         [({}, len(self.memory))]),
        ]

    def get_decoded(self, tag: str, key: str,
                    now: float) -> tuple[CacheEntry, object] | None:
        """A tier-1 hit in the form the caller kept with ``keep_decoded``, or None."""
        self._observe(tag)
        found = self.memory.get_decoded(f"{tag}:{key}", now)
        if found is None or found[0].trust_list != tag:
            return None
        self.metrics.count("memory", "hit")
        return found

    def keep_decoded(self, tag: str, key: str, entry: CacheEntry, decoded: object) -> None:
        """Keep the caller's decoded form of an entry it just had or stored."""
        self._observe(tag)
        if entry.trust_list == tag:
            self.memory.keep_decoded(f"{tag}:{key}", entry, decoded)

    async def get(self, tag: str, key: str, now: float) -> tuple[CacheEntry, str] | None:
        """The entry and the tier that had it, or None."""
        self._observe(tag)
        full = f"{tag}:{key}"
        entry = self._current("memory", self.memory.get(full, now), tag)
        if entry is not None:
            return entry, "memory"
        if self.redis is None:
            return None
        entry = self._current("redis", await self.redis.get(full, now), tag)
        if entry is None:
            return None
        self.memory.put(full, entry)
        return entry, "redis"

    async def get_many(self, tag: str, keys: list[str],
                       now: float) -> list[tuple[CacheEntry, str] | None]:
        """``get`` for many keys: tier 1 first, then one Redis round trip for the rest."""
        self._observe(tag)
        full = [f"{tag}:{key}" for key in keys]
        found: list[tuple[CacheEntry, str] | None] = []
        missing: list[int] = []
        for index, key in enumerate(full):
            entry = self._current("memory", self.memory.get(key, now), tag)
            found.append(None if entry is None else (entry, "memory"))
            if entry is None:
                missing.append(index)
        if self.redis is None or not missing:
            return found
        entries = await self.redis.get_many([full[i] for i in missing], now)
        for index, entry in zip(missing, entries, strict=True):
            current = self._current("redis", entry, tag)
            if current is not None:
                self.memory.put(full[index], current)
                found[index] = (current, "redis")
        return found

    async def put_many(self, tag: str, items: list[tuple[str, CacheEntry]],
                       now: float) -> None:
        """``put`` for many entries, with one Redis round trip."""
        self._observe(tag)
        # Compressed once here, for both tiers.
        live = [(f"{tag}:{key}", entry.with_packed()) for key, entry in items
                if entry.expires_at > now and entry.trust_list == tag]
        for key, entry in live:
            self.memory.put(key, entry)
            self.metrics.count("memory", "store")
        if self.redis is not None and live:
            await self.redis.put_many(live, now)
            for _ in live:
                self.metrics.count("redis", "store")

    async def put(self, tag: str, key: str, entry: CacheEntry, now: float) -> None:
        """Store in both tiers (only an entry made under ``tag``)."""
        self._observe(tag)
        if entry.expires_at <= now or entry.trust_list != tag:
            return
        full = f"{tag}:{key}"
        entry = entry.with_packed()  # compressed once here, for both tiers
        self.memory.put(full, entry)
        self.metrics.count("memory", "store")
        if self.redis is not None:
            await self.redis.put(full, entry, now)
            self.metrics.count("redis", "store")
