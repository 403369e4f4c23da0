"""The verifier: bytes + trust list + time in, verdict out.

Checks run in the order of spec/verdicts.md and the verdict reports the first
failure, while every check that could still run is listed with its own result.
Fetching a status list is I/O and belongs to the caller, so verification has two
steps: ``Verifier.start`` runs checks 1-6 and says which status list (if any) it
needs; ``Pending.finish`` takes that list (or the reason it is unavailable) and
answers. ``Verifier.check`` does both when the caller already holds the lists.

The per-licence path is kept lean: what depends only on the trust list (each
``kid``'s anchors with their partner and use-independent state, the messages of
passing checks) is computed once when the verifier is built; a protected header
already judged is recognised by its bytes; a status URI already judged for a
partner is not parsed again. These memos are bounded and hold nothing the
licence alone decides, so every answer is the one a fresh computation gives
(tests/trust/test_lean_verifier.py compares the two on generated licences).
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from stdnum.cn import uscc

from trust._anchors import (
    Anchor,
    AnchorStatus,
    AnchorUse,
    IdentifierPolicy,
    Partner,
    PartnerStatus,
    TrustList,
)
from trust._b64 import b64url_decode
from trust._chain import (
    MAX_X5C_CERTIFICATES,
    MAX_X5C_ROOTS,
    ChainBudget,
    ChainResult,
    candidate_roots,
    find_path,
    validate_chain,
    x5c_problem,
)
from trust._claims import (
    ClaimsError,
    Component,
    Licence,
    StatusReference,
    numeric_date,
    parse_claims,
)
from trust._errors import IdentifierError, JoseError
from trust._identifier import CheckOutcome, judge_identifier, parse_identifier
from trust._jose import (
    MAX_CREDENTIAL_BYTES,
    Alg,
    VerifyingKey,
    header_alg,
    parse_compact,
    parse_json_object,
    refused_header,
)
from trust._sm2cert import certificate_key
from trust._status import StatusList, StatusValue
from trust._timeutil import day_end, day_start, require_aware
from trust._uri import status_uri_problem
from trust._verdict import Check, CheckResult, Indication, SubIndication, Verdict

__all__ = ["Pending", "StatusUnavailable", "Verifier"]

LICENCE_TYP = frozenset({"ecert+jwt", "application/ecert+jwt"})
MAX_CLOCK_SKEW_S = 300
_MAX_CACHED_CHAINS = 4096
_MAX_MEMO = 4096
"""Entries in each per-verifier memo (headers, status URIs, agreement messages) before
it is emptied; they recur (one header per key, one URI per status list)."""
_MAX_MEMO_HEADER_BYTES = 1024
"""Longer protected headers (an ``x5c`` chain, an odd header) are judged every time."""
_SHA256 = hashes.SHA256()

P = CheckResult.PASSED
F = CheckResult.FAILED
SKIP = CheckResult.SKIPPED


@dataclass(frozen=True, slots=True)
class StatusUnavailable:
    """Why the status list a licence references could not be had."""

    reason: str


StatusInput = StatusList | StatusUnavailable


@functools.lru_cache(maxsize=65536)
def _uscc_valid(code: str) -> bool:
    """GB 32100 check of an issuer code; issuers recur, so each is judged once."""
    return bool(uscc.is_valid(code))


class _Run:
    """Accumulates checks; the first failure decides the sub-indication."""

    __slots__ = ("checks", "first")

    def __init__(self) -> None:
        self.checks: list[Check] = []
        self.first: SubIndication | None = None

    def passed(self, check: Check) -> None:
        """Append a passing check made beforehand (checks are immutable, so shared)."""
        self.checks.append(check)

    def ok(self, name: str, detail: str) -> None:
        self.checks.append(Check(name, P, detail))

    def fail(self, name: str, sub: SubIndication, detail: str) -> None:
        result = F if sub.indication is Indication.TOTAL_FAILED else CheckResult.INDETERMINATE
        self.checks.append(Check(name, result, detail, sub))
        if self.first is None:
            self.first = sub

    def skip(self, name: str, detail: str) -> None:
        self.checks.append(Check(name, SKIP, detail))


_OK_STRUCTURE = Check("structure", P, "compact JWS, header and payload are JSON objects")
_OK_ALG = {alg: Check("header.alg", P, f"{alg.value} is allowed") for alg in Alg}
_OK_HEADER = Check("header", P, "typ ecert+jwt, no forbidden parameter")
_OK_CLAIMS = Check("claims", P, "claims follow the ecert profile")
_OK_IDENTIFIER = Check("identifier", P, "ISO 7064 MOD 37,36 check character valid")
_OK_VARIANT = Check("identifier", P, "check character is the known wrong variant, "
                    "accepted under the partner's lenient policy")
_OK_ISSUER_CODE = Check("issuer_code", P, "issuer USCC valid (GB 32100)")


@functools.lru_cache(maxsize=4096)
def _ok_validity(end: datetime | None) -> Check:
    """The passing validity check for a licence valid until ``end`` (None: 长期); licences
    end on a few days (the end of their last valid day), so each is made once."""
    return Check("validity", P, "valid now" + (f" until {end.isoformat()}" if end else " (长期)"))


@dataclass(frozen=True, slots=True)
class _Header:
    """A protected header judged once: the same bytes always get the same judgement."""

    header: dict[str, Any]
    alg: Alg | None
    alg_failure: tuple[SubIndication, str] | None
    problem: str | None
    """Set only when ``alg`` is allowed (the header's checks run after the alg's)."""


_Split = tuple[dict[str, Any], bytes, bytes, bytes, _Header]
"""A credential split: header, payload, signing input, signature, the header's judgement."""


