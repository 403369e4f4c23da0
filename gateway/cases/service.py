"""The case service: 免证办 for a Huzhou matter or a 「高效办成一件事」 bundle.

A local system names the matter or bundle, the applicant (the identifiers of
the enterprise and people the requirements name, by role) and the licences
presented. The service

1. reads the requirements from the case book (``registry.CaseBook``),
2. verifies every presented licence through the verification service (same
   verdicts, same cache, each with its own audit record carrying the case id),
3. for a requirement no presented licence meets, asks the partners that may
   hold the licence (``PartnerQueries``; all at once, each with its deadline)
   and verifies what they hand over the same way,
4. answers met or not met, each requirement with its evidence: verdicts,
   holder match, the Huzhou matters the licences serve, which partner supplied
   what, and the case's matters translated into each partner's catalogue,
5. after one ``case`` audit record linking the parts (``details.case_id``),
   written before the answer; identifiers only as the audit log's pseudonyms.

A requirement is met by a licence that passed (``TOTAL_PASSED``), is of a
type one of its alternatives names, and is held by the person or entity that
alternative's role names (holder code and code type, case aside).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.audit.event import ActorKind, AuditEvent, AuditLog, EventType
from gateway.cases.partners import PartnerQueries, PartnerReply
from gateway.matters.service import MatterService
from gateway.trustlist.state import TrustState
from gateway.verification.service import Clock, VerificationRequest, VerificationService
from registry import Alternative, CaseBook, RegistryError, Requirement, holder_regions
from trust import Partner, PartnerStatus

__all__ = ["CaseError", "CaseRequest", "CaseService", "UnknownCaseError"]

PASSED = "TOTAL_PASSED"


class CaseError(Exception):
    """A case request the service cannot take (the routes map it to 4xx)."""


class UnknownCaseError(CaseError):
    """The bundle, matter or role named is not in the case book."""


@dataclass(frozen=True, slots=True)
class CaseRequest:
    """A local system's case request, already validated for shape."""

    bundle: str | None
    matter: str | None
    """A Huzhou matter code (exactly one of ``bundle`` and ``matter`` is set)."""
    applicant: Mapping[str, str]
    """Role name -> holder code (USCC or 身份证号)."""
    licences: tuple[str, ...]
    use_cause: str
    partners: tuple[str, ...] | None = None
    """Regions to ask for licences not presented; None: the bundle's or the holders'."""


@dataclass(slots=True)
class _Candidate:
    """A verified licence that a requirement may use."""

    answer: dict[str, Any]
    source: str
    """``presented`` or ``partner``."""
    index: int | None = None
    """Its place among the presented licences."""
    partner: str | None = None


@dataclass(slots=True)
class _Judged:
    """A requirement and what was found for it."""

    requirement: Requirement
    matters: tuple[str, ...]
    met_by: _Candidate | None = None
    evidence: list[dict[str, Any]] = field(default_factory=list)
    asked: list[PartnerReply] = field(default_factory=list)
    missing_roles: list[str] = field(default_factory=list)


def _holder_matches(answer: Mapping[str, Any], code: str | None, code_type: str) -> bool:
    licence = answer.get("licence") or {}
    holder = licence.get("holder") or {}
    return (code is not None and str(holder.get("code", "")).upper() == code.upper()
            and holder.get("code_type") == code_type)


