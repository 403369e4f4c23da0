"""The verification service: one licence in, a verdict, a receipt and an audit record out.

It takes a trust snapshot, runs the pure verifier, fetches a status list when
the licence references one (through ``StatusFetcher``), signs a receipt, and
returns only after the audit record is durable. A failed audit write fails the
request; it never turns into an answer without a record.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from gateway.audit.event import ActorKind, AuditEvent, AuditLog, EventType
from gateway.signing import SigningKey
from gateway.status_fetch import StatusFetcher
from gateway.trust_state import TrustState
from trust import Pending, Verdict

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

BATCH_CHUNK = 64
"""Verifications run between two yields to the event loop in a batch."""


@dataclass(frozen=True, slots=True)
class VerificationRequest:
    """A local system's verification request, already validated for shape."""

    credential: str
    use_cause: str | None = None
    matter_region: str | None = None
    matter_code: str | None = None


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


class NoMatterResolver:
    """Used when no registry is loaded: the requested code stands for itself."""

    def partner_codes(self, region: str, code: str, partner_region: str) -> frozenset[str]:
        """Only the code as given."""
        return frozenset({code})

    def huzhou_matters(self, issuer_region: str, codes: Sequence[str]) -> list[MatterLink]:
        """No translation without a registry."""
        return []


