"""A mock region answering Huzhou's queries for its licences (the partner query API).

The region serves ``POST /v1/partner/licences/query`` the way Huzhou serves it
(docs/spec/http-api.md, "Partner queries"), for Huzhou as the caller: the
request token must be an ``ecert-request+jwt`` ES256-signed by a key the
region accepts from Huzhou (``MockRegion.accept_huzhou_keys``, the JWKs Huzhou
publishes), ``iss`` 330500, ``aud`` the region's code, ``htm``/``htu`` this
request, ``body_sha256`` its body, within its lifetime, with a ``jti`` not
seen before. The check is written here from RFC 7515 and RFC 7518 with
pyca/cryptography, apart from the gateway's own (``trust/_request.py``).

The answer lists every licence the region issued of that type to that holder
that is still valid in its status list (``cn_status`` 0); when none is, 21 if
one was revoked, 23 if suspended, else 10.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from mocks._jws import b64url_decode

__all__ = [
    "HUZHOU", "QueryRefused", "check_huzhou_token", "find_licences", "huzhou_key",
    "parse_query",
]

HUZHOU = "330500"
MAX_LIFETIME_S = 300
SKEW_S = 30


class QueryRefused(Exception):  # noqa: N818 - a refusal with its HTTP status and cn code
    """A query the region refuses: ``status`` and ``cn_status`` for the problem body."""

    def __init__(self, status: int, cn_status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.cn_status = cn_status
        self.detail = detail


def huzhou_key(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of a JWK Huzhou publishes."""
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ValueError("only P-256 request keys are accepted from Huzhou")
    x = int.from_bytes(b64url_decode(str(jwk["x"])))
    y = int.from_bytes(b64url_decode(str(jwk["y"])))
    return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()


def check_huzhou_token(token: str, *, keys: Mapping[str, ec.EllipticCurvePublicKey],
                       audience: str, path: str, body: bytes, now: int,
                       seen: set[str]) -> None:
    """Raise ``QueryRefused`` (401, cn 11) unless ``token`` authenticates this request."""

    def refuse(why: str) -> QueryRefused:
        return QueryRefused(401, 11, why)

    parts = token.split(".")
    if len(parts) != 3:  # header, payload, signature
        raise refuse("not a compact JWS")
    try:
        header = orjson.loads(b64url_decode(parts[0]))
        claims = orjson.loads(b64url_decode(parts[1]))
        sig = b64url_decode(parts[2])
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise refuse("not a compact JWS") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise refuse("header and claims must be objects")
    if header.get("typ") != "ecert-request+jwt" or header.get("alg") != "ES256":
        raise refuse("typ must be ecert-request+jwt and alg ES256")
    key = keys.get(str(header.get("kid")))
    if key is None:
        raise refuse("kid is not a request key of Huzhou's")
    if len(sig) != 64:  # RFC 7518 3.4: R || S, 32 bytes each
        raise refuse("bad signature")
    der = encode_dss_signature(int.from_bytes(sig[:32]), int.from_bytes(sig[32:]))
    try:
        key.verify(der, f"{parts[0]}.{parts[1]}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise refuse("bad signature") from exc
    iat, exp = claims.get("iat"), claims.get("exp")
    if claims.get("iss") != HUZHOU or claims.get("aud") != audience:
        raise refuse("iss or aud wrong")
    if not isinstance(iat, int) or not isinstance(exp, int) or not 0 < exp - iat <= MAX_LIFETIME_S:
        raise refuse("iat and exp must be numbers at most 300 s apart")
    if iat > now + SKEW_S or now > exp + SKEW_S:
        raise refuse("token not valid now")
    if claims.get("htm") != "POST" or claims.get("htu") != path:
        raise refuse("htm or htu do not name this request")
    if claims.get("body_sha256") != hashlib.sha256(body).hexdigest():
        raise refuse("body_sha256 does not match the body")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or jti in seen:
        raise refuse("jti missing or replayed")
    seen.add(jti)


def parse_query(body: bytes) -> dict[str, Any]:
    """The query's JSON object; ``QueryRefused`` (400, cn 12) without its required fields."""
    try:
        query = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise QueryRefused(400, 12, "body is not JSON") from exc
    if not isinstance(query, dict) or not query.get("use_cause") \
            or not isinstance(query.get("matter"), dict):
        raise QueryRefused(400, 12, "use_cause and matter are required")
    return query


def find_licences(body: Mapping[str, Any], issued: Sequence[tuple[dict[str, Any], str]],
                  status_of: Any) -> tuple[int, list[str]]:
    """The national status code and the licences answering a query by holder or identifier.

    ``issued`` holds each licence's claims and token; ``status_of(idx)`` is its
    status-list value (0 valid, 1 revoked, 2 suspended).
    """
    identifier = body.get("identifier")
    holder = str(body.get("holder_code", "")).upper()
    found: list[tuple[int, str]] = []
    for claims, token in issued:
        lic = claims.get("lic", {})
        if identifier is not None:
            if claims.get("jti") != identifier:
                continue
        elif (str(lic.get("holder_code", "")).upper() != holder
              or lic.get("holder_code_type") != body.get("holder_code_type")
              or lic.get("type_code") != body.get("type_code")):
            continue
        ref = (claims.get("status") or {}).get("status_list") or {}
        state = status_of(ref["idx"]) if isinstance(ref.get("idx"), int) else 0
        found.append((state, token))
    valid = [token for state, token in found if state == 0]
    if valid:
        return 0, valid
    if not found:
        return 10, []
    return (21 if any(state == 1 for state, _ in found) else 23), []
