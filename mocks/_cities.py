"""The partner regions of the full federation: the 41 delta cities and three far partners.

Facts only, kept in the package so that a clone or a wheel stands alone: codes
and names are those of ``docs/reference/yrd_cities.csv`` and
``docs/reference/kstb_partners.csv`` (sources in ``docs/reference/SOURCES.md``:
GB/T 2260 codes via modood/Administrative-divisions-of-China; G60 membership
from the 长三角G60 plan). A test holds this table to those files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["FAR_PARTNERS", "YRD_CITIES", "City"]


@dataclass(frozen=True, slots=True)
class City:
    """A city (or county) by its GB/T 2260 code, its name and whether it is a G60 member."""

    region_code: str
    name: str
    g60: bool = False


YRD_CITIES: Final = (
    City("310000", "上海市", g60=True),
    City("320100", "南京市"),
    City("320200", "无锡市"),
    City("320300", "徐州市"),
    City("320400", "常州市"),
    City("320500", "苏州市", g60=True),
    City("320600", "南通市"),
    City("320700", "连云港市"),
    City("320800", "淮安市"),
    City("320900", "盐城市"),
    City("321000", "扬州市"),
    City("321100", "镇江市"),
    City("321200", "泰州市"),
    City("321300", "宿迁市"),
    City("330100", "杭州市", g60=True),
    City("330200", "宁波市"),
    City("330300", "温州市"),
    City("330400", "嘉兴市", g60=True),
    City("330500", "湖州市", g60=True),
    City("330600", "绍兴市"),
    City("330700", "金华市", g60=True),
    City("330800", "衢州市"),
    City("330900", "舟山市"),
    City("331000", "台州市"),
    City("331100", "丽水市"),
    City("340100", "合肥市", g60=True),
    City("340200", "芜湖市", g60=True),
    City("340300", "蚌埠市"),
    City("340400", "淮南市"),
    City("340500", "马鞍山市"),
    City("340600", "淮北市"),
    City("340700", "铜陵市"),
    City("340800", "安庆市"),
    City("341000", "黄山市"),
    City("341100", "滁州市"),
    City("341200", "阜阳市"),
    City("341300", "宿州市"),
    City("341500", "六安市"),
    City("341600", "亳州市"),
    City("341700", "池州市"),
    City("341800", "宣城市", g60=True),
)
"""The 41 cities of the Yangtze River Delta (上海, 13 江苏, 11 浙江, 16 安徽), Huzhou included."""

FAR_PARTNERS: Final = (
    City("652929", "柯坪县"),
    City("220600", "白山市"),
    City("520500", "毕节市"),
)
"""The 跨省通办 bilateral partners far from the delta (新疆柯坪县, 吉林白山市, 贵州毕节市)."""
