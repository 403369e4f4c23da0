
"""Licence identifiers (证照标识): correct check characters and the known wrong variant."""

from __future__ import annotations

import csv
import random

import pytest
from stdnum.iso7064 import mod_37_36

from mocks import (
    CONSTRUCTION_WORKER,
    IDENTIFIER_ROOT,
    MockRegion,
    lenient_check_char,
    licence_identifier,
)
from tests.conftest import REPO

ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
REFERENCE = REPO / "docs" / "reference" / "licence_identifiers.csv"
# Published by a provincial share service (DOMAIN.md section 2; licence_identifiers.csv).
PUBLISHED = (
    "1.2.156.3005.2.11100000000013661B006.113700000045046442.209FA4E88F9E4C878F3E9BED2CE7EA49.001.M"
)


def _body_and_check(identifier: str) -> tuple[str, str]:
    parts = identifier.removeprefix(IDENTIFIER_ROOT + ".").split(".")
    assert 5 == len(parts)
    return "".join(parts[:4]), parts[4]


class TestLenientCheckChar:
    """The reconstructed wrong algorithm matches what real issuers emit."""

    def test_reproduces_published_example(self) -> None:
        """The variant gives M for the published 13661B006 identifier."""
        body, check = _body_and_check(PUBLISHED)
        assert check == lenient_check_char(body)

    def test_published_example_is_wrong_under_iso_7064(self) -> None:
        """The published check character is not the ISO 7064 MOD 37,36 one."""
        assert not mod_37_36.is_valid("".join(_body_and_check(PUBLISHED)))

    def test_reference_row_matches(self) -> None:
        """The 13661B006 row of the reference data is reproduced by the variant."""
        with REFERENCE.open(encoding="utf-8", newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if r["type_code"] == "11100000000013661B006"]
        assert 1 == len(rows)
        body, check = _body_and_check(rows[0]["identifier"])
        assert rows[0]["check_char"] == check
        assert check == lenient_check_char(body)

    def test_rejects_empty_body(self) -> None:
        """An empty body has no check character."""
        with pytest.raises(ValueError, match="empty"):
            lenient_check_char("")


class TestIdentifier:
    """Identifiers built by the mocks have the GB/T 36904 shape and the chosen check."""

    def test_reference_identifiers_that_verify(self) -> None:
        """Every reference identifier marked as verifying is rebuilt exactly."""
        with REFERENCE.open(encoding="utf-8", newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if r["check_ok"] == "True"]
        rebuilt = [
            licence_identifier(r["type_code"], r["issuer_code"], r["serial"], r["version"])
            for r in rows
        ]
        assert [r["identifier"] for r in rows] == rebuilt

    def test_issued_identifier_checks_under_stdnum(self, region: MockRegion) -> None:
        """A default licence's jti verifies under ISO 7064 MOD 37,36."""
        licence = region.issue()
        body, check = _body_and_check(licence.identifier)
        assert mod_37_36.calc_check_digit(body) == check
        assert licence.identifier == licence.claims["jti"]

    def test_identifier_parts(self, region: MockRegion) -> None:
        """The jti names the licence type, the issuer's USCC and version 001."""
        licence = region.issue(type_code="11100000000019713D071")
        parts = licence.identifier.removeprefix(IDENTIFIER_ROOT + ".").split(".")
        lic = licence.claims["lic"]
        assert [lic["type_code"], lic["issuer_code"], "001"] == [parts[0], parts[1], parts[3]]

    def test_lenient_variant_licence(self, region: MockRegion) -> None:
        """``check_char="lenient"`` gives a jti the variant accepts and ISO 7064 rejects."""
        body, check = _body_and_check(region.issue(check_char="lenient").identifier)
        assert (lenient_check_char(body), False) == (check, mod_37_36.is_valid(body + check))

    def test_wrong_check_licence(self, region: MockRegion) -> None:
        """``check_char="wrong"`` gives a jti neither algorithm accepts."""
        body, check = _body_and_check(region.issue(check_char="wrong").identifier)
        assert check not in {lenient_check_char(body), mod_37_36.calc_check_digit(body)}

    def test_lenient_with_agreeing_serial_is_refused(self) -> None:
        """A serial where both algorithms agree cannot make a lenient-only identifier."""
        region = MockRegion("310000", "上海市", ("yrd",), seed=1)
        issuer = region.issue().claims["lic"]["issuer_code"]
        rng = random.Random(1)
        serials = ("".join(rng.choices(ALPHANUMERIC, k=8)) for _ in range(100_000))
        serial = next(
            s
            for s in serials
            if lenient_check_char(f"{CONSTRUCTION_WORKER}{issuer}{s}001")
            == mod_37_36.calc_check_digit(f"{CONSTRUCTION_WORKER}{issuer}{s}001")
        )
        with pytest.raises(ValueError, match="agree"):
            region.issue(serial=serial, check_char="lenient")
