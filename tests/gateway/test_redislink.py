"""RedisLink: commands on one dedicated connection, against a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from gateway.infra.redislink import RedisLink, redis_client
from tests.services import free_port

pytestmark = pytest.mark.redis

_ECHO_KEYS = "local out = {} for i, k in ipairs(KEYS) do out[i] = k .. ARGV[i] end return out"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """The test's own client, which looks at what the link did, closed after the test.
    Its timeout is roomy: it is not what is tested, and a loaded CI host once stalled
    long enough for a 0.5 s connect to give up."""
    c = redis_client(redis_url, timeout_s=5.0)
    yield c
    await c.aclose()


@pytest.fixture
async def link(redis_url: str) -> AsyncIterator[RedisLink]:
    """A link made from a client of its own with the short timeout (0.5 s) that the
    timeout tests below rely on, closed after the test."""
    made_from = redis_client(redis_url, timeout_s=0.5)
    made = RedisLink(made_from)
    yield made
    await made.close()
    await made_from.aclose()


def _key() -> str:
    return f"test-redislink:{uuid.uuid4().hex}"


async def test_commands_and_replies(link: RedisLink, client: aioredis.Redis) -> None:
    """Replies come back as redis-py parses them; what one command writes the next reads."""
    key = _key()
    assert b"OK" == await link.execute("SET", key, "v", "NX", "EX", 30)
    assert await link.execute("SET", key, "w", "NX", "EX", 30) is None
    assert [b"v", None] == await link.execute("MGET", key, _key())
    assert 0 < await client.ttl(key) <= 30


async def test_script_is_loaded_when_redis_does_not_know_it(
        link: RedisLink, client: aioredis.Redis) -> None:
    """EVALSHA of an unknown script falls back to EVAL, which also loads it."""
    script = _ECHO_KEYS + f" -- {uuid.uuid4().hex}"  # a script Redis has never seen
    keys = [_key(), _key()]
    assert [k.encode() + b"1" for k in keys] == await link.run_script(script, keys, [1, 1])
    sha = (await client.script_load(script))
    assert [True] == await client.script_exists(sha)
    await client.script_flush()
    assert [False] == await client.script_exists(sha)
    assert [keys[0].encode() + b"x"] == await link.run_script(script, keys[:1], ["x"])


async def test_an_error_reply_keeps_the_connection(link: RedisLink) -> None:
    """Redis answering with an error raises it; the connection stays the same."""
    key = _key()
    first = await link.execute("CLIENT", "ID")
    await link.execute("SET", key, "not a number", "EX", 30)
    with pytest.raises(ResponseError):
        await link.execute("INCR", key)
    assert first == await link.execute("CLIENT", "ID")


async def test_a_killed_connection_is_replaced(link: RedisLink, client: aioredis.Redis) -> None:
    """A kept connection that Redis closed (a restart, an idle timeout) is replaced: the
    next command runs on a new connection instead of failing."""
    first = await link.execute("CLIENT", "ID")
    assert 1 == await client.client_kill_filter(_id=first)
    second = await link.execute("CLIENT", "ID")
    assert second != first
    assert b"PONG" == await link.execute("PING")
    assert second == await link.execute("CLIENT", "ID")


async def test_a_timed_out_reply_is_never_read_as_the_next_one(
        link: RedisLink, client: aioredis.Redis) -> None:
    """A command past the timeout raises TimeoutError and drops its connection, so its
    late reply cannot be taken for the next command's."""
    queue = _key()
    with pytest.raises(TimeoutError):
        await link.execute("BLPOP", queue, 2)  # blocks longer than the 0.5 s timeout
    await client.rpush(queue, "late")
    probe = _key()
    await client.set(probe, "mine", ex=30)
    assert b"mine" == await link.execute("GET", probe)


async def test_a_cancelled_command_drops_its_connection(
        link: RedisLink, client: aioredis.Redis) -> None:
    """A caller cancelled mid-reply leaves no unread reply behind."""
    first = await link.execute("CLIENT", "ID")
    queue = _key()
    task = asyncio.create_task(link.execute("BLPOP", queue, 1))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await client.rpush(queue, "late")
    assert first != await link.execute("CLIENT", "ID")


async def test_concurrent_callers_take_turns(link: RedisLink) -> None:
    """Commands from concurrent callers never interleave on the one connection."""
    keys = [_key() for _ in range(50)]
    await asyncio.gather(*(link.execute("SET", k, k, "EX", 30) for k in keys))
    got = await asyncio.gather(*(link.execute("GET", k) for k in keys))
    assert [k.encode() for k in keys] == got


async def test_closed_is_final(link: RedisLink, client: aioredis.Redis) -> None:
    """After close, a command (even one already waiting its turn) raises instead of
    opening a connection nobody would close."""
    first = await link.execute("CLIENT", "ID")
    queue = _key()
    blocked = asyncio.create_task(link.execute("BLPOP", queue, 0.3))
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(link.execute("PING"))
    await asyncio.sleep(0.05)
    await link.close()
    assert await blocked is None  # the command in flight finished first
    with pytest.raises(RedisConnectionError):
        await waiting
    with pytest.raises(RedisConnectionError):
        await link.execute("PING")
    clients = await client.client_list()
    assert str(first) not in {str(c["id"]) for c in clients}


async def test_an_unreachable_server_raises_connection_error() -> None:
    """A link to a port nobody listens on raises redis-py's ConnectionError, which the
    replay cache and tier 2 catch."""
    dead = redis_client(f"redis://127.0.0.1:{free_port()}/3", timeout_s=0.2)
    link = RedisLink(dead)
    try:
        with pytest.raises(RedisConnectionError):
            await link.execute("PING")
    finally:
        await link.close()
        await dead.aclose()


async def test_database_number_comes_from_the_url(redis_url: str) -> None:
    """A key set through a link on database N is visible to a client on N, not on another."""
    base, _, _ = redis_url.rpartition("/")
    on_5 = redis_client(f"{base}/5", timeout_s=0.5)
    on_6 = redis_client(f"{base}/6", timeout_s=0.5)
    link = RedisLink(on_5)
    key = _key()
    try:
        await link.execute("SET", key, "here", "EX", 30)
        assert b"here" == await on_5.get(key)
        assert await on_6.get(key) is None
    finally:
        await link.close()
        await on_5.aclose()
        await on_6.aclose()