class _AnchorState:
    """A licence-signing anchor with what verification needs of it, computed once."""

    __slots__ = ("anchor", "lenient", "ok", "ok_jurisdiction", "partner", "revocable",
                 "signature_ok", "standing")

    def __init__(self, anchor: Anchor, partner: Partner | None) -> None:
        self.anchor = anchor
        self.partner = partner
        self.lenient = (partner is not None
                        and partner.identifier_policy is IdentifierPolicy.LENIENT)
        # The use-independent rules that do not depend on the signing time, in the order
        # ``Verifier._usable`` applies them after the window.
        standing: tuple[SubIndication, str] | None = None
        if partner is None or partner.status is PartnerStatus.SUSPENDED:
            standing = (SubIndication.TRY_LATER, f"partner {anchor.region} is suspended")
        elif anchor.status is AnchorStatus.SUSPENDED:
            standing = (SubIndication.TRY_LATER, f"anchor {anchor.kid!r} is suspended")
        self.standing = standing
        self.revocable = anchor.status is AnchorStatus.REVOKED
        self.ok: Check | None = (
            None if anchor.key is None
            else Check("anchor", P, f"{anchor.use.value} anchor {anchor.kid!r} of {anchor.region}"))
        self.signature_ok = {
            alg: Check("signature", P, f"{alg.value} signature verifies with {anchor.kid!r}")
            for alg in (anchor.key.algs if anchor.key is not None else ())}
        self.ok_jurisdiction = Check("jurisdiction", P,
                                     f"iss {anchor.region} matches the anchor's region")


@dataclass(frozen=True, slots=True)
class _Kid:
    """Every anchor with one ``kid``, and those that may sign licences, in list order."""

    found: tuple[Anchor, ...]
    fitting: tuple[_AnchorState, ...]


def _judge_status(run: _Run, ref: StatusReference, status: StatusInput | None,
                  partner: Partner, *, at: datetime, consulted: datetime, skew: timedelta,
                  ) -> tuple[tuple[str, datetime] | None, datetime | None]:
    """Step 7 for one status entry: the list used (URI, iat) and, when the entry is
    valid, the instant the list stops being fresh."""
    if status is None:
        run.fail("status", SubIndication.TRY_LATER, "status list was not supplied")
        return None, None
    if isinstance(status, StatusUnavailable):
        run.fail("status", SubIndication.TRY_LATER, status.reason)
        return None, None
    if status.uri != ref.uri or status.region != partner.region_code:
        run.fail("status", SubIndication.TRY_LATER, "status list for another URI")
        return None, None
    used = (status.uri, status.issued_at)
    fresh_until = status.fresh_until(partner.status_max_age_s)
    value = status.value(ref.idx)
    if at > fresh_until + skew:
        run.fail("status", SubIndication.TRY_LATER,
                 f"status list issued {status.issued_at.isoformat()} is stale "
                 f"(fresh until {fresh_until.isoformat()})")
    elif max(at, consulted) + skew < status.issued_at:
        run.fail("status", SubIndication.TRY_LATER, "status list issued in the future")
    elif value is None:
        run.fail("status", SubIndication.TRY_LATER, f"status list has no entry {ref.idx}")
    elif value == StatusValue.VALID:
        run.ok("status", f"entry {ref.idx} valid")
        return used, fresh_until
    elif value == StatusValue.INVALID:
        run.fail("status", SubIndication.REVOKED, f"entry {ref.idx} invalid")
    elif value == StatusValue.SUSPENDED:
        run.fail("status", SubIndication.SUSPENDED, f"entry {ref.idx} suspended")
    else:
        run.fail("status", SubIndication.TRY_LATER,
                 f"entry {ref.idx} has unknown status {value}")
    return used, None


@dataclass(slots=True)
class _ComponentStart:
    """A component of a combined certificate after its own checks, before its status."""

    component: Component
    run: _Run
    valid_until: datetime | None
    status_needed: StatusReference | None


def _format_failure(detail: str, name: str = "structure") -> Verdict:
    return Verdict(
        Indication.TOTAL_FAILED,
        SubIndication.FORMAT_FAILURE,
        (Check(name, F, detail, SubIndication.FORMAT_FAILURE),),
    )


