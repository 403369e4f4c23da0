"""The case book: licence requirements of matters and 一件事 bundles, checked at load."""

# STYLE.md: tests assert `expected == actual`, expected first

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from registry import (
    Alternative,
    CaseBook,
    CaseDataError,
    CatalogueKind,
    holder_regions,
    load_bundle,
)
from tests.registry.factories import sample_files

BOOK = Path(__file__).resolve().parents[2] / "config" / "cases" / "huzhou-cases.json"
BUSINESS_LICENCE = "11100000MB0143028R001"


def _known() -> tuple[set[str], set[str]]:
    registry = load_bundle(sample_files())
    types = {c.code for cat in registry.catalogues if cat.kind is CatalogueKind.LICENCE_TYPE
             for c in cat.concepts}
    matters = {c.code for cat in registry.catalogues
               if cat.kind is CatalogueKind.MATTER and cat.region == "330500"
               for c in cat.concepts}
    return types, matters


def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(BOOK.read_bytes())
    return doc


def _load(doc: dict[str, Any]) -> CaseBook:
    types, matters = _known()
    return CaseBook.from_json(doc, licence_types=types, matters=matters)


class TestShippedBook:
    """The case book in config/cases/ loads against the sample registry."""

    def test_it_loads_with_the_bundles_the_report_names(self) -> None:
        """The four 一件事 done in H1 2024, 水电气网联合报装, and one 跨省 case per partner."""
        book = _load(_doc())
        names = {b.name for b in book.bundles.values()}
        assert {"企业信息变更", "开办餐饮店", "企业注销登记", "企业上市合法合规信息核查",
                "水电气网联合报装"} <= names
        assert {("652929",), ("220600",), ("520500",)} == {
            b.partners for b in book.bundles.values() if b.partners}

    def test_every_requirement_says_where_it_comes_from(self) -> None:
        """Each requirement has a source; those not from a public source are illustrative."""
        book = _load(_doc())
        for matter in book.matters.values():
            for req in matter.requirements:
                assert req.source, (matter.code, req.id)
                assert req.illustrative or "illustrative" not in req.source

    def test_listing_check_has_five_requirements(self) -> None:
        """企业上市合法合规信息核查 is the bench's five-requirement 一件事."""
        book = _load(_doc())
        assert 5 == len(book.requirements_of(book.bundles["listing-compliance"].matters))

    def test_a_requirement_shared_by_matters_counts_once(self) -> None:
        """开办餐饮店's premises proof serves its three matters as one requirement."""
        book = _load(_doc())
        reqs = book.requirements_of(book.bundles["open-restaurant"].matters)
        assert 3 == len(reqs)
        premises = next(served for req, served in reqs if req.id == "premises")
        assert ("许可-00906-001", "许可-00910-001", "许可-00912-001") == premises


class TestRefusals:
    """Unknown names are refused by name, every problem at once."""

    def test_unknown_licence_type_and_matter_are_named(self) -> None:
        """A made-up type code and a matter the catalogue lacks are both reported."""
        doc = copy.deepcopy(_doc())
        doc["matters"][0]["requirements"][0]["any_of"][0]["type"] = "11100000000000000X999"
        doc["matters"][1]["code"] = "许可-99999-001"
        with pytest.raises(CaseDataError) as caught:
            _load(doc)
        problems = " | ".join(caught.value.problems)
        assert "unknown licence type 11100000000000000X999" in problems
        assert "unknown matter 许可-99999-001" in problems

    def test_unknown_role_and_bundle_matter_are_named(self) -> None:
        """A holder role not declared, and a bundle naming a matter without requirements."""
        doc = copy.deepcopy(_doc())
        doc["matters"][0]["requirements"][0]["any_of"][0]["holder"] = "mayor"
        doc["bundles"][0]["matters"].append("许可-00344-001-01")
        with pytest.raises(CaseDataError) as caught:
            _load(doc)
        problems = " | ".join(caught.value.problems)
        assert "unknown role mayor" in problems
        assert "matter 许可-00344-001-01 has no requirements" in problems

    def test_not_json_is_refused(self) -> None:
        """Bytes that are not JSON are a CaseDataError, not a crash."""
        with pytest.raises(CaseDataError):
            CaseBook.from_json(b"{", licence_types=(), matters=())


class TestHolderRegions:
    """Where a holder's code says its licences may be."""

    def test_uscc_names_its_registration_division_then_prefecture(self) -> None:
        """Characters 3-8 of a USCC: the county, then its prefecture."""
        assert ("520502", "520500") == holder_regions("91520502MA6DL1XX0Q", "001")

    def test_id_number_names_its_county(self) -> None:
        """The first six digits of a 身份证号; a county-level partner is itself."""
        assert ("652929",) == holder_regions("652929199001011234", "111")[:1]

    def test_other_codes_name_nothing(self) -> None:
        """Another code type, or a short code, gives no region."""
        assert () == holder_regions("123", "111")
        assert () == holder_regions("91520502MA6DL1XX0Q", "099")

    def test_alternatives_compare_by_value(self) -> None:
        """Two requirements asking the same alternatives have the same key."""
        assert Alternative(BUSINESS_LICENCE, "enterprise") == Alternative(
            BUSINESS_LICENCE, "enterprise")
