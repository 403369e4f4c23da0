"""Key material for mock regions: seeded (reproducible) or fresh.

A seeded region derives every EC, Ed25519 and SM2 private key from
``(seed, label)`` so that demo runs and benchmarks produce the same keys,
certificates and, with RFC 6979 nonces, the same tokens. RSA keys cannot be
derived through pyca/cryptography, so they are always fresh (and made only
when a test asks for one: RSA key generation is slow).
"""

from __future__ import annotations

import hashlib
import random

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from mocks._jws import SM2_ALG, Alg, PrivateKey, SigningKey
from mocks._sm2 import Sm2Key

__all__ = ["KeySource"]

_CURVES: dict[str, ec.EllipticCurve] = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1()}


class KeySource:
    """Makes keys, serial numbers and demo randomness for one region."""

    def __init__(self, seed: int | None, namespace: str) -> None:
        """Derive from ``seed`` within ``namespace`` (the region code), or at random."""
        self._seed = seed
        self._namespace = namespace
        rng_seed = None if seed is None else f"{seed}/{namespace}"
        self.rng = random.Random(rng_seed)
        """Randomness for demo data (names, serials); seeded when the region is."""

    @property
    def seeded(self) -> bool:
        """Whether keys are derived from a seed."""
        return self._seed is not None

    def _bytes(self, label: str, size: int) -> bytes:
        material = f"mocks-key/{self._seed}/{self._namespace}/{label}".encode()
        return hashlib.shake_256(material).digest(size)

    def private_key(self, alg: Alg, label: str, *, rsa_bits: int = 2048) -> SigningKey:
        """Return a private key fit for ``alg``, derived from ``label`` when seeded."""
        if alg == SM2_ALG:
            if self._seed is None:
                return Sm2Key.generate()
            return Sm2Key.from_bytes(self._bytes(label, 48))
        return self._cryptography_key(alg, label, rsa_bits=rsa_bits)

    def certificate_key(self, alg: Alg, label: str, *, rsa_bits: int = 2048) -> SigningKey:
        """Return a key for ``alg`` that can also sign certificates, derived from ``label``
        when seeded (an SM2 one is an ``Sm2Key``: mocks/_pki.py signs with it)."""
        if alg == SM2_ALG:
            return self.private_key(alg, label)
        return self._cryptography_key(alg, label, rsa_bits=rsa_bits)

    def _cryptography_key(self, alg: Alg, label: str, *, rsa_bits: int) -> PrivateKey:
        if alg in _CURVES:
            curve = _CURVES[alg]
            if self._seed is None:
                return ec.generate_private_key(curve)
            # A scalar below 2**(bits-1) is always below the group order of P-256/P-384.
            size = (curve.key_size + 7) // 8
            scalar = int.from_bytes(self._bytes(label, size), "big") % (1 << (curve.key_size - 1))
            return ec.derive_private_key(scalar or 1, curve)
        if alg == "EdDSA":
            if self._seed is None:
                return ed25519.Ed25519PrivateKey.generate()
            return ed25519.Ed25519PrivateKey.from_private_bytes(self._bytes(label, 32))
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)

    def serial_number(self, label: str) -> int:
        """Return a positive certificate serial number of at most 159 bits (RFC 5280 4.1.2.2)."""
        if self._seed is None:
            return x509.random_serial_number()
        return (int.from_bytes(self._bytes(label, 20), "big") >> 1) | 1
