"""Coalescing: many concurrent single calls become one batched call.

A request handler that needs one Redis key pays the client library's whole
per-command cost (tens of microseconds of Python) for a few bytes. Under load
many handlers ask at once; a ``Coalescer`` queues their items and lets one
worker task send everything queued so far as a single batched call (MGET, one
script call), then resolves each caller's future with its own result. While a
batch is in flight the next one gathers, as the audit writer's group commit
does. Without load nothing waits: a lone item is sent at the next loop turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

In = TypeVar("In")
Out = TypeVar("Out")


class Coalescer(Generic[In, Out]):
    """Send items in batches through ``run_many`` (one result per item, in order)."""

    def __init__(self, run_many: Callable[[list[In]], Awaitable[Sequence[Out]]], *,
                 max_batch: int = 512) -> None:
        self._run_many = run_many
        self._max = max(1, max_batch)
        self._queue: list[tuple[In, asyncio.Future[Out]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def __call__(self, item: In) -> Out:
        """The result for ``item``; raises what the batched call raised."""
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _call(self, items: list[In]) -> Sequence[Out]:
        results = await self._run_many(items)
        if len(results) != len(items):
            raise RuntimeError(f"batched call answered {len(results)} results for "
                               f"{len(items)} items")
        return results

    async def _drain(self) -> None:
        live: list[tuple[In, asyncio.Future[Out]]] = []
        try:
            while self._queue:
                batch = self._queue[: self._max]
                del self._queue[: self._max]
                live = [(item, future) for item, future in batch if not future.done()]
                if not live:
                    continue
                try:
                    results = await self._call([item for item, _ in live])
                except Exception as exc:
                    for _, future in live:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(live, results, strict=True):
                    if not future.done():
                        future.set_result(result)
                live = []
        except BaseException:
            # Torn down mid-batch (shutdown), or a batched call raised past Exception:
            # nobody may be left waiting for ever.
            for _, future in [*live, *self._queue]:
                future.cancel()
            self._queue.clear()
            raise
        finally:
            self._worker = None
