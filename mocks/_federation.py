"""The set of mock partner regions Huzhou (330500) recognises, and their trust list."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeAlias

from mocks._cities import FAR_PARTNERS, YRD_CITIES
from mocks._jws import SM2_ALG, Alg
from mocks._region import KEYS_VALID_FROM, AnchorUse, MockRegion, RevocationReason, rfc3339

__all__ = [
    "COMPROMISED_REGION",
    "FEDERATIONS",
    "FULL_REGIONS",
    "HOME_REGION",
    "STANDARD_PARTNERS",
    "Federation",
    "FederationName",
    "PartnerSpec",
    "RetiredKey",
]


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


HOME_REGION: Final = "330500"
"""Huzhou, the gateway's own city: one of the 41 delta cities, never its own partner."""


def _full_regions() -> tuple[PartnerSpec, ...]:
    standard = {spec.region_code: spec for spec in STANDARD_PARTNERS}
    delta = (PartnerSpec(city.region_code, city.name, ("yrd", "g60") if city.g60 else ("yrd",),
                         ()) for city in YRD_CITIES)
    far = (PartnerSpec(city.region_code, city.name, ("kstb",), ()) for city in FAR_PARTNERS)
    # The standard partners keep their birth places and algorithms (毕节 and 白山: SM2SM3).
    return tuple(standard.get(spec.region_code, spec) for spec in (*delta, *far))


FULL_REGIONS: Final = _full_regions()
"""Every region of the full federation: the 41 delta cities (docs/reference/yrd_cities.csv,
Huzhou included) and the three far partners, 毕节 and 白山 signing with SM2SM3."""

FederationName: TypeAlias = Literal["standard", "full"]
FEDERATIONS: Final[tuple[FederationName, ...]] = ("standard", "full")
"""The federations :meth:`Federation.named` builds: ``standard`` (the eight partners of
:data:`STANDARD_PARTNERS`) and ``full`` (:meth:`Federation.full`)."""


@dataclass(frozen=True, slots=True)
class RetiredKey:
    """A key a region of the full federation signed with before its current one.

    Its anchor stays in the trust list, revoked at ``retired_at`` for ``reason``:
    ``superseded`` keeps what it signed before then verifying, ``key-compromise``
    reaches back to everything it signed (spec/trust-list.md).
    """

    region_code: str
    kid: str
    use: AnchorUse
    valid_from: datetime
    valid_until: datetime
    retired_at: datetime
    reason: RevocationReason


def _utc(year: int, month: int = 1, day: int = 1) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def _until(year: int, month: int = 12, day: int = 31) -> datetime:
    return datetime(year, month, day, 23, 59, 59, tzinfo=UTC)


# Every region rotated its licence key in 2024 and 2026 and its status key in 2026 (the
# current keys, 2026a, begin at KEYS_VALID_FROM); each retired key overlaps its successor.
_ROTATIONS: Final[tuple[tuple[AnchorUse, str, datetime, datetime, datetime], ...]] = (
    ("licence-signing", "2022a", _utc(2022), _until(2027), _utc(2024)),
    ("licence-signing", "2024a", _utc(2024), _until(2029), KEYS_VALID_FROM),
    ("status-signing", "2024a", _utc(2024), _until(2029), KEYS_VALID_FROM),
)
COMPROMISED_REGION: Final = "340300"
"""蚌埠: its 2024 licence key was compromised on 2025-09-01 and replaced at once by ``2025a``
(itself superseded at the 2026 rotation)."""
_COMPROMISED_AT: Final = _utc(2025, 9, 1)
_TAG: Final[Mapping[AnchorUse, str]] = {"licence-signing": "lic", "status-signing": "status"}


def _history(region: MockRegion) -> list[RetiredKey]:
    """Add the region's retired keys, revoked as the rotations left them; return them."""
    code = region.region_code
    plan = [RetiredKey(code, f"{code}-{_TAG[use]}-{generation}", use, start, end, retired,
                       "superseded")
            for use, generation, start, end, retired in _ROTATIONS]
    if code == COMPROMISED_REGION:
        plan[1] = RetiredKey(code, plan[1].kid, "licence-signing", plan[1].valid_from,
                             plan[1].valid_until, _COMPROMISED_AT, "key-compromise")
        plan.insert(2, RetiredKey(code, f"{code}-lic-2025a", "licence-signing", _COMPROMISED_AT,
                                  _until(2030, 8, 31), KEYS_VALID_FROM, "superseded"))
    for key in plan:
        region.add_signing_key(region.licence_alg, kid=key.kid, use=key.use,
                               valid_from=key.valid_from, valid_until=key.valid_until)
        region.set_anchor_status(key.kid, "revoked", revoked_at=key.retired_at,
                                 reason=key.reason)
    return plan


def _region(spec: PartnerSpec, seed: int | None, urls: Mapping[str, str]) -> MockRegion:
    return MockRegion(
        spec.region_code,
        spec.name,
        spec.groups,
        seed=seed,
        id_prefixes=spec.id_prefixes or None,
        base_url=urls.get(spec.region_code),
        licence_alg=spec.licence_alg,
        combined_certificates=spec.combined_certificates,
    )


class Federation:
    """A set of mock regions, by region code."""

    def __init__(self, regions: Iterable[MockRegion], *,
                 retired: Iterable[RetiredKey] = ()) -> None:
        """Keep ``regions`` in the given order; their codes must differ. ``retired`` names
        the keys the regions retired (their anchors are already revoked)."""
        self._regions: dict[str, MockRegion] = {}
        for region in regions:
            if region.region_code in self._regions:
                raise ValueError(f"region {region.region_code} appears twice")
            self._regions[region.region_code] = region
        self.retired: tuple[RetiredKey, ...] = tuple(retired)
        """The retired keys of the regions, in the order they were made."""

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
        return cls(_region(spec, seed, urls) for spec in specs)

    @classmethod
    def full(
        cls,
        *,
        seed: int | None = None,
        home: str | None = HOME_REGION,
        base_urls: Mapping[str, str] | None = None,
    ) -> Federation:
        """Build every region of :data:`FULL_REGIONS` but ``home`` (the gateway's own city;
        None keeps all 44), each with its history of retired keys (:class:`RetiredKey`):
        licence keys ``2022a`` and ``2024a`` and status key ``2024a`` superseded, and in
        :data:`COMPROMISED_REGION` licence key ``2024a`` compromised."""
        urls = base_urls or {}
        regions = [_region(spec, seed, urls) for spec in FULL_REGIONS if spec.region_code != home]
        retired = [key for region in regions for key in _history(region)]
        return cls(regions, retired=retired)

    @classmethod
    def named(cls, name: FederationName, *, seed: int | None = None) -> Federation:
        """Build the federation called ``name`` (one of :data:`FEDERATIONS`)."""
        if name == "standard":
            return cls.standard(seed=seed)
        if name == "full":
            return cls.full(seed=seed)
        raise ValueError(f"no federation called {name!r}; known: {', '.join(FEDERATIONS)}")

    def retired_key(self, region_code: str, reason: RevocationReason) -> RetiredKey:
        """The first licence key ``region_code`` retired for ``reason``."""
        for key in self.retired:
            if (key.region_code, key.reason, key.use) == (region_code, reason,
                                                          "licence-signing"):
                return key
        raise ValueError(f"region {region_code} retired no licence key as {reason}")

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
