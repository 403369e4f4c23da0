"""Property tests: parsers fail only with registry errors; reviewed maps round-trip."""

# STYLE.md: tests assert `expected == actual`, expected first

from __future__ import annotations

import contextlib
from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from registry import (
    BUILTIN_SCHEMES,
    MatterCode,
    RegionCode,
    Registry,
    RegistryError,
    Relationship,
    catalogue_from_fhir,
    conceptmap_from_csv,
    conceptmap_from_fhir,
    conceptmap_from_fhir_r4,
    load_bundle_with_report,
)
from tests.registry.factories import catalogue, concept_map, sample_files, to
from tests.registry.strategies import fhir_like_documents, invertible_rows

AT = date(2025, 1, 1)
CAT_A = catalogue("310000", [f"a{i}" for i in range(6)])
CAT_B = catalogue("330500", [f"b{i}" for i in range(6)])


def _only_registry_errors(call: object, data: object) -> None:
    assert callable(call)
    with contextlib.suppress(RegistryError):  # any other exception fails the test
        call(data)


class TestParsersFailCleanly:
    """Arbitrary input raises only RegistryError subclasses."""

    @given(st.text(max_size=60))
    def test_schemes(self, text: str) -> None:
        """Every built-in scheme parses or raises CodeFormatError."""
        for scheme in BUILTIN_SCHEMES.values():
            _only_registry_errors(scheme.parse, text)

    @given(st.binary(max_size=200) | fhir_like_documents())
    def test_fhir_readers(self, data: bytes) -> None:
        """CodeSystem and ConceptMap readers raise only LoadError on any bytes."""
        for reader in (catalogue_from_fhir, conceptmap_from_fhir, conceptmap_from_fhir_r4):
            _only_registry_errors(reader, data)

    @given(st.text(max_size=300))
    def test_csv_reader(self, text: str) -> None:
        """The CSV reader raises only LoadError on any text."""
        _only_registry_errors(conceptmap_from_csv, text)

    @given(fhir_like_documents())
    def test_bundle_never_raises(self, data: bytes) -> None:
        """The reporting bundle loader reports, never raises, on broken files."""
        load_bundle_with_report({"x.json": data, "y.csv": data})


class TestRoundTrip:
    """Maps reviewed both ways translate forward then back to the original."""

    @given(invertible_rows())
    def test_generated_reviewed_maps(self, rows: list[tuple[str, str, Relationship]]) -> None:
        """For any reviewed map, every forward match leads back to the source code."""
        cmap = concept_map("a-b", CAT_A, CAT_B, [(s, to(t, r)) for s, t, r in rows],
                           reviewed=True)
        registry = Registry([CAT_A, CAT_B], [cmap])
        a, b = RegionCode("310000"), RegionCode("330500")
        for source in {s for s, _, _ in rows}:
            for match in registry.translate(a, MatterCode(source), b, at=AT).matches:
                back = registry.translate(b, MatterCode(match.code), a, at=AT)
                assert source in {m.code for m in back.matches}

    def test_sample_reviewed_maps(self) -> None:
        """Every pair of every reviewed sample map comes back when translated backwards."""
        registry, _ = load_bundle_with_report(sample_files())
        failures = []
        for cmap in (m for m in registry.maps if m.reverse_reviewed):
            for group in cmap.groups:
                src = next(c for c in registry.catalogues if c.url == group.source)
                tgt = next(c for c in registry.catalogues if c.url == group.target)
                for element in group.elements:
                    for target in element.targets:
                        back = registry.translate(tgt.region, MatterCode(target.code),
                                                  src.region, at=AT, kind=src.kind)
                        if element.code not in {m.code for m in back.matches}:
                            failures.append((cmap.url, element.code, target.code))
        assert [] == failures
