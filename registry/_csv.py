"""CSV crosswalks: a concept map kept in a spreadsheet.

Layout (UTF-8, optional BOM)::

    #url,urn:ecert:map:330500-340100        <- map metadata rows: '#key', value
    #version,2024.1
    #status,active
    #source,urn:ecert:catalogue:330500:matter
    #target,urn:ecert:catalogue:340100:matter
    source_code,source_display,target_code,target_display,relationship,depends_on,valid_from,valid_until,comment
    许可-00344-001-01,非林地采伐许可,AH-3401-XK00123,...,equivalent,,2024-01-01,,

Metadata keys: url, version, status, source, target (required); source_version,
target_version, valid_from, valid_until, reverse_reviewed, illustrative, title,
unmapped_mode, unmapped_code, unmapped_display, unmapped_relationship,
unmapped_other_map. ``depends_on`` holds ``attribute=value`` pairs joined by
``;``. A row with a source code and an empty target code records "no map".
Rows are numbered by physical line, the header included.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from datetime import date

from registry._errors import LoadError
from registry._model import (
    ALWAYS,
    ConceptMap,
    DependsOn,
    MapElement,
    MapGroup,
    MapStatus,
    MapTarget,
    Period,
    Relationship,
    Unmapped,
    UnmappedMode,
)
from registry._report import LoadProblem, LoadReport

__all__ = ["CSV_COLUMNS", "conceptmap_from_csv", "conceptmap_to_csv", "read_csv_map"]

CSV_COLUMNS = ("source_code", "source_display", "target_code", "target_display", "relationship",
               "depends_on", "valid_from", "valid_until", "comment")
"""Columns of a crosswalk CSV, in order; the first five are required."""

_REQUIRED = CSV_COLUMNS[:5]
_Add = Callable[[int | None, str], None]
_TRUE = {"true", "yes", "1", "y"}
_FALSE = {"false", "no", "0", "n", ""}


def _day(text: str) -> date:
    return date.fromisoformat(text.strip())


def read_csv_map(data: bytes | str, source: str = "<memory>"
                 ) -> tuple[ConceptMap | None, list[LoadProblem]]:
    """Read a CSV crosswalk, keeping good rows and listing every problem with its line."""
    problems: list[LoadProblem] = []

    def add(row: int | None, message: str) -> None:
        problems.append(LoadProblem(source, row, message))

    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            add(None, f"not UTF-8: {exc}")
            return None, problems
    else:
        text = data.removeprefix("\ufeff")
    meta: dict[str, str] = {}
    header: list[str] | None = None
    rows: list[tuple[int, dict[str, str]]] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for cells in reader:
            line = reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue
            first = cells[0].strip()
            if header is None and first.startswith("#"):
                meta[first[1:].strip().lower()] = cells[1].strip() if len(cells) > 1 else ""
                continue
            if header is None:
                header = [c.strip().lower() for c in cells]
                missing = [c for c in _REQUIRED if c not in header]
                if missing:
                    add(line, f"header lacks column(s) {', '.join(missing)}")
                    return None, problems
                continue
            if len(cells) > len(header):
                add(line, f"{len(cells)} cells but the header has {len(header)}")
                continue
            rows.append((line, {k: v.strip() for k, v in zip(header, cells, strict=False)}))
    except csv.Error as exc:
        add(reader.line_num, f"CSV syntax: {exc}")
        return None, problems
    if header is None:
        add(None, "no header row")
        return None, problems

    for key in ("url", "version", "status", "source", "target"):
        if not meta.get(key):
            add(None, f"metadata row '#{key}' is required")
    status = MapStatus.DRAFT
    try:
        status = MapStatus(meta.get("status", "draft"))
    except ValueError:
        add(None, f"unknown status {meta.get('status')!r}")
    period = ALWAYS
    try:
        start = _day(meta["valid_from"]) if meta.get("valid_from") else None
        end = _day(meta["valid_until"]) if meta.get("valid_until") else None
        period = Period(start, end)
    except ValueError as exc:
        add(None, f"map validity: {exc}")
    flags = {}
    for key in ("reverse_reviewed", "illustrative"):
        word = meta.get(key, "").lower()
        if word not in _TRUE | _FALSE:
            add(None, f"'#{key}' must be true or false, not {word!r}")
        flags[key] = word in _TRUE
    unmapped = _unmapped(meta, add)

    elements: dict[str, tuple[str, list[MapTarget], int]] = {}
    no_map: set[str] = set()
    for line, row in rows:
        target = _row_target(line, row, add)
        code = row.get("source_code", "")
        if not code:
            add(line, "source_code is empty")
            continue
        if target is None and not row.get("target_code"):
            no_map.add(code)
        display, targets, first_line = elements.get(
            code, (row.get("source_display", ""), [], line))
        if target is not None:
            targets.append(target)
        elements[code] = (display, targets, first_line)
    if any(not meta.get(k) for k in ("url", "version", "source", "target")):
        return None, problems
    group = MapGroup(
        source=meta["source"], target=meta["target"],
        source_version=meta.get("source_version") or None,
        target_version=meta.get("target_version") or None,
        elements=tuple(
            MapElement(code=code, display=display, targets=tuple(targets),
                       no_map=code in no_map and not targets, row=first_line)
            for code, (display, targets, first_line) in elements.items()
        ),
        unmapped=unmapped,
    )
    cmap = ConceptMap(
        url=meta["url"], version=meta["version"], status=status, source=group.source,
        target=group.target, source_version=group.source_version,
        target_version=group.target_version, groups=(group,), period=period,
        reverse_reviewed=flags["reverse_reviewed"], illustrative=flags["illustrative"],
        title=meta.get("title", ""), origin=source,
    )
    return cmap, problems


def _unmapped(meta: dict[str, str], add: _Add) -> Unmapped | None:
    mode_word = meta.get("unmapped_mode", "")
    if not mode_word:
        return None
    try:
        mode = UnmappedMode(mode_word)
        relationship = Relationship(meta.get("unmapped_relationship") or "related-to")
    except ValueError as exc:
        add(None, f"unmapped: {exc}")
        return None
    return Unmapped(mode=mode, code=meta.get("unmapped_code", ""),
                    display=meta.get("unmapped_display", ""), relationship=relationship,
                    other_map=meta.get("unmapped_other_map", ""))


def _row_target(line: int, row: dict[str, str], add: _Add) -> MapTarget | None:
    code = row.get("target_code", "")
    word = row.get("relationship", "")
    if not code:
        if word:
            add(line, "relationship given but target_code is empty")
        return None
    try:
        relationship = Relationship(word)
    except ValueError:
        add(line, f"unknown relationship {word!r}")
        return None
    depends = []
    for pair in filter(None, (p.strip() for p in row.get("depends_on", "").split(";"))):
        attribute, eq, value = pair.partition("=")
        if not eq or not attribute.strip() or not value.strip():
            add(line, f"depends_on {pair!r} is not attribute=value")
            return None
        depends.append(DependsOn(attribute.strip(), value.strip()))
    try:
        start = _day(row["valid_from"]) if row.get("valid_from") else None
        end = _day(row["valid_until"]) if row.get("valid_until") else None
    except ValueError as exc:
        add(line, f"bad date: {exc}")
        return None
    if start is not None and end is not None and end < start:
        add(line, "valid_until is before valid_from")
        return None
    return MapTarget(code=code, relationship=relationship, display=row.get("target_display", ""),
                     period=Period(start, end),
                     depends_on=tuple(sorted(depends, key=lambda d: (d.attribute, d.value))),
                     comment=row.get("comment", ""), row=line)


def conceptmap_from_csv(data: bytes | str, *, source: str = "<memory>") -> ConceptMap:
    """Read a CSV crosswalk; raises ``LoadError`` listing every problem with its line."""
    cmap, problems = read_csv_map(data, source)
    if problems:
        raise LoadError(LoadReport.of(problems))
    assert cmap is not None
    return cmap


def conceptmap_to_csv(cmap: ConceptMap) -> str:
    """Write a single-group concept map as a CSV crosswalk (text)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    group = cmap.groups[0] if cmap.groups else None
    meta: list[tuple[str, str]] = [
        ("url", cmap.url), ("version", cmap.version), ("status", cmap.status.value),
        ("title", cmap.title), ("source", cmap.source), ("target", cmap.target),
        ("source_version", cmap.source_version or ""),
        ("target_version", cmap.target_version or ""),
        ("valid_from", cmap.period.start.isoformat() if cmap.period.start else ""),
        ("valid_until", cmap.period.end.isoformat() if cmap.period.end else ""),
        ("reverse_reviewed", str(cmap.reverse_reviewed).lower()),
        ("illustrative", str(cmap.illustrative).lower()),
    ]
    if group is not None and group.unmapped is not None:
        u = group.unmapped
        meta += [("unmapped_mode", u.mode.value), ("unmapped_code", u.code),
                 ("unmapped_display", u.display), ("unmapped_relationship", u.relationship.value),
                 ("unmapped_other_map", u.other_map)]
    writer.writerows([f"#{k}", v] for k, v in meta if v)
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_rows(cmap.groups))
    return out.getvalue()


def _rows(groups: Iterable[MapGroup]) -> Iterable[list[str]]:
    for group in groups:
        for element in group.elements:
            if not element.targets:
                yield [element.code, element.display, "", "", "", "", "", "", ""]
            for t in element.targets:
                yield [
                    element.code, element.display, t.code, t.display, t.relationship.value,
                    ";".join(f"{d.attribute}={d.value}" for d in t.depends_on),
                    t.period.start.isoformat() if t.period.start else "",
                    t.period.end.isoformat() if t.period.end else "", t.comment,
                ]
