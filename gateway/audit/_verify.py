"""Offline verification of a whole audit log, as ``audit verify`` runs it.

Every record's leaf hash is recomputed from its stored bytes and the tree is
rebuilt from those hashes alone (an entry whose record an approved prune emptied
counts with its kept leaf hash, once a kept prune grant is found to cover it);
every kept checkpoint (and any the caller holds from elsewhere) must carry a
valid signature by the log's key and name the root the rebuilt tree has at its
size. The first failure is reported with the index it concerns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

import orjson

from gateway.audit._record import record_matter, record_partner, record_time_ms
from gateway.audit._store import AuditStore, PruneGrant, StoredCheckpoint
from gateway.audit._tree import Frontier
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
    pruned: int = 0
    """Entries whose record was pruned: counted by their kept leaf hash."""


def _columns(record: bytes) -> tuple[Any, ...]:
    """The query columns a record's row must hold (as the writer derives them)."""
    try:
        parsed = orjson.loads(record)
    except orjson.JSONDecodeError:
        return ()
    if not isinstance(parsed, dict):
        return ()
    try:
        return (str(parsed["event_id"]), record_time_ms(parsed), str(parsed["event_type"]),
                str(parsed["outcome"]), record_partner(parsed), record_matter(parsed))
    except (KeyError, TypeError, ValueError):
        return ()


def verify_log(
    store: AuditStore,
    verifier: NoteVerifier,
    *,
    origin: str | None = None,
    extra_checkpoints: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Recompute the tree from stored records and check every checkpoint against it.

    One pass over the table, in index order: each record's leaf hash and query columns
    are derived again and compared, the leaf is added to the tree's right edge
    (``Frontier``: O(log n) hashes of memory), and each checkpoint is compared with the
    root when the pass reaches its size. Failures are reported as a pass over the entries
    first, then over the checkpoints, would find them: a bad entry first, then a note that
    does not open, then the smallest checkpoint whose root differs or whose entries are
    missing.
    """
    total = store.size()
    notes: list[tuple[str, StoredCheckpoint | None]] = [(cp.note, cp) for cp in store.checkpoints()]
    notes += [(note, None) for note in extra_checkpoints]
    parsed = []
    bad_note = ""
    for note, row in notes:
        where = f"checkpoint {row.size}" if row is not None else "given checkpoint"
        try:
            body = open_checkpoint(note, verifier, origin=origin)
        except NoteError as exc:
            bad_note = bad_note or f"{where}: {exc}"
            continue
        if row is not None and (body.size != row.size or body.root_hash != row.root):
            bad_note = bad_note or f"{where}: row does not match its signed note"
            continue
        parsed.append(body)
    parsed.sort(key=lambda body: body.size)

    tree = Frontier()
    due = 0  # the next checkpoint to compare, by size
    good = 0  # the size of the last one that matched
    mismatch: int | None = None  # the first that did not

    def compare() -> None:
        nonlocal due, good, mismatch
        while due < len(parsed) and parsed[due].size == tree.size:
            if mismatch is None:
                if tree.root() == parsed[due].root_hash:
                    good = tree.size
                else:
                    mismatch = due
            due += 1

    compare()
    expected = 0
    # The query columns (time, partner, matter, ...) sit beside the hashed record, outside
    # the tree; a forged column could hide a record from a filtered query, so each row's
    # columns are derived again from its record and compared.
    grants = store.grants()
    pruned = 0
    for index, raw, stored_leaf, event_id, ts_ms, *columns in store.iter_rows():
        if index != expected:
            return VerifyReport(False, expected, 0, f"entry {expected} is missing", expected)
        record = bytes(raw)
        if not record:
            # Pruned: the body is gone, so its stored leaf hash stands in for it; only a
            # kept grant (an approved prune) may have emptied it, and only within its reach.
            if not any(g.covers(index, str(columns[0]), int(ts_ms)) for g in grants):
                return VerifyReport(
                    False, index, 0, f"entry {index}: its record is empty but no approved"
                    " prune covers it", index)
            computed = bytes(stored_leaf)
            pruned += 1
        else:
            computed = sha256(b"\x00" + record).digest()  # trust.merkle.leaf_hash
            if computed != stored_leaf:
                return VerifyReport(
                    False, index, 0,
                    f"entry {index}: record bytes do not hash to its stored leaf hash", index,
                )  # fmt: skip
            if (str(event_id), int(ts_ms), *columns) != _columns(record):
                return VerifyReport(
                    False, index, 0, f"entry {index}: query columns do not match its record",
                    index,
                )  # fmt: skip
        tree.append(computed)
        expected += 1  # noqa: SIM113 - the count is checked against each stored index
        if due < len(parsed) and parsed[due].size == expected:
            compare()
        if progress is not None and (expected % 10_000 == 0 or expected == total):
            progress(expected, total)

    if bad_note:
        return VerifyReport(False, tree.size, 0, bad_note)
    if mismatch is not None:
        return VerifyReport(
            False, tree.size, mismatch,
            f"the first {parsed[mismatch].size} entries do not hash to the signed root; the"
            f" first changed entry is at or after index {good} (last matching checkpoint)",
            good,
        )  # fmt: skip
    if due < len(parsed):
        return VerifyReport(
            False, tree.size, due,
            f"entries {tree.size}..{parsed[due].size - 1} are missing: a checkpoint of"
            f" {parsed[due].size} entries was signed but the log holds {tree.size}",
            tree.size,
        )  # fmt: skip
    approvals = _unapproved(store, grants)
    if approvals is not None:
        return VerifyReport(False, tree.size, len(parsed), approvals)
    return VerifyReport(True, tree.size, len(parsed), pruned=pruned)


def _unapproved(store: AuditStore, grants: Sequence[PruneGrant]) -> str | None:
    """Why a kept grant is not backed by its approval record, or None when all are: a grant
    names the log entry of its approval, which must be an ``audit-prune`` record (unless
    that record was itself pruned later) approving that proposal."""
    for grant in grants:
        found = store.entry(grant.approval_idx)
        if found is None:
            return (f"prune grant of proposal {grant.proposal_idx}: its approval entry"
                    f" {grant.approval_idx} is missing")
        record, _ = found
        if not record:
            continue
        try:
            parsed = orjson.loads(record)
            details = parsed.get("details") or {}
            ok = (parsed.get("event_type") == "audit-prune"
                  and details.get("action") == "prune-approved"
                  and details.get("proposal") == grant.proposal_idx)
        except (orjson.JSONDecodeError, AttributeError):
            ok = False
        if not ok:
            return (f"prune grant of proposal {grant.proposal_idx}: entry"
                    f" {grant.approval_idx} is not its approval")
        reason = _unproposed(store, grant)
        if reason is not None:
            return reason
    return None


def _unproposed(store: AuditStore, grant: PruneGrant) -> str | None:
    """Why a grant reaches further than its proposal said, or None: same kind, cut-off and
    end index as the ``prune-proposed`` record (unless that record was pruned since)."""
    found = store.entry(grant.proposal_idx)
    where = f"prune grant of proposal {grant.proposal_idx} ({grant.event_type})"
    if found is None:
        return f"{where}: the proposal entry is missing"
    if not found[0]:
        return None
    try:
        details = orjson.loads(found[0]).get("details") or {}
        ok = (details.get("action") == "prune-proposed"
              and details.get("end_index") == grant.end_idx
              and (details.get("cutoff_ms") or {}).get(grant.event_type) == grant.cutoff_ms)
    except (orjson.JSONDecodeError, AttributeError):
        ok = False
    return None if ok else f"{where}: it does not match what was proposed"
