"""The partner service: a partner region's signed query in, an outcome and its audit record out.

It knows nothing of HTTP. ``PartnerService.answer`` takes a ``QueryRequest`` of
plain values (method, path, the body's declared size and a function that reads
its bytes, the bearer token, whether the body was declared JSON, request id,
source address, time) and returns an ``Outcome``:

* ``Found``: the query was answered, with its national status code
  (docs/spec/verdicts.md, DOMAIN.md section 3): 0 with the licences, signed
  now, or 10, 13, 21, 22, 23;
* ``Refusal``: the query was refused; its ``kind`` says why, and fixes its code
  (11, 12, 99 or 100: ``CN_STATUS``), ``reason`` the detail;
* ``Failure``: an unexpected error stopped the query (cn 99); ``error`` holds it.

Every outcome carries the ``QueryFacts`` its audit record states;
``PartnerService.record`` makes that record durable, with the status the caller
answered with (``gateway.partner.routes`` maps outcomes to HTTP, and records
every query, refused ones included, before it answers).

A query is decided in this order, each step refusing with its own kind:

1. body not declared JSON: ``NOT_JSON``; over 64 KiB: ``TOO_LARGE`` (cn 12)
2. stale trust list: ``TRUST_LIST_STALE`` (cn 99)
3. request token (``trust.check_request_token``, its signature on the crypto
   thread): ``UNAUTHENTICATED`` (cn 11)
4. partner suspended: ``PARTNER_SUSPENDED`` (cn 100, try later)
5. ``jti`` seen before: ``REPLAYED`` (cn 11); the replay cache down:
   ``REPLAY_CACHE_UNAVAILABLE`` (cn 99)
6. rate limit: ``RATE_LIMITED`` (cn 99; only authenticated, fresh requests are
   charged, and a refused one has spent its ``jti``); 5 and 6 are one Redis call
   when both live in Redis (``gateway.partner.checks.admit``)
7. body fields (JSON, ``use_cause`` of 1..200 chars, ``matter`` of the partner's
   own region, an identifier or holder_code + holder_code_type + type_code):
   ``BAD_QUERY`` (cn 12)
8. agreement (licence type, partner's matter; ``trust.check_agreement``):
   ``OUT_OF_AGREEMENT`` (cn 100)
9. type not published by Huzhou: found, cn 13
10. lookup: found, cn 0 (licences signed now), 10, 21, 22 or 23; the licence store
    down: ``LICENCE_STORE_UNAVAILABLE`` (cn 99)

Holder codes travel to the audit log only in ``personal``, which it
pseudonymises; nothing here logs request bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from enum import StrEnum
from itertools import islice
from typing import Any, NamedTuple

import orjson

from gateway.audit.event import ActorKind, AuditEvent, AuditLog, EventType
from gateway.infra.crypto_thread import CryptoThread
from gateway.infra.metrics import MetricFamily
from gateway.infra.signing import SigningKey
from gateway.licences.store import (
    STATUS_LIST_NAME,
    HolderKeyring,
    LicenceState,
    LicenceStore,
    LicenceStoreError,
    StoredLicence,
)
from gateway.matters.service import MatterService
from gateway.partner.checks import (
    RateLimiter,
    ReplayCache,
    ReplayCacheUnavailableError,
    admit,
    check_request_token_async,
)
from gateway.settings import Settings
from registry import RegistryError, Relationship
from trust import (
    CHINA_TZ,
    REQUEST_SKEW_S,
    AgreementError,
    Alg,
    IdentifierError,
    Partner,
    PartnerStatus,
    RequestTokenError,
    TrustList,
    b64url_encode,
    check_agreement,
    day_start_s,
    parse_identifier,
)

__all__ = [
    "CN_MESSAGES",
    "CN_STATUS",
    "Clock",
    "MAX_QUERY_BODY",
    "Failure",
    "Found",
    "Outcome",
    "PartnerService",
    "QueryFacts",
    "QueryRequest",
    "Refusal",
    "RefusalKind",
    "SM2_STATUS_LIST_NAME",
]

MATTER_MEMO_SIZE = 4096
"""Matter translations remembered by the partner service (region, code, day)."""

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
SIGNED_REUSE_S = 60
"""A licence signed for one query is handed out again, as signed, to the queries of the
next this many seconds (its ``iat`` says when it was signed); a changed licence (the
store's row changed) or another status list is signed afresh, and so is everything
after a restart (the keys are loaded at start-up; nothing signed is kept on disk)."""
SIGNED_MAX = 20_000
"""Signed licences kept for reuse, at most (the store's default licence cache); past it the
oldest goes first."""
SIGNED_PRUNE_S = SIGNED_REUSE_S / 2
"""How often the partner context drops the signed licences no longer reusable, so that
none is held more than one and a half reuse windows after it was signed."""
SM2_STATUS_LIST_NAME = f"{STATUS_LIST_NAME}-sm2"
"""The same status list signed with Huzhou's SM2 key: where the licences answered to a
partner whose agreement says ``signing_alg: SM2SM3`` point."""

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
_CODE_TYPE = re.compile(r"\A[0-9]{3}\Z")

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


# ----------------------------------------------------------------------- in and out


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryRequest:
    """A partner query as it arrived, in plain values."""

    method: str
    path: str
    declared_size: int | None
    """The body's size as the request declared it (``Content-Length``), if it did."""
    read_body: Callable[[], Awaitable[bytes]]
    """Reads the body's exact bytes. Called once, and only when the body is declared JSON
    and not declared longer than ``MAX_QUERY_BODY``: a body that cannot be read is a
    ``Failure``, recorded like any other outcome."""
    token: str | None
    """The bearer token, if the request had one."""
    content_type_problem: str | None
    """Why the body is not declared JSON; None when it is."""
    request_id: str | None
    source: str | None
    """The client's address, for the audit record."""
    at: datetime
    """When the query arrived: it is judged at this time."""
    received: float = field(default_factory=time.perf_counter)
    """``time.perf_counter()`` when it arrived: the audit record's latency counts from it."""


class RefusalKind(StrEnum):
    """Why a query was refused."""

    NOT_JSON = "not-json"
    TOO_LARGE = "too-large"
    TRUST_LIST_STALE = "trust-list-stale"
    UNAUTHENTICATED = "unauthenticated"
    """No request token, or one that does not authenticate this request."""
    PARTNER_SUSPENDED = "partner-suspended"
    REPLAYED = "replayed"
    REPLAY_CACHE_UNAVAILABLE = "replay-cache-unavailable"
    RATE_LIMITED = "rate-limited"
    BAD_QUERY = "bad-query"
    OUT_OF_AGREEMENT = "out-of-agreement"
    LICENCE_STORE_UNAVAILABLE = "licence-store-unavailable"


CN_STATUS: Mapping[RefusalKind, int] = {
    RefusalKind.NOT_JSON: 12,
    RefusalKind.TOO_LARGE: 12,
    RefusalKind.TRUST_LIST_STALE: 99,
    RefusalKind.UNAUTHENTICATED: 11,
    RefusalKind.PARTNER_SUSPENDED: 100,
    RefusalKind.REPLAYED: 11,
    RefusalKind.REPLAY_CACHE_UNAVAILABLE: 99,
    RefusalKind.RATE_LIMITED: 99,
    RefusalKind.BAD_QUERY: 12,
    RefusalKind.OUT_OF_AGREEMENT: 100,
    RefusalKind.LICENCE_STORE_UNAVAILABLE: 99,
}
"""The national status code of each refusal (DOMAIN.md section 3)."""


@dataclass(slots=True)
class QueryFacts:
    """What the audit record of one query says, filled in as the query is decided."""

    at: datetime
    started: float
    request_id: str | None
    source: str | None
    actor: str = "unauthenticated"
    partner_region: str | None = None
    """The authenticated partner's region (None until the request token passed)."""
    trust_list_version: int | None = None
    use_cause: str | None = None
    matter_before: dict[str, str] | None = None
    matters_after: tuple[Mapping[str, str], ...] = ()
    licence_identifier: str | None = None
    licence_type: str | None = None
    issuer_region: str | None = None
    personal: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def event(self, *, cn_status: int, http_status: int) -> AuditEvent:
        """The audit event of the query, answered with ``cn_status`` and ``http_status``;
        the facts' dicts go into it as they are (the query is done)."""
        self.details["http_status"] = http_status
        outcome = ("ok" if http_status < 400
                   else "error" if http_status >= 500 else "refused")
        return AuditEvent(
            event_type=EventType.PARTNER_QUERY,
            actor_kind=ActorKind.PARTNER,
            actor_id=self.actor,
            at=self.at,
            source_addr=self.source,
            outcome=outcome,
            cn_status=cn_status,
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


@dataclass(frozen=True, slots=True)
class Found:
    """An answered query: cn 0 with the licences handed out, or 10, 13, 21, 22, 23."""

    cn_status: int
    licences: list[str]
    """``ecert+jwt`` licences signed by Huzhou (only with cn 0)."""
    matter: Mapping[str, Any]
    """The partner's matter and its Huzhou translation: ``{"huzhou": [...], "partner": [...]}``."""
    facts: QueryFacts

    @property
    def message(self) -> str:
        """The words of the national status code."""
        return CN_MESSAGES[self.cn_status]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused query."""

    kind: RefusalKind
    reason: str
    facts: QueryFacts
    retry_after_s: float | None = None
    """``RATE_LIMITED``: the seconds until the partner may query again."""

    @property
    def cn_status(self) -> int:
        """The national status code of this kind of refusal."""
        return CN_STATUS[self.kind]


@dataclass(frozen=True, slots=True)
class Failure:
    """A query stopped by an unexpected error (cn 99): the caller records it, then raises
    ``error``."""

    error: Exception
    facts: QueryFacts

    @property
    def cn_status(self) -> int:
        """99, "other error"."""
        return 99


Outcome = Found | Refusal | Failure


class _Refused(Exception):  # noqa: N818 - control flow inside the service, never raised out
    """A step refuses the query; ``answer`` turns it into a ``Refusal``."""

    def __init__(self, kind: RefusalKind, reason: str, *,
                 retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.retry_after_s = retry_after_s


def _bad(reason: str) -> _Refused:
    return _Refused(RefusalKind.BAD_QUERY, reason)


# ----------------------------------------------------------------------- the query body


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
    component: tuple[str, str] | None = None
    """One component of a combined certificate: ``("type_code" | "number", value)``."""


def _text(value: object, name: str, limit: int = MAX_FIELD) -> str:
    """A required text field, stripped; refused (cn 12) when missing, blank or too long."""
    if not isinstance(value, str) or not value.strip():
        raise _bad(f"{name} is required")
    if len(value) > limit:
        raise _bad(f"{name} is longer than {limit} characters")
    return value.strip()


_HOLDER_KEYS = ("holder_code", "holder_code_type", "type_code")


def _parse_query(raw: bytes, partner_region: str, facts: QueryFacts) -> _Query:
    """The query in the body, or a refusal (cn 12); fills ``facts`` as fields are read."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _bad("body is not JSON") from exc
    if not isinstance(body, dict):
        raise _bad("body must be a JSON object")
    get = body.get
    matter, use_cause = get("matter"), get("use_cause")
    region = code = None
    if isinstance(matter, dict):
        region, code = matter.get("region"), matter.get("code")
        if isinstance(region, str) and isinstance(code, str):
            facts.matter_before = {"region": region[:16], "code": code[:128]}
    if isinstance(use_cause, str):
        facts.use_cause = use_cause[:MAX_USE_CAUSE]
    use_cause = _text(use_cause, "use_cause", MAX_USE_CAUSE)
    if not isinstance(matter, dict):
        raise _bad("matter is required: {\"region\": ..., \"code\": ...}")
    matter_region = _text(region, "region", 16)
    matter_code = _text(code, "code", 128)
    if matter_region != partner_region:
        raise _bad(f"matter.region must be the partner's own region {partner_region}")
    identifier = get("identifier")
    holder = [get(k) for k in _HOLDER_KEYS]
    given_holder = holder != [None, None, None]
    if identifier is not None:
        if given_holder:
            raise _bad("give either identifier or holder_code + holder_code_type + type_code")
        text = _text(identifier, "identifier")
        facts.licence_identifier = text
        facts.details["query"] = "identifier"
        try:
            parsed = parse_identifier(text)
        except IdentifierError as exc:
            raise _bad(f"identifier: {exc}") from exc
        facts.licence_type = parsed.type_code
        return _Query(use_cause, matter_region, matter_code, parsed.type_code, text,
                      component=_component_selector(get("component"), facts))
    if get("component") is not None:
        raise _bad("component is asked for with the combined certificate's identifier")
    if not given_holder:
        raise _bad("identifier, or holder_code + holder_code_type + type_code, is required")
    facts.details["query"] = "holder"
    raw_code, raw_type, raw_licence_type = holder
    if isinstance(raw_code, str):
        facts.personal["holder_code"] = raw_code[:64]
    missing = [k for k, v in zip(_HOLDER_KEYS, holder, strict=True) if v is None]
    if missing:
        raise _bad(f"{', '.join(missing)} required with a holder query")
    holder_code = _text(raw_code, "holder_code", 64)
    code_type = _text(raw_type, "holder_code_type", 3)
    if not _CODE_TYPE.match(code_type):
        raise _bad("holder_code_type must be 3 digits (001 USCC, 111 身份证)")
    facts.details["holder_code_type"] = code_type
    type_code = _text(raw_licence_type, "type_code", 64)
    facts.licence_type = type_code
    return _Query(use_cause, matter_region, matter_code, type_code,
                  holder_code=holder_code, holder_code_type=code_type)


def _component_selector(raw: object, facts: QueryFacts) -> tuple[str, str] | None:
    """``component``: ``{"type_code": ...}`` or ``{"number": ...}`` (one of them)."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in (
            "type_code", "number"):
        raise _bad("component must be {\"type_code\": ...} or {\"number\": ...}")
    key, value = next(iter(raw.items()))
    text = _text(value, f"component.{key}", 64)
    facts.details["component"] = {"by": key}
    if key == "type_code":
        facts.details["component"]["type_code"] = text
    return key, text


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


def _lenient_matter(raw: bytes, facts: QueryFacts) -> None:
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
        facts.matter_before = {"region": matter["region"][:16], "code": matter["code"][:128]}
    if isinstance(body.get("use_cause"), str):
        facts.use_cause = body["use_cause"][:MAX_USE_CAUSE]


# ----------------------------------------------------------------------- the service


class _Signed(NamedTuple):
    """A licence's token as signed for a query, kept for reuse."""

    licence: StoredLicence
    iat: int
    token: str


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
        clock: Clock | None = None,
        sm2_licence_key: SigningKey | None = None,
        sm2_status_key: SigningKey | None = None,
    ) -> None:
        """``sm2_licence_key`` and ``sm2_status_key`` (``SM2SM3``) sign for the partners
        whose agreement asks for SM2; without them such a partner's query fails."""
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
        self.clock = clock or _utc_now
        """The time queries are judged at, and status lists signed at."""
        self.status_uri = f"{settings.public_base_url}/v1/status/{STATUS_LIST_NAME}"
        """The URI of Huzhou's status list as partners reach it: from the ``public_url``
        setting, never from a request (its Host header is the client's to choose)."""
        self._status_built: dict[str, tuple[str, float]] = {}
        """Each signed status list served (by name), and when it was built (monotonic)."""
        self._status_lock = asyncio.Lock()
        self.sm2_status_uri = f"{settings.public_base_url}/v1/status/{SM2_STATUS_LIST_NAME}"
        """The URI of the same list signed with SM2 (``sm2_status_key``)."""
        self._status_keys: dict[str, tuple[SigningKey, str]] = {
            STATUS_LIST_NAME: (status_key, self.status_uri)}
        self._signers: dict[Alg, tuple[Callable[[dict[str, Any]], Awaitable[str]], str]] = {
            Alg.ES256: (self._sign_licence_claims, self.status_uri)}
        self._signed: dict[tuple[Alg, str, str], _Signed] = {}
        """Licences signed lately, for reuse (``SIGNED_REUSE_S``), by algorithm, identifier
        and status list URI, oldest first: a token no longer reusable is dropped
        (``prune_signed``), so a burst of queries leaves no tokens held after it."""
        if sm2_licence_key is not None and sm2_status_key is not None:
            self._status_keys[SM2_STATUS_LIST_NAME] = (sm2_status_key, self.sm2_status_uri)
            self._signers[Alg.SM2SM3] = (
                sm2_licence_key.async_signer({"typ": "ecert+jwt"}, self.crypto.run),
                self.sm2_status_uri)

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

    async def sign_licence(self, licence: StoredLicence, *, iat: int, status_uri: str,
                           alg: Alg = Alg.ES256) -> str:
        """An ``ecert+jwt`` of one Huzhou licence (ecert-profile.md), signed with the
        licence key of ``alg`` (ES256, or SM2SM3 for a partner whose agreement asks): at
        ``iat``, or the same licence's token signed within ``SIGNED_REUSE_S`` before it.

        Reused only for the very ``StoredLicence`` it was signed from (the store hands out
        one object per row until the row or the library changes; a combined certificate
        with its components' entries is a new object each time, so it is signed afresh),
        with the same algorithm (its signer is fixed at start-up) and status list URI."""
        signer = self._signer(alg)[0]
        key = (alg, licence.identifier, status_uri)
        held = self._signed.get(key)
        if held is not None and held.licence is licence and 0 <= iat - held.iat < SIGNED_REUSE_S:
            return held.token
        token = await signer(self._licence_claims(licence, iat=iat, status_uri=status_uri))
        signed = self._signed
        signed.pop(key, None)  # put back last: the dict stays in the order of signing
        self.prune_signed(iat)
        while len(signed) >= SIGNED_MAX:
            del signed[next(iter(signed))]
        signed[key] = _Signed(licence, iat, token)
        return token

    @property
    def signed_held(self) -> int:
        """How many signed licences are held for reuse."""
        return len(self._signed)

    def prune_signed(self, now: int | None = None) -> int:
        """Drop the signed licences that can no longer be reused at ``now`` (Unix seconds;
        default: the service's clock), oldest first, up to the first that still can.
        Returns how many were dropped. Cheap enough for every signature; the partner
        context also calls it every ``SIGNED_PRUNE_S``, for when no query comes."""
        if now is None:
            now = int(self.clock().timestamp())
        signed = self._signed
        dropped = 0
        for held in signed.values():
            if now - held.iat < SIGNED_REUSE_S:
                break
            dropped += 1
        if dropped:
            for key in list(islice(signed, dropped)):
                del signed[key]
        return dropped

    def _licence_claims(self, licence: StoredLicence, *, iat: int,
                        status_uri: str) -> dict[str, Any]:
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
        return claims

    def _signer(self, alg: Alg) -> tuple[Callable[[dict[str, Any]], Awaitable[str]], str]:
        """The licence signer of ``alg`` and the URI of the status list it points to."""
        found = self._signers.get(alg)
        if found is None:
            raise RuntimeError(f"no {alg.value} licence and status keys: the gateway cannot "
                               "sign for an agreement that asks for them")
        return found

    @property
    def status_list_names(self) -> frozenset[str]:
        """The names of the status lists served (``/v1/status/{name}``)."""
        return frozenset(self._status_keys)

    async def status_token(self, name: str = STATUS_LIST_NAME) -> str:
        """Huzhou's status list ``name`` as a ``statuslist+jwt`` (``sub`` its URI), rebuilt
        at most every ``STATUS_REFRESH_S`` seconds; ``SM2_STATUS_LIST_NAME`` is the same
        list signed with the SM2 status key (KeyError: no such list)."""
        status_key, uri = self._status_keys[name]
        cached = self._status_built.get(name)
        if cached is not None and time.monotonic() - cached[1] < STATUS_REFRESH_S:
            return cached[0]
        async with self._status_lock:
            cached = self._status_built.get(name)
            if cached is not None and time.monotonic() - cached[1] < STATUS_REFRESH_S:
                return cached[0]
            entries = await self.store.status_entries()
            size = max(entries.size, STATUS_MIN_ENTRIES)
            data = bytearray((size * STATUS_BITS + 7) // 8)
            for idx, value in entries.values.items():
                offset = idx * STATUS_BITS  # draft-ietf-oauth-status-list: LSB first
                data[offset // 8] |= value << (offset % 8)
            iat = int(self.clock().timestamp())
            claims = {"sub": uri, "iat": iat, "exp": iat + STATUS_LIFETIME_S,
                      "ttl": STATUS_TTL_S,
                      "status_list": {"bits": STATUS_BITS,
                                      "lst": b64url_encode(zlib.compress(bytes(data), 9))}}
            token = status_key.sign({"typ": "statuslist+jwt"}, claims)
            self._status_built[name] = (token, time.monotonic())
            return token

    # -- the query -------------------------------------------------------------------------

    async def answer(self, request: QueryRequest) -> Outcome:
        """Decide a query: ``Found``, a ``Refusal`` or a ``Failure``, never an exception.

        Nothing is recorded yet: the caller records the outcome (``record``) with the
        status it answers with, before it answers.
        """
        facts = QueryFacts(at=request.at, started=request.received,
                           request_id=request.request_id, source=request.source)
        try:
            return await self._answer(request, facts)
        except _Refused as refused:
            return Refusal(refused.kind, refused.reason, facts,
                           retry_after_s=refused.retry_after_s)
        except Exception as exc:  # anything else: recorded as a failure, raised by the caller
            return Failure(exc, facts)

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

    async def record(self, outcome: Outcome, *, http_status: int) -> None:
        """Make the query's audit record durable, saying it was answered with
        ``http_status`` (raises ``AuditUnavailableError``)."""
        facts = outcome.facts
        if isinstance(outcome, Refusal):
            facts.details["reason"] = outcome.reason
        await self.audit.append(facts.event(cn_status=outcome.cn_status,
                                            http_status=http_status))

    async def _answer(self, request: QueryRequest, facts: QueryFacts) -> Found:
        if request.content_type_problem is not None:
            raise _Refused(RefusalKind.NOT_JSON, request.content_type_problem)
        too_large = f"a partner query is at most {MAX_QUERY_BODY} bytes"
        if request.declared_size is not None and request.declared_size > MAX_QUERY_BODY:
            raise _Refused(RefusalKind.TOO_LARGE, too_large)
        raw = await request.read_body()
        if len(raw) > MAX_QUERY_BODY:
            raise _Refused(RefusalKind.TOO_LARGE, too_large)
        trust_list = self.trust()
        facts.trust_list_version = trust_list.version
        at = request.at
        if trust_list.is_stale(at):
            raise _Refused(RefusalKind.TRUST_LIST_STALE,
                           "the trust list is past its next_update; try later")
        if request.token is None:
            _lenient_matter(raw, facts)
            raise _Refused(RefusalKind.UNAUTHENTICATED,
                           "a partner request token (ecert-request+jwt) is required")
        now = int(at.timestamp())
        try:
            auth = await check_request_token_async(
                request.token, trust_list=trust_list, audience=self.settings.gateway_id,
                method=request.method, path=request.path, body=raw, now=now,
                run=self.crypto.run)
        except RequestTokenError as exc:
            facts.details["claimed_iss"] = exc.claimed_iss
            _lenient_matter(raw, facts)
            raise _Refused(RefusalKind.UNAUTHENTICATED, exc.reason) from exc
        region = auth.partner.region_code
        facts.actor = facts.partner_region = region
        details = facts.details
        details["kid"] = auth.kid
        details["jti"] = auth.jti
        if auth.partner.status is not PartnerStatus.ACTIVE:
            _lenient_matter(raw, facts)
            raise _Refused(RefusalKind.PARTNER_SUSPENDED,
                           f"partner {region} is suspended; try later")
        # Charged only after the jti: a replayed token (anyone who saw one may resend it)
        # costs the partner nothing, like a forged or an expired one. Both in one Redis
        # call when both live there (gateway.partner.checks.admit).
        try:
            fresh, wait = await admit(self.replay, self.limiter, auth.replay_key,
                                      auth.expires_at - now + REQUEST_SKEW_S, region)
        except ReplayCacheUnavailableError as exc:
            raise _Refused(RefusalKind.REPLAY_CACHE_UNAVAILABLE,
                           "the replay cache cannot answer; try later") from exc
        if not fresh:
            _lenient_matter(raw, facts)
            raise _Refused(RefusalKind.REPLAYED, "jti was used before (replayed request token)")
        if wait is not None:
            _lenient_matter(raw, facts)
            raise _Refused(RefusalKind.RATE_LIMITED, f"partner {region} is over its rate limit",
                           retry_after_s=wait)

        query = _parse_query(raw, region, facts)
        today = at.astimezone(CHINA_TZ).date()
        matter, facts.matters_after = self._matter(query.matter_region, query.matter_code,
                                                   today)
        if query.component is not None:
            return await self._component(query, auth.partner, matter, today=today, now=now,
                                         facts=facts)
        try:
            check_agreement(auth.partner, type_code=query.type_code,
                            matter_code=query.matter_code)
        except AgreementError as exc:
            raise _Refused(RefusalKind.OUT_OF_AGREEMENT, exc.reason) from exc
        try:
            pseudonyms: Sequence[str] = ()
            if query.identifier is None:
                assert query.holder_code is not None
                assert query.holder_code_type is not None
                pseudonyms = self.keyring.pseudonyms(query.holder_code_type, query.holder_code)
            published, candidates = await self.store.find(
                query.type_code, identifier=query.identifier, pseudonyms=pseudonyms)
            if not published:
                return Found(13, [], matter, facts)
        except LicenceStoreError as exc:
            raise _Refused(RefusalKind.LICENCE_STORE_UNAVAILABLE,
                           "the licence store cannot answer") from exc
        return await self._licences(candidates, matter, today=today, now=now, facts=facts,
                                    alg=auth.partner.signing_alg)

    async def _with_component_status(self, licence: StoredLicence, uri: str) -> StoredLicence:
        """A combined certificate with each component's entry in Huzhou's status list (its
        own row's index), as the profile requires; any other licence as it is."""
        parts = licence.lic.get("components")
        if not parts:
            return licence
        rows = [await self.store.by_identifier(str(part["identifier"])) for part in parts]
        if any(row is None for row in rows):
            raise LicenceStoreError("a combined certificate's component row is missing")
        lic = {**licence.lic, "components": [
            {**part, "status": {"status_list": {"idx": row.status_idx, "uri": uri}}}
            for part, row in zip(parts, rows, strict=True) if row is not None]}
        return replace(licence, lic=lic)

    async def _component(self, query: _Query, partner: Partner, matter: Mapping[str, Any],
                         *, today: date, now: int, facts: QueryFacts) -> Found:
        """One component of a combined certificate, handed out as a licence of its own,
        when the partner's agreement covers the component's type (not necessarily the
        combined certificate's)."""
        assert query.component is not None
        assert query.identifier is not None
        by, value = query.component

        def agreed(type_code: str) -> None:
            facts.licence_type = type_code
            try:
                check_agreement(partner, type_code=type_code, matter_code=query.matter_code)
            except AgreementError as exc:
                raise _Refused(RefusalKind.OUT_OF_AGREEMENT, exc.reason) from exc

        if by == "type_code":
            agreed(value)  # before any look-up, as for any query naming its type
        try:
            published, found = await self.store.find(query.type_code,
                                                     identifier=query.identifier)
            if not published:
                return Found(13, [], matter, facts)
            parts = [] if not found else list(found[0].lic.get("components") or ())
            part = next((c for c in parts if c.get(by) == value), None)
            if part is None:
                return Found(10, [], matter, facts)
            if by == "number":
                agreed(str(part["type_code"]))
            facts.details["component"]["identifier"] = part["identifier"]
            document = found[0]
            judged = _judge(document, today)
            if judged != 0:
                # Withdrawn or ended as a whole: no component of it is handed out.
                return Found(judged, [], matter, facts)
            row = await self.store.by_identifier(str(part["identifier"]))
        except LicenceStoreError as exc:
            raise _Refused(RefusalKind.LICENCE_STORE_UNAVAILABLE,
                           "the licence store cannot answer") from exc
        return await self._licences([] if row is None else [row], matter, today=today,
                                    now=now, facts=facts, alg=partner.signing_alg)

    async def _licences(self, candidates: Sequence[StoredLicence], matter: Mapping[str, Any],
                        *, today: date, now: int, facts: QueryFacts,
                        alg: Alg = Alg.ES256) -> Found:
        if not candidates:
            return Found(10, [], matter, facts)
        facts.issuer_region = self.settings.gateway_id
        judged = [(licence, _judge(licence, today)) for licence in candidates]
        valid = [licence for licence, cn in judged if cn == 0]
        if not valid:
            # Nothing valid: the most recently issued licence says why.
            latest = max(judged, key=lambda item: (item[0].issue_date, item[0].identifier))
            facts.details["identifiers"] = [latest[0].identifier]
            if len(candidates) == 1:
                facts.licence_identifier = latest[0].identifier
            return Found(latest[1], [], matter, facts)
        uri = self._signer(alg)[1]
        valid = [await self._with_component_status(licence, uri) for licence in valid]
        if len(valid) == 1:
            tokens = [await self.sign_licence(valid[0], iat=now, status_uri=uri, alg=alg)]
        else:  # signed together: one hand-off to the crypto thread
            tokens = list(await asyncio.gather(*(
                self.sign_licence(licence, iat=now, status_uri=uri, alg=alg)
                for licence in valid)))
        facts.details["identifiers"] = [licence.identifier for licence in valid]
        facts.details["returned"] = len(tokens)
        if len(valid) == 1:
            facts.licence_identifier = valid[0].identifier
        return Found(0, tokens, matter, facts)
