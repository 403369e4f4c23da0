"""The set of mock partner regions Huzhou (330500) recognises, and their trust list."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from mocks._jws import SM2_ALG, Alg
from mocks._region import MockRegion, rfc3339

__all__ = ["STANDARD_PARTNERS", "Federation", "PartnerSpec"]


@dataclass(frozen=True, slots=True)
class PartnerSpec:
    """What the standard federation knows of one partner before making its keys."""

    region_code: str
    name: str
    groups: tuple[str, ...]
    id_prefixes: tuple[str, ...]
    """County codes (GB/T 2260) where the region's residents were born."""
    licence_alg: Alg = "ES256"
    """What the region signs its licences and status lists with."""
    combined_certificates: bool = False
    """Whether the region issues inland-ship combined certificates (多证合一)."""


# Names and codes: docs/reference/yrd_cities.csv and kstb_partners.csv. yrd = 长三角 e-licence
# recognition, g60 = G60 一网通办 (Shanghai through 松江区), kstb = 跨省通办 bilateral.
STANDARD_PARTNERS: Final = (
    PartnerSpec("310000", "上海市", ("yrd", "g60"), ("310101", "310104", "310115", "310117")),
    PartnerSpec("320500", "苏州市", ("yrd", "g60"), ("320505", "320506", "320508")),
    PartnerSpec("330100", "杭州市", ("yrd", "g60"), ("330102", "330105", "330106")),
    PartnerSpec("340100", "合肥市", ("yrd", "g60"), ("340102", "340103", "340104")),
    # A Yangtze river port: it issues inland-ship combined certificates (多证合一).
    PartnerSpec("320100", "南京市", ("yrd",), ("320102", "320104"),
                combined_certificates=True),
    # Two far partners sign the way Chinese government systems do: SM2 with SM3 (国密).
    PartnerSpec("520500", "毕节市", ("kstb",), ("522401", "522422"), SM2_ALG),
    PartnerSpec("220600", "白山市", ("kstb",), ("220602", "220621"), SM2_ALG),
    PartnerSpec("652929", "柯坪县", ("kstb",), ("652929",)),
)
"""The standard partners: four G60 corridor members, a delta-only city, three far partners
(毕节 and 白山 sign licences and status lists with SM2SM3, the rest with ES256)."""


class Federation:
    """A set of mock regions, by region code."""

    def __init__(self, regions: Iterable[MockRegion]) -> None:
        """Keep ``regions`` in the given order; their codes must differ."""
        self._regions: dict[str, MockRegion] = {}
        for region in regions:
            if region.region_code in self._regions:
                raise ValueError(f"region {region.region_code} appears twice")
            self._regions[region.region_code] = region

    @classmethod
    def standard(
        cls,
        *,
        seed: int | None = None,
        codes: Iterable[str] | None = None,
        base_urls: Mapping[str, str] | None = None,
    ) -> Federation:
        """Build the standard partners (all, or those in ``codes``), seeded if ``seed`` is given."""
        wanted = None if codes is None else set(codes)
        specs = [s for s in STANDARD_PARTNERS if wanted is None or s.region_code in wanted]
        if wanted is not None and len(specs) != len(wanted):
            known = {s.region_code for s in STANDARD_PARTNERS}
            raise ValueError(f"not standard partners: {sorted(wanted - known)}")
        urls = base_urls or {}
        return cls(
            MockRegion(
                spec.region_code,
                spec.name,
                spec.groups,
                seed=seed,
                id_prefixes=spec.id_prefixes,
                base_url=urls.get(spec.region_code),
                licence_alg=spec.licence_alg,
                combined_certificates=spec.combined_certificates,
            )
            for spec in specs
        )

    def __getitem__(self, region_code: str) -> MockRegion:
        return self._regions[region_code]

    def __contains__(self, region_code: object) -> bool:
        return region_code in self._regions

    def __iter__(self) -> Iterator[MockRegion]:
        return iter(self._regions.values())

    def __len__(self) -> int:
        return len(self._regions)

    @property
    def regions(self) -> tuple[MockRegion, ...]:
        """The regions in order."""
        return tuple(self._regions.values())

    @property
    def codes(self) -> tuple[str, ...]:
        """The region codes in order."""
        return tuple(self._regions)

    def trust_list(
        self,
        *,
        version: int,
        issued_at: datetime,
        next_update: datetime,
        issuer: str = "330500",
    ) -> dict[str, Any]:
        """Return the whole trust-list document (spec/trust-list.md) naming every region.

        Nothing is checked: a stale or inverted window is the caller's to make.
        """
        return {
            "version": version,
            "issued_at": rfc3339(issued_at),
            "next_update": rfc3339(next_update),
            "issuer": issuer,
            "partners": [region.trust_list_entry() for region in self],
        }
