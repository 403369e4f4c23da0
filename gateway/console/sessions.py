"""The console's server-side sessions: an operator token exchanged for a random id.

The browser holds only the session id (an HttpOnly, SameSite=Strict cookie); the
token stays in this process's memory and is checked again on every request, so a
token disabled or expired after sign-in stops the session at its next page. A
session ends at sign-out, after ``idle`` without a request, or ``lifetime`` after
sign-in, whichever comes first. Each session carries its own CSRF token
(synchronizer pattern): every POST form sends it back and it must match.

A browser that has not signed in yet gets an anonymous session too (short-lived),
so that the sign-in form itself is protected against login CSRF; signing in
replaces it with a new id (no session fixation).

Sessions live in one process: behind several instances, keep a browser on one
(sticky routing), or it is asked to sign in again.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

__all__ = ["COOKIE", "Session", "SessionStore"]

COOKIE = "ecert_console"
"""The session cookie's name."""

ANONYMOUS_LIFETIME = timedelta(minutes=10)


@dataclass(slots=True)
class Session:
    """One browser's session: its CSRF token and, once signed in, the operator's token."""

    id: str
    csrf: str
    created: datetime
    last_seen: datetime
    expires: datetime
    token: str | None = None
    """The operator token this session acts with; None before sign-in."""
    name: str | None = None
    role: str | None = None
    flash: list[tuple[str, str]] = field(default_factory=list)
    """Messages for the next page: (kind, text), kind ``ok`` or ``error``."""

    def csrf_ok(self, sent: str | None) -> bool:
        """Whether ``sent`` is this session's CSRF token (compared in constant time)."""
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf.encode())


class SessionStore:
    """Sessions by id, bounded in number (the oldest go first).

    Anonymous sessions are kept apart from signed-in ones, so that a flood of
    visits to the sign-in page cannot push a signed-in operator out."""

    def __init__(self, clock: Callable[[], datetime], *, idle: timedelta,
                 lifetime: timedelta, max_sessions: int = 10_000) -> None:
        self.clock = clock
        self.idle = idle
        self.lifetime = lifetime
        self.max_sessions = max_sessions
        self._signed: OrderedDict[str, Session] = OrderedDict()
        self._anonymous: OrderedDict[str, Session] = OrderedDict()

    def _new(self, lifetime: timedelta, into: OrderedDict[str, Session]) -> Session:
        now = self.clock()
        session = Session(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32),
                          created=now, last_seen=now, expires=now + lifetime)
        into[session.id] = session
        while len(into) > self.max_sessions:
            into.popitem(last=False)
        return session

    def anonymous(self) -> Session:
        """A new session for a browser that has not signed in (carries a CSRF token)."""
        return self._new(ANONYMOUS_LIFETIME, self._anonymous)

    def sign_in(self, previous: Session | None, token: str, name: str, role: str) -> Session:
        """A new signed-in session replacing ``previous`` (a new id and CSRF token)."""
        if previous is not None:
            self.end(previous.id)
        session = self._new(self.lifetime, self._signed)
        session.token, session.name, session.role = token, name, role
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of an id (None when unknown, idle too long or expired)."""
        if not session_id:
            return None
        where = self._signed if session_id in self._signed else self._anonymous
        session = where.get(session_id)
        if session is None:
            return None
        now = self.clock()
        idle_limit = self.idle if session.token is not None else ANONYMOUS_LIFETIME
        if now >= session.expires or now - session.last_seen >= idle_limit:
            self.end(session_id)
            return None
        session.last_seen = now
        where.move_to_end(session_id)
        return session

    def end(self, session_id: str) -> None:
        """Forget a session (sign-out, expiry, a token no longer accepted)."""
        self._signed.pop(session_id, None)
        self._anonymous.pop(session_id, None)
