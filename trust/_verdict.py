"""Verdicts: ETSI EN 319 102-1 indications, sub-indications and national status codes.

See spec/verdicts.md. Chain and constraint failures are TOTAL_FAILED here (a
deliberate departure from ETSI, which files them under INDETERMINATE);
INDETERMINATE is kept for what can change by itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = ["Check", "CheckResult", "Indication", "SubIndication", "Verdict"]


class Indication(StrEnum):
    """The overall answer."""

    TOTAL_PASSED = "TOTAL_PASSED"
    TOTAL_FAILED = "TOTAL_FAILED"
    INDETERMINATE = "INDETERMINATE"


class SubIndication(StrEnum):
    """Why a verification did not pass; each knows its indication and cn status."""

    FORMAT_FAILURE = "FORMAT_FAILURE"
    CRYPTO_CONSTRAINTS_FAILURE = "CRYPTO_CONSTRAINTS_FAILURE"
    UNKNOWN_ISSUER = "UNKNOWN_ISSUER"
    NO_CERTIFICATE_CHAIN_FOUND = "NO_CERTIFICATE_CHAIN_FOUND"
    CHAIN_CONSTRAINTS_FAILURE = "CHAIN_CONSTRAINTS_FAILURE"
    SIGNING_KEY_NOT_VALID = "SIGNING_KEY_NOT_VALID"
    REVOKED = "REVOKED"
    SIG_CRYPTO_FAILURE = "SIG_CRYPTO_FAILURE"
    JURISDICTION_MISMATCH = "JURISDICTION_MISMATCH"
    IDENTIFIER_CHECK_FAILURE = "IDENTIFIER_CHECK_FAILURE"
    ISSUER_NOT_RECOGNISED_FOR_TYPE = "ISSUER_NOT_RECOGNISED_FOR_TYPE"
    NOT_YET_VALID = "NOT_YET_VALID"
    EXPIRED = "EXPIRED"
    SUSPENDED = "SUSPENDED"
    TRY_LATER = "TRY_LATER"

    @property
    def indication(self) -> Indication:
        """The indication this sub-indication belongs to."""
        if self in (SubIndication.SUSPENDED, SubIndication.TRY_LATER):
            return Indication.INDETERMINATE
        return Indication.TOTAL_FAILED

    @property
    def cn_status(self) -> int:
        """The national-style status code (DOMAIN.md section 3)."""
        return _CN_STATUS[self]


_CN_STATUS: dict[SubIndication, int] = {
    SubIndication.FORMAT_FAILURE: 12,
    SubIndication.CRYPTO_CONSTRAINTS_FAILURE: 11,
    SubIndication.UNKNOWN_ISSUER: 11,
    SubIndication.NO_CERTIFICATE_CHAIN_FOUND: 11,
    SubIndication.CHAIN_CONSTRAINTS_FAILURE: 11,
    SubIndication.SIGNING_KEY_NOT_VALID: 11,
    SubIndication.REVOKED: 21,
    SubIndication.SIG_CRYPTO_FAILURE: 11,
    SubIndication.JURISDICTION_MISMATCH: 11,
    SubIndication.IDENTIFIER_CHECK_FAILURE: 12,
    SubIndication.ISSUER_NOT_RECOGNISED_FOR_TYPE: 100,
    SubIndication.NOT_YET_VALID: 22,
    SubIndication.EXPIRED: 22,
    SubIndication.SUSPENDED: 23,
    SubIndication.TRY_LATER: 99,
}


class CheckResult(StrEnum):
    """The result of one check."""

    PASSED = "PASSED"
    FAILED = "FAILED"
    INDETERMINATE = "INDETERMINATE"
    SKIPPED = "SKIPPED"


@dataclass(frozen=True, slots=True)
class Check:
    """One check that ran (or could not), with what it found."""

    name: str
    result: CheckResult
    detail: str
    sub_indication: SubIndication | None = None

    def to_json(self) -> dict[str, Any]:
        """The check as the HTTP API shows it."""
        out: dict[str, Any] = {"name": self.name, "result": self.result.value,
                               "detail": self.detail}
        if self.sub_indication is not None:
            out["sub_indication"] = self.sub_indication.value
        return out


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to one verification."""

    indication: Indication
    sub_indication: SubIndication | None
    checks: tuple[Check, ...]
    licence: Any = None
    """The parsed ``Licence`` when its claims could be read, else None."""
    issuer_region: str | None = None
    anchor_kid: str | None = None
    trust_list_version: int | None = None
    status_used: tuple[str, datetime] | None = None
    """The status list consulted: its URI and its ``iat``."""
    valid_until: datetime | None = None
    """The instant after which this verdict may no longer hold (for caches)."""
    depends_on_status: bool = False
    extras: dict[str, Any] = field(default_factory=dict)
    components: tuple[Verdict, ...] = ()
    """A combined certificate's component verdicts, in the document's order (their
    ``licence`` is the ``Component``); empty for any other licence."""

    @property
    def overall(self) -> tuple[Indication, SubIndication | None]:
        """The answer for the document as a whole (docs/combined-certificates.md).

        The document's own verdict when it did not pass or has no components;
        else TOTAL_PASSED only when every component passed, otherwise the first
        TOTAL_FAILED component's sub-indication, else the first INDETERMINATE one's.
        A partially valid combined certificate never passes as a whole.
        """
        return self.overall_for(None)

    def overall_for(self, needed: frozenset[str] | None
                    ) -> tuple[Indication, SubIndication | None]:
        """``overall``, judged on the components whose type code is in ``needed`` (those a
        matter needs); all of them when ``needed`` is None or names none of them."""
        if not self.passed or not self.components:
            return self.indication, self.sub_indication
        counted = [c for c in self.components
                   if needed is not None and c.licence.type_code in needed]
        for wanted in (Indication.TOTAL_FAILED, Indication.INDETERMINATE):
            for component in counted or self.components:
                if component.indication is wanted:
                    return wanted, component.sub_indication
        return Indication.TOTAL_PASSED, None

    @property
    def cn_status(self) -> int:
        """0 when passed, else the sub-indication's national status code."""
        return 0 if self.sub_indication is None else self.sub_indication.cn_status

    @property
    def passed(self) -> bool:
        """True for TOTAL_PASSED."""
        return self.indication is Indication.TOTAL_PASSED

    def check(self, name: str) -> Check | None:
        """The check with this name, if it ran."""
        for item in self.checks:
            if item.name == name:
                return item
        return None
