"""The registry: catalogues and maps checked and indexed at load; translate() and coverage()."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from registry._errors import LoadError, UnknownCodeError, UnknownRegionError
from registry._model import (
    ALWAYS,
    EMPTY_CONDITIONS,
    NATIONAL,
    Catalogue,
    CatalogueKind,
    Concept,
    ConceptMap,
    LicenceTypeCode,
    MapGroup,
    MapStatus,
    MapTarget,
    MatterCode,
    MatterType,
    Period,
    RegionCode,
    Relationship,
    UnmappedMode,
    compose,
)
from registry._report import LoadProblem, LoadReport

__all__ = [
    "HUZHOU", "Coverage", "CoverageLevel", "Match", "MatterDetails", "Registry", "Translation",
]

HUZHOU = RegionCode("330500")
"""Huzhou, the region this gateway serves."""

_Depends = tuple[tuple[str, str], ...]
_Refusal = tuple[str, tuple[tuple[int, int], ...], str]


@dataclass(frozen=True, slots=True)
class Match:
    """One translation of a code: the target concept and how it was reached.

    ``path`` lists ``region:code`` hops from source to target; ``maps`` the
    ``url|version`` of every map used; ``depends_on`` the conditions the match
    relies on (it is returned when the caller did not state them).
    """

    code: str
    name: str
    relationship: Relationship
    path: tuple[str, ...]
    maps: tuple[str, ...]
    depends_on: _Depends = ()

    def as_dict(self) -> dict[str, Any]:
        """The match in the HTTP API's JSON shape."""
        out: dict[str, Any] = {"code": self.code, "name": self.name,
                               "relationship": self.relationship.value,
                               "path": list(self.path), "maps": list(self.maps)}
        if self.depends_on:
            out["depends_on"] = dict(self.depends_on)
        return out


@dataclass(frozen=True, slots=True)
class Translation:
    """The answer of ``Registry.translate`` (modelled on FHIR ``$translate``).

    ``result`` is true only when some match is not ``not-related-to``.
    """

    result: bool
    matches: tuple[Match, ...]
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The translation in the HTTP API's JSON shape."""
        out: dict[str, Any] = {"result": self.result,
                               "matches": [m.as_dict() for m in self.matches]}
        if self.message:
            out["message"] = self.message
        return out


@dataclass(frozen=True, slots=True)
class MatterDetails:
    """What the registry knows of one concept in one region's catalogue."""

    region: RegionCode
    code: str
    name: str
    catalogue: str
    scheme: str
    parts: Mapping[str, str]
    period: Period
    illustrative: bool
    cross_province: bool
    properties: Mapping[str, str]

    @property
    def matter_type(self) -> MatterType | None:
        """The GB/T 39046 matter type when the code carries one."""
        try:
            return MatterType(self.parts.get("matter_type", ""))
        except ValueError:
            return None


class CoverageLevel(StrEnum):
    """How well a Huzhou matter is matched in a partner's catalogue (best match counts)."""

    EQUIVALENT = "equivalent"
    NARROWER_OR_BROADER = "narrower-or-broader"
    RELATED = "related"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Coverage:
    """Counts of Huzhou's 跨省通办 matters by their best match in one partner's catalogue."""

    partner: RegionCode
    equivalent: int
    narrower_or_broader: int
    related: int
    none: int
    unmatched_codes: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        """How many Huzhou matters were looked at."""
        return self.equivalent + self.narrower_or_broader + self.related + self.none


@dataclass(frozen=True, slots=True)
class _Edge:
    """One usable step from a code in one region to a code in another."""

    tgt_region: RegionCode
    tgt_code: str
    tgt_name: str
    relationship: Relationship
    first: int
    last: int
    depends: _Depends
    maps: tuple[str, ...]
    reversible: bool


@dataclass(frozen=True, slots=True)
class _Candidate:
    match: Match
    first: int
    last: int
    depends: _Depends


@dataclass(slots=True)
class _Index:
    by_url: dict[str, list[Catalogue]] = field(default_factory=lambda: defaultdict(list))
    by_region: dict[tuple[CatalogueKind, RegionCode], list[Catalogue]] = field(
        default_factory=lambda: defaultdict(list))


def _resolve(index: _Index, url: str, version: str | None) -> list[Catalogue]:
    found = index.by_url.get(url, [])
    return [c for c in found if version is None or c.version == version]


