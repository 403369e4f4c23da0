"""Bundles: a set of named files (bytes) turned into a registry, with every problem reported.

The caller reads the files; this module only parses bytes. A file is read by
its name and content: ``*.csv`` is a crosswalk, ``*.json`` a FHIR CodeSystem
or ConceptMap (R4 or R5, told apart by its element names). Catalogues are
loaded before maps so every map is checked against the catalogues it names.
"""

from __future__ import annotations

from collections.abc import Mapping

from registry._csv import read_csv_map
from registry._fhir import parse_json, read_catalogue, read_conceptmap
from registry._model import Catalogue, ConceptMap
from registry._registry import Registry
from registry._report import LoadProblem, LoadReport

__all__ = ["load_bundle", "load_bundle_with_report"]


def load_bundle_with_report(files: Mapping[str, bytes], *, include_draft: bool = False
                            ) -> tuple[Registry, LoadReport]:
    """Build a registry from what loads cleanly and report every problem with file and row."""
    problems: list[LoadProblem] = []
    catalogues: list[Catalogue] = []
    maps: list[ConceptMap] = []
    for name in sorted(files):
        data = files[name]
        lower = name.lower()
        if lower.endswith(".csv"):
            cmap, found = read_csv_map(data, name)
            problems += found
            if cmap is not None:
                maps.append(cmap)
            continue
        if not lower.endswith(".json"):
            problems.append(LoadProblem(name, None, "not a .json or .csv file"))
            continue
        doc = parse_json(data, name, problems)
        if doc is None:
            continue
        kind = doc.get("resourceType")
        if kind == "CodeSystem":
            catalogue, found = read_catalogue(doc, name)
            problems += found
            if catalogue is not None:
                catalogues.append(catalogue)
        elif kind == "ConceptMap":
            cmap, found = read_conceptmap(doc, name)
            problems += found
            if cmap is not None:
                maps.append(cmap)
        else:
            problems.append(LoadProblem(name, None, f"unsupported resourceType {kind!r}"))
    registry, report = Registry.build(catalogues, maps, include_draft=include_draft)
    found = sorted([*problems, *report.problems], key=lambda p: (p.source, p.row or 0))
    return registry, LoadReport.of(found)


def load_bundle(files: Mapping[str, bytes], *, include_draft: bool = False) -> Registry:
    """Build a registry from named files; raises ``LoadError`` listing every problem."""
    registry, report = load_bundle_with_report(files, include_draft=include_draft)
    report.raise_for_problems()
    return registry
