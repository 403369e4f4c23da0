"""RFC 9457 problem bodies, and the one table that maps errors to HTTP.

Handlers raise ``Problem`` for what they parse (a malformed body, a missing
parameter) and let the services' domain errors through: ``ERROR_STATUS`` is the
only place one becomes an HTTP status, title and problem type. The middleware
(``gateway.web.middleware``) turns either into ``application/problem+json``.
Anything else becomes a 500 problem body with the request id, never a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

import orjson
from aiohttp import web

from gateway.audit._prune import PruneRefusal
from gateway.audit._tree import TreeError
from gateway.audit.event import AuditUnavailableError
from gateway.cases.service import CaseError, UnknownCaseError
from gateway.credentials.store import CredentialRefusal, IdentityRefusal
from gateway.infra.redislink import RedisUnavailableError
from gateway.licences.store import LicenceStoreError
from gateway.trustlist.service import AdminRefusal, TrustStoreError
from registry import CodeFormatError, UnknownCodeError, UnknownRegionError
from trust import ChangeError, ImportRefusal

__all__ = [
    "ERROR_STATUS",
    "ErrorAnswer",
    "Problem",
    "error_answer",
    "error_problem",
    "problem_for",
    "problem_response",
]

_log = logging.getLogger("gateway.web.problems")

PROBLEM_BASE = "https://ecert.huzhou.example/problems/"


class Problem(Exception):  # noqa: N818 - an RFC 9457 problem is an HTTP answer, not a domain error
    """An HTTP-level refusal with a problem body."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        kind: str | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.kind = kind or title.lower().replace(" ", "-")
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """How one domain error is answered over HTTP (RFC 9457)."""

    status: int
    title: str
    kind: str
    """The last segment of the problem's ``type`` URI."""
    fields: Mapping[str, str] = field(default_factory=dict)
    """Members added to the problem body, from the error's data: member -> attribute (an
    enum gives its value, a tuple a list)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    detail: str | None = None
    """A fixed detail in place of the error's message (None: the message)."""


_BEARER = {"WWW-Authenticate": 'Bearer realm="ecert-gateway"'}
_UNAUTHORIZED = ErrorAnswer(401, "Unauthorized", "unauthorized", headers=_BEARER,
                            detail="an operator token is required")


def _admin(status: int, title: str, refusal: AdminRefusal) -> ErrorAnswer:
    return ErrorAnswer(status, title, f"trust-list-{refusal.value}", {"reason": "refusal"})


def _import(status: int, refusal: ImportRefusal) -> ErrorAnswer:
    return ErrorAnswer(status, "Import refused", f"trust-list-{refusal.value}",
                       {"reason": "reason"})


def _prune(status: int, title: str, refusal: PruneRefusal) -> ErrorAnswer:
    return ErrorAnswer(status, title, f"audit-prune-{refusal.value}", {"reason": "refusal"})


def _identity(status: int, title: str, refusal: IdentityRefusal) -> ErrorAnswer:
    return ErrorAnswer(status, title, f"credential-{refusal.value}", {"reason": "refusal"})