class Pending:
    """A verification that has run checks 1-6 and may need a status list."""

    __slots__ = (
        "_anchor", "_at", "_components", "_licence", "_partner", "_run", "_skew",
        "_trust_list", "_valid_until", "status_needed",
    )

    def __init__(
        self,
        *,
        run: _Run,
        trust_list: TrustList,
        at: datetime,
        skew: timedelta,
        licence: Licence | None,
        anchor: Anchor | None,
        partner: Partner | None,
        valid_until: datetime | None,
        status_needed: StatusReference | None,
        components: tuple[_ComponentStart, ...] = (),
    ) -> None:
        self._run = run
        self._components = components
        self._trust_list = trust_list
        self._at = at
        self._skew = skew
        self._licence = licence
        self._anchor = anchor
        self._partner = partner
        self._valid_until = valid_until
        self.status_needed = status_needed
        """The status entry to fetch, when checks 1-6 passed and the licence has one."""

    @property
    def partner(self) -> Partner | None:
        """The partner whose anchor verified the licence."""
        return self._partner

    @property
    def component_status_needed(self) -> tuple[StatusReference, ...]:
        """The status entries of a combined certificate's components to fetch (those whose
        own checks passed, when the document's checks 1-6 passed); empty otherwise."""
        return tuple(c.status_needed for c in self._components if c.status_needed is not None)

    def finish(self, status: StatusInput | None = None, *,
               consulted_at: datetime | None = None,
               component_status: Mapping[str, StatusInput] | None = None) -> Verdict:
        """Run the status check (step 7) with what the caller fetched, and answer.

        ``consulted_at``: the moment the caller holds ``status`` (default: the
        verification time). A list fetched for this verification may be signed
        after the verification time, so "issued in the future" is judged
        against the later of the two; freshness against the verification time
        alone. ``component_status``: the lists ``component_status_needed`` names,
        by URI (a combined certificate's components; docs/combined-certificates.md).
        """
        consulted = self._at if consulted_at is None else require_aware(consulted_at)
        run = self._run
        status_used: tuple[str, datetime] | None = None
        valid_until = self._valid_until
        depends = False
        ref = self.status_needed
        if ref is not None:
            depends = True
            partner = self._partner
            assert partner is not None
            status_used, fresh_until = _judge_status(run, ref, status, partner, at=self._at,
                                                     consulted=consulted, skew=self._skew)
            if fresh_until is not None:
                valid_until = fresh_until if valid_until is None else min(valid_until,
                                                                          fresh_until)
        elif self._licence is not None and self._licence.status is None:
            run.skip("status", "licence carries no status claim")
        elif run.first is not None:
            run.skip("status", "not consulted: the licence already failed")
        sub = run.first
        indication = Indication.TOTAL_PASSED if sub is None else sub.indication
        licence = self._licence
        doc_until = valid_until if sub is None else None
        components = () if not self._components else tuple(
            self._finish_component(started, sub, doc_until, component_status or {}, consulted)
            for started in self._components)
        return Verdict(
            indication=indication,
            sub_indication=sub,
            checks=tuple(run.checks),
            licence=licence,
            issuer_region=None if licence is None else licence.iss,
            anchor_kid=None if self._anchor is None else self._anchor.kid,
            trust_list_version=self._trust_list.version,
            status_used=status_used,
            valid_until=doc_until,
            depends_on_status=depends or any(c.depends_on_status for c in components),
            components=components,
        )

    def _finish_component(self, started: _ComponentStart, document: SubIndication | None,
                          document_until: datetime | None,
                          lists: Mapping[str, StatusInput], consulted: datetime) -> Verdict:
        """One component's verdict: the document's failure is every component's."""
        own = started.run
        run = _Run()
        if document is None:
            run.ok("document", "the combined certificate passed its own checks")
        else:
            run.fail("document", document,
                     f"the combined certificate failed: {document.value}")
        run.checks.extend(own.checks)
        if run.first is None:
            run.first = own.first
        status_used: tuple[str, datetime] | None = None
        valid_until = started.valid_until
        ref = started.status_needed
        if ref is not None and document is None:
            partner = self._partner
            assert partner is not None
            status_used, fresh_until = _judge_status(run, ref, lists.get(ref.uri), partner,
                                                     at=self._at, consulted=consulted,
                                                     skew=self._skew)
            if fresh_until is not None:
                valid_until = fresh_until if valid_until is None else min(valid_until,
                                                                          fresh_until)
        elif own.checks and own.checks[-1].name == "status":
            pass  # the status URI itself was refused at the start
        else:
            run.skip("status", "not consulted: the component already failed")
        sub = run.first
        if sub is None and document_until is not None:
            valid_until = document_until if valid_until is None else min(valid_until,
                                                                         document_until)
        return Verdict(
            indication=Indication.TOTAL_PASSED if sub is None else sub.indication,
            sub_indication=sub,
            checks=tuple(run.checks),
            licence=started.component,
            issuer_region=None if self._licence is None else self._licence.iss,
            anchor_kid=None if self._anchor is None else self._anchor.kid,
            trust_list_version=self._trust_list.version,
            status_used=status_used,
            valid_until=valid_until if sub is None else None,
            depends_on_status=ref is not None,
        )


