"""Partner regions query Huzhou's licences; Huzhou publishes their status.

* ``POST /v1/partner/licences/query``  a partner's signed query (http-api.md)
* ``GET  /v1/status/{name}``           Huzhou's status list (``statuslist+jwt``, public)

``setup(app)`` wires both and a ``cleanup_ctx`` entry that opens the licence
store, the holder keyring, Huzhou's ``licence-signing`` and ``status-signing``
keys (appended to ``/.well-known/jwks.json``), the replay cache (Redis when
``redis_url`` is set) and the per-partner rate limiter. It must run after
``create_app`` has added its trust context (it reads ``TRUST_KEY``).

A query is answered in this order, each step refusing with its own answer:

1. stale trust list: 503 (TRY_LATER), cn 99
2. request token (``gateway.partner.checks.check_request_token``): 401, cn 11
3. partner suspended: 403, cn 100, ``sub_indication`` TRY_LATER
4. ``jti`` seen before: 401, cn 11 (replay cache down: 503, cn 99)
5. rate limit: 429 with ``Retry-After``, cn 99 (only authenticated, fresh requests
   are charged; a 429 has spent its ``jti``)
6. body fields (JSON, ``use_cause`` of 1..200 chars, ``matter`` of the partner's own
   region, an identifier or holder_code + holder_code_type + type_code): 400, cn 12
7. agreement (licence type, partner's matter): 403, cn 100
8. type not published by Huzhou: 200, cn 13
9. lookup: 200 with cn 0 (licences signed now), 10, 21, 22 or 23

Every query, refused ones included, has a durable audit record before it is
answered (a failed append is a 503). Holder codes travel to the audit log only
in ``personal``, which it pseudonymises; nothing here logs request bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import zlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

import orjson
from aiohttp import web

from gateway.audit.event import ActorKind, AuditEvent, AuditLog, EventType
from gateway.infra.crypto_thread import CryptoThread
from gateway.infra.metrics import MetricFamily
from gateway.infra.signing import SigningKey, load_or_create_key, published_keys
from gateway.licences.store import (
    STATUS_LIST_NAME,
    HolderKeyring,
    LicenceState,
    LicenceStore,
    LicenceStoreError,
    StoredLicence,
    open_store,
)
from gateway.matters.service import MatterService
from gateway.partner.checks import (
    REQUEST_SKEW_S,
    AgreementError,
    MemoryReplayCache,
    RateLimiter,
    RedisReplayCache,
    ReplayCache,
    ReplayCacheUnavailableError,
    RequestTokenError,
    check_agreement,
    check_request_token_async,
)
from gateway.settings import Settings
from gateway.verification.cache import redis_client
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
from registry import RegistryError, Relationship
from trust import (
    CHINA_TZ,
    IdentifierError,
    PartnerStatus,
    TrustList,
    b64url_encode,
    day_start_s,
    parse_identifier,
)

__all__ = [
    "CN_MESSAGES",
    "PARTNER_KEY",
    "QUERY_PATH",
    "STATUS_PATH",
    "PartnerService",
    "setup",
]

MATTER_MEMO_SIZE = 4096
"""Matter translations remembered by the partner service (region, code, day)."""

QUERY_PATH = "/v1/partner/licences/query"
STATUS_PATH = "/v1/status/{name}"
MAX_QUERY_BODY = 64 * 1024
MAX_USE_CAUSE = 200
MAX_FIELD = 256
STATUS_BITS = 2
STATUS_MIN_ENTRIES = 16384
"""Every list encodes at least this many entries, so its length says little (herd privacy)."""
STATUS_TTL_S = 300
"""``ttl`` of the status list token: how long a partner may keep it before asking again."""
STATUS_LIFETIME_S = 86400
"""``exp - iat`` of the status list token."""
STATUS_REFRESH_S = 30.0
"""A built status list token is served for this long before it is rebuilt from the store."""

CN_MESSAGES: Mapping[int, str] = {
    0: "found",
    10: "no such licence",
    11: "authentication failed",
    12: "a required parameter is missing or malformed",
    13: "licence type unknown or not published by Huzhou",
    21: "licence revoked or cancelled",
    22: "licence expired",
    23: "licence suspended (restricted)",
    99: "other error",
    100: "caller not permitted for this licence type or matter",
}
_CHALLENGE = 'Bearer realm="ecert-gateway", error="invalid_token"'
_CODE_TYPE = re.compile(r"\A[0-9]{3}\Z")

Clock = Callable[[], datetime]

_log = logging.getLogger("gateway.partner.checks")


def _utc_now() -> datetime:
    return datetime.now(UTC)


# ----------------------------------------------------------------------- the request


@dataclass(slots=True)
class _Note:
    """What the audit record of one query will say, filled in as the query goes."""

    at: datetime
    started: float
    request_id: str | None
    source: str | None
    actor: str = "unauthenticated"
    partner_region: str | None = None
    trust_list_version: int | None = None
    use_cause: str | None = None
    matter_before: dict[str, str] | None = None
    matters_after: tuple[Mapping[str, str], ...] = ()
    licence_identifier: str | None = None
    licence_type: str | None = None
    issuer_region: str | None = None
    personal: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    cn_status: int | None = None
    http_status: int = 500

    def event(self) -> AuditEvent:
        """The audit event; the note's dicts go into it as they are (the note is done)."""
        self.details["http_status"] = self.http_status
        outcome = ("ok" if self.http_status < 400
                   else "error" if self.http_status >= 500 else "refused")
        return AuditEvent(
            event_type=EventType.PARTNER_QUERY,
            actor_kind=ActorKind.PARTNER,
            actor_id=self.actor,
            at=self.at,
            source_addr=self.source,
            outcome=outcome,
            cn_status=self.cn_status,
            use_cause=self.use_cause,
            matter_before=self.matter_before,
            matters_after=self.matters_after,
            licence_identifier=self.licence_identifier,
            licence_type=self.licence_type,
            issuer_region=self.issuer_region,
            partner_region=self.partner_region,
            trust_list_version=self.trust_list_version,
            latency_ms=round((time.perf_counter() - self.started) * 1000, 3),
            request_id=self.request_id,
            personal=self.personal,
            details=self.details,
        )