ERROR_STATUS: Final[Mapping[type[Exception] | Enum, ErrorAnswer]] = {
    # The audit log: no record, no answer.
    AuditUnavailableError: ErrorAnswer(503, "Audit log unavailable", "audit-log-unavailable"),
    TreeError: ErrorAnswer(400, "Bad request", "bad-request"),
    PruneRefusal.NOT_FOUND: _prune(404, "Not found", PruneRefusal.NOT_FOUND),
    PruneRefusal.OWN_PROPOSAL: _prune(403, "Forbidden", PruneRefusal.OWN_PROPOSAL),
    PruneRefusal.NOT_PENDING: _prune(409, "Proposal not pending", PruneRefusal.NOT_PENDING),
    PruneRefusal.POLICY: _prune(422, "Newer than the retention policy", PruneRefusal.POLICY),
    PruneRefusal.INVALID: _prune(400, "Bad request", PruneRefusal.INVALID),
    # The trust list's store and workflow.
    TrustStoreError: ErrorAnswer(503, "Trust-list store unavailable",
                                 "trust-list-store-unavailable"),
    AdminRefusal.NOT_FOUND: _admin(404, "Not found", AdminRefusal.NOT_FOUND),
    AdminRefusal.OWN_PROPOSAL: _admin(403, "Forbidden", AdminRefusal.OWN_PROPOSAL),
    AdminRefusal.NOT_PENDING: _admin(409, "Proposal not pending", AdminRefusal.NOT_PENDING),
    AdminRefusal.ALREADY_VOTED: _admin(409, "Already voted", AdminRefusal.ALREADY_VOTED),
    AdminRefusal.CONFLICT: _admin(409, "Conflict", AdminRefusal.CONFLICT),
    AdminRefusal.UNKNOWN_OPERATOR: _admin(403, "Forbidden", AdminRefusal.UNKNOWN_OPERATOR),
    ChangeError: ErrorAnswer(422, "Change refused", "trust-list-change-refused",
                             {"problems": "problems"}),
    ImportRefusal.FORMAT: _import(400, ImportRefusal.FORMAT),
    ImportRefusal.UNTRUSTED_KEY: _import(422, ImportRefusal.UNTRUSTED_KEY),
    ImportRefusal.SIGNATURE: _import(422, ImportRefusal.SIGNATURE),
    ImportRefusal.FREEZE: _import(422, ImportRefusal.FREEZE),
    ImportRefusal.ROLLBACK: _import(409, ImportRefusal.ROLLBACK),
    ImportRefusal.CONFLICT: _import(409, ImportRefusal.CONFLICT),
    # Credentials: who may call, and changes to them.
    CredentialRefusal.MISSING: _UNAUTHORIZED,
    CredentialRefusal.UNKNOWN: _UNAUTHORIZED,
    CredentialRefusal.MISMATCH: _UNAUTHORIZED,
    CredentialRefusal.ROLE: ErrorAnswer(403, "Forbidden", "forbidden"),
    IdentityRefusal.INVALID: _identity(400, "Bad request", IdentityRefusal.INVALID),
    IdentityRefusal.NOT_FOUND: _identity(404, "Not found", IdentityRefusal.NOT_FOUND),
    IdentityRefusal.EXISTS: _identity(409, "Conflict", IdentityRefusal.EXISTS),
    IdentityRefusal.STATE: _identity(409, "Conflict", IdentityRefusal.STATE),
    IdentityRefusal.CONFLICT: _identity(409, "Conflict", IdentityRefusal.CONFLICT),
    IdentityRefusal.SCHEMA: _identity(503, "Identity store unavailable",
                                      IdentityRefusal.SCHEMA),
    # Matters: the registry's answers about codes and regions.
    CodeFormatError: ErrorAnswer(400, "Bad matter code", "bad-matter-code",
                                 {"scheme": "scheme", "code": "code"}),
    UnknownRegionError: ErrorAnswer(404, "Unknown region", "unknown-region",
                                    {"region": "region"}),
    UnknownCodeError: ErrorAnswer(404, "Unknown matter", "unknown-matter",
                                  {"region": "region", "code": "code"}),
    # Cases (免证办): a bundle, matter or role the case book does not hold; a bad applicant.
    UnknownCaseError: ErrorAnswer(422, "Unknown case", "unknown-case"),
    CaseError: ErrorAnswer(400, "Bad request", "bad-case-request"),
    # State kept in Redis (console sessions with redis_url).
    RedisUnavailableError: ErrorAnswer(503, "Redis unavailable", "redis-unavailable"),
    # Huzhou's licence library.
    LicenceStoreError: ErrorAnswer(503, "Licence store unavailable",
                                   "licence-store-unavailable"),
}
"""The one table from domain errors to HTTP answers. An error that carries a refusal
(``refusal``, or a signed import's ``reason``) is found by it; any other by its class or
the nearest base class listed (``LogIntegrityError`` answers as the
``AuditUnavailableError`` it is)."""


def _refusal(exc: Exception) -> Enum | None:
    for name in ("refusal", "reason"):
        value = getattr(exc, name, None)
        if isinstance(value, Enum):
            return value
    return None


def error_answer(exc: Exception) -> ErrorAnswer | None:
    """``exc``'s entry in ``ERROR_STATUS``; None when it has none."""
    refusal = _refusal(exc)
    if refusal is not None and refusal in ERROR_STATUS:
        return ERROR_STATUS[refusal]
    for cls in type(exc).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return None


def _member(value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def error_problem(exc: Exception, *, where: str = "") -> Problem:
    """The problem ``exc`` answers with, by ``ERROR_STATUS`` (a 500 when it has no entry);
    ``where`` starts the detail (``items[3]: ``, for one item of a batch)."""
    answer = error_answer(exc)
    if answer is None:
        _log.error("unhandled error", exc_info=exc)
        return Problem(500, "Internal error", "the gateway failed; the request id identifies it")
    if answer.status >= 500:
        _log.warning("request failed: %s", exc)
    detail = answer.detail if answer.detail is not None else str(exc)
    return Problem(answer.status, answer.title, where + detail, kind=answer.kind,
                   extra={member: _member(getattr(exc, attribute))
                          for member, attribute in answer.fields.items()},
                   headers=answer.headers)


def problem_response(problem: Problem, request_id: str | None = None) -> web.Response:
    """Render a problem body."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + problem.kind,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if request_id:
        body["request_id"] = request_id
    body.update(problem.extra)
    return web.Response(
        status=problem.status,
        body=orjson.dumps(body, option=orjson.OPT_APPEND_NEWLINE),
        content_type="application/problem+json",
        headers=problem.headers,
    )


def problem_for(exc: Exception) -> Problem | None:
    """The problem a failure answers with; None for an HTTP exception under 400 (a
    redirect), which is not a failure. Unexpected errors are logged here."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            return None
        title = exc.reason or "Error"
        detail = exc.text or title
        if exc.status == 413:
            detail = "request body exceeds the gateway's limit"
        # RFC 9110 15.5.6: a 405 names the methods the resource takes (aiohttp's Allow).
        allow = exc.headers.get("Allow")
        return Problem(exc.status, title, detail,
                       headers=None if allow is None else {"Allow": allow})
    return error_problem(exc)
