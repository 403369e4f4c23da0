"""Compact JWS parsing and signature verification for the algorithms the profile allows.

Keys are parsed once (when the trust list loads) into ``VerifyingKey`` objects;
a verification then costs one signature check and no key parsing. The allow-list
is the ecert profile's: ES256, ES384, EdDSA (Ed25519), PS256, RS256 with RSA keys
of 2048 bits or more, and SM2SM3 (SM2 over ``SM3(Z_A ‖ signing input)``, keys
``{"kty": "EC", "crv": "SM2"}``; the curve work is in ``trust._sm2``).

JSON in a JWS (its header, and the payload through ``parse_json``) is read with
orjson and refused when an object repeats a member name, at any depth: orjson
would silently keep the last value, and another reader the first. RFC 7515 4
(header) and RFC 7519 4 (claims) let a parser reject such a JWS; this one does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from trust._b64 import b64url_decode
from trust._errors import JoseError
from trust._sm2 import SM2_DEFAULT_SIGNER_ID, Sm2PublicKey

__all__ = [
    "ALLOWED_ALGS",
    "MAX_CREDENTIAL_BYTES",
    "Alg",
    "CompactJWS",
    "VerifyingKey",
    "header_alg",
    "key_from_jwk",
    "key_from_public",
    "parse_compact",
    "parse_json",
    "parse_json_object",
    "refused_header",
]

MAX_CREDENTIAL_BYTES = 64 * 1024
"""ecert profile: a credential longer than 64 KiB is refused unread."""

MIN_RSA_BITS = 2048


class Alg(StrEnum):
    """Signature algorithms on the profile's allow-list (RFC 7518, RFC 8037)."""

    ES256 = "ES256"
    ES384 = "ES384"
    EDDSA = "EdDSA"
    PS256 = "PS256"
    RS256 = "RS256"
    SM2SM3 = "SM2SM3"


ALLOWED_ALGS: frozenset[str] = frozenset(a.value for a in Alg)
_ALG_BY_NAME: Mapping[str, Alg] = {alg.value: alg for alg in Alg}
"""The allow-list by name (a dict lookup is cheaper than ``Alg(name)`` and its error)."""

_REFUSED_HEADERS = ("jku", "x5u", "jwk", "x5c", "crit")
"""Header parameters no token may carry, in the order they are reported: a key named
outside the trust list (RFC 7515 4.1.2-4.1.6; ``x5c`` only where the caller allows a chain
to a trust-list root) and ``crit`` (RFC 7515 4.1.11: no extension is understood, so any
``crit`` fails)."""

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_ECDSA_SHA384 = ec.ECDSA(hashes.SHA384())
# RFC 7518 3.5: PS256 uses MGF1 with SHA-256 and a salt as long as the hash.
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
_PKCS1 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()
_EC_ALGS = frozenset({Alg.ES256, Alg.ES384})
_ED_ALGS = frozenset({Alg.EDDSA})
_RSA_ALGS = frozenset({Alg.PS256, Alg.RS256})
_SM2_ALGS = frozenset({Alg.SM2SM3})


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    """A public key ready to verify, with the algorithms it may be used with."""

    public_key: (ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
                 | Sm2PublicKey)
    algs: frozenset[Alg]
    weak_reason: str | None = None
    """Set when the allow-list forbids this key (RSA under 2048 bits)."""

    def __post_init__(self) -> None:
        key = self.public_key
        fits = (_EC_ALGS if isinstance(key, ec.EllipticCurvePublicKey)
                else _ED_ALGS if isinstance(key, ed25519.Ed25519PublicKey)
                else _RSA_ALGS if isinstance(key, rsa.RSAPublicKey)
                else _SM2_ALGS if isinstance(key, Sm2PublicKey) else frozenset())
        if not self.algs <= fits:
            raise JoseError(f"algorithms {sorted(self.algs - fits)} do not fit a "
                            f"{type(key).__name__}", constraint=True)

    def verify(self, alg: Alg, signing_input: bytes, signature: bytes) -> bool:
        """True when ``signature`` is a valid ``alg`` signature over ``signing_input``.

        Raises ``JoseError(constraint=True)`` when the key is too weak for the allow-list.
        Returns False for every other mismatch (wrong algorithm for the key included).
        """
        if self.weak_reason is not None:
            raise JoseError(self.weak_reason, constraint=True)
        if alg not in self.algs:
            return False
        # ``algs`` holds only algorithms of this key's type (``__post_init__`` refuses any
        # other), so the casts below are safe and no isinstance check runs per verification.
        try:
            if alg is Alg.ES256 or alg is Alg.ES384:
                width = 32 if alg is Alg.ES256 else 48
                # RFC 7518 3.4: the signature is R || S, each exactly the curve's width.
                if len(signature) != 2 * width:
                    return False
                r = int.from_bytes(signature[:width], "big")
                s = int.from_bytes(signature[width:], "big")
                der = encode_dss_signature(r, s)
                cast(ec.EllipticCurvePublicKey, self.public_key).verify(
                    der, signing_input, _ECDSA_SHA256 if alg is Alg.ES256 else _ECDSA_SHA384)
            elif alg is Alg.EDDSA:
                if len(signature) != 64:
                    return False
                cast(ed25519.Ed25519PublicKey, self.public_key).verify(signature, signing_input)
            elif alg is Alg.SM2SM3:
                # ecert profile: r || s, 32 bytes each; trust._sm2 refuses any other length.
                return cast(Sm2PublicKey, self.public_key).verify(signature, signing_input)
            else:
                key = cast(rsa.RSAPublicKey, self.public_key)
                if len(signature) != (key.key_size + 7) // 8:
                    return False
                key.verify(signature, signing_input, _PSS if alg is Alg.PS256 else _PKCS1, _SHA256)
        except InvalidSignature:
            return False
        except ValueError:
            # encode_dss_signature refuses nothing in range; OpenSSL may refuse odd inputs.
            return False
        return True