class _Matter(NamedTuple):
    answer: dict[str, Any]
    """``{"huzhou": [...], "partner": [...]}`` as the answer carries it (never mutated)."""
    audited: tuple[Mapping[str, str], ...]
    """The Huzhou matters it maps to, as the audit record's ``matters_after``."""


class _Query(NamedTuple):
    use_cause: str
    matter_region: str
    matter_code: str
    type_code: str
    identifier: str | None = None
    holder_code: str | None = None
    holder_code_type: str | None = None


def _problem(status: int, title: str, detail: str, cn_status: int, *, kind: str | None = None,
             headers: Mapping[str, str] | None = None, **extra: Any) -> Problem:
    return Problem(status, title, detail, kind=kind, headers=headers,
                   extra={"cn_status": cn_status, **extra})


def _unauthorised(detail: str) -> Problem:
    return _problem(401, "Unauthorized", detail, 11, kind="request-token",
                    headers={"WWW-Authenticate": _CHALLENGE})


def _missing(detail: str) -> Problem:
    return _problem(400, "Bad request", detail, 12, kind="bad-request")


def _text(value: object, name: str, limit: int = MAX_FIELD) -> str:
    """A required text field, stripped; a 400 (cn 12) when missing, blank or too long."""
    if not isinstance(value, str) or not value.strip():
        raise _missing(f"{name} is required")
    if len(value) > limit:
        raise _missing(f"{name} is longer than {limit} characters")
    return value.strip()


_HOLDER_KEYS = ("holder_code", "holder_code_type", "type_code")


