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

Where sessions live. ``SessionStore`` keeps them in this process: enough for one
worker. With ``redis_url`` set, ``RedisSessionStore`` keeps them in Redis, so that
a browser whose connections land on different workers (``serve --workers N``) or
instances behind a load balancer keeps its session on every one of them. Redis
never holds what a session could be taken over with: a session is stored under
the SHA-256 of its id (the cookie's value), and its operator token sealed with
AES-256-GCM under ``keys/console-sessions.key`` of the data folder (shared like
the other keys); a Redis key lives as long as its session may (idle and
lifetime limits), renewed on each request.

Errors::

    * SessionStoreUnavailableError  the sessions' Redis cannot answer
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import redis.asyncio as aioredis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from redis.exceptions import RedisError

from gateway.infra.redislink import RedisUnavailableError

__all__ = ["COOKIE", "RedisSessionStore", "Session", "SessionStore",
           "SessionStoreUnavailableError"]

SessionStoreUnavailableError = RedisUnavailableError
"""The sessions' Redis cannot answer (defined in ``gateway.infra.redislink``, where the
error table finds it)."""

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
    """Sessions by id, in this process, bounded in number (the oldest go first).

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

    async def anonymous(self) -> Session:
        """A new session for a browser that has not signed in (carries a CSRF token)."""
        return self._new(ANONYMOUS_LIFETIME, self._anonymous)

    async def sign_in(self, previous: Session | None, token: str, name: str, role: str
                      ) -> Session:
        """A new signed-in session replacing ``previous`` (a new id and CSRF token)."""
        if previous is not None:
            await self.end(previous.id)
        session = self._new(self.lifetime, self._signed)
        session.token, session.name, session.role = token, name, role
        return session

    async def save(self, session: Session) -> None:
        """Keep what a request changed in ``session`` (its messages); in this process the
        session is the stored object already."""

    async def close(self) -> None:
        """Release connections (none here)."""

    async def get(self, session_id: str | None) -> Session | None:
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
            await self.end(session_id)
            return None
        session.last_seen = now
        where.move_to_end(session_id)
        return session

    async def end(self, session_id: str) -> None:
        """Forget a session (sign-out, expiry, a token no longer accepted)."""
        self._signed.pop(session_id, None)
        self._anonymous.pop(session_id, None)


def _seconds(at: datetime) -> float:
    return at.timestamp()


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class RedisSessionStore(SessionStore):
    """Sessions in Redis, shared by every worker and instance using it (module doc)."""

    PREFIX = "ecert:v1:console-session:"

    def __init__(self, client: aioredis.Redis, seal_key: bytes, clock: Callable[[], datetime],
                 *, idle: timedelta, lifetime: timedelta) -> None:
        super().__init__(clock, idle=idle, lifetime=lifetime)
        self._client = client
        self._aead = AESGCM(seal_key)

    def _key(self, session_id: str) -> str:
        return self.PREFIX + hashlib.sha256(session_id.encode()).hexdigest()

    def _seal(self, session: Session) -> str | None:
        if session.token is None:
            return None
        nonce = secrets.token_bytes(12)
        # Bound to the session: a sealed token copied into another session does not open.
        sealed = self._aead.encrypt(nonce, session.token.encode(), session.id.encode())
        return (nonce + sealed).hex()

    def _unseal(self, session_id: str, sealed: str) -> str | None:
        raw = bytes.fromhex(sealed)
        try:
            return self._aead.decrypt(raw[:12], raw[12:], session_id.encode()).decode()
        except InvalidTag:
            return None  # sealed under another key (keys/ not shared): sign in again

    async def _put(self, session: Session) -> None:
        now = self.clock()
        idle = self.idle if session.token is not None else ANONYMOUS_LIFETIME
        ttl = min(session.expires, session.last_seen + idle) - now
        millis = int(ttl.total_seconds() * 1000)
        if millis <= 0:
            await self.end(session.id)
            return
        document: dict[str, Any] = {
            "csrf": session.csrf, "created": _seconds(session.created),
            "last_seen": _seconds(session.last_seen), "expires": _seconds(session.expires),
            "token": self._seal(session), "name": session.name, "role": session.role,
            "flash": session.flash}
        try:
            await self._client.set(self._key(session.id), orjson.dumps(document), px=millis)
        except (RedisError, OSError, TimeoutError) as exc:
            raise SessionStoreUnavailableError(
                f"console sessions (Redis) unavailable: {type(exc).__name__}") from exc

    def _fresh(self, lifetime: timedelta) -> Session:
        now = self.clock()
        return Session(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32),
                       created=now, last_seen=now, expires=now + lifetime)

    async def anonymous(self) -> Session:
        """A new anonymous session, stored for ``ANONYMOUS_LIFETIME``."""
        session = self._fresh(ANONYMOUS_LIFETIME)
        await self._put(session)
        return session

    async def sign_in(self, previous: Session | None, token: str, name: str, role: str
                      ) -> Session:
        """A new signed-in session (new id and CSRF token) replacing ``previous``."""
        if previous is not None:
            await self.end(previous.id)
        session = self._fresh(self.lifetime)
        session.token, session.name, session.role = token, name, role
        await self._put(session)
        return session

    async def save(self, session: Session) -> None:
        """Store ``session`` as the request left it (its messages, its last request)."""
        await self._put(session)

    async def get(self, session_id: str | None) -> Session | None:
        """The live session of an id; its idle time starts again."""
        if not session_id:
            return None
        try:
            raw = await self._client.get(self._key(session_id))
        except (RedisError, OSError, TimeoutError) as exc:
            raise SessionStoreUnavailableError(
                f"console sessions (Redis) unavailable: {type(exc).__name__}") from exc
        if raw is None:
            return None
        document = orjson.loads(raw)
        token = None
        if document["token"] is not None:
            token = self._unseal(session_id, document["token"])
            if token is None:
                await self.end(session_id)
                return None
        session = Session(id=session_id, csrf=document["csrf"],
                          created=_time(document["created"]),
                          last_seen=_time(document["last_seen"]),
                          expires=_time(document["expires"]), token=token,
                          name=document["name"], role=document["role"],
                          flash=[(kind, text) for kind, text in document["flash"]])
        now = self.clock()
        idle_limit = self.idle if token is not None else ANONYMOUS_LIFETIME
        if now >= session.expires or now - session.last_seen >= idle_limit:
            await self.end(session_id)
            return None
        session.last_seen = now
        await self._put(session)
        return session

    async def end(self, session_id: str) -> None:
        """Forget a session."""
        try:
            await self._client.delete(self._key(session_id))
        except (RedisError, OSError, TimeoutError) as exc:
            raise SessionStoreUnavailableError(
                f"console sessions (Redis) unavailable: {type(exc).__name__}") from exc

    async def close(self) -> None:
        """Close the client."""
        await self._client.aclose()
