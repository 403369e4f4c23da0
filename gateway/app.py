"""The application factory: ``create_app(settings) -> web.Application``.

Every long-lived resource (stores, keys, client sessions, the audit writer) is
owned by a ``cleanup_ctx`` entry, opened in order at start-up and closed in
reverse order after in-flight requests have drained.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import orjson
from aiohttp import web

from gateway.api_admin import trust_alerts
from gateway.api_partner import PARTNER_KEY
from gateway.api_partner import setup as setup_partner
from gateway.api_verify import setup_routes as setup_verify_routes
from gateway.appkeys import (
    AUDIT_KEY,
    AUDIT_PORT_KEY,
    IDENTITIES_KEY,
    JWKS_KEY,
    READINESS_KEY,
    SETTINGS_KEY,
    TRUST_KEY,
    VERIFICATION_KEY,
)
from gateway.audit.event import AuditLog
from gateway.audit.routes import setup_routes as setup_audit_routes
from gateway.cache import CacheMetrics, MemoryTier, RedisTier, VerdictCache
from gateway.cache import redis_client as make_redis_client
from gateway.identity import IdentityStore
from gateway.matters import REGISTRY_KEY
from gateway.matters import setup as setup_matters
from gateway.middleware import request_middleware
from gateway.partner import MAX_TOKEN_BYTES
from gateway.settings import Settings
from gateway.signing import published_keys
from gateway.status_fetch import StatusFetcher
from gateway.trustlists import setup as setup_trustlists
from gateway.verification import Clock, VerificationService, utc_now
from trust import TrustList

__all__ = ["create_app"]

ALERT_DAYS = 30
"""Anchors whose window ends within this many days count as alerts in /metrics."""

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


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: counters in the Prometheus text format."""
    service = request.app[VERIFICATION_KEY]
    lines = ["# TYPE ecert_verifications_total counter"]
    lines += [f'ecert_verifications_total{{indication="{k}"}} {v}'
              for k, v in sorted(service.outcomes.items())]
    lines.append("# TYPE ecert_cache_events_total counter")
    if service.cache is not None:
        lines += [f'ecert_cache_events_total{{tier="{tier}",event="{event}"}} {count}'
                  for (tier, event), count in sorted(service.cache.metrics.counts.items())]
        lines.append(f"ecert_cache_memory_entries {len(service.cache.memory)}")
    lines.append("# TYPE ecert_status_fetches_total counter")
    lines.append(f"ecert_status_fetches_total {service.status.fetches}")
    lines.append(f"ecert_status_fetch_failures_total {service.status.failures}")
    trust_list = request.app[TRUST_KEY].snapshot.trust_list
    lines.append(f"ecert_trust_list_version {trust_list.version}")
    lines.append("# TYPE ecert_alerts gauge")
    counts: dict[str, int] = {}
    for alert in trust_alerts(trust_list, datetime.now(UTC), ALERT_DAYS, service.status):
        counts[alert["kind"]] = counts.get(alert["kind"], 0) + 1
    lines += [f'ecert_alerts{{kind="{kind}"}} {n}' for kind, n in sorted(counts.items())]
    partner = request.app.get(PARTNER_KEY)
    if partner is not None:
        store = partner.store
        lines.append("# TYPE ecert_licence_memory_events_total counter")
        lines += [f'ecert_licence_memory_events_total{{event="{event}"}} {n}'
                  for event, n in sorted(store.memory_counts.items())]
        lines.append(f"ecert_licence_memory_entries {store.remembered}")
        lines.append("# TYPE ecert_crypto_thread_calls_total counter")
        lines.append(f"ecert_crypto_thread_calls_total {partner.crypto.calls}")
        lines.append("# TYPE ecert_crypto_thread_batches_total counter")
        lines.append(f"ecert_crypto_thread_batches_total {partner.crypto.batches}")
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


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
    app = web.Application(
        middlewares=[request_middleware],
        client_max_size=settings.max_batch_body_bytes,
        handler_args={"max_field_size": MAX_HEADER_FIELD_BYTES},
    )
    app[SETTINGS_KEY] = settings
    app[READINESS_KEY] = {}
    app[JWKS_KEY] = []

    async def identities_ctx(app: web.Application) -> AsyncIterator[None]:
        store = IdentityStore(settings.data_dir)
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
        state = app[TRUST_KEY]  # made by gateway.trustlists, kept current by its watcher
        fetcher = StatusFetcher(timeout_s=settings.status_fetch_timeout_s,
                                max_bytes=settings.status_max_bytes)
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
            cache_max_ttl_s=settings.cache_max_ttl_s,
        )
        yield
        await fetcher.close()
        if cache is not None and cache.redis is not None:
            await cache.redis.close()
        if redis_client is not None:
            await redis_client.aclose()

    # The registry loads before trust_ctx, which hands it to the verification service.
    app.cleanup_ctx.extend([identities_ctx, audit_ctx])
    setup_matters(app)
    # The trust-list store opens first and provides app[TRUST_KEY] to trust_ctx.
    setup_trustlists(app, trust_list=trust_list)
    app.cleanup_ctx.append(trust_ctx)
    # Partner queries read TRUST_KEY, JWKS_KEY and the audit port: after trust_ctx.
    setup_partner(app, clock=clock)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/.well-known/jwks.json", jwks)
    app.router.add_get("/metrics", metrics)
    setup_verify_routes(app)
    setup_audit_routes(app)
    return app
