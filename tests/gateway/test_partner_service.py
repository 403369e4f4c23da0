"""The partner service on its own: plain values in, an outcome with its national code out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.audit.event import EventType
from gateway.infra.signing import SigningKey, load_or_create_key
from gateway.licences.store import HolderKeyring, open_store
from gateway.partner.checks import (
    MemoryReplayCache,
    RateLimiter,
    ReplayCache,
    ReplayCacheUnavailableError,
)
from gateway.partner.routes import PARTNER_KEY, REFUSAL_ANSWERS
from gateway.partner.service import (
    CN_STATUS,
    MAX_QUERY_BODY,
    Failure,
    Found,
    Outcome,
    PartnerService,
    QueryRequest,
    Refusal,
    RefusalKind,
)
from gateway.settings import load_settings
from gateway.web.app import create_app
from mocks import BUSINESS_LICENCE, QUERY_PATH, Federation, PartnerClient
from tests.fakes import MemoryAudit
from tests.gateway.conftest import trust_document
from tests.gateway.test_partner_api import (
    SH_MATTER,
    SHANGHAI,
    import_rows,
    licence_row,
)
from trust import TrustList

Reader = Callable[[], Awaitable[bytes]]


def reads(body: bytes) -> Reader:
    """A body reader that hands over ``body``."""

    async def read() -> bytes:
        return body

    return read


async def never_read() -> bytes:
    """A body reader for requests whose body must not be read."""
    raise AssertionError("the body was read")


class DownReplayCache(ReplayCache):
    """A replay cache that cannot answer (as Redis out of reach)."""

    async def first_use(self, key: str, ttl_s: int) -> bool:
        """Cannot tell."""
        raise ReplayCacheUnavailableError("replay cache (test) unavailable")


@dataclass
class World:
    """A partner service over a licence store, with Shanghai as the querying partner."""

    service: PartnerService
    federation: Federation
    audit: MemoryAudit
    trust: list[TrustList]
    """The trust list the service reads (replace ``trust[0]`` to change it)."""
    identifier: str

    def request(self, body: dict[str, Any] | bytes | None = None, *, token: str | None = "",
                at: datetime | None = None, **fields: Any) -> QueryRequest:
        """A query by Shanghai for the stored licence, signed unless ``token`` is given."""
        sh = self.federation[SHANGHAI]
        if body is None:
            body = {"identifier": self.identifier, "use_cause": "办理跨省通办事项",
                    "matter": {"region": SHANGHAI, "code": SH_MATTER}}
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        if token == "":
            token = sh.request_token(body=raw, path=QUERY_PATH)
        values: dict[str, Any] = {
            "method": "POST", "path": QUERY_PATH, "declared_size": len(raw),
            "read_body": reads(raw), "token": token, "content_type_problem": None,
            "request_id": "req-1", "source": "192.0.2.7", "at": at or datetime.now(UTC)}
        values.update(fields)
        return QueryRequest(**values)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """The service, built by hand from its parts: no aiohttp application, no HTTP."""
    loop = asyncio.get_running_loop()
    row = licence_row(1)
    await loop.run_in_executor(None, import_rows, tmp_path, [row])
    settings = load_settings({}, None, {"data_dir": tmp_path})
    federation = Federation.standard(seed=5, codes=[SHANGHAI, "340100"])
    keyring = await loop.run_in_executor(None, HolderKeyring.load, tmp_path)

    def keys() -> tuple[SigningKey, SigningKey]:
        return (load_or_create_key(tmp_path, "licence-signing", kid_prefix="330500-lic",
                                   alg="ES256"),
                load_or_create_key(tmp_path, "status-signing", kid_prefix="330500-status"))

    licence_key, status_key = await loop.run_in_executor(None, keys)
    store = open_store(settings)
    await store.open()
    trust = [TrustList.from_json(trust_document(federation))]
    audit = MemoryAudit()
    service = PartnerService(
        settings=settings, store=store, keyring=keyring, licence_key=licence_key,
        status_key=status_key, replay=MemoryReplayCache(), limiter=RateLimiter(20.0, 40),
        trust=lambda: trust[0], audit=audit)
    try:
        yield World(service, federation, audit, trust, row["identifier"])
    finally:
        await store.close()


def refusal(outcome: Outcome) -> tuple[RefusalKind, int]:
    """The kind and national code of a refusal."""
    assert isinstance(outcome, Refusal), outcome
    return outcome.kind, outcome.cn_status


class TestFound:
    """A query answered, and its audit record."""

    async def test_found_and_recorded(self, world: World) -> None:
        """cn 0 with one licence signed now; the record states the facts and the status
        the caller answered with."""
        outcome = await world.service.answer(world.request())
        assert isinstance(outcome, Found)
        assert (0, "found", 1) == (outcome.cn_status, outcome.message, len(outcome.licences))
        assert [{"region": SHANGHAI, "code": SH_MATTER}] == outcome.matter["partner"]
        assert SHANGHAI == outcome.facts.partner_region
        assert [] == world.audit.events  # nothing is recorded until the caller records
        await world.service.record(outcome, http_status=200)
        event = world.audit.events[-1]
        assert ("ok", 0, SHANGHAI, world.identifier, "192.0.2.7", "req-1") == (
            event.outcome, event.cn_status, event.partner_region, event.licence_identifier,
            event.source_addr, event.request_id)
        assert 200 == event.details["http_status"]

    async def test_not_found_is_cn_10(self, world: World) -> None:
        """An identifier Huzhou does not hold: found nothing, cn 10."""
        body = {"identifier": licence_row(99)["identifier"], "use_cause": "x",
                "matter": {"region": SHANGHAI, "code": SH_MATTER}}
        outcome = await world.service.answer(world.request(body))
        assert isinstance(outcome, Found)
        assert (10, []) == (outcome.cn_status, outcome.licences)


class TestRefusals:
    """Each refusal carries its kind, national code, reason and audit facts."""

    async def test_no_token(self, world: World) -> None:
        """No bearer token: cn 11; the audit facts keep the matter the body names."""
        outcome = await world.service.answer(world.request(token=None))
        assert (RefusalKind.UNAUTHENTICATED, 11) == refusal(outcome)
        assert isinstance(outcome, Refusal)
        assert "a partner request token (ecert-request+jwt) is required" == outcome.reason
        assert {"region": SHANGHAI, "code": SH_MATTER} == outcome.facts.matter_before
        await world.service.record(outcome, http_status=401)
        event = world.audit.events[-1]
        assert ("refused", 11, "unauthenticated") == (event.outcome, event.cn_status,
                                                       event.actor_id)
        assert outcome.reason == event.details["reason"]

    async def test_bad_token(self, world: World) -> None:
        """A token signed for another body: cn 11, the claimed iss kept for the record."""
        sh = world.federation[SHANGHAI]
        outcome = await world.service.answer(world.request(
            token=sh.request_token(body=b"{}", path=QUERY_PATH)))
        assert (RefusalKind.UNAUTHENTICATED, 11) == refusal(outcome)
        assert SHANGHAI == outcome.facts.details["claimed_iss"]
        assert outcome.facts.partner_region is None

    async def test_body_not_read_when_not_json_or_too_large(self, world: World) -> None:
        """A body not declared JSON, or declared over 64 KiB, is refused unread (cn 12);
        one read over 64 KiB too."""
        not_json = await world.service.answer(world.request(
            read_body=never_read, content_type_problem="it was 'text/plain'"))
        assert (RefusalKind.NOT_JSON, 12) == refusal(not_json)
        assert isinstance(not_json, Refusal)
        assert "it was 'text/plain'" == not_json.reason
        declared = await world.service.answer(world.request(
            read_body=never_read, declared_size=MAX_QUERY_BODY + 1))
        assert (RefusalKind.TOO_LARGE, 12) == refusal(declared)
        sent = await world.service.answer(world.request(
            read_body=reads(b" " * (MAX_QUERY_BODY + 1)), declared_size=None))
        assert (RefusalKind.TOO_LARGE, 12) == refusal(sent)

    async def test_time_is_an_argument(self, world: World) -> None:
        """The same query judged after the trust list's next_update: stale, cn 99."""
        later = world.trust[0].next_update + timedelta(seconds=1)
        outcome = await world.service.answer(world.request(at=later))
        assert (RefusalKind.TRUST_LIST_STALE, 99) == refusal(outcome)

    async def test_replay(self, world: World) -> None:
        """The same token twice: the second is a replay (cn 11) of an authenticated partner."""
        request = world.request()
        assert isinstance(await world.service.answer(request), Found)
        again = await world.service.answer(request)
        assert (RefusalKind.REPLAYED, 11) == refusal(again)
        assert SHANGHAI == again.facts.partner_region

    async def test_replay_cache_down(self, world: World) -> None:
        """A replay cache that cannot answer refuses the query (cn 99), never accepts it."""
        world.service.replay = DownReplayCache()
        outcome = await world.service.answer(world.request())
        assert (RefusalKind.REPLAY_CACHE_UNAVAILABLE, 99) == refusal(outcome)

    async def test_rate_limited(self, world: World) -> None:
        """Past its burst, a partner is refused (cn 99) and told when to come back."""
        world.service.limiter = RateLimiter(0.5, 1)
        assert isinstance(await world.service.answer(world.request()), Found)
        outcome = await world.service.answer(world.request())
        assert (RefusalKind.RATE_LIMITED, 99) == refusal(outcome)
        assert isinstance(outcome, Refusal)
        assert outcome.retry_after_s is not None
        assert 0 < outcome.retry_after_s <= 2.0

    async def test_suspended_partner(self, world: World) -> None:
        """A suspended partner authenticates, then is refused (cn 100)."""
        world.federation[SHANGHAI].partner_status = "suspended"
        world.trust[0] = TrustList.from_json(trust_document(world.federation, version=4))
        outcome = await world.service.answer(world.request())
        assert (RefusalKind.PARTNER_SUSPENDED, 100) == refusal(outcome)
        assert SHANGHAI == outcome.facts.partner_region

    async def test_out_of_agreement(self, world: World) -> None:
        """A licence type the agreement does not cover: cn 100."""
        world.federation[SHANGHAI].recognised_licence_types = (BUSINESS_LICENCE,)
        world.trust[0] = TrustList.from_json(trust_document(world.federation, version=4))
        outcome = await world.service.answer(world.request())
        assert (RefusalKind.OUT_OF_AGREEMENT, 100) == refusal(outcome)

    async def test_bad_query(self, world: World) -> None:
        """A query without its reason for use: cn 12."""
        body = {"identifier": world.identifier, "matter": {"region": SHANGHAI, "code": "c"}}
        outcome = await world.service.answer(world.request(body))
        assert (RefusalKind.BAD_QUERY, 12) == refusal(outcome)
        assert isinstance(outcome, Refusal)
        assert "use_cause is required" == outcome.reason


