"""Test doubles for ports where the real component is beside the point."""

from __future__ import annotations

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit._tree import MerkleTree
from gateway.audit.event import AuditEvent, AuditUnavailableError, EventType, LoggedEntry
from trust.merkle import leaf_hash
from trust.note import Checkpoint, NoteSigner

__all__ = ["MemoryAudit"]


class MemoryAudit:
    """An AuditLog that keeps events in a list, and can be told to fail.

    It also proves what it keeps (``append_proved``), as a log-backed receipt
    needs: a leaf of the event's fields, a tree in memory, a checkpoint signed
    with a key of its own (``signer``).
    """

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.failing = False
        self.signer = NoteSigner("memory.ecert-gateway/audit", Ed25519PrivateKey.generate())
        self._tree = MerkleTree()

    async def append(self, event: AuditEvent) -> int:
        """Record the event, or raise as an unavailable store would."""
        if self.failing:
            raise AuditUnavailableError("audit store unavailable (test double)")
        self.events.append(event)
        self._tree.append(leaf_hash(self._leaf(event)))
        return len(self.events) - 1

    async def append_proved(self, event: AuditEvent) -> LoggedEntry:
        """Record the event and prove it in the tree of every event so far."""
        index = await self.append(event)
        size = self._tree.size
        note = Checkpoint(self.signer.name, size, self._tree.root()).sign(self.signer)
        return LoggedEntry(index, self._leaf(event), size,
                           tuple(self._tree.inclusion_proof(index, size)), note)

    @staticmethod
    def _leaf(event: AuditEvent) -> bytes:
        return orjson.dumps({"event_type": str(event.event_type), "outcome": event.outcome,
                             "time": event.at.isoformat(), "details": dict(event.details)},
                            option=orjson.OPT_SORT_KEYS, default=str)

    def of(self, event_type: EventType) -> list[AuditEvent]:
        """The events of one type (start-up writes others, such as the trust list loaded)."""
        return [e for e in self.events if e.event_type is event_type]
