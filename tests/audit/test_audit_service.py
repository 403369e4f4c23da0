"""The audit service on SQLite: group commit, checkpoints, append-only store, integrity."""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import os
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.audit import (
    AuditService,
    AuditUnavailableError,
    LoggedEntry,
    LogIntegrityError,
    StoredCheckpoint,
    VerifyReport,
    _service,
    _store,
    append_cli_event,
    open_store,
    verify_log,
)
from gateway.audit._keys import load_signing_key
from gateway.audit._leaves import LEAVES_FILE
from gateway.audit._record import Uuid7Generator, mask
from gateway.audit._service import TREE_CHUNK_BITS
from gateway.audit._store import AuditStore
from gateway.audit._tree import Frontier, MerkleTree
from gateway.audit.event import receipt_json
from tests.audit.conftest import HOLDER_CODE, HOLDER_NAME, EventFactory
from trust.merkle import leaf_hash, verify_consistency, verify_inclusion
from trust.note import Checkpoint, NoteSigner, open_checkpoint


async def _fill(service: AuditService, make_event: EventFactory, n: int) -> list[int]:
    return list(
        await asyncio.gather(*(service.append(make_event(actor_id=f"w{i}")) for i in range(n)))
    )


class TestAppend:
    """append() returns dense indices once records are durable."""

    async def test_concurrent_appends_get_dense_indices(
        self, service: AuditService, make_event: EventFactory
    ) -> None:
        """200 concurrent appends get indices 0..199, each once."""
        indices = await _fill(service, make_event, 200)
        assert list(range(200)) == sorted(indices)
        assert 200 == service.tree_size
        # /metrics: every record counted once; concurrent appends share commits.
        counted = {f.name: f.samples[0][1] for f in service.metric_families()}
        assert 200 == counted["ecert_audit_records"]
        assert 1 <= counted["ecert_audit_commits"] < 200

    async def test_records_arriving_turn_after_turn_share_a_commit(
        self, service: AuditService, make_event: EventFactory
    ) -> None:
        """Before a commit the writer lets the loop run while each turn adds records: six
        appends made one loop turn after another are committed together (taken at once,
        the first two would have gone alone), each at its own index."""
        await service.append(make_event())  # the writer is idle and waiting again
        before = service.commits

        async def after_turns(turns: int) -> int:
            for _ in range(turns):
                await asyncio.sleep(0)
            return await service.append(make_event(actor_id=f"turn-{turns}"))

        indices = await asyncio.gather(*(after_turns(turns) for turns in range(6)))
        assert [1, 2, 3, 4, 5, 6] == indices
        assert 1 == service.commits - before
        # Records that never stop arriving do not hold a commit back past a few turns.
        before = service.commits
        indices = await asyncio.gather(*(after_turns(turns) for turns in range(40)))
        assert list(range(7, 47)) == indices
        assert service.commits - before >= 2

    async def test_record_is_canonical_and_pseudonymised(
        self, service: AuditService, make_event: EventFactory
    ) -> None:
        """The leaf is sorted-key JSON; personal values are keyed hashes and masks."""
        index = await service.append(make_event())
        entry = await service.entry(index)
        assert entry is not None
        assert orjson.dumps(entry.record, option=orjson.OPT_SORT_KEYS) == entry.leaf
        personal = entry.record["personal"]
        assert personal["holder_code"]["mask"] == "3305**********1234"
        assert personal["holder_name"]["mask"] == "张**"
        assert personal["holder_code"]["hmac"].startswith("hmac:v1:")
        assert entry.record["time"] == "2026-11-26T08:30:01.234Z"
        assert entry.record["latency_ms"] == 12.346

    async def test_refuses_after_stop(self, data_dir: Path, make_event: EventFactory) -> None:
        """A stopped service fails appends instead of dropping them."""
        svc = AuditService(data_dir=data_dir)
        await svc.start()
        await svc.stop()
        with pytest.raises(AuditUnavailableError):
            await svc.append(make_event())

    async def test_stop_drains_queued_records(
        self, data_dir: Path, make_event: EventFactory
    ) -> None:
        """Records queued before stop() are all written."""
        svc = AuditService(data_dir=data_dir, batch_max=7)
        await svc.start()
        tasks = [asyncio.ensure_future(svc.append(make_event())) for _ in range(50)]
        await asyncio.sleep(0)
        await svc.stop()
        assert list(range(50)) == sorted(await asyncio.gather(*tasks))


