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
    "Floor: ES256 check + ES256 receipt + durable audit record",
    "Gateway: single verification, SM2SM3 licences",
    "Baseline: openssl speed sm2, verify",
    "SM2SM3 verify through the gateway's signature path",
    "Gateway: batch verification",
    "Floor: the same per licence",
    "Gateway: repeated verification",
    "Floor: ES256 receipt + durable audit record",
    "Gateway: matter translation",
    "Floor: durable audit record only",
    "Gateway: partner query by identifier",
    "Floor: request-token ES256 check + jti spent",
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
        """A quick run exits 0 and prints the markdown table with every scenario row, and
        no HTTP scenario (gateway, floor or baseline) counted an error."""
        done = subprocess.run(
            [sys.executable, "-m", "bench", "--quick", "--load", "python", "--no-write",
             "--duration", "1.5"],
            cwd=ROOT, capture_output=True, text=True, timeout=150, check=False,
        )
        assert 0 == done.returncode, done.stderr[-3000:]
        table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
        assert table[0].startswith("| Scenario | Median |")
        for expected in EXPECTED_ROWS:
            assert any(line.startswith(f"| {expected}") for line in table), expected
        header = [cell.strip() for cell in table[0].strip("|").split("|")]
        errors_at = header.index("Errors")
        for line in table[2:]:
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            assert cells[errors_at] in ("", "0"), line


class TestOptions:
    """The command line of ``python -m bench``."""

    def test_only_takes_known_scenarios(self) -> None:
        """``--only`` keeps the named scenarios and refuses a misspelt one."""
        from bench._run import Options

        assert frozenset({"single", "floor-verify"}) == Options.parse(
            ["--only", "single, floor-verify"]).only
        assert Options.parse([]).only is None
        with pytest.raises(SystemExit):
            Options.parse(["--only", "singel"])

    def test_crypto_thread_switch_is_for_development_runs(self) -> None:
        """``--crypto-thread off`` needs ``--only``; it reaches the options and the floor."""
        from bench._baselines import _FLOOR, create_floor_app
        from bench._run import Options

        assert Options.parse([]).crypto_thread
        assert not Options.parse(["--only", "partner", "--crypto-thread", "off"]).crypto_thread
        with pytest.raises(SystemExit):
            Options.parse(["--crypto-thread", "off"])
        for enabled in (True, False):
            app = create_floor_app({"partners": []}, Path("unused"), crypto_thread=enabled)
            assert enabled == app[_FLOOR].crypto.enabled

    def test_development_runs_issue_full_pools_only_for_what_they_measure(self) -> None:
        """``--only`` keeps the pools its scenarios send at full size and shrinks the rest."""
        from bench._run import Options, _sizes

        full = _sizes(Options.parse([]))
        partner = Options.parse(["--only", "naive,floor-partner,partner"])
        assert {**full, "single": 600, "batch": 6} == _sizes(partner)
        assert (2000, 200) == (partner.verdicts, partner.tier2)
        single = Options.parse(["--only", "floor-verify"])
        assert {**full, "batch": 6} == _sizes(single)
        both = Options.parse(["--only", "batch,tier2"])
        assert {**full, "single": 600} == _sizes(both)
        assert (2000, 2000) == (both.verdicts, both.tier2)
        whole = Options.parse([])
        assert (100_000, 2000) == (whole.verdicts, whole.tier2)
        assert full["single"] > 600
        assert full["batch"] > 6


class TestFloorRows:
    """A floor row says whether the goal it bounds is within reach."""

    def test_floor_status(self) -> None:
        """Below the goal's ratio the goal is out of reach; at or above it, within reach."""
        from bench._report import Row
        from bench._run import _floor

        base = Row("base", values=[1000.0])
        low, high = Row("low", values=[399.0]), Row("high", values=[400.0])
        _floor(low, base, "minimal JSON", 0.4)
        _floor(high, base, "minimal JSON", 0.4)
        assert ("goal out of reach on this stack", "goal within reach") == (low.status,
                                                                            high.status)
        assert "bounds ≥0.4×" == low.goal_text


class TestServerCpu:
    """Server CPU per request: read from /proc, reported per scenario."""

    @pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
    def test_cpu_seconds_counts_this_process(self) -> None:
        """CPU time read from /proc grows by about the time spent computing."""
        import os
        import time

        from bench._procs import cpu_seconds

        before = cpu_seconds(os.getpid())
        started = time.process_time()
        while time.process_time() - started < 0.3:
            sum(range(1000))
        after = cpu_seconds(os.getpid())
        assert before is not None
        assert after is not None
        assert 0.2 <= after - before <= 1.0  # clock ticks are 10 ms; other threads may add
        assert cpu_seconds(2**22 + 12345) is None  # above pid_max: no such process

    def test_cpu_note_lists_medians(self) -> None:
        """The note quotes each scenario's median µs per request, and only measured ones."""
        from bench._run import Http, _add_cpu, _cpu_note

        measured = Http("partner", "http://127.0.0.1:1/q", Path("p"), Path("w"))
        for cpu in (400.0, 300.0, 500.0):
            result = {"requests": 1000}
            _add_cpu(result, measured, None)
            assert "cpu_us" not in result  # nothing read: nothing claimed
            measured.results.append({"requests": 1000, "cpu_us": cpu})
        unmeasured = Http("naive", "http://127.0.0.1:2/", Path("p"), Path("w"))
        unmeasured.results.append({"requests": 10})
        (note,) = _cpu_note([measured, unmeasured])
        assert "partner 400." in note
        assert "naive" not in note
        assert [] == _cpu_note([unmeasured])
