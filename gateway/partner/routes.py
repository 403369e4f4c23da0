"""Partner regions query Huzhou's licences; Huzhou publishes their status.

* ``POST /v1/partner/licences/query``  a partner's signed query (http-api.md)
* ``GET  /v1/status/{name}``           Huzhou's status list (``statuslist+jwt``, public):
  ``licences`` signed EdDSA, ``licences-sm2`` the same list signed SM2SM3

The routes are thin: ``query`` reads the request into a ``QueryRequest``, lets
``gateway.partner.service.PartnerService`` decide it, records the outcome with
the status it answers with, and answers: 200 with the national status code for
a ``Found``, the problem body ``REFUSAL_ANSWERS`` gives a ``Refusal`` (the one
table from refusal to HTTP), 500 for a ``Failure``. Every query, refused ones
included, has a durable audit record before it is answered (a failed append is
a 503).

``setup(app)`` wires both routes and a ``cleanup_ctx`` entry that opens the
licence store, the holder keyring, Huzhou's ``licence-signing`` and
``status-signing`` keys, and their SM2 counterparts for the agreements that ask
for SM2 (all appended to ``/.well-known/jwks.json``), the replay
cache and the per-partner rate limiter (both in Redis when ``redis_url`` is set). It
must run after ``create_app`` has added its trust context (it reads
``TRUST_KEY``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson
from aiohttp import web

from gateway.infra.crypto_thread import CryptoThread
from gateway.infra.redislink import redis_client
from gateway.infra.signing import SigningKey, load_or_create_key, published_keys
from gateway.licences.store import (
    HolderKeyring,
    LicenceStoreError,
    open_store,
)
from gateway.partner.checks import (
    MemoryReplayCache,
    RateLimiter,
    RedisRateLimiter,
    RedisReplayCache,
    ReplayCache,
)
from gateway.partner.service import (
    SIGNED_PRUNE_S,
    STATUS_REFRESH_S,
    Clock,
    Failure,
    Found,
    PartnerService,
    QueryRequest,
    Refusal,
    RefusalKind,
)
from gateway.settings import Settings
from gateway.web.appkeys import (
    AUDIT_PORT_KEY,
    JWKS_KEY,
    READINESS_KEY,
    REGISTRY_KEY,
    SETTINGS_KEY,
    TRUST_KEY,
)
from gateway.web.auth import bearer
from gateway.web.httpjson import declared_json, not_json
from gateway.web.logs import request_id_of
from gateway.web.observability import CALLER_KEY
from gateway.web.problems import Problem
from trust import Sm2UnavailableError

__all__ = [
    "PARTNER_KEY",
    "QUERY_PATH",
    "REFUSAL_ANSWERS",
    "STATUS_PATH",
    "RefusalAnswer",
    "setup",
]

QUERY_PATH = "/v1/partner/licences/query"
STATUS_PATH = "/v1/status/{name}"

_log = logging.getLogger("gateway.partner.checks")

PARTNER_KEY = web.AppKey("partner", PartnerService)
"""The partner query service."""


# ----------------------------------------------------------------------- outcomes to HTTP


@dataclass(frozen=True, slots=True)
class RefusalAnswer:
    """How a kind of refusal is answered: an RFC 9457 problem body with ``cn_status``."""

    status: int
    title: str
    kind: str | None = None
    """The problem type's last segment (default: from the title)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, str] = field(default_factory=dict)
    """Members of the problem body after ``cn_status``."""

    def problem(self, refusal: Refusal) -> Problem:
        """The problem answering ``refusal``."""
        headers = dict(self.headers)
        if refusal.retry_after_s is not None:
            headers["Retry-After"] = RateLimiter.retry_after(refusal.retry_after_s)
        return Problem(self.status, self.title, refusal.reason, kind=self.kind,
                       headers=headers, extra={"cn_status": refusal.cn_status, **self.extra})


_TRY_LATER = {"indication": "INDETERMINATE", "sub_indication": "TRY_LATER"}
_UNAUTHORISED = RefusalAnswer(
    401, "Unauthorized", "request-token",
    headers={"WWW-Authenticate": 'Bearer realm="ecert-gateway", error="invalid_token"'})
_UNAVAILABLE = "Service unavailable"

