"""SM2 signatures with SM3 (GB/T 32918.2, GB/T 32905), on OpenSSL 3's libcrypto.

pyca/cryptography has SM3 but no SM2, so the curve arithmetic is OpenSSL's,
reached through ``ctypes``: the ``libcrypto`` that Python's own ``ssl`` and
``hashlib`` use (OpenSSL 3.0 or later, built with SM2). Everything around the
one curve operation is done here, in the open, and tested:

* keys are points on the recommended curve of GB/T 32918.5 given as 32-byte
  ``x`` and ``y``; a point off the curve, with a coordinate not below ``p``, or
  of the wrong length is refused when the key is made (the point at infinity
  has no such encoding, and the curve's cofactor is 1, so every point accepted
  is in the group of order ``n``);
* ``Z_A = SM3(ENTL_A ‖ ID_A ‖ a ‖ b ‖ x_G ‖ y_G ‖ x_A ‖ y_A)`` is computed once
  per key, from the signer ID (default ``1234567812345678``, GM/T 0009), and
  the digest ``e = SM3(Z_A ‖ M)`` with cryptography's SM3;
* a signature is ``r ‖ s``, 32 bytes each, big-endian; one of another length,
  with ``r`` or ``s`` outside ``[1, n-1]`` or with ``r + s = n`` fails before
  OpenSSL sees it, and OpenSSL then checks ``e`` against ``(r, s)`` given as DER
  (``EVP_PKEY_verify`` on the digest).

The library is loaded on first use, not at import, and checked then with a
known answer (the GM/T 0003.5 Annex A signature, as a self-test). Without a
usable library every key constructor raises ``Sm2UnavailableError`` (a
``JoseError`` with ``constraint=True``): an SM2 anchor is then unusable, while
every other algorithm works. Calls into libcrypto release the GIL; each
operation makes its own OpenSSL context, so one key may be used from several
threads at once. No file, network or clock is touched here, except the loader
opening the library once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import secrets
import weakref
from collections.abc import Callable
from typing import Any, Final, cast

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from trust._errors import JoseError

__all__ = [
    "MAX_SIGNER_ID_BYTES",
    "SM2_DEFAULT_SIGNER_ID",
    "Sm2PrivateKey",
    "Sm2PublicKey",
    "Sm2UnavailableError",
    "is_sm2_spki",
    "sm3",
]

# GB/T 32918.5-2017, the recommended 256-bit curve y^2 = x^3 + ax + b over F_p.
P: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B: Final = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX: Final = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY: Final = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

SM2_DEFAULT_SIGNER_ID: Final = b"1234567812345678"
"""The signer ID of GM/T 0009 (and GB/T 35276), the ecert profile's default."""
MAX_SIGNER_ID_BYTES: Final = 8191
"""ENTL_A is the ID's length in bits in two bytes (GB/T 32918.2 5.5): at most 8191 bytes."""

_SIZE = 32
_CURVE_BYTES: Final = b"".join(v.to_bytes(_SIZE, "big") for v in (A, B, GX, GY))
# DER prefixes of an SM2 key: id-ecPublicKey (RFC 5480) with the SM2 curve OID
# 1.2.156.10197.1.301 (GB/T 33560), the point uncompressed (SEC 1 2.3.3).
_ALGORITHM = bytes.fromhex("301306072a8648ce3d020106082a811ccf5501822d")
_SPKI_PREFIX: Final = bytes.fromhex("3059") + _ALGORITHM + bytes.fromhex("034200")
_PKCS8_PREFIX: Final = (bytes.fromhex("3041020100") + _ALGORITHM
                        + bytes.fromhex("0427302502010104") + bytes([_SIZE]))
_SM3 = hashes.SM3()


class Sm2UnavailableError(JoseError):
    """No usable SM2 implementation: libcrypto is missing, too old or built without SM2."""

    def __init__(self, message: str) -> None:
        super().__init__(f"SM2 is unavailable: {message}", constraint=True)


def sm3(data: bytes) -> bytes:
    """SM3 of ``data`` (GB/T 32905), with cryptography's implementation."""
    digest = hashes.Hash(_SM3)
    digest.update(data)
    return digest.finalize()


# -- libcrypto ------------------------------------------------------------------------------

_P = ctypes.c_void_p
_INT = ctypes.c_int
_SIZE_T = ctypes.c_size_t
_BYTES = ctypes.c_char_p
_MAX_DER_SIGNATURE = 72


