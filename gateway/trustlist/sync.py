"""Trust-list propagation between gateway instances through Redis.

The store is the truth and every instance's watcher polls it; Redis only makes
the news travel faster. An instance that applies a version announces it: it
raises the version key ``ecert:v1:trust:version`` (never lowers it) and
publishes on ``ecert:v1:trust``. Every instance listens and, on a message,
looks at the store at once. Because a message can be missed (a reconnect, a
restart), each instance also reads the version key every half second, so a
missed message delays an instance by that much at most. Redis being down
leaves the store polling, which is slower but just as correct.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

__all__ = ["CHANNEL", "VERSION_KEY", "RedisTrustSync"]

_log = logging.getLogger("gateway.trustlist.sync")

CHANNEL = "ecert:v1:trust"
VERSION_KEY = "ecert:v1:trust:version"
CHECK_INTERVAL_S = 0.5

# Raise the version key only upwards, then publish, in one step.
_ANNOUNCE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return redis.call('PUBLISH', KEYS[2], ARGV[1])
"""


class RedisTrustSync:
    """Announces applied versions and pokes the local watcher when others do."""

    def __init__(self, client: aioredis.Redis, *, served: Callable[[], int],
                 poke: Callable[[], Awaitable[object]]) -> None:
        self._client = client
        self._served = served
        self._poke = poke
        self._tasks: list[asyncio.Task[None]] = []
        self.messages = 0

    def start(self) -> None:
        """Listen for announcements and check the version key periodically."""
        self._tasks = [asyncio.create_task(self._listen(), name="trust-sync-listen"),
                       asyncio.create_task(self._check_loop(), name="trust-sync-check")]

    async def stop(self) -> None:
        """Stop listening."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def announce(self, version: int) -> None:
        """Tell the other instances that ``version`` is applied (best effort)."""
        try:
            await self._client.eval(_ANNOUNCE, 2, VERSION_KEY, CHANNEL, str(version))
        except (RedisError, OSError, TimeoutError) as exc:
            _log.warning("could not announce trust-list version", extra={"error": repr(exc)})

    async def _poke_safely(self) -> None:
        try:
            await self._poke()
        except Exception:
            _log.warning("trust-list check after an announcement failed", exc_info=True)

    async def _listen(self) -> None:
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self.messages += 1
                        await self._poke_safely()
            except (RedisError, OSError, TimeoutError):
                await asyncio.sleep(CHECK_INTERVAL_S)  # reconnect after a pause
            finally:
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    await pubsub.aclose()

    async def _check_loop(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            try:
                raw = await self._client.get(VERSION_KEY)
            except (RedisError, OSError, TimeoutError):
                continue
            if raw is not None and int(raw) > self._served():
                await self._poke_safely()
