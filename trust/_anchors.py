"""The trust list: partner regions, their agreements and their anchors.

``TrustList.from_json`` validates the document (spec/trust-list.md) and parses
every key and certificate once, so that verification never parses a key.
Loading takes the list as it is: historic anchors, weak keys and duplicate
``kid``s are kept (a weak key then fails with a crypto constraint at use); the
stricter checks apply to changes operators propose, not here.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from trust._errors import JoseError, TrustListError
from trust._jose import Alg, VerifyingKey, key_from_jwk
from trust._sm2cert import certificate_key
from trust._timeutil import parse_rfc3339
from trust._uri import uri_under_prefix

__all__ = [
    "PARTNER_SIGNING_ALGS",
    "Anchor",
    "AnchorStatus",
    "AnchorUse",
    "IdentifierPolicy",
    "Partner",
    "PartnerStatus",
    "RevocationReason",
    "TrustList",
]

REGION_CODE = re.compile(r"\A[1-9][0-9]{5}\Z")
WILDCARD = "*"


class AnchorUse(StrEnum):
    """What an anchor may verify."""

    ROOT_CA = "root-ca"
    LICENCE_SIGNING = "licence-signing"
    REQUEST_SIGNING = "request-signing"
    STATUS_SIGNING = "status-signing"


class AnchorStatus(StrEnum):
    """An anchor's operational state."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


class PartnerStatus(StrEnum):
    """A partner's operational state."""

    ACTIVE = "active"
    SUSPENDED = "suspended"


class RevocationReason(StrEnum):
    """Why an anchor was revoked; only key compromise reaches back in time."""

    KEY_COMPROMISE = "key-compromise"
    SUPERSEDED = "superseded"
    CESSATION = "cessation"


class IdentifierPolicy(StrEnum):
    """How strictly a partner's 证照标识 check characters are judged."""

    STRICT = "strict"
    LENIENT = "lenient"


@dataclass(frozen=True, slots=True, eq=False)
class Anchor:
    """A trusted key or root certificate of one partner region."""

    kid: str
    use: AnchorUse
    region: str
    valid_from: datetime
    valid_until: datetime
    status: AnchorStatus
    key: VerifyingKey | None
    """None when the key could not be used (unsupported type); ``key_problem`` says why."""
    key_problem: str | None = None
    certificates: tuple[x509.Certificate, ...] = ()
    revoked_at: datetime | None = None
    revocation_reason: RevocationReason | None = None
    sm2_id: bytes | None = None
    """The SM2 signer ID set for this anchor (``sm2_id``); None: the profile's default."""
    source: Mapping[str, Any] = field(default_factory=dict)
    """The anchor's entry as loaded, for export."""

    def window_contains(self, at: datetime) -> bool:
        """True when ``at`` lies inside ``valid_from``..``valid_until`` (inclusive)."""
        return self.valid_from <= at <= self.valid_until

    def revoked_for(self, signed_at: datetime) -> bool:
        """True when the revocation reaches something signed at ``signed_at``.

        Revocation is not retroactive except for key compromise (trust-list.md).
        """
        if self.status is not AnchorStatus.REVOKED:
            return False
        if self.revocation_reason is RevocationReason.KEY_COMPROMISE or self.revoked_at is None:
            return True
        return signed_at >= self.revoked_at


_MAX_URI_ANSWERS = 1024
"""URIs whose answer a partner remembers before it forgets them all (a partner names a
few status lists; anything beyond is someone probing, judged afresh)."""


