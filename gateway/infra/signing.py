"""The gateway's own signing keys and compact JWS signing.

Keys are made on first start and kept in the data folder (``keys/``, mode 0600);
their public halves are published at ``/.well-known/jwks.json`` so receipts,
licences and status lists the gateway signs can be checked offline.

Two algorithms, both on the ecert profile's allow-list:

* ``ES256`` (P-256) for what is signed on every request: receipts and the
  licences Huzhou hands to partners. OpenSSL signs P-256 faster than Ed25519,
  and partners verify it faster too (the figures are in bench/RESULTS.md); and
  ES256 is the JWS algorithm every JOSE library implements.
* ``EdDSA`` (Ed25519) for the rest: status lists and trust lists.
* ``SM2SM3`` (SM2 with SM3, 国密, signer ID ``1234567812345678``) for the
  licences answered to a partner whose agreement asks for it
  (``signing_alg``), the status list those licences point to, and the
  trust-list exports asked for in SM2 (``?alg=SM2SM3``). Its public keys are
  published as ``{"kty": "EC", "crv": "SM2", ...}``.

A key file holds a 32-byte secret: ``<name>.key`` is an Ed25519 seed,
``<name>.es256.key`` gives a P-256 scalar, ``<name>.sm2.key`` an SM2 one. A
data folder that still holds a key of the other algorithm (Ed25519 or P-256)
under the same name (an older gateway's Ed25519 receipt or licence key) keeps
it published, so what it signed still verifies;
``published_keys`` returns it after the key that signs now.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from gateway.infra.keyfiles import keys_dir, load_or_create_secret
from trust import Sm2PrivateKey, b64url_encode

__all__ = ["KeyAlg", "SigningKey", "load_or_create_key", "published_keys"]

KeyAlg = Literal["EdDSA", "ES256", "SM2SM3"]

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
"""n of P-256 (SEC 2, section 2.4.2)."""

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | Sm2PrivateKey


def _raw_signer(private: PrivateKey) -> Callable[[bytes], bytes]:
    """The JWS signature function of a key: Ed25519 as is, ECDSA as R || S (RFC 7518 3.4),
    SM2 as r || s over SM3(Z_A || signing input) (ecert profile ``SM2SM3``)."""
    if isinstance(private, ed25519.Ed25519PrivateKey | Sm2PrivateKey):
        return private.sign
    ec_key = private

    def sign_es256(data: bytes) -> bytes:
        r, s = decode_dss_signature(ec_key.sign(data, _ECDSA_SHA256))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return sign_es256


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key with its ``kid``, what it is for and its JWS algorithm."""

    kid: str
    private: PrivateKey
    use: str
    alg: KeyAlg = "EdDSA"

    def __post_init__(self) -> None:
        fits = (isinstance(self.private, ed25519.Ed25519PrivateKey) if self.alg == "EdDSA"
                else isinstance(self.private, Sm2PrivateKey) if self.alg == "SM2SM3"
                else isinstance(self.private, ec.EllipticCurvePrivateKey)
                and isinstance(self.private.curve, ec.SECP256R1))
        if not fits:
            raise ValueError(f"a {type(self.private).__name__} cannot sign {self.alg}")

    @property
    def public_jwk(self) -> dict[str, Any]:
        """The public JWK (RFC 7518 6.2, RFC 8037), with ``kid``, ``alg`` and ``use``."""
        return {**_public_members(self.private), "kid": self.kid, "alg": self.alg,
                "use": "sig", "key_ops": ["verify"], "ecert_use": self.use}

    def sign(self, header: dict[str, Any], claims: dict[str, Any]) -> str:
        """Sign ``claims`` under ``header`` (``alg`` and ``kid`` are set here)."""
        return self.signer(header)(claims)

    def _prefix(self, header: dict[str, Any]) -> str:
        return b64url_encode(orjson.dumps({**header, "alg": self.alg, "kid": self.kid})) + "."

    def signer(self, header: dict[str, Any]) -> Callable[[dict[str, Any]], str]:
        """A function signing claims under one fixed header, encoded once (the hot path)."""
        prefix = self._prefix(header)
        raw_sign = _raw_signer(self.private)

        def sign(claims: dict[str, Any]) -> str:
            signing_input = prefix + b64url_encode(orjson.dumps(claims))
            return signing_input + "." + b64url_encode(raw_sign(signing_input.encode()))

        return sign

    def async_signer(
        self, header: dict[str, Any], run: Callable[..., Awaitable[Any]]
    ) -> Callable[[dict[str, Any]], Awaitable[str]]:
        """``signer``, with the signature itself made through ``run(fn, data)``
        (``gateway.infra.crypto_thread.CryptoThread.run``); the encoding stays with the caller."""
        prefix = self._prefix(header)
        raw_sign = _raw_signer(self.private)

        async def sign(claims: dict[str, Any]) -> str:
            signing_input = prefix + b64url_encode(orjson.dumps(claims))
            signature: bytes = await run(raw_sign, signing_input.encode())
            return signing_input + "." + b64url_encode(signature)

        return sign


