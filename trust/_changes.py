"""Operators' changes to the trust list, the diff between two versions, signed exports.

Pure: documents, changes, keys and a time in; the next document, a diff or a
verdict on an export out. The gateway keeps the versions, collects the
approvals, signs and audits; this module decides what a change does and
whether it may be made.

Loading a list takes it as it is (``TrustList.from_json``); a *change* is held
to stricter input checks (trust-list.md): weak or unsupported keys, a ``kid``
already used elsewhere, a ``root-ca`` certificate that is not a CA, an anchor
window that is empty or already over at ``at``, a region code that is not a
GB/T 2260 code.

A signed export is a compact JWS, ``typ`` ``trustlist+jwt``, EdDSA, whose
claims carry the whole document; ``verify_export`` refuses a bad signature, an
unknown signer, an expired list (freeze) and a lower version (rollback), as
TUF does for its metadata.

* TrustListError
  x ChangeError           a proposed change is refused; ``problems`` lists every reason
  x SignedListError       a signed export is refused; ``reason`` says which check failed
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from trust._anchors import (
    PARTNER_SIGNING_ALGS,
    AnchorStatus,
    AnchorUse,
    IdentifierPolicy,
    PartnerStatus,
    RevocationReason,
    TrustList,
)
from trust._b64 import b64url_encode
from trust._errors import JoseError, TrustListError
from trust._jose import (
    Alg,
    VerifyingKey,
    key_from_jwk,
    parse_compact,
    parse_json,
)
from trust._sm2 import Sm2PublicKey, is_sm2_spki
from trust._sm2cert import certificate_key
from trust._timeutil import parse_rfc3339, require_aware
from trust._uri import status_uri_problem

__all__ = [
    "EXPORT_ALGS",
    "TRUSTLIST_TYP",
    "Change",
    "ChangeError",
    "ChangeKind",
    "DiffEntry",
    "ImportRefusal",
    "SignedListError",
    "SignedTrustList",
    "apply_changes",
    "canonical_json",
    "check_changes",
    "diff_documents",
    "export_claims",
    "export_signed",
    "is_region_code",
    "parse_changes",
    "verify_export",
]

TRUSTLIST_TYP = "trustlist+jwt"
"""The ``typ`` of a signed trust-list export."""
MAX_EXPORT_BYTES = 16 << 20
"""A signed export longer than this is refused unread."""

# GB/T 2260: the first two digits name a province-level division.
_PROVINCES = frozenset(
    {"11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
     "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64",
     "65", "71", "81", "82"}
)
_REGION = re.compile(r"\A[1-9][0-9]{5}\Z")
_TYPE_CODE = re.compile(r"\A[0-9A-Z]{21}\Z")  # GB/T 36902: 18-char USCC + 3-digit sequence
_PARTNER_FIELDS = frozenset(
    {"region_code", "name", "groups", "recognised_licence_types", "recognised_matters",
     "identifier_check", "status_max_age_s", "endpoints", "signing_alg"}
)
_ANCHOR_INPUTS = ("jwk", "jwks", "pem", "x5c")
_PEM_PUBLIC_KEY = re.compile(
    rb"-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]*)-----END PUBLIC KEY-----")
_MAX_STATUS_AGE_S = 30 * 86400


def is_region_code(code: object) -> bool:
    """True for a 6-digit GB/T 2260 code whose first two digits name a province."""
    return isinstance(code, str) and bool(_REGION.match(code)) and code[:2] in _PROVINCES


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """The document as JSON with sorted keys: equal content, equal bytes."""
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


class ChangeError(TrustListError):
    """A proposed change is refused; ``problems`` holds one clear message per reason."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


class ChangeKind(StrEnum):
    """What an operator may propose."""

    UPSERT_PARTNER = "upsert-partner"
    SUSPEND_PARTNER = "suspend-partner"
    RESUME_PARTNER = "resume-partner"
    REMOVE_PARTNER = "remove-partner"
    ADD_ANCHOR = "add-anchor"
    SUSPEND_ANCHOR = "suspend-anchor"
    RESUME_ANCHOR = "resume-anchor"
    REVOKE_ANCHOR = "revoke-anchor"
    REMOVE_ANCHOR = "remove-anchor"
    RENEW = "renew"
    """Re-issue the list with a new ``next_update`` and nothing else changed."""


_NEEDS_KID = frozenset({ChangeKind.SUSPEND_ANCHOR, ChangeKind.RESUME_ANCHOR,
                        ChangeKind.REVOKE_ANCHOR, ChangeKind.REMOVE_ANCHOR})