def utc_now() -> datetime:
    """The system clock, in UTC."""
    return datetime.now(UTC)


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
        clock: Clock = utc_now,
    ) -> None:
        self.trust = trust
        self.status = status
        self.receipts = receipts
        self.audit = audit
        self.gateway_id = gateway_id
        self.matters: MatterResolver = matters or NoMatterResolver()
        self.clock = clock

    def _matter_codes(self, req: VerificationRequest, snapshot_partner: str | None,
                      ) -> frozenset[str] | None:
        if req.matter_code is None or snapshot_partner is None:
            return None
        return self.matters.partner_codes(req.matter_region or "330500", req.matter_code,
                                          snapshot_partner)

    def _start(self, req: VerificationRequest, at: datetime) -> Pending | Verdict:
        verifier = self.trust.snapshot.verifier
        pending = verifier.start(req.credential, at=at)
        if req.matter_code is None or isinstance(pending, Verdict):
            return pending
        partner = pending.partner
        if partner is None or partner.matters is None:
            return pending
        # The agreement names matters in the partner's scheme: re-run with the
        # requested matter's codes there (cheap: no network, no status yet).
        codes = self._matter_codes(req, partner.region_code)
        return verifier.start(req.credential, at=at, matter_codes=codes)

    async def _finish(self, pending: Pending | Verdict) -> Verdict:
        if isinstance(pending, Verdict):
            return pending
        ref = pending.status_needed
        if ref is None:
            return pending.finish()
        partner = pending.partner
        assert partner is not None
        snapshot = self.trust.snapshot
        status = await self.status.get(ref.uri, partner, snapshot.trust_list)
        return pending.finish(status)

    def _answer(self, req: VerificationRequest, verdict: Verdict, at: datetime,
                digest: str) -> tuple[dict[str, Any], list[MatterLink]]:
        licence = verdict.licence
        summary: dict[str, Any] | None = None
        links: list[MatterLink] = []
        if licence is not None:
            summary = licence.summary()
            # Holder data only as the caller sent it, for the window to compare.
            summary["holder"] = {"name": licence.holder_name, "code": licence.holder_code,
                                 "code_type": licence.holder_code_type}
            if verdict.passed:
                links = self.matters.huzhou_matters(licence.iss, licence.matters)
        status_claim: dict[str, Any] | None = None
        if verdict.status_used is not None:
            status_claim = {"uri": verdict.status_used[0],
                            "iat": int(verdict.status_used[1].timestamp())}
        receipt = self.receipts.sign(
            {"typ": "ecert-receipt+jwt"},
            {
                "iss": self.gateway_id,
                "iat": int(at.timestamp()),
                "credential_sha256": digest,
                "indication": verdict.indication.value,
                "sub_indication": (None if verdict.sub_indication is None
                                   else verdict.sub_indication.value),
                "cn_status": verdict.cn_status,
                "trust_list_version": verdict.trust_list_version,
                "status": status_claim,
            },
        )
        answer = {
            "indication": verdict.indication.value,
            "sub_indication": (None if verdict.sub_indication is None
                               else verdict.sub_indication.value),
            "cn_status": verdict.cn_status,
            "checks": [c.to_json() for c in verdict.checks],
            "licence": summary,
            "matters": [m.to_json() for m in links],
            "trust_list_version": verdict.trust_list_version,
            "status_list": status_claim,
            "cached": False,
            "receipt": receipt,
        }
        return answer, links

    def _event(self, req: VerificationRequest, verdict: Verdict, links: list[MatterLink],
               *, actor: str, source: str | None, request_id: str | None, at: datetime,
               started: float, digest: str) -> AuditEvent:
        licence = verdict.licence
        personal: dict[str, str] = {}
        if licence is not None:
            personal = {"holder_code": licence.holder_code, "holder_name": licence.holder_name}
        matter_before = None
        if req.matter_code is not None:
            matter_before = {"region": req.matter_region or "330500", "code": req.matter_code}
        return AuditEvent(
            event_type=EventType.VERIFICATION,
            actor_kind=ActorKind.LOCAL_SYSTEM,
            actor_id=actor,
            at=at,
            source_addr=source,
            outcome=verdict.indication.value,
            sub_indication=None if verdict.sub_indication is None else verdict.sub_indication.value,
            cn_status=verdict.cn_status,
            use_cause=req.use_cause,
            matter_before=matter_before,
            matters_after=tuple({"region": m.region, "code": m.code} for m in links),
            licence_identifier=None if licence is None else licence.jti,
            licence_type=None if licence is None else licence.type_code,
            issuer_region=None if licence is None else licence.iss,
            partner_region=None if licence is None else licence.iss,
            trust_list_version=verdict.trust_list_version,
            cached=False,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            request_id=request_id,
            personal=personal,
            details={"credential_sha256": digest,
                     "status_list": None if verdict.status_used is None
                     else verdict.status_used[0]},
        )

    async def verify(self, req: VerificationRequest, *, actor: str, source: str | None = None,
                     request_id: str | None = None) -> dict[str, Any]:
        """Verify one licence; the answer is returned once its audit record is durable."""
        started = time.perf_counter()
        at = self.clock()
        verdict = await self._finish(self._start(req, at))
        digest = hashlib.sha256(req.credential.encode("utf-8", "surrogatepass")).hexdigest()
        answer, links = self._answer(req, verdict, at, digest)
        await self.audit.append(self._event(req, verdict, links, actor=actor, source=source,
                                            request_id=request_id, at=at, started=started,
                                            digest=digest))
        return answer

    async def verify_batch(self, items: Sequence[VerificationRequest], *, actor: str,
                           source: str | None = None,
                           request_id: str | None = None) -> list[dict[str, Any]]:
        """Verify many; answers keep the order of ``items``."""
        started = time.perf_counter()
        at = self.clock()
        pendings: list[Pending | Verdict] = []
        for index, req in enumerate(items):
            pendings.append(self._start(req, at))
            if index % BATCH_CHUNK == BATCH_CHUNK - 1:
                await asyncio.sleep(0)  # let other requests run between chunks
        verdicts = await asyncio.gather(*(self._finish(p) for p in pendings))
        answers: list[dict[str, Any]] = []
        appends = []
        for index, (req, verdict) in enumerate(zip(items, verdicts, strict=True)):
            digest = hashlib.sha256(req.credential.encode("utf-8", "surrogatepass")).hexdigest()
            answer, links = self._answer(req, verdict, at, digest)
            answers.append(answer)
            appends.append(self.audit.append(self._event(
                req, verdict, links, actor=actor, source=source, request_id=request_id, at=at,
                started=started, digest=digest)))
            if index % BATCH_CHUNK == BATCH_CHUNK - 1:
                await asyncio.sleep(0)
        await asyncio.gather(*appends)
        return answers


def request_from_json(item: Mapping[str, Any]) -> VerificationRequest:
    """Build a request from a validated JSON object (see ``gateway.api``)."""
    matter = item.get("matter")
    return VerificationRequest(
        credential=item["credential"],
        use_cause=item.get("use_cause"),
        matter_region=None if not matter else matter.get("region"),
        matter_code=None if not matter else matter.get("code"),
    )
