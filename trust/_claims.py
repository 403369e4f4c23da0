"""The claims of an ``ecert+jwt`` licence (spec/ecert-profile.md), parsed strictly."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeGuard

from trust._timeutil import parse_day

__all__ = [
    "MAX_COMPONENTS",
    "MAX_NUMERIC_DATE",
    "ClaimsError",
    "Component",
    "Licence",
    "StatusReference",
    "numeric_date",
    "numeric_seconds",
    "parse_claims",
]

_REGION = re.compile(r"\A[0-9]{6}\Z")
_TYPE_CODE = re.compile(r"\A[0-9A-Z]{18}[0-9]{3}\Z")
_HOLDER_CODE_TYPE = re.compile(r"\A[0-9]{3}\Z")
_MAX_MATTERS = 256
MAX_COMPONENTS = 16
"""Most component certificates a combined certificate (多证合一) may carry
(docs/combined-certificates.md); more is a format failure of the whole document."""
MAX_NUMERIC_DATE = 253402300800
"""NumericDates run from 1970 up to the end of 9999, as ``datetime`` can hold them."""


class ClaimsError(ValueError):
    """The claims do not follow the profile's schema."""


@dataclass(frozen=True, slots=True)
class StatusReference:
    """A licence's entry in its issuer's Token Status List."""

    idx: int
    uri: str