class TestCheckpoints:
    """Checkpoints are published soon after growth, signed, and consistent."""

    async def test_checkpoint_follows_growth(
        self, service: AuditService, make_event: EventFactory
    ) -> None:
        """A checkpoint covering new records appears within 2 s."""
        await _fill(service, make_event, 5)
        for _ in range(40):
            latest = await service.latest_checkpoint()
            if latest is not None and latest.size == 5:
                break
            await asyncio.sleep(0.05)
        assert latest is not None
        assert 5 == latest.size
        body = open_checkpoint(latest.note, service.verifier)
        assert "huzhou.ecert-gateway/audit" == body.origin
        assert service.vkey().startswith("huzhou.ecert-gateway/audit+")

    async def test_entry_proof_verifies(
        self, service: AuditService, make_event: EventFactory
    ) -> None:
        """An entry's inclusion proof leads to its checkpoint's signed root."""
        await _fill(service, make_event, 13)
        entry = await service.entry(6)
        assert entry is not None
        body = open_checkpoint(entry.checkpoint, service.verifier)
        assert body.size == entry.tree_size >= 7
        verify_inclusion(6, entry.tree_size, leaf_hash(entry.leaf), entry.inclusion, body.root_hash)

    @pytest.mark.allow_blocking
    async def test_consecutive_checkpoints_are_consistent(
        self, service: AuditService, make_event: EventFactory
    ) -> None:
        """Every kept checkpoint is consistent with the next."""
        for _ in range(3):
            await _fill(service, make_event, 4)
            await service.publish()
        await service.stop()
        store = open_store(service.data_dir, None)
        checkpoints = store.checkpoints()
        store.close()
        sizes = [c.size for c in checkpoints]
        assert {4, 8, 12} <= set(sizes)
        assert sorted(set(sizes)) == sizes
        async with AuditService(data_dir=service.data_dir) as svc:
            for a, b in itertools.pairwise(checkpoints):
                proof = await svc.consistency(a.size, b.size)
                verify_consistency(a.size, b.size, proof, a.root, b.root)


