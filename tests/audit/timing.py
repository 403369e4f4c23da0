"""Rough in-process timings of the audit log (not a test).

    PYTHONPATH=. .venv/bin/python tests/audit/timing.py [ENTRIES]

1. appends/s through the group-committing writer (SQLite, synchronous=FULL)
   with 1,000 concurrent appenders;
2. a log of ENTRIES records (default 1,000,000) built by batch inserts, then:
   service start-up (tree rebuilt from stored leaf hashes), inclusion proof
   time, and ``verify_log`` over the whole log.
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

from gateway.audit import AuditService, open_store, verify_log
from gateway.audit._keys import HmacKeyring
from gateway.audit._record import Pseudonymiser, Uuid7Generator, build_record, encode_record
from gateway.audit._service import _row
from tests.audit.conftest import event


async def appends_per_second(data_dir: Path, appenders: int = 1000, each: int = 20) -> float:
    """Appends/s with many concurrent appenders."""
    async with AuditService(data_dir=data_dir) as svc:

        async def worker(n: int) -> None:
            for _ in range(each):
                await svc.append(event(actor_id=f"w{n}"))

        start = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(appenders)))
        elapsed = time.perf_counter() - start
    return appenders * each / elapsed


def build_log(data_dir: Path, entries: int) -> float:
    """Insert ``entries`` realistic records in batches; return seconds taken."""
    start = time.perf_counter()
    store = open_store(data_dir, None)
    pseudonymiser = Pseudonymiser(HmacKeyring.load(data_dir))
    new_id = Uuid7Generator(lambda: time.time_ns() // 1_000_000)
    batch = []
    for i in range(entries):
        record = build_record(
            event(actor_id=f"w{i % 97}"),
            event_id=new_id(),
            pseudonymiser=pseudonymiser,
            gateway="330500",
        )
        batch.append(_row(record, encode_record(record)))
        if len(batch) == 20_000:
            store.append(batch, None)
            batch = []
    if batch:
        store.append(batch, None)
    store.close()
    return time.perf_counter() - start


async def big_log(data_dir: Path, entries: int) -> None:
    """Start-up, proof and verify timings over a large log."""
    t0 = time.perf_counter()
    svc = AuditService(data_dir=data_dir)
    await svc.start()
    t1 = time.perf_counter()
    checkpoint = await svc.publish()
    assert checkpoint is not None
    print(f"start-up with {entries} entries (tree rebuild): {t1 - t0:.2f} s")
    print(f"first checkpoint: {time.perf_counter() - t1:.3f} s")
    tree = svc._tree  # timing the proof itself, not the HTTP or store round trip
    picks = [random.randrange(entries) for _ in range(2000)]
    start = time.perf_counter()
    for index in picks:
        tree.inclusion_proof(index, entries)
    per = (time.perf_counter() - start) / len(picks)
    print(f"inclusion proof at {entries} entries: {per * 1e6:.1f} us each")
    start = time.perf_counter()
    for index in picks[:200]:
        await svc.entry(index)
    per = (time.perf_counter() - start) / 200
    print(f"entry + proof via the service (store read + proof): {per * 1e3:.2f} ms each")
    verifier = svc.verifier
    await svc.stop()
    store = open_store(data_dir, None)
    start = time.perf_counter()
    report = verify_log(store, verifier)
    store.close()
    print(f"verify_log of {report.entries} entries: {time.perf_counter() - start:.1f} s ({report})")


def main() -> None:
    """Run the timings in a temporary folder."""
    entries = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        rate = asyncio.run(appends_per_second(Path(tmp) / "a"))
        print(f"appends/s (SQLite FULL, 1000 concurrent appenders): {rate:.0f}")
        data_dir = Path(tmp) / "b"
        print(f"built {entries} entries in {build_log(data_dir, entries):.1f} s")
        size_mb = (data_dir / "audit.db").stat().st_size / 1e6
        print(f"audit.db: {size_mb:.0f} MB")
        asyncio.run(big_log(data_dir, entries))


if __name__ == "__main__":
    main()
