"""The application factory: ``create_app(settings) -> web.Application``.

Every long-lived resource (stores, keys, client sessions, the audit writer) is
owned by a ``cleanup_ctx`` entry, opened in order at start-up and closed in
reverse order after in-flight requests have drained.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.audit import AuditService
from gateway.audit.event import AuditLog
from gateway.audit.routes import setup_routes as setup_audit_routes
from gateway.audit.witness_routes import setup as setup_witness
from gateway.cases.routes import setup as setup_cases
from gateway.console import setup as setup_console
from gateway.credentials.routes import setup_routes as setup_credential_routes
from gateway.credentials.store import IdentityStore, Role
from gateway.infra.metrics import MetricFamily
from gateway.infra.redislink import redis_client as make_redis_client
from gateway.infra.signing import published_keys
from gateway.matters.routes import setup as setup_matters
from gateway.partner.checks import MAX_TOKEN_BYTES
from gateway.partner.routes import PARTNER_KEY
from gateway.partner.routes import setup as setup_partner
from gateway.settings import Settings
from gateway.trustlist.routes import setup as setup_trustlists
from gateway.verification.cache import CacheMetrics, MemoryTier, RedisTier, VerdictCache
from gateway.verification.routes import setup_routes as setup_verify_routes
from gateway.verification.service import Clock, VerificationService, utc_now
from gateway.verification.status import StatusFetcher
from gateway.web import apidocs
from gateway.web.appkeys import (
    AUDIT_KEY,
    AUDIT_PORT_KEY,
    IDENTITIES_KEY,
    JWKS_KEY,
    READINESS_KEY,
    REGISTRY_KEY,
    SETTINGS_KEY,
    TRUST_KEY,
    VERIFICATION_KEY,
    WITNESSING_KEY,
)
from gateway.web.auth import require_operator
from gateway.web.balance import BALANCE_KEY, BalanceHolder
from gateway.web.middleware import make_request_middleware
from gateway.web.observability import GatewayCollector, HttpObserver
from gateway.web.workermetrics import WORKER_KEY, render
from trust import TrustList

__all__ = ["create_app"]

MAX_HEADER_FIELD_BYTES = 2 * MAX_TOKEN_BYTES
"""The HTTP parser's limit on one header field (aiohttp's default is 8,190 bytes).

