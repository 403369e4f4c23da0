"""SM2 with SM3: the primitive (``trust._sm2``), its keys, and its conformance vectors.

The vectors (tests/vectors/sm2/sm2_sm3_test.json, sources in SOURCES.md) run through
the verifier's own signature path: a JWK ``{"kty": "EC", "crv": "SM2"}`` parsed by
``key_from_jwk`` with the group's signer ID, then ``VerifyingKey.verify`` under
``SM2SM3``, as a licence is verified. The group that gives the digest ``e`` instead
of the message runs through ``Sm2PublicKey.verify_digest``, the step that call ends in.
"""

from __future__ import annotations

import contextlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import VECTORS
from trust import (
    SM2_DEFAULT_SIGNER_ID,
    Alg,
    JoseError,
    Sm2PrivateKey,
    Sm2PublicKey,
    Sm2UnavailableError,
    VerifyingKey,
    _sm2,
    b64url_encode,
    key_from_jwk,
    key_from_public,
)

SM2_FILE = json.loads((VECTORS / "sm2" / "sm2_sm3_test.json").read_text(encoding="utf-8"))
N = _sm2.N
P = _sm2.P

_KEY = Sm2PrivateKey.generate()
_KEY_SCALAR = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
"""The private key of GM/T 0003.5 Annex A (its public key is the vectors' first)."""
_MESSAGE = b"eyJhbGciOiJTTTJTTTMifQ.eyJpc3MiOiI1MjA1MDAifQ"


def _jwk(point: bytes) -> dict[str, str]:
    return {"kty": "EC", "crv": "SM2", "x": b64url_encode(point[1:33]),
            "y": b64url_encode(point[33:])}


def _point(group: dict[str, Any]) -> bytes:
    return bytes.fromhex(group["publicKey"]["uncompressed"])


MESSAGE_CASES = [pytest.param(group, test, id=f"tc{test['tcId']}-{test['flags'][0]}")
                 for group in SM2_FILE["testGroups"] if group["uid"] is not None
                 for test in group["tests"]]
DIGEST_CASES = [pytest.param(group, test, id=f"tc{test['tcId']}-{test['flags'][0]}")
                for group in SM2_FILE["testGroups"] if group["uid"] is None
                for test in group["tests"]]


