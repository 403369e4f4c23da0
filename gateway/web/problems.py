"""RFC 9457 problem bodies, and the one table that maps errors to HTTP.

Handlers raise ``Problem`` (or a domain error listed in ``ERROR_STATUS``); the
middleware (``gateway.web.middleware``) turns it into ``application/problem+json``.
Anything else becomes a 500 problem body with the request id, never a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from gateway.audit.event import AuditUnavailableError

__all__ = ["ERROR_STATUS", "Problem", "problem_for", "problem_response"]

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


# Domain errors that reach a handler unhandled: status, title.
ERROR_STATUS: dict[type[BaseException], tuple[int, str]] = {
    AuditUnavailableError: (503, "Audit log unavailable"),
}


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
        return Problem(exc.status, title, detail)
    for cls in type(exc).__mro__:  # a subclass (LogIntegrityError, say) maps as its base
        mapped = ERROR_STATUS.get(cls)
        if mapped is not None:
            _log.warning("request failed: %s", exc)
            return Problem(mapped[0], mapped[1], str(exc))
    _log.error("unhandled error", exc_info=exc)
    return Problem(500, "Internal error", "the gateway failed; the request id identifies it")