@dataclass(frozen=True, slots=True)
class Change:
    """One proposed change, as parsed from its JSON form.

    ``{"kind": "revoke-anchor", "region_code": "310000", "kid": "...",
    "reason": "superseded", "revoked_at": "..."}``; ``data`` keeps every member.
    """

    kind: ChangeKind
    region_code: str | None
    kid: str | None
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON form this change was parsed from."""
        return dict(self.data)


def parse_changes(raw: object) -> tuple[Change, ...]:
    """Parse a change or a list of changes; raise ``ChangeError`` on any malformed one."""
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise ChangeError(["a proposal needs at least one change"])
    problems: list[str] = []
    changes: list[Change] = []
    for index, item in enumerate(items):
        where = f"change #{index + 1}"
        if not isinstance(item, Mapping):
            problems.append(f"{where}: must be an object")
            continue
        try:
            kind = ChangeKind(str(item.get("kind")))
        except ValueError:
            problems.append(f"{where}: kind {item.get('kind')!r} is not one of "
                            f"{sorted(k.value for k in ChangeKind)}")
            continue
        region: str | None = None
        if kind is ChangeKind.UPSERT_PARTNER:
            partner = item.get("partner")
            if not isinstance(partner, Mapping):
                problems.append(f"{where} ({kind}): needs a partner object")
                continue
            region = partner.get("region_code") if isinstance(
                partner.get("region_code"), str) else None
        elif kind is ChangeKind.ADD_ANCHOR:
            region = item.get("region_code") if isinstance(item.get("region_code"), str) else None
            if not isinstance(item.get("anchor"), Mapping):
                problems.append(f"{where} ({kind}): needs an anchor object")
                continue
        elif kind is not ChangeKind.RENEW:
            region = item.get("region_code") if isinstance(item.get("region_code"), str) else None
        if kind is not ChangeKind.RENEW and region is None:
            problems.append(f"{where} ({kind}): needs a region_code")
            continue
        kid = item.get("kid")
        if kind in _NEEDS_KID and (not isinstance(kid, str) or not kid):
            problems.append(f"{where} ({kind}): needs a kid")
            continue
        changes.append(Change(kind, region, kid if isinstance(kid, str) else None, dict(item)))
    if problems:
        raise ChangeError(problems)
    return tuple(changes)


# -- keys and anchors ----------------------------------------------------------------------


def _public_jwk(public: object) -> dict[str, Any]:
    """RFC 7517/7518/8037 public JWK of a cryptography public key."""
    if isinstance(public, ec.EllipticCurvePublicKey):
        names = {"secp256r1": ("P-256", 32), "secp384r1": ("P-384", 48)}
        if public.curve.name not in names:
            raise JoseError(f"EC curve {public.curve.name} is not on the allow-list",
                            constraint=True)
        crv, size = names[public.curve.name]
        numbers = public.public_numbers()
        return {"kty": "EC", "crv": crv, "x": b64url_encode(numbers.x.to_bytes(size, "big")),
                "y": b64url_encode(numbers.y.to_bytes(size, "big"))}
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}
    if isinstance(public, Sm2PublicKey):
        # ecert profile SM2SM3: the JWK of an SM2 key.
        return {"kty": "EC", "crv": "SM2", "x": b64url_encode(public.x),
                "y": b64url_encode(public.y)}
    if isinstance(public, rsa.RSAPublicKey):
        rsa_numbers = public.public_numbers()
        n, e = rsa_numbers.n, rsa_numbers.e
        return {"kty": "RSA", "n": b64url_encode(n.to_bytes((n.bit_length() + 7) // 8, "big")),
                "e": b64url_encode(e.to_bytes((e.bit_length() + 7) // 8, "big"))}
    raise JoseError(f"key type {type(public).__name__} is not on the allow-list", constraint=True)


def _key_problem(key: VerifyingKey) -> str | None:
    if key.weak_reason is not None:
        return f"weak key: {key.weak_reason}"
    return None


def _ca_problem(cert: x509.Certificate) -> str | None:
    """Why a root-ca certificate is not a CA certificate (RFC 5280 4.2.1.9, 4.2.1.3)."""
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "root-ca certificate is not a CA: it has no basicConstraints extension"
    if not basic.ca:
        return "root-ca certificate is not a CA: basicConstraints CA is false"
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return "root-ca certificate is not a CA: it has no keyUsage extension (keyCertSign)"
    if not usage.key_cert_sign:
        return "root-ca certificate is not a CA: keyUsage lacks keyCertSign"
    return None


@dataclass(slots=True)
class _AnchorInput:
    kid: str | None = None
    jwk: dict[str, Any] | None = None
    certs: tuple[x509.Certificate, ...] = ()


def _read_pem(text: str, where: str, problems: list[str]) -> _AnchorInput | None:
    data = text.encode("ascii", "replace")
    if b"CERTIFICATE-----" in data:
        try:
            certs = tuple(x509.load_pem_x509_certificates(data))
        except ValueError as exc:
            problems.append(f"{where}: pem is not a readable certificate: {exc}")
            return None
        return _AnchorInput(certs=certs)
    try:
        public = serialization.load_pem_public_key(data)
    except UnsupportedAlgorithm as exc:
        # cryptography reads no SM2 key (curve 1.2.156.10197.1.301); trust._sm2 does.
        return _read_sm2_pem(data, exc, where, problems)
    except (ValueError, TypeError) as exc:
        problems.append(f"{where}: pem is neither a certificate nor a public key ({exc})")
        return None
    if isinstance(public, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
                  | rsa.RSAPublicKey):
        try:
            return _AnchorInput(jwk=_public_jwk(public))
        except JoseError as exc:
            problems.append(f"{where}: unsupported key: {exc}")
            return None
    problems.append(f"{where}: unsupported key: {type(public).__name__} is not on the allow-list")
    return None


def _read_sm2_pem(data: bytes, refusal: UnsupportedAlgorithm, where: str,
                  problems: list[str]) -> _AnchorInput | None:
    """An SM2 public key in PEM (``openssl pkey -pubout``), as a JWK; else the problem."""
    found = _PEM_PUBLIC_KEY.search(data)
    try:
        der = (b"" if found is None
               else base64.b64decode(b"".join(found.group(1).split()), validate=True))
    except binascii.Error:
        der = b""
    if not is_sm2_spki(der):
        problems.append(f"{where}: unsupported key: {refusal}")
        return None
    try:
        sm2 = Sm2PublicKey.from_spki(der)
    except JoseError as exc:
        problems.append(f"{where}: unsupported key: {exc}")
        return None
    return _AnchorInput(jwk=_public_jwk(sm2))


def _read_anchor_input(
    raw: Mapping[str, Any], where: str, problems: list[str]
) -> _AnchorInput | None:
    given = [name for name in _ANCHOR_INPUTS if raw.get(name) is not None]
    if len(given) != 1:
        problems.append(f"{where}: give exactly one of jwk, jwks, pem or x5c "
                        f"(got {given or 'none'})")
        return None
    source = given[0]
    value = raw[source]
    kid = raw.get("kid") if isinstance(raw.get("kid"), str) and raw.get("kid") else None
    if source == "pem":
        if not isinstance(value, str):
            problems.append(f"{where}: pem must be a string")
            return None
        found = _read_pem(value, where, problems)
    elif source == "x5c":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            problems.append(f"{where}: x5c must be a non-empty list of base64 DER strings")
            return None
        try:
            certs = tuple(x509.load_der_x509_certificate(base64.b64decode(v, validate=True))
                          for v in value)
        except (binascii.Error, ValueError):
            problems.append(f"{where}: an x5c entry is not a base64 DER certificate")
            return None
        found = _AnchorInput(certs=certs)
    else:
        jwk: object = value
        if source == "jwks":
            keys = value.get("keys") if isinstance(value, Mapping) else None
            if not isinstance(keys, list) or not keys:
                problems.append(f"{where}: jwks must be an object with a non-empty keys list")
                return None
            if kid is None and len(keys) == 1:
                jwk = keys[0]
            else:
                matching = [k for k in keys if isinstance(k, Mapping) and k.get("kid") == kid]
                if kid is None or len(matching) != 1:
                    problems.append(f"{where}: jwks holds {len(keys)} keys; name exactly one "
                                    "of them with kid")
                    return None
                jwk = matching[0]
        if not isinstance(jwk, Mapping):
            problems.append(f"{where}: jwk must be an object")
            return None
        jwk_kid = jwk.get("kid")
        if kid is not None and isinstance(jwk_kid, str) and jwk_kid != kid:
            problems.append(f"{where}: kid {kid!r} differs from the JWK's kid {jwk_kid!r}")
            return None
        if kid is None and isinstance(jwk_kid, str) and jwk_kid:
            kid = jwk_kid
        found = _AnchorInput(jwk=dict(jwk))
    if found is not None:
        found.kid = kid
    return found


def _window(
    raw: Mapping[str, Any], certs: tuple[x509.Certificate, ...], where: str, problems: list[str]
) -> tuple[datetime, datetime] | None:
    bounds: list[datetime] = []
    for name in ("valid_from", "valid_until"):
        value = raw.get(name)
        if value is None and certs:
            cert = certs[0]
            bounds.append(cert.not_valid_before_utc if name == "valid_from"
                          else cert.not_valid_after_utc)
            continue
        try:
            bounds.append(parse_rfc3339(value, name))
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            return None
    return bounds[0], bounds[1]


def _rfc3339(moment: datetime) -> str:
    return require_aware(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _new_anchor(
    raw: Mapping[str, Any], used_kids: Mapping[str, str], at: datetime,
    where: str, problems: list[str],
) -> dict[str, Any] | None:
    before = len(problems)
    try:
        use = AnchorUse(str(raw.get("use")))
    except ValueError:
        problems.append(f"{where}: use {raw.get('use')!r} is not one of "
                        f"{sorted(u.value for u in AnchorUse)}")
        return None
    found = _read_anchor_input(raw, where, problems)
    if found is None:
        return None
    kid = found.kid
    if kid is None:
        problems.append(f"{where}: needs a kid")
        return None
    where = f"{where} anchor {kid!r}"
    if kid in used_kids:
        problems.append(f"{where}: kid {kid!r} is already used by an anchor of partner "
                        f"{used_kids[kid]}")
    sm2_id = raw.get("sm2_id")
    signer_id: bytes | None = None
    if sm2_id is not None:
        if not isinstance(sm2_id, str):
            problems.append(f"{where}: sm2_id must be a string")
        else:
            try:
                signer_id = sm2_id.encode("utf-8")
            except UnicodeEncodeError:
                problems.append(f"{where}: sm2_id is not valid Unicode text")
    key: VerifyingKey | None = None
    try:
        if found.jwk is not None:
            key = key_from_jwk(found.jwk, sm2_id=signer_id)
        else:
            # An SM2 certificate's key signs under sm2_id: the licences of a signer
            # certificate, or the certificates a root-ca issues (its chains' first link).
            key = certificate_key(found.certs[0], sm2_id=signer_id)
    except (JoseError, UnsupportedAlgorithm) as exc:
        # UnsupportedAlgorithm: a certificate key of a type neither we nor cryptography read.
        problems.append(f"{where}: unsupported key: {exc}")
    if key is not None and (weak := _key_problem(key)) is not None:
        problems.append(f"{where}: {weak}")
    if use is AnchorUse.ROOT_CA:
        if not found.certs:
            problems.append(f"{where}: a root-ca anchor needs a certificate (pem or x5c)")
        elif (ca := _ca_problem(found.certs[0])) is not None:
            problems.append(f"{where}: {ca}")
    window = _window(raw, found.certs, where, problems)
    if window is not None:
        valid_from, valid_until = window
        if valid_until <= valid_from:
            problems.append(f"{where}: validity window is empty (valid_from "
                            f"{_rfc3339(valid_from)} is not before valid_until "
                            f"{_rfc3339(valid_until)})")
        elif valid_until < at:
            problems.append(f"{where}: validity window is already over (valid_until "
                            f"{_rfc3339(valid_until)} is before {_rfc3339(at)})")
    if len(problems) > before or window is None:
        return None
    entry: dict[str, Any] = {"kid": kid, "use": use.value}
    if found.certs:
        entry["x5c"] = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
                        for c in found.certs]
    else:
        assert found.jwk is not None
        # Keep the public members only, named by the anchor's kid.
        public = _public_jwk(key.public_key) if key is not None else {}
        if isinstance(found.jwk.get("alg"), str):
            public["alg"] = found.jwk["alg"]
        entry["jwk"] = {**public, "kid": kid}
    if signer_id is not None:
        entry["sm2_id"] = sm2_id
    entry.update(valid_from=_rfc3339(window[0]), valid_until=_rfc3339(window[1]),
                 status=AnchorStatus.ACTIVE.value, revoked_at=None, revocation_reason=None)
    return entry


# -- partners ------------------------------------------------------------------------------


def _codes(value: object, name: str, where: str, problems: list[str], *, types: bool) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.append(f"{where}: {name} must be a list of non-empty strings")
        return
    if "*" in value and len(value) > 1:
        problems.append(f"{where}: {name}: '*' (every code) must stand alone")
        return
    if types:
        bad = [v for v in value if v != "*" and not _TYPE_CODE.match(v)]
        if bad:
            problems.append(f"{where}: {name}: {bad[0]!r} is not a 21-character licence type "
                            "code (GB/T 36902)")


def _url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("https://", "http://")) and len(value) > 8


def _prefix(value: object) -> bool:
    """A status URI prefix: an http(s) URL a status URI could lie under (trust._uri)."""
    return (_url(value) and isinstance(value, str) and "?" not in value
            and status_uri_problem(value) is None)


def _check_partner_fields(fields: Mapping[str, Any], where: str, problems: list[str]) -> None:
    unknown = sorted(set(fields) - _PARTNER_FIELDS)
    if unknown:
        hint = ""
        if "anchors" in unknown:
            hint = " (anchors change with add-anchor, revoke-anchor ...)"
        elif "status" in unknown:
            hint = " (status changes with suspend-partner and resume-partner)"
        problems.append(f"{where}: unknown partner field(s) {unknown}{hint}")
    if "name" in fields and (not isinstance(fields["name"], str) or not fields["name"].strip()):
        problems.append(f"{where}: name must be a non-empty string")
    if "groups" in fields:
        groups = fields["groups"]
        if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
            problems.append(f"{where}: groups must be a list of non-empty strings")
    if "recognised_licence_types" in fields:
        _codes(fields["recognised_licence_types"], "recognised_licence_types", where, problems,
               types=True)
    if "recognised_matters" in fields:
        _codes(fields["recognised_matters"], "recognised_matters", where, problems, types=False)
    if "identifier_check" in fields and fields["identifier_check"] not in {
            p.value for p in IdentifierPolicy}:
        problems.append(f"{where}: identifier_check must be 'strict' or 'lenient'")
    if "signing_alg" in fields and not (isinstance(fields["signing_alg"], str)
                                        and fields["signing_alg"] in PARTNER_SIGNING_ALGS):
        problems.append(f"{where}: signing_alg must be one of "
                        f"{', '.join(sorted(PARTNER_SIGNING_ALGS))}")
    if "status_max_age_s" in fields:
        age = fields["status_max_age_s"]
        if (not isinstance(age, int) or isinstance(age, bool)
                or not 0 < age <= _MAX_STATUS_AGE_S):
            problems.append(f"{where}: status_max_age_s must be an integer of 1.."
                            f"{_MAX_STATUS_AGE_S} seconds")
    if "endpoints" in fields:
        endpoints = fields["endpoints"]
        if not isinstance(endpoints, Mapping):
            problems.append(f"{where}: endpoints must be an object")
            return
        extra = sorted(set(endpoints) - {"status_uri_prefixes", "query"})
        if extra:
            problems.append(f"{where}: unknown endpoints field(s) {extra}")
        prefixes = endpoints.get("status_uri_prefixes", [])
        if not isinstance(prefixes, list) or not all(_prefix(p) for p in prefixes):
            problems.append(f"{where}: endpoints.status_uri_prefixes must be a list of "
                            "http(s) URL prefixes (no dot segment, userinfo, query or "
                            "fragment)")
        query = endpoints.get("query")
        if query is not None and not _url(query):
            problems.append(f"{where}: endpoints.query must be an http(s) URL or null")


# -- applying ------------------------------------------------------------------------------


def _find_partner(doc: dict[str, Any], region: str | None) -> dict[str, Any] | None:
    for entry in doc["partners"]:
        if isinstance(entry, dict) and entry.get("region_code") == region:
            return entry
    return None


def _find_anchor(partner: dict[str, Any], kid: str | None) -> dict[str, Any] | None:
    for entry in partner.get("anchors", []):
        if isinstance(entry, dict) and entry.get("kid") == kid:
            return entry
    return None


def _used_kids(doc: Mapping[str, Any]) -> dict[str, str]:
    used: dict[str, str] = {}
    for partner in doc["partners"]:
        for anchor in partner.get("anchors", []):
            if isinstance(anchor, Mapping) and isinstance(anchor.get("kid"), str):
                used.setdefault(anchor["kid"], str(partner.get("region_code")))
    return used


def _apply_one(doc: dict[str, Any], change: Change, at: datetime, where: str,
               problems: list[str]) -> datetime | None:
    """Apply ``change`` to ``doc`` in place; return a ``next_update`` it asks for."""
    kind, region = change.kind, change.region_code
    if kind is ChangeKind.RENEW:
        try:
            next_update = parse_rfc3339(change.data.get("next_update"), "next_update")
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            return None
        if next_update <= at:
            problems.append(f"{where}: next_update {_rfc3339(next_update)} is not after "
                            f"{_rfc3339(at)}")
            return None
        return next_update
    if not is_region_code(region):
        problems.append(f"{where}: region_code {region!r} is not a 6-digit GB/T 2260 code")
        return None
    partner = _find_partner(doc, region)
    if kind is ChangeKind.UPSERT_PARTNER:
        fields = dict(change.data["partner"])
        _check_partner_fields(fields, where, problems)
        if problems:
            return None
        if partner is None:
            if "name" not in fields:
                problems.append(f"{where}: a new partner needs a name")
                return None
            doc["partners"].append({
                "region_code": region, "name": fields["name"], "groups": [],
                "status": PartnerStatus.ACTIVE.value, "recognised_licence_types": [],
                "recognised_matters": [], "identifier_check": IdentifierPolicy.STRICT.value,
                "status_max_age_s": 86400,
                "endpoints": {"status_uri_prefixes": [], "query": None}, "anchors": [],
                **fields,
            })
        else:
            partner.update(fields)
        return None
    if partner is None:
        problems.append(f"{where}: partner {region} is not in the list")
        return None
    if kind is ChangeKind.SUSPEND_PARTNER or kind is ChangeKind.RESUME_PARTNER:
        wanted = (PartnerStatus.SUSPENDED if kind is ChangeKind.SUSPEND_PARTNER
                  else PartnerStatus.ACTIVE)
        if partner.get("status", "active") == wanted.value:
            problems.append(f"{where}: partner {region} is already {wanted.value}")
        else:
            partner["status"] = wanted.value
        return None
    if kind is ChangeKind.REMOVE_PARTNER:
        doc["partners"].remove(partner)
        return None
    if kind is ChangeKind.ADD_ANCHOR:
        entry = _new_anchor(change.data["anchor"], _used_kids(doc), at,
                            where, problems)
        if entry is not None:
            partner.setdefault("anchors", []).append(entry)
        return None
    anchor = _find_anchor(partner, change.kid)
    if anchor is None:
        problems.append(f"{where}: partner {region} has no anchor {change.kid!r}")
        return None
    status = anchor.get("status", "active")
    if kind is ChangeKind.REMOVE_ANCHOR:
        partner["anchors"].remove(anchor)
    elif kind is ChangeKind.SUSPEND_ANCHOR or kind is ChangeKind.RESUME_ANCHOR:
        wanted_anchor = (AnchorStatus.SUSPENDED if kind is ChangeKind.SUSPEND_ANCHOR
                         else AnchorStatus.ACTIVE)
        if status == AnchorStatus.REVOKED.value:
            problems.append(f"{where}: anchor {change.kid!r} is revoked; revocation is final")
        elif status == wanted_anchor.value:
            problems.append(f"{where}: anchor {change.kid!r} is already {wanted_anchor.value}")
        else:
            anchor["status"] = wanted_anchor.value
    else:
        assert kind is ChangeKind.REVOKE_ANCHOR
        try:
            reason = RevocationReason(str(change.data.get("reason")))
        except ValueError:
            problems.append(f"{where}: reason {change.data.get('reason')!r} is not one of "
                            f"{sorted(r.value for r in RevocationReason)}")
            return None
        revoked_at = at
        if change.data.get("revoked_at") is not None:
            try:
                revoked_at = parse_rfc3339(change.data["revoked_at"], "revoked_at")
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                return None
        if status == AnchorStatus.REVOKED.value and not (
                reason is RevocationReason.KEY_COMPROMISE
                and anchor.get("revocation_reason") != RevocationReason.KEY_COMPROMISE.value):
            # The one change a revoked anchor admits: learning later that its key was compromised.
            problems.append(f"{where}: anchor {change.kid!r} is already revoked "
                            f"({anchor.get('revocation_reason')}); only an escalation to "
                            "key-compromise may follow")
            return None
        anchor.update(status=AnchorStatus.REVOKED.value, revoked_at=_rfc3339(revoked_at),
                      revocation_reason=reason.value)
    return None


def apply_changes(
    document: Mapping[str, Any],
    changes: Sequence[Change],
    *,
    at: datetime,
    lifetime: timedelta | None = None,
) -> dict[str, Any]:
    """The next document: ``changes`` applied in order, ``version`` + 1, issued ``at``.

    ``next_update`` is ``at`` + ``lifetime`` (default: the current list's own
    ``next_update - issued_at``), unless a ``renew`` change names it. Raises
    ``ChangeError`` listing every problem; ``document`` is never modified.
    """
    at = require_aware(at)
    current = TrustList.from_json(document)
    doc: dict[str, Any] = copy.deepcopy(dict(document))
    doc["partners"] = list(doc["partners"])
    problems: list[str] = []
    if not changes:
        problems.append("a proposal needs at least one change")
    next_update = at + (lifetime or (current.next_update - current.issued_at))
    for index, change in enumerate(changes):
        asked = _apply_one(doc, change, at, f"change #{index + 1} ({change.kind})", problems)
        if asked is not None:
            next_update = asked
    if problems:
        raise ChangeError(problems)
    doc.update(version=current.version + 1, issued_at=_rfc3339(at),
               next_update=_rfc3339(next_update))
    try:
        TrustList.from_json(doc)
    except TrustListError as exc:
        raise ChangeError([f"the resulting list is not valid: {exc}"]) from exc
    return doc


def check_changes(
    document: Mapping[str, Any], changes: Sequence[Change], *, at: datetime
) -> list[str]:
    """Every problem ``apply_changes`` would raise, or an empty list."""
    try:
        apply_changes(document, changes, at=at)
    except ChangeError as exc:
        return list(exc.problems)
    return []


# -- diff ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiffEntry:
    """One difference between two trust-list documents.

    ``op`` is ``list-changed``, ``partner-added``, ``partner-removed``,
    ``partner-changed``, ``anchor-added``, ``anchor-removed`` or
    ``anchor-changed``; ``fields`` maps a changed member to ``(old, new)`` (for
    ``anchor-added``, every member of the new anchor, as ``(None, new)``).
    """

    op: str
    region_code: str | None = None
    kid: str | None = None
    fields: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON form: ``{"op", "region_code", "kid", "fields": {name: [old, new]}}``."""
        return {"op": self.op, "region_code": self.region_code, "kid": self.kid,
                "fields": {k: [old, new] for k, (old, new) in self.fields.items()}}


