"""The tamper-evident audit log: records, Merkle tree, signed checkpoints.

Facade of the audit package. The gateway builds one ``AuditService`` per
process (``audit_ctx`` in ``app.cleanup_ctx``) and writes through its
``append``; the CLI appends with ``append_cli_event`` and checks the log with
``verify_log``. ``gateway.audit.routes`` adds the HTTP endpoints.

Errors::

    * AuditUnavailableError     a record could not be made durable (the request fails)
      x LogIntegrityError       the stored log contradicts its signed checkpoints or keys
    * AuditStoreError           the store failed (wrapped at the service boundary)
    * ReceiptError              a log-backed receipt is malformed or does not verify
    * PruneError                a prune step is refused (``refusal`` says why)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from gateway.audit._prune import (
    AuditPruner,
    PruneError,
    PruneOutcome,
    PruneProposal,
    PruneRefusal,
)
from gateway.audit._receipt import CheckedReceipt, ReceiptError, check_receipt, receipts_in
from gateway.audit._record import mask
from gateway.audit._service import (
    AuditService,
    EntryProof,
    LogIntegrityError,
    append_event_sync,
    origin_for,
)
from gateway.audit._store import AuditStoreError, RecordFilter, StoredCheckpoint, open_store
from gateway.audit._verify import VerifyReport, verify_log
from gateway.audit.event import (
    ActorKind,
    AuditEvent,
    AuditLog,
    AuditUnavailableError,
    EventType,
    LoggedEntry,
    ProvingAuditLog,
)
from gateway.settings import Settings
from gateway.web.appkeys import AUDIT_KEY, SETTINGS_KEY

__all__ = [
    "ActorKind",
    "AuditEvent",
    "AuditLog",
    "AuditPruner",
    "AuditService",
    "AuditStoreError",
    "AuditUnavailableError",
    "CheckedReceipt",
    "EntryProof",
    "EventType",
    "LogIntegrityError",
    "LoggedEntry",
    "ProvingAuditLog",
    "PruneError",
    "PruneOutcome",
    "PruneProposal",
    "PruneRefusal",
    "ReceiptError",
    "RecordFilter",
    "StoredCheckpoint",
    "VerifyReport",
    "append_cli_event",
    "audit_ctx",
    "check_receipt",
    "mask",
    "open_audit",
    "open_store",
    "origin_for",
    "receipts_in",
    "service_from_settings",
    "verify_log",
]


def service_from_settings(settings: Settings) -> AuditService:
    """An (unstarted) audit service configured by the gateway settings.

    ``[audit] origin = "..."`` in the settings file overrides the origin line.
    """
    return AuditService(
        data_dir=settings.data_dir,
        postgres_dsn=settings.postgres_dsn,
        gateway_id=settings.gateway_id,
        origin=settings.audit.origin,
        batch_max=settings.audit_batch_max,
        checkpoint_interval_s=settings.audit_checkpoint_interval_s,
    )


@asynccontextmanager
async def open_audit(app: web.Application) -> AsyncIterator[AuditService]:
    """A started service configured from ``app[SETTINGS_KEY]``, stopped (drained) on exit."""
    service = service_from_settings(app[SETTINGS_KEY])
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def audit_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` entry: start the service from ``app[SETTINGS_KEY]``, stop it on cleanup."""
    service = service_from_settings(app[SETTINGS_KEY])
    await service.start()
    app[AUDIT_KEY] = service
    try:
        yield
    finally:
        await service.stop()


def append_cli_event(
    data_dir: Path,
    event: AuditEvent,
    *,
    postgres_dsn: str | None = None,
    gateway_id: str = "330500",
) -> int:
    """Append one event from a CLI command; returns its index once durable.

    Safe whether or not a gateway runs on the same log: the record is sequenced
    under the same store lock as the gateway's writer. Raises
    ``AuditUnavailableError`` when it cannot be written (the command must fail).
    """
    return append_event_sync(data_dir, event, postgres_dsn=postgres_dsn, gateway_id=gateway_id)