Twice the largest request token the partner API judges (``MAX_TOKEN_BYTES``, 8 KiB),
so a token over that limit reaches the handler and is refused there, with a problem
body, cn 11 and an audit record. Under aiohttp's default, a token a little past
8 KiB was refused by the parser itself: a text/plain 400, unaudited."""


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE), status=status,
                        content_type="application/json")


async def healthz(_: web.Request) -> web.Response:
    """GET /healthz: the process is alive."""
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """GET /readyz: every store (and Redis, when configured) answers."""
    results: dict[str, str] = {}
    ready = True
    for name, probe in request.app[READINESS_KEY].items():
        try:
            await asyncio.wait_for(probe(), timeout=2.0)
            results[name] = "ok"
        except Exception as exc:
            results[name] = f"unavailable: {type(exc).__name__}"
            ready = False
    snapshot = request.app[TRUST_KEY].snapshot
    return _json({"status": "ready" if ready else "not-ready", "checks": results,
                  "trust_list_version": snapshot.trust_list.version},
                 status=200 if ready else 503)


async def jwks(request: web.Request) -> web.Response:
    """GET /.well-known/jwks.json: every public key the gateway signs with."""
    return web.Response(
        body=orjson.dumps({"keys": [k.public_jwk for k in request.app[JWKS_KEY]]},
                          option=orjson.OPT_APPEND_NEWLINE),
        content_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )


METRICS_REGISTRY_KEY = web.AppKey("metrics_registry", CollectorRegistry)


def _service_metrics(app: web.Application, at: datetime) -> list[MetricFamily]:
    """The services' own counters at ``at``, read when /metrics is scraped."""
    verification = app[VERIFICATION_KEY]
    families = verification.metric_families()
    families += app[TRUST_KEY].metric_families(
        at, alert_days=app[SETTINGS_KEY].admin.expiry_alert_days, status=verification.status)
    partner = app.get(PARTNER_KEY)
    if partner is not None:
        families += partner.metric_families()
    matters = app.get(REGISTRY_KEY)
    if matters is not None:
        families += matters.metric_families()
    witnessing = app.get(WITNESSING_KEY)
    if witnessing is not None:
        families += witnessing.metric_families()
    audit = app.get(AUDIT_PORT_KEY)
    if isinstance(audit, AuditService):  # an injected stand-in (tests) has no counters
        families += audit.metric_families()
    return families


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: the Prometheus text format, for an operator token of any role (a
    scraper's is made with ``operators add NAME --role metrics``)."""
    await require_operator(request, set(Role))
    registry = request.app[METRICS_REGISTRY_KEY]
    worker = request.app.get(WORKER_KEY)
    # One of several workers: every worker's values, labelled (gateway.web.workermetrics).
    body = generate_latest(registry) if worker is None else await render(registry, worker)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(
    settings: Settings,
    *,
    audit: AuditLog | None = None,
    trust_list: TrustList | None = None,
    clock: Clock | None = None,
) -> web.Application:
    """Build the gateway application.

    ``audit``, ``trust_list`` and ``clock`` may be injected (tests); otherwise the
    audit log is opened from the settings, the trust list read from
    ``settings.trust_list_file`` (or the data folder's ``trust-list.json``), and
    time is the system clock.
    """
    registry = CollectorRegistry()
    observer = HttpObserver(registry, access_log=settings.access_log)
    balance = BalanceHolder()
    app = web.Application(
        middlewares=[make_request_middleware(observer, balance)],
        client_max_size=settings.max_batch_body_bytes,
        handler_args={"max_field_size": MAX_HEADER_FIELD_BYTES},
    )
    app[SETTINGS_KEY] = settings
    app[BALANCE_KEY] = balance
    app[METRICS_REGISTRY_KEY] = registry
    now = clock or utc_now
    registry.register(GatewayCollector(lambda: _service_metrics(app, now())))
    app[READINESS_KEY] = {}
    app[JWKS_KEY] = []

    async def identities_ctx(app: web.Application) -> AsyncIterator[None]:
        store = IdentityStore(settings.data_dir, postgres_dsn=settings.postgres_dsn,
                              clock=clock or utc_now)
        await store.open()
        app[IDENTITIES_KEY] = store
        app[READINESS_KEY]["identities"] = store.ping
        yield
        await store.close()

    async def audit_ctx(app: web.Application) -> AsyncIterator[None]:
        if audit is not None:
            app[AUDIT_PORT_KEY] = audit
            yield
            return
        from gateway.audit import audit_ctx as real_audit_ctx  # noqa: PLC0415 - only when not injected

        async for _ in real_audit_ctx(app):
            app[AUDIT_PORT_KEY] = app[AUDIT_KEY]
            app[READINESS_KEY]["audit"] = app[AUDIT_KEY].ping
            yield

    async def trust_ctx(app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        receipt_keys = await loop.run_in_executor(
            None, lambda: published_keys(settings.data_dir, "receipt", alg="ES256",
                                         kid_prefix=f"{settings.gateway_id}-receipt"))
        receipt_key = receipt_keys[0]
        app[JWKS_KEY].extend(receipt_keys)
        state = app[TRUST_KEY]  # made by gateway.trustlist.service, kept current by its watcher
        fetcher = StatusFetcher(timeout_s=settings.status_fetch_timeout_s,
                                max_bytes=settings.status_max_bytes,
                                retry_after_s=settings.status_retry_after_s)
        await fetcher.start()
        redis_client = None
        cache = None
        if settings.cache_enabled:
            metrics = CacheMetrics()
            redis_tier = None
            if settings.redis_url:
                redis_client = make_redis_client(settings.redis_url,
                                                 timeout_s=settings.redis_timeout_s)
                redis_tier = RedisTier(redis_client, metrics)
                app[READINESS_KEY]["redis"] = redis_tier.ping
            cache = VerdictCache(MemoryTier(settings.cache_max_entries), redis_tier, metrics)
        app[VERIFICATION_KEY] = VerificationService(
            trust=state, status=fetcher, receipts=receipt_key, audit=app[AUDIT_PORT_KEY],
            gateway_id=settings.gateway_id, clock=clock or utc_now,
            matters=app.get(REGISTRY_KEY), cache=cache,
            cache_max_ttl_s=settings.cache_max_ttl_s, receipt_form=settings.receipt_form,
        )
        yield
        await fetcher.close()
        if cache is not None and cache.redis is not None:
            await cache.redis.close()
        if redis_client is not None:
            await redis_client.aclose()

    # The registry loads before trust_ctx, which hands it to the verification service.
    app.cleanup_ctx.extend([identities_ctx, audit_ctx])
    setup_witness(app)  # its cleanup_ctx after the audit log's: it reads the checkpoints
    setup_matters(app, clock=clock)
    # The trust-list store opens first and provides app[TRUST_KEY] to trust_ctx.
    setup_trustlists(app, trust_list=trust_list, clock=clock)
    app.cleanup_ctx.append(trust_ctx)
    # Partner queries read TRUST_KEY, JWKS_KEY and the audit port: after trust_ctx.
    setup_partner(app, clock=clock)
    # Cases read VERIFICATION_KEY and REGISTRY_KEY: after trust_ctx too.
    setup_cases(app, clock=clock)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/.well-known/jwks.json", jwks)
    app.router.add_get("/metrics", metrics)
    setup_verify_routes(app)
    setup_audit_routes(app)
    setup_credential_routes(app)
    setup_console(app)
    apidocs.setup(app)
    return app
