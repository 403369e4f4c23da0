"""The gateway's own signing keys and compact JWS signing.

Keys are made on first start and kept in the data folder (``keys/``, mode 0600);
their public halves are published at ``/.well-known/jwks.json`` so receipts,
licences and status lists the gateway signs can be checked offline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.keyfiles import keys_dir, load_or_create_secret
from trust import b64url_encode

__all__ = ["SigningKey", "load_or_create_key", "sign_compact"]


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An Ed25519 key with its ``kid``."""

    kid: str
    private: ed25519.Ed25519PrivateKey
    use: str

    @property
    def public_jwk(self) -> dict[str, Any]:
        """The public JWK (RFC 8037), with ``kid``, ``alg`` and ``use``."""
        raw = self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw), "kid": self.kid,
                "alg": "EdDSA", "use": "sig", "key_ops": ["verify"], "ecert_use": self.use}

    def sign(self, header: dict[str, Any], claims: dict[str, Any]) -> str:
        """Sign ``claims`` under ``header`` (``alg`` and ``kid`` are set here)."""
        return sign_compact({**header, "alg": "EdDSA", "kid": self.kid}, claims, self.private)

    def signer(self, header: dict[str, Any]) -> Callable[[dict[str, Any]], str]:
        """A function signing claims under one fixed header, encoded once (the hot path)."""
        prefix = b64url_encode(orjson.dumps({**header, "alg": "EdDSA", "kid": self.kid})) + "."
        private = self.private

        def sign(claims: dict[str, Any]) -> str:
            signing_input = prefix + b64url_encode(orjson.dumps(claims))
            return signing_input + "." + b64url_encode(private.sign(signing_input.encode()))

        return sign


def sign_compact(
    header: dict[str, Any], claims: dict[str, Any], key: ed25519.Ed25519PrivateKey
) -> str:
    """A compact JWS (RFC 7515) over orjson-serialised header and claims."""
    signing_input = (b64url_encode(orjson.dumps(header)) + "." +
                     b64url_encode(orjson.dumps(claims)))
    signature = key.sign(signing_input.encode("ascii"))
    return signing_input + "." + b64url_encode(signature)


def _thumbprint(public: ed25519.Ed25519PublicKey) -> str:
    # RFC 7638 3.2 with the RFC 8037 members of an OKP key, in lexicographic order.
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    canonical = orjson.dumps({"crv": "Ed25519", "kty": "OKP", "x": b64url_encode(raw)})
    return b64url_encode(hashlib.sha256(canonical).digest())


def load_or_create_key(data_dir: Path, name: str, *, kid_prefix: str) -> SigningKey:
    """Load ``keys/<name>.key`` (a 32-byte Ed25519 seed, 0600), making it on first use.

    Several instances may start on one data folder at once; they all end up with
    the one key that was written first. Blocking file I/O: start-up or an executor.
    """
    seed = load_or_create_secret(keys_dir(data_dir) / f"{name}.key")
    private = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    kid = f"{kid_prefix}-{_thumbprint(private.public_key())[:16]}"
    return SigningKey(kid=kid, private=private, use=name)
