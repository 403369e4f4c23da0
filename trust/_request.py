"""Partner requests: who an ``ecert-request+jwt`` comes from, and what its agreement covers.

Pure: a token, the request it came with, a trust list and the time in; an
authenticated ``PartnerRequest`` out, or ``RequestTokenError`` saying why not
(http-api.md, "Partner queries of Huzhou licences"):

* header: ``typ`` ``ecert-request+jwt``; ``alg`` on the profile's allow-list and
  no header parameter naming a key of its own or an extension, by the rules
  licences follow (``trust._jose.header_alg``, ``trust._jose.refused_header``;
  a request token carries no ``x5c`` chain); a ``kid``;
* anchor: ``kid`` names a ``request-signing`` anchor of the region in ``iss``
  (``TrustList.anchors_for``, as the licence verifier looks anchors up) whose key
  verifies the signature, which is ``active``, and whose window contains ``iat``
  (``Anchor.window_contains``);
* claims: ``aud`` the gateway; ``iat``, ``exp`` (and ``nbf`` when present) whole
  NumericDates (``trust._claims.numeric_seconds``); ``exp - iat`` at most 300 s;
  ``iat`` not ahead of ``now`` and ``now`` not past ``exp`` by more than the skew;
  ``htm``, ``htu`` and ``body_sha256`` binding the token to this very request; a
  ``jti``.

The signature check is the one costly step, so the check comes in three, as the
licence verifier's ``Verifier.start`` and ``Pending.finish`` do:
``start_request_token`` parses the token and finds the anchors its signature may
verify with; ``PendingRequest.verify_signature`` checks the signature (the
caller may run it on another thread); ``PendingRequest.finish`` checks the
claims. ``check_request_token`` runs the three. Whether a ``jti`` was seen
before needs a cache shared by every gateway instance: that check is the
caller's, after this one passed, so that only signed tokens spend a ``jti``.

``check_agreement`` applies the partner's agreement to what a request asks:
licence type in ``recognised_licence_types``, the partner's matter (its own
scheme) in ``recognised_matters``; a wildcard accepts any code.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from trust._anchors import Anchor, AnchorStatus, AnchorUse, Partner, PartnerStatus, TrustList
from trust._claims import ClaimsError, numeric_seconds
from trust._errors import JoseError, TrustError
from trust._jose import (
    Alg,
    CompactJWS,
    header_alg,
    parse_compact,
    parse_json_object,
    refused_header,
)

__all__ = [
    "MAX_REQUEST_LIFETIME_S",
    "MAX_REQUEST_TOKEN_BYTES",
    "REQUEST_SKEW_S",
    "REQUEST_TYP",
    "AgreementError",
    "PartnerRequest",
    "PendingRequest",
    "RequestTokenError",
    "check_agreement",
    "check_request_token",
    "start_request_token",
]

REQUEST_TYP = "ecert-request+jwt"
MAX_REQUEST_LIFETIME_S = 300
"""http-api.md: ``exp`` at most 300 s after ``iat``."""
REQUEST_SKEW_S = 30
"""Clock difference tolerated between a partner and Huzhou, either way."""
MAX_REQUEST_TOKEN_BYTES = 8 * 1024
"""A longer request token is refused unread."""
MAX_JTI = 128
"""The longest ``jti`` accepted, in characters."""
_MAX_ISS = 16
"""An ``iss`` longer than this is no region code, and is not repeated in audit records."""


class RequestTokenError(TrustError):
    """The request token does not authenticate this request; ``reason`` says why."""

    def __init__(self, reason: str, *, claimed_iss: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.claimed_iss = claimed_iss
        """The ``iss`` the token claimed, unverified (for the audit record only)."""


class AgreementError(TrustError):
    """The partner's agreement does not cover this request; ``reason`` says why."""

    def __init__(self, reason: str, *, suspended: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.suspended = suspended
        """True when the partner as a whole is suspended (try again later)."""


@dataclass(frozen=True, slots=True)
class PartnerRequest:
    """An authenticated partner request: who sent it, with which key and token."""

    partner: Partner
    kid: str
    jti: str
    issued_at: int
    expires_at: int

    @property
    def region(self) -> str:
        """The partner's region code."""
        return self.partner.region_code

    @property
    def replay_key(self) -> str:
        """The key a replay cache remembers (a ``jti`` is unique per partner)."""
        return f"{self.region}:{self.jti}"


@dataclass(frozen=True, slots=True)
class _Request:
    """What the token must be bound to, and when it is judged."""

    trust_list: TrustList
    audience: str
    method: str
    path: str
    body: bytes
    now: int
    skew_s: int


class PendingRequest:
    """A request token whose header and anchors passed; its signature and claims are next."""

    __slots__ = ("_alg", "_claims", "_jws", "_request", "anchors", "claimed_iss", "kid")

    def __init__(self, *, jws: CompactJWS, claims: dict[str, Any], alg: Alg, kid: str,
                 iss: str, anchors: list[Anchor], request: _Request) -> None:
        self._jws = jws
        self._claims = claims
        self._alg = alg
        self._request = request
        self.kid = kid
        """The token's ``kid``."""
        self.claimed_iss = iss
        """The region the token claims to come from (not yet verified)."""
        self.anchors = anchors
        """The ``request-signing`` anchors of that region under ``kid``, in list order."""

    def verify_signature(self) -> Anchor | None:
        """The first anchor whose key verifies the token's signature; None when none does.

        The costly step, and the only one: pure, so a caller may run it on another
        thread. An anchor without a usable key, or with a key the allow-list forbids,
        verifies nothing.
        """
        jws = self._jws
        for anchor in self.anchors:
            if anchor.key is None:
                continue
            try:
                if anchor.key.verify(self._alg, jws.signing_input, jws.signature):
                    return anchor
            except JoseError:
                continue  # a key the allow-list forbids verifies nothing
        return None

    def finish(self, verified: Anchor | None) -> PartnerRequest:
        """Check the claims, given the anchor ``verify_signature`` returned.

        Raises ``RequestTokenError`` unless the token authenticates this request at
        the time given to ``start_request_token``. A suspended partner authenticates
        (its key is checked): ``check_agreement`` refuses it.
        """
        iss, claims, req = self.claimed_iss, self._claims, self._request
        if verified is None:
            raise RequestTokenError("signature does not verify", claimed_iss=iss)
        if verified.status is not AnchorStatus.ACTIVE:
            raise RequestTokenError(f"request-signing key is {verified.status.value}",
                                    claimed_iss=iss)
        partner = req.trust_list.partner(iss)
        if partner is None:  # an anchor always has its partner; kept for the type checker
            raise RequestTokenError("unknown partner", claimed_iss=iss)
        iat = _seconds(claims, "iat", iss)
        exp = _seconds(claims, "exp", iss)
        if not verified.window_contains(datetime.fromtimestamp(iat, UTC)):
            raise RequestTokenError("request-signing key is outside its validity window at iat",
                                    claimed_iss=iss)
        aud = claims.get("aud")
        if not (aud == req.audience or (isinstance(aud, list) and req.audience in aud)):
            raise RequestTokenError(f"aud must be {req.audience}", claimed_iss=iss)
        if exp <= iat or exp - iat > MAX_REQUEST_LIFETIME_S:
            raise RequestTokenError(f"exp must be within {MAX_REQUEST_LIFETIME_S} s after iat",
                                    claimed_iss=iss)
        now, skew_s = req.now, req.skew_s
        if iat > now + skew_s:
            raise RequestTokenError("iat is in the future", claimed_iss=iss)
        if now > exp + skew_s:
            raise RequestTokenError("token expired", claimed_iss=iss)
        # The profile names no nbf, but one that is present is honoured (RFC 7519 4.1.5).
        if "nbf" in claims and _seconds(claims, "nbf", iss) > now + skew_s:
            raise RequestTokenError("token not valid yet (nbf)", claimed_iss=iss)
        if claims.get("htm") != req.method:
            raise RequestTokenError(f"htm must be {req.method}", claimed_iss=iss)
        if claims.get("htu") != req.path:
            raise RequestTokenError("htu does not name this request's path", claimed_iss=iss)
        digest = claims.get("body_sha256")
        if not isinstance(digest, str) or not digest.isascii() or not hmac.compare_digest(
                digest.lower(), hashlib.sha256(req.body).hexdigest()):
            raise RequestTokenError("body_sha256 does not match the request body",
                                    claimed_iss=iss)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI or not jti.isprintable():
            raise RequestTokenError(f"jti must be a string of 1..{MAX_JTI} characters",
                                    claimed_iss=iss)
        return PartnerRequest(partner=partner, kid=self.kid, jti=jti, issued_at=iat,
                              expires_at=exp)


def _seconds(claims: dict[str, Any], name: str, iss: str) -> int:
    try:
        return numeric_seconds(claims.get(name), name)
    except ClaimsError as exc:
        raise RequestTokenError(str(exc), claimed_iss=iss) from exc


def start_request_token(
    token: str,
    *,
    trust_list: TrustList,
    audience: str,
    method: str,
    path: str,
    body: bytes,
    now: int,
    skew_s: int = REQUEST_SKEW_S,
) -> PendingRequest:
    """Parse a request token and find the anchors that may verify it; raise
    ``RequestTokenError`` when its form, header, ``iss`` or ``kid`` already refuse it.

    ``audience`` is the gateway's id, ``method`` and ``path`` the HTTP request's,
    ``body`` its exact bytes; ``now`` is the time of the check in seconds since the
    epoch (the caller's clock: nothing here reads one), ``skew_s`` the clock
    difference tolerated either way.
    """
    try:
        jws = parse_compact(token, max_bytes=MAX_REQUEST_TOKEN_BYTES)
    except JoseError as exc:
        raise RequestTokenError(f"not a compact JWS: {exc}") from exc
    try:
        claims = parse_json_object(jws.payload)
    except JoseError as exc:
        raise RequestTokenError(str(exc)) from exc
    header = jws.header
    iss_raw = claims.get("iss")
    iss = iss_raw if isinstance(iss_raw, str) and len(iss_raw) <= _MAX_ISS else None
    if header.get("typ") != REQUEST_TYP:
        raise RequestTokenError(f"typ must be {REQUEST_TYP}", claimed_iss=iss)
    try:
        alg = header_alg(header)
    except JoseError as exc:
        raise RequestTokenError("alg is not on the profile's allow-list",
                                claimed_iss=iss) from exc
    if refused_header(header, x5c_allowed=False) is not None:
        raise RequestTokenError("header names a key or extension the gateway does not accept",
                                claimed_iss=iss)
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise RequestTokenError("kid is required", claimed_iss=iss)
    if iss is None:
        raise RequestTokenError("iss must be the partner's region code")
    anchors = trust_list.anchors_for(kid, AnchorUse.REQUEST_SIGNING, region=iss)
    if not anchors:
        raise RequestTokenError("kid is not a request-signing key of the issuing region",
                                claimed_iss=iss)
    return PendingRequest(jws=jws, claims=claims, alg=alg, kid=kid, iss=iss, anchors=anchors,
                          request=_Request(trust_list, audience, method, path, body, now,
                                           skew_s))


def check_request_token(
    token: str,
    *,
    trust_list: TrustList,
    audience: str,
    method: str,
    path: str,
    body: bytes,
    now: int,
    skew_s: int = REQUEST_SKEW_S,
) -> PartnerRequest:
    """Authenticate a partner's request token for this request, in one step; raise
    ``RequestTokenError`` when it does not (arguments as ``start_request_token``'s)."""
    pending = start_request_token(token, trust_list=trust_list, audience=audience,
                                  method=method, path=path, body=body, now=now, skew_s=skew_s)
    return pending.finish(pending.verify_signature())


def check_agreement(partner: Partner, *, type_code: str, matter_code: str) -> None:
    """Raise ``AgreementError`` unless the partner is active and its agreement covers
    licence type ``type_code`` and ``matter_code`` (a matter of the partner's own
    catalogue)."""
    if partner.status is not PartnerStatus.ACTIVE:
        raise AgreementError(f"partner {partner.region_code} is suspended", suspended=True)
    if not partner.covers_type(type_code):
        raise AgreementError(f"the agreement does not cover licence type {type_code}")
    if not partner.covers_matter(frozenset({matter_code})):
        raise AgreementError(f"the agreement does not cover matter {matter_code}")