def _concept(catalogues: list[Catalogue], code: str) -> tuple[Concept, Catalogue] | None:
    for catalogue in reversed(catalogues):  # latest version first
        concept = catalogue.get(code)
        if concept is not None:
            return concept, catalogue
    return None


# ------------------------------------------------------------------ checking


def _check(catalogues: Iterable[Catalogue], maps: Iterable[ConceptMap]
           ) -> tuple[_Index, list[ConceptMap], list[LoadProblem]]:
    problems: list[LoadProblem] = []
    index = _Index()
    seen_refs: set[str] = set()
    for catalogue in catalogues:
        if catalogue.ref in seen_refs:
            problems.append(LoadProblem(catalogue.origin, None,
                                        f"catalogue {catalogue.ref} is loaded twice"))
            continue
        seen_refs.add(catalogue.ref)
        index.by_url[catalogue.url].append(catalogue)
        index.by_region[(catalogue.kind, catalogue.region)].append(catalogue)
    for versions in (*index.by_url.values(), *index.by_region.values()):
        versions.sort(key=lambda c: (c.period.start or date.min, c.version))

    checked: list[ConceptMap] = []
    map_refs: set[str] = set()
    for cmap in maps:
        if cmap.ref in map_refs:
            problems.append(LoadProblem(cmap.origin, None, f"map {cmap.ref} is loaded twice"))
            continue
        map_refs.add(cmap.ref)
        groups = []
        for gi, group in enumerate(cmap.groups):
            clean = _check_group(index, cmap, gi, group, problems)
            if clean is not None:
                groups.append(clean)
        checked.append(dataclasses.replace(cmap, groups=tuple(groups)))
    known = {m.url for m in checked}
    for cmap in checked:
        for gi, group in enumerate(cmap.groups):
            u = group.unmapped
            if u is not None and u.mode is UnmappedMode.OTHER_MAP and u.other_map not in known:
                problems.append(LoadProblem(cmap.origin, None,
                                            f"unmapped other-map {u.other_map} is not loaded",
                                            f"group[{gi}].unmapped"))
    return index, checked, problems


def _check_group(index: _Index, cmap: ConceptMap, gi: int, group: MapGroup,
                 problems: list[LoadProblem]) -> MapGroup | None:
    gwhere = f"group[{gi}]"

    def add(row: int | None, message: str, where: str = gwhere) -> None:
        problems.append(LoadProblem(cmap.origin, row, message, where))

    sources = _resolve(index, group.source, group.source_version)
    targets = _resolve(index, group.target, group.target_version)
    for name, url, version, found in (("source", group.source, group.source_version, sources),
                                      ("target", group.target, group.target_version, targets)):
        if not found:
            add(None, f"{name} catalogue {url}{'|' + version if version else ''} is not loaded")
    if not sources or not targets:
        return None
    if sources[0].kind is not targets[0].kind:
        add(None, f"maps a {sources[0].kind} catalogue to a {targets[0].kind} catalogue")
        return None
    src_name = sources[-1].ref if group.source_version else group.source
    tgt_name = targets[-1].ref if group.target_version else group.target
    elements = []
    pairs: dict[tuple[str, str, tuple[Any, ...]], MapTarget] = {}
    for ei, element in enumerate(group.elements):
        ewhere = f"{gwhere}.element[{ei}]"
        if _concept(sources, element.code) is None:
            add(element.row, f"source code {element.code!r} is not in catalogue {src_name}",
                ewhere)
            continue
        kept = []
        for ti, target in enumerate(element.targets):
            twhere = f"{ewhere}.target[{ti}]"
            if _concept(targets, target.code) is None:
                add(target.row, f"target code {target.code!r} is not in catalogue {tgt_name}",
                    twhere)
                continue
            key = (element.code, target.code, target.depends_on)
            earlier = pairs.get(key)
            if earlier is not None and earlier.period.overlaps(target.period):
                if earlier.relationship is target.relationship:
                    add(target.row, f"duplicate of row {earlier.row}: {element.code} -> "
                        f"{target.code} {target.relationship}", twhere)
                else:
                    add(target.row, f"contradicts row {earlier.row}: {element.code} -> "
                        f"{target.code} is {earlier.relationship} there and "
                        f"{target.relationship} here", twhere)
                continue
            pairs[key] = target
            kept.append(target)
        elements.append(dataclasses.replace(element, targets=tuple(kept)))
    u = group.unmapped
    if u is not None and u.mode is UnmappedMode.FIXED and _concept(targets, u.code) is None:
        add(None, f"unmapped fixed code {u.code!r} is not in catalogue {tgt_name}",
            gwhere + ".unmapped")
        u = None
    return dataclasses.replace(group, elements=tuple(elements), unmapped=u)


