"""Licence requirements of Huzhou matters and 「高效办成一件事」 bundles (免证办), as data.

A *case book* says, for each Huzhou matter, which licences an application needs
(a requirement is met by any one of its alternatives, each a licence type and
the role that must hold it: the applicant enterprise, its legal
representative, a named person), and which matters each 一件事 bundle joins.
It is read from JSON (``CaseBook.from_json``) and checked against the
registry's catalogues when loaded: a licence type or matter the catalogues do
not hold, a role not declared, a bundle naming a matter without requirements,
is refused by name, every problem at once (``CaseDataError``).

Nothing here reads files or the clock; the gateway passes the bytes and the
codes its registry holds.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from registry._errors import RegistryError

__all__ = [
    "Alternative",
    "Bundle",
    "CaseBook",
    "CaseDataError",
    "HolderRole",
    "MatterRequirements",
    "Requirement",
    "holder_regions",
]

_CODE_TYPES = frozenset({"001", "111"})
"""持证主体代码类型 a role may name: 001 USCC, 111 居民身份证号 (GB/T 36903)."""


class CaseDataError(RegistryError, ValueError):
    """Case-book data is unusable; ``problems`` names each one."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("case book refused: " + "; ".join(self.problems))


@dataclass(frozen=True, slots=True)
class HolderRole:
    """Who may hold a licence in a case: the applicant enterprise, a named person."""

    name: str
    """The role's key in a case request's ``applicant`` (``enterprise`` ...)."""
    code_type: str
    """The holder code type a licence of this role carries (001 USCC, 111 身份证号)."""
    title: str
    """The role's Chinese name (申请企业, 法定代表人 ...)."""


@dataclass(frozen=True, slots=True)
class Alternative:
    """One way to meet a requirement: a licence of ``type_code`` held by ``holder``."""

    type_code: str
    holder: str
    """A role name of the case book."""

    def to_json(self) -> dict[str, str]:
        """As the answer shows it."""
        return {"type_code": self.type_code, "holder": self.holder}


@dataclass(frozen=True, slots=True)
class Requirement:
    """A licence a matter needs: met by any one of ``any_of``."""

    id: str
    """Unique within its matter; stable, for answers and audit records."""
    title: str
    any_of: tuple[Alternative, ...]
    source: str
    """Where the requirement comes from."""
    illustrative: bool
    """True when it is a plausible choice of this project, not from a public source."""

    @property
    def key(self) -> frozenset[Alternative]:
        """What the requirement asks, whatever its id: two matters of a bundle asking
        the same are met by the same licence."""
        return frozenset(self.any_of)


@dataclass(frozen=True, slots=True)
class MatterRequirements:
    """A Huzhou matter and its licence requirements."""

    code: str
    name: str
    requirements: tuple[Requirement, ...]
    source: str
    illustrative: bool


@dataclass(frozen=True, slots=True)
class Bundle:
    """A 一件事: one application joining several matters."""

    id: str
    name: str
    matters: tuple[str, ...]
    partners: tuple[str, ...]
    """Partner regions to ask for licences not presented (a 跨省通办 case's partner)."""
    source: str
    illustrative: bool


def holder_regions(code: str, code_type: str) -> tuple[str, ...]:
    """Region codes a holder code names, most specific first: where a partner may hold
    the holder's licences.

    A USCC (GB 32100) carries its registration authority's division code in
    characters 3 to 8; a 身份证号 (GB 11643) its holder's county of first
    registration in the first six. Each gives the county, then its prefecture
    (``xxxx00``). Nothing for another code type or a code too short.
    """
    if code_type == "001" and len(code) == 18:
        county = code[2:8]
    elif code_type == "111" and len(code) == 18:
        county = code[:6]
    else:
        return ()
    if not county.isdigit():
        return ()
    prefecture = county[:4] + "00"
    return (county,) if prefecture == county else (county, prefecture)


def _text(obj: Mapping[str, Any], name: str, where: str, problems: list[str]) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        problems.append(f"{where}: {name} must be a non-empty string")
        return ""
    return value


def _strings(obj: Mapping[str, Any], name: str, where: str, problems: list[str]
             ) -> tuple[str, ...]:
    value = obj.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.append(f"{where}: {name} must be a list of strings")
        return ()
    return tuple(value)


def _objects(obj: Mapping[str, Any], name: str, where: str, problems: list[str]
             ) -> list[Mapping[str, Any]]:
    value = obj.get(name)
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        problems.append(f"{where}: {name} must be a non-empty list of objects")
        return []
    return value


