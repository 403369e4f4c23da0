"""Typed keys of the application state (one ``web.AppKey`` per piece).

Types from packages that import this module are named for the type checker
only, so that no import cycle forms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from gateway.credentials.store import IdentityStore
from gateway.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from gateway.audit._service import AuditService
    from gateway.audit.event import AuditLog
    from gateway.audit.witness import HuzhouWitness, Witnessing
    from gateway.infra.signing import SigningKey
    from gateway.matters.service import MatterService
    from gateway.trustlist.service import TrustListService
    from gateway.trustlist.state import TrustState
    from gateway.verification.service import VerificationService

__all__ = [
    "AUDIT_KEY",
    "AUDIT_PORT_KEY",
    "IDENTITIES_KEY",
    "JWKS_KEY",
    "READINESS_KEY",
    "REGISTRY_KEY",
    "SETTINGS_KEY",
    "TRUSTLISTS_KEY",
    "TRUST_KEY",
    "VERIFICATION_KEY",
    "WITNESSING_KEY",
    "WITNESS_KEY",
]

SETTINGS_KEY = web.AppKey("settings", Settings)
IDENTITIES_KEY = web.AppKey("identities", IdentityStore)
AUDIT_KEY: web.AppKey[AuditService] = web.AppKey("audit")
"""The audit log service itself, for its own routes (proofs, checkpoints, queries)."""
AUDIT_PORT_KEY: web.AppKey[AuditLog] = web.AppKey("audit_port")
"""The port other services write through: the audit service, or a test double."""
VERIFICATION_KEY: web.AppKey[VerificationService] = web.AppKey("verification")
TRUST_KEY: web.AppKey[TrustState] = web.AppKey("trust")
"""The trust list served now (swapped atomically by the trust-list watcher)."""
JWKS_KEY: web.AppKey[list[SigningKey]] = web.AppKey("jwks")
"""Every key the gateway signs with, published at /.well-known/jwks.json."""
READINESS_KEY: web.AppKey[dict[str, Callable[[], Awaitable[None]]]] = web.AppKey("readiness")
"""Probes /readyz runs: every store, and Redis when configured."""
TRUSTLISTS_KEY: web.AppKey[TrustListService] = web.AppKey("trustlists")
"""The trust-list workflow: proposals, approvals, versions (``gateway.trustlist``)."""
REGISTRY_KEY: web.AppKey[MatterService] = web.AppKey("registry")
"""The loaded matter registry (``gateway.matters``)."""
WITNESS_KEY: web.AppKey[HuzhouWitness] = web.AppKey("witness")
"""Huzhou's own witness of partners' logs (``gateway.audit.witness``)."""
WITNESSING_KEY: web.AppKey[Witnessing] = web.AppKey("witnessing")
"""The task that gets Huzhou's checkpoints witnessed (absent without an audit service)."""
