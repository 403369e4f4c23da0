"""A gateway-like process for the durability tests.

Runs an ``AuditService`` (SQLite in DATA_DIR, or PostgreSQL when a DSN is
given) with eight concurrent appenders and prints every acknowledged index on
its own line, flushed, until it is killed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from gateway.audit import AuditService
from tests.audit.conftest import event


async def _main(data_dir: Path, dsn: str | None) -> None:
    service = AuditService(
        data_dir=data_dir, postgres_dsn=dsn, checkpoint_interval_s=0.1, batch_max=50
    )
    await service.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()

    async def appender(worker: int) -> None:
        while True:
            index = await service.append(event(actor_id=f"p{worker}"))
            sys.stdout.write(f"{index}\n")
            sys.stdout.flush()

    await asyncio.gather(*(appender(w) for w in range(8)))


if __name__ == "__main__":
    asyncio.run(_main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))
