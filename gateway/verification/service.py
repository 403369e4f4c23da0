"""The verification service: one licence in, a verdict, a receipt and an audit record out.

It takes a trust snapshot, runs the pure verifier, fetches a status list when
the licence references one (through ``StatusFetcher``), and returns only after
the audit record is durable. A failed audit write fails the request; it never
turns into an answer without a record.

The receipt (docs/receipts.md) is, by default, log-backed: the answer's audit
entry, its inclusion proof and the checkpoint signed for the batch it was
committed in (``ProvingAuditLog.append_proved``): one signature per batch of
answers. ``receipt_form="jws"`` signs an ``ecert-receipt+jwt`` per answer instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import orjson

from gateway.audit.event import (
    ActorKind,
    AuditEvent,
    AuditLog,
    AuditUnavailableError,
    EventType,
    LoggedEntry,
    ProvingAuditLog,
)
from gateway.infra.metrics import MetricFamily
from gateway.infra.signing import SigningKey
from gateway.trustlist.state import TrustSnapshot, TrustState
from gateway.verification.cache import CacheEntry, VerdictCache
from gateway.verification.status import StatusFetcher
from trust import (
    Check,
    Indication,
    Licence,
    Partner,
    Pending,
    StatusList,
    StatusUnavailable,
    SubIndication,
    Verdict,
    b64url_decode,
)

__all__ = [
    "Clock",
    "MatterLink",
    "MatterResolver",
    "NoMatterResolver",
    "VerificationRequest",
    "VerificationService",
    "utc_now",
]

Clock = Callable[[], datetime]

_log = logging.getLogger(__name__)

SNAPSHOT_RETRIES = 3
"""Times a request is judged again when the trust list changed while it waited."""

BATCH_SLICE_S = 0.01
"""Longest run of a batch's work on the event loop between two yields (10 ms).

Measured in time, not items: what one licence costs is the caller's choice
within the verifier's bounds (an ``x5c`` chain costs at most
``trust.MAX_X5C_SIGNATURE_CHECKS`` signature checks), so a count of items
would let a batch of costly licences hold the loop for as long as that count
takes. A slice ends after the licence that crosses the limit.
"""


class _Slices:
    """Yields to the event loop once a slice of ``BATCH_SLICE_S`` has run."""

    __slots__ = ("_since",)

    def __init__(self) -> None:
        self._since = time.perf_counter()

    async def pause(self) -> None:
        """Let other tasks (a health check, other requests) run if this slice is used up."""
        if time.perf_counter() - self._since >= BATCH_SLICE_S:
            await asyncio.sleep(0)
            self._since = time.perf_counter()


@dataclass(frozen=True, slots=True)
class VerificationRequest:
    """A local system's verification request, already validated for shape."""

    credential: str
    use_cause: str | None = None
    matter_region: str | None = None
    matter_code: str | None = None


@dataclass(frozen=True, slots=True)
class _Item:
    """One verification to answer: the request, its digest, who asked and when."""

    req: VerificationRequest
    digest: str
    at: datetime
    started: float
    """``time.perf_counter()`` when the request reached the service (its record's latency)."""
    actor: str
    source: str | None
    request_id: str | None
    case_id: str | None


_Waiting = tuple[_Item, "asyncio.Future[dict[str, Any]]", "_Outcome | None",
                 "TrustSnapshot | None"]
"""A request waiting for its group (``VerificationService._together``): its future, and
for a tier-1 hit the outcome found and the trust snapshot it was found on."""


@dataclass(frozen=True, slots=True)
class MatterLink:
    """A Huzhou matter a licence serves, with how sure the mapping is."""

    region: str
    code: str
    relationship: str
    map: str

    def to_json(self) -> dict[str, str]:
        """As the answer shows it."""
        return {"region": self.region, "code": self.code, "relationship": self.relationship,
                "map": self.map}


class MatterResolver(Protocol):
    """What verification needs from the matter registry."""

    def partner_codes(self, region: str, code: str, partner_region: str) -> frozenset[str]:
        """The codes, in the partner's scheme, a requested matter corresponds to."""
        ...

    def huzhou_matters(self, issuer_region: str, codes: Sequence[str]) -> list[MatterLink]:
        """The Huzhou matters the licence's own matter codes translate to."""
        ...

    def types_serving(self, region: str, code: str) -> frozenset[str] | None:
        """The licence type codes (national and local) that serve a matter, or None when
        the registry says nothing of it (a combined certificate is then judged on all
        its components)."""
        ...


class NoMatterResolver:
    """Used when no registry is loaded: the requested code stands for itself."""

    def partner_codes(self, region: str, code: str, partner_region: str) -> frozenset[str]:
        """Only the code as given."""
        return frozenset({code})

    def huzhou_matters(self, issuer_region: str, codes: Sequence[str]) -> list[MatterLink]:
        """No translation without a registry."""
        return []

    def types_serving(self, region: str, code: str) -> frozenset[str] | None:
        """Nothing known without a registry."""
        return None