def _changed(old: Mapping[str, Any], new: Mapping[str, Any],
             skip: frozenset[str]) -> dict[str, tuple[Any, Any]]:
    names = sorted((set(old) | set(new)) - skip)
    return {n: (old.get(n), new.get(n)) for n in names if old.get(n) != new.get(n)}


def diff_documents(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[DiffEntry, ...]:
    """What changed from ``old`` to ``new``: list fields, partners, anchors (by kid)."""
    entries: list[DiffEntry] = []
    top = _changed(old, new, frozenset({"partners"}))
    if top:
        entries.append(DiffEntry("list-changed", fields=top))
    old_p = {str(p.get("region_code")): p for p in old.get("partners", [])}
    new_p = {str(p.get("region_code")): p for p in new.get("partners", [])}
    for region in sorted(set(old_p) | set(new_p)):
        before, after = old_p.get(region), new_p.get(region)
        if before is None:
            entries.append(DiffEntry("partner-added", region))
            before = {"anchors": []}
        elif after is None:
            entries.append(DiffEntry("partner-removed", region))
            continue
        else:
            fields = _changed(before, after, frozenset({"anchors"}))
            if fields:
                entries.append(DiffEntry("partner-changed", region, fields=fields))
        assert after is not None
        old_a = {str(a.get("kid")): a for a in before.get("anchors", [])}
        new_a = {str(a.get("kid")): a for a in after.get("anchors", [])}
        for kid in sorted(set(old_a) | set(new_a)):
            if kid not in old_a:
                # Every member of the new anchor, so a reviewer sees what is trusted.
                entries.append(DiffEntry("anchor-added", region, kid,
                                         _changed({}, new_a[kid], frozenset())))
            elif kid not in new_a:
                entries.append(DiffEntry("anchor-removed", region, kid))
            elif fields := _changed(old_a[kid], new_a[kid], frozenset()):
                entries.append(DiffEntry("anchor-changed", region, kid, fields))
    return tuple(entries)


# -- signed export -------------------------------------------------------------------------


class ImportRefusal(StrEnum):
    """Why a signed export was refused."""

    FORMAT = "format"
    UNTRUSTED_KEY = "untrusted-key"
    SIGNATURE = "signature"
    FREEZE = "freeze"
    ROLLBACK = "rollback"
    CONFLICT = "conflict"


class SignedListError(TrustListError):
    """A signed trust-list export is refused; ``reason`` names the failed check."""

    def __init__(self, reason: ImportRefusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SignedTrustList:
    """A verified export: the list, its document, and who signed it."""

    trust_list: TrustList
    document: Mapping[str, Any]
    kid: str
    same_as_current: bool
    """True when the current list is this very version with the same content."""


def export_claims(document: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header fields and claims of the signed export of ``document`` (validated first)."""
    trust_list = TrustList.from_json(document)
    claims = {
        "iss": trust_list.issuer,
        "iat": int(trust_list.issued_at.timestamp()),
        "exp": int(trust_list.next_update.timestamp()),
        "trust_list_version": trust_list.version,
        "trust_list": dict(document),
    }
    return {"typ": TRUSTLIST_TYP}, claims


EXPORT_ALGS: tuple[Alg, ...] = (Alg.EDDSA, Alg.SM2SM3)
"""What a ``trustlist+jwt`` may be signed with: EdDSA (the default), or SM2SM3 for a
partner whose agreement asks for SM2."""


def export_signed(document: Mapping[str, Any],
                  sign: Callable[[dict[str, Any], dict[str, Any]], str]) -> str:
    """The ``trustlist+jwt`` of ``document``; ``sign(header, claims)`` adds ``alg``/``kid``."""
    header, claims = export_claims(document)
    return sign(header, claims)


def verify_export(
    token: str | bytes,
    keys: Mapping[str, VerifyingKey],
    *,
    at: datetime,
    current: Mapping[str, Any] | None = None,
) -> SignedTrustList:
    """Check a ``trustlist+jwt`` and return the list it carries.

    ``keys`` are the trusted signers by ``kid``. Refused (``SignedListError``):
    malformed (``format``), a ``kid`` not in ``keys`` (``untrusted-key``), a bad
    signature (``signature``), ``next_update`` before ``at`` (``freeze``), a
    version below ``current``'s (``rollback``), or ``current``'s version with
    other content (``conflict``).
    """
    at = require_aware(at)
    try:
        jws = parse_compact(token.strip() if isinstance(token, str | bytes) else token,
                            max_bytes=MAX_EXPORT_BYTES)
    except JoseError as exc:
        raise SignedListError(ImportRefusal.FORMAT, f"not a compact JWS: {exc}") from exc
    header = jws.header
    if header.get("typ") != TRUSTLIST_TYP:
        raise SignedListError(ImportRefusal.FORMAT,
                              f"typ {header.get('typ')!r} is not {TRUSTLIST_TYP!r}")
    alg = next((a for a in EXPORT_ALGS if a.value == header.get("alg")), None)
    if alg is None:
        raise SignedListError(ImportRefusal.FORMAT,
                              f"alg {header.get('alg')!r} is not EdDSA or SM2SM3")
    if "crit" in header:
        raise SignedListError(ImportRefusal.FORMAT, "crit header parameters are not understood")
    kid = header.get("kid")
    if not isinstance(kid, str) or kid not in keys:
        raise SignedListError(ImportRefusal.UNTRUSTED_KEY,
                              f"signed by {kid!r}, which is not a trusted trust-list signer")
    try:
        good = keys[kid].verify(alg, jws.signing_input, jws.signature)
    except JoseError as exc:
        raise SignedListError(ImportRefusal.SIGNATURE, f"signing key refused: {exc}") from exc
    if not good:
        raise SignedListError(ImportRefusal.SIGNATURE, "signature does not verify")
    try:
        claims = parse_json(jws.payload, "claims")
    except JoseError as exc:
        raise SignedListError(ImportRefusal.FORMAT, str(exc)) from exc
    if not isinstance(claims, dict) or not isinstance(claims.get("trust_list"), dict):
        raise SignedListError(ImportRefusal.FORMAT, "claims carry no trust_list object")
    document = claims["trust_list"]
    try:
        trust_list = TrustList.from_json(document)
    except TrustListError as exc:
        raise SignedListError(ImportRefusal.FORMAT, f"the list is not valid: {exc}") from exc
    if claims.get("trust_list_version") != trust_list.version:
        raise SignedListError(ImportRefusal.FORMAT,
                              "trust_list_version claim differs from the list's version")
    if claims.get("exp") != int(trust_list.next_update.timestamp()):
        raise SignedListError(ImportRefusal.FORMAT, "exp claim differs from the list's next_update")
    if trust_list.is_stale(at):
        raise SignedListError(
            ImportRefusal.FREEZE,
            f"version {trust_list.version} expired at {_rfc3339(trust_list.next_update)} "
            "(freeze attack or stale export)")
    same = False
    if current is not None:
        current_version = current.get("version")
        assert isinstance(current_version, int)
        if trust_list.version < current_version:
            raise SignedListError(
                ImportRefusal.ROLLBACK,
                f"version {trust_list.version} is lower than the current {current_version} "
                "(rollback refused)")
        if trust_list.version == current_version:
            if canonical_json(document) != canonical_json(current):
                raise SignedListError(
                    ImportRefusal.CONFLICT,
                    f"version {current_version} is already held with different content")
            same = True
    return SignedTrustList(trust_list, document, kid, same)