def _parse_query(raw: bytes, partner_region: str, note: _Note) -> _Query:
    """The query in the body, or a 400 (cn 12); fills ``note`` as fields are read."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _missing("body is not JSON") from exc
    if not isinstance(body, dict):
        raise _missing("body must be a JSON object")
    get = body.get
    matter, use_cause = get("matter"), get("use_cause")
    region = code = None
    if isinstance(matter, dict):
        region, code = matter.get("region"), matter.get("code")
        if isinstance(region, str) and isinstance(code, str):
            note.matter_before = {"region": region[:16], "code": code[:128]}
    if isinstance(use_cause, str):
        note.use_cause = use_cause[:MAX_USE_CAUSE]
    use_cause = _text(use_cause, "use_cause", MAX_USE_CAUSE)
    if not isinstance(matter, dict):
        raise _missing("matter is required: {\"region\": ..., \"code\": ...}")
    matter_region = _text(region, "region", 16)
    matter_code = _text(code, "code", 128)
    if matter_region != partner_region:
        raise _missing(f"matter.region must be the partner's own region {partner_region}")
    identifier = get("identifier")
    holder = [get(k) for k in _HOLDER_KEYS]
    given_holder = holder != [None, None, None]
    if identifier is not None:
        if given_holder:
            raise _missing("give either identifier or holder_code + holder_code_type + type_code")
        text = _text(identifier, "identifier")
        note.licence_identifier = text
        note.details["query"] = "identifier"
        try:
            parsed = parse_identifier(text)
        except IdentifierError as exc:
            raise _missing(f"identifier: {exc}") from exc
        note.licence_type = parsed.type_code
        return _Query(use_cause, matter_region, matter_code, parsed.type_code, text)
    if not given_holder:
        raise _missing("identifier, or holder_code + holder_code_type + type_code, is required")
    note.details["query"] = "holder"
    raw_code, raw_type, raw_licence_type = holder
    if isinstance(raw_code, str):
        note.personal["holder_code"] = raw_code[:64]
    missing = [k for k, v in zip(_HOLDER_KEYS, holder, strict=True) if v is None]
    if missing:
        raise _missing(f"{', '.join(missing)} required with a holder query")
    holder_code = _text(raw_code, "holder_code", 64)
    code_type = _text(raw_type, "holder_code_type", 3)
    if not _CODE_TYPE.match(code_type):
        raise _missing("holder_code_type must be 3 digits (001 USCC, 111 身份证)")
    note.details["holder_code_type"] = code_type
    type_code = _text(raw_licence_type, "type_code", 64)
    note.licence_type = type_code
    return _Query(use_cause, matter_region, matter_code, type_code,
                  holder_code=holder_code, holder_code_type=code_type)


def _judge(licence: StoredLicence, today: date) -> int:
    """cn_status of one licence today: deliberate acts (21, 23) before expiry (22)."""
    if licence.state is LicenceState.REVOKED:
        return 21
    if licence.state is LicenceState.SUSPENDED:
        return 23
    until = licence.valid_until
    if until is not None and until < today:
        return 22
    return 0


def _lenient_matter(raw: bytes, note: _Note) -> None:
    """For the audit record of a refused token: the matter and cause the body names."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return
    if not isinstance(body, dict):
        return
    matter = body.get("matter")
    if isinstance(matter, dict) and isinstance(matter.get("region"), str) \
            and isinstance(matter.get("code"), str):
        note.matter_before = {"region": matter["region"][:16], "code": matter["code"][:128]}
    if isinstance(body.get("use_cause"), str):
        note.use_cause = body["use_cause"][:MAX_USE_CAUSE]


# ----------------------------------------------------------------------- the service