@dataclass(frozen=True, slots=True, eq=False)
class Partner:
    """A partner region and what its agreement covers."""

    region_code: str
    name: str
    groups: frozenset[str]
    status: PartnerStatus
    licence_types: frozenset[str] | None
    """None means every type (``["*"]``)."""
    matters: frozenset[str] | None
    """None means every matter (``["*"]``)."""
    identifier_policy: IdentifierPolicy
    status_max_age_s: int
    status_uri_prefixes: tuple[str, ...]
    query_endpoint: str | None
    anchors: tuple[Anchor, ...]
    source: Mapping[str, Any] = field(default_factory=dict)
    signing_alg: Alg = Alg.ES256
    """What Huzhou signs the licences it answers this partner with, and the status list
    they point to (``signing_alg``, a project extension: ``ES256`` or ``SM2SM3``)."""
    _uri_answers: dict[str, bool] = field(default_factory=dict, init=False, repr=False,
                                          compare=False)
    """``status_uri_allowed``'s answers by URI: they depend on the URI and this partner's
    prefixes alone, and a partner lives as long as the trust list that loaded it."""

    def covers_type(self, type_code: str) -> bool:
        """True when the agreement covers this licence type."""
        return self.licence_types is None or type_code in self.licence_types

    def covers_matter(self, codes: frozenset[str]) -> bool:
        """True when the agreement covers any of these codes (the partner's own scheme)."""
        return self.matters is None or not self.matters.isdisjoint(codes)

    def status_uri_allowed(self, uri: str) -> bool:
        """True when ``uri`` lies under one of the registered prefixes.

        Compared by parsed components and whole path segments, never as strings;
        a URI with a dot segment, userinfo or anything else that could be read
        two ways lies under no prefix (``trust._uri``).
        """
        answers = self._uri_answers
        known = answers.get(uri)
        if known is None:
            known = False
            for prefix in self.status_uri_prefixes:
                if uri_under_prefix(uri, prefix):
                    known = True
                    break
            if len(answers) >= _MAX_URI_ANSWERS:
                answers.clear()
            answers[uri] = known
        return known


PARTNER_SIGNING_ALGS: frozenset[str] = frozenset({Alg.ES256.value, Alg.SM2SM3.value})
"""The algorithms a partner's agreement may ask Huzhou to sign with (``signing_alg``)."""