class CaseService:
    """Checks the licence requirements of matters and bundles."""

    def __init__(self, *, book: CaseBook, verification: VerificationService,
                 matters: MatterService, trust: TrustState, partners: PartnerQueries,
                 audit: AuditLog, clock: Clock) -> None:
        self.book = book
        self.verification = verification
        self.matters = matters
        self.trust = trust
        self.partners = partners
        self.audit = audit
        self.clock = clock

    # ------------------------------------------------------------------ the steps

    def _matter_codes(self, req: CaseRequest) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        """(what the case is, its matters, the bundle's partners)."""
        if req.bundle is not None:
            bundle = self.book.bundles.get(req.bundle)
            if bundle is None:
                raise UnknownCaseError(f"unknown bundle {req.bundle}")
            return bundle.id, bundle.matters, bundle.partners
        assert req.matter is not None
        if req.matter not in self.book.matters:
            raise UnknownCaseError(f"matter {req.matter} has no requirements in the case book")
        return req.matter, (req.matter,), ()

    def _check_roles(self, req: CaseRequest) -> None:
        for role, code in req.applicant.items():
            spec = self.book.roles.get(role)
            if spec is None:
                raise UnknownCaseError(f"unknown role applicant.{role}; roles: "
                                       f"{', '.join(sorted(self.book.roles))}")
            if len(code) != 18 or not code.isalnum():
                raise CaseError(f"applicant.{role} must be an 18-character "
                                f"{'USCC' if spec.code_type == '001' else '身份证号'}")

    def _holder(self, req: CaseRequest, alt: Alternative) -> tuple[str | None, str]:
        return req.applicant.get(alt.holder), self.book.roles[alt.holder].code_type

    def _meets(self, req: CaseRequest, judged: _Judged, cand: _Candidate) -> dict[str, Any] | None:
        """The evidence entry of ``cand`` for this requirement (None when not of its types);
        sets ``met_by`` when it meets it."""
        answer = cand.answer
        licence = answer.get("licence") or {}
        type_code = licence.get("type_code")
        alts = [a for a in judged.requirement.any_of if a.type_code == type_code]
        if not alts:
            return None
        holder_match = any(_holder_matches(answer, *self._holder(req, a)) for a in alts)
        entry = {
            "source": cand.source, "presented_index": cand.index, "partner": cand.partner,
            "identifier": licence.get("identifier"), "type_code": type_code,
            "issuer_region": licence.get("issuer_region"),
            "indication": answer["indication"], "sub_indication": answer["sub_indication"],
            "cn_status": answer["cn_status"], "holder_match": holder_match,
            "matters": answer.get("matters", []), "receipt": answer.get("receipt"),
        }
        if judged.met_by is None and holder_match and answer["indication"] == PASSED:
            judged.met_by = cand
        return entry

    def _partners_for(self, req: CaseRequest, bundle_partners: Sequence[str],
                      alt: Alternative, holder_code: str, code_type: str) -> list[Partner]:
        """Partners to ask for ``alt``: the request's, else the bundle's, else the regions the
        holder's code names; only active partners with a query endpoint whose agreement
        covers the type."""
        trust_list = self.trust.snapshot.trust_list
        if req.partners is not None:
            regions: Sequence[str] = req.partners
        elif bundle_partners:
            regions = bundle_partners
        else:
            regions = holder_regions(holder_code, code_type)
        chosen: list[Partner] = []
        for region in regions:
            partner = trust_list.partner(region)
            if (partner is not None and partner.query_endpoint
                    and partner.status is PartnerStatus.ACTIVE
                    and partner.covers_type(alt.type_code) and partner not in chosen):
                chosen.append(partner)
                if req.partners is None and not bundle_partners:
                    break  # the most specific region the holder's code names
        return chosen

    async def _ask(self, req: CaseRequest, judged: list[_Judged], bundle_partners: Sequence[str],
                   ) -> list[tuple[_Judged, PartnerReply]]:
        """Query partners for every requirement still unmet, all at once; a query two
        requirements need alike (partner, type, holder) is sent once."""
        wanted: list[tuple[_Judged, tuple[str, str, str, str]]] = []
        queries: dict[tuple[str, str, str, str], Coroutine[Any, Any, PartnerReply]] = {}
        for j in judged:
            if j.met_by is not None:
                continue
            for alt in j.requirement.any_of:
                code, code_type = self._holder(req, alt)
                if code is None:
                    continue
                for partner in self._partners_for(req, bundle_partners, alt, code, code_type):
                    key = (partner.region_code, alt.type_code, code.upper(), code_type)
                    wanted.append((j, key))
                    if key not in queries:
                        queries[key] = self.partners.by_holder(
                            partner, holder_code=code, holder_code_type=code_type,
                            type_code=alt.type_code, matter_code=j.matters[0],
                            use_cause=req.use_cause)
        replies = dict(zip(queries, await asyncio.gather(*queries.values()), strict=True))
        return [(j, replies[key]) for j, key in wanted]

    def _translations(self, codes: Sequence[str], regions: Sequence[str]
                      ) -> list[dict[str, Any]]:
        """Each matter of the case with its name and its translation into each region."""
        at = self.matters.today()
        out = []
        for code in codes:
            spec = self.book.matters[code]
            by_region: dict[str, list[dict[str, Any]]] = {}
            for region in regions:
                try:
                    answer = self.matters.translate(self.book.region, code, region, at=at)
                except RegistryError:
                    by_region[region] = []  # no catalogue of that region, or no map
                    continue
                by_region[region] = [
                    {"code": m.code, "name": m.name, "relationship": m.relationship.value,
                     "maps": list(m.maps)} for m in answer.matches]
            out.append({"region": self.book.region, "code": code, "name": spec.name,
                        "translations": by_region})
        return out

    @staticmethod
    def _reason(j: _Judged) -> str | None:
        if j.met_by is not None:
            return None
        if j.evidence:
            if any(e["indication"] == PASSED for e in j.evidence):
                return "holder-mismatch"
            if any(e["holder_match"] for e in j.evidence):
                return "licence-not-valid"
            return "holder-mismatch"
        if j.asked and all(r.error is not None for r in j.asked):
            return "partner-unavailable"
        if j.asked:
            return "not-found-at-partner"
        if len(j.missing_roles) == len(j.requirement.any_of):
            return "holder-not-given"
        return "not-presented"

    # ------------------------------------------------------------------ the whole case

    async def check(self, req: CaseRequest, *, actor: str, source: str | None = None,
                    request_id: str | None = None) -> dict[str, Any]:
        """Judge a case; the answer is returned once its audit records are durable."""
        started = time.perf_counter()
        at = self.clock()
        what, codes, bundle_partners = self._matter_codes(req)
        self._check_roles(req)
        case_id = str(uuid.uuid4())
        judged = [_Judged(r, served) for r, served in self.book.requirements_of(codes)]
        for j in judged:
            j.missing_roles = [a.holder for a in j.requirement.any_of
                               if a.holder not in req.applicant]
        presented = await self.verification.verify_batch(
            [VerificationRequest(credential=t, use_cause=req.use_cause,
                                 matter_region=self.book.region, matter_code=codes[0])
             for t in req.licences], actor=actor, source=source, request_id=request_id,
            case_id=case_id) if req.licences else []
        for index, answer in enumerate(presented):
            cand = _Candidate(answer, "presented", index=index)
            for j in judged:
                entry = self._meets(req, j, cand)
                if entry is not None:
                    j.evidence.append(entry)
        asked = await self._ask(req, judged, bundle_partners)
        fetched: dict[str, str] = {}  # each licence handed over -> the partner that did
        uses: list[tuple[_Judged, str]] = []
        for j, reply in asked:
            j.asked.append(reply)
            for token in reply.licences:
                fetched.setdefault(token, reply.region)
                uses.append((j, token))
        if fetched:
            answers = dict(zip(fetched, await self.verification.verify_batch(
                [VerificationRequest(credential=t, use_cause=req.use_cause,
                                     matter_region=self.book.region, matter_code=codes[0])
                 for t in fetched], actor=actor, source=source,
                request_id=request_id, case_id=case_id), strict=True))
            for j, token in uses:
                entry = self._meets(req, j, _Candidate(answers[token], "partner",
                                                       partner=fetched[token]))
                if entry is not None:
                    j.evidence.append(entry)
        met = all(j.met_by is not None for j in judged)
        regions = sorted({r.region for j in judged for r in j.asked}
                         | {str(e["issuer_region"]) for j in judged for e in j.evidence
                            if e["issuer_region"]} - {self.book.region})
        answer = {
            "case_id": case_id,
            "bundle": req.bundle,
            "met": met,
            "requirements": [self._requirement_json(j) for j in judged],
            "matters": self._translations(codes, regions),
            "presented": presented,
            "case_book_version": self.book.version,
        }
        await self.audit.append(self._event(req, what, codes, judged, met, case_id=case_id,
                                            actor=actor, source=source,
                                            request_id=request_id, at=at, started=started))
        return answer

    def _requirement_json(self, j: _Judged) -> dict[str, Any]:
        req = j.requirement
        met_by = j.met_by
        return {
            "id": req.id, "title": req.title, "matters": list(j.matters),
            "any_of": [a.to_json() for a in req.any_of],
            "met": met_by is not None, "reason": self._reason(j),
            "met_by": None if met_by is None else {
                "source": met_by.source, "presented_index": met_by.index,
                "partner": met_by.partner,
                "identifier": (met_by.answer.get("licence") or {}).get("identifier")},
            "evidence": j.evidence,
            "partners_asked": [r.to_json() for r in j.asked],
            "source": req.source, "illustrative": req.illustrative,
        }

    def _event(self, req: CaseRequest, what: str, codes: Sequence[str], judged: list[_Judged],
               met: bool, *, case_id: str, actor: str, source: str | None,
               request_id: str | None, at: Any, started: float) -> AuditEvent:
        requirements = [{
            "id": j.requirement.id, "met": j.met_by is not None, "reason": self._reason(j),
            "licences": [{"identifier": e["identifier"], "source": e["source"],
                          "partner": e["partner"], "indication": e["indication"],
                          "holder_match": e["holder_match"]} for e in j.evidence],
            "partners_asked": [{"region": r.region, "type_code": r.type_code,
                                "cn_status": r.cn_status, "error": r.error} for r in j.asked],
        } for j in judged]
        return AuditEvent(
            event_type=EventType.CASE,
            actor_kind=ActorKind.LOCAL_SYSTEM,
            actor_id=actor,
            at=at,
            source_addr=source,
            outcome="met" if met else "not-met",
            use_cause=req.use_cause,
            matter_before={"region": self.book.region, "code": codes[0]},
            matters_after=tuple({"region": self.book.region, "code": c} for c in codes),
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            request_id=request_id,
            trust_list_version=self.trust.snapshot.trust_list.version,
            # Identifiers by role: the audit log keeps only their keyed hashes and masks.
            personal={f"applicant_{role}": code for role, code in req.applicant.items()},
            details={"case_id": case_id, "case": what, "bundle": req.bundle,
                     "case_book_version": self.book.version,
                     "presented": len(req.licences), "requirements": requirements},
        )