# ------------------------------------------------------------------ edges


def _period_of(concept: Concept, catalogue: Catalogue) -> Period | None:
    return concept.period.intersect(catalogue.period)


class _EdgeBuilder:
    """Turns checked maps into edges, resolving unmapped modes (other-map recursively)."""

    def __init__(self, index: _Index, maps: list[ConceptMap]) -> None:
        self.index = index
        self.by_url = {m.url: m for m in sorted(maps, key=lambda m: m.version)}
        self.done: dict[str, list[tuple[RegionCode, str, _Edge]]] = {}

    def edges(self, cmap: ConceptMap, visiting: frozenset[str] = frozenset()
              ) -> list[tuple[RegionCode, str, _Edge]]:
        """Forward edges of one map as (source region, source code, edge)."""
        if cmap.ref in self.done:
            return self.done[cmap.ref]
        out: list[tuple[RegionCode, str, _Edge]] = []
        for group in cmap.groups:
            out.extend(self._group_edges(cmap, group, visiting | {cmap.url}))
        self.done[cmap.ref] = out
        return out

    def _edge(self, cmap: ConceptMap, src: tuple[Concept, Catalogue],
              tgt: tuple[Concept, Catalogue], *, relationship: Relationship, period: Period,
              depends: _Depends, maps: tuple[str, ...], reversible: bool) -> _Edge | None:
        src_period = _period_of(*src)
        tgt_period = _period_of(*tgt)
        combined = cmap.period.intersect(period)
        for extra in (src_period, tgt_period):
            if combined is None or extra is None:
                return None
            combined = combined.intersect(extra)
        if combined is None:
            return None
        first, last = combined.ordinals
        return _Edge(tgt[1].region, tgt[0].code, tgt[0].display, relationship, first, last,
                     depends, maps, reversible)

    def _group_edges(self, cmap: ConceptMap, group: MapGroup, visiting: frozenset[str]
                     ) -> list[tuple[RegionCode, str, _Edge]]:
        sources = _resolve(self.index, group.source, group.source_version)
        targets = _resolve(self.index, group.target, group.target_version)
        if not sources or not targets:
            return []
        out = []
        mapped: set[str] = set()
        for element in group.elements:
            mapped.add(element.code)
            src = _concept(sources, element.code)
            if src is None:
                continue
            for target in element.targets:
                tgt = _concept(targets, target.code)
                if tgt is None:
                    continue
                depends = tuple((d.attribute, d.value) for d in target.depends_on)
                edge = self._edge(cmap, src, tgt, relationship=target.relationship,
                                  period=target.period, depends=depends, maps=(cmap.ref,),
                                  reversible=True)
                if edge is not None:
                    out.append((src[1].region, element.code, edge))
        u = group.unmapped
        if u is None:
            return out
        codes = sorted({c.code for cat in sources for c in cat.concepts} - mapped)
        other_edges: dict[str, list[_Edge]] = defaultdict(list)
        if u.mode is UnmappedMode.OTHER_MAP:
            other = self.by_url.get(u.other_map)
            if other is not None and other.url not in visiting:
                for _, code, e in self.edges(other, visiting):
                    if e.tgt_region == targets[0].region:
                        other_edges[code].append(e)
        for code in codes:
            src = _concept(sources, code)
            assert src is not None
            if u.mode is UnmappedMode.OTHER_MAP:
                out.extend(
                    (src[1].region, code,
                     dataclasses.replace(e, maps=(cmap.ref, *e.maps), reversible=False))
                    for e in other_edges.get(code, []))
                continue
            use_source = u.mode is UnmappedMode.USE_SOURCE_CODE
            tgt = _concept(targets, code if use_source else u.code)
            if tgt is None:
                continue
            edge = self._edge(cmap, src, tgt, relationship=u.relationship, period=ALWAYS,
                              depends=(), maps=(cmap.ref,), reversible=use_source)
            if edge is not None:
                out.append((src[1].region, code, edge))
        return out


