"""FHIR JSON: the ConceptMap spec's worked examples, R4 reading and round trips."""

# STYLE.md: tests assert `expected == actual`, expected first

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from registry import (
    NATIONAL,
    Catalogue,
    CatalogueKind,
    CodeScheme,
    Concept,
    LoadError,
    MatterCode,
    RegionCode,
    Registry,
    Relationship,
    UnmappedMode,
    catalogue_from_fhir,
    catalogue_to_fhir,
    conceptmap_from_fhir,
    conceptmap_from_fhir_r4,
    conceptmap_to_fhir,
)
from tests.registry.factories import sample_files

FHIR_USE = "http://hl7.org/fhir/address-use"
V3_USE = "http://terminology.hl7.org/CodeSystem/v3-AddressUse"
AT = date(2025, 1, 1)


def _codes(url: str, region: str, pattern: str, codes: dict[str, str]) -> Catalogue:
    return Catalogue(url=url, version="5.0.0", region=RegionCode(region),
                     kind=CatalogueKind.MATTER, scheme=CodeScheme(name=region, pattern=pattern),
                     concepts=tuple(Concept(code=c, display=d) for c, d in codes.items()))


FHIR_CODES = _codes(FHIR_USE, "fhir", r"(?P<code>[a-z]+)",
                    {"home": "Home", "work": "Work", "temp": "Temporary", "old": "Old",
                     "billing": "Billing"})
V3_CODES = _codes(V3_USE, "v3", r"(?P<code>[A-Z]+)",
                  {"H": "home address", "WP": "work place", "TMP": "temporary address",
                   "BAD": "bad address", "OLD": "no longer in use", "PST": "postal address"})

# FHIR R5 example ConceptMap/101 (address use FHIR -> v3), in the R5 JSON form.
EXAMPLE_101: dict[str, Any] = {
    "resourceType": "ConceptMap", "id": "101", "url": "http://hl7.org/fhir/ConceptMap/101",
    "version": "5.0.0", "name": "FHIR-v3-Address-Use", "status": "draft",
    "sourceScopeUri": "http://hl7.org/fhir/ValueSet/address-use",
    "targetScopeUri": "http://terminology.hl7.org/ValueSet/v3-AddressUse",
    "group": [{
        "source": FHIR_USE, "target": V3_USE,
        "element": [
            {"code": "home", "display": "home",
             "target": [{"code": "H", "display": "home", "relationship": "equivalent"}]},
            {"code": "work", "target": [{"code": "WP", "relationship": "equivalent"}]},
            {"code": "temp", "target": [{"code": "TMP", "relationship": "equivalent"}]},
            {"code": "old", "target": [{
                "code": "BAD", "relationship": "not-related-to",
                "comment": "In the HL7 v3 AD, old is handled by the usablePeriod element"}]},
        ],
        "unmapped": {"mode": "other-map", "otherMap": "http://example.org/fhir/ConceptMap/map2"},
    }],
}
# The map the example's other-map points at; the spec does not print it, so this one is ours.
MAP2: dict[str, Any] = {
    "resourceType": "ConceptMap", "url": "http://example.org/fhir/ConceptMap/map2",
    "version": "1", "status": "draft", "sourceScopeUri": FHIR_USE, "targetScopeUri": V3_USE,
    "group": [{"source": FHIR_USE, "target": V3_USE, "element": [
        {"code": "billing", "target": [{"code": "PST", "relationship": "related-to"}]}]}],
}
# FHIR's cm-address-use-v3 as published in R4: equivalence words, 'narrower' for old.
ADDRESS_USE_R4: dict[str, Any] = {
    "resourceType": "ConceptMap", "url": "http://hl7.org/fhir/ConceptMap/cm-address-use-v3",
    "version": "4.0.1", "status": "draft",
    "sourceCanonical": "http://hl7.org/fhir/ValueSet/address-use",
    "targetCanonical": "http://terminology.hl7.org/ValueSet/v3-AddressUse",
    "group": [{"source": FHIR_USE, "target": V3_USE, "element": [
        {"code": "home", "target": [{"code": "H", "equivalence": "equal"}]},
        {"code": "work", "target": [{"code": "WP", "equivalence": "equal"}]},
        {"code": "temp", "target": [{"code": "TMP", "equivalence": "equal"}]},
        {"code": "old", "target": [{"code": "OLD", "equivalence": "narrower",
                                    "comment": "Bad or Old"}]},
    ]}],
}


@pytest.fixture
def example_registry() -> Registry:
    """Registry holding the address-use code systems and the spec's example map."""
    maps = [conceptmap_from_fhir(EXAMPLE_101), conceptmap_from_fhir(MAP2)]
    return Registry([FHIR_CODES, V3_CODES], maps, include_draft=True)


def _translate(registry: Registry, code: str) -> list[tuple[str, Relationship]]:
    answer = registry.translate(RegionCode("fhir"), MatterCode(code), RegionCode("v3"), at=AT)
    return [(m.code, m.relationship) for m in answer.matches]