@dataclass(frozen=True, slots=True)
class Component:
    """One component certificate of a combined certificate (多证合一), as typed values.

    It shares the document's holder; everything else (type, number, issuer,
    validity, status entry) is its own.
    """

    index: int
    identifier: str
    type_code: str
    type_name: str
    number: str
    issuer_name: str
    issuer_code: str
    issue_date: date
    valid_from: date
    valid_until: date | None
    status: StatusReference
    fields: Mapping[str, Any]

    def summary(self) -> dict[str, Any]:
        """The non-personal facts an answer may carry (the number aside, as for a licence)."""
        return {
            "index": self.index,
            "identifier": self.identifier,
            "type_code": self.type_code,
            "type_name": self.type_name,
            "number": self.number,
            "issuer_name": self.issuer_name,
            "issuer_code": self.issuer_code,
            "issue_date": self.issue_date.isoformat(),
            "valid_from": self.valid_from.isoformat(),
            "valid_until": None if self.valid_until is None else self.valid_until.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Licence:
    """A licence's claims, as typed values."""

    iss: str
    jti: str
    iat: datetime
    nbf: datetime | None
    exp: datetime | None
    type_code: str
    type_name: str
    number: str
    issuer_name: str
    issuer_code: str
    issue_date: date
    holder_name: str
    holder_code: str
    holder_code_type: str
    valid_from: date
    valid_until: date | None
    matters: tuple[str, ...]
    fields: Mapping[str, Any]
    status: StatusReference | None
    components: tuple[Component, ...] | None = None
    """The component certificates of a combined certificate; None for any other licence."""

    def summary(self) -> dict[str, Any]:
        """The non-personal facts a verification answer and an audit record may carry."""
        return {
            "identifier": self.jti,
            "type_code": self.type_code,
            "type_name": self.type_name,
            "number": self.number,
            "issuer_region": self.iss,
            "issuer_name": self.issuer_name,
            "issuer_code": self.issuer_code,
            "issue_date": self.issue_date.isoformat(),
            "valid_from": self.valid_from.isoformat(),
            "valid_until": None if self.valid_until is None else self.valid_until.isoformat(),
            "matters": list(self.matters),
        }


def _is_object(value: object) -> TypeGuard[Mapping[str, Any]]:
    """True for a JSON object: a dict (as parsed JSON always is) checked first, since
    ``isinstance`` against the ``Mapping`` ABC costs far more on this hot path."""
    return type(value) is dict or isinstance(value, Mapping)


def _in_range(value: float, name: str) -> None:
    if not 0 <= value < MAX_NUMERIC_DATE:
        raise ClaimsError(f"{name} is out of range")


def numeric_date(value: object, name: str) -> datetime:
    """RFC 7519 NumericDate: seconds since the epoch, integer or fraction; not a boolean."""
    if type(value) is not int and (isinstance(value, bool)
                                   or not isinstance(value, int | float)):
        raise ClaimsError(f"{name} must be a NumericDate")
    _in_range(value, name)
    return datetime.fromtimestamp(value, UTC)


def numeric_seconds(value: object, name: str) -> int:
    """An RFC 7519 NumericDate that must be a whole number of seconds (a request token's):
    an integer, not a boolean, in the range ``numeric_date`` accepts."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ClaimsError(f"{name} must be a NumericDate integer")
    _in_range(value, name)
    return value


def _text(obj: Mapping[str, Any], name: str, *, max_len: int = 512) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ClaimsError(f"lic.{name} must be a non-empty string")
    if len(value) > max_len:
        raise ClaimsError(f"lic.{name} is longer than {max_len} characters")
    return value


@functools.lru_cache(maxsize=4096)
def _known_day(text: str, name: str) -> date:
    """``parse_day`` of a string: licences name the same few days over and over (their
    issue and validity dates), so each is parsed once. Errors are not cached."""
    return parse_day(text, f"lic.{name}")


def _day(obj: Mapping[str, Any], name: str) -> date:
    raw = obj.get(name)
    try:
        if type(raw) is str:
            return _known_day(raw, name)
        return parse_day(raw, f"lic.{name}")
    except ValueError as exc:
        raise ClaimsError(str(exc)) from exc


def parse_claims(claims: object) -> Licence:
    """Check the claims against the profile's schema and return them typed."""
    if not _is_object(claims):
        raise ClaimsError("payload is not a JSON object")
    iss = claims.get("iss")
    if not isinstance(iss, str) or not _REGION.match(iss):
        raise ClaimsError("iss must be a 6-digit region code")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise ClaimsError("jti (证照标识) must be a non-empty string")
    if "iat" not in claims:
        raise ClaimsError("iat is required")
    iat = numeric_date(claims["iat"], "iat")
    nbf = numeric_date(claims["nbf"], "nbf") if claims.get("nbf") is not None else None
    exp = numeric_date(claims["exp"], "exp") if claims.get("exp") is not None else None
    lic = claims.get("lic")
    if not _is_object(lic):
        raise ClaimsError("lic must be an object")
    type_code = _text(lic, "type_code")
    if not _TYPE_CODE.match(type_code):
        raise ClaimsError("lic.type_code must be 21 characters (USCC 18 + 3 digits)")
    holder_code_type = _text(lic, "holder_code_type")
    if not _HOLDER_CODE_TYPE.match(holder_code_type):
        raise ClaimsError("lic.holder_code_type must be a 3-digit code")
    valid_until = None if lic.get("valid_until") is None else _day(lic, "valid_until")
    valid_from = _day(lic, "valid_from")
    if valid_until is not None and valid_until < valid_from:
        raise ClaimsError("lic.valid_until is before lic.valid_from")
    matters_raw = lic.get("matters", [])
    if matters_raw is None:
        matters_raw = []
    if (not isinstance(matters_raw, list) or len(matters_raw) > _MAX_MATTERS
            or not all(isinstance(m, str) and 0 < len(m) <= 64 for m in matters_raw)):
        raise ClaimsError("lic.matters must be a list of matter codes")
    fields = lic.get("fields", {})
    if fields is None:
        fields = {}
    if not _is_object(fields):
        raise ClaimsError("lic.fields must be an object")
    status = None
    if claims.get("status") is not None:
        status = _status_reference(claims["status"], "status")
    issuer_code = _text(lic, "issuer_code")
    components = None
    if "components" in lic:
        components = _components(lic, issuer_code, valid_until)
    return Licence(
        iss=iss, jti=jti, iat=iat, nbf=nbf, exp=exp,
        type_code=type_code,
        type_name=_text(lic, "type_name"),
        number=_text(lic, "number"),
        issuer_name=_text(lic, "issuer_name"),
        issuer_code=issuer_code,
        issue_date=_day(lic, "issue_date"),
        holder_name=_text(lic, "holder_name"),
        holder_code=_text(lic, "holder_code", max_len=64),
        holder_code_type=holder_code_type,
        valid_from=valid_from,
        valid_until=valid_until,
        matters=tuple(matters_raw),
        fields=dict(fields),
        status=status,
        components=components,
    )


def _status_reference(raw_status: object, name: str) -> StatusReference:
    entry = raw_status.get("status_list") if _is_object(raw_status) else None
    if not _is_object(entry):
        raise ClaimsError(f"{name} must be {{\"status_list\": {{\"idx\", \"uri\"}}}}")
    idx = entry.get("idx")
    uri = entry.get("uri")
    if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
        raise ClaimsError(f"{name}.status_list.idx must be a non-negative integer")
    if not isinstance(uri, str) or not uri or len(uri) > 2048:
        raise ClaimsError(f"{name}.status_list.uri must be a URI")
    return StatusReference(idx, uri)


def _component(index: int, item: object, lic: Mapping[str, Any], issuer_code: str,
               valid_until: date | None) -> Component:
    if not isinstance(item, Mapping):
        raise ClaimsError("lic.<component> must be an object")
    type_code = _text(item, "type_code")
    if not _TYPE_CODE.match(type_code):
        raise ClaimsError("lic.type_code must be 21 characters (USCC 18 + 3 digits)")
    comp_from = _day(item, "valid_from")
    comp_until = None if item.get("valid_until") is None else _day(item, "valid_until")
    if comp_until is not None and comp_until < comp_from:
        raise ClaimsError("lic.valid_until is before valid_from")
    # The document's signature vouches for its components only while the document is
    # valid: it must not end before a component it carries.
    if valid_until is not None and (comp_until is None or comp_until > valid_until):
        raise ClaimsError("lic.valid_until is beyond the document's valid_until")
    if "status" not in item:
        raise ClaimsError("lic.status is required (each component has its own entry)")
    comp_fields = item.get("fields", {})
    if comp_fields is None:
        comp_fields = {}
    if not isinstance(comp_fields, Mapping):
        raise ClaimsError("lic.fields must be an object")
    return Component(
        index=index, identifier=_text(item, "identifier"), type_code=type_code,
        type_name=_text(item, "type_name"), number=_text(item, "number"),
        issuer_name=_text(item if "issuer_name" in item else lic, "issuer_name"),
        issuer_code=_text(item, "issuer_code") if "issuer_code" in item else issuer_code,
        issue_date=_day(item, "issue_date"), valid_from=comp_from, valid_until=comp_until,
        status=_status_reference(item["status"], "lic.status"),
        fields=dict(comp_fields))


def _components(lic: Mapping[str, Any], issuer_code: str,
                valid_until: date | None) -> tuple[Component, ...]:
    """``lic.components`` of a combined certificate (docs/combined-certificates.md)."""
    raw = lic["components"]
    if not isinstance(raw, list) or not raw:
        raise ClaimsError("lic.components must be a non-empty list")
    if len(raw) > MAX_COMPONENTS:
        raise ClaimsError(f"lic.components carries {len(raw)} components, at most "
                          f"{MAX_COMPONENTS} are allowed")
    parsed: list[Component] = []
    for index, item in enumerate(raw):
        try:
            parsed.append(_component(index, item, lic, issuer_code, valid_until))
        except ClaimsError as exc:
            # Messages name the member as "lic.<name>": say which component it is in.
            raise ClaimsError(str(exc).replace("lic.", f"lic.components[{index}].", 1)
                              ) from exc
    if len({c.identifier for c in parsed}) != len(parsed):
        raise ClaimsError("lic.components repeat an identifier")
    if len({c.type_code for c in parsed}) != len(parsed):
        raise ClaimsError("lic.components repeat a type_code (one certificate of each type)")
    return tuple(parsed)
