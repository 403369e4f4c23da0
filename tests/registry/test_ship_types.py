"""The inland-ship licence types (多证合一) in the sample registry and the matters each
serves."""

from __future__ import annotations

from datetime import date

import pytest

from registry import (
    NATIONAL,
    CatalogueKind,
    LicenceTypeCode,
    MatterCode,
    RegionCode,
    UnknownRegionError,
    load_bundle,
)
from tests.registry.factories import sample_files

HUZHOU = RegionCode("330500")
AT = date(2026, 6, 1)
COMBINED = LicenceTypeCode("11100000000019713D900")
NATIONALITY = LicenceTypeCode("11100000000019713D901")
MANNING = LicenceTypeCode("11100000000019713D904")


class TestShipTypes:
    """Ship certificate types, their components and the Huzhou matters they serve."""

    def test_combined_type_lists_its_four_components(self) -> None:
        """The national combined type names its components; each is a known national type
        marked illustrative (the codes are chosen, not published)."""
        registry = load_bundle(sample_files())
        parts = registry.component_types(COMBINED, at=AT)
        assert [f"11100000000019713D90{n}" for n in range(1, 5)] == list(parts)
        names = [registry.lookup(NATIONAL, p, kind=CatalogueKind.LICENCE_TYPE).name
                 for p in parts]
        assert ["船舶国籍证书", "船舶检验证书", "船舶营业运输证", "船舶最低安全配员证书"] == names
        assert registry.lookup(NATIONAL, COMBINED,
                               kind=CatalogueKind.LICENCE_TYPE).illustrative
        assert () == registry.component_types(NATIONALITY, at=AT)

    def test_matters_served_by_national_or_local_code(self) -> None:
        """Huzhou's matters a type serves, asked by the national code (through the reviewed
        map) or by Huzhou's own catalogue code; every one is a Huzhou matter."""
        registry = load_bundle(sample_files())
        by_national = registry.served_matters(HUZHOU, MANNING, at=AT)
        assert ("检查-01003-001", "其他-01004-001") == by_national
        assert by_national == registry.served_matters(
            HUZHOU, LicenceTypeCode("33010ZZ0005"), at=AT)
        for code in registry.served_matters(HUZHOU, COMBINED, at=AT):
            assert registry.lookup(HUZHOU, code).name

    def test_types_serving_a_matter(self) -> None:
        """船舶最低安全配员核定 is served by the combined certificate and the manning
        certificate (Huzhou catalogue codes)."""
        registry = load_bundle(sample_files())
        assert (LicenceTypeCode("33010ZZ0001"), LicenceTypeCode("33010ZZ0005")) == \
            registry.licence_types_serving(HUZHOU, MatterCode("其他-01004-001"), at=AT)

    def test_unknown_type_serves_nothing_and_unknown_region_raises(self) -> None:
        """An unknown type has no matters; a region without a licence catalogue raises."""
        registry = load_bundle(sample_files())
        assert () == registry.served_matters(HUZHOU, LicenceTypeCode("11100000000019713D999"),
                                             at=AT)
        with pytest.raises(UnknownRegionError):
            registry.served_matters(RegionCode("310000"), MANNING, at=AT)