# ------------------------------------------------------------------ registry


class Registry:
    """Catalogues and concept maps, checked and indexed once; pure lookups afterwards.

    Retired maps are never used; draft maps only with ``include_draft``. A map
    is used backwards only when ``reverse_reviewed`` (and then its
    relationships are inverted: narrower reads as broader).
    """

    def __init__(self, catalogues: Iterable[Catalogue], maps: Iterable[ConceptMap], *,
                 include_draft: bool = False, cache_size: int = 100_000) -> None:
        """Check and index; raises ``LoadError`` listing every problem."""
        index, checked, problems = _check(catalogues, maps)
        if problems:
            raise LoadError(LoadReport.of(problems))
        self._setup(index, checked, include_draft=include_draft, cache_size=cache_size)

    @classmethod
    def build(cls, catalogues: Iterable[Catalogue], maps: Iterable[ConceptMap], *,
              include_draft: bool = False, cache_size: int = 100_000
              ) -> tuple[Registry, LoadReport]:
        """Check and index, leaving out what is broken; returns the registry and the report."""
        index, checked, problems = _check(catalogues, maps)
        registry = cls.__new__(cls)
        registry._setup(index, checked, include_draft=include_draft, cache_size=cache_size)
        return registry, LoadReport.of(problems)

    def _setup(self, index: _Index, maps: list[ConceptMap], *, include_draft: bool,
               cache_size: int) -> None:
        self._index = index
        self._maps = tuple(maps)
        usable = {MapStatus.ACTIVE, MapStatus.DRAFT} if include_draft else {MapStatus.ACTIVE}
        self._cache_size = cache_size
        self._cache: dict[tuple[Any, ...], Translation] = {}
        self._candidates: dict[tuple[Any, ...], tuple[tuple[_Candidate, ...],
                                                      tuple[_Candidate, ...]]] = {}
        self._refusals: dict[tuple[Any, ...], _Refusal] = {}
        # (kind, region, code) -> target region -> edges
        self._edges: dict[tuple[CatalogueKind, RegionCode, str],
                          dict[RegionCode, list[_Edge]]] = defaultdict(lambda: defaultdict(list))
        # (kind, from region, to region) -> refs of usable maps that may not be read backwards
        self._one_way: dict[tuple[CatalogueKind, RegionCode, RegionCode], list[str]] = (
            defaultdict(list))
        builder = _EdgeBuilder(index, [m for m in maps if m.status in usable])
        for cmap in builder.by_url.values():
            kinds = set()
            for group in cmap.groups:
                src_cats = _resolve(index, group.source, group.source_version)
                tgt_cats = _resolve(index, group.target, group.target_version)
                if src_cats and tgt_cats:
                    kinds.add(src_cats[0].kind)
                    if not cmap.reverse_reviewed:
                        pair = (src_cats[0].kind, src_cats[0].region, tgt_cats[0].region)
                        self._one_way[pair].append(cmap.ref)
            if not kinds:
                continue
            kind = kinds.pop()
            for region, code, edge in builder.edges(cmap):
                self._edges[(kind, region, code)][edge.tgt_region].append(edge)
                if cmap.reverse_reviewed and edge.reversible:
                    back = dataclasses.replace(
                        edge, tgt_region=region, tgt_code=code,
                        tgt_name=self._name(kind, region, code),
                        relationship=edge.relationship.inverse(), reversible=False)
                    self._edges[(kind, edge.tgt_region, edge.tgt_code)][region].append(back)
        # code -> list of (first, last) ordinal ranges in which it is held, per (kind, region)
        self._held: dict[tuple[CatalogueKind, RegionCode], dict[str, list[tuple[int, int]]]] = {}
        for key, cats in index.by_region.items():
            held: dict[str, list[tuple[int, int]]] = defaultdict(list)
            for cat in cats:
                for concept in cat.concepts:
                    period = _period_of(concept, cat)
                    if period is not None:
                        held[concept.code].append(period.ordinals)
            self._held[key] = dict(held)

    def _name(self, kind: CatalogueKind, region: RegionCode, code: str) -> str:
        found = _concept(self._index.by_region.get((kind, region), []), code)
        return found[0].display if found else ""

    # -------------------------------------------------------------- queries

    @property
    def catalogues(self) -> tuple[Catalogue, ...]:
        """Every catalogue version held."""
        return tuple(c for cats in self._index.by_url.values() for c in cats)

    @property
    def maps(self) -> tuple[ConceptMap, ...]:
        """Every concept map held (after checking), whatever its status."""
        return self._maps

    def regions(self, kind: CatalogueKind = CatalogueKind.MATTER) -> frozenset[RegionCode]:
        """Regions with a catalogue of ``kind``."""
        return frozenset(r for (k, r) in self._index.by_region if k is kind)

    def catalogue(self, region: RegionCode, *, at: date | None = None,
                  kind: CatalogueKind = CatalogueKind.MATTER) -> Catalogue:
        """The region's catalogue valid at ``at`` (latest version when ``at`` is None)."""
        cats = self._index.by_region.get((kind, region))
        if not cats:
            raise UnknownRegionError(region, kind.value)
        for cat in reversed(cats):
            if at is None or cat.period.contains(at):
                return cat
        raise UnknownRegionError(region, f"{kind.value} (valid on {at})")

    def lookup(self, region: RegionCode, code: MatterCode | LicenceTypeCode, *,
               at: date | None = None,
               kind: CatalogueKind = CatalogueKind.MATTER) -> MatterDetails:
        """A concept's details; raises ``UnknownRegionError`` or ``UnknownCodeError``."""
        cats = self._index.by_region.get((kind, region))
        if not cats:
            raise UnknownRegionError(region, kind.value)
        for cat in reversed(cats):
            concept = cat.get(code)
            if concept is None:
                continue
            period = _period_of(concept, cat) or concept.period
            if at is not None and not period.contains(at):
                continue
            parsed = cat.parts(code)
            return MatterDetails(
                region=region, code=code, name=concept.display, catalogue=cat.ref,
                scheme=cat.scheme.name, parts=parsed.parts, period=period,
                illustrative=concept.illustrative or cat.scheme.illustrative,
                cross_province=concept.cross_province,
                properties=MappingProxyType(dict(concept.properties)),
            )
        raise UnknownCodeError(region, code)

    def _licence_concept(self, region: RegionCode, code: str, at: date) -> Concept | None:
        """A licence type's concept in the region's catalogue, the code being the region's
        own or a national one an equivalent map entry leads to."""
        cats = self._index.by_region.get((CatalogueKind.LICENCE_TYPE, region))
        if not cats:
            raise UnknownRegionError(region, CatalogueKind.LICENCE_TYPE.value)
        found = _concept(cats, code)
        if found is None and region != NATIONAL:
            answer = self.translate(NATIONAL, LicenceTypeCode(code), region, at=at,
                                    kind=CatalogueKind.LICENCE_TYPE)
            local = [m.code for m in answer.matches
                     if m.relationship is Relationship.EQUIVALENT]
            found = _concept(cats, local[0]) if len(local) == 1 else None
        if found is None:
            return None
        concept, catalogue = found
        period = _period_of(concept, catalogue) or concept.period
        return concept if period.contains(at) else None

    def served_matters(self, region: RegionCode, type_code: LicenceTypeCode, *,
                       at: date) -> tuple[MatterCode, ...]:
        """The region's matters a licence type serves, as of ``at`` (its ``serves-matter``
        properties in the region's licence-type catalogue; a national type code is
        taken through an equivalent map entry). Empty when nothing is recorded or the
        type is unknown; ``UnknownRegionError`` without a licence-type catalogue."""
        concept = self._licence_concept(region, type_code, at)
        return () if concept is None else tuple(MatterCode(m)
                                                for m in concept.values("serves-matter"))

    def licence_types_serving(self, region: RegionCode, matter: MatterCode, *,
                              at: date) -> tuple[LicenceTypeCode, ...]:
        """The region's licence types whose ``serves-matter`` names ``matter``, as of
        ``at``, in catalogue order (a combined certificate and its components alike)."""
        cats = self._index.by_region.get((CatalogueKind.LICENCE_TYPE, region))
        if not cats:
            raise UnknownRegionError(region, CatalogueKind.LICENCE_TYPE.value)
        found: list[LicenceTypeCode] = []
        for catalogue in reversed(cats):
            for concept in catalogue.concepts:
                period = _period_of(concept, catalogue) or concept.period
                if (matter in concept.values("serves-matter") and period.contains(at)
                        and concept.code not in found):
                    found.append(LicenceTypeCode(concept.code))
        return tuple(found)

    def component_types(self, type_code: LicenceTypeCode, *, at: date,
                        region: RegionCode = NATIONAL) -> tuple[LicenceTypeCode, ...]:
        """The component types of a combined certificate type (多证合一), as its
        ``component`` properties list them; empty for any other type."""
        concept = self._licence_concept(region, type_code, at)
        return () if concept is None else tuple(LicenceTypeCode(c)
                                                for c in concept.values("component"))

    def translate(self, source_region: RegionCode, code: MatterCode | LicenceTypeCode,
                  target_region: RegionCode, *, at: date,
                  conditions: Mapping[str, str] | None = None,
                  kind: CatalogueKind = CatalogueKind.MATTER) -> Translation:
        """Translate a code of one region into the target region's catalogue, as of ``at``.

        Direct maps are used first; without a direct match the code is chained
        through the national catalogue, composing relationships (see
        ``compose``). ``conditions`` select among targets that depend on them
        (e.g. ``{"applicant_type": "enterprise"}``); a target whose condition
        the caller did not state is returned with its ``depends_on``. Raises
        ``UnknownRegionError`` for a region without a catalogue; an unknown
        code gives ``result`` false with a message.
        """
        ckey = tuple(sorted(conditions.items())) if conditions else None
        key = (kind, source_region, code, target_region, at, ckey)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        answer = self._translate(source_region, code, target_region, at=at,
                                 conditions=conditions or EMPTY_CONDITIONS, kind=kind)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[key] = answer
        return answer

    def _translate(self, src: RegionCode, code: str, tgt: RegionCode, *, at: date,
                   conditions: Mapping[str, str], kind: CatalogueKind) -> Translation:
        held = self._held.get((kind, src))
        if held is None:
            raise UnknownRegionError(src, kind.value)
        if (kind, tgt) not in self._held:
            raise UnknownRegionError(tgt, kind.value)
        day = at.toordinal()
        for first, last in held.get(code, ()):
            if first <= day <= last:
                break
        else:
            return Translation(False, (), f"{src}:{code} is not in the {kind.value} "
                               f"catalogue of {src} on {at.isoformat()}")
        if src == tgt:
            match = Match(code, self._name(kind, src, code), Relationship.EQUIVALENT,
                          (f"{src}:{code}",), ())
            return Translation(True, (match,))
        direct, chained = self._candidates_for(kind, src, code, tgt)
        found = _select(direct, day, conditions) or _select(chained, day, conditions)
        if not found:
            return Translation(False, (), self._why_not(kind, src, code, tgt, at))
        for m in found:
            if m.relationship is not Relationship.NOT_RELATED:
                return Translation(True, found)
        return Translation(False, found, "every match is not-related-to")

    def _candidates_for(self, kind: CatalogueKind, src: RegionCode, code: str,
                        tgt: RegionCode) -> tuple[tuple[_Candidate, ...], tuple[_Candidate, ...]]:
        key = (kind, src, code, tgt)
        found = self._candidates.get(key)
        if found is not None:
            return found
        start = f"{src}:{code}"
        out = self._edges.get((kind, src, code), {})
        direct = tuple(
            _Candidate(Match(e.tgt_code, e.tgt_name, e.relationship,
                             (start, f"{tgt}:{e.tgt_code}"), e.maps, e.depends),
                       e.first, e.last, e.depends)
            for e in out.get(tgt, ())
        )
        chained: list[_Candidate] = []
        if NATIONAL not in (src, tgt):
            for e1 in out.get(NATIONAL, ()):
                if e1.relationship is Relationship.NOT_RELATED:
                    continue  # not-related-to stops the chain
                onward = self._edges.get((kind, NATIONAL, e1.tgt_code), {})
                for e2 in onward.get(tgt, ()):
                    candidate = _chain(start, e1, e2, tgt)
                    if candidate is not None:
                        chained.append(candidate)
        found = (direct, tuple(chained))
        self._candidates[key] = found
        return found

    def _why_not(self, kind: CatalogueKind, src: RegionCode, code: str, tgt: RegionCode,
                 at: date) -> str:
        key = (kind, src, code, tgt)
        found = self._refusals.get(key)
        if found is None:
            found = self._refusals[key] = self._refusal(kind, src, code, tgt)
        head, stops, tail = found
        day = at.toordinal()
        for first, last in stops:
            if first <= day <= last:
                return (f"{head}{at.isoformat()}; the chain through the national "
                        f"catalogue stops at not-related-to{tail}")
        return f"{head}{at.isoformat()}{tail}"

    def _refusal(self, kind: CatalogueKind, src: RegionCode, code: str, tgt: RegionCode
                 ) -> _Refusal:
        """What explains a translation that found no match, but for the day: the message's
        start, the periods of the not-related-to steps that stop the chain through the
        national catalogue, and the maps that run the other way."""
        stops: tuple[tuple[int, int], ...] = ()
        if tgt != NATIONAL:
            stops = tuple((e.first, e.last)
                          for e in self._edges.get((kind, src, code), {}).get(NATIONAL, ())
                          if e.relationship is Relationship.NOT_RELATED)
        refused = [*self._one_way.get((kind, tgt, src), ())]
        if NATIONAL not in (src, tgt):
            refused += self._one_way.get((kind, NATIONAL, src), [])
            refused += self._one_way.get((kind, tgt, NATIONAL), [])
        tail = ""
        if refused:
            tail = ("; map(s) " + ", ".join(sorted(set(refused)))
                    + " run the other way and are not reviewed for reverse use")
        return f"no map leads from {src}:{code} to {tgt} on ", stops, tail

    def coverage(self, partner_regions: Iterable[RegionCode], *, at: date,
                 huzhou_region: RegionCode = HUZHOU) -> Mapping[RegionCode, Coverage]:
        """Per partner, Huzhou's 跨省通办 matters counted by their best match there."""
        catalogue = self.catalogue(huzhou_region, at=at)
        day = at.toordinal()
        matters = [c.code for c in catalogue.concepts
                   if c.cross_province and any(
                       f <= day <= last
                       for f, last in self._held[(catalogue.kind, huzhou_region)][c.code])]
        out: dict[RegionCode, Coverage] = {}
        for partner in partner_regions:
            counts = dict.fromkeys(CoverageLevel, 0)
            unmatched = []
            for code in matters:
                level = _level(self.translate(huzhou_region, MatterCode(code), partner, at=at))
                counts[level] += 1
                if level is CoverageLevel.NONE:
                    unmatched.append(code)
            out[partner] = Coverage(
                partner=partner, equivalent=counts[CoverageLevel.EQUIVALENT],
                narrower_or_broader=counts[CoverageLevel.NARROWER_OR_BROADER],
                related=counts[CoverageLevel.RELATED], none=counts[CoverageLevel.NONE],
                unmatched_codes=tuple(unmatched))
        return MappingProxyType(out)


