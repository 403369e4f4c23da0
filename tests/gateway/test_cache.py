"""The verification cache: hits are nearly free, never stale, and Redis is optional."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import logging
import time
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from redis.exceptions import RedisError

from gateway.audit.event import EventType
from gateway.credentials.store import IdentityKind, Role, add_identity
from gateway.infra.redislink import redis_client
from gateway.settings import load_settings
from gateway.verification import cache as cache_module
from gateway.verification.cache import (
    KEY_PREFIX,
    CacheEntry,
    CacheMetrics,
    MemoryTier,
    RedisTier,
    VerdictCache,
)
from gateway.web.app import create_app
from gateway.web.appkeys import TRUST_KEY, VERIFICATION_KEY
from gateway.web.logs import JsonFormatter
from mocks import LICENCE_TYPES, RunningFederation
from tests.fakes import MemoryAudit
from tests.gateway.conftest import (
    AppFactory,
    PrivateRedis,
    metric_value,
    scrape_metrics,
    trust_document,
)
from tests.services import free_port
from trust import TrustList


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Clock:
    """A settable clock, starting a little ahead of the mock regions' real one.

    (A status list the mocks sign "now" must not look issued in the future.)
    """

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)

    def __call__(self) -> datetime:
        return self.now


class TestMemoryTier:
    """Tier 1 bounds and expiry."""

    def test_lru_bound(self) -> None:
        """Beyond its bound the least recently used entry goes first."""
        tier = MemoryTier(2)
        for key in "abc":
            tier.put(key, CacheEntry(b"{}", 100.0))
        assert tier.get("a", 0.0) is None
        assert tier.get("c", 0.0) is not None
        assert 2 == len(tier)

    @pytest.mark.parametrize(("now", "hit"), [(99.0, True), (100.0, False), (101.0, False)])
    def test_expiry(self, now: float, hit: bool) -> None:
        """An entry is served strictly before its expiry."""
        tier = MemoryTier(10)
        tier.put("k", CacheEntry(b"{}", 100.0))
        assert hit == (tier.get("k", now) is not None)

    def test_decoded_front_keeps_the_entry_limits(self) -> None:
        """A decoded hit expires with its entry, is replaced by a new entry, and is bounded."""
        tier = MemoryTier(10, hot_entries=2)
        entry = CacheEntry(b"{}", 100.0, "https://sh.example/status/1", 7)
        tier.put("k", entry)
        assert tier.get_decoded("k", 50.0) is None  # nothing decoded yet
        tier.keep_decoded("k", entry, "parsed")
        limits = CacheEntry(b"", 100.0, "https://sh.example/status/1", 7)
        assert (limits, "parsed") == tier.get_decoded("k", 99.9)  # the answer bytes not kept
        assert tier.get_decoded("k", 100.0) is None  # expired with its entry
        tier.keep_decoded("k", entry, "parsed")
        tier.put("k", CacheEntry(b"{}", 200.0))
        assert tier.get_decoded("k", 50.0) is None  # a new entry voids the old decoded form
        for key in ("a", "b", "c"):
            tier.keep_decoded(key, entry, key)
        assert tier.get_decoded("a", 0.0) is None  # the least recently used went
        assert [(limits, "b"), (limits, "c")] == [tier.get_decoded(k, 0.0) for k in "bc"]
        tier.clear()
        assert tier.get_decoded("c", 0.0) is None

    def test_entry_round_trips(self) -> None:
        """An entry survives encoding for Redis."""
        entry = CacheEntry(b'{"x":1}', 12.5, "http://s/1", 7)
        assert entry == CacheEntry.decode(entry.encode())

    def test_an_entry_is_compressed_once(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Compressed where it is made; an instance that reads it from Redis keeps the
        compressed form in its tier 1 as it came, and a tier-1 entry read and stored again
        is not compressed again either."""
        packs: list[bytes] = []
        real = cache_module._pack

        def counting(data: bytes) -> bytes:
            packs.append(data)
            return real(data)

        monkeypatch.setattr(cache_module, "_pack", counting)
        answer = b'{"indication":"TOTAL_PASSED","checks":[]}'
        made = CacheEntry(answer, 100.0, "http://s/1", 7, "tag").with_packed()
        assert [answer] == packs
        sent = made.encode()  # what the instance that made it stores in Redis
        assert [answer] == packs
        found = CacheEntry.decode(sent)  # another instance reads it
        assert (answer, made.packed) == (found.answer, found.packed)
        tier = MemoryTier(10)
        tier.put("k", found)
        again = tier.get("k", 0.0)
        assert again is not None
        assert answer == again.answer
        tier.put("k2", again)
        assert [answer] == packs  # nothing compressed after the first time
        fresh = MemoryTier(10)
        fresh.put("k", CacheEntry(answer, 100.0))  # an entry without its compressed form
        assert [answer, answer] == packs

    @pytest.mark.parametrize("damage", ["truncated", "trailing", "bomb", "old-format",
                                        "not-base64"])
    def test_a_damaged_redis_value_is_no_entry(self, damage: str) -> None:
        """A value whose compressed answer is cut, followed by more bytes, inflates beyond
        any answer, is of the older uncompressed layout or is no base64 is refused (a miss
        and an error counted, as for any value that is no entry)."""
        entry = CacheEntry(b'{"x":1}', 12.5, "http://s/1", 7, "tag").with_packed()
        raw = orjson.loads(entry.encode())
        if damage == "truncated":
            raw["z"] = base64.b64encode(entry.packed[:-3]).decode()
        elif damage == "trailing":
            raw["z"] = base64.b64encode(entry.packed + b"more").decode()
        elif damage == "bomb":
            raw["z"] = base64.b64encode(zlib.compress(b"0" * (2 << 20))).decode()
        elif damage == "old-format":
            raw = {"a": {"x": 1}, "e": 12.5, "u": None, "i": None, "t": "tag"}
        else:
            raw["z"] = "not base64!"
        with pytest.raises(ValueError, match="not a cache entry"):
            CacheEntry.decode(orjson.dumps(raw))


