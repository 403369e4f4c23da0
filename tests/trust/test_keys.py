"""A verifying key holds only algorithms that fit its type (the verifier relies on it)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from trust import Alg, JoseError, VerifyingKey, key_from_public

_EC = ec.generate_private_key(ec.SECP256R1())
_ED = ed25519.Ed25519PrivateKey.generate()
_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize(("private", "wrong"), [
    (_EC, Alg.EDDSA), (_EC, Alg.RS256), (_ED, Alg.ES256), (_ED, Alg.PS256),
    (_RSA, Alg.ES256), (_RSA, Alg.EDDSA),
], ids=lambda v: getattr(v, "value", type(v).__name__))
def test_an_algorithm_of_another_key_type_is_refused(private: object, wrong: Alg) -> None:
    """A key built by hand with another type's algorithm is refused when it is made."""
    public = private.public_key()  # type: ignore[attr-defined]
    with pytest.raises(JoseError, match="do not fit"):
        VerifyingKey(public, frozenset({wrong}))


def test_keys_from_public_verify_their_own_algorithms() -> None:
    """Each key type verifies what its own algorithm signed, and nothing under another."""
    message = b"header.payload"
    der = _EC.sign(message, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    es256 = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    ec_key = key_from_public(_EC.public_key())
    assert ec_key.verify(Alg.ES256, message, es256)
    assert not ec_key.verify(Alg.EDDSA, message, es256)
    ed_key = key_from_public(_ED.public_key())
    assert ed_key.verify(Alg.EDDSA, message, _ED.sign(message))
    assert not ed_key.verify(Alg.ES256, message, es256)
    assert not ed_key.verify(Alg.EDDSA, message + b"!", _ED.sign(message))
