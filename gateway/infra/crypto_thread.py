"""Signature checks and signing on a thread beside the event loop.

``cryptography`` (47 and later) releases the GIL inside OpenSSL's ECDSA sign
and verify: two threads verifying on two cores come close to twice the rate
of one. A partner query costs one verification and one signature.
Interleaved with the loop's Python, request after request, they cost well
over what the same calls cost in a tight loop.

``CryptoThread.run(fn, *args)`` queues one call and hands the queued calls to
a single thread in batches (``gateway.infra.coalesce``). ``fn`` should be little
more than the OpenSSL call (with its DER encoding): the thread needs the GIL
for any Python around it, and takes it back after every call. Each call gets
its own result or exception. While a batch runs, the next one gathers, so
under load one hand-off carries many calls (at most ``MAX_BATCH``); a lone
call is handed over at the next loop turn.

So even on one CPU this lowers the CPU time a query costs: the signature work
runs in runs of many calls instead of one at a time between each request's
Python (bench/RESULTS.md, the development runs of 2026-11-27 13:59–14:52 and
17:35–17:57). With a second CPU free, it also runs alongside the loop.
``enabled=False`` (the ``crypto_thread`` setting) calls ``fn`` on the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from gateway.infra.coalesce import Coalescer

__all__ = ["MAX_BATCH", "CryptoThread", "CryptoThreadClosedError"]

T = TypeVar("T")
_Call = tuple[Callable[..., Any], tuple[Any, ...]]

MAX_BATCH = 64
"""Calls handed to the thread at a time: a few milliseconds of ECDSA work, so a batch
never holds its callers long."""


class CryptoThreadClosedError(RuntimeError):
    """``run`` was called after ``close``."""


def _run_all(calls: list[_Call]) -> list[tuple[bool, Any]]:
    """On the thread: each call's (True, result) or (False, exception), in order."""
    out: list[tuple[bool, Any]] = []
    for fn, args in calls:
        try:
            out.append((True, fn(*args)))
        except BaseException as exc:  # even these: the caller waits for an answer
            out.append((False, exc))
    return out


class CryptoThread:
    """One thread for GIL-releasing CPU work, fed in batches (see the module doc)."""

    def __init__(self, *, enabled: bool = True, name: str = "crypto") -> None:
        self.enabled = enabled
        self.calls = 0
        """Calls run on the thread so far."""
        self.batches = 0
        """Hand-offs to the thread so far."""
        self._closed = False
        self._executor = (ThreadPoolExecutor(1, thread_name_prefix=name) if enabled
                          else None)
        self._queue: Coalescer[_Call, tuple[bool, Any]] = Coalescer(
            self._run_batch, max_batch=MAX_BATCH)

    async def _run_batch(self, calls: list[_Call]) -> list[tuple[bool, Any]]:
        if self._executor is None:
            raise CryptoThreadClosedError("the crypto thread is closed")
        self.batches += 1
        self.calls += len(calls)
        return await asyncio.get_running_loop().run_in_executor(self._executor, _run_all, calls)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, on the thread when enabled; raises what ``fn`` raised."""
        if self._closed:
            raise CryptoThreadClosedError("the crypto thread is closed")
        if self._executor is None:
            return fn(*args)
        ok, value = await self._queue((fn, args))
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    async def close(self) -> None:
        """Stop the thread once the batch it runs (if any) is done; ``run`` refuses after."""
        if self._closed:
            return
        self._closed = True
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)
