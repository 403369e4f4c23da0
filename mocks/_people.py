"""Identifiers and people of the mock regions: 证照标识, USCCs, ID numbers, names.

* 证照标识 (GB/T 36904): ``1.2.156.3005.2.<type 21>.<issuer 18>.<serial>.<version>.<check>``,
  the check character being ISO 7064 MOD 37,36 over the four middle parts
  with the dots removed; :func:`lenient_check_char` is the widely copied
  wrong variant (DOMAIN.md section 2).
* USCC (GB 32100): 2 chars category and kind, 6 digits division code, the
  9-char organisation code (GB 11714, its own check character last) and a
  check character.
* 居民身份证号 (GB 11643): 6 digits place, 8 digits birth date, 3 digits
  sequence, a MOD 11-2 check character.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from datetime import date
from typing import Literal, TypeAlias

from stdnum import numdb
from stdnum.cn import ric, uscc
from stdnum.iso7064 import mod_37_36

__all__ = [
    "IDENTIFIER_ROOT",
    "CheckChar",
    "identifier_body",
    "lenient_check_char",
    "licence_identifier",
    "make_resident_id",
    "make_uscc",
    "organisation_name",
    "person_name",
    "strict_check_char",
    "uscc_for",
]

IDENTIFIER_ROOT = "1.2.156.3005.2"
"""The GB/T 36904 object identifier arc every 证照标识 starts with."""

CheckChar: TypeAlias = Literal["strict", "lenient", "wrong"]

_ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def strict_check_char(body: str) -> str:
    """Return the ISO 7064 MOD 37,36 check character of ``body`` (the correct one)."""
    return str(mod_37_36.calc_check_digit(body))


def lenient_check_char(body: str) -> str:
    """Return the check character of the widely copied wrong variant (DOMAIN.md section 2).

    With M = 36 and P = 0, for each character: a = its value (a digit is
    itself, a letter its index in 0-9A-Z plus one, so A = 11); R1 = M + a for
    the first character, else P + a; if a > 10 and R1 > M + 1 then
    R1 = R1 mod (M + 1), else if a < 10 and R1 > M then R1 = R1 mod M;
    R2 = M if R1 mod M = 0, else R1 mod M; P = 2·R2 mod (M + 1). The check
    character is 0-9A-Z[M − P].
    """
    if not body:
        raise ValueError("the identifier body is empty")
    m = 36
    p = 0
    for position, char in enumerate(body.upper()):
        if char not in _ALPHANUMERIC:
            raise ValueError(f"{char!r} is not in 0-9A-Z")
        a = int(char) if char.isdigit() else _ALPHANUMERIC.index(char) + 1
        r1 = m + a if position == 0 else p + a
        if a > 10 and r1 > m + 1:
            r1 %= m + 1
        elif a < 10 and r1 > m:
            r1 %= m
        r2 = m if r1 % m == 0 else r1 % m
        p = 2 * r2 % (m + 1)
    return _ALPHANUMERIC[m - p]


def identifier_body(type_code: str, issuer_code: str, serial: str, version: str) -> str:
    """Return the string the check character is computed over (dots removed, no root)."""
    return f"{type_code}{issuer_code}{serial}{version}"


def licence_identifier(
    type_code: str,
    issuer_code: str,
    serial: str,
    version: str = "001",
    *,
    check: CheckChar = "strict",
) -> str:
    """Return a 证照标识 whose check character is correct, the lenient variant, or wrong.

    ``"wrong"`` gives a character that neither the correct nor the lenient
    algorithm accepts.
    """
    body = identifier_body(type_code, issuer_code, serial, version)
    strict = strict_check_char(body)
    if check == "strict":
        char = strict
    elif check == "lenient":
        char = lenient_check_char(body)
    else:
        lenient = lenient_check_char(body)
        char = next(c for c in _ALPHANUMERIC if c not in {strict, lenient})
    return f"{IDENTIFIER_ROOT}.{type_code}.{issuer_code}.{serial}.{version}.{char}"


def _organisation_code(body8: str) -> str:
    """Append the GB 11714 check character to an 8-character organisation code body."""
    weights = (3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(_ALPHANUMERIC.index(c) * w for c, w in zip(body8, weights, strict=True))
    check = 11 - total % 11
    return body8 + {10: "X", 11: "0"}.get(check, str(check))


def make_uscc(kind: str, division: str, organisation_body: str) -> str:
    """Return a valid USCC from its 2-char kind (e.g. ``11`` organ, ``91`` company),
    6-digit division code and 8-digit organisation code body."""
    first17 = f"{kind}{division}{_organisation_code(organisation_body)}"
    code = first17 + str(uscc.calc_check_digit(first17))
    assert uscc.is_valid(code), code
    return code


def uscc_for(kind: str, division: str, name: str) -> str:
    """Return a USCC for the body called ``name``, the same on every run."""
    digest = hashlib.sha256(f"{kind}/{division}/{name}".encode()).digest()
    body = f"{int.from_bytes(digest[:8], 'big') % 10**8:08d}"
    return make_uscc(kind, division, body)


# stdnum reads its county-code table from a data file on first use; read it at
# import so that issuing a licence inside an event loop never blocks on file I/O.
numdb.get("cn/loc")


def make_resident_id(prefixes: Sequence[str], rng: random.Random) -> str:
    """Return a valid 居民身份证号 born in one of ``prefixes`` (6-digit county codes).

    The county code must have existed in the birth year (stdnum checks it), so
    birth years are drawn until one fits.
    """
    for _ in range(1000):
        prefix = rng.choice(prefixes)
        born = date(rng.randint(1960, 2005), rng.randint(1, 12), rng.randint(1, 28))
        first17 = f"{prefix}{born:%Y%m%d}{rng.randrange(1000):03d}"
        number = first17 + str(ric.calc_check_digit(first17 + "0"))
        if ric.is_valid(number):
            return number
    raise ValueError(f"no birth year fits the county codes {list(prefixes)}")


_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾沈"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰涛明超秀霞平刚桂英华建国志红文博宇浩然子涵欣怡"
_ORG_WORDS = ("恒达", "鼎盛", "华源", "嘉禾", "瑞丰", "宏泰", "新锐", "信诚", "安澜", "德润")
_INDUSTRIES = ("建筑工程", "建材", "物流", "科技", "运输", "商贸", "房地产开发", "机电安装")


def person_name(rng: random.Random) -> str:
    """Return a made-up two- or three-character Chinese name."""
    given = "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2))))
    return rng.choice(_SURNAMES) + given


def organisation_name(place: str, rng: random.Random) -> str:
    """Return a made-up company name registered in ``place`` (e.g. 苏州)."""
    return f"{place}{rng.choice(_ORG_WORDS)}{rng.choice(_INDUSTRIES)}有限公司"
