"""The data model: catalogues of concepts and concept maps between them (FHIR ConceptMap R5)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from types import MappingProxyType
from typing import NewType, assert_never

from registry._errors import UnknownCodeError
from registry._schemes import CodeScheme, ParsedCode

__all__ = [
    "NATIONAL",
    "Catalogue",
    "CatalogueKind",
    "Concept",
    "ConceptMap",
    "DependsOn",
    "LicenceTypeCode",
    "MapElement",
    "MapGroup",
    "MapStatus",
    "MapTarget",
    "MatterCode",
    "MatterType",
    "Period",
    "RegionCode",
    "Relationship",
    "Unmapped",
    "UnmappedMode",
    "compose",
]

RegionCode = NewType("RegionCode", str)
"""A GB/T 2260 region code such as ``"330500"``, or ``NATIONAL``."""

MatterCode = NewType("MatterCode", str)
"""A matter code in some catalogue's scheme."""

LicenceTypeCode = NewType("LicenceTypeCode", str)
"""A licence type code (national 21-char or a local 证照目录编码)."""

NATIONAL = RegionCode("national")
"""The region of the national catalogues, the join key between regions."""


class CatalogueKind(StrEnum):
    """What a catalogue lists."""

    MATTER = "matter"
    LICENCE_TYPE = "licence-type"


class MapStatus(StrEnum):
    """Publication status of a concept map (FHIR PublicationStatus, minus unknown)."""

    DRAFT = "draft"
    ACTIVE = "active"
    RETIRED = "retired"


class UnmappedMode(StrEnum):
    """What a map group does for a source code it has no element for (FHIR R5)."""

    USE_SOURCE_CODE = "use-source-code"
    FIXED = "fixed"
    OTHER_MAP = "other-map"


class MatterType(StrEnum):
    """GB/T 39046-2020 A.1 matter types, as the 2-digit code in a basic code."""

    LICENSING = "01"  # 许可
    PENALTY = "02"  # 处罚
    COERCION = "03"  # 强制
    LEVY = "04"  # 征收
    BENEFIT = "05"  # 给付
    INSPECTION = "06"  # 检查
    CONFIRMATION = "07"  # 确认
    REWARD = "08"  # 奖励
    ADJUDICATION = "09"  # 裁决
    OTHER = "10"  # 其他
    PUBLIC_SERVICE = "20"  # 公共服务


class Relationship(StrEnum):
    """FHIR R5 concept-map-relationship; the words describe the *source*."""

    EQUIVALENT = "equivalent"
    NARROWER = "source-is-narrower-than-target"
    BROADER = "source-is-broader-than-target"
    RELATED = "related-to"
    NOT_RELATED = "not-related-to"

    def inverse(self) -> Relationship:
        """The relationship read from target to source (narrower <-> broader)."""
        match self:
            case Relationship.NARROWER:
                return Relationship.BROADER
            case Relationship.BROADER:
                return Relationship.NARROWER
            case Relationship.EQUIVALENT | Relationship.RELATED | Relationship.NOT_RELATED:
                return self
            case _:
                assert_never(self)

    @property
    def rank(self) -> int:
        """Sort order of matches: closest first."""
        return _RANK[self]


_RANK = {
    Relationship.EQUIVALENT: 0,
    Relationship.NARROWER: 1,
    Relationship.BROADER: 2,
    Relationship.RELATED: 3,
    Relationship.NOT_RELATED: 4,
}


def compose(first: Relationship, second: Relationship) -> Relationship | None:
    """Relationship of A to C given A-to-B ``first`` and B-to-C ``second``.

    None means the chain stops (either step is not-related-to). Otherwise:
    equivalent composed with x is x (either side); narrower with narrower is
    narrower (A within B within C); broader with broader is broader; any other
    pair only says the concepts are related.
    """
    if Relationship.NOT_RELATED in (first, second):
        return None
    if first is Relationship.EQUIVALENT:
        return second
    if second is Relationship.EQUIVALENT or first is second:
        return first
    return Relationship.RELATED


@dataclass(frozen=True, slots=True)
class Period:
    """A validity period of whole days; both ends inclusive, None is open."""

    start: date | None = None
    end: date | None = None

    def contains(self, at: date) -> bool:
        """True when ``at`` lies in the period."""
        return (self.start is None or self.start <= at) and (self.end is None or at <= self.end)

    def intersect(self, other: Period) -> Period | None:
        """The days in both periods, or None when they do not overlap."""
        start = _later(self.start, other.start)
        end = _earlier(self.end, other.end)
        if start is not None and end is not None and start > end:
            return None
        return Period(start, end)

    def overlaps(self, other: Period) -> bool:
        """True when some day lies in both periods."""
        return self.intersect(other) is not None

    @property
    def ordinals(self) -> tuple[int, int]:
        """(first, last) day as proleptic ordinals, open ends widened, for fast checks."""
        first = self.start.toordinal() if self.start else date.min.toordinal()
        last = self.end.toordinal() if self.end else date.max.toordinal()
        return first, last