def _public_members(private: PrivateKey) -> dict[str, str]:
    """The members that define the public key, as RFC 7638 orders them for thumbprints."""
    if isinstance(private, ed25519.Ed25519PrivateKey):
        raw = private.public_key().public_bytes(serialization.Encoding.Raw,
                                                serialization.PublicFormat.Raw)
        return {"crv": "Ed25519", "kty": "OKP", "x": b64url_encode(raw)}
    if isinstance(private, Sm2PrivateKey):
        public = private.public_key()
        return {"crv": "SM2", "kty": "EC", "x": b64url_encode(public.x),
                "y": b64url_encode(public.y)}
    numbers = private.public_key().public_numbers()
    return {"crv": "P-256", "kty": "EC", "x": b64url_encode(numbers.x.to_bytes(32, "big")),
            "y": b64url_encode(numbers.y.to_bytes(32, "big"))}


def _thumbprint(private: PrivateKey) -> str:
    # RFC 7638 3.2: the required members only, in lexicographic order, no whitespace.
    canonical = orjson.dumps(_public_members(private))
    return b64url_encode(hashlib.sha256(canonical).digest())


_KEY_FILE_SUFFIX: dict[KeyAlg, str] = {"EdDSA": ".key", "ES256": ".es256.key",
                                        "SM2SM3": ".sm2.key"}


def _key_path(data_dir: Path, name: str, alg: KeyAlg) -> Path:
    return keys_dir(data_dir) / (name + _KEY_FILE_SUFFIX[alg])


def _from_secret(secret: bytes, alg: KeyAlg) -> PrivateKey:
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.from_private_bytes(secret)
    if alg == "SM2SM3":
        return Sm2PrivateKey.from_secret(secret)
    # Any 32 random bytes give a scalar in 1..n-1 (the bias is under 2^-127).
    scalar = int.from_bytes(secret, "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def _key(secret: bytes, name: str, kid_prefix: str, alg: KeyAlg) -> SigningKey:
    private = _from_secret(secret, alg)
    return SigningKey(kid=f"{kid_prefix}-{_thumbprint(private)[:16]}", private=private,
                      use=name, alg=alg)


def load_or_create_key(data_dir: Path, name: str, *, kid_prefix: str,
                       alg: KeyAlg = "EdDSA") -> SigningKey:
    """Load the ``alg`` key called ``name`` (0600), making it on first use.

    Several instances may start on one data folder at once; they all end up with
    the one key that was written first. Blocking file I/O: start-up or an executor.
    """
    return _key(load_or_create_secret(_key_path(data_dir, name, alg)), name, kid_prefix, alg)


def published_keys(data_dir: Path, name: str, *, kid_prefix: str,
                   alg: KeyAlg) -> list[SigningKey]:
    """The key that signs now (``alg``, made if missing), then the key of the other
    algorithm under the same name if the folder holds one (kept to be published only)."""
    keys = [load_or_create_key(data_dir, name, kid_prefix=kid_prefix, alg=alg)]
    others: dict[KeyAlg, KeyAlg] = {"ES256": "EdDSA", "EdDSA": "ES256"}
    other = others.get(alg)
    if other is not None and _key_path(data_dir, name, other).exists():
        keys.append(load_or_create_key(data_dir, name, kid_prefix=kid_prefix, alg=other))
    return keys
