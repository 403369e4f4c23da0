"""``/metrics`` of a gateway run with several workers: every worker's counters, labelled.

A scrape reaches whichever worker accepted the connection; alone, it would show
that worker's counters, and a series would jump between workers' values from one
scrape to the next. So each worker writes a snapshot of its registry (the HTTP
counters and histograms and the services' own counters) to a folder its
supervisor made, every ``SNAPSHOT_INTERVAL_S`` and when it stops, and a scrape
answers with the answering worker's live values and the others' snapshots, each
sample carrying a ``worker`` label (its index, 0 to N-1). Sum over ``worker`` for
the gateway's totals (``sum without (worker) (rate(ecert_http_requests_total[5m]))``).
A worker restarted in place of one that ended keeps its index, and its counters
start again from zero, which Prometheus reads as a counter reset. Another worker's
values are at most ``SNAPSHOT_INTERVAL_S`` old.

With one worker nothing of this runs and ``/metrics`` carries no ``worker`` label.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = ["SNAPSHOT_INTERVAL_S", "WORKER_KEY", "Worker", "render", "snapshots_ctx"]

SNAPSHOT_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class Worker:
    """This process's place among the workers: its index and the snapshot folder."""

    index: int
    folder: Path

    def path(self, index: int) -> Path:
        """Where worker ``index`` keeps its snapshot."""
        return self.folder / f"worker-{index}.json"


WORKER_KEY = web.AppKey("worker", Worker)


def _families(registry: CollectorRegistry) -> list[dict[str, Any]]:
    """The registry's metrics now, as plain data."""
    return [{"name": m.name, "help": m.documentation, "type": m.type, "unit": m.unit,
             "samples": [[s.name, s.labels, s.value] for s in m.samples]}
            for m in registry.collect()]


def _write(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_bytes(data)
    partial.replace(path)  # atomic: a scrape reads the old snapshot or the new one


def _read_others(worker: Worker) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = {}
    for path in worker.folder.glob("worker-*.json"):
        index = int(path.stem.removeprefix("worker-"))
        if index == worker.index:
            continue
        with contextlib.suppress(OSError, ValueError):
            found[index] = orjson.loads(path.read_bytes())
    return found


class _Labelled(Collector):
    """Every worker's families, merged by name, each sample labelled with its worker."""

    def __init__(self, by_worker: dict[int, list[dict[str, Any]]]) -> None:
        self._by_worker = by_worker

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for index in sorted(self._by_worker):
            for family in self._by_worker[index]:
                metric = merged.get(family["name"])
                if metric is None:
                    metric = merged[family["name"]] = Metric(
                        family["name"], family["help"], family["type"], family["unit"])
                for name, labels, value in family["samples"]:
                    metric.add_sample(name, {**labels, "worker": str(index)}, value)
        yield from merged.values()


async def render(registry: CollectorRegistry, worker: Worker) -> bytes:
    """The exposition text of every worker's metrics (module doc)."""
    by_worker = await asyncio.get_running_loop().run_in_executor(None, _read_others, worker)
    by_worker[worker.index] = _families(registry)
    combined = CollectorRegistry(auto_describe=False)
    combined.register(_Labelled(by_worker))
    return generate_latest(combined)


def snapshots_ctx(registry: CollectorRegistry
                  ) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` writing this worker's snapshot of ``registry`` every
    ``SNAPSHOT_INTERVAL_S`` and once more at the end."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async for _ in _snapshots(app[WORKER_KEY], registry):
            yield

    return ctx


async def _snapshots(worker: Worker, registry: CollectorRegistry) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()

    async def write() -> None:
        data = orjson.dumps(_families(registry))
        await loop.run_in_executor(None, _write, worker.path(worker.index), data)

    async def keep_writing() -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL_S)
            with contextlib.suppress(OSError):
                await write()

    task = asyncio.create_task(keep_writing(), name="metrics-snapshots")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(OSError):
            await write()
