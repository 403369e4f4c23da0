"""The witness store on both engines: append-only, state advanced only through a judgement."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.audit.witness_store import (
    StoredCosignature,
    WitnessStore,
    WitnessStoreError,
    witness_database,
)
from gateway.infra.sql import StorageError
from mocks import MockLog, MockWitness
from trust.note import NoteVerifier
from trust.witness import AddCheckpoint, WitnessError, judge

pytestmark = pytest.mark.allow_blocking


def _exercise(store: WitnessStore) -> None:
    for size, witness in ((5, "a"), (5, "b"), (9, "a")):
        store.add_cosignature(StoredCosignature(size, witness, f"line {witness} {size}\n",
                                                1_790_000_000, 1))
    store.add_cosignature(StoredCosignature(5, "a", "again\n", 0, 2))  # not kept twice
    store.add_submitted(5, "note 5\n", 1)
    assert [5] == store.witnessed_sizes(["a", "b", "c"], 2)
    assert [9, 5] == store.witnessed_sizes(["a"], 1)
    assert {"a": 9, "b": 5} == store.last_sizes()
    assert ["line a 5\n", "line b 5\n"] == [c.line for c in store.cosignatures(5)]
    assert "note 5\n" == store.submitted(5)
    assert [5, 9] == store.cosigned_sizes()

    log = MockLog("p.example/log", seed=4)
    for i in range(3):
        log.append(bytes([i]))
    logs = {log.origin: NoteVerifier.from_vkey(log.vkey)}
    request = AddCheckpoint(0, (), log.checkpoint())

    def decide(state: dict[str, tuple[int, bytes]]) -> tuple[int, bytes, str]:
        checkpoint = judge(request, logs, state)
        return checkpoint.size, checkpoint.root_hash, request.note

    store.advance(log.origin, decide, 1)
    with pytest.raises(WitnessError) as stale:  # the state moved: the same request is stale
        store.advance(log.origin, decide, 2)
    assert (409, 3) == (stale.value.status, stale.value.known_size)
    assert 3 == store.latest_cosigned()[log.origin][0]


class TestWitnessStore:
    """Cosignatures and Huzhou's witness state, kept and read back."""

    def test_sqlite(self, tmp_path: Path) -> None:
        """On SQLite: kept and read; an UPDATE is refused by the trigger."""
        store = WitnessStore(witness_database(tmp_path, None))
        try:
            _exercise(store)
            with pytest.raises((StorageError, WitnessStoreError)):
                store._conn.execute("UPDATE audit_cosignatures SET line = 'x'")
        finally:
            store.close()

    @pytest.mark.postgres
    def test_postgres(self, tmp_path: Path, postgres_dsn: str) -> None:
        """On PostgreSQL: the same, and a DELETE is refused."""
        store = WitnessStore(witness_database(tmp_path, postgres_dsn))
        try:
            _exercise(store)
            with pytest.raises((StorageError, WitnessStoreError)):
                store._conn.execute("DELETE FROM witness_cosigned")
        finally:
            store.close()


def test_mock_witness_key_is_seeded() -> None:
    """A seeded mock witness has the same key every run (the demo's config relies on it)."""
    assert MockWitness("w/x", seed=3).vkey == MockWitness("w/x", seed=3).vkey
