"""FHIR JSON: CodeSystem for catalogues, ConceptMap R5 (read and write) and R4 (read).

R4 ``equivalence`` words describe the *target* ("the target is wider"); R5
``relationship`` words describe the *source*. The conversion follows HL7's
R4B-to-R5 ConceptMap transform: wider/subsumes -> source-is-narrower-than-target,
narrower/specializes -> source-is-broader-than-target, equal/equivalent ->
equivalent, relatedto/inexact -> related-to, unmatched/disjoint -> not-related-to.

Project-specific facts travel in extensions under ``EXT``: a catalogue's
region, kind and code scheme (or its pattern), a map's reverse review and a
target's own validity period.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from typing import Any

from registry._errors import CodeFormatError, LoadError, SchemeError
from registry._model import (
    ALWAYS,
    Catalogue,
    CatalogueKind,
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
    UnmappedMode,
)
from registry._report import LoadProblem, LoadReport
from registry._schemes import BUILTIN_SCHEMES, CodeScheme

__all__ = [
    "EXT",
    "R4_EQUIVALENCE",
    "catalogue_from_fhir",
    "catalogue_to_fhir",
    "conceptmap_from_fhir",
    "conceptmap_from_fhir_r4",
    "conceptmap_to_fhir",
    "is_r4_conceptmap",
    "parse_json",
    "read_catalogue",
    "read_conceptmap",
]

EXT = "urn:ecert-gateway:fhir:"
"""Prefix of this project's FHIR extension URLs."""

EXT_REGION = EXT + "region"
EXT_KIND = EXT + "catalogue-kind"
EXT_SCHEME = EXT + "code-scheme"
EXT_PATTERN = EXT + "code-pattern"
EXT_SCHEME_ILLUSTRATIVE = EXT + "code-scheme-illustrative"
EXT_REVERSE_REVIEWED = EXT + "reverse-reviewed"
EXT_ILLUSTRATIVE = EXT + "illustrative"
EXT_VALID_PERIOD = EXT + "valid-period"

R4_EQUIVALENCE: Mapping[str, Relationship] = {
    "relatedto": Relationship.RELATED,
    "inexact": Relationship.RELATED,
    "equivalent": Relationship.EQUIVALENT,
    "equal": Relationship.EQUIVALENT,
    # R4 "wider": the target is wider, so the source is narrower.
    "wider": Relationship.NARROWER,
    "subsumes": Relationship.NARROWER,
    # R4 "narrower": the target is narrower, so the source is broader.
    "narrower": Relationship.BROADER,
    "specializes": Relationship.BROADER,
    "unmatched": Relationship.NOT_RELATED,
    "disjoint": Relationship.NOT_RELATED,
}
"""R4 ConceptMap equivalence word -> R5 relationship."""

_R4_UNMAPPED = {"provided": UnmappedMode.USE_SOURCE_CODE, "fixed": UnmappedMode.FIXED,
                "other-map": UnmappedMode.OTHER_MAP}

_PROPERTY_DEFS = (
    ("illustrative", "boolean", "code or name made up for this project, not from a public source"),
    ("cross-province", "boolean", "a 跨省通办 matter"),
    ("valid-from", "dateTime", "first day the concept is valid"),
    ("valid-until", "dateTime", "last day the concept is valid"),
)