REFUSAL_ANSWERS: Mapping[RefusalKind, RefusalAnswer] = MappingProxyType({
    RefusalKind.NOT_JSON: RefusalAnswer(415, "Unsupported media type",
                                        headers={"Accept-Post": "application/json"}),
    RefusalKind.TOO_LARGE: RefusalAnswer(413, "Payload too large"),
    RefusalKind.TRUST_LIST_STALE: RefusalAnswer(503, "Trust data stale", "trust-list-stale",
                                                extra=_TRY_LATER),
    RefusalKind.UNAUTHENTICATED: _UNAUTHORISED,
    RefusalKind.PARTNER_SUSPENDED: RefusalAnswer(403, "Partner suspended", "partner-suspended",
                                                 extra=_TRY_LATER),
    RefusalKind.REPLAYED: _UNAUTHORISED,
    RefusalKind.REPLAY_CACHE_UNAVAILABLE: RefusalAnswer(503, _UNAVAILABLE,
                                                        "replay-cache-unavailable"),
    RefusalKind.RATE_LIMITED: RefusalAnswer(429, "Too many requests", "rate-limited"),
    RefusalKind.BAD_QUERY: RefusalAnswer(400, "Bad request", "bad-request"),
    RefusalKind.OUT_OF_AGREEMENT: RefusalAnswer(403, "Out of agreement", "out-of-agreement"),
    RefusalKind.LICENCE_STORE_UNAVAILABLE: RefusalAnswer(503, _UNAVAILABLE,
                                                         "licence-store-unavailable"),
})
"""The HTTP answer of each kind of refusal (a ``Found`` is 200, a ``Failure`` 500)."""


# ----------------------------------------------------------------------- handlers


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE), status=status,
                        content_type="application/json",
                        headers={"Cache-Control": "no-store"})


async def query(request: web.Request) -> web.Response:
    """POST /v1/partner/licences/query."""
    service = request.app[PARTNER_KEY]
    received, at = time.perf_counter(), service.clock()
    outcome = await service.answer(QueryRequest(
        method=request.method, path=request.path, declared_size=request.content_length,
        read_body=request.read, token=bearer(request),
        content_type_problem=None if declared_json(request) else not_json(request).detail,
        request_id=request_id_of(request), source=request.remote, at=at, received=received))
    region = outcome.facts.partner_region
    if region is not None:
        request[CALLER_KEY] = f"partner:{region}"
    if isinstance(outcome, Found):
        await service.record(outcome, http_status=200)
        return _json({"cn_status": outcome.cn_status, "message": outcome.message,
                      "licences": outcome.licences, "matter": outcome.matter})
    if isinstance(outcome, Failure):
        await service.record(outcome, http_status=500)
        raise outcome.error
    problem = REFUSAL_ANSWERS[outcome.kind].problem(outcome)
    await service.record(outcome, http_status=problem.status)
    raise problem


async def status_list(request: web.Request) -> web.Response:
    """GET /v1/status/{name}: Huzhou's status list, public."""
    service = request.app[PARTNER_KEY]
    name = request.match_info["name"]
    if name not in service.status_list_names:
        raise Problem(404, "Not found", "no such status list")
    try:
        token = await service.status_token(name)
    except LicenceStoreError as exc:
        raise Problem(503, "Service unavailable", "the licence store cannot answer") from exc
    return web.Response(text=token, content_type="application/statuslist+jwt",
                        headers={"Cache-Control": f"public, max-age={int(STATUS_REFRESH_S)}"})


# ----------------------------------------------------------------------- wiring


def _sm2_keys(settings: Settings) -> tuple[SigningKey, SigningKey] | None:
    """Huzhou's SM2 licence and status keys (``*.sm2.key``, made on first start), or None
    when this libcrypto has no SM2 (logged: the agreements asking for SM2 then fail)."""
    gateway_id = settings.gateway_id
    try:
        return (load_or_create_key(settings.data_dir, "licence-signing",
                                   kid_prefix=f"{gateway_id}-lic", alg="SM2SM3"),
                load_or_create_key(settings.data_dir, "status-signing",
                                   kid_prefix=f"{gateway_id}-status", alg="SM2SM3"))
    except Sm2UnavailableError as exc:
        _log.warning("no SM2 signing keys: %s; partners whose agreement asks for SM2SM3 "
                     "cannot be answered", exc)
        return None