def utc_now() -> datetime:
    """The system clock, in UTC."""
    return datetime.now(UTC)


@dataclass(slots=True)
class _Outcome:
    """One verification's result before it is rendered: fresh or from the cache.

    A tier-1 hit finds the same ``_Outcome`` again (``VerdictCache.keep_decoded``), so
    what its answer and its audit record share with every other answer from it is made
    once, on first use, and kept here: the answer without its receipt (``answer``) and
    the record's fields that do not change per request (``record``).
    """

    core: dict[str, Any]
    """The verdict fields of the answer (no receipt, no holder data; the licence number
    as the credential carries it)."""
    holder: dict[str, str] | None
    cached: bool
    links: list[MatterLink]
    status_claim: dict[str, Any] | None
    answer: dict[str, Any] | None = None
    """The answer without its receipt (holder data included, as the caller sent it)."""
    record: dict[str, Any] | None = None
    """The audit record's fields that depend on the outcome alone."""


def _judgement(verdict: Verdict) -> dict[str, Any]:
    """Indication, sub-indication and national status of one verdict, as answered."""
    sub = verdict.sub_indication
    return {"indication": verdict.indication.value,
            "sub_indication": None if sub is None else sub.value,
            "cn_status": verdict.cn_status}


def _holder_of(licence: Licence) -> dict[str, str]:
    return {"name": licence.holder_name, "code": licence.holder_code,
            "code_type": licence.holder_code_type}


def _personal_from_credential(credential: str
                              ) -> tuple[dict[str, str] | None, str | None, list[str]]:
    """Holder fields, licence number and component numbers of a credential already verified
    once (a cache hit): no checks here."""
    try:
        lic = orjson.loads(b64url_decode(credential.split(".")[1]))["lic"]
        holder = {"name": str(lic["holder_name"]), "code": str(lic["holder_code"]),
                  "code_type": str(lic["holder_code_type"])}
        numbers = [str(c["number"]) for c in lic.get("components") or ()]
        return holder, str(lic["number"]), numbers
    except (ValueError, KeyError, IndexError, TypeError, AttributeError,
            orjson.JSONDecodeError):
        return None, None, []


_MAX_RENDERED_CHECKS = 4096
_rendered_checks: dict[int, tuple[Check, dict[str, Any]]] = {}
"""Checks rendered for answers, by identity (the check is kept with its JSON, so the
identity is not reused while the entry lives): most checks of a verdict are objects the
verifier made once (passing checks are shared), so each is rendered once."""


def _checks_json(checks: Sequence[Check]) -> list[dict[str, Any]]:
    """``[c.to_json() for c in checks]``; the members are shared, never changed."""
    out = []
    rendered = _rendered_checks
    for check in checks:
        known = rendered.get(id(check))
        if known is None or known[0] is not check:
            if len(rendered) >= _MAX_RENDERED_CHECKS:
                rendered.clear()
            known = rendered[id(check)] = (check, check.to_json())
        out.append(known[1])
    return out


_Statuses = dict[tuple[str, str], StatusList | StatusUnavailable]
"""Status lists (or why they are unavailable) by URI and partner region."""


def _cacheable(core: dict[str, Any]) -> dict[str, Any]:
    """``core`` as it may be cached: nothing that identifies the holder.

    The licence number goes too: for some types (居民身份证, 从业资格证 ...) it is the
    holder's 身份证号. It stays as a null member, so a hit puts the number read
    from the caller's credential back in its place.
    """
    licence = core["licence"]
    if licence is None:
        return core
    cacheable = {**core, "licence": {**licence, "number": None}}
    if "components" in core:
        cacheable["components"] = [{**c, "component": {**c["component"], "number": None}}
                                   for c in core["components"]]
    return cacheable


