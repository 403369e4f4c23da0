"""Bearer credentials: local systems' API keys and operators' tokens."""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet

from aiohttp import web

from gateway.credentials.store import (
    NOT_CACHED,
    CredentialError,
    Identity,
    IdentityKind,
    NotCached,
    Role,
    authorize_operator,
)
from gateway.web.appkeys import IDENTITIES_KEY
from gateway.web.observability import CALLER_KEY
from gateway.web.problems import Problem

__all__ = ["bearer", "require_client", "require_operator", "require_operator_token"]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="ecert-gateway"'}

_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
"""RFC 6750 2.1 ``b64token``: the syntax of a bearer credential. Every key and token the
gateway issues fits it (``gateway.credentials.store``: a prefix and URL-safe base64)."""


def bearer(request: web.Request) -> str | None:
    """The bearer token of the request, if it has one."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def _lookup(request: web.Request, token: str | None) -> Identity | None:
    known = _cached(request, token)
    return await _fetched(request, token) if known is NOT_CACHED else known


async def _fetched(request: web.Request, token: str | None) -> Identity | None:
    """The store's answer from its database, for a token ``_cached`` did not answer."""
    assert token is not None  # _cached answers None for no token or a malformed one
    return await request.app[IDENTITIES_KEY].fetch(token)


def _cached(request: web.Request, token: str | None) -> Identity | NotCached | None:
    """The identity of ``token`` as far as it is known without an await: None for no
    token or one that is no credential of ours, the store's remembered answer, else
    ``NOT_CACHED`` (``_fetched`` then asks the store's database)."""
    # aiohttp keeps header bytes that are not UTF-8 as lone surrogates, which the
    # store's UTF-8 hashing refuses (a 500): such a value, like any other outside the
    # b64token syntax, is no credential of ours and is refused as an unknown one is.
    if token is None or len(token) > 256 or _B64TOKEN.fullmatch(token) is None:
        return None
    return request.app[IDENTITIES_KEY].cached(token)


async def require_client(request: web.Request) -> Identity:
    """The local system calling, or a 401 problem."""
    token = bearer(request)
    identity = _cached(request, token)  # a known key: no coroutine below this one
    if identity is NOT_CACHED:
        identity = await _fetched(request, token)
    if identity is None or identity.kind is not IdentityKind.CLIENT:
        raise Problem(401, "Unauthorized", "a local system's API key is required",
                      headers=_CHALLENGE, extra={"cn_status": 11})
    request[CALLER_KEY] = identity.name
    return identity


async def require_operator(request: web.Request, roles: AbstractSet[Role]) -> Identity:
    """The operator calling, with one of ``roles``; else ``CredentialError``, answered
    401 or 403 (``gateway.web.problems.ERROR_STATUS``).

    The decision is ``authorize_operator``'s, the one the CLI's writes take too.
    """
    return await require_operator_token(request, bearer(request), roles)


async def require_operator_token(request: web.Request, token: str | None,
                                 roles: AbstractSet[Role]) -> Identity:
    """``require_operator`` for a token held elsewhere than the Authorization header (the
    console's server-side session): the same checks, the same 401 and 403."""
    try:
        identity = authorize_operator(await _lookup(request, token), roles)
    except CredentialError as exc:  # answered by ERROR_STATUS: 401, or 403 for a role
        if exc.identity is not None:
            request[CALLER_KEY] = exc.identity.name  # the access log names who was refused
        raise
    request[CALLER_KEY] = identity.name
    return identity
