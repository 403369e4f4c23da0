"""The matter registry inside the gateway: loaded once at start-up, asked per request.

``MatterService`` holds a ``registry.Registry`` built from the files of a
folder (the repository's ``config/registry/`` unless ``[registry] dir`` says
otherwise) overlaid with what ``ecert-gateway registry import`` placed in
``DATA_DIR/registry/``. Files are read in an executor, never on the loop. The
service answers the ``MatterResolver`` port of verification and the matter
routes of ``gateway.matters.routes``.

"Today" is the date in China (UTC+8): catalogues and maps are published with
Chinese calendar dates, so a translation at 07:00 UTC+8 on the 1st must see
the catalogue of the 1st.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path

from gateway.infra.metrics import MetricFamily
from gateway.settings import Settings
from gateway.verification.service import MatterLink, utc_now
from registry import (
    HUZHOU,
    NATIONAL,
    Catalogue,
    CatalogueKind,
    CodeFormatError,
    Coverage,
    LoadReport,
    MatterCode,
    MatterDetails,
    RegionCode,
    Registry,
    RegistryError,
    Relationship,
    Translation,
    UnknownRegionError,
    load_bundle_with_report,
)
from trust import CHINA_TZ

__all__ = [
    "CHINA_TZ",
    "DEFAULT_REGISTRY_DIR",
    "MatterService",
    "china_today",
    "load_service",
    "read_registry_files",
    "registry_dirs",
]

_log = logging.getLogger("gateway.matters.service")

DEFAULT_REGISTRY_DIR = Path(__file__).resolve().parents[2] / "config" / "registry"
"""The sample catalogues and maps shipped with the repository."""

MAX_ANSWERS = 4096
"""Rendered translation answers ``MatterService.answers`` holds at most."""

MAX_ANSWER_BYTES = 8_000_000
"""Bytes of request bodies and answers ``MatterService.answers`` holds at most."""

MAX_KEPT_BODY = 1024
"""A request body longer than this (a translation request is about 150 bytes; a longer
one carries members the route ignores) is answered but its answer not kept."""

DATA_SUBDIR = "registry"
"""Folder under the data folder that ``registry import`` fills."""

_SUFFIXES = (".json", ".csv")


def china_today() -> date:
    """Today's date in China (UTC+8)."""
    return datetime.now(CHINA_TZ).date()


def registry_dirs(settings: Settings) -> tuple[Path, Path]:
    """The base folder (default or ``[registry] dir``) and the data folder's import folder."""
    return settings.registry.dir or DEFAULT_REGISTRY_DIR, settings.data_dir / DATA_SUBDIR


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in _SUFFIXES and not p.name.startswith("."))


def read_registry_files(base: Path, overlay: Path | None = None) -> dict[str, bytes]:
    """Read every ``*.json`` and ``*.csv`` under ``base``, then ``overlay`` on top (blocking).

    A file of ``overlay`` replaces a file of ``base`` with the same name, so an
    imported new edition of a sample map takes the sample's place. Names are
    the files' paths, so load problems point at the file to fix. Raises
    ``FileNotFoundError`` when ``base`` is missing.
    """
    if not base.is_dir():
        raise FileNotFoundError(f"registry folder {base} not found")
    chosen: dict[str, Path] = {p.name: p for p in _files_under(base)}
    if overlay is not None and overlay.is_dir():
        chosen.update({p.name: p for p in _files_under(overlay)})
    return {str(path): path.read_bytes() for path in chosen.values()}


