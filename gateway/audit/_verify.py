"""Offline verification of a whole audit log, as ``audit verify`` runs it.

Every record's leaf hash is recomputed from its stored bytes and the tree is
rebuilt from those hashes alone; every kept checkpoint (and any the caller
holds from elsewhere) must carry a valid signature by the log's key and name
the root the rebuilt tree has at its size. The first failure is reported with
the index it concerns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.audit._store import AuditStore, StoredCheckpoint
from gateway.audit._tree import MerkleTree
from trust.merkle import leaf_hash
from trust.note import NoteError, NoteVerifier, open_checkpoint

__all__ = ["VerifyReport", "verify_log"]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What verification found."""

    ok: bool
    entries: int
    checkpoints: int
    reason: str = ""
    index: int | None = None
    """The first index that does not match, when one can be named."""


def verify_log(
    store: AuditStore,
    verifier: NoteVerifier,
    *,
    origin: str | None = None,
    extra_checkpoints: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Recompute the tree from stored records and check every checkpoint against it."""
    total = store.size()
    tree = MerkleTree()
    expected = 0
    for index, record, stored_leaf in store.iter_entries():
        if index != expected:
            return VerifyReport(False, expected, 0, f"entry {expected} is missing", expected)
        computed = leaf_hash(record)
        if computed != stored_leaf:
            return VerifyReport(
                False, index, 0, f"entry {index}: record bytes do not hash to its stored leaf hash",
                index,
            )  # fmt: skip
        tree.append(computed)
        expected += 1  # noqa: SIM113 - the count is checked against each stored index
        if progress is not None and (expected % 10_000 == 0 or expected == total):
            progress(expected, total)

    notes: list[tuple[str, StoredCheckpoint | None]] = [(cp.note, cp) for cp in store.checkpoints()]
    notes += [(note, None) for note in extra_checkpoints]
    parsed = []
    for note, row in notes:
        where = f"checkpoint {row.size}" if row is not None else "given checkpoint"
        try:
            body = open_checkpoint(note, verifier, origin=origin)
        except NoteError as exc:
            return VerifyReport(False, tree.size, 0, f"{where}: {exc}")
        if row is not None and (body.size != row.size or body.root_hash != row.root):
            return VerifyReport(False, tree.size, 0, f"{where}: row does not match its signed note")
        parsed.append(body)
    parsed.sort(key=lambda body: body.size)
    good = 0
    for checked, body in enumerate(parsed):
        if body.size > tree.size:
            return VerifyReport(
                False, tree.size, checked,
                f"entries {tree.size}..{body.size - 1} are missing: a checkpoint of"
                f" {body.size} entries was signed but the log holds {tree.size}",
                tree.size,
            )  # fmt: skip
        if tree.root(body.size) != body.root_hash:
            return VerifyReport(
                False, tree.size, checked,
                f"the first {body.size} entries do not hash to the signed root; the first"
                f" changed entry is at or after index {good} (last matching checkpoint)",
                good,
            )  # fmt: skip
        good = body.size
    return VerifyReport(True, tree.size, len(parsed))
