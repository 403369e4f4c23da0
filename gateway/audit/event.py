"""What the rest of the gateway hands to the audit log.

An ``AuditEvent`` carries what happened, in plain values. Personal data (holder
codes and names) travels in ``personal`` and is never stored raw: the audit log
turns it into keyed hashes and masks before the record is written.
"""

from __future__ import annotations

from binascii import b2a_base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

__all__ = [
    "LOG_RECEIPT_TYPE", "ActorKind", "AuditEvent", "AuditLog", "AuditUnavailableError",
    "EventType", "LoggedEntry", "ProvingAuditLog", "receipt_json",
]


class EventType(StrEnum):
    """Kinds of cross-province handling acts that are logged."""

    VERIFICATION = "verification"
    TRANSLATION = "translation"
    PARTNER_QUERY = "partner-query"
    OPERATOR_CHANGE = "operator-change"
    IDENTITY_CHANGE = "identity-change"
    LICENCE_IMPORT = "licence-import"
    TRUST_LIST_LOADED = "trust-list-loaded"
    CASE = "case"
    """A licence-requirements check of a matter or 一件事 (gateway.cases); the verifications
    it caused carry its ``details.case_id``."""
    AUDIT_PRUNE = "audit-prune"


class ActorKind(StrEnum):
    """Who asked."""

    LOCAL_SYSTEM = "local-system"
    PARTNER = "partner"
    OPERATOR = "operator"
    CLI = "cli"
    GATEWAY = "gateway"


@dataclass(kw_only=True, slots=True)
class AuditEvent:
    """One handling act, as the service that performed it saw it.

    Not frozen, but never changed once handed to the log: every answer builds one, and a
    frozen dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost 2.4 us
    here against 0.7 us.
    """

    event_type: EventType
    actor_kind: ActorKind
    actor_id: str
    at: datetime
    """When the act was received (aware, UTC)."""
    source_addr: str | None = None
    outcome: str
    """The indication for verifications; ``ok``, ``refused`` or ``error`` otherwise."""
    sub_indication: str | None = None
    cn_status: int | None = None
    use_cause: str | None = None
    matter_before: Mapping[str, str] | None = None
    """The matter as the caller named it: ``{"region": ..., "code": ...}``."""
    matters_after: tuple[Mapping[str, str], ...] = ()
    """The matter(s) it was mapped to."""
    licence_identifier: str | None = None
    licence_type: str | None = None
    issuer_region: str | None = None
    partner_region: str | None = None
    trust_list_version: int | None = None
    cached: bool = False
    latency_ms: float | None = None
    request_id: str | None = None
    personal: Mapping[str, str] = field(default_factory=dict)
    """Raw personal data (``holder_code``, ``holder_name``, ...); pseudonymised before storage."""
    details: Mapping[str, object] = field(default_factory=dict)
    """Other non-personal facts (credential digest, status list used, change id ...)."""


class AuditUnavailableError(Exception):
    """The audit log could not make a record durable; the request must fail."""


class AuditLog(Protocol):
    """The port every service writes through."""

    async def append(self, event: AuditEvent) -> int:
        """Make the event's record durable and return its leaf index.

        Returns only after the record is durable; raises ``AuditUnavailableError``
        when it cannot be made so.
        """
        ...


@dataclass(frozen=True, slots=True)
class LoggedEntry:
    """A durable record with the proof that it is in the log (a log-backed receipt).

    ``leaf`` is the exact record bytes the tree hashes; ``inclusion`` is the
    RFC 6962 audit path of leaf ``index`` in the tree of ``tree_size`` entries
    that ``checkpoint`` (a C2SP signed note) names.
    """

    index: int
    leaf: bytes
    tree_size: int
    inclusion: tuple[bytes, ...]
    checkpoint: str
    rendered: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    """``to_json()`` made beforehand (by the audit service, while the commit waits for
    the disk), or None."""

    def to_json(self) -> dict[str, Any]:
        """The receipt as an answer carries it (docs/receipts.md); binary values are
        standard base64 with padding, as in the audit API."""
        if self.rendered is not None:
            return dict(self.rendered)
        return receipt_json(self.index, self.leaf, self.tree_size, self.inclusion,
                            self.checkpoint)


def receipt_json(index: int, leaf: bytes, tree_size: int, inclusion: Sequence[bytes],
                 checkpoint: str) -> dict[str, Any]:
    """A log-backed receipt as an answer carries it (``LoggedEntry.to_json``)."""
    return {"type": LOG_RECEIPT_TYPE, "index": index, "tree_size": tree_size,
            "leaf": b2a_base64(leaf, newline=False).decode("ascii"),
            "inclusion": [_node_base64(h) for h in inclusion],
            "checkpoint": checkpoint}


_NODE_TEXT: dict[bytes, str] = {}
"""Base64 of recent proof hashes: the receipts of one batch share most of their path, and
the left side of every recent path stays the same for long (it changes as the tree grows)."""
_NODE_TEXT_MAX = 8192


def _node_base64(node: bytes) -> str:
    text = _NODE_TEXT.get(node)
    if text is None:
        if len(_NODE_TEXT) >= _NODE_TEXT_MAX:
            _NODE_TEXT.clear()
        text = _NODE_TEXT[node] = b2a_base64(node, newline=False).decode("ascii")
    return text


LOG_RECEIPT_TYPE = "ecert-log-receipt"
"""The ``type`` member of a log-backed receipt."""


class ProvingAuditLog(AuditLog, Protocol):
    """An audit log that also proves, once a record is durable, that it is logged."""

    async def append_proved(self, event: AuditEvent) -> LoggedEntry:
        """Like ``append``, returning the record's bytes, its inclusion proof and the
        signed tree head of the batch it was committed in."""
        ...