class VerificationService:
    """Verifies licences for local systems."""

    def __init__(
        self,
        *,
        trust: TrustState,
        status: StatusFetcher,
        receipts: SigningKey,
        audit: AuditLog,
        gateway_id: str,
        matters: MatterResolver | None = None,
        cache: VerdictCache | None = None,
        cache_max_ttl_s: float = 300.0,
        clock: Clock = utc_now,
        receipt_form: str = "log",
        coalesce: bool = True,
    ) -> None:
        self.trust = trust
        self.status = status
        self.receipts = receipts
        self._sign_receipt = receipts.signer({"typ": "ecert-receipt+jwt"})
        self.audit = audit
        self._proving: ProvingAuditLog | None = None
        if receipt_form == "log":
            if not callable(getattr(audit, "append_proved", None)):
                raise ValueError("log-backed receipts need an audit log that proves"
                                 " inclusion (receipt_form = \"jws\" otherwise)")
            self._proving = cast("ProvingAuditLog", audit)
        elif receipt_form != "jws":
            raise ValueError(f"unknown receipt form {receipt_form!r}")
        self.gateway_id = gateway_id
        self.matters: MatterResolver = matters or NoMatterResolver()
        self.cache = cache
        self.cache_max_ttl_s = cache_max_ttl_s
        self.clock = clock
        self.outcomes: dict[str, int] = {}
        self.coalesce = coalesce
        """Verify the single requests of one turn of the event loop together (``verify``)."""
        self._waiting: list[_Waiting] = []
        self._running: set[asyncio.Task[None]] = set()

    def metric_families(self) -> list[MetricFamily]:
        """Answers by indication, the verdict cache's events and the status-list fetches,
        for ``/metrics``."""
        families = [MetricFamily(
            "ecert_verifications", "counter", "Verification answers, by indication.",
            [({"indication": k}, v) for k, v in sorted(self.outcomes.items())])]
        if self.cache is not None:
            families += self.cache.metric_families()
        return families + self.status.metric_families()

    def _matter_codes(self, req: VerificationRequest, partner_region: str) -> frozenset[str]:
        assert req.matter_code is not None
        return self.matters.partner_codes(req.matter_region or "330500", req.matter_code,
                                          partner_region)

    def _start(self, snapshot: TrustSnapshot, req: VerificationRequest,
               at: datetime) -> Pending | Verdict:
        if req.matter_code is None:
            return snapshot.verifier.start(req.credential, at=at)
        # An agreement that names matters names them in the partner's scheme: the
        # verifier asks for the requested matter's codes there once it knows the partner.
        return snapshot.verifier.start(
            req.credential, at=at,
            matter_codes_for=lambda partner: self._matter_codes(req, partner.region_code))

    @staticmethod
    def _status_refs(pending: Pending | Verdict
                     ) -> list[tuple[tuple[str, str], Partner, int]]:
        """The status lists a started verification needs, by URI and partner region, with
        the entry index each reference names."""
        if not isinstance(pending, Pending):
            return []
        refs = [*pending.component_status_needed]
        if pending.status_needed is not None:
            refs.insert(0, pending.status_needed)
        if not refs:
            return []
        partner = pending.partner
        assert partner is not None
        return [((ref.uri, partner.region_code), partner, ref.idx) for ref in refs]

    def _held_statuses(self, snapshot: TrustSnapshot, started: Sequence[Pending | Verdict]
                       ) -> tuple[_Statuses, list[tuple[tuple[str, str], Partner, int]]]:
        """The status lists ``started`` need that are answered without waiting (held and
        fresh, or a failed fetch not yet due again: ``StatusFetcher.answer_now``), and those
        to fetch, each distinct one once, keyed by URI and partner region, with the largest
        entry index asked of it (a held list too short for it may be fetched again)."""
        needed: dict[tuple[str, str], tuple[Partner, int]] = {}
        for pending in started:
            for key, partner, idx in self._status_refs(pending):
                known = needed.get(key)
                if known is None or idx > known[1]:
                    needed[key] = (partner, idx)
        trust_list = snapshot.trust_list
        found: _Statuses = {}
        missing: list[tuple[tuple[str, str], Partner, int]] = []
        for key, (partner, idx) in needed.items():
            ready = self.status.answer_now(key[0], partner, trust_list, idx)
            if ready is None:
                missing.append((key, partner, idx))
            else:
                found[key] = ready
        return found, missing

    async def _fetched(self, snapshot: TrustSnapshot, found: _Statuses,
                       missing: list[tuple[tuple[str, str], Partner, int]]) -> _Statuses:
        """``found`` with the ``missing`` lists fetched, all at once: a batch waits for its
        slowest list, not for the sum of them (a hanging partner costs one timeout)."""
        trust_list = snapshot.trust_list
        if len(missing) == 1:
            key, partner, idx = missing[0]
            found[key] = await self.status.get(key[0], partner, trust_list, idx)
        elif missing:
            lists = await asyncio.gather(*(self.status.get(uri, partner, trust_list, idx)
                                           for (uri, _), partner, idx in missing))
            found.update(zip((key for key, _, _ in missing), lists, strict=True))
        return found

    async def _statuses(self, snapshot: TrustSnapshot, started: Sequence[Pending | Verdict]
                        ) -> _Statuses:
        """The status lists ``started`` need: those held and fresh as they are, the others
        fetched, each distinct one once, all at once (``_held_statuses``, ``_fetched``)."""
        found, missing = self._held_statuses(snapshot, started)
        return await self._fetched(snapshot, found, missing) if missing else found

    def _finish(self, pending: Pending | Verdict,
                statuses: Mapping[tuple[str, str], StatusList | StatusUnavailable]) -> Verdict:
        if isinstance(pending, Verdict):
            return pending
        ref = pending.status_needed
        components = pending.component_status_needed
        if ref is None and not components:
            return pending.finish()
        partner = pending.partner
        assert partner is not None
        region = partner.region_code
        status = None if ref is None else statuses[(ref.uri, region)]
        by_uri = {c.uri: statuses[(c.uri, region)] for c in components}
        # A list fetched just now may be signed after the request's instant.
        return pending.finish(status, consulted_at=self.clock(), component_status=by_uri)

    @staticmethod
    def _cache_key(req: VerificationRequest, digest: str) -> str:
        matter = "" if req.matter_code is None else f"{req.matter_region}|{req.matter_code}"
        return f"{digest}:{matter}"

    def _entry_for(self, snapshot: TrustSnapshot, verdict: Verdict, core: dict[str, Any],
                   now: float) -> CacheEntry | None:
        """A cache entry for a definitive verdict, with the TTL it can bear; else None."""
        # A verdict that can change by itself (INDETERMINATE, NOT_YET_VALID) is not kept,
        # for the document or for any component of a combined certificate.
        for judged in (verdict, *verdict.components):
            if (judged.indication is Indication.INDETERMINATE
                    or judged.sub_indication is SubIndication.NOT_YET_VALID):
                return None
        limit = now + self.cache_max_ttl_s
        next_update = verdict_trust_next_update(snapshot)
        limit = min(limit, next_update)
        used: dict[str, int] = {}
        if verdict.passed:
            # A passing document's components are judged on their own: each one that
            # passed bounds the entry by its validity and by the list its status came from.
            for judged in (verdict, *verdict.components):
                if not judged.passed:
                    continue
                if judged.valid_until is not None:
                    limit = min(limit, judged.valid_until.timestamp())
                if judged.status_used is not None:
                    uri = judged.status_used[0]
                    used[uri] = int(judged.status_used[1].timestamp())
                    refresh = self.status.refresh_in(uri)
                    limit = min(limit, now + (refresh if refresh is not None else 0.0))
        if limit <= now:
            return None
        pairs = list(used.items())
        status_uri, status_iat = pairs[0] if pairs else (None, None)
        return CacheEntry(orjson.dumps(_cacheable(core)), limit, status_uri, status_iat,
                          snapshot.tag, tuple(pairs[1:]))

    def _usable(self, entry: CacheEntry) -> bool:
        """A hit whose status list this instance already holds in a newer version is void."""
        for uri, iat in entry.statuses():
            held = self.status.held(uri)
            if held is not None and int(held.issued_at.timestamp()) > iat:
                return False
        return True

    def _core(self, verdict: Verdict, req: VerificationRequest
              ) -> tuple[dict[str, Any], list[MatterLink], dict[str, str] | None]:
        licence = verdict.licence
        summary: dict[str, Any] | None = None
        links: list[MatterLink] = []
        holder: dict[str, str] | None = None
        if licence is not None:
            summary = licence.summary()
            holder = _holder_of(licence)
            if verdict.passed:
                links = self.matters.huzhou_matters(licence.iss, licence.matters)
        status_claim: dict[str, Any] | None = None
        if verdict.status_used is not None:
            status_claim = {"uri": verdict.status_used[0],
                            "iat": int(verdict.status_used[1].timestamp())}
        # A combined certificate answers for the whole document first (Verdict.overall_for:
        # it never passes with a failed component the matter needs, or with any failed
        # component when no matter or no registry says which), then the document and each
        # component.
        needed: frozenset[str] | None = None
        if verdict.components and req.matter_code is not None:
            needed = self.matters.types_serving(req.matter_region or "330500",
                                                req.matter_code)
        indication, sub = verdict.overall_for(needed)
        core = {
            "indication": indication.value,
            "sub_indication": None if sub is None else sub.value,
            "cn_status": 0 if sub is None else sub.cn_status,
            "checks": _checks_json(verdict.checks),
            "licence": summary,
            "matters": [m.to_json() for m in links],
            "trust_list_version": verdict.trust_list_version,
            "status_list": status_claim,
        }
        if licence is not None and licence.components is not None:
            core["document"] = _judgement(verdict)
            counted = needed is not None and any(c.licence.type_code in needed
                                                 for c in verdict.components)
            core["components"] = [
                {**_judgement(c),
                 "needed": not counted or (needed is not None
                                           and c.licence.type_code in needed),
                 "checks": _checks_json(c.checks),
                 "component": c.licence.summary(),
                 "status_list": (None if c.status_used is None else
                                 {"uri": c.status_used[0],
                                  "iat": int(c.status_used[1].timestamp())})}
                for c in verdict.components]
        return core, links, holder

    def _hit(self, snapshot: TrustSnapshot, req: VerificationRequest,
             found: tuple[CacheEntry, str] | None, key: str) -> _Outcome | None:
        """The outcome a cache hit gives, or None when there is none (or it is void)."""
        if found is None or not self._usable(found[0]):
            return None
        core: dict[str, Any] = orjson.loads(found[0].answer)
        if core.get("trust_list_version") not in (None, snapshot.trust_list.version):
            return None  # never answer with another trust list than the one served
        holder, number, numbers = _personal_from_credential(req.credential)
        if core.get("licence") is not None:
            core["licence"]["number"] = number
        for component, comp_number in zip(core.get("components") or (), numbers, strict=False):
            component["component"]["number"] = comp_number
        links = [MatterLink(**m) for m in core.get("matters") or []]
        outcome = _Outcome(core, holder, True, links, core.get("status_list"))
        if self.cache is not None:
            self.cache.keep_decoded(snapshot.tag, key, found[0], outcome)
        return outcome

    def _decoded_hit(self, snapshot: TrustSnapshot, req: VerificationRequest, digest: str,
                     now: float) -> _Outcome | None:
        """A tier-1 hit kept decoded: no await, no parsing, nothing rebuilt."""
        if self.cache is None:
            return None
        decoded = self.cache.get_decoded(snapshot.tag, self._cache_key(req, digest), now)
        if decoded is not None and self._usable(decoded[0]):
            outcome = cast("_Outcome", decoded[1])
            if outcome.core["trust_list_version"] in (None, snapshot.trust_list.version):
                return outcome
        return None

    async def _lookup(self, snapshot: TrustSnapshot, req: VerificationRequest, digest: str,
                      now: float, *, decoded_checked: bool) -> _Outcome | None:
        if self.cache is None:
            return None
        if not decoded_checked:
            hit = self._decoded_hit(snapshot, req, digest, now)
            if hit is not None:
                return hit
        key = self._cache_key(req, digest)
        return self._hit(snapshot, req, await self.cache.get(snapshot.tag, key, now), key)

    async def _remember(self, snapshot: TrustSnapshot, req: VerificationRequest, digest: str,
                        *, verdict: Verdict, core: dict[str, Any], links: list[MatterLink],
                        now: float) -> None:
        if self.cache is None or snapshot is not self.trust.snapshot:
            return  # the trust list changed meanwhile: do not file under the new version
        entry = self._entry_for(snapshot, verdict, core, now)
        if entry is not None:
            key = self._cache_key(req, digest)
            await self.cache.put(snapshot.tag, key, entry, now)
            holder = None if verdict.licence is None else _holder_of(verdict.licence)
            # In this process only, and found only by these very credential bytes.
            self.cache.keep_decoded(snapshot.tag, key, entry,
                                    _Outcome(core, holder, True, links, core["status_list"]))

    def _render(self, outcome: _Outcome, at: datetime, digest: str) -> dict[str, Any]:
        """The answer; its ``receipt`` is signed here in the JWS form, else added once the
        audit record is durable (``_log``)."""
        core = outcome.core
        answer = outcome.answer
        if answer is None:
            licence = core["licence"]
            if licence is not None:
                # Holder data only as the caller sent it, for the window to compare.
                licence = {**licence, "holder": outcome.holder}
            answer = outcome.answer = {**core, "licence": licence, "cached": outcome.cached}
        receipt = None if self._proving is not None else self._sign_receipt(
            {
                "iss": self.gateway_id,
                "iat": int(at.timestamp()),
                "credential_sha256": digest,
                "indication": core["indication"],
                "sub_indication": core["sub_indication"],
                "cn_status": core["cn_status"],
                "trust_list_version": core["trust_list_version"],
                "status": outcome.status_claim,
                "cached": outcome.cached,
            },
        )
        indication = core["indication"]
        self.outcomes[indication] = self.outcomes.get(indication, 0) + 1
        return {**answer, "receipt": receipt}

    @staticmethod
    def _record(outcome: _Outcome) -> dict[str, Any]:
        """The audit record's fields that depend on the outcome alone (kept on it)."""
        record = outcome.record
        if record is None:
            core = outcome.core
            licence = core["licence"] or {}
            personal: dict[str, str] = {}
            if outcome.holder is not None:
                personal = {"holder_code": outcome.holder["code"],
                            "holder_name": outcome.holder["name"]}
            record = outcome.record = {
                "outcome": core["indication"],
                "sub_indication": core["sub_indication"],
                "cn_status": core["cn_status"],
                "matters_after": tuple({"region": m.region, "code": m.code}
                                       for m in outcome.links),
                "licence_identifier": licence.get("identifier"),
                "licence_type": licence.get("type_code"),
                "issuer_region": licence.get("issuer_region"),
                "partner_region": licence.get("issuer_region"),
                "trust_list_version": core["trust_list_version"],
                "cached": outcome.cached,
                "personal": personal,
            }
        return record

    def _event(self, req: VerificationRequest, outcome: _Outcome, *, actor: str,
               source: str | None, request_id: str | None, at: datetime, started: float,
               digest: str, case_id: str | None = None) -> AuditEvent:
        matter_before = None
        if req.matter_code is not None:
            matter_before = {"region": req.matter_region or "330500", "code": req.matter_code}
        status = outcome.status_claim
        details = self._details(outcome.core, digest, status)
        if case_id is not None:
            details["case_id"] = case_id  # the case (gateway.cases) this verification served
        return AuditEvent(
            event_type=EventType.VERIFICATION,
            actor_kind=ActorKind.LOCAL_SYSTEM,
            actor_id=actor,
            at=at,
            source_addr=source,
            use_cause=req.use_cause,
            matter_before=matter_before,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            request_id=request_id,
            details=details,
            **self._record(outcome),
        )

    @staticmethod
    def _details(core: dict[str, Any], digest: str,
                 status: dict[str, Any] | None) -> dict[str, Any]:
        details: dict[str, Any] = {"credential_sha256": digest,
                                   "status_list": None if status is None else status["uri"],
                                   # With the record's other fields, every statement of a
                                   # receipt (docs/receipts.md).
                                   "status_iat": None if status is None else status["iat"]}
        if "components" in core:
            # Each component's outcome, named by its 证照标识 and type: no number (for
            # some types a person's ID number), no holder data.
            details["document"] = core["document"]
            details["components"] = [
                {"index": c["component"]["index"], "identifier": c["component"]["identifier"],
                 "type_code": c["component"]["type_code"], "indication": c["indication"],
                 "sub_indication": c["sub_indication"], "cn_status": c["cn_status"],
                 "needed": c["needed"],
                 "status_list": None if c["status_list"] is None else c["status_list"]["uri"]}
                for c in core["components"]]
        return details

    async def _log(self, answer: dict[str, Any], event: AuditEvent) -> None:
        """Make the answer's audit record durable; a log-backed receipt comes with it."""
        if self._proving is None:
            await self.audit.append(event)
        else:
            answer["receipt"] = (await self._proving.append_proved(event)).to_json()

    async def _outcome(self, snapshot: TrustSnapshot, req: VerificationRequest, at: datetime,
                       digest: str, pending: Pending | Verdict | None = None, *,
                       decoded_checked: bool = False) -> _Outcome:
        now = at.timestamp()
        if self.cache is not None:  # without a cache, no await at all for a held list
            hit = await self._lookup(snapshot, req, digest, now,
                                     decoded_checked=decoded_checked)
            if hit is not None:
                return hit
        if pending is None:
            pending = self._start(snapshot, req, at)
        statuses, missing = self._held_statuses(snapshot, (pending,))
        if missing:
            statuses = await self._fetched(snapshot, statuses, missing)
        verdict = self._finish(pending, statuses)
        core, links, holder = self._core(verdict, req)
        if self.cache is not None:
            await self._remember(snapshot, req, digest, verdict=verdict, core=core,
                                 links=links, now=now)
        return _Outcome(core, holder, False, links, core["status_list"])

    async def verify(self, req: VerificationRequest, *, actor: str, source: str | None = None,
                     request_id: str | None = None, case_id: str | None = None
                     ) -> dict[str, Any]:
        """Verify one licence; the answer is returned once its audit record is durable.

        ``case_id`` links the record to the case it serves (``details.case_id``).

        With ``coalesce`` on, the request joins the others made in the same turn of the
        event loop and they are verified together, as a batch is (``_verify_items``):
        each step runs over all of them in turn, their records go to the audit log as one
        group, and each caller gets its own answer, record and receipt (its own time,
        latency, actor and request id). A tier-1 hit is looked up at once and answered as
        found, in the group (judged again with the others if the trust list is replaced
        before the group runs). A request whose status list must first be fetched is
        verified on its own, so that no other caller waits for that partner."""
        started = time.perf_counter()
        at = self.clock()
        snapshot = self.trust.snapshot
        digest = hashlib.sha256(req.credential.encode("utf-8", "surrogatepass")).hexdigest()
        item = _Item(req, digest, at, started, actor, source, request_id, case_id)
        # A tier-1 hit: looked up without an await, so on the snapshot still served.
        outcome = self._decoded_hit(snapshot, req, digest, at.timestamp())
        if self.coalesce:
            return await self._together(item, outcome, snapshot)
        if outcome is not None:
            return await self._answer(item, outcome)
        return await self._alone(item, snapshot)

    async def _alone(self, item: _Item, snapshot: TrustSnapshot | None = None
                     ) -> dict[str, Any]:
        """Verify one request by itself, fetching the status lists it needs."""
        if snapshot is None:
            snapshot = self.trust.snapshot
        outcome = await self._outcome(snapshot, item.req, item.at, item.digest,
                                      decoded_checked=True)
        for _ in range(SNAPSHOT_RETRIES):
            if snapshot is self.trust.snapshot:
                break
            # The trust list changed while this request waited (for a status list):
            # judge it again on the list now served, never answer on the one replaced.
            snapshot = self.trust.snapshot
            outcome = await self._outcome(snapshot, item.req, item.at, item.digest)
        return await self._answer(item, outcome)

    async def _answer(self, item: _Item, outcome: _Outcome) -> dict[str, Any]:
        answer = self._render(outcome, item.at, item.digest)
        await self._log(answer, self._item_event(item, outcome))
        return answer

    def _item_event(self, item: _Item, outcome: _Outcome) -> AuditEvent:
        return self._event(item.req, outcome, actor=item.actor, source=item.source,
                           request_id=item.request_id, at=item.at, started=item.started,
                           digest=item.digest, case_id=item.case_id)

    async def _together(self, item: _Item, hit: _Outcome | None,
                        snapshot: TrustSnapshot) -> dict[str, Any]:
        """Wait for the answer of ``item``, verified (or, for a tier-1 ``hit`` found on
        ``snapshot``, answered) with the others of this loop turn."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._start_together)
        self._waiting.append((item, future, hit, None if hit is None else snapshot))
        return await future

    def _start_together(self) -> None:
        waiting, self._waiting = self._waiting, []
        task = asyncio.get_running_loop().create_task(self._run_together(waiting))
        self._running.add(task)  # held until done: the loop keeps only a weak reference
        task.add_done_callback(self._running.discard)

    async def _run_together(self, waiting: list[_Waiting]) -> None:
        # A hit found on the snapshot still served is answered as found; one found on a
        # trust list replaced since is judged again with the others.
        served = self.trust.snapshot
        known = [hit if found_on is served else None for _, _, hit, found_on in waiting]
        try:
            answers = await self._verify_items([item for item, *_ in waiting], fetch=False,
                                               keep_decoded=True, known=known)
        except asyncio.CancelledError:
            for _, future, *_ in waiting:
                future.cancel()
            raise
        except AuditUnavailableError as exc:
            # The log refused the group's records (the last step): each caller gets that,
            # as it would alone. Not made again: a log without group appends may have
            # kept some of them, and a record must not be written twice.
            for _, future, *_ in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        except Exception as exc:
            if len(waiting) == 1:  # its own failure: the caller gets it
                if not waiting[0][1].done():
                    waiting[0][1].set_exception(exc)
                return
            # One request's failure must not become the others': each is verified again
            # on its own, and only what fails alone fails.
            _log.warning("verifications made together failed; each is made alone",
                         exc_info=True)
            await asyncio.gather(*(self._settle(future, self._alone(item))
                                   for item, future, *_ in waiting if not future.done()))
            return
        alone = []
        for (item, future, *_), answer in zip(waiting, answers, strict=True):
            if answer is None:  # a status list to fetch first: verified by itself
                alone.append(self._settle(future, self._alone(item)))
            elif not future.done():  # a caller gone away has cancelled its future
                future.set_result(answer)
        if alone:
            await asyncio.gather(*alone)

    @staticmethod
    async def _settle(future: asyncio.Future[dict[str, Any]],
                      work: Coroutine[Any, Any, dict[str, Any]]) -> None:
        """Run ``work`` and give its answer (or its exception) to ``future``."""
        try:
            answer = await work
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(answer)

    async def verify_batch(self, items: Sequence[VerificationRequest], *, actor: str,
                           source: str | None = None, request_id: str | None = None,
                           case_id: str | None = None) -> list[dict[str, Any]]:
        """Verify many; answers keep the order of ``items`` (``case_id`` as in ``verify``)."""
        started = time.perf_counter()
        at = self.clock()
        batch = [_Item(r, hashlib.sha256(r.credential.encode("utf-8", "surrogatepass"))
                       .hexdigest(), at, started, actor, source, request_id, case_id)
                 for r in items]
        answers = await self._verify_items(batch, fetch=True, keep_decoded=False)
        return cast("list[dict[str, Any]]", answers)

    async def _verify_items(self, items: list[_Item], *, fetch: bool, keep_decoded: bool,
                            known: Sequence[_Outcome | None] | None = None
                            ) -> list[dict[str, Any] | None]:
        """The answers of ``items``, in order, their records durable (one group).

        ``fetch``: status lists not held are fetched (all at once); otherwise an item that
        needs one is left out and its answer is None. ``keep_decoded``: the verdicts
        cached are also kept decoded in tier 1, as ``verify`` keeps them. ``known``: the
        outcomes already found (tier-1 hits on the snapshot served), by position; only
        the other items are looked up and verified, unless the trust list changes."""
        if not items:
            return []
        slices = _Slices()
        snapshot = self.trust.snapshot
        outcomes: list[_Outcome | None] = [None] * len(items) if known is None else [*known]
        rest = [i for i, outcome in enumerate(outcomes) if outcome is None]
        if rest:
            found = await self._batch_outcomes(snapshot, [items[i] for i in rest], slices,
                                               fetch=fetch, keep_decoded=keep_decoded)
            for i, outcome in zip(rest, found, strict=True):
                outcomes[i] = outcome
        for _ in range(SNAPSHOT_RETRIES):
            if snapshot is self.trust.snapshot:
                break
            snapshot = self.trust.snapshot  # changed meanwhile: judge the batch again (verify)
            outcomes = await self._batch_outcomes(snapshot, items, slices, fetch=fetch,
                                                  keep_decoded=keep_decoded)
        answers: list[dict[str, Any] | None] = []
        logged: list[dict[str, Any]] = []
        events: list[AuditEvent] = []
        for item, outcome in zip(items, outcomes, strict=True):
            if outcome is None:
                answers.append(None)
                continue
            answer = self._render(outcome, item.at, item.digest)
            answers.append(answer)
            logged.append(answer)
            events.append(self._item_event(item, outcome))
            await slices.pause()
        await self._log_many(logged, events)
        return answers

    async def _log_many(self, answers: list[dict[str, Any]], events: list[AuditEvent]) -> None:
        """``_log`` of a whole batch: its records handed to the audit log at once (one
        future, committed together under one checkpoint) where the log takes batches."""
        if not events:
            return
        if self._proving is None:
            append_many = getattr(self.audit, "append_many", None)
            if append_many is not None:
                await append_many(events)
            else:
                await asyncio.gather(*(self.audit.append(event) for event in events))
            return
        proved_many = getattr(self._proving, "append_proved_many", None)
        if proved_many is not None:
            entries: Sequence[LoggedEntry] = await proved_many(events)
        else:
            entries = await asyncio.gather(
                *(self._proving.append_proved(event) for event in events))
        for answer, entry in zip(answers, entries, strict=True):
            answer["receipt"] = entry.to_json()

    async def _batch_outcomes(self, snapshot: TrustSnapshot, items: list[_Item],
                              slices: _Slices, *, fetch: bool, keep_decoded: bool
                              ) -> list[_Outcome | None]:
        """The outcomes of ``items`` on one trust snapshot: cache first, then fresh checks
        (``_verify_items`` says what ``fetch`` and ``keep_decoded`` do)."""
        now = max(item.at for item in items).timestamp()
        keys = [self._cache_key(item.req, item.digest) for item in items]
        found: list[tuple[CacheEntry, str] | None] = (
            await self.cache.get_many(snapshot.tag, keys, now) if self.cache is not None
            else [None] * len(items))
        outcomes: list[_Outcome | None] = []
        misses: list[tuple[int, Pending | Verdict]] = []
        for index, (item, key) in enumerate(zip(items, keys, strict=True)):
            hit = self._hit(snapshot, item.req, found[index], key)
            if hit is None:
                misses.append((index, self._start(snapshot, item.req, item.at)))
            outcomes.append(hit)
            await slices.pause()
        # Every status list the batch needs, fetched concurrently, then each item finished.
        started = [pending for _, pending in misses]
        if fetch:
            statuses = await self._statuses(snapshot, started)
        else:
            statuses, missing = self._held_statuses(snapshot, started)
            if missing:
                misses = [(index, pending) for index, pending in misses
                          if all(key in statuses for key, _, _ in self._status_refs(pending))]
        to_store: list[tuple[str, CacheEntry]] = []
        decoded: list[tuple[str, CacheEntry, _Outcome]] = []
        for index, pending in misses:
            verdict = self._finish(pending, statuses)
            core, links, holder = self._core(verdict, items[index].req)
            outcomes[index] = _Outcome(core, holder, False, links, core["status_list"])
            if self.cache is not None:
                entry = self._entry_for(snapshot, verdict, core, items[index].at.timestamp())
                if entry is not None:
                    to_store.append((keys[index], entry))
                    if keep_decoded:
                        decoded.append((keys[index], entry, _Outcome(
                            core, holder, True, links, core["status_list"])))
            await slices.pause()
        if self.cache is not None and to_store and snapshot is self.trust.snapshot:
            await self.cache.put_many(snapshot.tag, to_store, now)
            for key, entry, kept in decoded:
                # In this process only, and found only by these very credential bytes.
                self.cache.keep_decoded(snapshot.tag, key, entry, kept)
        return outcomes


def verdict_trust_next_update(snapshot: TrustSnapshot) -> float:
    """The instant the snapshot's trust list goes stale, as Unix time."""
    return snapshot.trust_list.next_update.timestamp()


def request_from_json(item: Mapping[str, Any]) -> VerificationRequest:
    """Build a request from a validated JSON object (see ``gateway.api``)."""
    matter = item.get("matter")
    return VerificationRequest(
        credential=item["credential"],
        use_cause=item.get("use_cause"),
        matter_region=None if not matter else matter.get("region"),
        matter_code=None if not matter else matter.get("code"),
    )