def _level(translation: Translation) -> CoverageLevel:
    kinds = {m.relationship for m in translation.matches}
    if Relationship.EQUIVALENT in kinds:
        return CoverageLevel.EQUIVALENT
    if kinds & {Relationship.NARROWER, Relationship.BROADER}:
        return CoverageLevel.NARROWER_OR_BROADER
    if Relationship.RELATED in kinds:
        return CoverageLevel.RELATED
    return CoverageLevel.NONE


def _chain(start: str, e1: _Edge, e2: _Edge, tgt: RegionCode) -> _Candidate | None:
    relationship = compose(e1.relationship, e2.relationship)
    if relationship is None:
        return None
    first, last = max(e1.first, e2.first), min(e1.last, e2.last)
    if first > last:
        return None
    merged = dict(e1.depends)
    for attribute, value in e2.depends:
        if merged.setdefault(attribute, value) != value:
            return None  # the two steps need contradictory conditions
    depends = tuple(sorted(merged.items()))
    path = (start, f"{NATIONAL}:{e1.tgt_code}", f"{tgt}:{e2.tgt_code}")
    match = Match(e2.tgt_code, e2.tgt_name, relationship, path, e1.maps + e2.maps, depends)
    return _Candidate(match, first, last, depends)


def _select(candidates: tuple[_Candidate, ...], day: int,
            conditions: Mapping[str, str]) -> tuple[Match, ...]:
    found: dict[Match, None] = {}
    for c in candidates:
        if not c.first <= day <= c.last:
            continue
        if c.depends and any(conditions.get(a, v) != v for a, v in c.depends):
            continue
        found[c.match] = None
    if len(found) < 2:
        return tuple(found)
    return tuple(sorted(found, key=lambda m: (m.relationship.rank, m.code, m.path)))