class MatterService:
    """The loaded registry, with the gateway's view of it: today's date, code checks, links.

    It implements ``gateway.verification.service.MatterResolver``; those two methods
    never raise on an unknown region or code (they answer the code alone, or
    nothing). ``translate`` and ``lookup`` raise the registry's errors for the
    HTTP layer to map.

    A translation asked for on its own (``POST /v1/matters/translate``) is a
    look-up in public catalogues: it is counted (``count``, on ``/metrics``),
    not audited. It is audited only as part of a verification or a partner
    query, in their records' ``matters_after``.
    """

    def __init__(self, registry: Registry, *, huzhou_region: str = HUZHOU,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.registry = registry
        self.huzhou_region = RegionCode(huzhou_region)
        self.now = clock
        """The time now (the app's clock): when a translation was received."""
        by_region: dict[tuple[CatalogueKind, RegionCode], list[Catalogue]] = {}
        for catalogue in registry.catalogues:
            by_region.setdefault((catalogue.kind, catalogue.region), []).append(catalogue)
        self._by_region = by_region
        self.outcomes: dict[str, int] = {}
        """Translations asked for on their own, by outcome (``count``)."""
        self.answers: dict[tuple[bytes, date], tuple[str, bytes]] = {}
        """Rendered answers of ``POST /v1/matters/translate``, by request body and the day
        it was asked on (a body without ``at`` means today): the outcome counted and the
        JSON bytes. The registry does not change while the service runs, so an answer
        holds for its body all day; ``remember_answer`` bounds the memo."""
        self._answer_bytes = 0
        self._today: tuple[float, float, date] = (0.0, 0.0, date.min)
        """The system clock's day in China, from and until when (``today``)."""

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], *, huzhou_region: str = HUZHOU,
                   clock: Callable[[], datetime] = utc_now
                   ) -> tuple[MatterService, LoadReport]:
        """Build from named file contents; the report lists every problem (the service is
        built from what loaded cleanly)."""
        registry, report = load_bundle_with_report(files)
        return cls(registry, huzhou_region=huzhou_region, clock=clock), report

    def today(self) -> date:
        """Today's date in China (UTC+8) by the service's clock: the date translations
        and matter links are made for when none is given."""
        if self.now is not utc_now:
            return self.now().astimezone(CHINA_TZ).date()
        # The system clock: the day is kept with its bounds (a clock set back is seen).
        now = time.time()
        since, until, day = self._today
        if since <= now < until:
            return day
        moment = datetime.fromtimestamp(now, CHINA_TZ)
        day = moment.date()
        start = datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ).timestamp()
        self._today = (start, start + 86_400, day)
        return day

    # ------------------------------------------------------------------ metrics

    def count(self, outcome: str) -> None:
        """Count one translation asked for on its own: ``ok`` (translated), ``refused`` (a
        well-shaped code without a translation) or ``invalid`` (a region or code the
        registry refused, answered as a 4xx problem)."""
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def remember_answer(self, key: tuple[bytes, date], outcome: str, body: bytes) -> None:
        """Keep a rendered translation (``answers``) unless its request body is longer than
        ``MAX_KEPT_BODY``; at ``MAX_ANSWERS`` held, ``MAX_ANSWER_BYTES`` reached or a new
        day, the memo starts afresh (a window asks the same few hundred translations all
        day)."""
        if len(key[0]) > MAX_KEPT_BODY:
            return
        answers = self.answers
        size = len(key[0]) + len(body)
        if (len(answers) >= MAX_ANSWERS or self._answer_bytes + size > MAX_ANSWER_BYTES
                or (answers and next(iter(answers))[1] != key[1])):
            answers.clear()
            self._answer_bytes = 0
        answers[key] = (outcome, body)
        self._answer_bytes += size

    def metric_families(self) -> list[MetricFamily]:
        """Translations asked for on their own, by outcome, for ``/metrics``."""
        return [MetricFamily(
            "ecert_translations", "counter",
            "Matter translations asked for on their own (not audited), by outcome.",
            [({"outcome": k}, v) for k, v in sorted(self.outcomes.items())])]

    # ------------------------------------------------------------------ checks

    def check_code(self, region: str, code: str, *, at: date | None = None,
                   kind: CatalogueKind = CatalogueKind.MATTER) -> None:
        """Raise ``UnknownRegionError`` or ``CodeFormatError`` unless ``code`` has the shape
        of the region's catalogue (the version valid on ``at``, or any version)."""
        catalogues = self._by_region.get((kind, RegionCode(region)))
        if not catalogues:
            raise UnknownRegionError(region, kind.value)
        current = [c for c in catalogues if at is None or c.period.contains(at)] or catalogues
        first_error: CodeFormatError | None = None
        for catalogue in current:
            try:
                catalogue.scheme.parse(code)
            except CodeFormatError as exc:
                first_error = first_error or exc
            else:
                return
        assert first_error is not None
        raise first_error

    def partner_regions(self) -> list[RegionCode]:
        """Regions with a matter catalogue other than Huzhou and the national list."""
        return sorted(r for r in self.registry.regions(CatalogueKind.MATTER)
                      if r not in (self.huzhou_region, NATIONAL))

    # ------------------------------------------------------------------ queries

    def translate(self, source_region: str, code: str, target_region: str, *, at: date,
                  conditions: Mapping[str, str] | None = None) -> Translation:
        """Translate after checking both regions and the code's shape.

        Raises ``UnknownRegionError`` or ``CodeFormatError``; an unknown code of
        the right shape is ``result`` false.
        """
        target = RegionCode(target_region)
        if (CatalogueKind.MATTER, target) not in self._by_region:
            raise UnknownRegionError(target_region, CatalogueKind.MATTER.value)
        self.check_code(source_region, code, at=at)
        return self.registry.translate(RegionCode(source_region), MatterCode(code), target,
                                       at=at, conditions=conditions)

    def lookup(self, region: str, code: str, *, at: date | None = None) -> MatterDetails:
        """A matter's details; raises ``UnknownRegionError``, ``CodeFormatError`` or
        ``UnknownCodeError``."""
        self.check_code(region, code, at=at)
        return self.registry.lookup(RegionCode(region), MatterCode(code), at=at)

    def coverage(self, *, at: date) -> Mapping[RegionCode, Coverage]:
        """Huzhou's 跨省通办 matters counted by best match in every partner's catalogue."""
        return self.registry.coverage(self.partner_regions(), at=at,
                                      huzhou_region=self.huzhou_region)

    # ------------------------------------------------------------------ MatterResolver

    def partner_codes(self, region: str, code: str, partner_region: str) -> frozenset[str]:
        """The code itself plus every match (not ``not-related-to``) in the partner's catalogue
        today; only the code when the registry cannot translate it."""
        try:
            answer = self.registry.translate(RegionCode(region), MatterCode(code),
                                             RegionCode(partner_region), at=self.today())
        except RegistryError:
            return frozenset({code})
        return frozenset({code}).union(
            m.code for m in answer.matches if m.relationship is not Relationship.NOT_RELATED)

    def huzhou_matters(self, issuer_region: str, codes: Sequence[str]) -> list[MatterLink]:
        """Huzhou matters a licence's own matter codes translate to today.

        ``map`` is the ``url|version`` of the map used (of each map, space
        separated, for a chain through the national catalogue). Unknown regions
        and codes give nothing.
        """
        at = self.today()
        links: dict[MatterLink, None] = {}
        for code in codes:
            try:
                answer = self.registry.translate(RegionCode(issuer_region), MatterCode(code),
                                                 self.huzhou_region, at=at)
            except RegistryError:
                continue
            for match in answer.matches:
                if match.relationship is Relationship.NOT_RELATED:
                    continue
                links[MatterLink(region=self.huzhou_region, code=match.code,
                                 relationship=match.relationship.value,
                                 map=" ".join(match.maps))] = None
        return list(links)


    def types_serving(self, region: str, code: str) -> frozenset[str] | None:
        """The licence types that serve a matter of Huzhou's catalogue today (their
        ``serves-matter``), as Huzhou's codes and their equivalent national codes; None
        when the registry names none (or the region is not Huzhou)."""
        if region != self.huzhou_region:
            return None
        at = self.today()
        try:
            local = self.registry.licence_types_serving(self.huzhou_region, MatterCode(code),
                                                        at=at)
        except RegistryError:
            return None
        found: set[str] = set(local)
        for type_code in local:
            try:
                answer = self.registry.translate(self.huzhou_region, type_code, NATIONAL,
                                                 at=at, kind=CatalogueKind.LICENCE_TYPE)
            except RegistryError:
                continue
            found.update(m.code for m in answer.matches
                         if m.relationship is Relationship.EQUIVALENT)
        return frozenset(found) or None


def _load(base: Path, overlay: Path, clock: Callable[[], datetime]
          ) -> tuple[MatterService, LoadReport]:
    return MatterService.from_files(read_registry_files(base, overlay), clock=clock)


async def load_service(settings: Settings, clock: Callable[[], datetime] = utc_now
                       ) -> MatterService:
    """Read and check the registry files in an executor; raises ``LoadError`` on any problem.

    A gateway does not start on a registry with problems: ``registry import``
    checks files before they reach the data folder, so a problem here is a
    hand-edited file, to be fixed rather than silently skipped.
    """
    base, overlay = registry_dirs(settings)
    loop = asyncio.get_running_loop()
    service, report = await loop.run_in_executor(None, _load, base, overlay, clock)
    report.raise_for_problems()
    _log.info("matter registry loaded", extra={
        "catalogues": len(service.registry.catalogues), "maps": len(service.registry.maps),
        "base": str(base), "overlay": str(overlay)})
    return service
