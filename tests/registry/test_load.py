"""Loading: every problem reported with its row; the sample bundle loads clean."""

# STYLE.md: tests assert `expected == actual`, expected first

from __future__ import annotations

import json
from datetime import date

import pytest

from registry import (
    HUZHOU,
    CatalogueKind,
    LicenceTypeCode,
    LoadError,
    MatterCode,
    RegionCode,
    Relationship,
    catalogue_to_fhir,
    conceptmap_from_csv,
    conceptmap_to_csv,
    conceptmap_to_fhir,
    load_bundle,
    load_bundle_with_report,
)
from tests.registry.factories import catalogue, sample_files

AT = date(2025, 1, 1)
CATS = {
    "a.json": json.dumps(catalogue_to_fhir(catalogue("310000", ["a1", "a2"]))).encode(),
    "b.json": json.dumps(catalogue_to_fhir(catalogue("330500", ["b1", "b2"]))).encode(),
}
HEAD = ("#url,urn:test:map:a-b\n#version,1\n#status,active\n"
        "#source,urn:test:catalogue:310000\n#target,urn:test:catalogue:330500\n"
        "source_code,source_display,target_code,target_display,relationship,depends_on,"
        "valid_from,valid_until,comment\n")


def _problems(csv_text: str) -> list[tuple[str, int | None]]:
    _, report = load_bundle_with_report({**CATS, "m.csv": csv_text.encode()})
    return [(p.source, p.row) for p in report.problems]


class TestLoadProblems:
    """Every problem is listed with its file and row, not only the first."""

    def test_unknown_codes_duplicates_and_contradictions_all_reported(self) -> None:
        """Four bad rows (lines 8, 9, 11, 12) give four problems with their lines."""
        rows = ("a1,,b1,,equivalent,,,,\n"          # line 7: fine
                "a9,,b1,,equivalent,,,,\n"          # line 8: unknown source code
                "a2,,b9,,equivalent,,,,\n"          # line 9: unknown target code
                "a2,,b2,,related-to,,,,\n"          # line 10: fine
                "a1,,b1,,equivalent,,,,\n"          # line 11: duplicate of 7
                "a2,,b2,,equivalent,,,,\n")         # line 12: contradicts 10
        expected = [("m.csv", 8), ("m.csv", 9), ("m.csv", 11), ("m.csv", 12)]
        assert expected == _problems(HEAD + rows)

    def test_bad_relationship_and_date_reported_with_lines(self) -> None:
        """A made-up relationship and a bad date are both reported with their lines."""
        rows = "a1,,b1,,same-as,,,,\na2,,b2,,equivalent,,2025-13-01,,\n"
        assert [("m.csv", 7), ("m.csv", 8)] == _problems(HEAD + rows)

    def test_conditions_make_pairs_distinct(self) -> None:
        """The same pair under different conditions is neither duplicate nor contradiction."""
        rows = ("a1,,b1,,source-is-broader-than-target,applicant_type=person,,,\n"
                "a1,,b1,,equivalent,applicant_type=enterprise,,,\n")
        assert [] == _problems(HEAD + rows)

    def test_missing_columns_reported_on_header_line(self) -> None:
        """A header without relationship is reported on its own line."""
        text = HEAD.replace(",relationship", "") + "a1,,b1,,,,,\n"
        assert [("m.csv", 6)] == _problems(text)

    def test_json_problems_carry_row_and_path(self) -> None:
        """A bad target in FHIR JSON names its ordinal row and JSON path."""
        cmap = conceptmap_from_csv(HEAD + "a1,,b1,,equivalent,,,,\na2,,b2,,equivalent,,,,\n")
        doc = conceptmap_to_fhir(cmap)
        doc["group"][0]["element"][1]["target"][0]["code"] = "b7"
        _, report = load_bundle_with_report({**CATS, "m.json": json.dumps(doc).encode()})
        expected = [("m.json", 2, "group[0].element[1].target[0]")]
        assert expected == [(p.source, p.row, p.where) for p in report.problems]

    def test_codes_of_the_wrong_shape_are_reported_per_concept(self) -> None:
        """Catalogue concepts that do not fit the scheme are each reported by row."""
        doc = catalogue_to_fhir(catalogue("330500", ["b1"]))
        doc["extension"] = [e for e in doc["extension"] if not e["url"].endswith("pattern")]
        doc["extension"][2]["valueString"] = "gb-basic-12"
        doc["concept"] += [{"code": "000115035000", "display": "ok"}, {"code": "b2"}]
        _, report = load_bundle_with_report({"c.json": json.dumps(doc).encode()})
        assert [1, 3] == [p.row for p in report.problems]

    def test_raising_variant_lists_every_problem(self) -> None:
        """load_bundle raises LoadError whose report holds all problems."""
        rows = "a9,,b1,,equivalent,,,,\na8,,b1,,equivalent,,,,\n"
        with pytest.raises(LoadError) as caught:
            load_bundle({**CATS, "m.csv": (HEAD + rows).encode()})
        assert 2 == len(caught.value.report.problems)

    def test_csv_round_trip(self) -> None:
        """A map written as CSV reads back equal."""
        cmap = conceptmap_from_csv(
            HEAD + "a1,,b1,,equivalent,applicant_type=person,2025-01-01,2025-12-31,note\n")
        assert cmap == conceptmap_from_csv(conceptmap_to_csv(cmap))