class PartnerService:
    """Answers partner queries from the licence store and signs what it hands out."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: LicenceStore,
        keyring: HolderKeyring,
        licence_key: SigningKey,
        status_key: SigningKey,
        replay: ReplayCache,
        limiter: RateLimiter,
        trust: Callable[[], TrustList],
        audit: AuditLog,
        matters: MatterService | None = None,
        crypto: CryptoThread | None = None,
        clock: Clock = _utc_now,
    ) -> None:
        self.settings = settings
        self.store = store
        self.keyring = keyring
        self.licence_key = licence_key
        self.crypto = crypto or CryptoThread(enabled=False)
        """Where the request token's signature is checked and licences are signed."""
        self._sign_licence_claims = licence_key.async_signer({"typ": "ecert+jwt"},
                                                             self.crypto.run)
        self.status_key = status_key
        self.replay = replay
        self.limiter = limiter
        self.trust = trust
        self.audit = audit
        self.matters = matters
        self._matter_memo: dict[tuple[str, str, date], _Matter] = {}
        self.clock = clock
        self.status_uri = f"{settings.public_base_url}/v1/status/{STATUS_LIST_NAME}"
        """The URI of Huzhou's status list as partners reach it: from the ``public_url``
        setting, never from a request (its Host header is the client's to choose)."""
        self._status_built: tuple[str, float] | None = None
        """The one signed status list served, and when it was built (monotonic)."""
        self._status_lock = asyncio.Lock()

    def metric_families(self) -> list[MetricFamily]:
        """The licence memory's events and size and the crypto thread's work, for
        ``/metrics``."""
        return [
            MetricFamily("ecert_licence_memory_events", "counter",
                         "Huzhou licence look-ups answered from memory or not, by event.",
                         [({"event": event}, n)
                          for event, n in sorted(self.store.memory_counts.items())]),
            MetricFamily("ecert_licence_memory_entries", "gauge",
                         "Huzhou licences held in memory.", [({}, self.store.remembered)]),
            MetricFamily("ecert_crypto_thread_calls", "counter",
                         "Signature operations on the crypto thread.", [({}, self.crypto.calls)]),
            MetricFamily("ecert_crypto_thread_batches", "counter",
                         "Hand-offs to the crypto thread.", [({}, self.crypto.batches)]),
        ]

    # -- helpers ---------------------------------------------------------------------------

    def _matter(self, region: str, code: str, today: date) -> _Matter:
        """The matter as answered and as audited (read-only: the registry does not change
        while the service runs, so answers are remembered)."""
        key = (region, code, today)
        found = self._matter_memo.get(key)
        if found is None:
            if len(self._matter_memo) >= MATTER_MEMO_SIZE:
                self._matter_memo.clear()
            huzhou, partner = self._translate_matter(region, code, today)
            found = self._matter_memo[key] = _Matter(
                {"huzhou": huzhou, "partner": partner},
                tuple({"region": m["region"], "code": m["code"]} for m in huzhou))
        return found

    def _translate_matter(self, region: str, code: str, today: date
                          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        partner: dict[str, Any] = {"region": region, "code": code}
        if self.matters is None:
            return [], [partner]
        with contextlib.suppress(RegistryError):
            partner["name"] = self.matters.lookup(region, code, at=today).name
        try:
            translation = self.matters.translate(region, code, self.matters.huzhou_region,
                                                 at=today)
        except RegistryError:
            return [], [partner]
        huzhou = [{"region": self.matters.huzhou_region, "code": m.code, "name": m.name,
                   "relationship": m.relationship.value, "path": list(m.path),
                   "maps": list(m.maps)}
                  for m in translation.matches if m.relationship is not Relationship.NOT_RELATED]
        return huzhou, [partner]

    async def sign_licence(self, licence: StoredLicence, *, iat: int, status_uri: str) -> str:
        """An ``ecert+jwt`` of one Huzhou licence (ecert-profile.md), signed now."""
        lic = licence.lic
        claims: dict[str, Any] = {"iss": self.settings.gateway_id, "jti": licence.identifier,
                                  "iat": iat}
        # valid_from/valid_until are Chinese calendar dates, valid_until inclusive.
        claims["nbf"] = day_start_s(date.fromisoformat(str(lic["valid_from"])))
        until = licence.valid_until
        if until is not None:
            claims["exp"] = day_start_s(until) + 86400
        # The stored dict may be shared with other queries (the store remembers licences):
        # it is serialised as it is, never changed.
        claims["lic"] = lic if type(lic) is dict else dict(lic)
        claims["status"] = {"status_list": {"idx": licence.status_idx, "uri": status_uri}}
        return await self._sign_licence_claims(claims)

    async def status_token(self) -> str:
        """Huzhou's status list as a ``statuslist+jwt`` (``sub`` = ``status_uri``), rebuilt
        at most every ``STATUS_REFRESH_S`` seconds."""
        cached = self._status_built
        if cached is not None and time.monotonic() - cached[1] < STATUS_REFRESH_S:
            return cached[0]
        async with self._status_lock:
            cached = self._status_built
            if cached is not None and time.monotonic() - cached[1] < STATUS_REFRESH_S:
                return cached[0]
            entries = await self.store.status_entries()
            size = max(entries.size, STATUS_MIN_ENTRIES)
            data = bytearray((size * STATUS_BITS + 7) // 8)
            for idx, value in entries.values.items():
                offset = idx * STATUS_BITS  # draft-ietf-oauth-status-list: LSB first
                data[offset // 8] |= value << (offset % 8)
            iat = int(self.clock().timestamp())
            claims = {"sub": self.status_uri, "iat": iat, "exp": iat + STATUS_LIFETIME_S,
                      "ttl": STATUS_TTL_S,
                      "status_list": {"bits": STATUS_BITS,
                                      "lst": b64url_encode(zlib.compress(bytes(data), 9))}}
            token = self.status_key.sign({"typ": "statuslist+jwt"}, claims)
            self._status_built = (token, time.monotonic())
            return token

    # -- the query -------------------------------------------------------------------------

    async def answer(self, request: web.Request, note: _Note) -> dict[str, Any]:
        """The 200 answer of a query, or a ``Problem``; ``note`` collects the audit facts."""
        if not declared_json(request):
            raise not_json(request)
        length = request.content_length
        if length is not None and length > MAX_QUERY_BODY:
            raise _problem(413, "Payload too large",
                           f"a partner query is at most {MAX_QUERY_BODY} bytes", 12)
        raw = await request.read()
        if len(raw) > MAX_QUERY_BODY:
            raise _problem(413, "Payload too large",
                           f"a partner query is at most {MAX_QUERY_BODY} bytes", 12)
        trust_list = self.trust()
        note.trust_list_version = trust_list.version
        at = note.at
        if trust_list.is_stale(at):
            raise _problem(503, "Trust data stale",
                           "the trust list is past its next_update; try later", 99,
                           kind="trust-list-stale", indication="INDETERMINATE",
                           sub_indication="TRY_LATER")
        token = bearer(request)
        if token is None:
            _lenient_matter(raw, note)
            raise _unauthorised("a partner request token (ecert-request+jwt) is required")
        now = int(at.timestamp())
        try:
            auth = await check_request_token_async(
                token, trust_list=trust_list, audience=self.settings.gateway_id,
                method=request.method, path=request.path, body=raw, now=now,
                run=self.crypto.run)
        except RequestTokenError as exc:
            note.details["claimed_iss"] = exc.claimed_iss
            _lenient_matter(raw, note)
            raise _unauthorised(exc.reason) from exc
        region = auth.partner.region_code
        note.actor = note.partner_region = region
        request[CALLER_KEY] = f"partner:{region}"
        details = note.details
        details["kid"] = auth.kid
        details["jti"] = auth.jti
        if auth.partner.status is not PartnerStatus.ACTIVE:
            _lenient_matter(raw, note)
            raise _problem(403, "Partner suspended",
                           f"partner {region} is suspended; try later", 100,
                           kind="partner-suspended", indication="INDETERMINATE",
                           sub_indication="TRY_LATER")
        try:
            fresh = await self.replay.first_use(auth.replay_key,
                                                auth.expires_at - now + REQUEST_SKEW_S)
        except ReplayCacheUnavailableError as exc:
            raise _problem(503, "Service unavailable",
                           "the replay cache cannot answer; try later", 99,
                           kind="replay-cache-unavailable") from exc
        if not fresh:
            _lenient_matter(raw, note)
            raise _unauthorised("jti was used before (replayed request token)")
        # Charged only now, after the jti: a replayed token (anyone who saw one may resend
        # it) costs the partner nothing, like a forged or an expired one.
        wait = self.limiter.take(region)
        if wait is not None:
            _lenient_matter(raw, note)
            raise _problem(429, "Too many requests",
                           f"partner {region} is over its rate limit", 99,
                           kind="rate-limited",
                           headers={"Retry-After": RateLimiter.retry_after(wait)})

        query = _parse_query(raw, region, note)
        today = at.astimezone(CHINA_TZ).date()
        matter, note.matters_after = self._matter(query.matter_region, query.matter_code, today)
        try:
            check_agreement(auth.partner, type_code=query.type_code,
                            matter_code=query.matter_code)
        except AgreementError as exc:
            raise _problem(403, "Out of agreement", exc.reason, 100,
                           kind="out-of-agreement") from exc
        try:
            pseudonyms: Sequence[str] = ()
            if query.identifier is None:
                assert query.holder_code is not None
                assert query.holder_code_type is not None
                pseudonyms = self.keyring.pseudonyms(query.holder_code_type, query.holder_code)
            published, candidates = await self.store.find(
                query.type_code, identifier=query.identifier, pseudonyms=pseudonyms)
            if not published:
                return self._result(13, [], matter)
        except LicenceStoreError as exc:
            raise _problem(503, "Service unavailable", "the licence store cannot answer", 99,
                           kind="licence-store-unavailable") from exc
        return await self._licences(candidates, matter, today=today, now=now, note=note)

    def _result(self, cn_status: int, licences: list[str],
                matter: Mapping[str, Any]) -> dict[str, Any]:
        return {"cn_status": cn_status, "message": CN_MESSAGES[cn_status],
                "licences": licences, "matter": matter}

    async def _licences(self, candidates: Sequence[StoredLicence], matter: Mapping[str, Any],
                        *, today: date, now: int, note: _Note
                        ) -> dict[str, Any]:
        if not candidates:
            return self._result(10, [], matter)
        note.issuer_region = self.settings.gateway_id
        judged = [(licence, _judge(licence, today)) for licence in candidates]
        valid = [licence for licence, cn in judged if cn == 0]
        if not valid:
            # Nothing valid: the most recently issued licence says why.
            latest = max(judged, key=lambda item: (item[0].issue_date, item[0].identifier))
            note.details["identifiers"] = [latest[0].identifier]
            if len(candidates) == 1:
                note.licence_identifier = latest[0].identifier
            return self._result(latest[1], [], matter)
        uri = self.status_uri
        if len(valid) == 1:
            tokens = [await self.sign_licence(valid[0], iat=now, status_uri=uri)]
        else:  # signed together: one hand-off to the crypto thread
            tokens = list(await asyncio.gather(*(
                self.sign_licence(licence, iat=now, status_uri=uri) for licence in valid)))
        note.details["identifiers"] = [licence.identifier for licence in valid]
        note.details["returned"] = len(tokens)
        if len(valid) == 1:
            note.licence_identifier = valid[0].identifier
        return self._result(0, tokens, matter)

    async def record(self, note: _Note) -> None:
        """Make the query's audit record durable (raises ``AuditUnavailableError``)."""
        await self.audit.append(note.event())


PARTNER_KEY = web.AppKey("partner", PartnerService)
"""The partner query service."""


# ----------------------------------------------------------------------- handlers


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE), status=status,
                        content_type="application/json",
                        headers={"Cache-Control": "no-store"})


async def query(request: web.Request) -> web.Response:
    """POST /v1/partner/licences/query."""
    service = request.app[PARTNER_KEY]
    note = _Note(at=service.clock(), started=time.perf_counter(),
                 request_id=request_id_of(request), source=request.remote)
    try:
        answer = await service.answer(request, note)
    except Problem as problem:
        note.http_status = problem.status
        cn = problem.extra.get("cn_status")
        note.cn_status = cn if isinstance(cn, int) else None
        note.details["reason"] = problem.detail
        await service.record(note)
        raise
    except Exception:
        note.http_status = 500
        note.cn_status = 99
        await service.record(note)
        raise
    note.http_status = 200
    note.cn_status = int(answer["cn_status"])
    await service.record(note)
    return _json(answer)


async def status_list(request: web.Request) -> web.Response:
    """GET /v1/status/{name}: Huzhou's status list, public."""
    if request.match_info["name"] != STATUS_LIST_NAME:
        raise Problem(404, "Not found", "no such status list")
    service = request.app[PARTNER_KEY]
    try:
        token = await service.status_token()
    except LicenceStoreError as exc:
        raise Problem(503, "Service unavailable", "the licence store cannot answer") from exc
    return web.Response(text=token, content_type="application/statuslist+jwt",
                        headers={"Cache-Control": f"public, max-age={int(STATUS_REFRESH_S)}"})


# ----------------------------------------------------------------------- wiring


def _rate_limits(settings: Settings) -> dict[str, tuple[float, int]]:
    """``[partner.rate_limits] "310000" = {per_s = 50, burst = 100}`` overrides."""
    return {region: (limit.per_s, limit.burst)
            for region, limit in settings.partner.rate_limits.items()}


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
            if settings.redis_url:
                replay = RedisReplayCache(redis_client(settings.redis_url, timeout_s=1.0))
                app[READINESS_KEY]["replay-cache"] = replay.ping
            else:
                replay = MemoryReplayCache()
            opened.push_async_callback(replay.close)
            app[READINESS_KEY]["licences"] = store.ping
            trust_state = app[TRUST_KEY]
            app[PARTNER_KEY] = PartnerService(
                settings=settings, store=store, keyring=keyring, licence_key=licence_key,
                status_key=status_key, replay=replay,
                limiter=RateLimiter(settings.partner_rate_per_s, settings.partner_rate_burst,
                                    limits=_rate_limits(settings)),
                trust=lambda: trust_state.snapshot.trust_list, audit=app[AUDIT_PORT_KEY],
                matters=app.get(REGISTRY_KEY), crypto=crypto, clock=clock or _utc_now,
            )
            yield

    app.cleanup_ctx.append(partner_ctx)
    app.router.add_post(QUERY_PATH, query)
    app.router.add_get(STATUS_PATH, status_list)
