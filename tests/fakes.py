"""Test doubles for ports where the real component is beside the point."""

from __future__ import annotations

from gateway.audit.event import AuditEvent, AuditUnavailableError, EventType

__all__ = ["MemoryAudit"]


class MemoryAudit:
    """An AuditLog that keeps events in a list, and can be told to fail."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.failing = False

    async def append(self, event: AuditEvent) -> int:
        """Record the event, or raise as an unavailable store would."""
        if self.failing:
            raise AuditUnavailableError("audit store unavailable (test double)")
        self.events.append(event)
        return len(self.events) - 1

    def of(self, event_type: EventType) -> list[AuditEvent]:
        """The events of one type (start-up writes others, such as the trust list loaded)."""
        return [e for e in self.events if e.event_type is event_type]