class TestSampleBundle:
    """The sample data in config/registry loads clean and covers what the issue asks."""

    def test_loads_with_no_problems(self) -> None:
        """Every sample file loads without a single problem."""
        _, report = load_bundle_with_report(sample_files())
        assert [] == [str(p) for p in report.problems]

    def test_every_relationship_kind_is_used(self) -> None:
        """The sample maps use all five relationships."""
        registry = load_bundle(sample_files())
        used = {t.relationship for m in registry.maps for g in m.groups
                for e in g.elements for t in e.targets}
        assert set(Relationship) == used

    def test_partners_and_reviewed_maps(self) -> None:
        """Four partner regions are held and at least one map is reviewed both ways."""
        registry = load_bundle(sample_files())
        partners = {RegionCode(r) for r in ("330100", "310000", "340100", "520500")}
        actual = (partners <= registry.regions(), any(m.reverse_reviewed for m in registry.maps))
        assert (True, True) == actual

    def test_one_to_many_with_applicant_type(self) -> None:
        """Huzhou's combined change-registration matter splits by applicant type via national."""
        registry = load_bundle(sample_files())
        answer = registry.translate(HUZHOU, MatterCode("许可-00906-002"), RegionCode("330100"),
                                    at=AT, conditions={"applicant_type": "enterprise"})
        expected = [("许可-00906-004", Relationship.BROADER)]
        assert expected == [(m.code, m.relationship) for m in answer.matches]

    def test_r4_map_in_bundle_reads_wider_as_narrower(self) -> None:
        """Bijie's R4 'wider' target reads as source-is-narrower-than-target."""
        registry = load_bundle(sample_files())
        answer = registry.translate(RegionCode("520500"), MatterCode("XK0090500Y"),
                                    RegionCode("national"), at=AT)
        assert [Relationship.NARROWER] == [m.relationship for m in answer.matches]

    def test_illustrative_codes_are_marked(self) -> None:
        """Made-up Huzhou codes say so; codes from public sources do not."""
        registry = load_bundle(sample_files())
        expected = (True, False)
        actual = (registry.lookup(HUZHOU, MatterCode("许可-00906-001")).illustrative,
                  registry.lookup(HUZHOU, MatterCode("公共服务-00512-002")).illustrative)
        assert expected == actual

    def test_licence_type_map_translates_to_national_type(self) -> None:
        """Huzhou's local 营业执照 catalogue code maps to the national 21-char type code."""
        registry = load_bundle(sample_files())
        answer = registry.translate(HUZHOU, LicenceTypeCode("33001ZZ0001"),
                                    RegionCode("national"), at=AT,
                                    kind=CatalogueKind.LICENCE_TYPE)
        assert ["11100000MB0143028R001"] == [m.code for m in answer.matches]

    def test_coverage_counts_every_huzhou_matter(self) -> None:
        """Coverage counts each Huzhou 跨省通办 matter once per partner."""
        registry = load_bundle(sample_files())
        partners = [RegionCode(r) for r in ("330100", "310000", "340100", "520500")]
        totals = {c.total for c in registry.coverage(partners, at=AT).values()}
        assert {13} == totals
