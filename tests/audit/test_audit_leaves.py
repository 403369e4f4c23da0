"""The leaf hashes kept on disk (``audit-tree.leaves``): proofs without the record bodies,
and a file cut short, missing, changed or torn found and written again, proofs right throughout.

Proofs are checked against RFC 6962 2.1 written out here (``test_audit_nodes``), over the
leaf hashes of the records as stored, not against the gateway's own tree code.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sqlite3
from pathlib import Path

import pytest

from gateway.audit import AuditService, _store, append_cli_event
from gateway.audit._leaves import LEAVES_FILE, LeafFile
from gateway.audit._service import TREE_CHUNK_BITS
from tests.audit.conftest import EventFactory
from tests.audit.test_audit_nodes import _h, _path, _subproof
from trust.merkle import leaf_hash, verify_inclusion
from trust.note import open_checkpoint

pytestmark = pytest.mark.allow_blocking

CHUNK = 1 << TREE_CHUNK_BITS
HEADER = 32


def _stored(data_dir: Path, postgres_dsn: str | None = None) -> list[bytes]:
    """SHA-256(0x00 || record) of every stored record, in index order."""
    if postgres_dsn is None:
        conn = sqlite3.connect(data_dir / "audit.db")
        try:
            rows = conn.execute("SELECT record FROM audit_entries ORDER BY idx").fetchall()
        finally:
            conn.close()
    else:
        import psycopg

        with psycopg.connect(postgres_dsn) as pg:
            rows = pg.execute("SELECT record FROM audit_entries ORDER BY idx").fetchall()
    return [_h(b"\x00" + bytes(r[0])) for r in rows]


def _file_leaves(data_dir: Path) -> bytes:
    return (data_dir / LEAVES_FILE).read_bytes()[HEADER:]


async def _fill(service: AuditService, make_event: EventFactory, n: int) -> None:
    await asyncio.gather(*(service.append(make_event(actor_id=f"n{i}")) for i in range(n)))


async def _check_proofs(service: AuditService, leaves: list[bytes], picks: list[int]) -> None:
    """Every pick's inclusion proof, and a consistency proof from it, as RFC 6962 has them."""
    size = len(leaves)
    for i in picks:
        entry = await service.entry(i)
        assert entry is not None
        assert entry.tree_size == size
        assert entry.leaf_hash == leaves[i]
        assert list(entry.inclusion) == _path(i, leaves)
        assert await service.consistency(i + 1, size) == _subproof(i + 1, leaves, True)


