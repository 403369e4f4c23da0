"""``ecert-gateway registry import|coverage``: add catalogues and maps, report coverage.

``registry import FILE... --data-dir DIR`` checks FHIR R5 CodeSystem and
ConceptMap JSON, FHIR R4 ConceptMap JSON and CSV crosswalks *together with the
registry the gateway loads now* (the base folder plus ``DIR/registry/``),
prints every problem with its file and row, and only when there is none
copies the files into ``DIR/registry/`` (a file there replaces a base file of
the same name) and records the import in the audit log. The gateway reads the
registry at start-up: restart it to serve the new files.

``registry coverage --data-dir DIR [--at YYYY-MM-DD]`` prints, per partner
region, how Huzhou's 跨省通办 matters are matched there.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

from gateway.audit.event import ActorKind, AuditEvent, AuditUnavailableError, EventType
from gateway.cli import CommandParser
from gateway.matters.service import MatterService, china_today, read_registry_files, registry_dirs
from gateway.settings import Settings
from registry import LoadProblem, LoadReport, load_bundle_with_report

__all__ = ["register"]

_SUFFIXES = (".json", ".csv")


def _fail(command: str, reason: str) -> int:
    print(f"ecert-gateway registry {command}: {reason}", file=sys.stderr)
    return 1


def _print_problems(report: LoadReport) -> None:
    for problem in report.problems:
        print(str(problem), file=sys.stderr)


def _read_new(paths: list[str]) -> tuple[dict[str, bytes], list[LoadProblem]]:
    """The files to import, keyed by the path as given; problems of name and shape."""
    files: dict[str, bytes] = {}
    problems: list[LoadProblem] = []
    names: dict[str, str] = {}
    for given in paths:
        path = Path(given)
        if path.suffix.lower() not in _SUFFIXES:
            problems.append(LoadProblem(given, None, "not a .json or .csv file"))
            continue
        if path.name in names:
            problems.append(LoadProblem(given, None, f"has the same file name as {names[path.name]}"
                                        " (files are stored by name)"))
            continue
        names[path.name] = given
        files[given] = path.read_bytes()
    return files, problems


def _stage_and_commit(target: Path, files: dict[str, bytes], settings: Settings) -> None:
    """Write the files beside their place, record the import, then move them in."""
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=target))
    try:
        staged: list[tuple[Path, Path]] = []
        for given, data in files.items():
            name = Path(given).name
            tmp = staging / name
            with tmp.open("wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            staged.append((tmp, target / name))
        _record(settings, files)
        for tmp, final in staged:
            tmp.replace(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _record(settings: Settings, files: dict[str, bytes]) -> None:
    """Record the import in the audit log: without the record, nothing is imported."""
    from gateway.audit import append_cli_event  # noqa: PLC0415 - opens the log only when needed

    event = AuditEvent(
        event_type=EventType.OPERATOR_CHANGE,
        actor_kind=ActorKind.CLI,
        actor_id="cli",
        at=datetime.now(UTC),
        outcome="ok",
        details={"action": "registry-import",
                 "files": {Path(given).name: hashlib.sha256(data).hexdigest()
                           for given, data in files.items()}},
    )
    try:
        append_cli_event(settings.data_dir, event, postgres_dsn=settings.postgres_dsn,
                         gateway_id=settings.gateway_id)
    except AuditUnavailableError as exc:
        raise AuditUnavailableError(f"nothing imported: {exc}") from exc


def _import(args: argparse.Namespace, settings: Settings) -> int:
    base, overlay = registry_dirs(settings)
    new, problems = _read_new(args.files)
    current = read_registry_files(base, overlay)
    replaced = {Path(given).name for given in new}
    bundle = {name: data for name, data in current.items() if Path(name).name not in replaced}
    bundle.update(new)
    registry, report = load_bundle_with_report(bundle)
    report = LoadReport.of([*problems, *report.problems])
    if not report.ok:
        _print_problems(report)
        return _fail("import", f"{len(report.problems)} problem(s) found; nothing imported")
    _stage_and_commit(overlay, new, settings)
    for given in new:
        print(f"imported {given} -> {overlay / Path(given).name}")
    print(f"registry now holds {len(registry.catalogues)} catalogue version(s) and "
          f"{len(registry.maps)} map(s); restart the gateway to serve them")
    return 0


def _coverage(args: argparse.Namespace, settings: Settings) -> int:
    base, overlay = registry_dirs(settings)
    service, report = MatterService.from_files(read_registry_files(base, overlay))
    if not report.ok:
        _print_problems(report)
        return _fail("coverage", f"{len(report.problems)} problem(s) in the registry files")
    at: date = args.at or china_today()
    found = service.coverage(at=at)
    print(f"Huzhou ({service.huzhou_region}) 跨省通办 matters by best match, on {at.isoformat()}")
    header = ("partner", "total", "equivalent", "narrower/broader", "related", "none")
    rows = [header] + [
        (c.partner, str(c.total), str(c.equivalent), str(c.narrower_or_broader),
         str(c.related), str(c.none))
        for c in found.values()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(row[1:], widths[1:],
                                                                         strict=True)]
        print("  ".join(cells))
    return 0


def _day(text: str) -> date:
    reason = argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}")
    if len(text) != 10:
        raise reason
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise reason from exc


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``registry import`` and ``registry coverage`` to the top-level parser."""
    group = subparsers.add_parser("registry", help="matter catalogues and concept maps")
    commands = group.add_subparsers(dest="registry_command", required=True,
                                    parser_class=CommandParser)

    imp = commands.add_parser(
        "import", help="check catalogues/maps (FHIR JSON or CSV) and add them to the data folder")
    imp.add_argument("files", nargs="+", metavar="FILE")
    imp.set_defaults(func=_import)

    cov = commands.add_parser("coverage", help="Huzhou's 跨省通办 matters matched per partner")
    cov.add_argument("--at", type=_day, default=None, help="date YYYY-MM-DD (default: today)")
    cov.set_defaults(func=_coverage)
