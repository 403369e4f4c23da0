"""JSON in a JWS: read as orjson reads it, refused when an object repeats a member name."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.trust.strategies import json_texts
from trust import JoseError, parse_compact, parse_json


class _RepeatedError(Exception):
    """The reference reader met a repeated member name."""


def _reference_repeats(data: bytes) -> bool:
    """Whether some object repeats a name, by the plainest reading: every member seen."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({name for name, _ in pairs}) != len(pairs):
            raise _RepeatedError
        return dict(pairs)

    try:
        json.loads(data, object_pairs_hook=hook)
    except _RepeatedError:
        return True
    return False


class TestRepeatedNames:
    """A repeated member name is refused wherever it is and however it is written."""

    @pytest.mark.parametrize("text", [
        b'{"iss":"520500","iss":"310000"}',
        b'{"lic":{"holder_code":"1","number":"2","holder_code":"3"}}',
        b'[1,{"a":[{"x":{"deep":1,"deep":2}}]}]',
        b'{"a":1,"\\u0061":2}',  # the same name once decoded
        b'{"\xe8\xaf\x81":1,"\\u8bc1":2}',  # 证, raw UTF-8 and escaped
        b'{"a" : 1 , "a"\n:\t2}',  # whitespace before the colon
        b'{\n  "a": ":",\n  "a": "\\":"\n}',  # pretty-printed, colons inside strings
        b'{"a":1,"a":1}',  # even with the same value
    ])
    def test_refused(self, text: bytes) -> None:
        """Top level, nested in objects and lists, escaped, spaced: each is refused."""
        with pytest.raises(JoseError, match="repeats a member name"):
            parse_json(text)

    @pytest.mark.parametrize("text", [
        b'{"a":":","b":"\\":","c":":\\"","d":{"e":[":",{"f":"\\"\\":"}]}}',
        b'{"a\\"":1,"a":2,"\\\\":3,"\\\\\\"":4}',
        b'{"uri":"https://gw.example/status/x","t":"12:00"}',
        b'{ "a" : 1 , "b" : { "a" : 2 } }',  # the same name in two objects is no repeat
        b'[{"a":1},{"a":1}]',
        b'{}', b'[]', b'"a:b"', b"1",
    ])
    def test_unique_names_read_as_orjson_reads_them(self, text: bytes) -> None:
        """Texts that only look like repeats (separators inside strings) are read unchanged."""
        assert orjson.loads(text) == parse_json(text)

    @settings(max_examples=600, deadline=None)
    @given(json_texts())
    def test_refused_exactly_when_a_name_repeats(self, data: bytes) -> None:
        """Any layout and spelling: refused iff some object repeats a name, else as orjson."""
        if _reference_repeats(data):
            with pytest.raises(JoseError, match="repeats a member name"):
                parse_json(data)
        else:
            assert orjson.loads(data) == parse_json(data)

    @settings(max_examples=400, deadline=None)
    @given(st.recursive(
        st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1)
        | st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="{"),
                  max_size=8),  # UTF-8 text, and no '{"' inside a string
        lambda inner: st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "证", "\"", ":", "a:"]), inner,
                          min_size=1, max_size=4),
        max_leaves=12))
    def test_orjsons_own_text_read_and_each_repeat_refused(self, value: Any) -> None:
        """Text exactly as orjson writes it (the usual token) is read unchanged; the same
        text with one object's first member written twice is refused."""
        data = orjson.dumps(value)
        assert orjson.loads(data) == parse_json(data)
        for at in range(len(data)):
            if data[at:at + 2] != b'{"':
                continue
            name_end = data.index(b'":', at + 2)
            while data[name_end - 1:name_end] == b"\\":  # an escaped quote inside the name
                name_end = data.index(b'":', name_end + 1)
            member = data[at + 1:name_end + 2] + b"0,"
            repeated = data[:at + 1] + member + data[at + 1:]
            with pytest.raises(JoseError, match="repeats a member name"):
                parse_json(repeated)

    def test_nesting_orjson_accepts_beyond_the_exact_readers_reach(self) -> None:
        """Nesting the exact reader cannot follow is refused with JoseError, not a crash."""
        deep = b"[" * 1000 + b'{"a":":"}' + b"]" * 1000
        with pytest.raises(JoseError, match="nested too deeply"):
            parse_json(deep)
        assert orjson.loads(deep) is not None


class TestCompact:
    """parse_compact's structure rules."""

    def test_empty_signature_part_is_the_unsecured_form(self) -> None:
        """header.payload. splits, with an empty signature (RFC 7519 6.1)."""
        jws = parse_compact(b"eyJhbGciOiJub25lIn0.e30.")
        assert ({"alg": "none"}, b"{}", b"") == (jws.header, jws.payload, jws.signature)
        assert b"eyJhbGciOiJub25lIn0.e30" == jws.signing_input

    @pytest.mark.parametrize("token", [b".e30.AA", b".e30.", b"e30.e30", b"e30..e30.AA"])
    def test_empty_header_or_wrong_part_count(self, token: bytes) -> None:
        """No header, or not three parts, is malformed."""
        with pytest.raises(JoseError):
            parse_compact(token)


class TestOnlyItsOwnError:
    """The readers raise only JoseError, whatever bytes they are given."""

    @settings(max_examples=400, deadline=None)
    @given(st.binary(max_size=300) | json_texts())
    def test_parse_json(self, data: bytes) -> None:
        """parse_json returns a value or raises JoseError."""
        with contextlib.suppress(JoseError):
            parse_json(data)

    @settings(max_examples=400, deadline=None)
    @given(st.binary(max_size=300), json_texts(), st.binary(max_size=40))
    def test_parse_compact(self, noise: bytes, header: bytes, signature: bytes) -> None:
        """parse_compact returns a split JWS or raises JoseError, on noise and on JSON parts."""
        import base64

        def part(data: bytes) -> bytes:
            return base64.urlsafe_b64encode(data).rstrip(b"=")

        for token in (noise, part(header) + b"." + part(noise) + b"." + part(signature)):
            with contextlib.suppress(JoseError):
                parse_compact(token)
