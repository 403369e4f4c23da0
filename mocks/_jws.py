"""JWS compact serialisation signed with pyca/cryptography (RFC 7515, RFC 7518).

Only what the mocks need: the algorithms of the ``ecert+jwt`` profile (the five
registered for JOSE, and SM2SM3 signed with ``mocks._sm2``), raw signing over
caller-supplied headers (so tests can mutate and re-sign), and the public JWK of
each key (RFC 7517, RFC 8037 for Ed25519, the profile's ``crv: SM2``).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from mocks._sm2 import Sm2Key, Sm2Public

__all__ = [
    "ALGORITHMS",
    "SM2_ALG",
    "Alg",
    "PrivateKey",
    "PublicKey",
    "SigningKey",
    "VerifyingKey",
    "b64url_decode",
    "b64url_encode",
    "check_key_fits",
    "json_bytes",
    "public_jwk",
    "sign_compact",
    "signature",
]

Alg: TypeAlias = Literal["ES256", "ES384", "EdDSA", "PS256", "RS256", "SM2SM3"]
ALGORITHMS: tuple[Alg, ...] = ("ES256", "ES384", "EdDSA", "PS256", "RS256")
"""The profile's algorithms registered for JOSE (RFC 7518, RFC 8037): any JOSE library
verifies them. The profile's ``SM2SM3`` (``SM2_ALG``) is not registered."""
SM2_ALG: Alg = "SM2SM3"
"""SM2 with SM3 (spec/ecert-profile.md ``SM2SM3``), signed with ``mocks._sm2``."""

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
"""The private keys cryptography holds (these can also sign certificates)."""
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
SigningKey: TypeAlias = PrivateKey | Sm2Key
"""A private key of any algorithm of the profile."""
VerifyingKey: TypeAlias = PublicKey | Sm2Public

# RFC 7518 3.4: the curve and the byte length of r and s for each ECDSA algorithm.
_EC_PARAMS: dict[str, tuple[type[ec.EllipticCurve], hashes.HashAlgorithm, int]] = {
    "ES256": (ec.SECP256R1, hashes.SHA256(), 32),
    "ES384": (ec.SECP384R1, hashes.SHA384(), 48),
}


def b64url_encode(data: bytes) -> str:
    """Encode bytes as base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url text with or without padding."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def json_bytes(value: Any) -> bytes:
    """Serialise a JSON value compactly as UTF-8 (non-ASCII kept as is)."""
    return orjson.dumps(value)


def check_key_fits(key: SigningKey, alg: Alg) -> None:
    """Raise ``ValueError`` when ``key`` cannot make signatures for ``alg``."""
    if alg == SM2_ALG:
        if not isinstance(key, Sm2Key):
            raise ValueError("SM2SM3 needs an SM2 key")
    elif isinstance(key, Sm2Key):
        raise ValueError(f"an SM2 key signs SM2SM3, not {alg}")
    elif alg in _EC_PARAMS:
        curve_type = _EC_PARAMS[alg][0]
        if not (isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, curve_type)):
            raise ValueError(f"{alg} needs an EC key on {curve_type.name}")
    elif alg == "EdDSA":
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError("EdDSA needs an Ed25519 key")
    elif not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{alg} needs an RSA key")


def signature(key: SigningKey, alg: Alg, signing_input: bytes) -> bytes:
    """Sign ``signing_input`` with ``key`` and return the JWS signature bytes."""
    check_key_fits(key, alg)
    if isinstance(key, Sm2Key):
        # ecert profile SM2SM3: r || s over SM3(Z_A || signing input).
        return key.sign(signing_input)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        _, digest, size = _EC_PARAMS[alg]
        # RFC 6979 deterministic nonces: seeded regions make reproducible tokens.
        der = key.sign(signing_input, ec.ECDSA(digest, deterministic_signing=True))
        r, s = decode_dss_signature(der)
        # RFC 7518 3.4: R || S, each left-padded to the curve size, not DER.
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(signing_input)
    if alg == "PS256":
        # RFC 7518 3.5: MGF1 with SHA-256 and a salt as long as the hash.
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        return key.sign(signing_input, pss, hashes.SHA256())
    return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())


def sign_compact(
    header: Mapping[str, Any] | bytes,
    payload: Mapping[str, Any] | bytes,
    key: SigningKey,
    alg: Alg,
) -> str:
    """Return ``header.payload.signature`` signed with ``key`` under ``alg``.

    The header is used exactly as given (its ``alg`` is not checked against
    ``alg``), so tests can make deliberately inconsistent tokens; header and
    payload given as bytes are signed as they are (a repeated member name, say).
    """
    body = payload if isinstance(payload, bytes) else json_bytes(dict(payload))
    head = header if isinstance(header, bytes) else json_bytes(dict(header))
    signing_input = f"{b64url_encode(head)}.{b64url_encode(body)}"
    sig = signature(key, alg, signing_input.encode("ascii"))
    return f"{signing_input}.{b64url_encode(sig)}"


def _uint(value: int) -> str:
    """Base64url of an unsigned big-endian integer in its minimal length (RFC 7518 6.3)."""
    return b64url_encode(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def public_jwk(key: VerifyingKey) -> dict[str, Any]:
    """Return the public JWK members of ``key`` (no ``kid``, ``alg`` or ``use``)."""
    if isinstance(key, Sm2Public):
        return {"kty": "EC", "crv": "SM2", "x": b64url_encode(key.x), "y": b64url_encode(key.y)}
    if isinstance(key, ec.EllipticCurvePublicKey):
        size = (key.curve.key_size + 7) // 8
        numbers = key.public_numbers()
        crv = {"secp256r1": "P-256", "secp384r1": "P-384"}[key.curve.name]
        return {
            "kty": "EC",
            "crv": crv,
            "x": b64url_encode(numbers.x.to_bytes(size, "big")),
            "y": b64url_encode(numbers.y.to_bytes(size, "big")),
        }
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}
    rsa_numbers = key.public_numbers()
    return {"kty": "RSA", "n": _uint(rsa_numbers.n), "e": _uint(rsa_numbers.e)}
