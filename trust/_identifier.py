"""The licence identifier, 证照标识 (GB/T 36904-2018).

``1.2.156.3005.2.<type code 21>.<issuer USCC 18>.<serial>.<version 3 digits>.<check>``

The check character is ISO/IEC 7064 MOD 37,36 over type + issuer + serial +
version with the dots removed. Real issuers also emit a widely copied wrong
variant; ``check_identifier`` tells the two apart so that a per-partner policy
(``identifier_check: lenient``) can accept exactly that variant and nothing else.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import StrEnum

from trust._errors import IdentifierError

__all__ = [
    "IDENTIFIER_ROOT",
    "CheckOutcome",
    "LicenceIdentifier",
    "check_identifier",
    "iso7064_check_char",
    "parse_identifier",
    "variant_check_char",
]

IDENTIFIER_ROOT = "1.2.156.3005.2"
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_PATTERN = re.compile(
    r"\A1\.2\.156\.3005\.2\."
    r"(?P<type>[0-9A-Z]{21})\."
    r"(?P<issuer>[0-9A-Z]{18})\."
    r"(?P<serial>[0-9A-Z]{1,64})\."
    r"(?P<version>[0-9]{3})\."
    r"(?P<check>[0-9A-Z])\Z"
)


class CheckOutcome(StrEnum):
    """What the check character says."""

    VALID = "valid"
    """The ISO 7064 MOD 37,36 character."""
    KNOWN_VARIANT = "known-variant"
    """The widely copied wrong character, and not the ISO one."""
    INVALID = "invalid"
    """Neither."""


@dataclass(frozen=True, slots=True)
class LicenceIdentifier:
    """A parsed 证照标识."""

    type_code: str
    issuer_code: str
    serial: str
    version: str
    check_char: str

    @property
    def body(self) -> str:
        """The characters the check character covers (dots removed)."""
        return self.type_code + self.issuer_code + self.serial + self.version

    def __str__(self) -> str:
        return ".".join(
            (IDENTIFIER_ROOT, self.type_code, self.issuer_code, self.serial, self.version,
             self.check_char)
        )


def parse_identifier(text: str) -> LicenceIdentifier:
    """Parse a 证照标识; raise ``IdentifierError`` if its shape is wrong."""
    if not isinstance(text, str):
        raise IdentifierError("identifier must be a string")
    match = _PATTERN.match(text)
    if match is None:
        raise IdentifierError(
            "not a GB/T 36904 identifier (1.2.156.3005.2.<type 21>.<issuer 18>.<serial>."
            "<version 3 digits>.<check>)"
        )
    return LicenceIdentifier(
        match["type"], match["issuer"], match["serial"], match["version"], match["check"]
    )


def _mod_37_36_tables() -> tuple[tuple[dict[str, int], ...], str]:
    """The ISO/IEC 7064 MOD 37,36 recurrence as tables: for each running value, the next
    one after each character, and the check character that closes each running value."""
    m = len(_ALNUM)  # 36
    # ISO/IEC 7064 hybrid system M+1, M: P starts at M; for each character a,
    # S = (P + a) mod M (M when 0), P = 2S mod (M + 1). The check character c makes
    # (P + c) mod M == 1. Tables indexed by P (1..M) avoid the arithmetic per character.
    step = tuple({char: ((p + a) % m or m) * 2 % (m + 1) for a, char in enumerate(_ALNUM)}
                 for p in range(m + 1))
    close = "".join(_ALNUM[(1 - p) % m] for p in range(m + 1))
    return step, close


_STEP, _CLOSE = _mod_37_36_tables()


def _run(body: str, p: int = len(_ALNUM)) -> int:
    """The MOD 37,36 running value after ``body``, starting from ``p``."""
    step = _STEP
    try:
        for char in body:
            p = step[p][char]
    except KeyError:
        odd = next(char for char in body if char not in step[0])
        raise IdentifierError(f"character {odd!r} outside 0-9A-Z") from None
    return p


@functools.lru_cache(maxsize=4096)
def _run_prefix(prefix: str) -> int:
    """``_run`` of a type code and issuer code: the same for every licence one issuer
    issues of one type, so computed once for each."""
    return _run(prefix)


def iso7064_check_char(body: str) -> str:
    """ISO/IEC 7064 MOD 37,36 check character of ``body`` (characters ``0-9A-Z``)."""
    return _CLOSE[_run(body)]


def variant_check_char(body: str) -> str:
    """The widely copied wrong check character (DOMAIN.md section 2).

    Reconstructed from code shared between provincial systems. With M = 36 and
    P = 0, for each character: a is its value (a digit itself, a letter its index
    in 0-9A-Z plus one); R1 = M + a for the first character, else P + a; if
    a > 10 and R1 > M + 1 then R1 mod (M + 1), elif a < 10 and R1 > M then
    R1 mod M; R2 = M if R1 mod M == 0 else R1 mod M; P = 2 * R2 mod (M + 1).
    The result is 0-9A-Z[M - P].
    """
    m = 36
    p = 0
    for position, char in enumerate(body):
        index = _ALNUM.find(char)
        if index < 0:
            raise IdentifierError(f"character {char!r} outside 0-9A-Z")
        a = index if index < 10 else index + 1
        r1 = m + a if position == 0 else p + a
        if a > 10 and r1 > m + 1:
            r1 %= m + 1
        elif a < 10 and r1 > m:
            r1 %= m
        r2 = m if r1 % m == 0 else r1 % m
        p = (2 * r2) % (m + 1)
    return _ALNUM[m - p] if m - p < len(_ALNUM) else "?"


def judge_identifier(text: str) -> tuple[str, str, CheckOutcome] | None:
    """The type code, issuer code and check outcome of a well-formed 证照标识, without
    building a ``LicenceIdentifier`` (the verifier's path); None when ``text`` is not
    one (``parse_identifier`` says why)."""
    match = _PATTERN.match(text)
    if match is None:
        return None
    type_code, issuer_code, serial, version, check = match.group(
        "type", "issuer", "serial", "version", "check")
    if _CLOSE[_run(serial + version, _run_prefix(type_code + issuer_code))] == check:
        return type_code, issuer_code, CheckOutcome.VALID
    if variant_check_char(type_code + issuer_code + serial + version) == check:
        return type_code, issuer_code, CheckOutcome.KNOWN_VARIANT
    return type_code, issuer_code, CheckOutcome.INVALID


def check_identifier(identifier: LicenceIdentifier) -> CheckOutcome:
    """Judge the identifier's check character."""
    running = _run(identifier.serial + identifier.version,
                   _run_prefix(identifier.type_code + identifier.issuer_code))
    if _CLOSE[running] == identifier.check_char:
        return CheckOutcome.VALID
    if variant_check_char(identifier.body) == identifier.check_char:
        return CheckOutcome.KNOWN_VARIANT
    return CheckOutcome.INVALID