class TestBatchCheckpoints:
    """Each batch is committed with one checkpoint of the tree it makes; receipts carry it."""

    async def test_proved_appends_verify_and_their_checkpoints_are_kept(
        self, service: AuditService, make_event: EventFactory, data_dir: Path
    ) -> None:
        """Concurrent append_proved calls: each entry is the exact record bytes, proved in a
        signed tree that the store keeps; ``verify_log`` checks every one of them."""
        await _fill(service, make_event, 37)  # a few complete chunks before
        logged = await asyncio.gather(
            *(service.append_proved(make_event(actor_id=f"p{i}")) for i in range(150)))
        assert sorted(e.index for e in logged) == list(range(37, 187))
        notes = {e.checkpoint for e in logged}
        assert len(notes) < len(logged)  # one checkpoint per batch, not per record
        for entry in logged:
            body = open_checkpoint(entry.checkpoint, service.verifier)
            assert body.size == entry.tree_size > entry.index
            verify_inclusion(entry.index, entry.tree_size, leaf_hash(entry.leaf),
                             list(entry.inclusion), body.root_hash)
            assert orjson.loads(entry.leaf)["actor_id"].startswith("p")

        def read() -> tuple[set[str], VerifyReport]:
            store = open_store(data_dir, None)
            try:
                return {cp.note for cp in store.checkpoints()}, verify_log(store, service.verifier)
            finally:
                store.close()

        kept, report = await asyncio.to_thread(read)
        assert notes <= kept
        assert report.ok
        assert len(kept) == report.checkpoints

    async def test_groups_are_committed_whole_in_order_with_one_future(
        self, service: AuditService, make_event: EventFactory
    ) -> None:
        """append_proved_many and append_many: each group gets consecutive indices in the
        order given, even beside single appends and when a group exceeds batch_max (64);
        every proved entry verifies against its signed checkpoint."""
        await _fill(service, make_event, 21)
        big = [make_event(actor_id=f"g{i}") for i in range(150)]
        small = [make_event(actor_id=f"s{i}") for i in range(10)]
        plain = [make_event(actor_id=f"n{i}") for i in range(5)]
        big_logged, singles, small_logged, plain_indices = await asyncio.gather(
            service.append_proved_many(big),
            asyncio.gather(*(service.append_proved(make_event(actor_id=f"x{i}"))
                             for i in range(7))),
            service.append_proved_many(small),
            service.append_many(plain))
        assert [] == await service.append_proved_many([])
        assert [] == await service.append_many([])
        for group, logged, prefix in ((big, big_logged, "g"), (small, small_logged, "s")):
            assert len(group) == len(logged)
            first = logged[0].index
            assert [e.index for e in logged] == list(range(first, first + len(group)))
            assert len({e.checkpoint for e in logged}) == 1  # one batch, one tree head
            for i, entry in enumerate(logged):
                assert orjson.loads(entry.leaf)["actor_id"] == f"{prefix}{i}"
        assert plain_indices == list(range(plain_indices[0], plain_indices[0] + 5))
        everything = [*big_logged, *singles, *small_logged]
        indices = sorted([e.index for e in everything] + plain_indices)
        assert indices == list(range(21, 21 + 150 + 7 + 10 + 5))
        for entry in everything:
            body = open_checkpoint(entry.checkpoint, service.verifier)
            assert body.size == entry.tree_size > entry.index
            verify_inclusion(entry.index, entry.tree_size, leaf_hash(entry.leaf),
                             list(entry.inclusion), body.root_hash)
        for index in plain_indices:
            found = await service.entry(index)
            assert found is not None
            assert found.record["actor_id"].startswith("n")

    async def test_a_group_fails_whole(
        self, data_dir: Path, make_event: EventFactory
    ) -> None:
        """A group refused by a stopped log raises; nothing of it is answered."""
        svc = AuditService(data_dir=data_dir)
        await svc.start()
        await svc.stop()
        with pytest.raises(AuditUnavailableError):
            await svc.append_proved_many([make_event(), make_event()])

    async def test_proofs_of_a_batch_read_nothing_from_the_store(
        self, data_dir: Path, make_event: EventFactory,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The leaf hashes of recent chunks are in memory: proving a batch just committed
        reads no leaf hash back. (The periodic publisher is kept out of the way: its
        consistency proof from an older checkpoint may rightly read a stored chunk, and
        counting its reads made this test fail now and then.)"""
        async with AuditService(data_dir=data_dir, checkpoint_interval_s=3600.0,
                                batch_max=64) as service:
            await self._prove_a_batch(service, make_event, monkeypatch)

    @staticmethod
    async def _prove_a_batch(service: AuditService, make_event: EventFactory,
                             monkeypatch: pytest.MonkeyPatch) -> None:
        await _fill(service, make_event, 100)
        reads: list[tuple[int, int | None]] = []
        original = _store.SqlAuditStore.leaf_hashes

        def counting(self: _store.SqlAuditStore, start: int, end: int | None = None
                     ) -> list[bytes]:
            reads.append((start, end))
            return original(self, start, end)

        monkeypatch.setattr(_store.SqlAuditStore, "leaf_hashes", counting)
        logged = await asyncio.gather(
            *(service.append_proved(make_event(actor_id=f"q{i}")) for i in range(64)))
        assert 64 == len(logged)
        assert [] == reads


def _store_append_then(monkeypatch: pytest.MonkeyPatch,
                       after_ready: Callable[[], None]) -> list[int]:
    """Make ``SqlAuditStore.append`` call ``after_ready`` on the writer's thread right after
    the audit service's ``ready`` (just before the commit); returns the sizes of the
    batches whose ``ready`` was called."""
    calls: list[int] = []
    original = _store.SqlAuditStore.append

    def append(self: _store.SqlAuditStore, rows: Any, known: int | None, seal: Any = None,
               ready: Callable[[], None] | None = None) -> tuple[int, list[bytes]]:
        def then() -> None:
            assert ready is not None
            ready()
            calls.append(len(rows))
            after_ready()

        return original(self, rows, known, seal, None if ready is None else then)

    monkeypatch.setattr(_store.SqlAuditStore, "append", append)
    return calls


class TestReceiptsWhileTheDiskWaits:
    """A writer alone on its log makes a batch's receipts while its commit waits for the
    disk (once the batch and its checkpoint are written), and hands them out only once the
    commit returned."""

    async def test_receipts_made_early_are_the_logs_proofs(
        self, data_dir: Path, make_event: EventFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every proved commit of a lone writer makes its receipts early. While the thread
        is still inside the transaction (given time for the loop to run), no caller has
        its receipt yet. Every receipt then verifies in its signed checkpoint (RFC 6962,
        ``trust.merkle``), equals the audit API's proof in the same tree, and renders as
        its fields do."""
        answered: list[LoggedEntry] = []
        seen_inside: list[int] = []

        def pause() -> None:  # the loop now makes the receipts; nobody may have one
            time.sleep(0.02)
            seen_inside.append(len(answered))

        calls = _store_append_then(monkeypatch, pause)
        async with AuditService(data_dir=data_dir, checkpoint_interval_s=3600.0,
                                batch_max=64) as service:
            await _fill(service, make_event, 37)
            commits = service.commits

            async def one(i: int) -> LoggedEntry:
                entry = await service.append_proved(make_event(actor_id=f"e{i}"))
                answered.append(entry)
                return entry

            logged = [*await asyncio.gather(*(one(i) for i in range(150))),
                      *await service.append_proved_many([make_event() for _ in range(20)])]
            assert service.commits - commits == service.receipts_early == len(calls) > 1
            assert sum(calls) == 170
            counted = {f.name: f.samples for f in service.metric_families()}
            assert [({}, len(calls))] == counted["ecert_audit_receipts_early"]
            for entry in logged:
                assert entry.rendered is not None
                assert receipt_json(entry.index, entry.leaf, entry.tree_size, entry.inclusion,
                                    entry.checkpoint) == entry.to_json()
                body = open_checkpoint(entry.checkpoint, service.verifier)
                assert body.size == entry.tree_size
                verify_inclusion(entry.index, entry.tree_size, leaf_hash(entry.leaf),
                                 list(entry.inclusion), body.root_hash)
            for entry in logged[-20:]:  # the last batch: proved in the latest tree
                served = await service.entry(entry.index)
                assert served is not None
                assert (entry.tree_size, list(entry.inclusion)) == (served.tree_size,
                                                                    served.inclusion)
        before = 0
        for seen, size in zip(seen_inside, calls, strict=True):
            assert seen <= before  # inside a commit, only earlier commits' callers answered
            before += size

    async def test_a_commit_that_fails_after_the_receipts_were_made_answers_none(
        self, data_dir: Path, make_event: EventFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The commit fails after the loop made the batch's receipts: every caller gets
        the error, the tree keeps nothing of the batch, and the next batch is proved right."""
        failures = [RuntimeError("the disk is gone")]

        def fail_once() -> None:
            time.sleep(0.02)  # the loop makes the receipts meanwhile
            if calls[-1] == 4 and failures:  # the second batch
                raise failures.pop()

        calls = _store_append_then(monkeypatch, fail_once)
        made: list[int] = []
        render = receipt_json

        def counted(index: int, *rest: Any) -> dict[str, Any]:
            made.append(index)
            return render(index, *rest)

        monkeypatch.setattr(_service, "receipt_json", counted)
        async with AuditService(data_dir=data_dir, checkpoint_interval_s=3600.0) as service:
            logged = await service.append_proved_many([make_event() for _ in range(3)])
            early = service.receipts_early
            with pytest.raises(AuditUnavailableError):
                await service.append_proved_many([make_event() for _ in range(4)])
            assert [0, 1, 2, 3, 4, 5, 6] == made  # the failed batch's receipts were made
            assert (3, early) == (service.tree_size, service.receipts_early)
            logged += await service.append_proved_many([make_event() for _ in range(2)])
            assert [3, 4, 2] == calls
            assert list(range(5)) == [e.index for e in logged]
            await _receipts_and_log_verify(logged, service)

    async def test_a_batch_after_another_writers_entries_is_proved_from_the_tree(
        self, data_dir: Path, make_event: EventFactory
    ) -> None:
        """When another writer's entries came first, the checkpoint is signed for a tree
        with them: no receipt is made early, and the receipts made after the commit
        verify."""
        async with AuditService(data_dir=data_dir) as a, AuditService(data_dir=data_dir) as b:
            logged = await b.append_proved_many([make_event() for _ in range(2)])
            logged += await a.append_proved_many([make_event() for _ in range(3)])
            assert (1, 0) == (a.commits, a.receipts_early)
            assert all(e.rendered is None for e in logged[2:])
            await _receipts_and_log_verify(logged, a)


class TestStore:
    """The store refuses changes and keeps personal data out."""

    @pytest.mark.allow_blocking
    async def test_triggers_refuse_update_and_delete(
        self, data_dir: Path, make_event: EventFactory
    ) -> None:
        """UPDATE and DELETE of entries and checkpoints abort."""
        async with AuditService(data_dir=data_dir) as svc:
            await _fill(svc, make_event, 3)
        conn = sqlite3.connect(data_dir / "audit.db")
        for sql in (
            "UPDATE audit_entries SET outcome = 'x'",
            "DELETE FROM audit_entries",
            "DELETE FROM audit_checkpoints",
            "UPDATE audit_meta SET value = 'x'",
        ):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute(sql)
        conn.close()

    @pytest.mark.allow_blocking
    async def test_no_raw_personal_data_in_files(
        self, data_dir: Path, make_event: EventFactory
    ) -> None:
        """Neither the database nor its WAL holds a raw holder code or name."""
        svc = AuditService(data_dir=data_dir)
        await svc.start()
        await _fill(svc, make_event, 20)
        # Read the files while the service holds them open, so the WAL is still there.
        files = [p for p in data_dir.iterdir() if p.name.startswith("audit.db")]  # noqa: ASYNC240
        assert any(p.name.endswith("-wal") for p in files)
        blob = b"".join(p.read_bytes() for p in files)
        await svc.stop()
        blob += (data_dir / "audit.db").read_bytes()
        for raw in (HOLDER_CODE, HOLDER_NAME, HOLDER_CODE[4:-4]):
            assert raw.encode() not in blob
        assert mask("holder_code", HOLDER_CODE).encode() in blob

    @pytest.mark.allow_blocking
    async def test_keys_are_private_files(self, service: AuditService) -> None:
        """Signing and HMAC keys live in data_dir/keys with mode 0600."""
        for name in ("audit-ed25519.key", "audit-hmac-v1.key"):
            mode = (service.data_dir / "keys" / name).stat().st_mode
            assert 0o600 == stat.S_IMODE(mode)


class TestCli:
    """Records the CLI writes join the same log."""

    @pytest.mark.allow_blocking
    async def test_cli_append_while_gateway_runs(
        self, service: AuditService, make_event: EventFactory
    ) -> None:
        """A CLI record gets the next index and the gateway's next checkpoint covers it."""
        await _fill(service, make_event, 3)
        index = append_cli_event(service.data_dir, make_event(actor_id="cli"))
        assert 3 == index
        assert 4 == await service.append(make_event())
        checkpoint = await service.publish()
        assert checkpoint is not None
        assert 5 == checkpoint.size

    @pytest.mark.allow_blocking
    def test_cli_append_without_gateway(self, data_dir: Path, make_event: EventFactory) -> None:
        """With no gateway the CLI writes directly; a later gateway covers it."""
        assert 0 == append_cli_event(data_dir, make_event())
        assert 1 == append_cli_event(data_dir, make_event())

        async def later() -> int:
            async with AuditService(data_dir=data_dir) as svc:
                cp = await svc.publish()
                return 0 if cp is None else cp.size

        assert 2 == asyncio.run(later())


@contextmanager
def _holding_write_lock(data_dir: Path) -> Iterator[None]:
    """Hold the SQLite log's writer lock file as another process's writer would."""
    fd = os.open(data_dir / "audit.db-writelock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the file releases its lock


class TestWriteLock:
    """Writers of one SQLite log (workers, other instances, the CLI) queue on its lock file,
    so that a waiter is woken when the holder commits instead of polling SQLite's lock."""

    @pytest.mark.allow_blocking
    async def test_batch_waits_while_another_writer_holds_the_lock(
        self, service: AuditService, make_event: EventFactory
    ) -> None:
        """The writer does not commit while the lock file is held, and commits once it is
        released, at the next index."""
        assert 0 == await service.append(make_event())
        with _holding_write_lock(service.data_dir):
            pending = asyncio.ensure_future(service.append(make_event()))
            await asyncio.sleep(0.3)
            assert not pending.done(), "the batch was committed while the lock was held"
        assert 1 == await asyncio.wait_for(pending, 10)

    @pytest.mark.allow_blocking
    async def test_after_another_writers_entries_it_waits_its_turn_before_taking_records(
        self, service: AuditService, make_event: EventFactory
    ) -> None:
        """Once a commit found entries another writer made, the writer waits for the lock
        before it takes its records: those that arrive while the other holds it go into one
        commit, after the other's (taken at once, the first would have been committed alone
        and the rest after it)."""
        assert 0 == await service.append(make_event())
        assert 1 == append_cli_event(service.data_dir, make_event(actor_id="cli"))
        assert 2 == await service.append(make_event())  # its commit finds entry 1
        before = service.commits
        with _holding_write_lock(service.data_dir):
            first = asyncio.ensure_future(service.append(make_event(actor_id="first")))
            await asyncio.sleep(0.1)
            rest = [asyncio.ensure_future(service.append(make_event(actor_id=f"next-{i}")))
                    for i in range(3)]
            await asyncio.sleep(0.1)
            assert not first.done(), "a record was committed while the lock was held"
        assert [3, 4, 5, 6] == await asyncio.wait_for(asyncio.gather(first, *rest), 10)
        assert 1 == service.commits - before
        # With no other writer since, the next record is taken at once, as before.
        assert 7 == await service.append(make_event())

    @pytest.mark.allow_blocking
    async def test_writers_taking_turns_prove_from_the_edge_signed_with_the_others(
        self, data_dir: Path, make_event: EventFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Two writers of one log commit in turn, each batch after the other's entries.
        Each checkpoint is signed for the tree with them (the writer thread grows it), every
        receipt verifies in it, ``verify_log`` passes, and the right edge just signed serves
        the next batch: the tree's edge is not rebuilt from its nodes for every commit."""
        rebuilt = _count_edge_rebuilds(monkeypatch)
        logged: list[LoggedEntry] = []
        async with AuditService(data_dir=data_dir) as a, AuditService(data_dir=data_dir) as b:
            for turn in range(10):
                writer = (a, b)[turn % 2]
                logged += await writer.append_proved_many(
                    [make_event(actor_id=f"t{turn}-{i}") for i in range(3)])
                if turn == 1:
                    rebuilt.clear()  # each has now committed once after the other
            assert [] == rebuilt, "a writer rebuilt the tree's edge for a batch"
            assert list(range(30)) == [e.index for e in logged]
            assert all(e.tree_size == 3 * (e.index // 3 + 1) for e in logged)
            await _receipts_and_log_verify(logged, a)

    @pytest.mark.allow_blocking
    async def test_a_turn_that_finds_nobody_else_and_a_failed_commit_keep_the_edge_right(
        self, data_dir: Path, make_event: EventFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A writer that waited its turn but finds no other entries hashes its batch on the
        thread alone; a commit that fails inside its transaction (its checkpoint cannot be
        signed) keeps no edge. Every receipt before and after verifies, the edges kept serve
        the next batches without a rebuild, and ``verify_log`` passes."""
        rebuilt = _count_edge_rebuilds(monkeypatch)
        sign = Checkpoint.sign
        failures = [RuntimeError("the signing key is gone")]

        def flaky(checkpoint: Checkpoint, signer: NoteSigner) -> str:
            if failures:
                raise failures.pop()
            return sign(checkpoint, signer)

        logged: list[LoggedEntry] = []
        async with AuditService(data_dir=data_dir) as a, AuditService(data_dir=data_dir) as b:
            logged += await b.append_proved_many([make_event() for _ in range(2)])
            logged += await a.append_proved_many([make_event() for _ in range(3)])  # after b's
            rebuilt.clear()
            # Its turn next, and nobody else writes: the thread hashes the batch alone.
            logged += await a.append_proved_many([make_event() for _ in range(3)])
            logged += await a.append_proved_many([make_event() for _ in range(3)])
            assert [] == rebuilt, "a batch rebuilt the tree's edge"
            monkeypatch.setattr(Checkpoint, "sign", flaky)
            with pytest.raises(AuditUnavailableError):
                await a.append_proved(make_event())
            assert 11 == a.tree_size  # nothing of the failed batch was kept
            logged += await a.append_proved_many([make_event() for _ in range(2)])
            assert [] == rebuilt  # the failed batch left the edge it found
            assert list(range(13)) == [e.index for e in logged]
            await _receipts_and_log_verify(logged, a)

    @pytest.mark.allow_blocking
    def test_cli_append_waits_while_another_writer_holds_the_lock(
        self, data_dir: Path, make_event: EventFactory
    ) -> None:
        """`append_cli_event` takes the same lock: it writes only once the holder let go."""
        assert 0 == append_cli_event(data_dir, make_event())
        written: list[int] = []
        writer = threading.Thread(
            target=lambda: written.append(append_cli_event(data_dir, make_event())))
        with _holding_write_lock(data_dir):
            writer.start()
            writer.join(0.3)
            assert writer.is_alive(), "the CLI wrote while the lock was held"
        writer.join(10)
        assert [1] == written


def _count_edge_rebuilds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The tree sizes at which ``MerkleTree.frontier`` (the right edge rebuilt from the
    tree's nodes) is called from now on."""
    rebuilt: list[int] = []
    frontier = MerkleTree.frontier

    def counted(tree: MerkleTree) -> Frontier:
        rebuilt.append(tree.size)
        return frontier(tree)

    monkeypatch.setattr(MerkleTree, "frontier", counted)
    return rebuilt


async def _receipts_and_log_verify(logged: list[LoggedEntry], service: AuditService) -> None:
    """Every receipt's inclusion proof verifies in the checkpoint it carries, whose size is
    the receipt's; then ``verify_log`` passes over the whole log, which holds them all."""
    for entry in logged:
        body = open_checkpoint(entry.checkpoint, service.verifier)
        assert body.size == entry.tree_size
        verify_inclusion(entry.index, entry.tree_size, leaf_hash(entry.leaf),
                         list(entry.inclusion), body.root_hash)

    def read() -> VerifyReport:
        store = open_store(service.data_dir, None)
        try:
            return verify_log(store, service.verifier)
        finally:
            store.close()

    report = await asyncio.to_thread(read)
    assert report.ok, report
    assert len(logged) == report.entries


class _CommitsBetweenReads:
    """A store that lets another writer commit right after the first read of entries or
    checkpoints (whichever comes first), as a busy worker beside a starting one does."""

    def __init__(self, store: AuditStore, meanwhile: Callable[[], None]) -> None:
        self._store = store
        self._meanwhile = meanwhile

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def leaf_hashes(self, start: int, end: int | None = None) -> list[bytes]:
        found = self._store.leaf_hashes(start, end)
        self._meanwhile()
        return found

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        found = self._store.latest_checkpoint()
        self._meanwhile()
        return found


class TestStartBesideWriters:
    """A service starts while other writers of the same log keep committing."""

    @pytest.mark.allow_blocking
    async def test_checkpoint_kept_during_start_is_not_missing_entries(
        self, data_dir: Path, make_event: EventFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Entries and their checkpoint committed by another writer while a service starts
        are taken in, not mistaken for entries gone missing (which refused the start)."""
        async with AuditService(data_dir=data_dir) as other:
            await _fill(other, make_event, 5)
            loop = asyncio.get_running_loop()
            committed: list[LoggedEntry] = []

            def meanwhile() -> None:
                if not committed:  # once: one entry, kept with its own checkpoint
                    committed.append(asyncio.run_coroutine_threadsafe(
                        other.append_proved(make_event()), loop).result(10))

            opened = AuditService._open
            monkeypatch.setattr(AuditService, "_open",
                                lambda svc: _CommitsBetweenReads(opened(svc), meanwhile))
            async with AuditService(data_dir=data_dir) as starting:
                assert [6] == [entry.tree_size for entry in committed]
                assert 6 == starting.tree_size


class TestMigration:
    """Schema version 2 drops the event_id index; a log written before still verifies."""

    @pytest.mark.allow_blocking
    def test_log_of_version_1_migrates_and_verifies(
        self, data_dir: Path, make_event: EventFactory
    ) -> None:
        """A log with the event_id index (version 1) and its checkpoints is copied into the
        version-2 table on open: same rows, every checkpoint still verifies, new appends go on."""

        async def write(n: int) -> None:
            async with AuditService(data_dir=data_dir, batch_max=8) as svc:
                await _fill(svc, make_event, n)

        asyncio.run(write(40))
        db = sqlite3.connect(data_dir / "audit.db")
        with db:  # back to version 1's shape
            db.execute("CREATE UNIQUE INDEX v1_event_id ON audit_entries (event_id)")
            db.execute("DELETE FROM schema_migrations WHERE store = 'audit' AND version >= 2")
        before = db.execute("SELECT idx, record, leaf_hash FROM audit_entries").fetchall()
        db.close()
        asyncio.run(write(5))  # opens, migrates, checks the tree against its checkpoint
        store = open_store(data_dir, None)
        try:
            report = verify_log(store, NoteSigner("huzhou.ecert-gateway/audit",
                                                  load_signing_key(data_dir)).verifier)
            assert before == [(i, r, h) for i, r, h in store.iter_entries()][:40]
        finally:
            store.close()
        assert (True, 45) == (report.ok, report.entries)
        db = sqlite3.connect(data_dir / "audit.db")
        indexes = {r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_entries'")}
        db.close()
        assert {"audit_entries_ts"} == indexes


class TestIntegrity:
    """Tampering is noticed by verify and by the next start."""

    @pytest.mark.allow_blocking
    async def test_edited_record_is_named(self, data_dir: Path, make_event: EventFactory) -> None:
        """Changing one byte of one record (trigger dropped) names its index."""
        async with AuditService(data_dir=data_dir) as svc:
            await _fill(svc, make_event, 30)
        record = _tamper(data_dir, "update", "SELECT record FROM audit_entries WHERE idx = 17")
        edited = record.replace(b"10.0.0.7", b"10.0.0.8")
        assert edited != record
        _tamper(data_dir, "update", "UPDATE audit_entries SET record = ? WHERE idx = 17",
                (edited,))
        report = _verify(data_dir)
        assert (False, 17) == (report.ok, report.index)

    @pytest.mark.allow_blocking
    async def test_rehashed_record_fails_checkpoint(
        self, data_dir: Path, make_event: EventFactory
    ) -> None:
        """An edit that also fixes the stored leaf hash breaks the signed root, and start-up."""
        async with AuditService(data_dir=data_dir) as svc:
            await _fill(svc, make_event, 10)
        record = _tamper(data_dir, "update", "SELECT record FROM audit_entries WHERE idx = 4")
        forged = record.replace(b"TOTAL_PASSED", b"TOTAL_FAILED")
        # A careful forger also fixes the query column, so only the signed root can tell.
        _tamper(data_dir, "update",
                "UPDATE audit_entries SET record = ?, leaf_hash = ?, outcome = ? WHERE idx = 4",
                (forged, leaf_hash(forged), "TOTAL_FAILED"))
        report = _verify(data_dir)
        assert not report.ok
        assert "signed root" in report.reason
        with pytest.raises(LogIntegrityError):
            await AuditService(data_dir=data_dir).start()

    @pytest.mark.allow_blocking
    async def test_forged_query_column_is_named(
        self, data_dir: Path, make_event: EventFactory
    ) -> None:
        """A row whose partner column was changed (to hide it from a filter) is named by index."""
        async with AuditService(data_dir=data_dir) as svc:
            await _fill(svc, make_event, 10)
        _tamper(data_dir, "update", "UPDATE audit_entries SET partner = '999999' WHERE idx = 6")
        report = _verify(data_dir)
        assert (False, 6) == (report.ok, report.index)
        assert "query columns" in report.reason

    @pytest.mark.allow_blocking
    async def test_deleted_tail_is_noticed(self, data_dir: Path, make_event: EventFactory) -> None:
        """Deleting the last records (trigger dropped) is caught against the kept checkpoint."""
        async with AuditService(data_dir=data_dir) as svc:
            await _fill(svc, make_event, 12)
        _tamper(data_dir, "delete", "DELETE FROM audit_entries WHERE idx >= 9")
        report = _verify(data_dir)
        assert (False, 9) == (report.ok, report.index)
        with pytest.raises(LogIntegrityError):
            await AuditService(data_dir=data_dir).start()


class TestLargeLog:
    """A log of several chunks: the tree reads older leaves from the store and checks them."""

    @pytest.mark.allow_blocking
    async def test_proofs_and_restart_across_chunks(
        self, data_dir: Path, make_event: EventFactory
    ) -> None:
        """Proofs for old entries and old sizes, and a restart whose checkpoint ends mid-chunk."""
        chunk = 1 << TREE_CHUNK_BITS
        first_size = 2 * chunk + chunk // 3  # both checkpoints end inside a chunk
        edge = chunk // 3 + chunk // 2
        async with AuditService(data_dir=data_dir) as svc:
            await _fill(svc, make_event, first_size)
            old = await svc.publish()
            await _fill(svc, make_event, chunk + chunk // 2)
            new = await svc.publish()
            assert old is not None
            assert new is not None
            assert (old.size, new.size) == (first_size, 3 * chunk + edge)
            proof = await svc.consistency(old.size, new.size)
            verify_consistency(old.size, new.size, proof, old.root, new.root)
            for index in (3, chunk + 1, first_size - 1, new.size - 1):
                entry = await svc.entry(index)
                assert entry is not None
                body = open_checkpoint(entry.checkpoint, svc.verifier)
                verify_inclusion(index, entry.tree_size, leaf_hash(entry.leaf), entry.inclusion,
                                 body.root_hash)
        # The CLI grows the log past the chunk holding the last checkpoint's edge, so the next
        # start must read that chunk's leaves back to check the signed root.
        for _ in range(chunk - edge + 4):
            append_cli_event(data_dir, make_event(actor_id="cli"))
        async with AuditService(data_dir=data_dir) as svc:
            assert svc.tree_size == 4 * chunk + 4
            assert (await svc.consistency(new.size, svc.tree_size)) is not None

    @pytest.mark.allow_blocking
    async def test_changed_stored_leaf_hash_is_refused(
        self, data_dir: Path, make_event: EventFactory
    ) -> None:
        """A leaf hash changed under a running gateway is noticed when a proof needs it: the
        entry's own proof, and (read from the store, the leaf file cut short) any proof in
        its chunk."""
        async with AuditService(data_dir=data_dir) as svc:
            await _fill(svc, make_event, 3 * (1 << TREE_CHUNK_BITS))
            await svc.publish()
            _tamper(data_dir, "update", "UPDATE audit_entries SET leaf_hash = ? WHERE idx = 3",
                    (bytes(32),))
            with pytest.raises(LogIntegrityError, match="no longer match"):
                await svc.entry(3)
            assert await svc.entry(2) is not None  # its chunk from the leaf file, checked
            os.truncate(data_dir / LEAVES_FILE, 32)
            with pytest.raises(LogIntegrityError, match="no longer match"):
                await svc.entry(2)  # in the chunk that holds entry 3
            assert await svc.entry(2 * (1 << TREE_CHUNK_BITS) + 5) is not None


def _tamper(data_dir: Path, trigger: str, sql: str, params: tuple[object, ...] = ()) -> bytes:
    """Act as an attacker with file access: drop the guarding trigger, run ``sql``."""
    conn = sqlite3.connect(data_dir / "audit.db")
    try:
        conn.execute(f"DROP TRIGGER IF EXISTS audit_entries_no_{trigger}")
        row = conn.execute(sql, params).fetchone()
        conn.commit()
    finally:
        conn.close()
    return bytes(row[0]) if row else b""


def _verify(data_dir: Path) -> VerifyReport:
    """``verify_log`` over the stored log, with the data folder's own log key."""
    verifier = NoteSigner("huzhou.ecert-gateway/audit", load_signing_key(data_dir)).verifier
    store = open_store(data_dir, None)
    try:
        return verify_log(store, verifier)
    finally:
        store.close()


class TestUuid7:
    """Event ids are RFC 9562 version 7 and ordered."""

    def test_layout_and_order(self) -> None:
        """Version 7, variant 10, the millisecond time first, increasing within a millisecond."""
        gen = Uuid7Generator(lambda: 0x0123456789AB)
        ids = [gen() for _ in range(5000)]
        assert sorted(ids) == ids
        assert len(set(ids)) == len(ids)
        first = ids[0].replace("-", "")
        assert first.startswith("0123456789ab7")
        assert first[16] in "89ab"

    @given(ms=st.integers(0, (1 << 48) - 1), pool=st.binary(min_size=4096, max_size=4096))
    def test_fields_are_the_time_counter_and_random_bits(self, ms: int, pool: bytes) -> None:
        """Read by Python's own ``uuid``: version 7, the RFC 9562 variant, the 48-bit time,
        the counter (its first value the top 11 random bits, then one more) and the low 62
        bits of each id's 8 random bytes, whatever the time and the bytes."""
        gen = Uuid7Generator(lambda: ms)
        with mock.patch("gateway.audit._record.os.urandom", return_value=pool):
            first, second = uuid.UUID(gen()), uuid.UUID(gen())
        for index, made in enumerate((first, second)):
            random64 = int.from_bytes(pool[8 * index:8 * index + 8])
            assert made.version == 7
            assert made.variant == uuid.RFC_4122
            assert made.int >> 80 == ms
            assert made.int & ((1 << 62) - 1) == random64 & ((1 << 62) - 1)
            assert (made.int >> 64) & 0xFFF == (int.from_bytes(pool[:8]) >> 53) + index

    def test_clock_going_back_keeps_order(self) -> None:
        """A clock stepping back does not make an older-looking id."""
        times = iter([1000, 999, 1001])
        gen = Uuid7Generator(lambda: next(times))
        a, b, c = gen(), gen(), gen()
        assert a < b < c