def _licence_path_verify(group: dict[str, Any], test: dict[str, Any]) -> bool:
    """What the verifier does with a licence: the anchor's JWK parsed with its sm2_id
    (a key refused there verifies nothing), then VerifyingKey.verify under SM2SM3."""
    try:
        key = key_from_jwk(_jwk(_point(group)), sm2_id=group["uid"].encode())
    except JoseError:
        return False
    return key.verify(Alg.SM2SM3, bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"]))


class TestConformance:
    """tests/vectors/sm2: every ``valid`` accepted, every ``invalid`` rejected."""

    @pytest.mark.parametrize(("group", "test"), MESSAGE_CASES)
    def test_vector_through_the_licence_signature_path(self, group: dict[str, Any],
                                                       test: dict[str, Any]) -> None:
        """Each message vector verifies exactly when it is valid."""
        assert (test["result"] == "valid") == _licence_path_verify(group, test)

    @pytest.mark.parametrize(("group", "test"), DIGEST_CASES)
    def test_openssl_digest_vector(self, group: dict[str, Any], test: dict[str, Any]) -> None:
        """OpenSSL's evppkey_sm2.txt vectors (e given) verify; their DER form is r ‖ s."""
        key = Sm2PublicKey(_point(group))
        signature = bytes.fromhex(test["sig"])
        r, s = decode_dss_signature(bytes.fromhex(test["sigDer"]))
        assert signature == r.to_bytes(32, "big") + s.to_bytes(32, "big")
        assert (test["result"] == "valid") == key.verify_digest(signature,
                                                                bytes.fromhex(test["digest"]))

    def test_every_vector_runs(self) -> None:
        """The loops above hold every test of the file (a silently empty one cannot pass),
        and the file holds both answers."""
        assert SM2_FILE["numberOfTests"] == len(MESSAGE_CASES) + len(DIGEST_CASES) == 100
        results = {case.values[1]["result"] for case in MESSAGE_CASES}  # type: ignore[index]
        assert {"valid", "invalid"} == results

    def test_off_curve_key_is_refused_when_parsed(self) -> None:
        """The vector key with y altered never becomes a key: refused at parse time."""
        group = next(g for g in SM2_FILE["testGroups"]
                     if g["tests"][0]["flags"] == ["InvalidPublicKey"])
        with pytest.raises(JoseError, match="not on the curve"):
            key_from_jwk(_jwk(_point(group)))

    @pytest.mark.parametrize("example", SM2_FILE["sm3"], ids=lambda e: e["source"])
    def test_sm3_examples(self, example: dict[str, str]) -> None:
        """GB/T 32905 Annex A: cryptography's SM3, and the module's, give the digests."""
        digest = hashes.Hash(hashes.SM3())
        digest.update(bytes.fromhex(example["msg"]))
        assert example["digest"] == digest.finalize().hex()
        assert example["digest"] == _sm2.sm3(bytes.fromhex(example["msg"])).hex()


class TestPublicKeys:
    """A public key is a point of the curve; anything else is refused when it is made."""

    def test_annex_a_private_key_gives_the_vectors_public_key(self) -> None:
        """The key pair of GM/T 0003.5 Annex A: libcrypto derives the public point."""
        assert _point(SM2_FILE["testGroups"][0]) == Sm2PrivateKey(_KEY_SCALAR).public_key().point

    def test_round_trips(self) -> None:
        """JWK coordinates, SubjectPublicKeyInfo and the point give the same key."""
        public = _KEY.public_key()
        assert public == Sm2PublicKey.from_coordinates(public.x, public.y)
        assert public == Sm2PublicKey.from_spki(public.spki())
        assert public == key_from_jwk(_jwk(public.point)).public_key

    @pytest.mark.parametrize(("x", "y", "error"), [
        (P.to_bytes(32, "big"), bytes(32), "not below p"),
        (bytes(32), P.to_bytes(32, "big"), "not below p"),
        (bytes(32), bytes(32), "not on the curve"),  # (0, 0): what "infinity" would look like
        (_sm2.GX.to_bytes(32, "big"), ((_sm2.GY + 1) % P).to_bytes(32, "big"),
         "not on the curve"),
    ], ids=["x-is-p", "y-is-p", "zero", "G-with-y+1"])
    def test_point_off_the_curve_or_out_of_range(self, x: bytes, y: bytes, error: str) -> None:
        """Coordinates not below p, or not satisfying the curve equation, are refused."""
        with pytest.raises(JoseError, match=error):
            Sm2PublicKey.from_coordinates(x, y)
        with pytest.raises(JoseError, match=error):
            key_from_jwk(_jwk(b"\x04" + x + y))

    def test_coordinates_that_differ_by_p_are_not_the_same_key(self) -> None:
        """x + p (when it fits in 32 bytes) names the same field element: refused, so one
        key has one encoding."""
        x = 1 << 200  # x + p still fits in 32 bytes; the check comes before the curve's
        with pytest.raises(JoseError, match="not below p"):
            Sm2PublicKey.from_coordinates((x + P).to_bytes(32, "big"), bytes(32))

    @pytest.mark.parametrize("point", [
        b"", b"\x00", b"\x04" + bytes(63), b"\x04" + bytes(65),
        b"\x02" + _KEY.public_key().x + _KEY.public_key().y,
        b"\x03" + _KEY.public_key().x, _KEY.public_key().point[1:],
    ], ids=["empty", "infinity-octet", "short", "long", "prefix-02", "compressed", "no-prefix"])
    def test_wrong_encoding(self, point: bytes) -> None:
        """Only 04 ‖ x ‖ y of 32 bytes each is a key (the point at infinity has no form)."""
        with pytest.raises(JoseError, match="04"):
            Sm2PublicKey(point)

    @pytest.mark.parametrize("size", [0, 31, 33])
    def test_jwk_coordinate_length(self, size: int) -> None:
        """A JWK x or y of any length but 32 bytes is refused."""
        public = _KEY.public_key()
        with pytest.raises(JoseError, match="32 bytes"):
            key_from_jwk({**_jwk(public.point), "x": b64url_encode(bytes(size))})

    def test_spki_of_another_curve_is_refused(self) -> None:
        """A P-256 SubjectPublicKeyInfo is not an SM2 key."""
        from cryptography.hazmat.primitives import serialization

        p256 = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        with pytest.raises(JoseError, match="SubjectPublicKeyInfo"):
            Sm2PublicKey.from_spki(p256)

    @settings(max_examples=200, deadline=None)
    @given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
    def test_random_coordinates(self, x: bytes, y: bytes) -> None:
        """Random x and y make a key only if they are a curve point; else JoseError."""
        on_curve = (int.from_bytes(x, "big") < P and int.from_bytes(y, "big") < P
                    and (int.from_bytes(y, "big") ** 2 - int.from_bytes(x, "big") ** 3
                         - _sm2.A * int.from_bytes(x, "big") - _sm2.B) % P == 0)
        try:
            key_from_jwk(_jwk(b"\x04" + x + y))
        except JoseError:
            assert not on_curve
        else:
            assert on_curve

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=120))
    def test_arbitrary_spki_bytes(self, der: bytes) -> None:
        """Any bytes as a SubjectPublicKeyInfo give a key or JoseError, nothing else."""
        with contextlib.suppress(JoseError):
            Sm2PublicKey.from_spki(der)

    def test_signer_id_is_limited_by_entl(self) -> None:
        """ENTL_A has 16 bits: an ID of 8191 bytes is the longest."""
        point = _KEY.public_key().point
        assert 8191 == len(Sm2PublicKey(point, signer_id=b"i" * 8191).signer_id)
        with pytest.raises(JoseError, match="8191"):
            Sm2PublicKey(point, signer_id=b"i" * 8192)

    def test_sm2_id_only_for_sm2_keys(self) -> None:
        """A signer ID given with a P-256 JWK is refused (it would be silently ignored)."""
        numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
        jwk = {"kty": "EC", "crv": "P-256", "x": b64url_encode(numbers.x.to_bytes(32, "big")),
               "y": b64url_encode(numbers.y.to_bytes(32, "big"))}
        with pytest.raises(JoseError, match="SM2 keys only"):
            key_from_jwk(jwk, sm2_id=b"1234567812345678")

    def test_jwk_declaring_sm2sm3(self) -> None:
        """``alg: SM2SM3`` pins an SM2 JWK to it; ``ES256`` on an SM2 key does not fit."""
        jwk = _jwk(_KEY.public_key().point)
        assert frozenset({Alg.SM2SM3}) == key_from_jwk({**jwk, "alg": "SM2SM3"}).algs
        with pytest.raises(JoseError, match="does not fit"):
            key_from_jwk({**jwk, "alg": "ES256"})