class Verifier:
    """Verifies ``ecert+jwt`` licences against one trust list."""

    def __init__(self, trust_list: TrustList, *, clock_skew_s: int = 0) -> None:
        if not 0 <= clock_skew_s <= MAX_CLOCK_SKEW_S:
            raise ValueError(f"clock_skew_s must be within 0..{MAX_CLOCK_SKEW_S}")
        self.trust_list = trust_list
        # Chains already validated under this trust list: the time-independent part
        # (signatures, constraints) holds for any signing time inside every
        # certificate's validity, so a chain is validated once per window.
        self._chains: dict[tuple[bytes, str], tuple[ChainResult, datetime, datetime]] = {}
        self._skew = timedelta(seconds=clock_skew_s)
        self.x5c_signature_checks = 0
        """Certificate signatures checked for x5c chains so far (each licence's at most
        ``MAX_X5C_SIGNATURE_CHECKS``)."""
        self.x5c_paths_validated = 0
        """x5c paths handed to the path validator so far (each licence's at most
        ``MAX_X5C_ROOTS``, each a path whose signatures already verified)."""
        # What depends only on the trust list, computed once (see the module docstring).
        self._ok_trust_list = Check("trust_list", P, f"version {trust_list.version}, fresh")
        self._stale_detail = (f"trust list version {trust_list.version} is past its "
                              f"next_update {trust_list.next_update.isoformat()}")
        self._kids: dict[str, _Kid] = {}
        for kid, anchors in trust_list.by_kid.items():
            self._kids[kid] = _Kid(anchors, tuple(
                _AnchorState(a, trust_list.partner(a.region)) for a in anchors
                if a.use is AnchorUse.LICENCE_SIGNING))
        self._headers: dict[bytes, _Header] = {}
        self._status_uris: dict[tuple[str, str], str | None] = {}
        self._agreements: dict[tuple[str, str, bool], Check] = {}

    def check(
        self,
        credential: str | bytes,
        *,
        at: datetime,
        status: Mapping[str, StatusInput] | Callable[[StatusReference], StatusInput] | None = None,
        matter_codes: frozenset[str] | None = None,
    ) -> Verdict:
        """Verify in one step, taking status lists from ``status`` (by URI, or a function),
        for the licence and, for a combined certificate, for each component."""
        pending = self.start(credential, at=at, matter_codes=matter_codes)
        if isinstance(pending, Verdict):
            return pending
        def lookup(ref: StatusReference) -> StatusInput | None:
            if callable(status):
                return status(ref)
            return None if status is None else status.get(ref.uri)

        ref = pending.status_needed
        supplied = None if ref is None else lookup(ref)
        components: dict[str, StatusInput] = {}
        for part in pending.component_status_needed:
            found = lookup(part)
            if found is not None:
                components.setdefault(part.uri, found)
        return pending.finish(supplied, component_status=components)

    def start(
        self,
        credential: str | bytes,
        *,
        at: datetime,
        matter_codes: frozenset[str] | None = None,
        matter_codes_for: Callable[[Partner], frozenset[str]] | None = None,
    ) -> Pending | Verdict:
        """Run checks 1-6; return a final verdict when nothing more can be learnt.

        ``matter_codes``: when the request names a matter, its codes in the
        partner's own scheme (the code itself and its translations); the
        agreement must cover one of them. ``matter_codes_for`` (instead): gives
        them once the partner is known, asked only when the partner's agreement
        names matters (an agreement covering every matter needs no codes), so a
        caller that cannot name the partner beforehand verifies once, not twice.
        """
        at = require_aware(at)
        skew = self._skew
        # 1. structure and size
        size = len(credential)
        if size > MAX_CREDENTIAL_BYTES:
            return _format_failure(f"credential of {size} bytes exceeds {MAX_CREDENTIAL_BYTES}")
        split = self._split(credential)
        if isinstance(split, Verdict):
            return split
        header, payload, signing_input, signature, judged = split
        run = _Run()
        claims: dict[str, Any] = {}
        try:
            claims = parse_json_object(payload)
        except JoseError as exc:
            run.fail("structure", SubIndication.FORMAT_FAILURE, str(exc))
        else:
            run.passed(_OK_STRUCTURE)
        # 2. protected header (its checks still run and are listed after a payload failure)
        alg = judged.alg
        if alg is None:
            assert judged.alg_failure is not None
            run.fail("header.alg", *judged.alg_failure)
        else:
            run.passed(_OK_ALG[alg])
        if run.first is not None or alg is None:
            return Pending(run=run, trust_list=self.trust_list, at=at, skew=skew, licence=None,
                           anchor=None, partner=None, valid_until=None,
                           status_needed=None).finish()
        header_problem = judged.problem
        certs: list[x509.Certificate] = []
        if header_problem is None and "x5c" in header:
            try:
                certs = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True))
                         for c in header["x5c"]]
            except (binascii.Error, ValueError):
                header_problem = "x5c entry is not a base64 DER certificate"
            else:
                header_problem = x5c_problem(certs)
        if header_problem is not None:
            run.fail("header", SubIndication.FORMAT_FAILURE, header_problem)
            return Pending(run=run, trust_list=self.trust_list, at=at, skew=skew, licence=None,
                           anchor=None, partner=None, valid_until=None,
                           status_needed=None).finish()
        run.passed(_OK_HEADER)
        # The schema is reported at step 5, but the signing time is needed at step 3.
        licence: Licence | None = None
        claims_error: str | None = None
        try:
            licence = parse_claims(claims)
        except ClaimsError as exc:
            claims_error = str(exc)
        signed_at: datetime | None = licence.iat if licence is not None else None
        if signed_at is None and "iat" in claims:
            try:
                signed_at = numeric_date(claims["iat"], "iat")
            except ClaimsError:
                signed_at = None
        iss = claims.get("iss") if isinstance(claims.get("iss"), str) else None
        # 3. the anchor
        if at > self.trust_list.next_update:  # TrustList.is_stale
            run.fail("trust_list", SubIndication.TRY_LATER, self._stale_detail)
        else:
            run.passed(self._ok_trust_list)
        state: _AnchorState | None = None
        if certs:
            anchor, key = self._anchor_by_chain(run, certs, signed_at, iss)
            partner = None if anchor is None else self.trust_list.partner(anchor.region)
        else:
            anchor, key, state = self._anchor_by_kid(run, str(header["kid"]), signed_at, iss)
            partner = None if anchor is None else self.trust_list.partner(anchor.region)
        # 4. the signature
        if key is None:
            run.skip("signature", "no usable anchor")
        else:
            try:
                if key.verify(alg, signing_input, signature):
                    if state is not None:
                        run.passed(state.signature_ok[alg])
                    else:
                        run.ok("signature", f"{alg.value} signature verifies with "
                               f"{anchor.kid!r}" if anchor else "signature verifies")
                else:
                    run.fail("signature", SubIndication.SIG_CRYPTO_FAILURE,
                             f"{alg.value} signature does not verify with the anchor's key")
            except JoseError as exc:
                run.fail("signature", SubIndication.CRYPTO_CONSTRAINTS_FAILURE, str(exc))
        # 5. the claims
        if licence is None:
            run.fail("claims", SubIndication.FORMAT_FAILURE, claims_error or "claims unreadable")
            return Pending(run=run, trust_list=self.trust_list, at=at, skew=skew, licence=None,
                           anchor=anchor, partner=partner, valid_until=None,
                           status_needed=None).finish()
        run.passed(_OK_CLAIMS)
        if anchor is None:
            run.skip("jurisdiction", "no anchor to compare with")
        elif licence.iss != anchor.region:
            run.fail("jurisdiction", SubIndication.JURISDICTION_MISMATCH,
                     f"iss {licence.iss} but the anchor belongs to {anchor.region}")
        elif state is not None:
            run.passed(state.ok_jurisdiction)
        else:
            run.ok("jurisdiction", f"iss {licence.iss} matches the anchor's region")
        self._check_identifier(run, licence.jti, licence.type_code, licence.issuer_code,
                               partner)
        if (matter_codes_for is not None and partner is not None
                and partner.matters is not None):
            matter_codes = matter_codes_for(partner)
        self._check_agreement(run, licence, partner, matter_codes)
        # 6. validity in time
        valid_until = self._check_validity(run, licence, at)
        if anchor is not None and valid_until is not None:
            valid_until = min(valid_until, self.trust_list.next_update)
        elif anchor is not None:
            valid_until = self.trust_list.next_update
        # 7. status, only when every earlier check passed and the licence has an entry
        status_needed = None
        ref = licence.status
        if ref is not None and run.first is None and partner is not None:
            problem = self._status_uri_problem(partner, ref.uri)
            if problem is not None:
                run.fail("status", SubIndication.TRY_LATER, problem)
            else:
                status_needed = ref
        components: tuple[_ComponentStart, ...] = ()
        if licence.components is not None:
            document_ok = run.first is None
            components = tuple(self._start_component(c, partner, at, fetch=document_ok)
                               for c in licence.components)
        return Pending(run=run, trust_list=self.trust_list, at=at, skew=skew, licence=licence,
                       anchor=anchor, partner=partner, valid_until=valid_until,
                       status_needed=status_needed, components=components)

    def _start_component(self, component: Component, partner: Partner | None, at: datetime,
                         *, fetch: bool) -> _ComponentStart:
        """A component's own checks (identifier, issuer code, agreement, validity) and the
        status entry to fetch when they and the document's checks 1-6 passed."""
        run = _Run()
        self._check_identifier(run, component.identifier, component.type_code,
                               component.issuer_code, partner)
        if partner is None:
            run.skip("agreement", "no partner identified")
        elif partner.covers_type(component.type_code):
            run.ok("agreement", f"agreement with {partner.region_code} covers type "
                   f"{component.type_code}")
        else:
            run.fail("agreement", SubIndication.ISSUER_NOT_RECOGNISED_FOR_TYPE,
                     f"agreement with {partner.region_code} does not cover type "
                     f"{component.type_code}")
        skew = self._skew
        valid_until: datetime | None = None
        end = None if component.valid_until is None else day_end(component.valid_until)
        if at + skew < day_start(component.valid_from):
            run.fail("validity", SubIndication.NOT_YET_VALID,
                     f"valid from {component.valid_from.isoformat()}")
        elif end is not None and at - skew >= end:
            run.fail("validity", SubIndication.EXPIRED, f"expired at {end.isoformat()}")
        else:
            run.ok("validity", "valid now" + (f" until {end.isoformat()}" if end else " (长期)"))
            valid_until = end
        status_needed = None
        if fetch and run.first is None and partner is not None:
            ref = component.status
            problem = self._status_uri_problem(partner, ref.uri)
            if problem is not None:
                run.fail("status", SubIndication.TRY_LATER, problem)
            else:
                status_needed = ref
        return _ComponentStart(component, run, valid_until, status_needed)

    def _split(self, credential: str | bytes) -> _Split | Verdict:
        """The credential split (``parse_compact``), with its header's judgement; a header
        already judged is recognised by its bytes and not decoded again."""
        raw: bytes | None = None
        if isinstance(credential, bytes):
            raw = credential
        elif credential.isascii():
            raw = credential.encode("ascii")
        if raw is not None:
            parts = raw.split(b".")
            judged = self._headers.get(parts[0]) if len(parts) == 3 else None
            if judged is not None:
                try:
                    payload = b64url_decode(parts[1])
                    signature = b64url_decode(parts[2])
                except ValueError:
                    pass  # parse_compact below says which part, as it always does
                else:
                    return (judged.header, payload, parts[0] + b"." + parts[1], signature,
                            judged)
        try:
            jws = parse_compact(credential)
        except JoseError as exc:
            return _format_failure(str(exc))
        header = jws.header
        alg: Alg | None = None
        alg_failure: tuple[SubIndication, str] | None = None
        problem: str | None = None
        try:
            alg = header_alg(header)
        except JoseError as exc:
            alg_failure = (SubIndication.CRYPTO_CONSTRAINTS_FAILURE if exc.constraint
                           else SubIndication.FORMAT_FAILURE, str(exc))
        else:
            problem = self._header_problem(header)
        judged = _Header(header, alg, alg_failure, problem)
        head_b64 = jws.signing_input.partition(b".")[0]
        if len(head_b64) <= _MAX_MEMO_HEADER_BYTES and "x5c" not in header:
            if len(self._headers) >= _MAX_MEMO:
                self._headers.clear()
            self._headers[head_b64] = judged
        return header, jws.payload, jws.signing_input, jws.signature, judged

    def _status_uri_problem(self, partner: Partner, uri: str) -> str | None:
        """Why the status list at ``uri`` is not fetched for ``partner``, or None."""
        key = (partner.region_code, uri)
        try:
            return self._status_uris[key]
        except KeyError:
            pass
        problem = status_uri_problem(uri)
        if problem is not None:
            problem = f"{problem}; not fetched"
        elif not partner.status_uri_allowed(uri):
            problem = "status URI is outside the partner's registered prefixes; not fetched"
        if len(self._status_uris) >= _MAX_MEMO:
            self._status_uris.clear()
        self._status_uris[key] = problem
        return problem

    @staticmethod
    def _header_problem(header: Mapping[str, Any]) -> str | None:
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in LICENCE_TYP:
            return f"typ must be ecert+jwt, got {typ!r}"
        refused = refused_header(header, x5c_allowed=True)
        if refused == "crit":
            return "crit names a parameter the gateway does not understand"
        if refused is not None:
            return f"header parameter {refused!r} is not allowed"
        if "b64" in header:
            return "unencoded payloads (b64) are not supported"
        if "x5c" in header:
            x5c = header["x5c"]
            if not isinstance(x5c, list) or not x5c or not all(isinstance(c, str) for c in x5c):
                return "x5c must be a non-empty list of base64 certificates"
            if len(x5c) > MAX_X5C_CERTIFICATES:
                # Refused unread: the count bounds the work of every later step.
                return (f"x5c carries {len(x5c)} certificates, at most {MAX_X5C_CERTIFICATES} "
                        "are allowed")
            if "kid" in header and not isinstance(header["kid"], str):
                return "kid must be a string"
            return None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            return "kid is required when x5c is absent"
        return None

    def _usable(
        self, run: _Run, anchor: Anchor, signed_at: datetime | None, *, record: bool
    ) -> bool:
        """Apply use-independent anchor rules: window at iat, suspension, revocation."""
        partner = self.trust_list.partner(anchor.region)
        problem: tuple[SubIndication, str] | None = None
        if signed_at is None:
            problem = None  # reported as a claims failure at step 5
        elif not anchor.window_contains(signed_at):
            problem = (SubIndication.SIGNING_KEY_NOT_VALID,
                       (f"signed at {signed_at.isoformat()}, outside anchor {anchor.kid!r} window "
                       f"{anchor.valid_from.isoformat()}..{anchor.valid_until.isoformat()}"))
        if problem is None:
            if partner is None or partner.status is PartnerStatus.SUSPENDED:
                problem = (SubIndication.TRY_LATER, f"partner {anchor.region} is suspended")
            elif anchor.status is AnchorStatus.SUSPENDED:
                problem = (SubIndication.TRY_LATER, f"anchor {anchor.kid!r} is suspended")
            elif signed_at is not None and anchor.revoked_for(signed_at):
                reason = anchor.revocation_reason.value if anchor.revocation_reason else "unknown"
                problem = (SubIndication.REVOKED,
                           (f"anchor {anchor.kid!r} revoked ({reason}) in a way that reaches "
                            "this licence"))
            elif anchor.status is AnchorStatus.REVOKED and signed_at is None:
                problem = (SubIndication.REVOKED, f"anchor {anchor.kid!r} is revoked")
        if problem is None:
            return True
        if record:
            run.fail("anchor", problem[0], problem[1])
        return False

    def _anchor_by_kid(
        self, run: _Run, kid: str, signed_at: datetime | None, iss: str | None
    ) -> tuple[Anchor | None, VerifyingKey | None, _AnchorState | None]:
        entry = self._kids.get(kid)
        if entry is None:
            run.fail("anchor", SubIndication.UNKNOWN_ISSUER, f"no anchor has kid {kid!r}")
            return None, None, None
        fitting = entry.fitting
        if not fitting:
            run.fail("anchor", SubIndication.SIGNING_KEY_NOT_VALID,
                     f"anchor {kid!r} is for {entry.found[0].use.value}, not licence-signing")
            return entry.found[0], None, None
        if len(fitting) > 1:
            # Prefer the issuing region's anchor when a list loaded as it is repeats a kid.
            fitting = tuple(sorted(fitting, key=lambda a: a.anchor.region != iss))
        for state in fitting:
            if self._standing(state, signed_at) is None:
                anchor = state.anchor
                if state.ok is None:
                    run.fail("anchor", SubIndication.CRYPTO_CONSTRAINTS_FAILURE,
                             f"anchor {anchor.kid!r} key cannot be used: {anchor.key_problem}")
                    return anchor, None, None
                run.passed(state.ok)
                return anchor, anchor.key, state
        problem = self._standing(fitting[0], signed_at)
        assert problem is not None
        run.fail("anchor", *problem)
        return fitting[0].anchor, None, None

    @staticmethod
    def _standing(state: _AnchorState, signed_at: datetime | None
                  ) -> tuple[SubIndication, str] | None:
        """``_usable`` for a licence-signing anchor, from what was computed when the list
        loaded: None when usable, else the failure to report."""
        anchor = state.anchor
        if signed_at is not None and not anchor.valid_from <= signed_at <= anchor.valid_until:
            return (SubIndication.SIGNING_KEY_NOT_VALID,
                    (f"signed at {signed_at.isoformat()}, outside anchor {anchor.kid!r} window "
                     f"{anchor.valid_from.isoformat()}..{anchor.valid_until.isoformat()}"))
        if state.standing is not None:
            return state.standing
        if state.revocable and (signed_at is None or anchor.revoked_for(signed_at)):
            reason = anchor.revocation_reason.value if anchor.revocation_reason else "unknown"
            if signed_at is None:
                return SubIndication.REVOKED, f"anchor {anchor.kid!r} is revoked"
            return (SubIndication.REVOKED,
                    (f"anchor {anchor.kid!r} revoked ({reason}) in a way that reaches "
                     "this licence"))
        return None

    def _anchor_by_chain(
        self, run: _Run, certs: list[x509.Certificate], signed_at: datetime | None,
        iss: str | None,
    ) -> tuple[Anchor | None, VerifyingKey | None]:
        roots = candidate_roots(certs, self.trust_list)
        if not roots:
            run.fail("anchor", SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
                     "no certificate in x5c is issued by a root-ca anchor of any partner")
            return None, None
        roots.sort(key=lambda a: a.region != iss)
        if signed_at is None:
            run.skip("anchor", "chain not validated: the licence has no usable iat")
            return roots[0], None
        chain_error = ""
        budget = ChainBudget()
        for root in roots[:MAX_X5C_ROOTS]:
            result = self._validated_chain(certs, root, signed_at, budget)
            if not result.ok:
                chain_error = result.detail
                if budget.exhausted:
                    break
                continue
            if not self._usable(run, root, signed_at, record=True):
                return root, None
            try:
                key = certificate_key(certs[0])
            except (JoseError, UnsupportedAlgorithm) as exc:
                run.fail("anchor", SubIndication.CRYPTO_CONSTRAINTS_FAILURE, str(exc))
                return root, None
            run.ok("anchor", f"x5c chain to root-ca {root.kid!r} of {root.region}: "
                   f"{result.detail}")
            return root, key
        run.fail("anchor", SubIndication.CHAIN_CONSTRAINTS_FAILURE,
                 f"chain reaches a partner root but breaks a constraint: {chain_error}")
        return roots[0], None

    def _validated_chain(self, certs: list[x509.Certificate], root: Anchor,
                         signed_at: datetime, budget: ChainBudget) -> ChainResult:
        key = (b"".join(c.fingerprint(_SHA256) for c in certs), root.kid)
        known = self._chains.get(key)
        if known is not None and known[1] <= signed_at <= known[2]:
            return known[0]
        spent = budget.spent
        path = find_path(certs, root, budget)
        self.x5c_signature_checks += budget.spent - spent
        if isinstance(path, str):
            return ChainResult(False, path)
        self.x5c_paths_validated += 1
        result = validate_chain(path, root, at=signed_at)
        if result.ok:
            chain = [*path, root.certificates[0]]
            start = max(c.not_valid_before_utc for c in chain)
            end = min(c.not_valid_after_utc for c in chain)
            if len(self._chains) >= _MAX_CACHED_CHAINS:
                self._chains.clear()
            self._chains[key] = (result, start, end)
        return result

    @staticmethod
    def _check_identifier(run: _Run, jti: str, type_code: str, issuer_code: str,
                          partner: Partner | None) -> None:
        judged = judge_identifier(jti)
        if judged is None:
            try:
                parse_identifier(jti)
            except IdentifierError as exc:
                run.fail("identifier", SubIndication.IDENTIFIER_CHECK_FAILURE, str(exc))
            else:  # pragma: no cover - judge_identifier and parse_identifier share a pattern
                raise AssertionError("identifier judged malformed but parsed")
        else:
            judged_type, judged_issuer, outcome = judged
            if judged_type != type_code or judged_issuer != issuer_code:
                run.fail("identifier", SubIndication.IDENTIFIER_CHECK_FAILURE,
                         "identifier's type or issuer code differs from lic")
            elif outcome is CheckOutcome.VALID:
                run.passed(_OK_IDENTIFIER)
            elif outcome is CheckOutcome.KNOWN_VARIANT and (
                    partner is not None
                    and partner.identifier_policy is IdentifierPolicy.LENIENT):
                run.passed(_OK_VARIANT)
            elif outcome is CheckOutcome.KNOWN_VARIANT:
                run.fail("identifier", SubIndication.IDENTIFIER_CHECK_FAILURE,
                         "check character is the known wrong variant; partner policy is "
                         "strict")
            else:
                run.fail("identifier", SubIndication.IDENTIFIER_CHECK_FAILURE,
                         "check character is wrong")
        if _uscc_valid(issuer_code):
            run.passed(_OK_ISSUER_CODE)
        else:
            run.fail("issuer_code", SubIndication.IDENTIFIER_CHECK_FAILURE,
                     "issuer_code is not a valid unified social credit code")

    def _check_agreement(
        self, run: _Run, licence: Licence, partner: Partner | None,
        matter_codes: frozenset[str] | None,
    ) -> None:
        if partner is None:
            run.skip("agreement", "no partner identified")
            return
        if not partner.covers_type(licence.type_code):
            run.fail("agreement", SubIndication.ISSUER_NOT_RECOGNISED_FOR_TYPE,
                     f"agreement with {partner.region_code} does not cover type "
                     f"{licence.type_code}")
        elif matter_codes is not None and not partner.covers_matter(matter_codes):
            run.fail("agreement", SubIndication.ISSUER_NOT_RECOGNISED_FOR_TYPE,
                     f"agreement with {partner.region_code} does not cover the matter")
        else:
            key = (partner.region_code, licence.type_code, bool(matter_codes))
            check = self._agreements.get(key)
            if check is None:
                check = Check("agreement", P, f"agreement with {partner.region_code} covers "
                              f"type {licence.type_code}" + (" and the matter" if key[2] else ""))
                if len(self._agreements) >= _MAX_MEMO:
                    self._agreements.clear()
                self._agreements[key] = check
            run.passed(check)

    def _check_validity(self, run: _Run, licence: Licence, at: datetime) -> datetime | None:
        skew = self._skew
        later = at + skew
        # A licence signed later than now (beyond the skew) is not valid yet, whatever
        # its nbf says: its iat chose the anchor window and certificates it was judged by.
        if later < licence.iat:
            run.fail("validity", SubIndication.NOT_YET_VALID,
                     f"signed in the future: iat {licence.iat.isoformat()}")
            return None
        if licence.nbf is not None and later < licence.nbf:
            run.fail("validity", SubIndication.NOT_YET_VALID,
                     f"not before {licence.nbf.isoformat()}")
            return None
        if later < day_start(licence.valid_from):
            run.fail("validity", SubIndication.NOT_YET_VALID,
                     f"valid from {licence.valid_from.isoformat()}")
            return None
        end = licence.exp
        if licence.valid_until is not None:
            last = day_end(licence.valid_until)
            end = last if end is None or last < end else end
        # RFC 7519 4.1.4: not acceptable on or after exp.
        if end is not None and at - skew >= end:
            run.fail("validity", SubIndication.EXPIRED, f"expired at {end.isoformat()}")
            return None
        run.passed(_ok_validity(end))
        return end