ALWAYS = Period()


def _later(a: date | None, b: date | None) -> date | None:
    if a is None:
        return b
    return a if b is None or a >= b else b


def _earlier(a: date | None, b: date | None) -> date | None:
    if a is None:
        return b
    return a if b is None or a <= b else b


@dataclass(frozen=True, slots=True)
class Concept:
    """One matter or licence type in a catalogue."""

    code: str
    display: str
    period: Period = ALWAYS
    illustrative: bool = False
    """True when the code (or name) is made up for this project, not from a public source."""
    cross_province: bool = False
    """True for 跨省通办 matters."""
    properties: tuple[tuple[str, str], ...] = ()
    row: int | None = field(default=None, compare=False)

    def property(self, name: str) -> str | None:
        """The value of a free-form property, or None."""
        for key, value in self.properties:
            if key == name:
                return value
        return None

    def values(self, name: str) -> tuple[str, ...]:
        """Every value of a free-form property that may repeat (``serves-matter``,
        ``component``), in the catalogue's order."""
        return tuple(value for key, value in self.properties if key == name)


@dataclass(frozen=True, slots=True)
class Catalogue:
    """A versioned list of concepts of one region and kind, all in one code scheme."""

    url: str
    version: str
    region: RegionCode
    kind: CatalogueKind
    scheme: CodeScheme
    concepts: tuple[Concept, ...]
    title: str = ""
    period: Period = ALWAYS
    origin: str = field(default="", compare=False)
    _index: Mapping[str, Concept] = field(init=False, repr=False, compare=False)
    _parsed: Mapping[str, ParsedCode] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Parsing every code here means a Catalogue object always holds codes of its scheme.
        parsed = {c.code: self.scheme.parse(c.code) for c in self.concepts}
        object.__setattr__(self, "_index", MappingProxyType({c.code: c for c in self.concepts}))
        object.__setattr__(self, "_parsed", MappingProxyType(parsed))

    @property
    def ref(self) -> str:
        """``url|version``, the canonical reference of this version."""
        return f"{self.url}|{self.version}"

    def get(self, code: str) -> Concept | None:
        """The concept with ``code``, or None."""
        return self._index.get(code)

    def __contains__(self, code: object) -> bool:
        return code in self._index

    def concept(self, code: str) -> Concept:
        """The concept with ``code``; raises ``UnknownCodeError`` when absent."""
        found = self._index.get(code)
        if found is None:
            raise UnknownCodeError(self.region, code)
        return found

    def parts(self, code: str) -> ParsedCode:
        """The parsed parts of a held code, or of any code of this scheme."""
        return self._parsed.get(code) or self.scheme.parse(code)


@dataclass(frozen=True, slots=True)
class DependsOn:
    """A condition under which a map target applies, e.g. applicant_type = enterprise."""

    attribute: str
    value: str


@dataclass(frozen=True, slots=True)
class MapTarget:
    """One target of a source concept, with its relationship, validity and conditions."""

    code: str
    relationship: Relationship
    display: str = ""
    period: Period = ALWAYS
    depends_on: tuple[DependsOn, ...] = ()
    comment: str = ""
    row: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class MapElement:
    """A source concept and its targets; ``no_map`` asserts it has none."""

    code: str
    targets: tuple[MapTarget, ...] = ()
    display: str = ""
    no_map: bool = False
    row: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Unmapped:
    """What to do with source codes the group has no element for (FHIR R5 group.unmapped)."""

    mode: UnmappedMode
    code: str = ""
    display: str = ""
    relationship: Relationship = Relationship.RELATED
    other_map: str = ""


@dataclass(frozen=True, slots=True)
class MapGroup:
    """Mappings from one source catalogue version to one target catalogue version."""

    source: str
    target: str
    elements: tuple[MapElement, ...]
    source_version: str | None = None
    target_version: str | None = None
    unmapped: Unmapped | None = None


@dataclass(frozen=True, slots=True)
class ConceptMap:
    """A versioned map between two catalogues, modelled on FHIR ConceptMap R5.

    ``reverse_reviewed`` records that every pair was also reviewed read from
    target to source; only then may the map be used backwards.
    """

    url: str
    version: str
    status: MapStatus
    source: str
    target: str
    groups: tuple[MapGroup, ...]
    source_version: str | None = None
    target_version: str | None = None
    period: Period = ALWAYS
    reverse_reviewed: bool = False
    title: str = ""
    illustrative: bool = False
    origin: str = field(default="", compare=False)

    @property
    def ref(self) -> str:
        """``url|version``, as listed in a match's ``maps``."""
        return f"{self.url}|{self.version}"


EMPTY_CONDITIONS: Mapping[str, str] = MappingProxyType({})