class TestSignatures:
    """Sign and verify; what a signature binds and what it must look like."""

    def test_sign_then_verify(self) -> None:
        """A signature verifies for its message and key, and for nothing else."""
        signature = _KEY.sign(_MESSAGE)
        public = _KEY.public_key()
        assert 64 == len(signature)
        assert public.verify(signature, _MESSAGE)
        assert not public.verify(signature, _MESSAGE + b"!")
        assert not Sm2PrivateKey.generate().public_key().verify(signature, _MESSAGE)

    @pytest.mark.parametrize("signer_id", [b"", b"ALICE123@YAHOO.COM", "毕节市".encode()])
    def test_signer_id_is_bound(self, signer_id: bytes) -> None:
        """A signature under one signer ID does not verify under another (Z_A differs)."""
        key = Sm2PrivateKey(_KEY_SCALAR, signer_id=signer_id)
        signature = key.sign(_MESSAGE)
        assert key.public_key().verify(signature, _MESSAGE)
        assert not key.public_key().with_signer_id(SM2_DEFAULT_SIGNER_ID).verify(signature,
                                                                                  _MESSAGE)

    @pytest.mark.parametrize(("r", "s"), [
        (0, 1), (1, 0), (N, 1), (1, N), (N - 1, 1), (2**256 - 1, 1),
    ], ids=["r=0", "s=0", "r=n", "s=n", "r+s=n", "r-max"])
    def test_out_of_range_is_false_not_an_error(self, r: int, s: int) -> None:
        """r or s outside [1, n-1], or r + s = n, is a failed signature."""
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        assert not _KEY.public_key().verify(signature, _MESSAGE)

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=80))
    def test_arbitrary_signature_bytes(self, signature: bytes) -> None:
        """Any bytes as a signature answer False (never an exception)."""
        assert not _KEY.public_key().verify(signature, _MESSAGE)

    def test_der_signature_is_not_accepted(self) -> None:
        """The JWS form is r ‖ s; the DER form of a good signature is refused."""
        signature = _KEY.sign(_MESSAGE)
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                   int.from_bytes(signature[32:], "big"))
        assert not _KEY.public_key().verify(der, _MESSAGE)

    @pytest.mark.parametrize("scalar", [0, N - 1, N, -1])
    def test_private_scalar_range(self, scalar: int) -> None:
        """A private key is in [1, n-2] (1 + d must be invertible mod n)."""
        with pytest.raises(JoseError, match=r"\[1, n-2\]"):
            Sm2PrivateKey(scalar)

    def test_largest_private_scalar_signs(self) -> None:
        """d = n - 2 is a key, and it signs."""
        key = Sm2PrivateKey(N - 2)
        assert key.public_key().verify(key.sign(_MESSAGE), _MESSAGE)

    def test_verification_from_threads(self) -> None:
        """One key verifies from several threads at once (each call has its own context)."""
        public = _KEY.public_key()
        good = _KEY.sign(_MESSAGE)
        bad = good[:-1] + bytes([good[-1] ^ 1])
        barrier = threading.Barrier(4)

        def work(flip: bool) -> list[bool]:
            barrier.wait()
            return [public.verify(bad if flip else good, _MESSAGE) for _ in range(50)]

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(work, [False, True, False, True]))
        assert [[True] * 50, [False] * 50, [True] * 50, [False] * 50] == answers