def _count_store_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every read of leaf hashes from the store (alone or beside an entry)."""
    reads: list[str] = []
    cls = _store.SqlAuditStore
    for name in ("leaf_hashes", "entry_with_leaves"):
        original = getattr(cls, name)

        def counting(self: object, *args: int, _original: object = original,
                     _name: str = name) -> object:
            reads.append(f"{_name}{args}")
            return _original(self, *args)  # type: ignore[operator]

        monkeypatch.setattr(cls, name, counting)
    return reads


def _picks(size: int) -> list[int]:
    return sorted({0, 1, CHUNK - 1, CHUNK, 3 * CHUNK + 5, size // 2, size - CHUNK, size - 1})


class TestLeafFile:
    """The service keeps every leaf hash in the file and proves from it."""

    @pytest.mark.parametrize("backend", ["sqlite", "postgres"])
    async def test_proofs_read_no_leaf_hashes_from_the_store(
        self, data_dir: Path, make_event: EventFactory, monkeypatch: pytest.MonkeyPatch,
        backend: str, request: pytest.FixtureRequest,
    ) -> None:
        """After a restart, inclusion and consistency proofs read their chunks from the file
        (the entry's row alone from the store), and are RFC 6962's."""
        dsn = request.getfixturevalue("postgres_dsn") if backend == "postgres" else None
        size = 9 * CHUNK + 7
        async with AuditService(data_dir=data_dir, postgres_dsn=dsn, batch_max=16) as svc:
            await _fill(svc, make_event, size - 1)
            await svc.publish()
        append_cli_event(data_dir, make_event(actor_id="cli"), postgres_dsn=dsn)
        leaves = _stored(data_dir, dsn)
        assert len(leaves) == size
        async with AuditService(data_dir=data_dir, postgres_dsn=dsn) as svc:
            await svc.publish()
            assert await svc.leaves_kept() == size
            assert _file_leaves(data_dir) == b"".join(leaves)
            reads = _count_store_reads(monkeypatch)
            await _check_proofs(svc, leaves, _picks(size))
            assert reads == []

    @pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise here")
    async def test_a_proof_asks_for_its_chunk_before_reading_the_row(
        self, data_dir: Path, make_event: EventFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The entry's chunk of the file is asked of the kernel (``POSIX_FADV_WILLNEED``)
        before the entry's row is read from the store, so that on a cold disk the two reads
        overlap; the proof is RFC 6962's all the same."""
        size = 3 * CHUNK + 1
        async with AuditService(data_dir=data_dir) as svc:
            await _fill(svc, make_event, size)
            await svc.publish()
            assert await svc.leaves_kept() == size
            leaves = _stored(data_dir)
            calls: list[tuple[object, ...]] = []
            fadvise = os.posix_fadvise

            def advised(fd: int, offset: int, length: int, advice: int) -> None:
                calls.append(("advise", offset, length, advice))
                fadvise(fd, offset, length, advice)

            entry = _store.SqlAuditStore.entry

            def row(self: _store.SqlAuditStore, index: int) -> tuple[bytes, bytes] | None:
                calls.append(("row", index))
                return entry(self, index)

            monkeypatch.setattr(os, "posix_fadvise", advised)
            monkeypatch.setattr(_store.SqlAuditStore, "entry", row)
            index = CHUNK + 3
            await _check_proofs(svc, leaves, [index])
            assert calls == [("advise", HEADER + 32 * CHUNK, 32 * CHUNK, os.POSIX_FADV_WILLNEED),
                             ("row", index)]

    @pytest.mark.parametrize("damage", ["truncated", "torn", "missing", "emptied"])
    async def test_short_file_is_filled_from_the_store(
        self, data_dir: Path, make_event: EventFactory, damage: str
    ) -> None:
        """A file cut short (at a hash, or inside one: a crash), deleted or empty: proofs
        read the store meanwhile, and the file is filled again from the stored leaf hashes."""
        size = 12 * CHUNK + 3
        async with AuditService(data_dir=data_dir) as svc:
            await _fill(svc, make_event, size)
            await svc.publish()
        path = data_dir / LEAVES_FILE
        if damage == "truncated":
            os.truncate(path, HEADER + 32 * (5 * CHUNK + 2))
        elif damage == "torn":
            os.truncate(path, HEADER + 32 * (5 * CHUNK + 2) + 7)
        elif damage == "missing":
            path.unlink()
        else:
            path.write_bytes(b"")
        leaves = _stored(data_dir)
        async with AuditService(data_dir=data_dir) as svc:
            await _check_proofs(svc, leaves, _picks(size))
            assert await svc.leaves_kept() == size
            assert _file_leaves(data_dir) == b"".join(leaves)
            await _check_proofs(svc, leaves, _picks(size))

    async def test_file_deleted_under_a_running_service_is_written_again(
        self, data_dir: Path, make_event: EventFactory
    ) -> None:
        """The service writes where the next start reads, not to a deleted file's inode."""
        async with AuditService(data_dir=data_dir, batch_max=16) as svc:
            await _fill(svc, make_event, 4 * CHUNK)
            await svc.publish()
            (data_dir / LEAVES_FILE).unlink()
            await _fill(svc, make_event, 2 * CHUNK + 1)
            await svc.publish()
            assert await svc.leaves_kept() == 6 * CHUNK + 1
            leaves = _stored(data_dir)
            assert _file_leaves(data_dir) == b"".join(leaves)
            await _check_proofs(svc, leaves, _picks(len(leaves)))

    @pytest.mark.parametrize("where", ["first", "last", "middle"])
    async def test_changed_file_is_found_and_written_again(
        self, data_dir: Path, make_event: EventFactory, caplog: pytest.LogCaptureFixture,
        where: str,
    ) -> None:
        """A changed hash in the file never reaches a proof. In the first or last chunk held
        it is found at start-up (the file is emptied and filled again); elsewhere by the
        first proof that reads its chunk (that chunk is read from the store, written again)."""
        size = 10 * CHUNK + 1
        async with AuditService(data_dir=data_dir) as svc:
            await _fill(svc, make_event, size)
            await svc.publish()
        path = data_dir / LEAVES_FILE
        good = path.read_bytes()
        chunk = {"first": 0, "last": 9, "middle": 4}[where]
        forged = bytearray(good)
        forged[HEADER + 32 * (chunk * CHUNK + 3) + 5] ^= 0x40
        path.write_bytes(bytes(forged))
        leaves = _stored(data_dir)
        with caplog.at_level(logging.WARNING, logger="gateway.audit"):
            async with AuditService(data_dir=data_dir) as svc:
                await _check_proofs(svc, leaves, [chunk * CHUNK + 3, chunk * CHUNK + 9])
                assert await svc.leaves_kept() == size
        assert path.read_bytes() == good
        assert any(LEAVES_FILE in r.getMessage() for r in caplog.records)

    async def test_another_logs_file_is_emptied_and_refilled(
        self, tmp_path: Path, make_event: EventFactory
    ) -> None:
        """A leaf file copied from another log (same header, other hashes) is not used."""
        one, two = tmp_path / "one", tmp_path / "two"
        for folder in (one, two):
            folder.mkdir()
            async with AuditService(data_dir=folder) as svc:
                await _fill(svc, make_event, 5 * CHUNK)
                await svc.publish()
        (two / LEAVES_FILE).write_bytes((one / LEAVES_FILE).read_bytes())
        leaves = _stored(two)
        async with AuditService(data_dir=two) as svc:
            await _check_proofs(svc, leaves, _picks(len(leaves)))
            await svc.leaves_kept()
        assert _file_leaves(two) == b"".join(leaves)

    async def test_pruned_entries_keep_their_leaf_hashes_in_the_file(
        self, data_dir: Path, make_event: EventFactory
    ) -> None:
        """Pruning empties record bodies only: the file and the proofs are unchanged."""
        size = 4 * CHUNK
        async with AuditService(data_dir=data_dir) as svc:
            await _fill(svc, make_event, size)
            await svc.publish()
        before = (data_dir / LEAVES_FILE).read_bytes()
        leaves = _stored(data_dir)
        conn = sqlite3.connect(data_dir / "audit.db")
        conn.execute("DROP TRIGGER IF EXISTS audit_entries_no_update")
        conn.execute("UPDATE audit_entries SET record = x'' WHERE idx < ?", (2 * CHUNK,))
        conn.commit()
        conn.close()
        async with AuditService(data_dir=data_dir) as svc:
            entry = await svc.entry(3)
            assert entry is not None
            assert entry.pruned
            assert entry.leaf_hash == leaves[3]
            assert list(entry.inclusion) == _path(3, leaves)
        assert (data_dir / LEAVES_FILE).read_bytes() == before


class TestSharedFolder:
    """Several services on one data folder (``serve --workers N``, one PostgreSQL log for
    instances sharing a folder) write the file together; readers never take a torn tail."""

    @pytest.mark.parametrize("backend", ["sqlite", "postgres"])
    async def test_readers_prove_right_while_another_writes(
        self, data_dir: Path, make_event: EventFactory, backend: str,
        request: pytest.FixtureRequest,
    ) -> None:
        """One service appends (its writes to the file racing the reads) while another,
        checkpointing too, serves proofs of random entries: every proof verifies against
        the signed root, and the file ends up holding exactly the stored leaf hashes."""
        dsn = request.getfixturevalue("postgres_dsn") if backend == "postgres" else None
        writer = AuditService(data_dir=data_dir, postgres_dsn=dsn, batch_max=8,
                              checkpoint_interval_s=0.01)
        reader = AuditService(data_dir=data_dir, postgres_dsn=dsn, batch_max=8,
                              checkpoint_interval_s=0.01)
        await writer.start()
        await _fill(writer, make_event, 3 * CHUNK)
        await writer.publish()
        await reader.start()
        rng = random.Random(5)
        done = asyncio.Event()

        async def write() -> None:
            for n in range(40):
                await _fill(writer, make_event, 7)
                if n % 3 == 0:
                    await writer.publish()
            done.set()

        async def read() -> int:
            proved = 0
            while not done.is_set() or proved < 50:
                latest = await reader.publish()
                assert latest is not None
                index = rng.randrange(latest.size)
                entry = await reader.entry(index)
                assert entry is not None
                body = open_checkpoint(entry.checkpoint, reader.verifier)
                verify_inclusion(index, entry.tree_size, leaf_hash(entry.leaf),
                                 list(entry.inclusion), body.root_hash)
                proved += 1
            return proved

        try:
            _, proved = await asyncio.gather(write(), read())
            assert proved >= 50
            await writer.publish()
            await reader.publish()
            size = len(_stored(data_dir, dsn))
            assert await writer.leaves_kept() == size
            assert await reader.leaves_kept() == size
        finally:
            await writer.stop()
            await reader.stop()
        assert _file_leaves(data_dir) == b"".join(_stored(data_dir, dsn))

    async def test_one_process_fills_at_a_time(
        self, data_dir: Path, make_event: EventFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """While another process holds the fill lock, a service whose file is missing does
        not read the stored leaf hashes for it (proofs read the store meanwhile); once the
        lock is free it fills the file."""
        size = 8 * CHUNK
        async with AuditService(data_dir=data_dir) as svc:
            await _fill(svc, make_event, size)
            await svc.publish()
        (data_dir / LEAVES_FILE).unlink()
        leaves = _stored(data_dir)
        other = LeafFile(data_dir)
        try:
            assert other.try_fill_lock()
            reads = _count_store_reads(monkeypatch)
            async with AuditService(data_dir=data_dir) as svc:
                await asyncio.sleep(0.3)
                assert not [r for r in reads if r.startswith("leaf_hashes(0,")], reads
                await _check_proofs(svc, leaves, [3, 2 * CHUNK + 1])
                assert LeafFile(data_dir).held() == 0
                other.release_fill_lock()
                assert await svc.leaves_kept() == size
            assert _file_leaves(data_dir) == b"".join(leaves)
        finally:
            other.close()

    async def test_a_torn_chunk_being_written_is_read_from_the_store(
        self, data_dir: Path, make_event: EventFactory
    ) -> None:
        """What a reader sees of a chunk another process is halfway through writing (half
        new bytes, half old or zeros) does not match its node: the reader takes the store's."""
        size = 6 * CHUNK
        async with AuditService(data_dir=data_dir) as svc:
            await _fill(svc, make_event, size)
            await svc.publish()
            leaves = _stored(data_dir)
            fd = os.open(data_dir / LEAVES_FILE, os.O_RDWR)
            try:  # the second half of chunk 5 as a writer that has not got there yet
                os.pwrite(fd, bytes(32 * CHUNK // 2), HEADER + 32 * (5 * CHUNK + CHUNK // 2))
            finally:
                os.close(fd)
            await _check_proofs(svc, leaves, [5 * CHUNK + 1, size - 1])
        assert _file_leaves(data_dir) == b"".join(leaves)


def test_leaf_file_writes_are_contiguous(tmp_path: Path) -> None:
    """Nothing is written past a gap; a foreign header makes the file start over."""
    file = LeafFile(tmp_path)
    try:
        hashes = [_h(bytes([i])) for i in range(40)]
        assert file.held() == 0
        assert file.write(0, b"".join(hashes[:10])) == 10
        assert file.write(20, b"".join(hashes[20:30])) == 10  # a gap: refused
        assert file.write(10, b"".join(hashes[10:40])) == 40
        assert file.read(16, 32) == hashes[16:32]
        assert file.read(32, 48) is None
        (tmp_path / LEAVES_FILE).write_bytes(b"x" * 64)
        assert file.held() == 0
        assert file.write(5, hashes[5]) == 0
        assert file.write(0, hashes[0]) == 1
    finally:
        file.close()
