"""Code schemes: the shape of the codes in a catalogue, declared by a regex with named parts.

National schemes follow GB/T 39554.1-2020 (政务服务事项编码) and GB/T 36902
(证照类型代码); local schemes are declared by pattern. A catalogue names its
scheme per version, so the same region may move from 10- to 12-character
basic codes without any length being hard-coded here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from stdnum.cn import uscc

from registry._errors import CodeFormatError, SchemeError

__all__ = ["BUILTIN_SCHEMES", "CodeScheme", "ParsedCode"]

# A part check returns None when the part is acceptable, else the reason.
PartCheck = Callable[[Mapping[str, str]], str | None]

_MAX_CODE_LENGTH = 128


@dataclass(frozen=True, slots=True)
class ParsedCode:
    """A code split into the named parts of its scheme."""

    scheme: str
    code: str
    parts: Mapping[str, str]

    def __getitem__(self, name: str) -> str:
        return self.parts[name]


@dataclass(frozen=True, slots=True)
class CodeScheme:
    """A code shape: a full-match regex whose named groups are the code's parts.

    ``illustrative`` marks a scheme whose structure this project defined (no
    public source gives it); ``basis`` says where the structure comes from.
    """

    name: str
    pattern: str
    description: str = ""
    illustrative: bool = False
    basis: str = ""
    checks: tuple[PartCheck, ...] = ()
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            regex = re.compile(self.pattern)
        except (re.error, TypeError, OverflowError, RecursionError) as exc:
            raise SchemeError(f"scheme {self.name!r}: pattern does not compile: {exc}") from exc
        if not regex.groupindex:
            raise SchemeError(f"scheme {self.name!r}: pattern has no named parts")
        object.__setattr__(self, "_regex", regex)

    @property
    def part_names(self) -> tuple[str, ...]:
        """The names of the parts, in pattern order."""
        return tuple(self._regex.groupindex)

    def parse(self, code: str) -> ParsedCode:
        """Split ``code`` into its parts, or raise ``CodeFormatError`` naming scheme and code."""
        if not isinstance(code, str):
            raise CodeFormatError(self.name, repr(code), "a code must be a string")
        if len(code) > _MAX_CODE_LENGTH:
            raise CodeFormatError(self.name, code[:32] + "...", "code is too long")
        match = self._regex.fullmatch(code)
        if match is None:
            raise CodeFormatError(self.name, code, f"does not match {self.pattern}")
        parts = {k: v for k, v in match.groupdict().items() if v is not None}
        for check in self.checks:
            reason = check(parts)
            if reason is not None:
                raise CodeFormatError(self.name, code, reason)
        return ParsedCode(self.name, code, MappingProxyType(parts))

    def is_valid(self, code: str) -> bool:
        """True when ``code`` parses under this scheme."""
        try:
            self.parse(code)
        except CodeFormatError:
            return False
        return True


def _uscc_ok(parts: Mapping[str, str]) -> str | None:
    # GB 32100-2015: the 18th character is a check character; stdnum computes it.
    value = parts.get("uscc", parts.get("definer_uscc"))
    if value is None or uscc.is_valid(value):
        return None
    return f"USCC {value} fails the GB 32100 check character"


# GB/T 39046-2020 A.1 matter types: 01..10 and 20.
_MATTER_TYPE = r"(?P<matter_type>0[1-9]|10|20)"
# 12-char basic code: region 2 + type 2 + main 5 + sub 3. The 2022 national
# licensing list also prints main-item codes whose sub part ends in Y.
_BASIC_12 = r"(?P<region>\d{2})" + _MATTER_TYPE + r"(?P<main>\d{5})(?P<sub>\d{3}|\d{2}Y)"
_USCC = r"(?P<uscc>[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10})"
_LEVEL = r"(?P<level>[1-7])"

_ZJ_CATEGORIES = "许可|处罚|强制|征收|给付|检查|确认|奖励|裁决|其他|公共服务"

_SCHEMES = (
    CodeScheme(
        name="gb-basic-12",
        pattern=_BASIC_12,
        description="政务服务事项基本编码 (12): region 2 + matter type 2 + main 5 + sub 3",
        basis="GB/T 39554.1-2020; matter types GB/T 39046-2020 A.1",
    ),
    CodeScheme(
        name="gb-implementation-31",
        pattern=_USCC + _LEVEL + "(?P<basic>" + _BASIC_12 + ")",
        description="实施编码 (31): agency USCC 18 + level 1 (1 national .. 7 graded) + basic 12",
        basis="GB/T 39554.1-2020",
        checks=(_uscc_ok,),
    ),
    CodeScheme(
        name="gb-handling-33",
        pattern=_USCC + _LEVEL + "(?P<basic>" + _BASIC_12 + r")(?P<item>\d{2})",
        description="业务办理项编码 (33): implementation code 31 + handling item 2",
        basis="GB/T 39554.1-2020; zwfw.nmpa.gov.cn taskview codes",
        checks=(_uscc_ok,),
    ),
    CodeScheme(
        name="gb-basic-10",
        pattern=_MATTER_TYPE + r"(?P<main>\d{5})(?P<sub>\d{3})",
        description="legacy basic code (10): matter type 2 + main item 5 + sub-item 3",
        illustrative=True,
        basis="older catalogue versions; part split is this project's reading",
    ),
    CodeScheme(
        name="gb-implementation-24",
        pattern=r"(?P<agency>[0-9A-Z]{14})(?P<basic>" + _MATTER_TYPE + r"\d{8})",
        description="legacy implementation code (24): agency 14 + legacy basic code 10",
        illustrative=True,
        basis="older catalogue versions; part split is this project's reading",
    ),
    CodeScheme(
        name="zj-power-basic",
        pattern=rf"(?P<category>{_ZJ_CATEGORIES})-(?P<main>\d{{5}})-(?P<sub>\d{{3}})"
        r"(?:-(?P<item>\d{2}))?",
        description="浙江省权力事项基本码: category-main 5-sub 3[-item 2], e.g. 许可-00393-002",
        basis="public Zhejiang code samples (see docs/reference/matter_codes.csv)",
    ),
    CodeScheme(
        name="gz-item",
        pattern=r"(?P<category>XK|CF|QZ|ZS|JF|JC|QR|JL|CJ|QT|GG)(?P<main>\d{5})(?P<sub>\d{2})"
        r"(?P<flag>[0-9Y])",
        description="贵州省事项编码, e.g. XK0010100Y: category 2 letters + main 5 + sub 2 + flag",
        illustrative=True,
        basis="shape from the example XK0010100Y; part names are this project's reading",
    ),
    CodeScheme(
        name="sh-item",
        pattern=r"310000-" + _MATTER_TYPE + r"-(?P<dept>[A-Z]{2,4})-(?P<seq>\d{4})"
        r"(?:-(?P<item>\d{2}))?",
        description="Shanghai matter code as modelled here, e.g. 310000-01-SCJ-0012",
        illustrative=True,
        basis="defined by this project for demonstration; not Shanghai's real scheme",
    ),
    CodeScheme(
        name="ah-item",
        pattern=r"AH-(?P<city>34\d{2})-(?P<category>[A-Z]{2})(?P<seq>\d{5})",
        description="Anhui matter code as modelled here, e.g. AH-3401-XK00123",
        illustrative=True,
        basis="defined by this project for demonstration; not Anhui's real scheme",
    ),
    CodeScheme(
        name="gb-licence-type-21",
        pattern=r"(?P<definer_uscc>[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10})"
        r"(?P<seq>\d{3})",
        description="证照类型代码 (21): defining body's USCC 18 + sequence 3",
        basis="GB/T 36902; docs/reference/licence_types.csv",
        checks=(_uscc_ok,),
    ),
    CodeScheme(
        name="zj-licence-catalogue",
        pattern=r"(?P<province>33)(?P<dept>\d{3})ZZ(?P<seq>\d{4})",
        description="local 证照目录编码 as modelled here, e.g. 33001ZZ0001",
        illustrative=True,
        basis="defined by this project for demonstration",
    ),
)

BUILTIN_SCHEMES: Mapping[str, CodeScheme] = MappingProxyType({s.name: s for s in _SCHEMES})
"""The schemes a catalogue may name without declaring a pattern."""