class CaseBook:
    """The requirements of Huzhou's matters and its 一件事 bundles, checked."""

    def __init__(self, *, version: str, region: str, roles: Mapping[str, HolderRole],
                 matters: Mapping[str, MatterRequirements], bundles: Mapping[str, Bundle]
                 ) -> None:
        self.version = version
        self.region = region
        self.roles = dict(roles)
        self.matters = dict(matters)
        self.bundles = dict(bundles)

    @classmethod
    def from_json(cls, data: bytes | Mapping[str, Any], *, licence_types: Collection[str],
                  matters: Collection[str]) -> CaseBook:
        """Read and check a case book; ``licence_types`` and ``matters`` are the codes the
        registry holds (Huzhou's matters). Raises ``CaseDataError`` naming every problem."""
        problems: list[str] = []
        if isinstance(data, bytes):
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise CaseDataError([f"not JSON: {exc}"]) from exc
        else:
            doc = data
        if not isinstance(doc, dict):
            raise CaseDataError(["the case book must be a JSON object"])
        version = _text(doc, "version", "case book", problems)
        region = _text(doc, "region", "case book", problems)
        roles = cls._roles(doc, problems)
        book_matters: dict[str, MatterRequirements] = {}
        for i, item in enumerate(_objects(doc, "matters", "case book", problems)):
            found = cls._matter(item, f"matters[{i}]", roles=roles, licence_types=licence_types,
                                known=matters, problems=problems)
            if found is None:
                continue
            if found.code in book_matters:
                problems.append(f"matters[{i}]: matter {found.code} appears twice")
            book_matters[found.code] = found
        bundles: dict[str, Bundle] = {}
        for i, item in enumerate(_objects(doc, "bundles", "case book", problems)):
            bundle = cls._bundle(item, f"bundles[{i}]", book_matters, problems)
            if bundle.id in bundles:
                problems.append(f"bundles[{i}]: bundle {bundle.id} appears twice")
            bundles[bundle.id] = bundle
        if problems:
            raise CaseDataError(problems)
        return cls(version=version, region=region, roles=roles, matters=book_matters,
                   bundles=bundles)

    @staticmethod
    def _roles(doc: Mapping[str, Any], problems: list[str]) -> dict[str, HolderRole]:
        raw = doc.get("roles")
        if not isinstance(raw, dict) or not raw:
            problems.append("case book: roles must be a non-empty object")
            return {}
        roles: dict[str, HolderRole] = {}
        for name, spec in raw.items():
            where = f"roles.{name}"
            if not isinstance(spec, dict):
                problems.append(f"{where}: must be an object")
                continue
            code_type = _text(spec, "code_type", where, problems)
            if code_type and code_type not in _CODE_TYPES:
                problems.append(f"{where}: code_type {code_type} is not one of "
                                f"{sorted(_CODE_TYPES)}")
            roles[name] = HolderRole(name, code_type, _text(spec, "title", where, problems))
        return roles

    @staticmethod
    def _matter(item: Mapping[str, Any], where: str, *, roles: Mapping[str, HolderRole],
                licence_types: Collection[str], known: Collection[str], problems: list[str]
                ) -> MatterRequirements | None:
        code = _text(item, "code", where, problems)
        if code and code not in known:
            problems.append(f"{where}: unknown matter {code}")
        where = f"matter {code or where}"
        requirements: list[Requirement] = []
        ids: set[str] = set()
        for j, req in enumerate(_objects(item, "requirements", where, problems)):
            rwhere = f"{where} requirements[{j}]"
            rid = _text(req, "id", rwhere, problems)
            if rid in ids:
                problems.append(f"{rwhere}: id {rid} repeats")
            ids.add(rid)
            alternatives: list[Alternative] = []
            for alt in _objects(req, "any_of", rwhere, problems):
                type_code = _text(alt, "type", rwhere, problems)
                holder = _text(alt, "holder", rwhere, problems)
                if type_code and type_code not in licence_types:
                    problems.append(f"{rwhere}: unknown licence type {type_code}")
                if holder and holder not in roles:
                    problems.append(f"{rwhere}: unknown role {holder}")
                alternatives.append(Alternative(type_code, holder))
            requirements.append(Requirement(
                rid, _text(req, "title", rwhere, problems), tuple(alternatives),
                _text(req, "source", rwhere, problems), bool(req.get("illustrative", False))))
        if not code:
            return None
        return MatterRequirements(code, _text(item, "name", where, problems),
                                  tuple(requirements), _text(item, "source", where, problems),
                                  bool(item.get("illustrative", False)))

    @staticmethod
    def _bundle(item: Mapping[str, Any], where: str,
                matters: Mapping[str, MatterRequirements], problems: list[str]) -> Bundle:
        bid = _text(item, "id", where, problems)
        where = f"bundle {bid or where}"
        codes = _strings(item, "matters", where, problems)
        if not codes:
            problems.append(f"{where}: names no matter")
        problems.extend(f"{where}: matter {code} has no requirements in the case book"
                        for code in codes if code not in matters)
        partners = _strings(item, "partners", where, problems)
        problems.extend(f"{where}: partner {p} is not a 6-digit region code"
                        for p in partners if len(p) != 6 or not p.isdigit())
        return Bundle(bid, _text(item, "name", where, problems), codes, partners,
                      _text(item, "source", where, problems),
                      bool(item.get("illustrative", False)))

    def requirements_of(self, codes: Iterable[str]
                        ) -> list[tuple[Requirement, tuple[str, ...]]]:
        """The distinct requirements of these matters, each with the matters that ask it
        (in the order first asked). Raises ``KeyError`` for a matter not in the book."""
        found: dict[frozenset[Alternative], tuple[Requirement, list[str]]] = {}
        for code in codes:
            for req in self.matters[code].requirements:
                entry = found.setdefault(req.key, (req, []))
                if code not in entry[1]:
                    entry[1].append(code)
        return [(req, tuple(served)) for req, served in found.values()]
