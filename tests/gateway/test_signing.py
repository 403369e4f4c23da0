"""The gateway's signing keys: ES256 for receipts and licences, Ed25519 for the rest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from gateway.infra.signing import SigningKey, load_or_create_key, published_keys
from trust import b64url_encode


def _rfc7638(jwk: dict[str, str]) -> str:
    """The JWK thumbprint computed here from RFC 7638 3.2 (json, not the gateway's orjson)."""
    required = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("crv", "kty", "x")
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"),
                           sort_keys=True).encode()
    return b64url_encode(hashlib.sha256(canonical).digest())


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_signatures_verify_with_pyjwt_and_the_published_jwk(tmp_path: Path, alg: str) -> None:
    """What a key signs verifies with PyJWT against its JWK; the kid is its thumbprint."""
    key = load_or_create_key(tmp_path, "receipt", kid_prefix="330500-receipt",
                             alg=alg)  # type: ignore[arg-type]
    jwk = key.public_jwk
    assert (alg, "sig", ["verify"], "receipt") == (jwk["alg"], jwk["use"], jwk["key_ops"],
                                                   jwk["ecert_use"])
    assert key.kid == f"330500-receipt-{_rfc7638(jwk)[:16]}"
    claims = {"iss": "330500", "n": 1, "text": "湖州"}
    for token in (key.sign({"typ": "ecert-receipt+jwt"}, claims),
                  key.signer({"typ": "ecert-receipt+jwt"})(claims)):
        header = jwt.get_unverified_header(token)
        assert {"typ": "ecert-receipt+jwt", "alg": alg, "kid": key.kid} == header
        assert claims == jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=[alg])
    other = jwt.PyJWK(load_or_create_key(tmp_path, "other", kid_prefix="x",
                                         alg=alg).public_jwk)  # type: ignore[arg-type]
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(key.sign({}, claims), other.key, algorithms=[alg])


def test_keys_are_kept_and_named_by_algorithm(tmp_path: Path) -> None:
    """The same file gives the same key again; each algorithm has its own file, 0600."""
    first = load_or_create_key(tmp_path, "licence-signing", kid_prefix="330500-lic", alg="ES256")
    again = load_or_create_key(tmp_path, "licence-signing", kid_prefix="330500-lic", alg="ES256")
    assert first.public_jwk == again.public_jwk
    path = tmp_path / "keys" / "licence-signing.es256.key"
    assert 0o600 == path.stat().st_mode & 0o777
    assert not (tmp_path / "keys" / "licence-signing.key").exists()


@pytest.mark.parametrize("secret", [b"\x00" * 32, b"\xff" * 32], ids=["zero", "above-order"])
def test_any_secret_gives_a_valid_p256_key(tmp_path: Path, secret: bytes) -> None:
    """Secrets whose integer is 0 or not below the curve order still give a usable key."""
    folder = tmp_path / "keys"
    folder.mkdir(mode=0o700)
    (folder / "edge.es256.key").write_bytes(secret)
    key = load_or_create_key(tmp_path, "edge", kid_prefix="e", alg="ES256")
    token = key.sign({}, {"ok": True})
    assert {"ok": True} == jwt.decode(token, jwt.PyJWK(key.public_jwk).key, algorithms=["ES256"])


def test_an_older_key_of_the_other_algorithm_stays_published(tmp_path: Path) -> None:
    """A folder with an Ed25519 licence key (an older gateway) signs ES256 from now on and
    keeps publishing the old key, so licences it signed still verify."""
    old = load_or_create_key(tmp_path, "licence-signing", kid_prefix="330500-lic")
    old_token = old.sign({"typ": "ecert+jwt"}, {"jti": "earlier"})
    keys = published_keys(tmp_path, "licence-signing", kid_prefix="330500-lic", alg="ES256")
    assert ["ES256", "EdDSA"] == [k.alg for k in keys]
    assert old.public_jwk == keys[1].public_jwk
    published = {k.kid: jwt.PyJWK(k.public_jwk) for k in keys}
    kid = jwt.get_unverified_header(old_token)["kid"]
    assert {"jti": "earlier"} == jwt.decode(old_token, published[kid].key, algorithms=["EdDSA"])
    fresh = published_keys(tmp_path / "new", "licence-signing", kid_prefix="330500-lic",
                           alg="ES256")
    assert ["ES256"] == [k.alg for k in fresh]


def test_a_key_must_fit_its_algorithm() -> None:
    """An Ed25519 key cannot be declared ES256, nor a P-384 key."""
    with pytest.raises(ValueError, match="cannot sign ES256"):
        SigningKey("k", ed25519.Ed25519PrivateKey.generate(), "receipt", "ES256")
    with pytest.raises(ValueError, match="cannot sign ES256"):
        SigningKey("k", ec.generate_private_key(ec.SECP384R1()), "receipt", "ES256")
    with pytest.raises(ValueError, match="cannot sign EdDSA"):
        SigningKey("k", ec.generate_private_key(ec.SECP256R1()), "receipt", "EdDSA")