def _str(entry: Mapping[str, Any], name: str, where: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value:
        raise TrustListError(f"{where}: {name} must be a non-empty string")
    return value


def _time(entry: Mapping[str, Any], name: str, where: str) -> datetime:
    try:
        return parse_rfc3339(entry.get(name), name)
    except ValueError as exc:
        raise TrustListError(f"{where}: {exc}") from exc


def _codes(value: object, name: str, where: str) -> frozenset[str] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise TrustListError(f"{where}: {name} must be a list of strings")
    if WILDCARD in value:
        return None
    return frozenset(value)


def _certificates(value: object, where: str) -> tuple[x509.Certificate, ...]:
    if not isinstance(value, list) or not value:
        raise TrustListError(f"{where}: x5c must be a non-empty list")
    certs = []
    for item in value:
        if not isinstance(item, str):
            raise TrustListError(f"{where}: x5c entries must be base64 strings")
        try:
            certs.append(x509.load_der_x509_certificate(base64.b64decode(item, validate=True)))
        except (binascii.Error, ValueError) as exc:
            raise TrustListError(f"{where}: x5c entry is not a DER certificate") from exc
    return tuple(certs)


def _anchor(entry: object, region: str, index: int) -> Anchor:
    where = f"partner {region} anchor #{index}"
    if not isinstance(entry, Mapping):
        raise TrustListError(f"{where}: must be an object")
    kid = _str(entry, "kid", where)
    where = f"partner {region} anchor {kid!r}"
    try:
        use = AnchorUse(str(entry.get("use")))
        status = AnchorStatus(entry.get("status", "active"))
    except ValueError as exc:
        raise TrustListError(f"{where}: {exc}") from exc
    valid_from = _time(entry, "valid_from", where)
    valid_until = _time(entry, "valid_until", where)
    revoked_at = None
    reason = None
    if entry.get("revoked_at") is not None:
        revoked_at = _time(entry, "revoked_at", where)
    if entry.get("revocation_reason") is not None:
        try:
            reason = RevocationReason(entry["revocation_reason"])
        except ValueError as exc:
            raise TrustListError(f"{where}: {exc}") from exc
    if status is AnchorStatus.REVOKED and reason is None:
        # Unknown reason: treat as compromise, the only safe reading.
        reason = RevocationReason.KEY_COMPROMISE
    sm2_id = entry.get("sm2_id")
    if sm2_id is not None and not isinstance(sm2_id, str):
        raise TrustListError(f"{where}: sm2_id must be a string")
    try:
        signer_id = None if sm2_id is None else sm2_id.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TrustListError(f"{where}: sm2_id is not valid Unicode text") from exc
    certs: tuple[x509.Certificate, ...] = ()
    if "x5c" in entry and entry["x5c"] is not None:
        certs = _certificates(entry["x5c"], where)
    key: VerifyingKey | None = None
    problem: str | None = None
    try:
        if "jwk" in entry and entry["jwk"] is not None:
            key = key_from_jwk(entry["jwk"], sm2_id=signer_id)
        elif certs:
            key = certificate_key(certs[0], sm2_id=signer_id)
        else:
            raise TrustListError(f"{where}: needs a jwk or an x5c")
    except JoseError as exc:
        problem = str(exc)
    except UnsupportedAlgorithm as exc:
        # A certificate key of a type neither we nor cryptography read: the anchor is
        # kept, unusable, as the list is loaded as it is; never a crash of the load.
        problem = f"certificate key: {exc}"
    if use is AnchorUse.ROOT_CA and not certs:
        raise TrustListError(f"{where}: a root-ca anchor needs an x5c certificate")
    return Anchor(
        kid=kid, use=use, region=region, valid_from=valid_from, valid_until=valid_until,
        status=status, key=key, key_problem=problem, certificates=certs,
        revoked_at=revoked_at, revocation_reason=reason, sm2_id=signer_id,
        source=dict(entry),
    )


def _partner(entry: object, index: int) -> Partner:
    where = f"partner #{index}"
    if not isinstance(entry, Mapping):
        raise TrustListError(f"{where}: must be an object")
    region = _str(entry, "region_code", where)
    if not REGION_CODE.match(region):
        raise TrustListError(f"{where}: region_code {region!r} is not a 6-digit GB/T 2260 code")
    where = f"partner {region}"
    groups = entry.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise TrustListError(f"{where}: groups must be a list of strings")
    try:
        status = PartnerStatus(entry.get("status", "active"))
        policy = IdentifierPolicy(entry.get("identifier_check", "strict"))
    except ValueError as exc:
        raise TrustListError(f"{where}: {exc}") from exc
    max_age = entry.get("status_max_age_s", 86400)
    if not isinstance(max_age, int) or isinstance(max_age, bool) or max_age <= 0:
        raise TrustListError(f"{where}: status_max_age_s must be a positive integer")
    signing_alg = entry.get("signing_alg", Alg.ES256.value)
    if not isinstance(signing_alg, str) or signing_alg not in PARTNER_SIGNING_ALGS:
        raise TrustListError(f"{where}: signing_alg must be one of "
                             f"{', '.join(sorted(PARTNER_SIGNING_ALGS))}")
    endpoints = entry.get("endpoints") or {}
    if not isinstance(endpoints, Mapping):
        raise TrustListError(f"{where}: endpoints must be an object")
    prefixes = endpoints.get("status_uri_prefixes", [])
    if not isinstance(prefixes, list) or not all(isinstance(p, str) and p for p in prefixes):
        raise TrustListError(f"{where}: status_uri_prefixes must be a list of strings")
    query = endpoints.get("query")
    if query is not None and not isinstance(query, str):
        raise TrustListError(f"{where}: endpoints.query must be a string or null")
    raw_anchors = entry.get("anchors", [])
    if not isinstance(raw_anchors, list):
        raise TrustListError(f"{where}: anchors must be a list")
    anchors = tuple(_anchor(a, region, i) for i, a in enumerate(raw_anchors))
    return Partner(
        region_code=region,
        name=_str(entry, "name", where),
        groups=frozenset(groups),
        status=status,
        licence_types=_codes(entry.get("recognised_licence_types", []),
                             "recognised_licence_types", where),
        matters=_codes(entry.get("recognised_matters", []), "recognised_matters", where),
        identifier_policy=policy,
        status_max_age_s=max_age,
        status_uri_prefixes=tuple(prefixes),
        query_endpoint=query,
        anchors=anchors,
        source=dict(entry),
        signing_alg=Alg(signing_alg),
    )


@dataclass(frozen=True, slots=True, eq=False)
class TrustList:
    """A validated trust list with its keys parsed and indexed."""

    version: int
    issued_at: datetime
    next_update: datetime
    issuer: str
    partners: Mapping[str, Partner]
    by_kid: Mapping[str, tuple[Anchor, ...]]
    roots_by_subject: Mapping[bytes, tuple[Anchor, ...]]
    """root-ca anchors indexed by the DER of their certificate's subject name."""
    document: Mapping[str, Any]

    @classmethod
    def from_json(cls, document: bytes | str | Mapping[str, Any]) -> TrustList:
        """Validate a trust-list document and parse its anchors."""
        if isinstance(document, bytes | str):
            try:
                document = orjson.loads(document)
            except orjson.JSONDecodeError as exc:
                raise TrustListError(f"trust list is not JSON: {exc}") from exc
        if not isinstance(document, Mapping):
            raise TrustListError("trust list must be a JSON object")
        version = document.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise TrustListError("version must be a non-negative integer")
        issued_at = _time(document, "issued_at", "trust list")
        next_update = _time(document, "next_update", "trust list")
        if next_update <= issued_at:
            raise TrustListError("next_update must be after issued_at")
        issuer = _str(document, "issuer", "trust list")
        raw_partners = document.get("partners")
        if not isinstance(raw_partners, list):
            raise TrustListError("partners must be a list")
        partners: dict[str, Partner] = {}
        for index, raw in enumerate(raw_partners):
            partner = _partner(raw, index)
            if partner.region_code in partners:
                raise TrustListError(f"partner {partner.region_code} is listed twice")
            partners[partner.region_code] = partner
        by_kid: dict[str, list[Anchor]] = {}
        roots: dict[bytes, list[Anchor]] = {}
        for partner in partners.values():
            for anchor in partner.anchors:
                by_kid.setdefault(anchor.kid, []).append(anchor)
                if anchor.use is AnchorUse.ROOT_CA:
                    subject = anchor.certificates[0].subject.public_bytes()
                    roots.setdefault(subject, []).append(anchor)
        return cls(
            version=version,
            issued_at=issued_at,
            next_update=next_update,
            issuer=issuer,
            partners=partners,
            by_kid={k: tuple(v) for k, v in by_kid.items()},
            roots_by_subject={k: tuple(v) for k, v in roots.items()},
            document=dict(document),
        )

    def anchors(self, kid: str) -> Sequence[Anchor]:
        """Every anchor with this ``kid`` (more than one only in a list loaded as it is)."""
        return self.by_kid.get(kid, ())

    def anchors_for(self, kid: str, use: AnchorUse, *, region: str | None = None
                    ) -> list[Anchor]:
        """The anchors with this ``kid`` that may verify ``use`` (of ``region`` only, when
        given), in the list's order: an anchor verifies only what its use names."""
        return [a for a in self.by_kid.get(kid, ())
                if a.use is use and (region is None or a.region == region)]

    def partner(self, region: str) -> Partner | None:
        """The partner with this region code."""
        return self.partners.get(region)

    def is_stale(self, at: datetime) -> bool:
        """True past ``next_update``: verifications must then say TRY_LATER."""
        return at > self.next_update

    def to_json(self) -> bytes:
        """The document as loaded, as JSON bytes."""
        return orjson.dumps(self.document)
