"""The PostgreSQL store: several instances share one log safely."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import psycopg
import pytest

from gateway.__main__ import main
from gateway.audit import AuditService, append_cli_event, open_store, verify_log
from gateway.infra.datafolder import create_data_folder
from tests.audit.conftest import EventFactory

pytestmark = [pytest.mark.postgres, pytest.mark.allow_blocking]


async def test_two_instances_and_the_cli_share_one_log(
    data_dir: Path, postgres_dsn: str, make_event: EventFactory
) -> None:
    """Two services appending at once, plus a CLI record, give dense unique indices."""
    first = AuditService(data_dir=data_dir, postgres_dsn=postgres_dsn, batch_max=16)
    second = AuditService(data_dir=data_dir, postgres_dsn=postgres_dsn, batch_max=16)
    await first.start()
    await second.start()
    try:
        tasks = [
            svc.append(make_event(actor_id=f"i{n}")) for n in range(60) for svc in (first, second)
        ]
        indices = await asyncio.gather(*tasks)
        cli_index = await asyncio.to_thread(
            append_cli_event, data_dir, make_event(actor_id="cli"), postgres_dsn=postgres_dsn
        )
        assert list(range(121)) == sorted([*indices, cli_index])
        await first.publish()
        latest = await second.publish()
        assert latest is not None
        assert 121 == latest.size
    finally:
        await first.stop()
        await second.stop()
    store = open_store(data_dir, postgres_dsn)
    try:
        report = verify_log(store, first.verifier)
    finally:
        store.close()
    assert report.ok, report.reason


async def test_schema_refuses_changes(
    data_dir: Path, postgres_dsn: str, make_event: EventFactory
) -> None:
    """UPDATE, DELETE and TRUNCATE are refused by triggers."""
    async with AuditService(data_dir=data_dir, postgres_dsn=postgres_dsn) as svc:
        await svc.append(make_event())
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        for sql in (
            "UPDATE audit_entries SET outcome = 'x'",
            "DELETE FROM audit_entries",
            "TRUNCATE audit_entries",
            "TRUNCATE audit_checkpoints",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(sql)


async def test_cli_refuses_sqlite_when_log_is_in_postgres(
    data_dir: Path, postgres_dsn: str, make_event: EventFactory
) -> None:
    """A CLI record without the DSN is refused rather than written to a second log."""
    from gateway.audit import AuditUnavailableError

    async with AuditService(data_dir=data_dir, postgres_dsn=postgres_dsn):
        pass
    with pytest.raises(AuditUnavailableError, match="PostgreSQL"):
        append_cli_event(data_dir, make_event())


async def test_cli_query_counts_and_pages_in_postgres(
    data_dir: Path, postgres_dsn: str, make_event: EventFactory,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    """``audit query --postgres-dsn``: the count of what remains and the next page's --after."""
    create_data_folder(data_dir)
    async with AuditService(data_dir=data_dir, postgres_dsn=postgres_dsn) as svc:
        for n in range(8):
            await svc.append(make_event(partner_region="310000" if n % 2 else "320500"))
    argv = ["audit", "query", "--data-dir", str(data_dir), "--postgres-dsn", postgres_dsn,
            "--partner", "310000", "--limit", "3"]
    assert 0 == await asyncio.to_thread(main, argv)
    done = capsysbinary.readouterr()
    assert [1, 3, 5] == [orjson.loads(line)["index"] for line in done.out.splitlines()]
    assert b"printed 3 of 4 matching records; 1 more: add --after 5 for the next page" in done.err
