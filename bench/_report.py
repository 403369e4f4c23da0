"""The results table, the machine and commit description, and ``bench/RESULTS.md``."""

from __future__ import annotations

import os
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

__all__ = ["Row", "git_commit", "machine", "prepend_results", "render_table"]

ROOT = Path(__file__).resolve().parents[1]
RESULTS_HEADER: Final = """# Benchmark results

Written by `python -m bench` (`make bench`); newest run first. Each run
measures the gateway and its baselines in the same run, on the same machine,
with the same load generator; see `bench/README.md` for what each row means.

<!-- runs below: newest first -->
"""
_MARKER: Final = "<!-- runs below: newest first -->"


@dataclass(slots=True)
class Row:
    """One line of the results table."""

    scenario: str
    unit: str = ""
    values: list[float] = field(default_factory=list)
    """One value per round (requests/s, licences/s, ...); the median is quoted."""
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    errors: int = 0
    baseline: str = ""
    ratio: float | None = None
    goal: float | None = None
    status: str = ""
    text: str = ""
    """Shown instead of a value (``not landed``, ``skipped: ...``)."""
    goal_text: str = ""
    """A goal that is not a ratio (``< 1000 ms``), shown instead of ``goal``."""
    http: bool = False
    """An HTTP scenario (its error count is shown)."""

    @property
    def median(self) -> float | None:
        """The median over the rounds, or None without values."""
        return statistics.median(self.values) if self.values else None


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ms(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f} ms" if values else ""


def render_table(rows: Sequence[Row]) -> str:
    """The markdown table: medians over rounds, every round's value, ratio, goal, status."""
    lines = [
        ("| Scenario | Median | Rounds | p50 | p99 | Errors | Compared with | Ratio | Goal "
         "| Status |"),
        "|---|---:|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for row in rows:
        median = row.median
        value = row.text if median is None else f"{_num(median)} {row.unit}".strip()
        rounds = ", ".join(_num(v) for v in row.values) if len(row.values) > 1 else ""
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}×"
        goal = row.goal_text or ("" if row.goal is None else f"≥{row.goal:g}×")
        errors = str(row.errors) if row.http and row.values else ""
        lines.append(
            f"| {row.scenario} | {value} | {rounds} | {_ms(row.p50_ms)} | {_ms(row.p99_ms)} "
            f"| {errors} | {row.baseline} | {ratio} | {goal} | {row.status} |"
        )
    return "\n".join(lines)


def machine() -> str:
    """``nproc``, the CPU model and the memory of this machine."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown memory"
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
                break
    except OSError:
        pass
    return f"nproc {len(os.sched_getaffinity(0))}, {model}, {memory}"


def git_commit() -> str:
    """Short hash of HEAD, with ``+dirty`` when the working tree has changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, timeout=10,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, timeout=10,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout?)"
    return head + ("+dirty" if dirty else "")


def utc_stamp(moment: datetime | None = None) -> str:
    """``YYYY-MM-DD HH:MM UTC``."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def prepend_results(path: Path, section: str) -> None:
    """Put ``section`` first under the header of ``path`` (created when missing)."""
    existing = path.read_text(encoding="utf-8") if path.exists() else RESULTS_HEADER
    if _MARKER not in existing:
        existing = RESULTS_HEADER + "\n" + existing
    head, _, tail = existing.partition(_MARKER)
    text = f"{head}{_MARKER}\n\n{section.strip()}\n\n{tail.lstrip()}"
    path.write_text(text.rstrip() + "\n", encoding="utf-8")
