"""Load reports: every problem found while loading, with the file and row it sits on."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from registry._errors import LoadError

__all__ = ["LoadProblem", "LoadReport"]


@dataclass(frozen=True, slots=True)
class LoadProblem:
    """One problem in loaded data.

    ``row`` is the physical line for CSV files (the header is a line too) and
    the 1-based ordinal of the concept or map target in document order for
    FHIR JSON, where ``where`` also gives the JSON path.
    """

    source: str
    row: int | None
    message: str
    where: str | None = None

    def __str__(self) -> str:
        place = self.source if self.row is None else f"{self.source}:{self.row}"
        at = f" ({self.where})" if self.where else ""
        return f"{place}{at}: {self.message}"


@dataclass(frozen=True, slots=True)
class LoadReport:
    """Every problem found by a load; empty when the data is clean."""

    problems: tuple[LoadProblem, ...] = ()

    @classmethod
    def of(cls, problems: Iterable[LoadProblem]) -> LoadReport:
        """Build a report from problems in the order they were found."""
        return cls(tuple(problems))

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def raise_for_problems(self) -> None:
        """Raise ``LoadError`` carrying this report if it lists any problem."""
        if self.problems:
            raise LoadError(self)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems) if self.problems else "no problems"