class TestSpecExample101:
    """FHIR R5 ConceptMap/101 expressed in this model answers like $translate."""

    def test_home_is_equivalent_to_h(self, example_registry: Registry) -> None:
        """home translates to H, equivalent."""
        assert [("H", Relationship.EQUIVALENT)] == _translate(example_registry, "home")

    def test_old_is_not_related_to_bad_so_result_is_false(self,
                                                          example_registry: Registry) -> None:
        """A not-related-to match is returned but makes result false."""
        answer = example_registry.translate(RegionCode("fhir"), MatterCode("old"),
                                               RegionCode("v3"), at=AT)
        expected = (False, [("BAD", Relationship.NOT_RELATED)])
        assert expected == (answer.result, [(m.code, m.relationship) for m in answer.matches])

    def test_unmapped_code_goes_to_the_other_map(self, example_registry: Registry) -> None:
        """billing has no element in 101, so its other-map map2 answers; both maps are listed."""
        answer = example_registry.translate(RegionCode("fhir"), MatterCode("billing"),
                                            RegionCode("v3"), at=AT)
        expected = ("http://hl7.org/fhir/ConceptMap/101|5.0.0",
                    "http://example.org/fhir/ConceptMap/map2|1")
        assert expected in [m.maps for m in answer.matches if m.code == "PST"]

    def test_draft_maps_are_unused_by_default(self) -> None:
        """Without include_draft the draft example map is not used."""
        maps = [conceptmap_from_fhir(EXAMPLE_101), conceptmap_from_fhir(MAP2)]
        registry = Registry([FHIR_CODES, V3_CODES], maps)
        assert [] == _translate(registry, "home")

    def test_unmapped_mode_is_read(self) -> None:
        """The group's unmapped mode and target are read from R5 JSON."""
        group = conceptmap_from_fhir(EXAMPLE_101).groups[0]
        assert group.unmapped is not None
        expected = (UnmappedMode.OTHER_MAP, "http://example.org/fhir/ConceptMap/map2")
        assert expected == (group.unmapped.mode, group.unmapped.other_map)


class TestR4Reading:
    """R4 ConceptMaps are read with equivalence converted to R5 relationships."""

    def test_r4_narrower_reads_as_source_is_broader(self) -> None:
        """cm-address-use-v3: R4 'narrower' (OLD is narrower) means old is broader than OLD."""
        cmap = conceptmap_from_fhir_r4(ADDRESS_USE_R4)
        old = next(e for e in cmap.groups[0].elements if e.code == "old")
        assert Relationship.BROADER == old.targets[0].relationship

    def test_r4_wider_reads_as_source_is_narrower(self) -> None:
        """An R4 'wider' target reads as R5 source-is-narrower-than-target."""
        doc = json.loads(json.dumps(ADDRESS_USE_R4))
        doc["group"][0]["element"][0]["target"][0]["equivalence"] = "wider"
        cmap = conceptmap_from_fhir_r4(doc)
        assert Relationship.NARROWER == cmap.groups[0].elements[0].targets[0].relationship

    def test_r4_word_in_an_r5_map_is_refused_with_a_hint(self) -> None:
        """An R5 map using 'wider' as a relationship is a load problem that suggests R4."""
        doc = json.loads(json.dumps(EXAMPLE_101))
        doc["group"][0]["element"][0]["target"][0]["relationship"] = "wider"
        with pytest.raises(LoadError, match="R4"):
            conceptmap_from_fhir(doc)

    def test_r4_unmatched_without_code_is_no_map(self) -> None:
        """An R4 'unmatched' target with no code becomes an element with noMap."""
        doc = json.loads(json.dumps(ADDRESS_USE_R4))
        doc["group"][0]["element"][0]["target"] = [{"equivalence": "unmatched"}]
        element = conceptmap_from_fhir_r4(doc).groups[0].elements[0]
        assert (True, ()) == (element.no_map, element.targets)


class TestRoundTrip:
    """Writing then reading FHIR JSON gives back the same objects."""

    @pytest.mark.parametrize("name", sorted(n for n in sample_files()
                                           if n.endswith(".conceptmap.json")
                                           and ".r4." not in n))
    def test_sample_maps(self, name: str) -> None:
        """Each sample R5 map survives to_fhir/from_fhir unchanged."""
        cmap = conceptmap_from_fhir(sample_files()[name])
        assert cmap == conceptmap_from_fhir(conceptmap_to_fhir(cmap))

    @pytest.mark.parametrize("name", sorted(n for n in sample_files()
                                           if n.endswith(".codesystem.json")))
    def test_sample_catalogues(self, name: str) -> None:
        """Each sample catalogue survives to_fhir/from_fhir unchanged."""
        catalogue = catalogue_from_fhir(sample_files()[name])
        assert catalogue == catalogue_from_fhir(catalogue_to_fhir(catalogue))

    def test_national_catalogue_region(self) -> None:
        """The national catalogue's region extension reads as NATIONAL."""
        catalogue = catalogue_from_fhir(
            sample_files()["catalogues/national-matters-2024.codesystem.json"])
        assert NATIONAL == catalogue.region
