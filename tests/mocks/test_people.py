
"""Issuer and holder codes in mock licences pass the national check-digit rules."""

from __future__ import annotations

import random

import pytest
from stdnum.cn import ric, uscc

from mocks import BUSINESS_LICENCE, LICENCE_TYPES, Federation, MockRegion, make_resident_id


class TestIssuer:
    """The issuing body is a USCC of the region."""

    def test_issuer_code_is_valid_uscc(self, federation: Federation) -> None:
        """Every region's issuer code is a valid USCC with the region's division code."""
        codes = {r.region_code: r.issue().claims["lic"]["issuer_code"] for r in federation}
        assert [] == [c for c in codes.values() if not uscc.is_valid(c)]
        assert {k: k for k in codes} == {k: v[2:8] for k, v in codes.items()}

    @pytest.mark.parametrize("type_code", sorted(LICENCE_TYPES))
    def test_every_type_has_a_valid_licence(self, region: MockRegion, type_code: str) -> None:
        """Each catalogued type is issued with its name, a valid issuer and a number."""
        lic = region.issue(type_code=type_code).claims["lic"]
        assert (LICENCE_TYPES[type_code].name, True) == (
            lic["type_name"],
            uscc.is_valid(lic["issuer_code"]),
        )
        assert lic["number"]


class TestHolder:
    """Holders are people with valid 身份证号 or organisations with valid USCCs."""

    def test_person_holder(self, federation: Federation) -> None:
        """Person holders carry a valid ID number born in the issuing province."""
        for region in federation:
            lic = region.issue().claims["lic"]
            assert ("111", True) == (lic["holder_code_type"], ric.is_valid(lic["holder_code"]))
            assert region.region_code[:2] == lic["holder_code"][:2]

    def test_organisation_holder(self, region: MockRegion) -> None:
        """A business licence is held by a valid USCC, which is also its number."""
        lic = region.issue(type_code=BUSINESS_LICENCE).claims["lic"]
        assert ("001", True) == (lic["holder_code_type"], uscc.is_valid(lic["holder_code"]))
        assert lic["holder_code"] == lic["number"]

    def test_holder_kind_can_be_forced(self, region: MockRegion) -> None:
        """``holder="organisation"`` puts a USCC on a type normally held by a person."""
        lic = region.issue(holder="organisation").claims["lic"]
        assert "001" == lic["holder_code_type"]

    def test_id_numbers_fit_county_history(self) -> None:
        """Birth years are drawn inside each county code's lifetime (虎丘区 2000-, 毕节市 -2011)."""
        rng = random.Random(5)
        numbers = [make_resident_id(("320505", "522401"), rng) for _ in range(50)]
        assert [] == [n for n in numbers if not ric.is_valid(n)]

    def test_county_too_young_for_adults(self) -> None:
        """A county created after 2005 (七星关区, 2011) cannot be an adult's birthplace."""
        with pytest.raises(ValueError, match="no birth year"):
            make_resident_id(("520502",), random.Random(5))