class _Lib:
    """The libcrypto functions SM2 needs, typed for ctypes."""

    def __init__(self, cdll: ctypes.CDLL) -> None:
        def bind(name: str, restype: Any, *argtypes: Any) -> Callable[..., Any]:
            function = getattr(cdll, name)
            function.restype = restype
            function.argtypes = argtypes
            return cast(Callable[..., Any], function)

        self.OpenSSL_version_num = bind("OpenSSL_version_num", ctypes.c_ulong)
        self.ERR_clear_error = bind("ERR_clear_error", None)
        self.d2i_PUBKEY = bind("d2i_PUBKEY", _P, _P, _P, ctypes.c_long)
        self.d2i_AutoPrivateKey = bind("d2i_AutoPrivateKey", _P, _P, _P, ctypes.c_long)
        self.i2d_PUBKEY = bind("i2d_PUBKEY", _INT, _P, _P)
        self.EVP_PKEY_is_a = bind("EVP_PKEY_is_a", _INT, _P, _BYTES)
        self.EVP_PKEY_free = bind("EVP_PKEY_free", None, _P)
        self.EVP_PKEY_CTX_new = bind("EVP_PKEY_CTX_new", _P, _P, _P)
        self.EVP_PKEY_CTX_free = bind("EVP_PKEY_CTX_free", None, _P)
        self.EVP_PKEY_verify_init = bind("EVP_PKEY_verify_init", _INT, _P)
        self.EVP_PKEY_verify = bind("EVP_PKEY_verify", _INT, _P, _BYTES, _SIZE_T, _BYTES,
                                    _SIZE_T)
        self.EVP_PKEY_sign_init = bind("EVP_PKEY_sign_init", _INT, _P)
        self.EVP_PKEY_sign = bind("EVP_PKEY_sign", _INT, _P, _BYTES,
                                  ctypes.POINTER(_SIZE_T), _BYTES, _SIZE_T)

    def load_key(self, der: bytes, *, private: bool) -> int:
        """An ``EVP_PKEY *`` of type SM2 from DER (SubjectPublicKeyInfo or PKCS #8)."""
        buffer = ctypes.create_string_buffer(der, len(der))
        cursor = ctypes.c_void_p(ctypes.addressof(buffer))
        decode = self.d2i_AutoPrivateKey if private else self.d2i_PUBKEY
        pkey = decode(None, ctypes.byref(cursor), len(der))
        if not pkey:
            self.ERR_clear_error()
            raise JoseError("libcrypto refused the SM2 key")
        # OpenSSL 3 reads a key on the SM2 curve as key type "SM2" (not "EC"), whose
        # signature operations are SM2's.
        if self.EVP_PKEY_is_a(pkey, b"SM2") != 1:
            self.EVP_PKEY_free(pkey)
            raise Sm2UnavailableError("libcrypto did not read the key as an SM2 key")
        return int(pkey)

    def verify(self, pkey: int, der_signature: bytes, digest: bytes) -> bool:
        """OpenSSL's SM2 verification of ``digest`` (= e) against a DER signature."""
        ctx = self.EVP_PKEY_CTX_new(pkey, None)
        if not ctx:
            self.ERR_clear_error()
            raise MemoryError("EVP_PKEY_CTX_new failed")
        try:
            ok = (self.EVP_PKEY_verify_init(ctx) == 1
                  and self.EVP_PKEY_verify(ctx, der_signature, len(der_signature),
                                           digest, len(digest)) == 1)
        finally:
            self.EVP_PKEY_CTX_free(ctx)
        if not ok:
            # A failed check leaves errors on this thread's queue, which Python's ssl
            # and hashlib (the same library) would otherwise find later.
            self.ERR_clear_error()
        return bool(ok)

    def sign(self, pkey: int, digest: bytes) -> bytes:
        """OpenSSL's SM2 signature of ``digest`` (= e), as DER."""
        ctx = self.EVP_PKEY_CTX_new(pkey, None)
        if not ctx:
            self.ERR_clear_error()
            raise MemoryError("EVP_PKEY_CTX_new failed")
        try:
            out = ctypes.create_string_buffer(_MAX_DER_SIGNATURE)
            size = ctypes.c_size_t(_MAX_DER_SIGNATURE)
            if (self.EVP_PKEY_sign_init(ctx) != 1
                    or self.EVP_PKEY_sign(ctx, out, ctypes.byref(size), digest,
                                          len(digest)) != 1):
                self.ERR_clear_error()
                raise JoseError("libcrypto could not make the SM2 signature")
            return out.raw[:size.value]
        finally:
            self.EVP_PKEY_CTX_free(ctx)


