"""The benchmark harness runs end to end (numbers are not asserted: the machine is shared)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

EXPECTED_ROWS = (
    "Baseline: minimal JSON endpoint",
    "Baseline: naive verify",
    "Baseline: raw ES256 verify loop",
    "Gateway: single verification",
    "Gateway: batch verification",
    "Gateway: repeated verification",
    "Gateway: matter translation",
    "Gateway: partner query by identifier",
    "Tier-2 cache hits (second instance)",
    "Trust-list propagation to a second instance",
    "Memory with ",
    "Audit appends",
    "Audit inclusion proof",
    "Gateway peak memory",
)


class TestBenchQuick:
    """``python -m bench --quick --load python --no-write``."""

    @pytest.mark.slow
    @pytest.mark.allow_blocking
    def test_quick_run_prints_every_scenario_row(self) -> None:
        """A quick run exits 0 and prints the markdown table with every scenario row."""
        done = subprocess.run(
            [sys.executable, "-m", "bench", "--quick", "--load", "python", "--no-write",
             "--duration", "1.5"],
            cwd=ROOT, capture_output=True, text=True, timeout=90, check=False,
        )
        assert 0 == done.returncode, done.stderr[-3000:]
        table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
        assert table[0].startswith("| Scenario | Median |")
        for expected in EXPECTED_ROWS:
            assert any(line.startswith(f"| {expected}") for line in table), expected
