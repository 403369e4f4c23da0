"""One Redis connection of its own for a hot, coalesced caller.

redis-py's client wraps every command in a connection-pool checkout, a retry
policy, observability hooks and a timeout task around each socket write and
read. The partner query spends its request token's ``jti`` in Redis on every
request, and tier 2 of the verdict cache is read on every tier-1 miss and
written with every stored verdict, each as a coalesced call
(``gateway.infra.coalesce``). On that path the client's layers were about half
the CPU of a call: a ``RedisLink`` with redis-py's hiredis parser does without
them (the replay cache's script, before and after, is in
bench/RESULTS.md, the development runs of 2026-11-27 09:16–10:45).

A ``RedisLink`` keeps one ``redis.asyncio.Connection`` (made by the URL's
connection pool, so TLS, credentials and the database number come from the
URL as for the client) and sends commands on it one at a time: it is meant
for a ``gateway.infra.coalesce.Coalescer``, which already sends one batch at a time,
and a lock keeps it correct when two of them share a link. A failed command
drops the connection and the next one reconnects; a connection error on a
kept connection (Redis restarted meanwhile) is retried once on a fresh one,
as redis-py's client does. So a ``SET NX`` whose first attempt did reach Redis
before the connection broke may answer "held" on the retry: for the replay
cache that refuses one genuine request (fails closed), never admits a replay.
``close()`` is final: a command after it raises ``ConnectionError`` rather than
open a connection nobody would close. Readiness checks and everything else keep
using the ordinary client.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.driver_info import DriverInfo
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.utils import get_lib_version

__all__ = ["RedisLink", "RedisUnavailableError", "redis_client"]


class RedisLink:
    """Commands on one dedicated connection of ``client``'s pool settings, one at a time."""

    def __init__(self, client: aioredis.Redis) -> None:
        pool = client.connection_pool
        self._kwargs = dict(pool.connection_kwargs)
        # One deadline per command here instead of redis-py's timeout task around each
        # socket write and read (most of the bare connection's cost). redis-py restores
        # orig_socket_timeout after a maintenance notification (RESP3): off as well.
        self._timeout: float | None = self._kwargs.get("socket_timeout")
        self._kwargs["socket_timeout"] = None
        if "orig_socket_timeout" in self._kwargs:
            self._kwargs["orig_socket_timeout"] = None
        self._class: type[AbstractConnection] = pool.connection_class
        self._closed = False
        self._conn: AbstractConnection | None = None
        self._lock = asyncio.Lock()

    async def execute(self, *args: Any) -> Any:
        """Send one command and return its reply (redis-py's errors propagate)."""
        async with self._lock:
            return await self._execute(args)

    async def run_script(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """``EVALSHA`` of ``script``, loading it with ``EVAL`` when Redis does not know it."""
        sha = _sha1(script)
        async with self._lock:
            try:
                return await self._execute(("EVALSHA", sha, len(keys), *keys, *args))
            except NoScriptError:
                return await self._execute(("EVAL", script, len(keys), *keys, *args))

    async def _execute(self, args: tuple[Any, ...]) -> Any:
        if self._closed:
            raise RedisConnectionError("the Redis link is closed")
        conn = self._conn
        reused = conn is not None
        if conn is None:
            conn = self._conn = self._make()
        try:
            return await self._on(conn, args)
        except RedisConnectionError:
            if not reused:
                raise
        # A kept connection found broken (Redis restarted, or it closed an idle client):
        # once more on a fresh one, as redis-py's client retries a connection error.
        conn = self._conn = self._make()
        return await self._on(conn, args)

    def _make(self) -> AbstractConnection:
        return self._class(**self._kwargs)

    async def _on(self, conn: AbstractConnection, args: tuple[Any, ...]) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                await conn.send_command(*args)
                return await conn.read_response()
        except BaseException as exc:
            if not isinstance(exc, ResponseError):
                # Redis answered with an error: the connection is fine. Anything else
                # (network, timeout, cancellation mid-reply): a fresh connection next
                # time, never one with a reply still unread on it.
                self._conn = None
                await _drop(conn)
            raise

    async def close(self) -> None:
        """Close the connection for good: a later command raises ``ConnectionError``
        instead of opening a connection nobody would close."""
        self._closed = True
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await _drop(conn)


async def _drop(conn: AbstractConnection) -> None:
    # A connection being dropped may fail to close; it is dropped all the same.
    with contextlib.suppress(Exception):
        await conn.disconnect()


@functools.cache
def _sha1(script: str) -> str:
    """The script's SHA-1, as Redis names scripts (computed once per script)."""
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


# redis-py reads its own version from package metadata (file I/O) for every new
# connection unless told; read it once at import, off the event loop.
class RedisUnavailableError(Exception):
    """State kept in Redis (console sessions) cannot be read or written: the request that
    needs it is refused (503), never answered as if nothing were stored."""


_REDIS_DRIVER = DriverInfo(name="redis-py", lib_version=get_lib_version())


def redis_client(url: str, *, timeout_s: float | None) -> aioredis.Redis:
    """An asyncio Redis client whose calls give up after ``timeout_s`` (None: never)."""
    client: aioredis.Redis = aioredis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
        retry_on_timeout=False, driver_info=_REDIS_DRIVER)
    return client
