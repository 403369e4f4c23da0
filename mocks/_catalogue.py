"""Licence types the mock regions issue, taken from the shared reference data.

Codes and names come from ``licence_types.csv`` (real 证照类型代码 seen in
public sources); the issuing department, holder kind, licence-number
template and surface fields are plausible choices made for the mocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, TypeAlias

__all__ = [
    "BUSINESS_LICENCE",
    "CONSTRUCTION_WORKER",
    "LICENCE_TYPES",
    "SHIP_COMBINED",
    "SHIP_COMPONENT_TYPES",
    "HolderKind",
    "LicenceType",
]

HolderKind: TypeAlias = Literal["person", "organisation"]


@dataclass(frozen=True, slots=True)
class LicenceType:
    """One licence type: its national code and how a region fills it in."""

    code: str
    """证照类型代码: the defining body's USCC and a 3-digit sequence."""
    name: str
    """证照名称."""
    holder: HolderKind
    """Who holds it: a person (代码类型 111) or an organisation (001)."""
    department: str
    """The local department that issues it, appended to the region name."""
    number: str
    """``str.format`` template of the 证照编号.

    Fields: abbr, short, year, seq, digits, holder_code, region_code.
    """
    fields: tuple[tuple[str, str], ...] = ()
    """Type-specific surface fields (照面信息) put into ``lic.fields``."""


CONSTRUCTION_WORKER = "11100000000013338W032"
"""建筑施工特种作业人员操作资格证书 (住建部), the profile's example type."""

BUSINESS_LICENCE = "11100000MB0143028R001"
"""营业执照 (市场监管总局)."""

_HOUSING = "住房和城乡建设局"

SHIP_COMBINED = "11100000000019713D900"
"""内河船舶证书（多证合一）. No official code is published: the 交通运输部 prefix and a
900-range sequence were chosen by this project (docs/combined-certificates.md)."""

SHIP_COMPONENT_TYPES = (
    "11100000000019713D901",  # 船舶国籍证书
    "11100000000019713D902",  # 船舶检验证书
    "11100000000019713D903",  # 船舶营业运输证
    "11100000000019713D904",  # 船舶最低安全配员证书
)
"""The component certificates of an inland-ship combined certificate (codes chosen, as
``SHIP_COMBINED``)."""

_TYPES = (
    LicenceType(
        CONSTRUCTION_WORKER,
        "建筑施工特种作业人员操作资格证书",
        "person",
        _HOUSING,
        "{abbr}A{digits}",
        (("operation_category", "建筑电工"),),
    ),
    LicenceType(
        "11100000000013338W011",
        "建筑施工企业安全生产管理人员考核合格证书",
        "person",
        _HOUSING,
        "{abbr}建安C（{year}）{seq}",
        (("category", "专职安全生产管理人员（C类）"),),
    ),
    LicenceType(
        "11100000000013338W001",
        "中华人民共和国二级建造师注册证书",
        "person",
        _HOUSING,
        "{abbr}2{digits}",
        (("specialty", "建筑工程"),),
    ),
    LicenceType(
        "11100000000013338W050",
        "建筑施工企业安全生产许可证",
        "organisation",
        _HOUSING,
        "（{abbr}）JZ安许证字[{year}]{seq}",
        (("permitted_scope", "建筑施工"),),
    ),
    LicenceType(
        BUSINESS_LICENCE,
        "营业执照",
        "organisation",
        "市场监督管理局",
        "{holder_code}",
        (
            ("enterprise_type", "有限责任公司（自然人投资或控股）"),
            ("registered_capital", "500万元人民币"),
        ),
    ),
    LicenceType(
        "11100000MB03271699001",
        "中华人民共和国不动产权证（书）",
        "person",
        "自然资源和规划局",
        "{abbr}（{year}）{short}不动产权第{seq}号",
        (("usage", "城镇住宅用地/住宅"),),
    ),
    LicenceType(
        "11100000000019713D008",
        "道路运输经营许可证",
        "organisation",
        "交通运输局",
        "{abbr}交运管许可{short}字{seq}号",
        (("business_scope", "道路普通货物运输"),),
    ),
    LicenceType(
        "11100000000019713D071",
        "道路运输从业人员从业资格证",
        "person",
        "交通运输局",
        "{holder_code}",
        (("qualification", "道路货物运输驾驶员"),),
    ),
    LicenceType(
        "11100000000019713D075",
        "巡游出租汽车驾驶员证",
        "person",
        "交通运输局",
        "{holder_code}",
    ),
    LicenceType(
        "111000000000131433001", "结婚证", "person", "民政局", "J{region_code}-{year}-{seq}"
    ),
    LicenceType("11100000000013127D001", "居民身份证", "person", "公安局", "{holder_code}"),
    LicenceType(
        SHIP_COMBINED,
        "内河船舶证书（多证合一）",
        "organisation",
        "交通运输局",
        "{abbr}船证{year}{seq}",
        (("ship_name", "长淮货6688"), ("ship_id", "CN20190000001")),
    ),
    LicenceType(SHIP_COMPONENT_TYPES[0], "船舶国籍证书", "organisation", "海事局",
                "{short}籍{year}{seq}"),
    LicenceType(SHIP_COMPONENT_TYPES[1], "船舶检验证书", "organisation", "船舶检验局",
                "{short}检{year}{seq}"),
    LicenceType(SHIP_COMPONENT_TYPES[2], "船舶营业运输证", "organisation", "交通运输局",
                "{abbr}交运船{seq}"),
    LicenceType(SHIP_COMPONENT_TYPES[3], "船舶最低安全配员证书", "organisation", "海事局",
                "{short}配{year}{seq}"),
)

LICENCE_TYPES: MappingProxyType[str, LicenceType] = MappingProxyType({t.code: t for t in _TYPES})
"""The licence types the mocks know, by 证照类型代码."""
