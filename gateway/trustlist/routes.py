"""``/v1/admin/``: the operators' API for the trust list.

Roles (spec/http-api.md): every operator role reads; ``operator`` and
``approver`` propose; only an ``approver`` approves, rejects or imports, and
never on a proposal of their own; an ``auditor`` changes nothing. Missing or
unknown credentials, and local systems' keys, are 401.

* GET trust-list, trust-list/versions, trust-list/versions/{v}, trust-list/diff,
  trust-list/export (``?alg=SM2SM3``: signed with the SM2 trust-list key), proposals,
  proposals/{id}, alerts: any operator role;
* POST proposals: operator, approver;
* POST proposals/{id}/approve, proposals/{id}/reject, trust-list/import: approver.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from gateway.infra.redislink import redis_client
from gateway.trustlist.alerts import trust_alerts
from gateway.trustlist.service import (
    APPROVERS,
    PROPOSERS,
    READERS,
    ProposalStatus,
    TrustListService,
    TrustWatcher,
    export_keys,
    trusted_signers,
)
from gateway.trustlist.state import TrustState
from gateway.trustlist.sync import RedisTrustSync
from gateway.web.appkeys import (
    AUDIT_PORT_KEY,
    JWKS_KEY,
    READINESS_KEY,
    SETTINGS_KEY,
    TRUST_KEY,
    TRUSTLISTS_KEY,
    VERIFICATION_KEY,
)
from gateway.web.auth import require_operator
from gateway.web.httpjson import json_response, read_json
from gateway.web.problems import Problem
from trust import (
    TRUSTLIST_TYP,
    Alg,
    TrustList,
    diff_documents,
)

__all__ = ["setup_routes"]


def _service(request: web.Request) -> TrustListService:
    return request.app[TRUSTLISTS_KEY]


async def _body(request: web.Request) -> dict[str, Any]:
    body = await read_json(request, request.app[SETTINGS_KEY].max_body_bytes)
    if not isinstance(body, dict):
        raise Problem(400, "Bad request", "body must be a JSON object")
    return body


MAX_ALERT_DAYS = 3650


def _int_param(request: web.Request, name: str, default: int | None = None, *,
               maximum: int = 2**62) -> int:
    """A non-negative integer parameter (query or path), at most ``maximum``."""
    raw = request.query.get(name) or request.match_info.get(name)
    if raw is None:
        if default is None:
            raise Problem(400, "Bad request", f"{name} is required")
        return default
    try:
        value = int(raw) if len(raw) <= 20 else -1
    except ValueError as exc:
        raise Problem(400, "Bad request", f"{name} must be an integer") from exc
    if not 0 <= value <= maximum:
        raise Problem(400, "Bad request", f"{name} must be an integer from 0 to {maximum}")
    return value


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or len(value) > 2000):
        raise Problem(400, "Bad request", f"{name} must be a string of at most 2000 characters")
    return value


# -- reads ---------------------------------------------------------------------------------


async def get_trust_list(request: web.Request) -> web.Response:
    """GET /v1/admin/trust-list: the current document."""
    await require_operator(request, READERS)
    row = await _service(request).current()
    return web.Response(body=orjson.dumps(row.document, option=orjson.OPT_APPEND_NEWLINE),
                        content_type="application/json",
                        headers={"ETag": f'"{row.sha256}"',
                                 "X-Trust-List-Version": str(row.version)})


async def get_versions(request: web.Request) -> web.Response:
    """GET /v1/admin/trust-list/versions: every kept version, oldest first."""
    await require_operator(request, READERS)
    rows = await _service(request).history()
    return json_response({"versions": [r.info() for r in rows]})


async def get_version(request: web.Request) -> web.Response:
    """GET /v1/admin/trust-list/versions/{v}: one version with its document."""
    await require_operator(request, READERS)
    row = await _service(request).version(_int_param(request, "v"))
    return json_response({**row.info(), "document": row.document})


async def get_diff(request: web.Request) -> web.Response:
    """GET /v1/admin/trust-list/diff?from=&to=: what changed between two versions."""
    await require_operator(request, READERS)
    service = _service(request)
    current = await service.current()
    to = _int_param(request, "to", current.version)
    start = _int_param(request, "from", max(to - 1, 0))
    old, new = await service.version(start), await service.version(to)
    entries = diff_documents(old.document, new.document)
    return json_response({"from": start, "to": to,
                          "changes": [e.to_json() for e in entries]})


async def get_export(request: web.Request) -> web.Response:
    """GET /v1/admin/trust-list/export[?version=][&alg=]: the signed ``trustlist+jwt``,
    signed EdDSA, or SM2SM3 (``alg=SM2SM3``) for a partner whose agreement asks for SM2."""
    await require_operator(request, READERS)
    service = _service(request)
    raw = request.query.get("version")
    version = _int_param(request, "version") if raw is not None else None
    raw_alg = request.query.get("alg", Alg.EDDSA.value)
    alg = next((a for a in service.export_algs if a.value == raw_alg), None)
    if alg is None:
        names = ", ".join(a.value for a in service.export_algs)
        raise Problem(400, "Bad request", f"alg {raw_alg!r} is not one of {names}")
    token = await service.export(version, alg)
    return web.Response(text=token, content_type=f"application/{TRUSTLIST_TYP}")


async def list_proposals(request: web.Request) -> web.Response:
    """GET /v1/admin/proposals[?status=]: proposals, newest first."""
    await require_operator(request, READERS)
    raw = request.query.get("status")
    try:
        status = ProposalStatus(raw) if raw else None
    except ValueError as exc:
        raise Problem(400, "Bad request", f"status {raw!r} is not a proposal status") from exc
    service = _service(request)
    found = await service.proposals(status)
    required = service.approvals_required
    return json_response({"proposals": [p.to_json(required) for p in found]})


async def get_proposal(request: web.Request) -> web.Response:
    """GET /v1/admin/proposals/{id}."""
    await require_operator(request, READERS)
    service = _service(request)
    proposal = await service.proposal(request.match_info["id"])
    return json_response(proposal.to_json(service.approvals_required))


async def get_alerts(request: web.Request) -> web.Response:
    """GET /v1/admin/alerts[?days=]: anchors expiring soon, a list near or past next_update."""
    await require_operator(request, READERS)
    settings = request.app[SETTINGS_KEY]
    days = _int_param(request, "days", settings.admin.expiry_alert_days, maximum=MAX_ALERT_DAYS)
    service = _service(request)
    assert service.state is not None
    now = service.clock()
    verification = request.app.get(VERIFICATION_KEY)
    alerts = trust_alerts(service.state.snapshot.trust_list, now, days,
                          None if verification is None else verification.status)
    pending = await service.proposals(ProposalStatus.PENDING)
    if pending:
        alerts.append({"kind": "proposals-pending", "count": len(pending),
                       "ids": [p.id for p in pending]})
    return json_response({"at": _iso(now), "days": days, "alerts": alerts})


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc_now() -> datetime:
    """The system clock, in UTC."""
    return datetime.now(UTC)


# -- writes --------------------------------------------------------------------------------


async def post_proposal(request: web.Request) -> web.Response:
    """POST /v1/admin/proposals ``{"changes": [...], "note": "..."}``: 201, pending."""
    identity = await require_operator(request, PROPOSERS)
    body = await _body(request)
    if "changes" not in body:
        raise Problem(400, "Bad request", "changes is required")
    service = _service(request)
    proposal = await service.propose(identity.name, body["changes"], _text(body, "note"))
    return json_response(proposal.to_json(service.approvals_required), status=201)


async def _vote(request: web.Request, *, approve: bool, comment_key: str) -> web.Response:
    identity = await require_operator(request, APPROVERS)
    body = await _body(request) if request.can_read_body else {}
    service = _service(request)
    proposal = await service.vote(identity.name, request.match_info["id"], approve=approve,
                                  comment=_text(body, comment_key))
    return json_response(proposal.to_json(service.approvals_required))


async def post_approve(request: web.Request) -> web.Response:
    """POST /v1/admin/proposals/{id}/approve ``{"comment": ...}``."""
    return await _vote(request, approve=True, comment_key="comment")


async def post_reject(request: web.Request) -> web.Response:
    """POST /v1/admin/proposals/{id}/reject ``{"reason": ...}``."""
    return await _vote(request, approve=False, comment_key="reason")


async def post_import(request: web.Request) -> web.Response:
    """POST /v1/admin/trust-list/import: a signed export (raw, or ``{"jws": ...}``)."""
    identity = await require_operator(request, APPROVERS)
    limit = request.app[SETTINGS_KEY].max_batch_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise Problem(413, "Payload too large", f"request body exceeds {limit} bytes")
    raw = (await request.read()).strip()
    token: object = raw.decode("ascii", "replace")
    if raw[:1] == b"{":
        try:
            token = orjson.loads(raw).get("jws")
        except (orjson.JSONDecodeError, AttributeError) as exc:
            raise Problem(400, "Bad request", "body must be a trustlist+jwt or {\"jws\": ...}"
                          ) from exc
    if not isinstance(token, str) or not token:
        raise Problem(400, "Bad request", "body must be a trustlist+jwt or {\"jws\": ...}")
    outcome = await _service(request).import_signed(identity.name, token)
    return json_response({**outcome.version.info(), "imported": outcome.imported},
                         status=201 if outcome.imported else 200)


def setup_routes(app: web.Application) -> None:
    """Add the ``/v1/admin/`` routes."""
    base = "/v1/admin"
    app.router.add_get(f"{base}/trust-list", get_trust_list)
    app.router.add_get(f"{base}/trust-list/versions", get_versions)
    app.router.add_get(f"{base}/trust-list/versions/{{v}}", get_version)
    app.router.add_get(f"{base}/trust-list/diff", get_diff)
    app.router.add_get(f"{base}/trust-list/export", get_export)
    app.router.add_post(f"{base}/trust-list/import", post_import)
    app.router.add_get(f"{base}/proposals", list_proposals)
    app.router.add_post(f"{base}/proposals", post_proposal)
    app.router.add_get(f"{base}/proposals/{{id}}", get_proposal)
    app.router.add_post(f"{base}/proposals/{{id}}/approve", post_approve)
    app.router.add_post(f"{base}/proposals/{{id}}/reject", post_reject)
    app.router.add_get(f"{base}/alerts", get_alerts)


# -- wiring --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Injected:
    """What ``create_app`` hands the trust-list context: its list (tests) and its clock."""

    trust_list: TrustList | None
    clock: Callable[[], datetime]


_INJECTED_KEY: web.AppKey[_Injected] = web.AppKey("trustlists_injected")


async def trustlists_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: open the store, reconcile start-up, serve, watch; close on cleanup.

    Sets ``app[TRUST_KEY]`` when it runs first (the intended wiring); when the
    app's ``trust_ctx`` already made the state, it swaps the store's list in.
    """

    settings = app[SETTINGS_KEY]
    loop = asyncio.get_running_loop()
    key, sm2_key = await loop.run_in_executor(None, export_keys, settings)
    own = [k for k in (key, sm2_key) if k is not None]
    signers = await loop.run_in_executor(
        None, trusted_signers, settings.data_dir, settings.admin.trust_list_signers, own)
    service = TrustListService(settings=settings, audit=app[AUDIT_PORT_KEY],
                               clock=app[_INJECTED_KEY].clock, via_cli=False, signing_key=key,
                               sm2_signing_key=sm2_key, signers=signers)
    try:
        served = await service.start(app[_INJECTED_KEY].trust_list)
    except BaseException:
        await service.close()
        raise
    state = app.get(TRUST_KEY)
    if state is None:
        state = TrustState(served, clock_skew_s=settings.clock_skew_s)
        app[TRUST_KEY] = state
    elif served.version >= state.snapshot.trust_list.version:
        state.replace(served)
    service.state = state
    app[TRUSTLISTS_KEY] = service
    app[JWKS_KEY].extend(own)

    async def ping() -> None:
        await service.current_version()

    app[READINESS_KEY]["trust-list"] = ping
    watcher = TrustWatcher(service, state)
    watcher.start()
    sync: RedisTrustSync | None = None
    client = None
    if settings.redis_url:
        # Pub/sub connections block in reads: no socket timeout for this client.
        client = redis_client(settings.redis_url, timeout_s=None)
        sync = RedisTrustSync(client, served=lambda: state.snapshot.trust_list.version,
                              poke=watcher.check)
        service.on_applied = sync.announce
        sync.start()
    try:
        yield
    finally:
        if sync is not None:
            await sync.stop()
        if client is not None:
            await client.aclose()
        await watcher.stop()
        await service.close()


def setup(app: web.Application, *, trust_list: TrustList | None = None,
          clock: Callable[[], datetime] | None = None) -> None:
    """Add the trust-list store (cleanup ctx) and the ``/v1/admin/`` routes.

    ``trust_list`` is ``create_app``'s injected list (tests), reconciled with
    the store as ``--trust-list`` would be; ``clock`` its clock (default: the
    system's).
    """
    if _INJECTED_KEY in app:
        return  # already set up (idempotent, so tests may call it on any app)
    app[_INJECTED_KEY] = _Injected(trust_list, clock or _utc_now)
    app.cleanup_ctx.append(trustlists_ctx)
    setup_routes(app)
