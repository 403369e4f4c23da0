"""Retention: pruning record bodies older than their kind's policy, under dual control.

One workflow for the admin API and the CLI (``AuditPruner``). An auditor
*proposes* a prune: the policy (``[audit.retention]``, days per record kind) read
at that moment gives each kind a cut-off time, optionally an earlier ``before``,
and the log's size then is its end index; entries appended later are never
covered. A *different* auditor *approves* it; the approval re-checks the cut-offs
against the policy of that moment (never newer than it), and only then the
prune runs: its grants (``audit_prune_grants``) are kept and the record bytes of
exactly the entries they cover are emptied. Leaf hashes, every other column and
every checkpoint stay, so the tree, its proofs and ``audit verify`` still hold.

Every step is an ``audit-prune`` record written before the step takes effect
(``details.action``: ``prune-proposed``, ``prune-approved``, then ``pruned`` with
the count), refusals as ``prune-refused`` (best effort). A proposal's id is the
log index of its ``prune-proposed`` record; it is approved when grants name it.

Errors::

    * PruneError        a step is refused (``refusal``: not-found, own-proposal,
                        not-pending, policy, invalid)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

import orjson

from gateway.audit._store import AuditStore, PruneGrant, RecordFilter
from gateway.audit.event import ActorKind, AuditEvent, AuditLog, EventType

__all__ = ["AuditPruner", "PruneError", "PruneOutcome", "PruneProposal", "PruneRefusal"]

_log = logging.getLogger("gateway.audit.prune")

T = TypeVar("T")

DAY_MS = 86_400_000


class PruneRefusal(StrEnum):
    """Why a prune step is refused."""

    NOT_FOUND = "not-found"
    OWN_PROPOSAL = "own-proposal"
    NOT_PENDING = "not-pending"
    POLICY = "policy"
    INVALID = "invalid"


class PruneError(Exception):
    """A prune step was refused; ``refusal`` says why."""

    def __init__(self, refusal: PruneRefusal, message: str) -> None:
        super().__init__(message)
        self.refusal = refusal


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


@dataclass(frozen=True, slots=True)
class PruneProposal:
    """A proposed prune, as its ``prune-proposed`` record states it."""

    id: int
    """The log index of the proposal's record."""
    proposer: str
    proposed_at_ms: int
    end_index: int
    """Entries from this index on are never covered."""
    cutoff_ms: Mapping[str, int]
    """Per record kind: entries older than this (their ``time``) are covered."""
    retention_days: Mapping[str, int]
    """The policy the cut-offs were derived from."""
    entries: Mapping[str, int]
    """Per kind, how many records the proposal covered when it was made."""
    approval: int | None = None
    """The log index of the approval's record, once approved."""
    approver: str | None = None
    pruned: int | None = None
    """Records emptied, once the prune ran."""

    @property
    def status(self) -> str:
        """``pending``, ``approved`` (its prune ran or is running) or ``pruned``."""
        if self.approval is None:
            return "pending"
        return "approved" if self.pruned is None else "pruned"

    def grants(self, approval: int, now_ms: int) -> list[PruneGrant]:
        """What this proposal lets a prune empty, one grant per record kind."""
        return [PruneGrant(self.id, kind, self.end_index, cutoff, approval, now_ms)
                for kind, cutoff in sorted(self.cutoff_ms.items())]

    def to_json(self) -> dict[str, Any]:
        """The proposal as the API and the CLI show it."""
        return {
            "id": self.id, "status": self.status, "proposer": self.proposer,
            "proposed_at": _iso(self.proposed_at_ms), "end_index": self.end_index,
            "cutoffs": {kind: _iso(ms) for kind, ms in sorted(self.cutoff_ms.items())},
            "retention_days": dict(sorted(self.retention_days.items())),
            "entries": dict(sorted(self.entries.items())),
            "approval": self.approval, "approver": self.approver, "pruned": self.pruned,
        }


@dataclass(frozen=True, slots=True)
class PruneOutcome:
    """An approved proposal and what its prune emptied."""

    proposal: PruneProposal
    pruned: int
    counts: Mapping[str, int] = field(default_factory=dict)


