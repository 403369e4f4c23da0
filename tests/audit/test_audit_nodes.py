"""The tree's chunk nodes kept on disk (``audit-tree.nodes``): start-up, restarts, tampering.

Proofs are checked against RFC 6962 2.1 written out here, over the leaf hashes of the
records as stored, not against the gateway's own tree code.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
from pathlib import Path

import pytest

from gateway.audit import AuditService, LogIntegrityError, _store, append_cli_event
from gateway.audit._leaves import LEAVES_FILE
from gateway.audit._nodes import NODES_FILE
from gateway.audit._service import _CATCH_UP_SLICE, TREE_CHUNK_BITS
from gateway.audit._tree import MerkleTree
from tests.audit.conftest import EventFactory

CHUNK = 1 << TREE_CHUNK_BITS


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 2.1 MTH over leaf hashes."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return _h(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:]))


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 2.1.1 PATH(m, D[n])."""
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return [*_path(m, leaves[:k]), _mth(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _mth(leaves[:k])]


def _subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    """RFC 6962 2.1.2 SUBPROOF(m, D[n], b)."""
    if m == len(leaves):
        return [] if complete else [_mth(leaves)]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), _mth(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), _mth(leaves[:k])]


def _stored_leaves(data_dir: Path) -> list[bytes]:
    """SHA-256(0x00 || record) of every stored record, in index order."""
    conn = sqlite3.connect(data_dir / "audit.db")
    try:
        rows = conn.execute("SELECT record FROM audit_entries ORDER BY idx").fetchall()
    finally:
        conn.close()
    return [_h(b"\x00" + bytes(r[0])) for r in rows]


async def _fill(service: AuditService, make_event: EventFactory, n: int) -> None:
    for i in range(n):
        await service.append(make_event(actor_id=f"n{i}"))


async def _proofs(service: AuditService, size: int, picks: list[int]
                  ) -> list[tuple[list[bytes], list[bytes]]]:
    """Inclusion proofs (at the latest checkpoint) and consistency proofs (to ``size``)."""
    out = []
    for i in picks:
        entry = await service.entry(i)
        assert entry is not None
        assert entry.tree_size == size
        out.append((list(entry.inclusion), await service.consistency(i + 1, size)))
    return out


def _count_leaf_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int | None]]:
    reads: list[tuple[int, int | None]] = []
    original = _store.SqlAuditStore.leaf_hashes

    def counting(self: _store.SqlAuditStore, start: int, end: int | None = None) -> list[bytes]:
        reads.append((start, end))
        return original(self, start, end)

    monkeypatch.setattr(_store.SqlAuditStore, "leaf_hashes", counting)
    return reads