def key_from_public(
    public_key: object, *, declared_alg: str | None = None
) -> VerifyingKey:
    """Wrap a cryptography public key, deciding which allowed algorithms fit it."""
    algs: set[Alg]
    weak: str | None = None
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curve = public_key.curve.name
        if curve == "secp256r1":
            algs = {Alg.ES256}
        elif curve == "secp384r1":
            algs = {Alg.ES384}
        else:
            raise JoseError(f"EC curve {curve} is not on the allow-list", constraint=True)
    elif isinstance(public_key, ed25519.Ed25519PublicKey):
        algs = {Alg.EDDSA}
    elif isinstance(public_key, rsa.RSAPublicKey):
        algs = {Alg.PS256, Alg.RS256}
        if public_key.key_size < MIN_RSA_BITS:
            weak = f"RSA key of {public_key.key_size} bits is under the {MIN_RSA_BITS}-bit minimum"
    elif isinstance(public_key, Sm2PublicKey):
        algs = {Alg.SM2SM3}
    else:
        raise JoseError(f"key type {type(public_key).__name__} is not on the allow-list",
                        constraint=True)
    if declared_alg is not None:
        if declared_alg not in ALLOWED_ALGS:
            raise JoseError(f"key declares alg {declared_alg!r}, not on the allow-list",
                            constraint=True)
        if Alg(declared_alg) not in algs:
            raise JoseError(f"key declares alg {declared_alg!r}, which does not fit its type")
        # RFC 7517 4.4: a declared alg pins the key to that one algorithm.
        algs = {Alg(declared_alg)}
    return VerifyingKey(public_key, frozenset(algs), weak)


def _int(jwk: Mapping[str, Any], name: str) -> int:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise JoseError(f"JWK member {name!r} missing or not a string")
    try:
        return int.from_bytes(b64url_decode(value), "big")
    except ValueError as exc:
        raise JoseError(f"JWK member {name!r} is not base64url") from exc


def _raw(jwk: Mapping[str, Any], name: str, size: int) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise JoseError(f"JWK member {name!r} missing or not a string")
    try:
        data = b64url_decode(value)
    except ValueError as exc:
        raise JoseError(f"JWK member {name!r} is not base64url") from exc
    if len(data) != size:
        raise JoseError(f"JWK member {name!r} must be {size} bytes")
    return data