def _parsed(raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """A prune record and its details (empty when pruned, or not a prune record)."""
    if not raw:
        return {}, {}
    record = orjson.loads(raw)
    if not isinstance(record, dict) or record.get("event_type") != EventType.AUDIT_PRUNE:
        return {}, {}
    details = record.get("details")
    return record, details if isinstance(details, dict) else {}


def _proposed(index: int, record: Mapping[str, Any], details: Mapping[str, Any]
              ) -> PruneProposal:
    return PruneProposal(
        id=index, proposer=str(record.get("actor_id")),
        proposed_at_ms=int(details["proposed_at_ms"]), end_index=int(details["end_index"]),
        cutoff_ms={str(k): int(v) for k, v in details["cutoff_ms"].items()},
        retention_days={str(k): int(v) for k, v in details["retention_days"].items()},
        entries={str(k): int(v) for k, v in details["entries"].items()})


def _one_proposal(store: AuditStore, proposal_id: int) -> PruneProposal | None:
    """One proposal, read by its index (no scan of the log): its record, its grants, the
    approval's record and the ``pruned`` record that follows it."""
    found = store.entry(proposal_id)
    record, details = _parsed(found[0]) if found is not None else ({}, {})
    if details.get("action") != "prune-proposed":
        return None
    proposal = _proposed(proposal_id, record, details)
    approval = next((g.approval_idx for g in store.grants() if g.proposal_idx == proposal_id),
                    None)
    if approval is None:
        return proposal
    approved = store.entry(approval)
    approver = _parsed(approved[0])[0].get("actor_id") if approved is not None else None
    pruned = None
    after = RecordFilter(event_type=EventType.AUDIT_PRUNE.value, after_index=approval, limit=50)
    for _, raw in store.query(after):
        _, later = _parsed(raw)
        if later.get("action") == "pruned" and later.get("proposal") == proposal_id:
            pruned = int(later["pruned"])
            break
    return PruneProposal(
        id=proposal.id, proposer=proposal.proposer, proposed_at_ms=proposal.proposed_at_ms,
        end_index=proposal.end_index, cutoff_ms=proposal.cutoff_ms,
        retention_days=proposal.retention_days, entries=proposal.entries, approval=approval,
        approver=None if approver is None else str(approver), pruned=pruned)


def _proposals(store: AuditStore) -> dict[int, PruneProposal]:
    """Every proposal the log still holds, with its approval and result."""
    found: dict[int, PruneProposal] = {}
    approvals: dict[int, tuple[int, str]] = {}
    results: dict[int, int] = {}
    flt = RecordFilter(event_type=EventType.AUDIT_PRUNE.value, limit=1000)
    while True:
        rows = store.query(flt)
        for index, raw in rows:
            record, details = _parsed(raw)  # a prune record pruned in its turn: nothing
            action = details.get("action")
            if action == "prune-proposed":
                found[index] = _proposed(index, record, details)
            elif action == "prune-approved":
                approvals[int(details["proposal"])] = (index, str(record.get("actor_id")))
            elif action == "pruned":
                results[int(details["proposal"])] = int(details["pruned"])
        if len(rows) < flt.limit:
            break
        flt = RecordFilter(event_type=flt.event_type, limit=flt.limit, after_index=rows[-1][0])
    granted = {g.proposal_idx: g.approval_idx for g in store.grants()}
    for pid, proposal in list(found.items()):
        approval = granted.get(pid)
        if approval is None:
            continue
        approver = approvals.get(pid, (approval, None))[1]
        found[pid] = PruneProposal(
            id=pid, proposer=proposal.proposer, proposed_at_ms=proposal.proposed_at_ms,
            end_index=proposal.end_index, cutoff_ms=proposal.cutoff_ms,
            retention_days=proposal.retention_days, entries=proposal.entries,
            approval=approval, approver=approver, pruned=results.get(pid))
    return found


def _counts(store: AuditStore, end: int, cutoffs: Mapping[str, int]) -> dict[str, int]:
    return {kind: store.prunable(PruneGrant(-1, kind, end, cutoff, -1, 0))
            for kind, cutoff in sorted(cutoffs.items())}


def _too_new(cutoffs: Mapping[str, int], retention: Mapping[str, int], now_ms: int) -> str | None:
    """Why some cut-off would prune records newer than the policy allows, or None."""
    for kind, cutoff in sorted(cutoffs.items()):
        days = retention.get(kind)
        if days is None:
            return f"{kind} is not a record kind"
        allowed = now_ms - days * DAY_MS
        if cutoff > allowed:
            return (f"{kind} records are kept {days} days: a cut-off of {_iso(cutoff)} would"
                    f" prune records newer than that (the latest allowed is {_iso(allowed)})")
    return None


def _cutoffs(chosen: Sequence[str], retention: Mapping[str, int], now_ms: int,
             before: datetime | None) -> dict[str, int]:
    """Each chosen kind's cut-off: its policy's, or ``before`` if no kind's policy forbids it."""
    unknown = [k for k in chosen if k not in retention]
    if unknown:
        raise PruneError(PruneRefusal.INVALID, f"unknown record kind {unknown[0]!r} "
                         f"(kinds: {', '.join(sorted(retention))})")
    if before is None:
        return {k: now_ms - retention[k] * DAY_MS for k in chosen}
    if before.tzinfo is None:
        raise PruneError(PruneRefusal.INVALID, "before needs a time zone")
    cutoffs = dict.fromkeys(chosen, int(before.timestamp() * 1000))
    reason = _too_new(cutoffs, retention, now_ms)
    if reason is not None:
        raise PruneError(PruneRefusal.POLICY, reason)
    return cutoffs


def _approvable(proposal: PruneProposal, actor: str, retention: Mapping[str, int],
                now_ms: int) -> PruneProposal:
    """``proposal`` if ``actor`` may approve it now: pending, another's, within the policy."""
    if proposal.approval is not None:
        raise PruneError(PruneRefusal.NOT_PENDING,
                         f"prune proposal {proposal.id} is already approved")
    if proposal.proposer == actor:
        raise PruneError(PruneRefusal.OWN_PROPOSAL,
                         "a prune must be approved by an auditor other than its proposer")
    reason = _too_new(proposal.cutoff_ms, retention, now_ms)
    if reason is not None:
        raise PruneError(PruneRefusal.POLICY, reason)
    return proposal


class AuditPruner:
    """The prune workflow (propose, approve and run) over one audit log."""

    def __init__(self, *, audit: AuditLog, open_store: Callable[[], AuditStore],
                 retention: Mapping[str, int], clock: Callable[[], datetime],
                 via_cli: bool = False) -> None:
        self._audit = audit
        self._open_store = open_store
        self._retention = dict(retention)
        self._clock = clock
        self._via_cli = via_cli

    async def _store(self, fn: Callable[[AuditStore], T]) -> T:
        """Run ``fn`` on a store of its own, on a worker thread (never on the loop)."""

        def run() -> T:
            store = self._open_store()
            try:
                return fn(store)
            finally:
                store.close()

        return await asyncio.to_thread(run)

    async def refuse_credential(self, actor: str, reason: str) -> None:
        """Audit a refused credential (the CLI's; best effort)."""
        await self._refuse(actor, self._clock(), PruneError(PruneRefusal.INVALID, reason))

    def _event(self, action: str, actor: str, at: datetime, outcome: str = "ok",
               **details: Any) -> AuditEvent:
        return AuditEvent(event_type=EventType.AUDIT_PRUNE,
                          actor_kind=ActorKind.CLI if self._via_cli else ActorKind.OPERATOR,
                          actor_id=actor, at=at, outcome=outcome,
                          details={"action": action, **details})

    async def _refuse(self, actor: str, at: datetime, exc: PruneError,
                      proposal: int | None = None) -> PruneError:
        """Audit a refusal (best effort: the refusal stands when the log cannot take it)."""
        try:
            await self._audit.append(self._event("prune-refused", actor, at, "refused",
                                                 refusal=exc.refusal.value, reason=str(exc),
                                                 proposal=proposal))
        except Exception as audit_exc:
            _log.warning("prune refusal not audited: %s", audit_exc)
        return exc

    async def proposals(self) -> list[PruneProposal]:
        """Every proposal the log holds, oldest first (reads every ``audit-prune`` record:
        a scan of the log, which has no index by kind)."""
        found = await self._store(_proposals)
        return [found[k] for k in sorted(found)]

    async def proposal(self, proposal_id: int) -> PruneProposal:
        """One proposal (``PruneError`` not-found)."""
        found = await self._store(lambda store: _one_proposal(store, proposal_id))
        if found is None:
            raise PruneError(PruneRefusal.NOT_FOUND, f"no prune proposal {proposal_id}")
        return found

    async def propose(self, actor: str, *, before: datetime | None = None,
                      kinds: Sequence[str] | None = None,
                      through: int | None = None) -> PruneProposal:
        """Propose pruning, per kind, the records older than the policy (or than ``before``,
        which may not be later than any chosen kind's policy allows), up to the log's
        current size (or up to and including ``through``)."""
        at = self._clock()
        now_ms = int(at.timestamp() * 1000)
        chosen = sorted(set(kinds)) if kinds else sorted(self._retention)
        try:
            cutoffs = _cutoffs(chosen, self._retention, now_ms, before)
        except PruneError as exc:
            raise await self._refuse(actor, at, exc) from None

        def plan(store: AuditStore) -> tuple[int, dict[str, int]]:
            size = store.size()
            end = size if through is None else through + 1
            if through is not None and not 0 <= through < size:
                raise PruneError(PruneRefusal.INVALID,
                                 f"through must name an entry of the log (0 to {size - 1})")
            return end, _counts(store, end, cutoffs)

        try:
            end, entries = await self._store(plan)
        except PruneError as exc:
            raise await self._refuse(actor, at, exc) from None
        details: dict[str, Any] = {"proposed_at_ms": now_ms, "end_index": end, "cutoff_ms": cutoffs,
                   "retention_days": {k: self._retention[k] for k in chosen},
                   "entries": entries}
        index = await self._audit.append(self._event("prune-proposed", actor, at, **details))
        return PruneProposal(id=index, proposer=actor, proposed_at_ms=now_ms, end_index=end,
                             cutoff_ms=cutoffs,
                             retention_days={k: self._retention[k] for k in chosen},
                             entries=entries)

    async def approve(self, actor: str, proposal_id: int) -> PruneOutcome:
        """Approve another auditor's pending proposal and run its prune.

        Refused: an unknown proposal, one's own, one already approved, or one whose
        cut-offs the policy of now no longer allows (it was lengthened meanwhile).
        """
        at = self._clock()
        now_ms = int(at.timestamp() * 1000)
        try:
            proposal = _approvable(await self.proposal(proposal_id), actor, self._retention,
                                   now_ms)
        except PruneError as exc:
            raise await self._refuse(actor, at, exc, proposal_id) from None
        counts = await self._store(
            lambda store: _counts(store, proposal.end_index, proposal.cutoff_ms))
        # Audited before it takes effect: no approval record, no prune.
        approval = await self._audit.append(self._event(
            "prune-approved", actor, at, proposal=proposal_id, proposer=proposal.proposer,
            entries=counts))
        grants = proposal.grants(approval, now_ms)
        pruned = await self._store(lambda store: store.prune(grants))
        await self._audit.append(self._event("pruned", actor, self._clock(),
                                             proposal=proposal_id, approval=approval,
                                             pruned=pruned))
        done = PruneProposal(
            id=proposal.id, proposer=proposal.proposer, proposed_at_ms=proposal.proposed_at_ms,
            end_index=proposal.end_index, cutoff_ms=proposal.cutoff_ms,
            retention_days=proposal.retention_days, entries=proposal.entries,
            approval=approval, approver=actor, pruned=pruned)
        return PruneOutcome(done, pruned, counts)