async def test_redis_tier_down_is_a_miss_not_an_error() -> None:
    """A Redis that refuses connections makes tier 2 miss and count an error."""
    metrics = CacheMetrics()
    client = redis_client(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    tier = RedisTier(client, metrics)
    try:
        assert await tier.get("k", 0.0) is None
        await tier.put("k", CacheEntry(b"{}", time.time() + 60), time.time())
        assert 1 <= metrics.get("redis", "error")
    finally:
        await tier.close()
        await client.aclose()


@pytest.mark.redis
async def test_redis_tier_concurrent_lookups_and_stores(redis_url: str) -> None:
    """Concurrent single gets and puts (coalesced into shared round trips) each get their own."""
    metrics = CacheMetrics()
    client = redis_client(redis_url, timeout_s=1.0)
    tier = RedisTier(client, metrics)
    now = time.time()
    keys = [f"test-coalesce:{uuid.uuid4().hex}" for _ in range(40)]
    try:
        answers = [b'{"key":"%s"}' % k.encode() for k in keys]
        await asyncio.gather(*(tier.put(k, CacheEntry(answers[i], now + 5 + i, None, None), now)
                               for i, k in enumerate(keys[:30])))
        found = await asyncio.gather(*(tier.get(k, now) for k in keys))
        assert answers[:30] == [e.answer for e in found[:30] if e]
        assert [None] * 10 == found[30:]
        assert [now + 5 + i for i in range(30)] == [e.expires_at for e in found[:30] if e]
        ttl_ms = await client.pttl(KEY_PREFIX + keys[0])
        assert 0 < ttl_ms <= 5000
        assert 0 == metrics.get("redis", "error")
    finally:
        await tier.close()
        await client.aclose()


async def test_repeat_is_a_cache_hit_with_fresh_receipt_and_audit(
        gateway_client: AppFactory, running: RunningFederation, client_key: str,
        audit: MemoryAudit) -> None:
    """The second verification of a licence is answered from tier 1, still receipted and audited."""
    client = await gateway_client()
    token = running.federation["310000"].issue().token
    answers = []
    for _ in range(2):
        resp = await client.post("/v1/verifications", headers=_auth(client_key),
                                 json={"credential": token})
        answers.append(await resp.json())
    assert [False, True] == [a["cached"] for a in answers]
    assert answers[0]["indication"] == answers[1]["indication"] == "TOTAL_PASSED"
    assert answers[0]["licence"] == answers[1]["licence"]
    assert answers[1]["receipt"]
    events = audit.of(EventType.VERIFICATION)
    assert [False, True] == [e.cached for e in events]
    assert events[0].personal["holder_code"] == events[1].personal["holder_code"]


@pytest.mark.parametrize(("offset", "expected"), [(-1, (True, "TOTAL_PASSED")),
                                                  (0, (False, "TOTAL_FAILED")),
                                                  (1, (False, "TOTAL_FAILED"))])
async def test_entry_never_outlives_exp(
        gateway_client: AppFactory, running: RunningFederation, client_key: str,
        offset: int, expected: tuple[bool, str]) -> None:
    """A cached pass is served up to one second before exp, and never at or after it."""
    clock = Clock()
    client = await gateway_client(clock=clock)
    sh = running.federation["310000"]
    sh.status_ttl_s = 3600
    exp = int(clock.now.timestamp()) + 100
    token = sh.issue(exp=exp).token
    first = await (await client.post("/v1/verifications", headers=_auth(client_key),
                                     json={"credential": token})).json()
    assert "TOTAL_PASSED" == first["indication"]
    clock.now = datetime.fromtimestamp(exp + offset, UTC)
    second = await (await client.post("/v1/verifications", headers=_auth(client_key),
                                      json={"credential": token})).json()
    assert expected == (second["cached"], second["indication"])


async def test_indeterminate_is_never_cached(
        gateway_client: AppFactory, running: RunningFederation, client_key: str) -> None:
    """TRY_LATER because the status list is down is asked again, then passes when it is back."""
    # No pause after the failed fetch (status_retry_after_s): the cache is what is tested.
    client = await gateway_client(status_retry_after_s=0)
    sh = running.federation["310000"]
    token = sh.issue().token
    sh.status_available = False
    first = await (await client.post("/v1/verifications", headers=_auth(client_key),
                                     json={"credential": token})).json()
    sh.status_available = True
    second = await (await client.post("/v1/verifications", headers=_auth(client_key),
                                      json={"credential": token})).json()
    assert ("TRY_LATER", False) == (first["sub_indication"], first["cached"])
    assert ("TOTAL_PASSED", False) == (second["indication"], second["cached"])


async def test_new_trust_list_version_is_never_answered_from_old_entries(
        gateway_client: AppFactory, running: RunningFederation, client_key: str) -> None:
    """After the anchor is revoked in a new trust-list version, the cached pass is not used."""
    client = await gateway_client()
    sh = running.federation["310000"]
    token = sh.issue().token
    ok = await (await client.post("/v1/verifications", headers=_auth(client_key),
                                  json={"credential": token})).json()
    assert "TOTAL_PASSED" == ok["indication"]
    doc = trust_document(running.federation, version=4)
    for entry in doc["partners"]:
        for anchor in entry["anchors"]:
            if anchor["kid"] == sh.licence_kid:
                anchor.update(status="revoked", revoked_at=doc["issued_at"],
                              revocation_reason="key-compromise")
    client.app[TRUST_KEY].replace(TrustList.from_json(doc))
    after = await (await client.post("/v1/verifications", headers=_auth(client_key),
                                     json={"credential": token})).json()
    assert ("REVOKED", False, 4) == (after["sub_indication"], after["cached"],
                                     after["trust_list_version"])


async def test_revocation_in_status_list_stops_passing(
        gateway_client: AppFactory, running: RunningFederation, client_key: str) -> None:
    """Once the gateway holds the newer status list, the cached pass is gone."""
    client = await gateway_client()
    sh = running.federation["310000"]
    sh.status_ttl_s = 1
    issued = sh.issue()
    assert issued.status_idx is not None
    body = {"credential": issued.token}
    first = await (await client.post("/v1/verifications", headers=_auth(client_key),
                                     json=body)).json()
    assert "TOTAL_PASSED" == first["indication"]
    sh.revoke(issued.status_idx)
    deadline = time.monotonic() + 10
    answer: dict[str, Any] = first
    while time.monotonic() < deadline and answer["sub_indication"] != "REVOKED":
        await asyncio.sleep(0.2)
        answer = await (await client.post("/v1/verifications", headers=_auth(client_key),
                                          json=body)).json()
    assert "REVOKED" == answer["sub_indication"]


Instance = tuple[TestClient[web.Request, web.Application], str]
Pair = tuple[Instance, Instance]


@pytest.fixture
async def two_instances(gateway_client: AppFactory, redis_url: str, tmp_path: Path,
                        running: RunningFederation) -> Pair:
    """Gateways A and B, each with its own data folder and key, sharing one real Redis.

    Both serve one and the same trust list: verdicts are shared only between
    instances that serve the same list (version and content).
    """
    trust_list = TrustList.from_json(trust_document(running.federation))
    pair = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        key = await asyncio.to_thread(add_identity, folder, IdentityKind.CLIENT, "w")
        pair.append((await gateway_client(trust_list, data_dir=folder, redis_url=redis_url),
                     key))
    return pair[0], pair[1]


@pytest.mark.redis
async def test_shared_redis_hit_on_second_instance(
        two_instances: Pair, running: RunningFederation) -> None:
    """A licence verified on instance A is a tier-2 hit on instance B."""
    (a, key_a), (b, key_b) = two_instances
    token = running.federation["310000"].issue().token
    first = await (await a.post("/v1/verifications", headers=_auth(key_a),
                                json={"credential": token})).json()
    second = await (await b.post("/v1/verifications", headers=_auth(key_b),
                                 json={"credential": token})).json()
    assert (False, True) == (first["cached"], second["cached"])
    assert first["indication"] == second["indication"]
    metrics = await scrape_metrics(b)
    assert 1 == metric_value(metrics, "ecert_cache_events_total", tier="redis", event="hit")


@pytest.mark.redis
@pytest.mark.allow_blocking
async def test_redis_stopped_mid_run_changes_no_verdict(
        gateway_client: AppFactory, running: RunningFederation, client_key: str,
        private_redis: PrivateRedis) -> None:
    """Redis stopped during a run: zero 5xx, the same verdicts; started again: hits resume."""
    await asyncio.sleep(0.3)
    client = await gateway_client(redis_url=private_redis.url)
    sh = running.federation["310000"]
    tokens = [sh.issue().token for _ in range(6)] + ["garbage"]
    expected = ["TOTAL_PASSED"] * 6 + ["TOTAL_FAILED"]

    async def run_all() -> list[tuple[int, str]]:
        out = []
        for token in tokens:
            resp = await client.post("/v1/verifications", headers=_auth(client_key),
                                     json={"credential": token})
            out.append((resp.status, (await resp.json())["indication"]))
        return out

    assert [(200, e) for e in expected] == await run_all()
    private_redis.stop()
    client.app[TRUST_KEY].replace(TrustList.from_json(trust_document(running.federation,
                                                                     version=9)))
    assert [(200, e) for e in expected] == await run_all()  # tier 1 cleared: full + redis down
    private_redis.start()
    await asyncio.sleep(1.5)  # past the tier's back-off after errors
    client.app[TRUST_KEY].replace(TrustList.from_json(trust_document(running.federation,
                                                                     version=10)))
    assert [(200, e) for e in expected] == await run_all()  # stores into the new Redis
    metrics_before = await scrape_metrics(client)
    assert metric_value(metrics_before, "ecert_cache_events_total", tier="redis",
                        event="error")
    # Tier 1 still holds version 10; drop it to prove tier 2 answers again.
    from gateway.web.appkeys import VERIFICATION_KEY

    cache = client.app[VERIFICATION_KEY].cache
    assert cache is not None
    cache.memory.clear()
    resp = await client.post("/v1/verifications", headers=_auth(client_key),
                             json={"credential": tokens[0]})
    assert (200, True) == (resp.status, (await resp.json())["cached"])
    assert 1 <= cache.metrics.get("redis", "hit")


@pytest.mark.redis
async def test_batch_shares_verdicts_through_redis_in_one_round_trip(
        two_instances: Pair, running: RunningFederation) -> None:
    """A batch verified on A is answered from Redis on B, item by item, in order."""
    (a, key_a), (b, key_b) = two_instances
    sh = running.federation["310000"]
    # Unique junk: a shared Redis may still hold the verdict of a constant string from a
    # run a few minutes ago (correctly: the same bytes fail the same way for 300 s).
    junk = f"junk-{uuid.uuid4().hex}"
    items = [{"credential": sh.issue().token} for _ in range(5)] + [{"credential": junk}]
    first = await (await a.post("/v1/verifications/batch", headers=_auth(key_a),
                                json={"items": items})).json()
    second = await (await b.post("/v1/verifications/batch", headers=_auth(key_b),
                                 json={"items": items})).json()
    assert [r["indication"] for r in first["results"]] == [
        r["indication"] for r in second["results"]]
    assert [False] * 6 == [r["cached"] for r in first["results"]]
    assert [True] * 6 == [r["cached"] for r in second["results"]]
    metrics = await scrape_metrics(b)
    assert 6 == metric_value(metrics, "ecert_cache_events_total", tier="redis", event="hit")


PROPAGATION_BOUND_S = 1.0
"""A trust-list change is in force on every instance within this (README: about a second)."""

Client = TestClient[web.Request, web.Application]


class SharedStore:
    """Gateways A and B on one data folder (one trust-list store) and one real Redis."""

    def __init__(self, a: Client, b: Client, key: str, operator: str, approver: str) -> None:
        self.a, self.b = a, b
        self.key, self.operator, self.approver = key, operator, approver

    async def single(self, node: Client, tokens: list[str]) -> list[dict[str, Any]]:
        """Each token through ``POST /v1/verifications``."""
        answers = []
        for token in tokens:
            resp = await node.post("/v1/verifications", headers=_auth(self.key),
                                   json={"credential": token})
            assert 200 == resp.status
            answers.append(await resp.json())
        return answers

    async def batch(self, node: Client, tokens: list[str]) -> list[dict[str, Any]]:
        """The tokens through ``POST /v1/verifications/batch``."""
        resp = await node.post("/v1/verifications/batch", headers=_auth(self.key),
                               json={"items": [{"credential": t} for t in tokens]})
        assert 200 == resp.status
        results: list[dict[str, Any]] = (await resp.json())["results"]
        return results

    async def apply(self, change: dict[str, Any]) -> None:
        """Propose on A and approve on A: dual control, one approval (the settings)."""
        resp = await self.a.post("/v1/admin/proposals", headers=_auth(self.operator),
                                 json={"changes": [change], "note": "red team"})
        assert 201 == resp.status, await resp.text()
        proposal = await resp.json()
        resp = await self.a.post(f"/v1/admin/proposals/{proposal['id']}/approve",
                                 headers=_auth(self.approver), json={"comment": "ok"})
        assert (200, "applied") == (resp.status, (await resp.json())["status"])


@pytest.fixture
async def shared_store(gateway_client: AppFactory, redis_url: str, tmp_path: Path,
                       running: RunningFederation, client_key: str) -> SharedStore:
    """A and B serving the same trust list (version 3) from one store, sharing Redis."""
    trust_list = TrustList.from_json(trust_document(running.federation))
    a = await gateway_client(trust_list, redis_url=redis_url, approvals_required=1)
    b = await gateway_client(trust_list, redis_url=redis_url, approvals_required=1)
    operator = await asyncio.to_thread(add_identity, tmp_path, IdentityKind.OPERATOR, "olga",
                                       Role.OPERATOR)
    approver = await asyncio.to_thread(add_identity, tmp_path, IdentityKind.OPERATOR, "adam",
                                       Role.APPROVER)
    return SharedStore(a, b, client_key, operator, approver)


def _served(node: Client) -> int:
    return node.app[TRUST_KEY].snapshot.trust_list.version


@pytest.mark.redis
@pytest.mark.parametrize("change", [
    {"kind": "suspend-partner", "region_code": "310000"},
    {"kind": "revoke-anchor", "region_code": "310000", "kid": "310000-lic-2026a",
     "reason": "key-compromise"},
], ids=["suspend-partner", "revoke-anchor-key-compromise"])
async def test_trust_change_voids_cached_passes_on_every_instance(
        shared_store: SharedStore, running: RunningFederation, change: dict[str, Any]) -> None:
    """A change applied on A stops the cached passes on A at once and on B within the bound.

    The licences' verdicts are cached in both tiers of both instances for the
    full ``cache_max_ttl_s`` (a status list with a long ttl, or none). No answer,
    single or batch, ever carries a trust-list version older than the one its
    instance served when asked.
    """
    pair = shared_store
    sh = running.federation["310000"]
    assert change.get("kid", sh.licence_kid) == sh.licence_kid
    sh.status_ttl_s = 3600
    single = [sh.issue().token, sh.issue(with_status=False).token]
    batch = [sh.issue().token, sh.issue(with_status=False).token]
    for node in (pair.a, pair.b):
        for answer in await pair.single(node, single) + await pair.batch(node, batch):
            assert ("TOTAL_PASSED", 3) == (answer["indication"], answer["trust_list_version"])
    for answer in await pair.single(pair.b, single) + await pair.batch(pair.b, batch):
        assert (True, 3) == (answer["cached"], answer["trust_list_version"])

    await pair.apply(change)
    applied = time.monotonic()
    assert 4 == _served(pair.a)
    for node in (pair.a, pair.b):
        while True:
            served = _served(node)
            answers = await pair.single(node, single) + await pair.batch(node, batch)
            for answer in answers:
                assert answer["trust_list_version"] >= served, answer
            if served == 4:
                assert all(a["indication"] != "TOTAL_PASSED" for a in answers), answers
                break
            assert time.monotonic() - applied < PROPAGATION_BOUND_S, "B still serves 3"
            await asyncio.sleep(0.02)


def _revoked_anchor_list(running: RunningFederation, version: int) -> TrustList:
    """The federation's list with Shanghai's licence key revoked for key compromise."""
    doc = trust_document(running.federation, version=version)
    for partner in doc["partners"]:
        for anchor in partner["anchors"]:
            if anchor["kid"] == running.federation["310000"].licence_kid:
                anchor.update(status="revoked", revoked_at=doc["issued_at"],
                              revocation_reason="key-compromise")
    return TrustList.from_json(doc)


@pytest.mark.redis
class TestEntriesOfAnotherTrustList:
    """A Redis entry made under another trust list is never served, whatever key holds it."""

    async def test_tiers_never_serve_another_lists_entry(self, redis_url: str) -> None:
        """Under a new tag the old entry is not found; planted under the new key it is stale."""
        metrics = CacheMetrics()
        client = redis_client(redis_url, timeout_s=1.0)
        tier = RedisTier(client, metrics)
        cache = VerdictCache(MemoryTier(10), tier, metrics)
        old, new = f"3.{uuid.uuid4().hex}", f"4.{uuid.uuid4().hex}"
        now = time.time()
        entry = CacheEntry(b'{"trust_list_version":3}', now + 60, None, None, old)
        try:
            await cache.put(old, "k", entry, now)
            assert (entry, "memory") == await cache.get(old, "k", now)
            assert await cache.get(new, "k", now) is None
            assert [None] == await cache.get_many(new, ["k"], now)
            # An entry of the old list under the new list's key (an older or faulty writer).
            await client.set(f"{KEY_PREFIX}{new}:k", entry.encode(), px=60_000)
            cache.memory.clear()
            assert await cache.get(new, "k", now) is None
            assert [None] == await cache.get_many(new, ["k"], now)
            assert 2 == metrics.get("redis", "stale")
            assert 0 == metrics.get("redis", "hit")
        finally:
            await tier.close()
            await client.aclose()

    @pytest.mark.parametrize("retagged", [False, True], ids=["as-stored", "retagged"])
    async def test_old_verdict_under_the_new_key_is_not_an_answer(
            self, gateway_client: AppFactory, running: RunningFederation, client_key: str,
            redis_url: str, retagged: bool) -> None:
        """A pass cached under version 3, copied to version 4's key, answers neither way.

        ``retagged``: the copy even claims version 4's tag; its answer still carries
        version 3, and an answer never carries another version than the one served.
        """
        client = await gateway_client(redis_url=redis_url)
        sh = running.federation["310000"]
        sh.status_ttl_s = 3600
        token = sh.issue().token
        body = {"credential": token}
        first = await (await client.post("/v1/verifications", headers=_auth(client_key),
                                         json=body)).json()
        assert ("TOTAL_PASSED", 3) == (first["indication"], first["trust_list_version"])
        state = client.app[TRUST_KEY]
        digest = hashlib.sha256(token.encode()).hexdigest()
        redis = redis_client(redis_url, timeout_s=1.0)
        try:
            stored = await redis.get(f"{KEY_PREFIX}{state.snapshot.tag}:{digest}:")
            assert stored is not None
            state.replace(_revoked_anchor_list(running, 4))
            entry = CacheEntry.decode(stored)
            if retagged:
                entry = dataclasses.replace(entry, trust_list=state.snapshot.tag)
            await redis.set(f"{KEY_PREFIX}{state.snapshot.tag}:{digest}:", entry.encode(),
                            px=60_000)
        finally:
            await redis.aclose()
        single = await (await client.post("/v1/verifications", headers=_auth(client_key),
                                          json=body)).json()
        batch = (await (await client.post("/v1/verifications/batch", headers=_auth(client_key),
                                          json={"items": [body]})).json())["results"]
        for answer in [single, *batch]:
            assert ("REVOKED", 4) == (answer["sub_indication"], answer["trust_list_version"])


ID_NUMBER_TYPES = sorted(code for code, kind in LICENCE_TYPES.items()
                         if kind.holder == "person" and kind.number == "{holder_code}")
"""Licence types of the catalogue whose 证照编号 is the holder's 居民身份证号."""


async def _redis_ready(url: str) -> None:
    client = redis_client(url, timeout_s=0.5)
    try:
        for _ in range(100):
            try:
                await client.ping()
            except (RedisError, OSError):
                await asyncio.sleep(0.05)
            else:
                return
        raise AssertionError("private redis did not start")
    finally:
        await client.aclose()


async def _redis_text(url: str) -> str:
    """Every key and value in the Redis at ``url``, one line each."""
    client = redis_client(url, timeout_s=2.0)
    lines = []
    try:
        async for key in client.scan_iter(count=1000):
            raw = await client.type(key)
            kind = raw.decode() if isinstance(raw, bytes) else raw
            value: object = (await client.get(key) if kind == "string"
                             else await client.hgetall(key) if kind == "hash"
                             else await client.lrange(key, 0, -1) if kind == "list"
                             else await client.smembers(key) if kind == "set"
                             else await client.zrange(key, 0, -1) if kind == "zset"
                             else kind)
            lines.append(f"{key!r} {value!r}")
    finally:
        await client.aclose()
    return "\n".join(lines)


def _folder_bytes(folder: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


@pytest.mark.redis
async def test_id_number_licences_leave_no_holder_identity_behind(
        aiohttp_client: Any, running: RunningFederation, tmp_path: Path,
        private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture) -> None:
    """A licence whose number is the holder's 身份证号, verified and answered from the cache
    (single and batch), leaves that number nowhere: not in Redis (any key or value), not in
    the audit log (its records, its export, its files) and not in the logs.

    The caller still gets the number back in every answer, cached or not: it sent it.
    """
    assert ID_NUMBER_TYPES, "the catalogue marks no type whose number is the holder's id"
    caplog.set_level(logging.DEBUG)
    await _redis_ready(private_redis.url)
    data = tmp_path / "data"
    data.mkdir()
    key = await asyncio.to_thread(add_identity, data, IdentityKind.CLIENT, "window")
    auditor = await asyncio.to_thread(add_identity, data, IdentityKind.OPERATOR, "audrey",
                                      Role.AUDITOR)
    settings = load_settings({}, None, {"data_dir": data, "redis_url": private_redis.url})
    client = await aiohttp_client(create_app(
        settings, trust_list=TrustList.from_json(trust_document(running.federation))))
    sh = running.federation["310000"]
    single = [sh.issue(type_code=code) for code in ID_NUMBER_TYPES]
    batch = [sh.issue(type_code=code) for code in ID_NUMBER_TYPES]
    numbers = [lic.claims["lic"]["number"] for lic in single + batch]
    assert numbers == [lic.claims["lic"]["holder_code"] for lic in single + batch]
    assert all(len(n) == 18 for n in numbers)
    cache = client.app[VERIFICATION_KEY].cache
    assert cache is not None
    for round_ in (False, True):  # verified, then answered from Redis
        cache.memory.clear()
        answers = []
        for lic in single:
            resp = await client.post("/v1/verifications", headers=_auth(key),
                                     json={"credential": lic.token})
            answers.append(await resp.json())
        resp = await client.post("/v1/verifications/batch", headers=_auth(key),
                                 json={"items": [{"credential": lic.token} for lic in batch]})
        answers += (await resp.json())["results"]
        assert [("TOTAL_PASSED", round_)] * len(numbers) == [
            (a["indication"], a["cached"]) for a in answers]
        assert numbers == [a["licence"]["number"] for a in answers]
    assert (len(numbers), len(numbers)) == (cache.metrics.get("redis", "store"),
                                            cache.metrics.get("redis", "hit"))

    records = await (await client.get("/v1/audit/records?limit=1000",
                                      headers=_auth(auditor))).text()
    export = await (await client.get("/v1/audit/export.csv", headers=_auth(auditor))).text()
    assert records.count('"event_type":"verification"') == 2 * len(numbers)
    places = {
        "redis": await _redis_text(private_redis.url),
        "audit records": records,
        "audit export": export,
        "data folder": (await asyncio.to_thread(_folder_bytes, data)).decode("utf-8", "replace"),
        "logs": "\n".join(JsonFormatter().format(r) for r in caplog.records),
    }
    assert ":verdict:" in places["redis"]  # the verdicts are there
    assert caplog.records
    for number in numbers:
        for place, text in places.items():
            for form in {number, number.lower(), number.upper()}:
                assert form not in text, f"{number} found in {place}"
