"""Errors raised by the matter-code registry (the tree is drawn in ``registry.__doc__``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from registry._report import LoadReport

__all__ = [
    "CodeFormatError",
    "LoadError",
    "RegistryError",
    "SchemeError",
    "UnknownCodeError",
    "UnknownRegionError",
]


class RegistryError(Exception):
    """Root of every error the registry raises."""


class CodeFormatError(RegistryError, ValueError):
    """A code does not have the shape its scheme requires."""

    def __init__(self, scheme: str, code: str, reason: str) -> None:
        self.scheme = scheme
        self.code = code
        self.reason = reason
        super().__init__(f"code {code!r} is not a valid {scheme} code: {reason}")


class SchemeError(RegistryError, ValueError):
    """A code scheme declaration is unusable (bad pattern, no named parts)."""


class LoadError(RegistryError, ValueError):
    """Loaded data has problems; ``report`` lists every one with its file and row."""

    def __init__(self, report: LoadReport) -> None:
        self.report = report
        count = len(report.problems)
        super().__init__(f"{count} problem(s) loading registry data:\n{report}")


class UnknownRegionError(RegistryError, LookupError):
    """No catalogue of the requested kind is held for the region."""

    def __init__(self, region: str, kind: str) -> None:
        self.region = region
        self.kind = kind
        super().__init__(f"no {kind} catalogue is held for region {region!r}")


class UnknownCodeError(RegistryError, LookupError):
    """The region's catalogue holds no concept with the code."""

    def __init__(self, region: str, code: str) -> None:
        self.region = region
        self.code = code
        super().__init__(f"region {region!r} has no concept with code {code!r}")
