"""A mock region answers Huzhou's signed queries for its licences, and only those."""

# STYLE.md: tests assert `expected == actual`, expected first

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mocks import QUERY_PATH, MockRegion, public_jwk, sign_compact

ID_CARD = "11100000000013127D001"


class Huzhou:
    """Huzhou as the mocks see it: a P-256 request key published in a JWK Set."""

    def __init__(self, kid: str = "330500-req-test") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid = kid

    def jwks(self) -> dict[str, Any]:
        """The JWK Set Huzhou publishes."""
        return {"keys": [{**public_jwk(self.key.public_key()), "kid": self.kid}]}

    def token(self, body: bytes, **claims: Any) -> str:
        """A request token for ``body`` to Shanghai (claims may be overridden)."""
        now = int(time.time())
        payload = {"iss": "330500", "aud": "310000", "iat": now, "exp": now + 120,
                   "jti": uuid.uuid4().hex, "htm": "POST", "htu": QUERY_PATH,
                   "body_sha256": hashlib.sha256(body).hexdigest(), **claims}
        return sign_compact({"typ": "ecert-request+jwt", "alg": "ES256", "kid": self.kid},
                            payload, self.key, "ES256")


def _body(holder: str, type_code: str = ID_CARD) -> bytes:
    return orjson.dumps({"holder_code": holder, "holder_code_type": "111",
                         "type_code": type_code, "use_cause": "办理失业登记",
                         "matter": {"region": "330500", "code": "公共服务-00902-001"}})


@pytest.fixture
def huzhou(region: MockRegion) -> Huzhou:
    """Huzhou, whose request key the region accepts."""
    hz = Huzhou()
    region.accept_huzhou_keys(hz.jwks())
    return hz


class TestAnswers:
    def test_found_by_holder(self, region: MockRegion, huzhou: Huzhou) -> None:
        """The holder's valid licence of that type is handed over (cn 0)."""
        issued = region.issue(type_code=ID_CARD, lic_override={"holder_code": "310101199001011237"})
        body = _body("310101199001011237")
        status, answer = region.answer_query(token=huzhou.token(body), path=QUERY_PATH,
                                             body=body)
        assert (200, 0, [issued.token]) == (status, answer["cn_status"], answer["licences"])

    def test_revoked_is_21_and_unknown_is_10(self, region: MockRegion, huzhou: Huzhou) -> None:
        """A revoked licence is not handed over (21); nobody's licence is 10."""
        issued = region.issue(type_code=ID_CARD, lic_override={"holder_code": "310101199001011237"})
        assert issued.status_idx is not None
        region.revoke(issued.status_idx)
        for holder, cn in (("310101199001011237", 21), ("310101199001011245", 10)):
            body = _body(holder)
            _, answer = region.answer_query(token=huzhou.token(body), path=QUERY_PATH, body=body)
            assert (cn, []) == (answer["cn_status"], answer["licences"])


class TestAuthentication:
    @pytest.mark.parametrize("claims", [
        {"aud": "520500"}, {"iss": "310000"}, {"htu": "/elsewhere"},
        {"body_sha256": "0" * 64}, {"iat": 1, "exp": 100},
    ], ids=["aud", "iss", "htu", "body", "expired"])
    def test_a_token_not_for_this_request_is_401(
            self, region: MockRegion, huzhou: Huzhou, claims: dict[str, Any]) -> None:
        """Each bound claim is checked: cn 11."""
        body = _body("310101199001011237")
        status, answer = region.answer_query(token=huzhou.token(body, **claims),
                                             path=QUERY_PATH, body=body)
        assert (401, 11) == (status, answer["cn_status"])

    def test_an_unknown_key_and_a_replay_are_401(self, region: MockRegion,
                                                 huzhou: Huzhou) -> None:
        """A key Huzhou does not publish, and a token used twice, are refused."""
        body = _body("310101199001011237")
        stranger = Huzhou()  # same kid, another key: the signature fails
        status, _ = region.answer_query(token=stranger.token(body), path=QUERY_PATH, body=body)
        assert 401 == status
        token = huzhou.token(body)
        first, _ = region.answer_query(token=token, path=QUERY_PATH, body=body)
        again, _ = region.answer_query(token=token, path=QUERY_PATH, body=body)
        assert (200, 401) == (first, again)
