"""The verification cache: hits are nearly free, never stale, and Redis is optional."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.appkeys import TRUST_KEY
from gateway.audit.event import EventType
from gateway.cache import CacheEntry, CacheMetrics, MemoryTier, RedisTier, redis_client
from gateway.identity import IdentityKind, add_identity
from mocks import RunningFederation
from tests.fakes import MemoryAudit
from tests.gateway.conftest import AppFactory, PrivateRedis, trust_document
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
        ttl_ms = await client.pttl("ecert:v1:verdict:" + keys[0])
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
async def two_instances(gateway_client: AppFactory, redis_url: str, tmp_path: Path) -> Pair:
    """Gateways A and B, each with its own data folder and key, sharing one real Redis."""
    pair = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        key = await asyncio.to_thread(add_identity, folder, IdentityKind.CLIENT, "w")
        pair.append((await gateway_client(data_dir=folder, redis_url=redis_url), key))
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
    metrics = await (await b.get("/metrics")).text()
    assert 'ecert_cache_events_total{tier="redis",event="hit"} 1' in metrics


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
    metrics_before = await (await client.get("/metrics")).text()
    assert 'tier="redis",event="error"' in metrics_before
    # Tier 1 still holds version 10; drop it to prove tier 2 answers again.
    from gateway.appkeys import VERIFICATION_KEY

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
    metrics = await (await b.get("/metrics")).text()
    assert 'ecert_cache_events_total{tier="redis",event="hit"} 6' in metrics