def _rate_limits(settings: Settings) -> dict[str, tuple[float, int]]:
    """``[partner.rate_limits] "310000" = {per_s = 50, burst = 100}`` overrides."""
    return {region: (limit.per_s, limit.burst)
            for region, limit in settings.partner.rate_limits.items()}


async def _prune_signed(service: PartnerService) -> None:
    """Drop the signed licences no longer reusable, every ``SIGNED_PRUNE_S``, so that a
    burst of queries leaves no tokens held once the queries stop."""
    while True:
        await asyncio.sleep(SIGNED_PRUNE_S)
        service.prune_signed()


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def setup(app: web.Application, *, clock: Clock | None = None) -> None:
    """Add the partner query and status routes, and the context that opens what they use.

    Call after ``create_app`` added its trust context (right after
    ``app.cleanup_ctx.append(trust_ctx)``).
    """

    async def partner_ctx(app: web.Application) -> AsyncIterator[None]:
        # gateway.web.app imports this module to wire it; importing it here avoids the cycle.

        settings = app[SETTINGS_KEY]
        if TRUST_KEY not in app:
            raise RuntimeError("api_partner.setup must come after the trust context")
        loop = asyncio.get_running_loop()
        gateway_id = settings.gateway_id
        licence_keys = await loop.run_in_executor(None, lambda: published_keys(
            settings.data_dir, "licence-signing", kid_prefix=f"{gateway_id}-lic", alg="ES256"))
        licence_key = licence_keys[0]
        status_key = await loop.run_in_executor(None, lambda: load_or_create_key(
            settings.data_dir, "status-signing", kid_prefix=f"{gateway_id}-status"))
        app[JWKS_KEY].extend([*licence_keys, status_key])
        # SM2 keys sign for the partners whose agreement says signing_alg SM2SM3.
        sm2_keys = await loop.run_in_executor(None, _sm2_keys, settings)
        if sm2_keys is not None:
            app[JWKS_KEY].extend(sm2_keys)
        if settings.public_url_derived:
            _log.warning("public_url is not set and listen is a wildcard address: licences "
                         "and the status list name %s; set public_url (ECERT_PUBLIC_URL) to "
                         "the URL partners reach", settings.public_base_url)
        keyring = await loop.run_in_executor(None, HolderKeyring.load, settings.data_dir)
        async with contextlib.AsyncExitStack() as opened:  # closed last-opened first
            crypto = CryptoThread(enabled=settings.crypto_thread, name="partner-crypto")
            opened.push_async_callback(crypto.close)
            store = open_store(settings)
            await store.open()
            opened.push_async_callback(store.close)
            replay: ReplayCache
            limiter: RateLimiter
            if settings.redis_url:
                replay = RedisReplayCache(redis_client(settings.redis_url, timeout_s=1.0))
                app[READINESS_KEY]["replay-cache"] = replay.ping
                limiter = RedisRateLimiter(
                    redis_client(settings.redis_url, timeout_s=settings.redis_timeout_s),
                    settings.partner_rate_per_s, settings.partner_rate_burst,
                    limits=_rate_limits(settings), share=settings.workers)
            else:
                replay = MemoryReplayCache()
                limiter = RateLimiter(settings.partner_rate_per_s, settings.partner_rate_burst,
                                      limits=_rate_limits(settings))
            opened.push_async_callback(replay.close)
            opened.push_async_callback(limiter.close)
            app[READINESS_KEY]["licences"] = store.ping
            trust_state = app[TRUST_KEY]
            app[PARTNER_KEY] = PartnerService(
                settings=settings, store=store, keyring=keyring, licence_key=licence_key,
                status_key=status_key, replay=replay,
                limiter=limiter,
                trust=lambda: trust_state.snapshot.trust_list, audit=app[AUDIT_PORT_KEY],
                matters=app.get(REGISTRY_KEY), crypto=crypto, clock=clock,
                sm2_licence_key=None if sm2_keys is None else sm2_keys[0],
                sm2_status_key=None if sm2_keys is None else sm2_keys[1],
            )
            pruning = asyncio.create_task(_prune_signed(app[PARTNER_KEY]),
                                          name="partner-signed-prune")
            opened.push_async_callback(_cancelled, pruning)
            yield

    app.cleanup_ctx.append(partner_ctx)
    app.router.add_post(QUERY_PATH, query)
    app.router.add_get(STATUS_PATH, status_list)
