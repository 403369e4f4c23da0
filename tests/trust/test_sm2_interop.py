"""SM2 both ways with OpenSSL 3's command line: ``openssl pkeyutl -rawin -digest sm3``.

Our signer (``Sm2PrivateKey``, what Huzhou will sign with) is checked by ``openssl
pkeyutl -verify``; signatures of ``openssl pkeyutl -sign`` are checked by the
verifier's key path (``key_from_jwk`` + ``VerifyingKey.verify``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.openssl import DEFAULT_ID, OpenSslSm2Key, openssl_sm2_verify
from trust import Alg, Sm2PrivateKey, Sm2PublicKey, b64url_encode, key_from_jwk

_SIGNING_INPUT = (b"eyJhbGciOiJTTTJTTTMiLCJ0eXAiOiJlY2VydCtqd3QiLCJraWQiOiIzMzA1MDAtbGljIn0"
                  b".eyJpc3MiOiIzMzA1MDAiLCJsaWMiOnsibmFtZSI6Iua5luW3niJ9fQ")


@pytest.mark.parametrize("signer_id", [DEFAULT_ID, "ALICE123@YAHOO.COM", "湖州市"])
def test_our_signatures_verify_with_openssl(tmp_path: Path, signer_id: str) -> None:
    """Signed by Sm2PrivateKey under a signer ID: openssl verifies it under that ID only,
    and not over another message."""
    key = Sm2PrivateKey.generate(signer_id=signer_id.encode())
    spki = key.public_key().spki()
    for size in (0, 1, 55, 56, 64, len(_SIGNING_INPUT), 4096):
        message = (_SIGNING_INPUT * (1 + size // len(_SIGNING_INPUT)))[:size]
        assert openssl_sm2_verify(spki, message, key.sign(message), tmp_path, distid=signer_id)
    signature = key.sign(_SIGNING_INPUT)
    other = "1234567812345678" if signer_id != DEFAULT_ID else "8765432187654321"
    assert not openssl_sm2_verify(spki, _SIGNING_INPUT, signature, tmp_path, distid=other)
    assert not openssl_sm2_verify(spki, _SIGNING_INPUT + b".", signature, tmp_path,
                                  distid=signer_id)


@pytest.mark.parametrize("signer_id", [DEFAULT_ID, "ALICE123@YAHOO.COM"])
def test_openssl_signatures_verify_through_the_licence_key_path(tmp_path: Path,
                                                                signer_id: str) -> None:
    """A key from ``openssl genpkey`` and signatures from ``openssl pkeyutl -sign``:
    accepted by the JWK key path under the same ID, refused under another or tampered."""
    made = OpenSslSm2Key.generate(tmp_path)
    public = Sm2PublicKey.from_spki(made.public_der)
    jwk = {"kty": "EC", "crv": "SM2", "x": b64url_encode(public.x),
           "y": b64url_encode(public.y)}
    key = key_from_jwk(jwk, sm2_id=signer_id.encode())
    for _ in range(5):
        signature = made.sign(_SIGNING_INPUT, tmp_path, distid=signer_id)
        assert key.verify(Alg.SM2SM3, _SIGNING_INPUT, signature)
    assert not key.verify(Alg.SM2SM3, _SIGNING_INPUT[:-1], signature)
    assert not key_from_jwk(jwk, sm2_id=b"").verify(Alg.SM2SM3, _SIGNING_INPUT, signature)