class TestFailure:
    """An unexpected error is an outcome too, so that it is recorded."""

    async def test_unreadable_body(self, world: World) -> None:
        """A body that cannot be read is a Failure holding the error (cn 99), recorded
        as an error with the status the caller answers with."""
        broken = ConnectionResetError("client went away")

        async def read() -> bytes:
            raise broken

        outcome = await world.service.answer(world.request(read_body=read))
        assert isinstance(outcome, Failure)
        assert (broken, 99) == (outcome.error, outcome.cn_status)
        await world.service.record(outcome, http_status=500)
        event = world.audit.events[-1]
        assert ("error", 99, 500) == (event.outcome, event.cn_status,
                                      event.details["http_status"])
        assert "reason" not in event.details


async def test_failure_over_http_is_recorded_then_a_500(
        aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the routes: an unexpected error in the lookup is recorded (error, cn 99,
    http_status 500) before the gateway answers its 500 problem body."""
    loop = asyncio.get_running_loop()
    row = licence_row(1)
    await loop.run_in_executor(None, import_rows, tmp_path, [row])
    federation = Federation.standard(seed=5, codes=[SHANGHAI])
    audit = MemoryAudit()
    app = create_app(load_settings({}, None, {"data_dir": tmp_path}), audit=audit,
                     trust_list=TrustList.from_json(trust_document(federation)))
    client = await aiohttp_client(app)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("lookup broke")

    monkeypatch.setattr(app[PARTNER_KEY].store, "find", broken)
    sh = PartnerClient(federation[SHANGHAI], str(client.make_url("")), session=client.session)
    answer = await sh.query(sh.by_identifier(row["identifier"], matter_code=SH_MATTER))
    assert (500, None) == (answer.status, answer.cn_status)
    assert "application/problem+json" in answer.headers["Content-Type"]
    event = audit.of(EventType.PARTNER_QUERY)[-1]
    assert ("error", 99, 500, SHANGHAI) == (event.outcome, event.cn_status,
                                            event.details["http_status"], event.partner_region)


def test_every_refusal_has_one_http_answer() -> None:
    """The routes' table answers every kind of refusal; 5xx exactly where the gateway
    could not answer (cn 99 without the caller's fault), and 401 exactly for cn 11."""
    assert set(RefusalKind) == set(REFUSAL_ANSWERS) == set(CN_STATUS)
    unavailable = {RefusalKind.TRUST_LIST_STALE, RefusalKind.REPLAY_CACHE_UNAVAILABLE,
                   RefusalKind.LICENCE_STORE_UNAVAILABLE}
    assert unavailable == {k for k, a in REFUSAL_ANSWERS.items() if a.status >= 500}
    assert {k for k, cn in CN_STATUS.items() if cn == 11} == {
        k for k, a in REFUSAL_ANSWERS.items() if a.status == 401}


@pytest.mark.redis
@pytest.mark.parametrize("together", [False, True])
async def test_one_redis_call_answers_as_the_replay_check_then_the_rate_limit(
        redis_url: str, together: bool) -> None:
    """``admit`` with a Redis replay cache and a Redis rate limiter (one script call,
    ``RedisAdmission``) answers what ``first_use`` then ``acquire`` answer, request by
    request: fresh or replayed, allowed or told to wait, replayed ones never charged;
    asked one at a time or all at once (one batch)."""
    import os
    import random
    import time

    import redis.asyncio as aioredis

    from gateway.partner.checks import RedisRateLimiter, RedisReplayCache, admit

    rng = random.Random(22)
    steps = [(f"jti-{rng.randrange(15)}", rng.choice(["310000", "320500"])) for _ in range(80)]

    async def run(combined: bool) -> list[tuple[bool, bool]]:
        tag = f"test-{os.getpid()}-{time.monotonic_ns()}-"
        replay = RedisReplayCache(aioredis.Redis.from_url(redis_url))
        limiter = RedisRateLimiter(aioredis.Redis.from_url(redis_url), 0.001, 6,
                                   limits={f"{tag}320500": (0.001, 3)})

        async def one(jti: str, region: str) -> tuple[bool, float | None]:
            key, bucket = f"{tag}{region}:{jti}", f"{tag}{region}"
            if combined:
                return await admit(replay, limiter, key, 60, bucket)
            if not await replay.first_use(key, 60):
                return False, None
            return True, await limiter.acquire(bucket)

        try:
            if together and combined:
                answers = list(await asyncio.gather(*(one(*step) for step in steps)))
            else:
                answers = [await one(*step) for step in steps]
        finally:
            await replay.close()
            await limiter.close()
        assert all(wait is None or wait > 0 for _, wait in answers)
        return [(fresh, wait is None) for fresh, wait in answers]

    separate = await run(False)
    assert separate == await run(True)
    assert {(True, True), (True, False), (False, True)} == set(separate)


@pytest.mark.redis
@pytest.mark.parametrize("combined", [True, False])
async def test_one_redis_call_reads_and_writes_each_bucket_once(
        redis_url: str, combined: bool) -> None:
    """The requests a loop turn gathers (one script call: ``admit``'s replay check and
    rate limit, or the rate limit alone) read and write each region's bucket once, not
    once a request: one HMGET, HSET and EXPIRE a bucket (Redis's own command counts,
    which count the calls a script makes), and the answers a step at a time gives."""
    import os
    import time

    import redis.asyncio as aioredis

    from gateway.partner.checks import RedisRateLimiter, RedisReplayCache, admit

    tag = f"test-{os.getpid()}-{time.monotonic_ns()}-"
    replay = RedisReplayCache(aioredis.Redis.from_url(redis_url))
    limiter = RedisRateLimiter(aioredis.Redis.from_url(redis_url), 0.001, 25)
    observer = aioredis.Redis.from_url(redis_url)

    async def calls() -> dict[str, int]:
        stats = await observer.info("commandstats")
        return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
                for name in ("hmget", "hset", "expire", "evalsha", "eval")}

    async def one(region: str, i: int) -> bool:
        """Whether the request was let through (always fresh here)."""
        if combined:
            fresh, wait = await admit(replay, limiter, f"{tag}{region}:{i}", 60, f"{tag}{region}")
            assert fresh
        else:
            wait = await limiter.acquire(f"{tag}{region}")
        return wait is None

    try:
        await one("warm", 0)  # so that Redis holds the script (else EVALSHA, then EVAL)
        before = await calls()
        allowed = await asyncio.gather(*(one(region, i) for i in range(30)
                                         for region in ("310000", "320500")))
        after = await calls()
    finally:
        await replay.close()
        await limiter.close()
        await observer.aclose()
    # Each region's bucket of 25 let the first 25 of its 30 requests through.
    assert [True] * 50 + [False] * 10 == allowed
    counted = {name: after[name] - before[name] for name in before}
    assert (1, 0) == (counted["evalsha"], counted["eval"])  # one script call for the 60
    assert {"hmget": 2, "hset": 2, "expire": 2} == {
        name: counted[name] for name in ("hmget", "hset", "expire")}