def _open_libcrypto() -> ctypes.CDLL:
    # The soname first: dlopen finds the library Python's ssl already mapped, with no
    # search; find_library (which may run ldconfig) only where that name is unknown.
    for name in ("libcrypto.so.3", "libcrypto.3.dylib"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    found = ctypes.util.find_library("crypto")
    if found:
        try:
            return ctypes.CDLL(found)
        except OSError:
            pass
    raise Sm2UnavailableError("libcrypto (OpenSSL 3) was not found")


def _checked_library() -> _Lib:
    cdll = _open_libcrypto()
    try:
        lib = _Lib(cdll)
    except AttributeError as exc:
        raise Sm2UnavailableError(f"libcrypto lacks {exc}") from exc
    version = lib.OpenSSL_version_num()
    if version < 0x30000000:
        raise Sm2UnavailableError(f"libcrypto is OpenSSL {version:#x}, older than 3.0")
    _self_test(lib)
    return lib


@functools.cache
def _library() -> _Lib | Sm2UnavailableError:
    """libcrypto, loaded and self-tested once; or why it cannot be used."""
    try:
        return _checked_library()
    except Sm2UnavailableError as exc:
        return exc


def _lib() -> _Lib:
    lib = _library()
    if isinstance(lib, Sm2UnavailableError):
        raise lib
    return lib


# GM/T 0003.5-2012 Annex A: key, message and signature (default signer ID).
_KAT_POINT = bytes.fromhex(
    "0409f9df311e5421a150dd7d161e4bc5c672179fad1833fc076bb08ff356f35020"
    "ccea490ce26775a52dc6ea718cc1aa600aed05fbf35e084a6632f6072da9ad13")
_KAT_MESSAGE = b"message digest"
_KAT_SIGNATURE = bytes.fromhex(
    "f5a03b0648d2c4630eeac513e1bb81a15944da3827d5b74143ac7eaceee720b3"
    "b1b6aa29df212fd8763182bc0d421ca1bb9038fd1f7f42d4840b69c485bbc1aa")


def _self_test(lib: _Lib) -> None:
    """The Annex A signature verifies, and with one bit flipped it does not."""
    try:
        pkey = lib.load_key(_SPKI_PREFIX + _KAT_POINT, private=False)
    except JoseError as exc:
        raise Sm2UnavailableError(f"libcrypto cannot read SM2 keys ({exc})") from exc
    try:
        digest = sm3(_z(SM2_DEFAULT_SIGNER_ID, _KAT_POINT) + _KAT_MESSAGE)
        flipped = bytes([_KAT_SIGNATURE[0] ^ 1]) + _KAT_SIGNATURE[1:]
        good = lib.verify(pkey, _der(_KAT_SIGNATURE), digest)
        bad = lib.verify(pkey, _der(flipped), digest)
    finally:
        lib.EVP_PKEY_free(pkey)
    if not good or bad:
        raise Sm2UnavailableError("libcrypto failed the GM/T 0003.5 Annex A self-test")


# -- keys -----------------------------------------------------------------------------------


def _z(signer_id: bytes, point: bytes) -> bytes:
    """Z_A of GB/T 32918.2 5.5: SM3(ENTL_A ‖ ID_A ‖ a ‖ b ‖ x_G ‖ y_G ‖ x_A ‖ y_A)."""
    return sm3((8 * len(signer_id)).to_bytes(2, "big") + signer_id + _CURVE_BYTES + point[1:])


def _der(signature: bytes) -> bytes:
    return encode_dss_signature(int.from_bytes(signature[:_SIZE], "big"),
                                int.from_bytes(signature[_SIZE:], "big"))


def is_sm2_spki(der: bytes) -> bool:
    """True when ``der`` is a SubjectPublicKeyInfo that names the SM2 curve (its point
    in whatever form)."""
    # An SM2 SubjectPublicKeyInfo is under 128 bytes: the outer length takes one byte.
    return der[2:2 + len(_ALGORITHM)] == _ALGORITHM and der[:1] == b"\x30"


def _check_signer_id(signer_id: bytes) -> bytes:
    if not isinstance(signer_id, bytes):
        raise JoseError("an SM2 signer ID is bytes")
    if len(signer_id) > MAX_SIGNER_ID_BYTES:
        raise JoseError(f"an SM2 signer ID has at most {MAX_SIGNER_ID_BYTES} bytes")
    return signer_id


def _check_point(point: bytes) -> bytes:
    """The uncompressed encoding ``04 ‖ x ‖ y`` of a point of the curve, or JoseError."""
    if len(point) != 1 + 2 * _SIZE or point[0] != 4:
        raise JoseError("an SM2 public key is 04 ‖ x ‖ y, 32 bytes each")
    x = int.from_bytes(point[1:1 + _SIZE], "big")
    y = int.from_bytes(point[1 + _SIZE:], "big")
    if x >= P or y >= P:
        raise JoseError("SM2 point coordinate is not below p")
    if (y * y - (x * x * x + A * x + B)) % P != 0:
        raise JoseError("SM2 point is not on the curve")
    return point


class Sm2PublicKey:
    """An SM2 public key with the signer ID its signatures are made under.

    Two keys are equal when point and signer ID are.
    """

    __slots__ = ("__weakref__", "_pkey", "_z_hash", "point", "signer_id")

    def __init__(self, point: bytes, *, signer_id: bytes = SM2_DEFAULT_SIGNER_ID) -> None:
        """Refuse (``JoseError``) a point that is not ``04 ‖ x ‖ y`` of a curve point, a
        signer ID over 8191 bytes, or (``Sm2UnavailableError``) a missing library."""
        self.point: Final = _check_point(bytes(point))
        """The uncompressed point ``04 ‖ x ‖ y`` (65 bytes)."""
        self.signer_id: Final = _check_signer_id(signer_id)
        """ID_A, the signer ID that enters Z_A."""
        lib = _lib()
        self._pkey = lib.load_key(_SPKI_PREFIX + self.point, private=False)
        weakref.finalize(self, lib.EVP_PKEY_free, self._pkey)
        # e = SM3(Z_A ‖ M): Z_A is absorbed once and the state copied per message.
        self._z_hash = hashes.Hash(_SM3)
        self._z_hash.update(_z(self.signer_id, self.point))

    @classmethod
    def from_coordinates(cls, x: bytes, y: bytes, *,
                         signer_id: bytes = SM2_DEFAULT_SIGNER_ID) -> Sm2PublicKey:
        """The key with affine coordinates ``x`` and ``y`` (32 bytes each, big-endian)."""
        if len(x) != _SIZE or len(y) != _SIZE:
            raise JoseError("SM2 coordinates are 32 bytes each")
        return cls(b"\x04" + x + y, signer_id=signer_id)

    @classmethod
    def from_spki(cls, der: bytes, *, signer_id: bytes = SM2_DEFAULT_SIGNER_ID) -> Sm2PublicKey:
        """The key of a DER SubjectPublicKeyInfo: id-ecPublicKey on the SM2 curve, the
        point uncompressed (what ``openssl pkey -pubout`` writes for an SM2 key)."""
        if not is_sm2_spki(der):
            raise JoseError("not the SubjectPublicKeyInfo of an SM2 key")
        if len(der) != len(_SPKI_PREFIX) + 1 + 2 * _SIZE or not der.startswith(_SPKI_PREFIX):
            raise JoseError("an SM2 key is given uncompressed (04 ‖ x ‖ y)")
        return cls(der[len(_SPKI_PREFIX):], signer_id=signer_id)

    @property
    def x(self) -> bytes:
        """The affine x coordinate (32 bytes)."""
        return self.point[1:1 + _SIZE]

    @property
    def y(self) -> bytes:
        """The affine y coordinate (32 bytes)."""
        return self.point[1 + _SIZE:]

    def spki(self) -> bytes:
        """The DER SubjectPublicKeyInfo (RFC 5480 form, SM2 curve OID)."""
        return _SPKI_PREFIX + self.point

    def z(self) -> bytes:
        """Z_A (GB/T 32918.2 5.5) of this key and signer ID."""
        return _z(self.signer_id, self.point)

    def with_signer_id(self, signer_id: bytes) -> Sm2PublicKey:
        """The same point under another signer ID."""
        return type(self)(self.point, signer_id=signer_id)

    def digest(self, message: bytes) -> bytes:
        """e = SM3(Z_A ‖ message), what an SM2 signature of ``message`` signs."""
        state = self._z_hash.copy()
        state.update(message)
        return state.finalize()

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True when ``signature`` (r ‖ s) is this key's SM2 signature of ``message``."""
        return self.verify_digest(signature, self.digest(message))

    def verify_digest(self, signature: bytes, digest: bytes) -> bool:
        """True when ``signature`` (r ‖ s) is this key's SM2 signature of the digest e.

        GB/T 32918.2 7.1 B1, B2, B5: r and s in [1, n-1] and t = r + s mod n not 0;
        the curve arithmetic (B6, B7) is OpenSSL's.
        """
        if len(signature) != 2 * _SIZE or len(digest) != _SIZE:
            return False
        r = int.from_bytes(signature[:_SIZE], "big")
        s = int.from_bytes(signature[_SIZE:], "big")
        if not (0 < r < N and 0 < s < N) or (r + s) % N == 0:
            return False
        return _lib().verify(self._pkey, encode_dss_signature(r, s), digest)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sm2PublicKey):
            return NotImplemented
        return self.point == other.point and self.signer_id == other.signer_id

    def __hash__(self) -> int:
        return hash((self.point, self.signer_id))

    def __repr__(self) -> str:
        return f"Sm2PublicKey(x={self.x.hex()}, signer_id={self.signer_id!r})"