def key_from_jwk(jwk: Mapping[str, Any], *, sm2_id: bytes | None = None) -> VerifyingKey:
    """Parse a public JWK (RFC 7517/7518/8037). Private members are refused.

    ``sm2_id``: the signer ID an SM2 key's signatures are made under (default
    ``1234567812345678``); given with a key of another type, it is refused.
    """
    if not isinstance(jwk, Mapping):
        raise JoseError("JWK must be an object")
    if "d" in jwk or "p" in jwk:
        raise JoseError("JWK carries private key material")
    # RFC 7517 4.2/4.3: a key marked for another use or other operations must not verify.
    if "use" in jwk and jwk["use"] != "sig":
        raise JoseError(f"JWK use {jwk['use']!r} is not 'sig'")
    if "key_ops" in jwk:
        ops = jwk["key_ops"]
        if not isinstance(ops, list) or "verify" not in ops:
            raise JoseError("JWK key_ops does not allow 'verify'")
    kty = jwk.get("kty")
    declared = jwk.get("alg")
    if declared is not None and not isinstance(declared, str):
        raise JoseError("JWK alg must be a string")
    public: object
    if sm2_id is not None and not (kty == "EC" and jwk.get("crv") == "SM2"):
        raise JoseError("a signer ID (sm2_id) is for SM2 keys only")
    if kty == "EC" and jwk.get("crv") == "SM2":
        # ecert profile SM2SM3: x and y of a point on the GB/T 32918.5 curve, 32 bytes each.
        public = Sm2PublicKey.from_coordinates(
            _raw(jwk, "x", 32), _raw(jwk, "y", 32),
            signer_id=SM2_DEFAULT_SIGNER_ID if sm2_id is None else sm2_id)
    elif kty == "EC":
        crv = jwk.get("crv")
        curves: dict[str, tuple[ec.EllipticCurve, int]] = {
            "P-256": (ec.SECP256R1(), 32),
            "P-384": (ec.SECP384R1(), 48),
        }
        if crv not in curves:
            raise JoseError(f"EC curve {crv!r} is not on the allow-list", constraint=True)
        curve, size = curves[str(crv)]
        x = _raw(jwk, "x", size)
        y = _raw(jwk, "y", size)
        try:
            public = ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + x + y)
        except ValueError as exc:
            raise JoseError("EC point is not on the curve") from exc
    elif kty == "OKP":
        if jwk.get("crv") != "Ed25519":
            raise JoseError(f"OKP curve {jwk.get('crv')!r} is not on the allow-list",
                            constraint=True)
        public = ed25519.Ed25519PublicKey.from_public_bytes(_raw(jwk, "x", 32))
    elif kty == "RSA":
        n = _int(jwk, "n")
        e = _int(jwk, "e")
        try:
            public = rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError as exc:
            raise JoseError("RSA key is invalid") from exc
    else:
        raise JoseError(f"JWK kty {kty!r} is not supported", constraint=True)
    return key_from_public(public, declared_alg=declared)


# RFC 8259 2: the only whitespace JSON allows (orjson refuses any other byte there).
_WS_TO_COLON = bytes.maketrans(b" \t\n\r", b"::::")


class _DuplicateMemberError(Exception):
    """Raised inside the exact check when an object repeats a member name."""


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        raise _DuplicateMemberError
    return members


def _member_count(value: Any) -> int:
    """The members of every object in ``value``, nested ones included (no recursion:
    orjson accepts 1,024 levels, beyond Python's default recursion limit)."""
    count = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            count += len(item)
            item = item.values()
        stack.extend([c for c in item if type(c) is dict or type(c) is list])
    return count


def _has_duplicate_member(data: bytes, value: Any) -> bool:
    """True when an object in the JSON text ``data`` (which orjson read as ``value``)
    repeats a member name.

    Two fast tests, each exact in one direction, come first. When the text is byte
    for byte what orjson writes for ``value`` (the usual compact token), no name
    repeats: orjson writes each member of an object once. Else, every member name
    ends with a quote followed by whitespace or ``:``, so with whitespace mapped to
    ``:`` the number of ``":`` is at least the number of names in the text, which
    is at least the number of members orjson kept (fewer when a name repeats). When
    it equals the members kept, no name repeats. Otherwise (a string holding ``":``
    or starting with ``:``, or a real duplicate) the text is read again with a hook
    that sees every member.
    """
    if type(value) is not dict and type(value) is not list:
        return False
    # Exact too, and cheaper for the usual token: the text is orjson's own serialisation
    # of what it read, which names each member of an object once.
    try:
        if orjson.dumps(value) == data:
            return False
    except orjson.JSONEncodeError:  # deeper than orjson writes: the tests below decide
        pass
    # Compact JSON (no whitespace byte at all) needs no mapping before the count.
    compact = b" " not in data and b"\n" not in data and b"\t" not in data and b"\r" not in data
    if (data if compact else data.translate(_WS_TO_COLON)).count(b'":') == _member_count(value):
        return False
    try:
        json.loads(data.decode("utf-8"), object_pairs_hook=_refuse_duplicates)
    except _DuplicateMemberError:
        return True
    except RecursionError as exc:  # orjson allows deeper nesting than json's C scanner
        raise JoseError("JSON nested too deeply to check its member names") from exc
    return False


