"""Hypothesis: the parser answers FORMAT_FAILURE on garbage and never raises or hangs."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mocks import Federation, b64url_encode
from trust import Indication, SubIndication, TrustList, Verifier

NOW = datetime(2026, 11, 26, 6, tzinfo=UTC)
FED = Federation.standard(seed=11, codes=["310000"])
SH = FED["310000"]
TL = TrustList.from_json(FED.trust_list(version=1, issued_at=datetime(2026, 11, 1, tzinfo=UTC),
                                         next_update=datetime(2026, 12, 31, tzinfo=UTC)))
VERIFIER = Verifier(TL)
GOOD = SH.issue(iat=int(NOW.timestamp()) - 60, with_status=False).token

b64_part = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                   max_size=80)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_arbitrary_bytes_are_a_format_failure(data: bytes) -> None:
    """Arbitrary bytes give a TOTAL_FAILED verdict (almost always FORMAT_FAILURE), no exception."""
    verdict = VERIFIER.check(data, at=NOW)
    assert Indication.TOTAL_FAILED == verdict.indication


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_passes(text: str) -> None:
    """Arbitrary text never passes and never raises."""
    verdict = VERIFIER.check(text, at=NOW)
    assert Indication.TOTAL_PASSED != verdict.indication


@settings(max_examples=300, deadline=None)
@given(b64_part, b64_part, b64_part)
def test_three_base64url_parts(head: str, body: str, sig: str) -> None:
    """Random base64url parts fail on structure, header or later, never pass."""
    verdict = VERIFIER.check(f"{head}.{body}.{sig}", at=NOW)
    assert Indication.TOTAL_FAILED == verdict.indication


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=0, max_value=len(GOOD) - 1),
       st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/"))
def test_mutated_valid_token_never_passes(position: int, char: str) -> None:
    """Changing one character of a valid licence makes it fail (or leaves it unchanged)."""
    mutated = GOOD[:position] + char + GOOD[position + 1:]
    verdict = VERIFIER.check(mutated, at=NOW)
    if mutated == GOOD:
        assert Indication.TOTAL_PASSED == verdict.indication
    else:
        assert Indication.TOTAL_FAILED == verdict.indication


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["iss", "jti", "iat", "nbf", "exp", "lic", "status"]),
                       json_values, max_size=7))
def test_signed_garbage_claims_fail_on_format(claims: dict[str, object]) -> None:
    """Validly signed but schema-breaking claims fail with FORMAT_FAILURE at the claims step."""
    token = SH.sign({"alg": "ES256", "typ": "ecert+jwt", "kid": SH.licence_kid},
                    orjson.dumps(claims))
    verdict = VERIFIER.check(token, at=NOW)
    assert Indication.TOTAL_FAILED == verdict.indication
    assert verdict.sub_indication in {SubIndication.FORMAT_FAILURE,
                                      SubIndication.SIGNING_KEY_NOT_VALID}


def test_base64url_of_padding_is_refused() -> None:
    """A padded part is not base64url in JWS and fails on structure."""
    head = b64url_encode(b'{"alg":"ES256"}') + "="
    verdict = VERIFIER.check(f"{head}.e30.AAAA", at=NOW)
    assert SubIndication.FORMAT_FAILURE == verdict.sub_indication