class TestKeptNodes:
    """Start-up loads the kept chunk nodes, checked against the latest signed checkpoint."""

    @pytest.mark.allow_blocking
    async def test_restart_reads_no_leaves_below_the_checkpoint_and_proves_the_same(
        self, data_dir: Path, make_event: EventFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A restart (after more appends, by the gateway and the CLI) reads leaf hashes only
        from the last checkpoint's chunk on, and gives the proofs RFC 6962 gives."""
        first = 5 * CHUNK + 3
        async with AuditService(data_dir=data_dir) as svc:
            await _fill(svc, make_event, first)
            await svc.publish()
        picks = [0, 1, CHUNK + 7, 3 * CHUNK, first - 1]
        kept = (data_dir / NODES_FILE).read_bytes()
        assert len(kept) == 32 * (1 + first // CHUNK)
        reads = _count_leaf_reads(monkeypatch)
        async with AuditService(data_dir=data_dir) as svc:
            assert all(start >= (first // CHUNK) * CHUNK for start, _ in reads), reads
            before = await _proofs(svc, first, picks)
            await _fill(svc, make_event, 2 * CHUNK)
        for _ in range(CHUNK + 1):
            append_cli_event(data_dir, make_event(actor_id="cli"))
        size = first + 3 * CHUNK + 1
        leaves = _stored_leaves(data_dir)
        assert len(leaves) == size
        assert before == [(_path(i, leaves[:first]), _subproof(i + 1, leaves[:first], True))
                          for i in picks]
        reads.clear()
        async with AuditService(data_dir=data_dir) as svc:
            assert svc.tree_size == size
            assert min(start for start, _ in reads) >= ((first + 2 * CHUNK) // CHUNK) * CHUNK
            await svc.publish()
            after = await _proofs(svc, size, [*picks, size - 1])
        assert after == [(_path(i, leaves), _subproof(i + 1, leaves, True))
                         for i in [*picks, size - 1]]
        assert (data_dir / NODES_FILE).stat().st_size == 32 * (1 + size // CHUNK)

    @pytest.mark.allow_blocking
    async def test_tampered_kept_node_is_found_and_rebuilt(
        self, data_dir: Path, make_event: EventFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A changed node in the file does not match the signed root: it is reported, the
        tree is rebuilt from the stored leaf hashes, and the proofs are right."""
        size = 4 * CHUNK
        async with AuditService(data_dir=data_dir) as svc:
            await _fill(svc, make_event, size)
            await svc.publish()
        path = data_dir / NODES_FILE
        good = path.read_bytes()
        forged = bytearray(good)
        forged[32 + 2 * 32] ^= 1  # chunk 2's node
        path.write_bytes(bytes(forged))
        leaves = _stored_leaves(data_dir)
        with caplog.at_level(logging.ERROR, logger="gateway.audit"):
            async with AuditService(data_dir=data_dir) as svc:
                proofs = await _proofs(svc, size, [2 * CHUNK + 1])
        assert any("do not match the log's latest checkpoint" in r.getMessage()
                   for r in caplog.records)
        assert proofs == [(_path(2 * CHUNK + 1, leaves), _subproof(2 * CHUNK + 2, leaves, True))]
        assert path.read_bytes() == good

    @pytest.mark.allow_blocking
    async def test_tampered_node_beside_a_tampered_store_is_refused(
        self, data_dir: Path, make_event: EventFactory
    ) -> None:
        """When the file and the stored leaves both disagree with the signed root, the
        gateway refuses to start, as it did without the file."""
        async with AuditService(data_dir=data_dir) as svc:
            await _fill(svc, make_event, 3 * CHUNK)
            await svc.publish()
        path = data_dir / NODES_FILE
        forged = bytearray(path.read_bytes())
        forged[32] ^= 1
        path.write_bytes(bytes(forged))
        _tamper(data_dir, "UPDATE audit_entries SET leaf_hash = ? WHERE idx = 20", (bytes(32),))
        with pytest.raises(LogIntegrityError, match=r"signed root|no longer match"):
            await AuditService(data_dir=data_dir).start()

    @pytest.mark.allow_blocking
    @pytest.mark.parametrize("leaf_file", [False, True], ids=["store", "leaf-file"])
    async def test_stored_leaf_changed_below_kept_nodes_fails_the_proof(
        self, data_dir: Path, make_event: EventFactory, leaf_file: bool
    ) -> None:
        """Start-up no longer reads the leaves the kept nodes cover; a stored leaf hash that
        was changed there is found by the first proof that reads it: never a wrong proof.
        Without the leaf file that is any proof in its chunk; with it (its chunk checked
        against the tree), the changed entry's own proof, while its neighbour's is right."""
        async with AuditService(data_dir=data_dir) as svc:
            await _fill(svc, make_event, 3 * CHUNK)
            await svc.publish()
        leaves = _stored_leaves(data_dir)
        _tamper(data_dir, "UPDATE audit_entries SET leaf_hash = ? WHERE idx = 5", (bytes(32),))
        if not leaf_file:
            (data_dir / LEAVES_FILE).unlink()
        async with AuditService(data_dir=data_dir) as svc:
            if leaf_file:
                entry = await svc.entry(4)
                assert entry is not None
                assert list(entry.inclusion) == _path(4, leaves)
            else:
                with pytest.raises(LogIntegrityError, match="no longer match"):
                    await svc.entry(4)
            with pytest.raises(LogIntegrityError, match="no longer match"):
                await svc.entry(5)

    @pytest.mark.allow_blocking
    async def test_shorter_log_is_refused(
        self, data_dir: Path, make_event: EventFactory
    ) -> None:
        """Kept nodes never stand in for deleted entries."""
        async with AuditService(data_dir=data_dir) as svc:
            await _fill(svc, make_event, 3 * CHUNK)
            await svc.publish()
        conn = sqlite3.connect(data_dir / "audit.db")
        conn.execute("DROP TRIGGER IF EXISTS audit_entries_no_delete")
        conn.execute("DELETE FROM audit_entries WHERE idx >= ?", (2 * CHUNK,))
        conn.commit()
        conn.close()
        with pytest.raises(LogIntegrityError, match="entries are missing"):
            await AuditService(data_dir=data_dir).start()


def _tamper(data_dir: Path, sql: str, params: tuple[object, ...]) -> None:
    conn = sqlite3.connect(data_dir / "audit.db")
    try:
        conn.execute("DROP TRIGGER IF EXISTS audit_entries_no_update")
        conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def test_tree_from_chunk_nodes_is_the_tree_from_leaves() -> None:
    """A tree loaded from chunk nodes has every root and proof of the tree built leaf by leaf
    (given the chunks' leaves where a proof goes below them)."""
    leaves = [_h(bytes([i % 251, i // 251])) for i in range(11 * CHUNK + 5)]
    whole = MerkleTree(TREE_CHUNK_BITS)
    whole.extend(leaves)
    loaded = MerkleTree(TREE_CHUNK_BITS)
    loaded.load_chunk_nodes(whole.chunk_nodes(0, 11))
    loaded.extend(leaves[11 * CHUNK:])
    given = {c: loaded.chunk_levels(c, leaves[c * CHUNK:(c + 1) * CHUNK]) for c in range(11)}
    assert loaded.size == len(leaves)
    for size in (1, CHUNK, 3 * CHUNK + 1, 8 * CHUNK, len(leaves)):
        assert loaded.root(size, given) == _mth(leaves[:size])
        for i in (0, size // 2, size - 1):
            assert loaded.inclusion_proof(i, size, given) == _path(i, leaves[:size])
        assert loaded.consistency_proof(size, None, given) == _subproof(size, leaves, True)


def test_a_tree_grown_by_chunk_nodes_is_the_tree_grown_by_leaves() -> None:
    """``extend_chunks`` after leaves (and leaves after it) makes the tree the leaves make,
    and the right edge grown by ``Frontier.extend_subtrees`` hashes to the same root."""
    leaves = [_h(bytes([i % 251, i // 251])) for i in range(13 * CHUNK + 9)]
    whole = MerkleTree(TREE_CHUNK_BITS)
    whole.extend(leaves)
    grown = MerkleTree(TREE_CHUNK_BITS)
    grown.extend(leaves[:2 * CHUNK + 5])
    edge = grown.frontier()
    grown.extend(leaves[2 * CHUNK + 5:3 * CHUNK])
    edge.extend(leaves[2 * CHUNK + 5:3 * CHUNK])
    grown.extend_chunks(whole.chunk_nodes(3, 11))
    edge.extend_subtrees(whole.chunk_nodes(3, 11), TREE_CHUNK_BITS)
    assert edge.size == grown.size == 11 * CHUNK
    assert edge.root() == grown.root() == _mth(leaves[:11 * CHUNK])
    grown.extend(leaves[11 * CHUNK:])
    given = {c: grown.chunk_levels(c, leaves[c * CHUNK:(c + 1) * CHUNK]) for c in range(13)}
    for size in (CHUNK, 3 * CHUNK + 1, 11 * CHUNK, len(leaves)):
        assert grown.root(size, given) == _mth(leaves[:size])
        for i in {0, size // 3, size - 1}:
            assert grown.inclusion_proof(i, size, given) == _path(i, leaves[:size])
    with pytest.raises(ValueError, match="chunk boundary"):
        grown.extend_chunks(whole.chunk_nodes(0, 1))  # 9 leaves into a chunk
    with pytest.raises(ValueError, match="height"):
        grown.frontier().extend_subtrees(whole.chunk_nodes(0, 1), TREE_CHUNK_BITS)


class TestFollowingByKeptNodes:
    """A gateway beside a busy one on the same data folder takes the other's entries by the
    chunk nodes it keeps, checked against a signed checkpoint, not leaf hash by leaf hash."""

    # Commits of 7 proved entries each: a checkpoint every 7 entries.
    GROUP = 7

    async def _busy(self, busy: AuditService, make_event: EventFactory, n: int) -> None:
        for start in range(0, n, self.GROUP):
            await asyncio.gather(*(busy.append_proved(make_event(actor_id=f"b{start + i}"))
                                   for i in range(min(self.GROUP, n - start))))

    @pytest.mark.allow_blocking
    async def test_the_idle_one_reads_two_partial_chunks_and_proves_the_same(
        self, data_dir: Path, make_event: EventFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async with AuditService(data_dir=data_dir, checkpoint_interval_s=3600) as busy, \
                AuditService(data_dir=data_dir, checkpoint_interval_s=3600) as idle:
            await _fill(idle, make_event, 3)  # the idle one's tree ends inside a chunk
            await self._busy(busy, make_event, 10 * CHUNK + 5)
            await busy.publish()  # keeps the nodes and the leaf hashes of its tree
            reads = _count_leaf_reads(monkeypatch)
            await idle.publish(lazy=True)
            # The nodes file covers 10 chunks; the last checkpoint within them is at
            # 3 + 7 * 22 = 157 entries: the tree takes chunks 1 to 8 by their nodes.
            assert idle.tree_size == 157
            assert idle.skipped == 157 - 3
            followed = {f.name: f.samples for f in idle.metric_families()}
            assert [({}, 157 - 3)] == followed["ecert_audit_followed_by_nodes"]
            assert sum(end - start for start, end in reads if end is not None) == 13 + 13
            assert sorted(reads) == [(3, CHUNK), (9 * CHUNK, 157)]
            reads.clear()
            # Its own entry after them, and proofs of entries it took by their nodes, are
            # what RFC 6962 gives over the stored records.
            own = await idle.append_proved(make_event(actor_id="idle"))
            leaves = _stored_leaves(data_dir)
            size = len(leaves)
            assert own.index == size - 1
            assert own.tree_size == size
            assert list(own.inclusion) == _path(own.index, leaves)
            for i in (0, 2, 3, CHUNK, 5 * CHUNK + 1, 156, 157):
                entry = await idle.entry(i)
                assert entry is not None
                assert entry.tree_size == size
                assert list(entry.inclusion) == _path(i, leaves)
            assert await idle.consistency(157, size) == _subproof(157, leaves, True)

    @pytest.mark.allow_blocking
    async def test_a_changed_node_is_not_taken(
        self, data_dir: Path, make_event: EventFactory, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        async with AuditService(data_dir=data_dir, checkpoint_interval_s=3600) as busy, \
                AuditService(data_dir=data_dir, checkpoint_interval_s=3600) as idle:
            await _fill(idle, make_event, 3)
            await self._busy(busy, make_event, 10 * CHUNK + 5)
            await busy.publish()
            nodes = bytearray((data_dir / NODES_FILE).read_bytes())
            nodes[32 * (1 + 5) + 7] ^= 1  # chunk 5's node
            (data_dir / NODES_FILE).write_bytes(bytes(nodes))
            reads = _count_leaf_reads(monkeypatch)
            with caplog.at_level(logging.WARNING, logger="gateway.audit"):
                await idle.publish(lazy=True)
            assert idle.skipped == 0
            assert "does not hash to the checkpoint of 157 entries" in caplog.text
            leaves = _stored_leaves(data_dir)
            # It followed the stored leaf hashes instead, to the end of the log ...
            assert idle.tree_size == len(leaves) == 3 + 10 * CHUNK + 5
            assert (3, 3 + _CATCH_UP_SLICE) in reads
            # ... and wrote the node it has in place of the changed one.
            kept = (data_dir / NODES_FILE).read_bytes()
            assert kept[32 * 6:32 * 7] == _mth(leaves[5 * CHUNK:6 * CHUNK])
            own = await idle.append_proved(make_event(actor_id="idle"))
            assert list(own.inclusion) == _path(own.index, _stored_leaves(data_dir))

    @pytest.mark.allow_blocking
    async def test_a_full_publish_still_takes_every_entry(
        self, data_dir: Path, make_event: EventFactory
    ) -> None:
        """Outside the publisher's tick (an entry asked for, a checkpoint served, the last
        publish at stop) the tree takes the newest entries too, after the nodes."""
        async with AuditService(data_dir=data_dir, checkpoint_interval_s=3600) as busy, \
                AuditService(data_dir=data_dir, checkpoint_interval_s=3600) as idle:
            await self._busy(busy, make_event, 10 * CHUNK + 5)
            await busy.publish()
            await idle.publish()
            assert idle.skipped == 7 * 22  # the checkpoint of 154 entries: nodes up to there
            assert idle.tree_size == 10 * CHUNK + 5
            leaves = _stored_leaves(data_dir)
            entry = await idle.entry(len(leaves) - 1)
            assert entry is not None
            assert list(entry.inclusion) == _path(len(leaves) - 1, leaves)
