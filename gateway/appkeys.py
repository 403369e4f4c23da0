"""Typed keys of the application state (one ``web.AppKey`` per piece).

Types from packages that import this module are named for the type checker
only, so that no import cycle forms. (Owned by the lead: add keys here.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from gateway.identity import IdentityStore
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.audit._service import AuditService
    from gateway.audit.event import AuditLog
    from gateway.verification import VerificationService

__all__ = [
    "AUDIT_KEY",
    "AUDIT_PORT_KEY",
    "IDENTITIES_KEY",
    "SETTINGS_KEY",
    "VERIFICATION_KEY",
]

SETTINGS_KEY = web.AppKey("settings", Settings)
IDENTITIES_KEY = web.AppKey("identities", IdentityStore)
AUDIT_KEY: web.AppKey[AuditService] = web.AppKey("audit")
"""The audit log service itself, for its own routes (proofs, checkpoints, queries)."""
AUDIT_PORT_KEY: web.AppKey[AuditLog] = web.AppKey("audit_port")
"""The port other services write through: the audit service, or a test double."""
VERIFICATION_KEY: web.AppKey[VerificationService] = web.AppKey("verification")
