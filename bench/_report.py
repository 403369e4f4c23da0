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

__all__ = ["P99_LIMIT_MS", "Row", "git_commit", "goal_lines", "machine", "prepend_results",
           "render_table", "verdict"]

ROOT = Path(__file__).resolve().parents[1]
RESULTS_HEADER: Final = """# Benchmark results

Written by `python -m bench` (`make bench`); newest run first. Each run
measures the gateway and its baselines in the same run, on the same machine,
with the same load generator; see `bench/README.md` for what each row means.
Entries headed "instruction counts" were added by hand from `python -m
bench._instr` (`bench/README.md`, "Instructions instead of time"), with the
command that made them.

<!-- runs below: newest first -->
"""
_MARKER: Final = "<!-- runs below: newest first -->"
P99_LIMIT_MS: Final = 50.0
"""Issue 22: no row may buy throughput with a p99 latency above this."""


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
    cpu_us: list[float] = field(default_factory=list)
    """Server CPU time per request (or per licence), µs, one value per round."""
    round_ratios: list[float] = field(default_factory=list)
    """Per round: this row's value ÷ its baseline's value in the same round."""
    node: str = ""
    """The Node.js (jose) endpoint's median rate and this row's ratio to it."""
    goal_name: str = ""
    """What the goal asks, for the goal lines under the table (empty: no goal)."""
    measured: str = ""
    """What was measured against the goal, for the goal lines."""

    @property
    def median(self) -> float | None:
        """The median over the rounds, or None without values."""
        return statistics.median(self.values) if self.values else None

    @property
    def cpu_median(self) -> float | None:
        """The median server CPU µs per request over the rounds, or None."""
        return statistics.median(self.cpu_us) if self.cpu_us else None

    @property
    def p99_median(self) -> float | None:
        """The median over the rounds of each round's p99 latency (ms), or None."""
        return statistics.median(self.p99_ms) if self.p99_ms else None

    @property
    def round_ratio(self) -> float | None:
        """The median of the per-round ratios, or None."""
        return statistics.median(self.round_ratios) if self.round_ratios else None


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ms(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f} ms" if values else ""


def render_table(rows: Sequence[Row]) -> str:
    """The markdown table: medians over rounds, every round's value, server CPU per request,
    latency, the ratio of medians and the median of per-round ratios, goal, status, and the
    Node.js endpoint's rate beside each rate row."""
    lines = [
        ("| Scenario | Median | Rounds | CPU µs/req | p50 | p99 | Errors | Compared with "
         "| Ratio | Per-round ratios (median) | Goal | Status | Node.js jose (÷) |"),
        "|---|---:|---|---:|---:|---:|---:|---|---:|---|---:|---|---|",
    ]
    for row in rows:
        median = row.median
        value = row.text if median is None else f"{_num(median)} {row.unit}".strip()
        rounds = ", ".join(_num(v) for v in row.values) if len(row.values) > 1 else ""
        cpu = "" if row.cpu_median is None else f"{row.cpu_median:,.0f}"
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}×"
        per_round = ""
        if row.round_ratios:
            each = ", ".join(f"{r:.2f}" for r in row.round_ratios)
            per_round = f"{each} ({row.round_ratio:.2f}×)" if len(row.round_ratios) > 1 \
                else f"{each}×"
        goal = row.goal_text or ("" if row.goal is None else f"≥{row.goal:g}×")
        errors = str(row.errors) if row.http and row.values else ""
        lines.append(
            f"| {row.scenario} | {value} | {rounds} | {cpu} | {_ms(row.p50_ms)} "
            f"| {_ms(row.p99_ms)} | {errors} | {row.baseline} | {ratio} | {per_round} | {goal} "
            f"| {row.status} | {row.node} |"
        )
    return "\n".join(lines)


def verdict(status: str) -> str:
    """``met``, ``not met`` or ``not measured``, from a row's status."""
    if status == "met" or status.startswith("met "):
        return "met"
    if status.startswith("not measured"):
        return "not measured"
    return "not met"


def goal_lines(rows: Sequence[Row]) -> list[str]:
    """One line per goal: ``goal: … measured: … met/not met``."""
    return [f"goal: {row.goal_name} — measured: {row.measured or row.text or 'nothing'} — "
            f"**{verdict(row.status)}**"
            for row in rows if row.goal_name]


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
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0))
    return (f"{model}, {cores} CPU{'s' if cores != 1 else ''} (nproc {usable}), {memory}")


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
