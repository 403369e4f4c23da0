"""SM2 signing for mock regions, in plain Python (GB/T 32918.2 6.1, GB/T 32918.5 curve).

The gateway verifies SM2 with OpenSSL (``trust._sm2``); the mocks sign with
this separate, deliberately simple implementation, so every SM2 licence a
test verifies is a check of one implementation against another (the tests
also hold both to the ``openssl`` command line). The curve arithmetic is
affine, with Python's modular inverse: a few milliseconds a signature, and
not constant-time (these are test keys, never secrets).

Nonces are deterministic, as the mocks' ECDSA ones are (RFC 6979 3.2 with
HMAC-SM3 over the private key and the digest), so a seeded region signs the
same token on every run.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import hashes, hmac

__all__ = ["SM2_DEFAULT_ID", "Sm2Key", "Sm2Public"]

# GB/T 32918.5-2017: y^2 = x^3 + ax + b over F_p, base point G of prime order n.
_P: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
_A: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
_B: Final = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
_N: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
_G: Final = (0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
             0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0)
_SIZE: Final = 32

SM2_DEFAULT_ID: Final = b"1234567812345678"
"""The signer ID of GM/T 0009, the ecert profile's default."""

_Point = tuple[int, int] | None  # None is the point at infinity


def _add(p1: _Point, p2: _Point) -> _Point:
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2:
        if (y1 + y2) % _P == 0:
            return None
        slope = (3 * x1 * x1 + _A) * pow(2 * y1, -1, _P) % _P
    else:
        slope = (y2 - y1) * pow(x2 - x1, -1, _P) % _P
    x3 = (slope * slope - x1 - x2) % _P
    return x3, (slope * (x1 - x3) - y1) % _P


def _multiply(k: int, point: _Point) -> _Point:
    result: _Point = None
    addend = point
    while k:
        if k & 1:
            result = _add(result, addend)
        addend = _add(addend, addend)
        k >>= 1
    return result


def _sm3(*parts: bytes) -> bytes:
    digest = hashes.Hash(hashes.SM3())
    for part in parts:
        digest.update(part)
    return digest.finalize()


def _hmac_sm3(key: bytes, *parts: bytes) -> bytes:
    mac = hmac.HMAC(key, hashes.SM3())
    for part in parts:
        mac.update(part)
    return mac.finalize()


def _nonces(d: int, digest: bytes) -> list[int]:
    """RFC 6979 3.2 with HMAC-SM3 (qlen = hlen = 256): the first candidates of k."""
    x = d.to_bytes(_SIZE, "big")
    h1 = (int.from_bytes(digest, "big") % _N).to_bytes(_SIZE, "big")
    v = b"\x01" * _SIZE
    k = b"\x00" * _SIZE
    k = _hmac_sm3(k, v, b"\x00", x, h1)
    v = _hmac_sm3(k, v)
    k = _hmac_sm3(k, v, b"\x01", x, h1)
    v = _hmac_sm3(k, v)
    found: list[int] = []
    while len(found) < 4:
        v = _hmac_sm3(k, v)
        candidate = int.from_bytes(v, "big")
        if 1 <= candidate < _N:
            found.append(candidate)
        k = _hmac_sm3(k, v, b"\x00")
        v = _hmac_sm3(k, v)
    return found


@dataclass(frozen=True, slots=True)
class Sm2Public:
    """An SM2 public key: affine ``x`` and ``y``, 32 bytes each."""

    x: bytes
    y: bytes


class Sm2Key:
    """An SM2 private key d in [1, n-2] that signs under one signer ID."""

    __slots__ = ("_d", "_public", "signer_id")

    def __init__(self, d: int, *, signer_id: bytes = SM2_DEFAULT_ID) -> None:
        """Refuse (``ValueError``) a scalar outside [1, n-2] (GB/T 32918.1 6.1)."""
        if not 1 <= d <= _N - 2:
            raise ValueError("an SM2 private key is a scalar in [1, n-2]")
        self._d = d
        point = _multiply(d, _G)
        assert point is not None
        self._public = Sm2Public(point[0].to_bytes(_SIZE, "big"), point[1].to_bytes(_SIZE, "big"))
        self.signer_id = signer_id
        """ID_A, the signer ID that enters Z_A."""

    @classmethod
    def generate(cls) -> Sm2Key:
        """A new random key."""
        return cls(secrets.randbelow(_N - 2) + 1)

    @classmethod
    def from_bytes(cls, material: bytes) -> Sm2Key:
        """The key derived from seed material (``int mod (n-2) + 1``)."""
        return cls(int.from_bytes(material, "big") % (_N - 2) + 1)

    def with_signer_id(self, signer_id: bytes) -> Sm2Key:
        """The same key signing under another signer ID."""
        return Sm2Key(self._d, signer_id=signer_id)

    def public_key(self) -> Sm2Public:
        """The public key."""
        return self._public

    def scalar_bytes(self) -> bytes:
        """d, 32 bytes big-endian (for tests that hand the key to OpenSSL)."""
        return self._d.to_bytes(_SIZE, "big")

    def z(self) -> bytes:
        """Z_A = SM3(ENTL_A ‖ ID_A ‖ a ‖ b ‖ x_G ‖ y_G ‖ x_A ‖ y_A) (GB/T 32918.2 5.5)."""
        curve = b"".join(v.to_bytes(_SIZE, "big") for v in (_A, _B, *_G))
        entl = (8 * len(self.signer_id)).to_bytes(2, "big")
        return _sm3(entl, self.signer_id, curve, self._public.x, self._public.y)

    def sign(self, message: bytes) -> bytes:
        """The signature r ‖ s (32 bytes each) of ``message`` (GB/T 32918.2 6.1, A1-A7)."""
        digest = _sm3(self.z(), message)  # A1, A2: e = SM3(Z_A ‖ M)
        e = int.from_bytes(digest, "big")
        d = self._d
        for k in _nonces(d, digest):  # A3
            point = _multiply(k, _G)  # A4
            assert point is not None
            r = (e + point[0]) % _N  # A5
            if r == 0 or r + k == _N:
                continue
            s = pow(1 + d, -1, _N) * (k - r * d) % _N  # A6
            if s != 0:
                return r.to_bytes(_SIZE, "big") + s.to_bytes(_SIZE, "big")  # A7
        raise AssertionError("no usable nonce among four (probability about 2^-1000)")