class TestVerifyingKey:
    """SM2 in the JWS verifier's key type: its algorithm and no other."""

    def test_only_sm2sm3_fits_an_sm2_key(self) -> None:
        """An SM2 key verifies SM2SM3 only, and no other key type verifies SM2SM3."""
        key = key_from_public(_KEY.public_key())
        signature = _KEY.sign(_MESSAGE)
        assert frozenset({Alg.SM2SM3}) == key.algs
        assert key.verify(Alg.SM2SM3, _MESSAGE, signature)
        assert not key.verify(Alg.ES256, _MESSAGE, signature)
        p256 = key_from_public(ec.generate_private_key(ec.SECP256R1()).public_key())
        assert not p256.verify(Alg.SM2SM3, _MESSAGE, signature)
        with pytest.raises(JoseError, match="do not fit"):
            VerifyingKey(_KEY.public_key(), frozenset({Alg.ES256}))
        with pytest.raises(JoseError, match="do not fit"):
            VerifyingKey(p256.public_key, frozenset({Alg.SM2SM3}))


class TestLibrary:
    """libcrypto is loaded once and checked with a known answer; without it SM2 is a
    crypto constraint, not a crash."""

    def test_unavailable_library_is_a_constraint(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With no usable libcrypto an SM2 key is refused as a crypto constraint."""
        monkeypatch.setattr(_sm2, "_library",
                            lambda: Sm2UnavailableError("libcrypto (OpenSSL 3) was not found"))
        with pytest.raises(Sm2UnavailableError) as caught:
            key_from_jwk(_jwk(_KEY.public_key().point))
        assert caught.value.constraint
        assert "SM2 is unavailable" in str(caught.value)

    def test_self_test_refuses_a_library_that_accepts_anything(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A library whose verification says yes to a flipped signature is not used."""
        monkeypatch.setattr(_sm2._Lib, "verify", lambda *_: True)
        with pytest.raises(Sm2UnavailableError, match="self-test"):
            _sm2._checked_library()

    def test_refusals_leave_no_openssl_error(self) -> None:
        """What libcrypto refuses leaves nothing on the thread's OpenSSL error queue
        (Python's ssl and hashlib share the library and would find a stale error)."""
        import ctypes

        peek = _sm2._open_libcrypto().ERR_peek_error
        peek.restype = ctypes.c_ulong
        with pytest.raises(JoseError, match="refused"):
            _sm2._lib().load_key(b"\x30\x03\x02\x01\x00", private=False)
        assert 0 == peek()
        signature = _KEY.sign(_MESSAGE)
        assert not _KEY.public_key().verify(signature, _MESSAGE + b"x")
        assert 0 == peek()