def header_alg(header: Mapping[str, Any]) -> Alg:
    """The header's ``alg``, when it is on the profile's allow-list.

    Raises ``JoseError`` when ``alg`` is missing or not a string, and
    ``JoseError(constraint=True)`` when it names an algorithm off the allow-list
    (``none`` and ``HS256`` included).
    """
    name = header.get("alg")
    if not isinstance(name, str):
        raise JoseError("alg missing or not a string")
    alg = _ALG_BY_NAME.get(name)
    if alg is None:
        raise JoseError(f"alg {name!r} is not on the allow-list", constraint=True)
    return alg


def refused_header(header: Mapping[str, Any], *, x5c_allowed: bool) -> str | None:
    """The first header parameter the gateway refuses in ``header``, or None.

    Every token is verified with keys from the trust list, so a header naming a
    key of its own (``jku``, ``x5u``, ``jwk``; ``x5c`` unless ``x5c_allowed``, for a
    chain the caller validates to a trust-list root) is refused, and so is any
    ``crit``: the gateway understands no extension (RFC 7515 4.1.11).
    """
    for name in _REFUSED_HEADERS:
        if name in header and (name != "x5c" or not x5c_allowed):
            return name
    return None


def parse_json(data: bytes, what: str = "payload") -> Any:
    """Read the JSON text of a JWS part; raise ``JoseError`` when it is not JSON or an
    object in it, at any depth, repeats a member name (RFC 7515 4, RFC 7519 4)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise JoseError(f"{what} is not JSON") from exc
    if _has_duplicate_member(data, value):
        raise JoseError(f"{what} repeats a member name in an object")
    return value


def parse_json_object(data: bytes, what: str = "payload") -> dict[str, Any]:
    """``parse_json`` for a part that must be a JSON object (a JWS header, a token's
    claims); raise ``JoseError`` otherwise."""
    value = parse_json(data, what)
    if not isinstance(value, dict):
        raise JoseError(f"{what} is not a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class CompactJWS:
    """A compact JWS split and decoded, not yet verified."""

    header: dict[str, Any]
    payload: bytes
    signing_input: bytes
    signature: bytes


def parse_compact(token: str | bytes, *, max_bytes: int = MAX_CREDENTIAL_BYTES) -> CompactJWS:
    """Split a compact JWS (RFC 7515 7.1) strictly; raise ``JoseError`` on any flaw.

    The header must be a JSON object without a repeated member name; the payload
    is returned as bytes (``parse_json`` reads it). The signature part may be
    empty, as an unsecured JWS has it (``alg: none``, RFC 7519 6.1): refusing that
    algorithm is the caller's check (a crypto constraint, not a format flaw), and
    ``VerifyingKey.verify`` accepts no empty signature under any allowed one.
    """
    if isinstance(token, str):
        if len(token) > max_bytes:
            raise JoseError(f"credential longer than {max_bytes} bytes")
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError as exc:
            raise JoseError("credential is not ASCII") from exc
    else:
        raw = token
    if len(raw) > max_bytes:
        raise JoseError(f"credential longer than {max_bytes} bytes")
    parts = raw.split(b".")
    if len(parts) != 3:
        raise JoseError("not three dot-separated parts")
    header_b64, payload_b64, sig_b64 = parts
    if not header_b64:
        raise JoseError("empty header part")
    try:
        header_bytes = b64url_decode(header_b64)
        payload = b64url_decode(payload_b64)
        signature = b64url_decode(sig_b64)
    except ValueError as exc:
        raise JoseError(f"a part is not base64url: {exc}") from exc
    header = parse_json_object(header_bytes, "header")
    return CompactJWS(header, payload, header_b64 + b"." + payload_b64, signature)