class _Reader:
    """Collects problems while walking untrusted JSON."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[LoadProblem] = []

    def add(self, message: str, where: str, row: int | None = None) -> None:
        self.problems.append(LoadProblem(self.source, row, message, where))

    def obj(self, value: object, where: str) -> Mapping[str, object] | None:
        if isinstance(value, Mapping):
            return value
        self.add("expected a JSON object", where)
        return None

    def objs(self, parent: Mapping[str, object], key: str,
             where: str) -> list[Mapping[str, object]]:
        value = parent.get(key, [])
        if not isinstance(value, list):
            self.add(f"{key!r} must be a list", where)
            return []
        found = []
        for i, item in enumerate(value):
            checked = self.obj(item, f"{where}.{key}[{i}]")
            if checked is not None:
                found.append(checked)
        return found

    def text(self, parent: Mapping[str, object], key: str, where: str, *,
             required: bool = False, row: int | None = None) -> str:
        value = parent.get(key)
        if value is None:
            if required:
                self.add(f"{key!r} is required", where, row)
            return ""
        if not isinstance(value, str):
            self.add(f"{key!r} must be a string", where, row)
            return ""
        return value

    def flag(self, value: object, where: str) -> bool:
        if isinstance(value, bool):
            return value
        self.add("expected true or false", where)
        return False

    def day(self, value: object, where: str, row: int | None = None) -> date | None:
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                return date.fromisoformat(value[:10])
            except ValueError:
                pass
        self.add(f"{value!r} is not a date (YYYY-MM-DD)", where, row)
        return None

    def period(self, value: object, where: str, row: int | None = None) -> Period:
        if value is None:
            return ALWAYS
        found = self.obj(value, where)
        if found is None:
            return ALWAYS
        start = self.day(found.get("start"), where + ".start", row)
        end = self.day(found.get("end"), where + ".end", row)
        if start is not None and end is not None and end < start:
            self.add("period ends before it starts", where, row)
            return ALWAYS
        return Period(start, end)

    def extensions(self, parent: Mapping[str, object], where: str) -> dict[str, object]:
        found: dict[str, object] = {}
        for i, ext in enumerate(self.objs(parent, "extension", where)):
            url = ext.get("url")
            if not isinstance(url, str):
                self.add("extension without url", f"{where}.extension[{i}]")
                continue
            value = next((v for k, v in ext.items() if k.startswith("value")), None)
            found[url] = value
        return found


def parse_json(data: bytes | str | Mapping[str, object], source: str,
               problems: list[LoadProblem]) -> Mapping[str, object] | None:
    """Decode JSON bytes or text into an object, recording a problem when it is not one."""
    if isinstance(data, Mapping):
        return data
    try:
        decoded: object = json.loads(data)
    except (ValueError, TypeError, RecursionError) as exc:
        # UnicodeDecodeError is a ValueError.
        problems.append(LoadProblem(source, None, f"not JSON: {exc}"))
        return None
    if not isinstance(decoded, dict):
        problems.append(LoadProblem(source, None, "top level is not a JSON object"))
        return None
    return decoded


def _raise_if(problems: list[LoadProblem]) -> None:
    if problems:
        raise LoadError(LoadReport.of(problems))


# ----------------------------------------------------------------- CodeSystem


def read_catalogue(data: bytes | str | Mapping[str, object], source: str = "<memory>"
                   ) -> tuple[Catalogue | None, list[LoadProblem]]:
    """Read a CodeSystem into a catalogue, keeping good concepts and listing every problem."""
    r = _Reader(source)
    doc = parse_json(data, source, r.problems)
    if doc is None:
        return None, r.problems
    if doc.get("resourceType") != "CodeSystem":
        r.add("resourceType must be CodeSystem", "CodeSystem")
        return None, r.problems
    url = r.text(doc, "url", "CodeSystem", required=True)
    version = r.text(doc, "version", "CodeSystem", required=True)
    ext = r.extensions(doc, "CodeSystem")
    region = ext.get(EXT_REGION)
    if not isinstance(region, str) or not region:
        r.add(f"extension {EXT_REGION} (valueCode) is required", "CodeSystem")
    kind_word = ext.get(EXT_KIND, CatalogueKind.MATTER.value)
    try:
        kind = CatalogueKind(str(kind_word))
    except ValueError:
        r.add(f"unknown catalogue kind {kind_word!r}", "CodeSystem")
        kind = CatalogueKind.MATTER
    scheme = _read_scheme(r, ext)
    period = r.period(doc.get("effectivePeriod"), "CodeSystem.effectivePeriod")
    concepts: list[Concept] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(r.objs(doc, "concept", "CodeSystem")):
        row = i + 1
        where = f"CodeSystem.concept[{i}]"
        concept = _read_concept(r, raw, where, row, period)
        if concept is None:
            continue
        if concept.code in seen:
            first = seen[concept.code]
            r.add(f"duplicate code {concept.code!r} (first at row {first})", where, row)
            continue
        if scheme is not None:
            try:
                scheme.parse(concept.code)
            except CodeFormatError as exc:
                r.add(str(exc), where, row)
                continue
        seen[concept.code] = row
        concepts.append(concept)
    if scheme is None or not url or not version or not isinstance(region, str) or not region:
        return None, r.problems
    catalogue = Catalogue(
        url=url, version=version, region=RegionCode(region), kind=kind, scheme=scheme,
        concepts=tuple(concepts), title=r.text(doc, "title", "CodeSystem"), period=period,
        origin=source,
    )
    return catalogue, r.problems


def _read_scheme(r: _Reader, ext: Mapping[str, object]) -> CodeScheme | None:
    name = ext.get(EXT_SCHEME)
    pattern = ext.get(EXT_PATTERN)
    if not isinstance(name, str) or not name:
        r.add(f"extension {EXT_SCHEME} (valueString) is required", "CodeSystem")
        return None
    if pattern is None:
        builtin = BUILTIN_SCHEMES.get(name)
        if builtin is None:
            r.add(f"unknown code scheme {name!r} and no {EXT_PATTERN} given", "CodeSystem")
        return builtin
    if not isinstance(pattern, str):
        r.add(f"{EXT_PATTERN} must be a string", "CodeSystem")
        return None
    illustrative = ext.get(EXT_SCHEME_ILLUSTRATIVE, False)
    try:
        return CodeScheme(name=name, pattern=pattern, illustrative=illustrative is True,
                          description="declared by its catalogue")
    except SchemeError as exc:
        r.add(str(exc), "CodeSystem")
        return None


def _read_concept(r: _Reader, raw: Mapping[str, object], where: str, row: int,
                  default: Period) -> Concept | None:
    code = r.text(raw, "code", where, required=True, row=row)
    if not code:
        return None
    display = r.text(raw, "display", where, row=row)
    illustrative = cross = False
    start, end = default.start, default.end
    extra: list[tuple[str, str]] = []
    for j, prop in enumerate(r.objs(raw, "property", where)):
        pwhere = f"{where}.property[{j}]"
        name = r.text(prop, "code", pwhere, required=True, row=row)
        value = next((v for k, v in prop.items() if k.startswith("value")), None)
        if name == "illustrative":
            illustrative = r.flag(value, pwhere)
        elif name == "cross-province":
            cross = r.flag(value, pwhere)
        elif name == "valid-from":
            start = r.day(value, pwhere, row)
        elif name == "valid-until":
            end = r.day(value, pwhere, row)
        elif name and isinstance(value, str | int | float | bool):
            extra.append((name, str(value)))
    if start is not None and end is not None and end < start:
        r.add("valid-until is before valid-from", where, row)
        return None
    return Concept(code=code, display=display, period=Period(start, end),
                   illustrative=illustrative, cross_province=cross,
                   properties=tuple(extra), row=row)


def catalogue_from_fhir(data: bytes | str | Mapping[str, object], *,
                        source: str = "<memory>") -> Catalogue:
    """Read a FHIR CodeSystem as a catalogue; raises ``LoadError`` listing every problem."""
    catalogue, problems = read_catalogue(data, source)
    _raise_if(problems)
    assert catalogue is not None
    return catalogue


def _period_json(period: Period) -> dict[str, str]:
    out = {}
    if period.start:
        out["start"] = period.start.isoformat()
    if period.end:
        out["end"] = period.end.isoformat()
    return out


def catalogue_to_fhir(catalogue: Catalogue) -> dict[str, Any]:
    """Write a catalogue as a FHIR R5 CodeSystem (a JSON-ready dict)."""
    scheme = catalogue.scheme
    ext: list[dict[str, Any]] = [
        {"url": EXT_REGION, "valueCode": catalogue.region},
        {"url": EXT_KIND, "valueCode": catalogue.kind.value},
        {"url": EXT_SCHEME, "valueString": scheme.name},
    ]
    if BUILTIN_SCHEMES.get(scheme.name) != scheme:
        ext.append({"url": EXT_PATTERN, "valueString": scheme.pattern})
        ext.append({"url": EXT_SCHEME_ILLUSTRATIVE, "valueBoolean": scheme.illustrative})
    out: dict[str, Any] = {
        "resourceType": "CodeSystem",
        "extension": ext,
        "url": catalogue.url,
        "version": catalogue.version,
        "title": catalogue.title,
        "status": "active",
        "content": "complete",
    }
    if catalogue.period != ALWAYS:
        out["effectivePeriod"] = _period_json(catalogue.period)
    out["property"] = [{"code": c, "type": t, "description": d} for c, t, d in _PROPERTY_DEFS]
    concepts = []
    for concept in catalogue.concepts:
        props: list[dict[str, Any]] = [
            {"code": "illustrative", "valueBoolean": concept.illustrative},
        ]
        if concept.cross_province:
            props.append({"code": "cross-province", "valueBoolean": True})
        if concept.period.start and concept.period.start != catalogue.period.start:
            props.append({"code": "valid-from", "valueDateTime": concept.period.start.isoformat()})
        if concept.period.end and concept.period.end != catalogue.period.end:
            props.append({"code": "valid-until", "valueDateTime": concept.period.end.isoformat()})
        props.extend({"code": k, "valueString": v} for k, v in concept.properties)
        concepts.append({"code": concept.code, "display": concept.display, "property": props})
    out["concept"] = concepts
    return out


# ----------------------------------------------------------------- ConceptMap


def is_r4_conceptmap(doc: Mapping[str, object]) -> bool:
    """True when a ConceptMap object uses R4 element names (source[x], equivalence)."""
    if any(k in doc for k in ("sourceUri", "sourceCanonical", "targetUri", "targetCanonical")):
        return True
    groups = doc.get("group")
    if not isinstance(groups, list):
        return False
    for group in groups:
        elements = group.get("element") if isinstance(group, Mapping) else None
        for element in elements if isinstance(elements, list) else ():
            targets = element.get("target") if isinstance(element, Mapping) else None
            for target in targets if isinstance(targets, list) else ():
                if isinstance(target, Mapping) and "equivalence" in target:
                    return True
    return False


def _split_canonical(value: str) -> tuple[str, str | None]:
    url, bar, version = value.partition("|")
    return url, (version if bar else None)


def read_conceptmap(data: bytes | str | Mapping[str, object], source: str = "<memory>", *,
                    r4: bool | None = None) -> tuple[ConceptMap | None, list[LoadProblem]]:
    """Read a FHIR ConceptMap (R5, or R4 when ``r4`` or detected), listing every problem.

    Targets with problems are left out; the map is None only when its header is unusable.
    """
    r = _Reader(source)
    doc = parse_json(data, source, r.problems)
    if doc is None:
        return None, r.problems
    if doc.get("resourceType") != "ConceptMap":
        r.add("resourceType must be ConceptMap", "ConceptMap")
        return None, r.problems
    if r4 is None:
        r4 = is_r4_conceptmap(doc)
    url = r.text(doc, "url", "ConceptMap", required=True)
    version = r.text(doc, "version", "ConceptMap", required=True)
    status_word = r.text(doc, "status", "ConceptMap", required=True)
    status = MapStatus.RETIRED
    if status_word:
        try:
            status = MapStatus(status_word)
        except ValueError:
            r.add(f"unknown status {status_word!r} (draft, active or retired)", "ConceptMap")
    keys = ("sourceUri", "sourceCanonical", "targetUri", "targetCanonical") if r4 else (
        "sourceScopeUri", "sourceScopeCanonical", "targetScopeUri", "targetScopeCanonical")
    source_scope = _split_canonical(r.text(doc, keys[0], "ConceptMap")
                                    or r.text(doc, keys[1], "ConceptMap"))
    target_scope = _split_canonical(r.text(doc, keys[2], "ConceptMap")
                                    or r.text(doc, keys[3], "ConceptMap"))
    ext = r.extensions(doc, "ConceptMap")
    period = r.period(doc.get("effectivePeriod", ext.get(EXT_VALID_PERIOD)),
                      "ConceptMap.effectivePeriod")
    counter = [0]
    groups = []
    for gi, raw_group in enumerate(r.objs(doc, "group", "ConceptMap")):
        group = _read_group(r, raw_group, f"ConceptMap.group[{gi}]", r4=r4, counter=counter,
                            source_scope=source_scope, target_scope=target_scope)
        if group is not None:
            groups.append(group)
    first = groups[0] if groups else None
    src_url = source_scope[0] or (first.source if first else "")
    tgt_url = target_scope[0] or (first.target if first else "")
    if not src_url or not tgt_url:
        r.add("source and target catalogues must be named (scope or group)", "ConceptMap")
    if not url or not version or not status_word or not src_url or not tgt_url:
        return None, r.problems
    cmap = ConceptMap(
        url=url, version=version, status=status, source=src_url, target=tgt_url,
        source_version=source_scope[1] or (first.source_version if first else None),
        target_version=target_scope[1] or (first.target_version if first else None),
        groups=tuple(groups), period=period,
        reverse_reviewed=ext.get(EXT_REVERSE_REVIEWED) is True,
        title=r.text(doc, "title", "ConceptMap"),
        illustrative=ext.get(EXT_ILLUSTRATIVE) is True, origin=source,
    )
    return cmap, r.problems


def _read_group(r: _Reader, raw: Mapping[str, object], where: str, *, r4: bool,
                counter: list[int], source_scope: tuple[str, str | None],
                target_scope: tuple[str, str | None]) -> MapGroup | None:
    src, src_version = _split_canonical(r.text(raw, "source", where))
    tgt, tgt_version = _split_canonical(r.text(raw, "target", where))
    if r4:
        src_version = r.text(raw, "sourceVersion", where) or src_version
        tgt_version = r.text(raw, "targetVersion", where) or tgt_version
    elements = []
    for ei, raw_element in enumerate(r.objs(raw, "element", where)):
        element = _read_element(r, raw_element, f"{where}.element[{ei}]", r4, counter)
        if element is not None:
            elements.append(element)
    unmapped = None
    if "unmapped" in raw:
        unmapped = _read_unmapped(r, raw.get("unmapped"), where + ".unmapped", r4)
    return MapGroup(
        source=src or source_scope[0], target=tgt or target_scope[0], elements=tuple(elements),
        source_version=src_version or source_scope[1],
        target_version=tgt_version or target_scope[1], unmapped=unmapped,
    )


def _read_element(r: _Reader, raw: Mapping[str, object], where: str, r4: bool,
                  counter: list[int]) -> MapElement | None:
    code = r.text(raw, "code", where, required=True, row=counter[0] + 1)
    no_map = raw.get("noMap") is True
    targets = []
    for ti, raw_target in enumerate(r.objs(raw, "target", where)):
        counter[0] += 1
        row = counter[0]
        twhere = f"{where}.target[{ti}]"
        tcode = r.text(raw_target, "code", twhere, row=row)
        word = r.text(raw_target, "equivalence" if r4 else "relationship", twhere,
                      required=True, row=row)
        relationship = _relationship(r, word, r4, twhere, row) if word else None
        if r4 and not tcode and word == "unmatched":
            no_map = True  # R4 'unmatched' without a code is R5 noMap
            continue
        if not tcode:
            r.add("target has no code", twhere, row)
            continue
        if relationship is None:
            continue
        ext = r.extensions(raw_target, twhere)
        targets.append(MapTarget(
            code=tcode, relationship=relationship,
            display=r.text(raw_target, "display", twhere, row=row),
            period=r.period(ext.get(EXT_VALID_PERIOD), twhere + ".valid-period", row),
            depends_on=_read_depends(r, raw_target, twhere, r4, row),
            comment=r.text(raw_target, "comment", twhere, row=row), row=row,
        ))
    if not code:
        return None
    return MapElement(code=code, targets=tuple(targets), display=r.text(raw, "display", where),
                      no_map=no_map and not targets, row=counter[0] or None)


def _relationship(r: _Reader, word: str, r4: bool, where: str, row: int) -> Relationship | None:
    if r4:
        found = R4_EQUIVALENCE.get(word)
        if found is None:
            r.add(f"unknown R4 equivalence {word!r}", where, row)
        return found
    try:
        return Relationship(word)
    except ValueError:
        hint = " (an R4 word? read the file as R4)" if word in R4_EQUIVALENCE else ""
        r.add(f"unknown relationship {word!r}{hint}", where, row)
        return None


def _read_depends(r: _Reader, raw: Mapping[str, object], where: str, r4: bool,
                  row: int) -> tuple[DependsOn, ...]:
    found = []
    for di, dep in enumerate(r.objs(raw, "dependsOn", where)):
        dwhere = f"{where}.dependsOn[{di}]"
        attribute = r.text(dep, "property" if r4 else "attribute", dwhere, required=True, row=row)
        value: object
        if r4:
            value = dep.get("value")
        else:
            value = next((v for k, v in dep.items() if k.startswith("value")), None)
            if isinstance(value, Mapping):  # valueCoding
                value = value.get("code")
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, str) or not value:
            r.add("dependsOn needs a string value", dwhere, row)
            continue
        if attribute:
            found.append(DependsOn(attribute, value))
    return tuple(sorted(found, key=lambda d: (d.attribute, d.value)))


def _read_unmapped(r: _Reader, value: object, where: str, r4: bool) -> Unmapped | None:
    raw = r.obj(value, where)
    if raw is None:
        return None
    word = r.text(raw, "mode", where, required=True)
    mode = _R4_UNMAPPED.get(word) if r4 else None
    if mode is None:
        try:
            mode = UnmappedMode(word)
        except ValueError:
            r.add(f"unknown unmapped mode {word!r}", where)
            return None
    relationship = Relationship.RELATED
    rel_word = r.text(raw, "relationship", where)
    if rel_word:
        try:
            relationship = Relationship(rel_word)
        except ValueError:
            r.add(f"unknown relationship {rel_word!r}", where)
    other = r.text(raw, "url" if r4 else "otherMap", where)
    unmapped = Unmapped(mode=mode, code=r.text(raw, "code", where),
                        display=r.text(raw, "display", where), relationship=relationship,
                        other_map=_split_canonical(other)[0])
    if mode is UnmappedMode.FIXED and not unmapped.code:
        r.add("unmapped mode 'fixed' needs a code", where)
        return None
    if mode is UnmappedMode.OTHER_MAP and not unmapped.other_map:
        r.add("unmapped mode 'other-map' needs otherMap", where)
        return None
    return unmapped


def conceptmap_from_fhir(data: bytes | str | Mapping[str, object], *,
                         source: str = "<memory>") -> ConceptMap:
    """Read a FHIR R5 ConceptMap; raises ``LoadError`` listing every problem."""
    cmap, problems = read_conceptmap(data, source, r4=False)
    _raise_if(problems)
    assert cmap is not None
    return cmap


def conceptmap_from_fhir_r4(data: bytes | str | Mapping[str, object], *,
                            source: str = "<memory>") -> ConceptMap:
    """Read a FHIR R4 ConceptMap, turning ``equivalence`` into R5 relationships."""
    cmap, problems = read_conceptmap(data, source, r4=True)
    _raise_if(problems)
    assert cmap is not None
    return cmap


def _canonical(url: str, version: str | None) -> str:
    return f"{url}|{version}" if version else url


def conceptmap_to_fhir(cmap: ConceptMap) -> dict[str, Any]:
    """Write a concept map as a FHIR R5 ConceptMap (a JSON-ready dict)."""
    ext: list[dict[str, Any]] = [
        {"url": EXT_REVERSE_REVIEWED, "valueBoolean": cmap.reverse_reviewed},
    ]
    if cmap.illustrative:
        ext.append({"url": EXT_ILLUSTRATIVE, "valueBoolean": True})
    out: dict[str, Any] = {
        "resourceType": "ConceptMap",
        "extension": ext,
        "url": cmap.url,
        "version": cmap.version,
        "title": cmap.title,
        "status": cmap.status.value,
    }
    if cmap.period != ALWAYS:
        out["effectivePeriod"] = _period_json(cmap.period)
    out["sourceScopeUri"] = cmap.source
    out["targetScopeUri"] = cmap.target
    attributes = sorted({d.attribute for g in cmap.groups for e in g.elements
                         for t in e.targets for d in t.depends_on})
    if attributes:
        out["additionalAttribute"] = [{"code": a, "type": "code"} for a in attributes]
    out["group"] = [_group_json(g) for g in cmap.groups]
    return out


def _group_json(group: MapGroup) -> dict[str, Any]:
    elements = []
    for element in group.elements:
        item: dict[str, Any] = {"code": element.code}
        if element.display:
            item["display"] = element.display
        if element.no_map:
            item["noMap"] = True
        targets = []
        for target in element.targets:
            t: dict[str, Any] = {"code": target.code}
            if target.display:
                t["display"] = target.display
            t["relationship"] = target.relationship.value
            if target.period != ALWAYS:
                t["extension"] = [{"url": EXT_VALID_PERIOD,
                                   "valuePeriod": _period_json(target.period)}]
            if target.comment:
                t["comment"] = target.comment
            if target.depends_on:
                t["dependsOn"] = [{"attribute": d.attribute, "valueCode": d.value}
                                  for d in target.depends_on]
            targets.append(t)
        if targets:
            item["target"] = targets
        elements.append(item)
    out: dict[str, Any] = {
        "source": _canonical(group.source, group.source_version),
        "target": _canonical(group.target, group.target_version),
        "element": elements,
    }
    if group.unmapped is not None:
        u = group.unmapped
        unmapped: dict[str, Any] = {"mode": u.mode.value}
        if u.code:
            unmapped["code"] = u.code
        if u.display:
            unmapped["display"] = u.display
        if u.mode is not UnmappedMode.OTHER_MAP:
            unmapped["relationship"] = u.relationship.value
        if u.other_map:
            unmapped["otherMap"] = u.other_map
        out["unmapped"] = unmapped
    return out