class Sm2PrivateKey:
    """An SM2 private key (a scalar d in [1, n-2]) that signs under one signer ID."""

    __slots__ = ("__weakref__", "_d", "_pkey", "_public")

    def __init__(self, scalar: int, *, signer_id: bytes = SM2_DEFAULT_SIGNER_ID) -> None:
        """Refuse (``JoseError``) a scalar outside [1, n-2] (GB/T 32918.1 6.1: 1 + d
        must be invertible mod n); ``Sm2UnavailableError`` without the library."""
        if not 1 <= scalar <= N - 2:
            raise JoseError("an SM2 private key is a scalar in [1, n-2]")
        signer_id = _check_signer_id(signer_id)
        self._d = scalar
        lib = _lib()
        # PKCS #8 without the public key: libcrypto derives it (RFC 5915 makes it optional).
        self._pkey = lib.load_key(_PKCS8_PREFIX + scalar.to_bytes(_SIZE, "big"), private=True)
        weakref.finalize(self, lib.EVP_PKEY_free, self._pkey)
        self._public = Sm2PublicKey(_public_point(lib, self._pkey), signer_id=signer_id)

    @classmethod
    def generate(cls, *, signer_id: bytes = SM2_DEFAULT_SIGNER_ID) -> Sm2PrivateKey:
        """A new random key (the scalar from ``secrets``)."""
        return cls(secrets.randbelow(N - 2) + 1, signer_id=signer_id)

    @classmethod
    def from_secret(cls, secret: bytes, *,
                    signer_id: bytes = SM2_DEFAULT_SIGNER_ID) -> Sm2PrivateKey:
        """The key derived from 32 or more random bytes (``secret mod (n-2) + 1``; the
        bias is under 2^-95 for 32 bytes), as keys are kept in files."""
        if len(secret) < _SIZE:
            raise JoseError("an SM2 key is derived from at least 32 secret bytes")
        return cls(int.from_bytes(secret, "big") % (N - 2) + 1, signer_id=signer_id)

    def public_key(self) -> Sm2PublicKey:
        """The public key, with the same signer ID."""
        return self._public

    @property
    def signer_id(self) -> bytes:
        """ID_A, the signer ID that enters Z_A."""
        return self._public.signer_id

    def scalar_bytes(self) -> bytes:
        """The private scalar d, 32 bytes big-endian."""
        return self._d.to_bytes(_SIZE, "big")

    def sign(self, message: bytes) -> bytes:
        """The SM2 signature r ‖ s (64 bytes) of e = SM3(Z_A ‖ message)."""
        return self.sign_digest(self._public.digest(message))

    def sign_digest(self, digest: bytes) -> bytes:
        """The SM2 signature r ‖ s of the digest e (32 bytes); the nonce is OpenSSL's."""
        if len(digest) != _SIZE:
            raise JoseError("an SM2 digest is 32 bytes")
        r, s = decode_dss_signature(_lib().sign(self._pkey, digest))
        return r.to_bytes(_SIZE, "big") + s.to_bytes(_SIZE, "big")

    def __repr__(self) -> str:
        return f"Sm2PrivateKey(public_key={self._public!r})"


def _public_point(lib: _Lib, pkey: int) -> bytes:
    """The point of a key libcrypto holds, read back from its SubjectPublicKeyInfo."""
    size = len(_SPKI_PREFIX) + 1 + 2 * _SIZE
    buffer = ctypes.create_string_buffer(size)
    cursor = ctypes.c_void_p(ctypes.addressof(buffer))
    if lib.i2d_PUBKEY(pkey, ctypes.byref(cursor)) != size:
        lib.ERR_clear_error()
        raise JoseError("libcrypto did not give the SM2 public key")
    der = buffer.raw
    if not der.startswith(_SPKI_PREFIX):
        raise JoseError("libcrypto gave the SM2 public key in another form")
    return der[len(_SPKI_PREFIX):]
