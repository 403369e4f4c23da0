"""Small builders for catalogues and maps used across the registry tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from pathlib import Path

from registry import (
    Catalogue,
    CatalogueKind,
    CodeScheme,
    Concept,
    ConceptMap,
    DependsOn,
    MapElement,
    MapGroup,
    MapStatus,
    MapTarget,
    Period,
    RegionCode,
    Relationship,
    Unmapped,
)

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "config" / "registry"
ANY_CODE = CodeScheme(name="test-any", pattern=r"(?P<code>[A-Za-z0-9-]+)")
ALWAYS = Period()

def sample_files() -> dict[str, bytes]:
    """The sample bundle as the gateway would pass it: relative name -> bytes."""
    return {str(p.relative_to(SAMPLE_DIR)): p.read_bytes()
            for p in sorted(SAMPLE_DIR.rglob("*")) if p.is_file()}


def catalogue(region: str, codes: Iterable[str], *, period: Period = ALWAYS,
              version: str = "1", kind: CatalogueKind = CatalogueKind.MATTER,
              scheme: CodeScheme = ANY_CODE) -> Catalogue:
    """A catalogue of ``region`` whose concepts are named after their codes."""
    return Catalogue(
        url=f"urn:test:catalogue:{region}", version=version, region=RegionCode(region),
        kind=kind, scheme=scheme,
        concepts=tuple(Concept(code=c, display=f"name of {c}") for c in codes),
        period=period,
    )


def to(code: str, relationship: Relationship, *, depends_on: Mapping[str, str] | None = None,
       period: Period = ALWAYS) -> MapTarget:
    """A map target, conditions given as a plain mapping."""
    depends = tuple(DependsOn(k, v) for k, v in sorted((depends_on or {}).items()))
    return MapTarget(code=code, relationship=relationship, depends_on=depends, period=period)


def concept_map(name: str, source: Catalogue, target: Catalogue,
                rows: Iterable[tuple[str, MapTarget]], *, reviewed: bool = False,
                status: MapStatus = MapStatus.ACTIVE, period: Period = ALWAYS,
                unmapped: Unmapped | None = None) -> ConceptMap:
    """A one-group map from (source code, target) rows."""
    elements: dict[str, list[MapTarget]] = {}
    for code, map_target in rows:
        elements.setdefault(code, []).append(map_target)
    group = MapGroup(
        source=source.url, target=target.url, unmapped=unmapped,
        elements=tuple(MapElement(code=c, targets=tuple(t)) for c, t in elements.items()),
    )
    return ConceptMap(url=f"urn:test:map:{name}", version="1", status=status,
                      source=source.url, target=target.url, groups=(group,), period=period,
                      reverse_reviewed=reviewed)


def day(text: str) -> date:
    """A date from ISO text, to keep test tables short."""
    return date.fromisoformat(text)
