"""The benchmark harness runs end to end (numbers are not asserted: the machine is shared)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from bench._instr import Counted, parse_total
from bench._report import Row

ROOT = Path(__file__).resolve().parents[1]

EXPECTED_ROWS = (
    "Baseline: minimal JSON endpoint",
    "Baseline: bare HTTP/1.1 protocol, no web layer",
    "Baseline: naive verify",
    "Baseline: Node.js verify (node:http + jose compactVerify",
    "Baseline: raw ES256 verify loop",
    "Gateway: single verification, unique licences (cache off",
    "Gateway: single verification at 43 partners, unique licences (cache off",
    "Gateway: single verification, SM2SM3 licences",
    "Baseline: openssl speed sm2, verify",
    "SM2SM3 verify through the gateway's signature path",
    "Gateway: batch verification",
    "Gateway: tier-1 cache hits",
    "Gateway: matter translation",
    "Gateway: partner query by identifier (",
    "Gateway: partner query by identifier at 43 partners",
    "Tier-2 cache hits (second instance)",
    "Gateway: single verification, cache off, `serve --workers 1`",
    "Gateway: single verification, cache off, `serve --workers 2`",
    "Trust-list propagation to a second instance (",
    "Trust-list propagation to a second instance at 43 partners",
    "Memory with ",
    "Trust-list load at 8 partners (TrustList.from_json",
    "Trust-list load at 43 partners (TrustList.from_json",
    "一件事 check with 5 requirements, all licences presented",
    "Audit appends",
    "Audit inclusion proof",
    "Gateway peak memory",
)
GOALS = (
    ("single verification, cache off ≥ 1× the naive endpoint, with server CPU per request at "
     "most the naive endpoint's"),
    "tier-1 cache hit ≥ 2× the naive endpoint",
    "partner query by identifier ≥ 1× the naive endpoint",
    "batch ≥ 0.5× the raw ES256 loop on one core",
    "HTTP translation ≥ 0.6× the minimal endpoint",
    "two workers ≥ 1.5× one worker on this machine, load generator included",
)
"""Issue 22's goals: each has a line ``goal: … — measured: … — met/not met``."""
LATER_GOALS = (
    ("single verification at 43 partners ≥ 0.9× at 8 partners, cache off (issue 26: keeps "
     "its speed; our reading)"),
    ("partner query by identifier at 43 partners ≥ 0.9× at 8 partners (issue 26: keeps its "
     "speed; our reading)"),
    "trust-list propagation to a second instance at 43 partners < 1000 ms (worst of 3 changes)",
    ("一件事 check with 5 requirements, all licences presented ≤ 1.5× five single "
     "verifications (CPU over HTTP, same run; issue 25)"),
)
"""Issues 25 and 26: the same, measured: each 43-partner row beside its 8-partner row."""


def _node_expected() -> bool:
    """Whether the Node.js row must be measured: node v20+ is here, or CI requires it."""
    import os
    import shutil

    if os.environ.get("ECERT_REQUIRE_SERVICES") == "1":
        return True
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        return False
    version = subprocess.run([node, "--version"], capture_output=True, text=True,
                             check=False).stdout
    return version.startswith("v") and int(version[1:].split(".")[0]) >= 20


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


class TestBenchQuick:
    """``python -m bench --quick --load python --no-write``."""

    @pytest.mark.slow
    @pytest.mark.allow_blocking
    def test_quick_run_prints_every_scenario_row(self, redis_url: str) -> None:
        """A quick run exits 0 and prints the markdown table with every scenario row and a
        line per issue-22 goal; no HTTP scenario counted an error; every measured HTTP row
        has server CPU and p99 and the Node.js rate beside it; the Node.js row is measured
        where node v20 is (always in CI); the workers rows ran or say why not. On the
        session's Redis (private unless the environment names one): the run flushes its
        database and the next one (the 43-partner instances')."""
        done = subprocess.run(
            [sys.executable, "-m", "bench", "--quick", "--load", "python", "--no-write",
             "--duration", "1.5", "--redis-url", redis_url],
            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        )
        assert 0 == done.returncode, done.stderr[-3000:]
        lines = done.stdout.splitlines()
        table = [line for line in lines if line.startswith("| ")]
        assert table[0].startswith("| Scenario | Median |")
        header = _cells(table[0])
        rows = {}
        for expected in EXPECTED_ROWS:
            found = [line for line in table if line.startswith(f"| {expected}")]
            assert found, expected
            rows[expected] = dict(zip(header, _cells(found[0]), strict=True))
        for line in table[2:]:
            assert _cells(line)[header.index("Errors")] in ("", "0"), line
        node = rows["Baseline: Node.js verify (node:http + jose compactVerify"]
        if _node_expected():
            assert node["Median"].endswith("req/s"), node
        else:
            assert node["Median"].startswith("not measured: "), node
        for label, row in rows.items():
            if row["Median"].endswith("req/s") or row["Median"].endswith("licences/s"):
                assert row["CPU µs/req"], label
                assert row["p99"].endswith(" ms"), label
                if node["Median"].endswith("req/s") and not label.startswith(
                        "Baseline: Node.js"):
                    assert row["Node.js jose (÷)"].endswith("×)"), label
        for partners in ("8", "43"):
            load = rows[f"Trust-list load at {partners} partners (TrustList.from_json"]
            assert load["Median"].endswith(" ms"), load
        case = rows["一件事 check with 5 requirements, all licences presented"]
        assert case["Median"].startswith("CPU "), case
        assert case["Ratio"].endswith("×"), case
        for n in (1, 2):
            workers = rows[f"Gateway: single verification, cache off, `serve --workers {n}`"]
            assert workers["Median"].endswith("req/s") or workers["Median"].startswith(
                "not available in this build"), workers
        goal_lines = [line for line in lines if line.startswith("- goal: ")]
        for goal in GOALS:
            (line,) = [g for g in goal_lines if g.startswith(f"- goal: {goal} — measured: ")]
            assert line.endswith(("**met**", "**not met**", "**not measured**")), line
        for goal in LATER_GOALS:  # measured in this run: never "not measured"
            (line,) = [g for g in goal_lines if g.startswith(f"- goal: {goal} — measured: ")]
            assert line.endswith(("**met**", "**not met**")), line


class TestAuditScaleRun:
    """``python -m bench --only audit-scale``: the audit log at scale as a run of its own."""

    @pytest.mark.slow
    @pytest.mark.allow_blocking
    def test_audit_scale_alone_prints_a_dated_section(self, tmp_path: Path) -> None:
        """It builds the log in ``--audit-data-dir`` (then measures the one kept there), and
        prints the section a write would prepend: date, commit, machine, command, load, the
        proof, disk-read, start-up, verify and memory rows with their goals."""
        folder = tmp_path / "audit-scale"
        for _ in range(2):
            done = subprocess.run(
                [sys.executable, "-m", "bench", "--only", "audit-scale", "--quick",
                 "--audit-entries", "3000", "--audit-proofs", "50", "--audit-data-dir",
                 str(folder), "--no-write"],
                cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
            )
            assert 0 == done.returncode, done.stderr[-3000:]
            out = done.stdout
            assert out.startswith("## ")
            assert "(audit log at scale)" in out.splitlines()[0]
            for field in ("- Date: ", "- Commit: ", "- Machine: ", "- Command: `",
                          "- Machine load (1-minute average): "):
                assert f"\n{field}" in out, field
            assert "--audit-entries 3000" in out
            assert "on the uvloop event loop, as `serve` runs it" in out
            for label in ("Audit inclusion proof (AuditService.entry",
                          "Audit consistency proof (random older size",
                          "One read of a random 4 KiB page of the log's database",
                          "Audit service start-up at 3,000 entries",
                          "audit verify of 3,000 entries",
                          "Audit tree in memory per million entries"):
                assert f"\n| {label}" in out, label
            for goal in ("audit inclusion proof at 3,000 entries < 1 ms (p99)",
                         "audit consistency proof at 3,000 entries < 1 ms (p99)",
                         "audit start-up at 3,000 entries < 10 s",
                         "audit verify of 3,000 entries < 60 s"):
                assert f"\n- goal: {goal} — measured: " in out, goal
            assert (folder / "audit-tree.leaves").stat().st_size == 32 * (1 + 3000)
        from bench._run import Options

        with pytest.raises(SystemExit):
            Options.parse(["--audit-entries", "0"])


class TestServiceMeasurement:
    """``python -m bench._inproc service``: the service's cost beside the verifier's."""

    @pytest.mark.slow
    @pytest.mark.allow_blocking
    def test_service_row_times_every_path_it_names(self) -> None:
        """Every path is timed in every round (each licence passed, else the run fails),
        and the derived figures are those of the medians it prints."""
        done = subprocess.run(
            [sys.executable, "-m", "bench._inproc", "service", "--licences", "64",
             "--rounds", "2"],
            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        )
        assert 0 == done.returncode, done.stderr[-3000:]
        result = orjson.loads(done.stdout.splitlines()[-1])
        paths = ("es256", "verifier", "batch", "single", "alone", "hit")
        for name in paths:
            rounds = result[f"{name}_us_rounds"]
            assert 2 == len(rounds), name
            assert all(value > 0 for value in rounds), name
        # Each verification does at least the ES256 call the raw loop does.
        for name in ("verifier", "batch", "single", "alone"):
            assert result[f"{name}_us"] > result["es256_us"], name
        assert round(result["verifier_us"] - result["es256_us"], 1) == pytest.approx(
            result["verifier_python_us"], abs=0.11)
        assert round(result["es256_us"] / result["batch_us"], 3) == pytest.approx(
            result["batch_ratio"], abs=0.0011)
        assert round(result["single_us"] / result["alone_us"], 3) == pytest.approx(
            result["single_vs_alone"], abs=0.0011)
        # A tier-1 hit checks no signature: it costs less than the verification it saves.
        assert result["hit_us"] < result["single_us"]
        assert round(result["hit_us"] / result["single_us"], 3) == pytest.approx(
            result["hit_vs_single"], abs=0.0011)


class TestOptions:
    """The command line of ``python -m bench``."""

    def test_only_takes_known_scenarios(self) -> None:
        """``--only`` keeps the named scenarios and refuses a misspelt one."""
        from bench._run import Options

        assert frozenset({"single", "node"}) == Options.parse(["--only", "single, node"]).only
        assert frozenset({"naive", "workers-1", "workers-2"}) == Options.parse(
            ["--only", "naive,workers"]).only
        assert frozenset({"single", "single-43", "partner", "partner-43", "trust-load",
                          "cases"}) == Options.parse(["--only", "federation,cases"]).only
        assert Options.parse([]).only is None
        for wrong in ("singel", "floor-verify"):
            with pytest.raises(SystemExit):
                Options.parse(["--only", wrong])

    def test_crypto_thread_switch_is_for_development_runs(self) -> None:
        """``--crypto-thread off`` needs ``--only``."""
        from bench._run import Options

        assert Options.parse([]).crypto_thread
        assert not Options.parse(["--only", "partner", "--crypto-thread", "off"]).crypto_thread
        with pytest.raises(SystemExit):
            Options.parse(["--crypto-thread", "off"])

    def test_http_lane_switch_is_for_development_runs(self) -> None:
        """``--http-lane off`` needs ``--only``."""
        from bench._run import Options

        assert Options.parse([]).http_lane
        assert not Options.parse(["--only", "single", "--http-lane", "off"]).http_lane
        with pytest.raises(SystemExit):
            Options.parse(["--http-lane", "off"])

    def test_development_runs_issue_full_pools_only_for_what_they_measure(self) -> None:
        """``--only`` keeps the pools its scenarios send at full size and shrinks the rest."""
        from bench._run import Options, _sizes

        full = _sizes(Options.parse([]))
        small = {"single": 600, "single-43": 600, "batch": 6, "workers": 300}
        partner = Options.parse(["--only", "naive,partner"])
        assert {**full, **small} == _sizes(partner)
        assert (2000, 200) == (partner.verdicts, partner.tier2)
        single = Options.parse(["--only", "single"])
        assert {**full, **small, "single": full["single"]} == _sizes(single)
        both = Options.parse(["--only", "batch,tier2"])
        assert {**full, **small, "batch": full["batch"]} == _sizes(both)
        assert (2000, 2000) == (both.verdicts, both.tier2)
        workers = Options.parse(["--only", "workers"])
        assert {**full, **small, "workers": full["workers"]} == _sizes(workers)
        federation = Options.parse(["--only", "federation"])
        assert {**full, **small, "single": full["single"],
                "single-43": full["single-43"]} == _sizes(federation)
        assert full["single-43"] == full["single"]  # the same load at 8 and at 43
        whole = Options.parse([])
        assert (100_000, 2000) == (whole.verdicts, whole.tier2)
        assert full["single"] > 600
        assert full["batch"] > 6
        assert full["workers"] > 300

    def test_defaults_keep_the_full_run_short(self) -> None:
        """Full run: 3 rounds of 10 s; batch with 1 connection (its p99), the others with 32."""
        from bench._run import Options

        whole = Options.parse([])
        assert (3, 10.0, 32, 1) == (whole.rounds, whole.duration, whole.connections,
                                    whole.batch_connections)


class TestFederationRows:
    """The rows at 8 and 43 partners, and the 一件事 row."""

    def test_43_partner_instances_get_the_next_redis_database(self) -> None:
        """Their trust-list version key and verdicts never meet the 8-partner instances'."""
        from bench._cluster import next_database

        assert "redis://127.0.0.1:6379/2" == next_database("redis://127.0.0.1:6379/1")
        assert "redis://127.0.0.1:6391/1" == next_database("redis://127.0.0.1:6391")

    def test_keep_their_speed_is_judged_on_both_ratios(self) -> None:
        """0.9× at 43 partners: met at 0.92×, not met when a round falls to 0.85×."""
        from bench._run import GOAL_FEDERATION, _judge

        eight = Row("8", "req/s", values=[1000.0, 1000.0, 1000.0], http=True)
        row = Row("43", "req/s", values=[920.0, 950.0, 900.0], p99_ms=[10.0] * 3, http=True)
        _judge(row, eight, "8 partners", GOAL_FEDERATION, "g")
        assert "met" == row.status
        row = Row("43", "req/s", values=[920.0, 850.0, 850.0], p99_ms=[10.0] * 3, http=True)
        _judge(row, eight, "8 partners", GOAL_FEDERATION, "g")
        assert row.status.startswith("not met: ratio 0.85× < 0.9×")

    def test_case_row_is_judged_on_the_http_cpu_ratio(self) -> None:
        """At most 1.5× over HTTP; the service-level and wall ratios are shown, not judged."""
        from bench._report import goal_lines
        from bench._run import Extras, _cases_row

        def result(http: float) -> dict[str, object]:
            return {"case_cpu_ratio_http": http, "case_cpu_ratio_service": 2.0,
                    "case_wall_ratio_http": 0.5, "case_wall_ratio_service": 0.7,
                    "case_http": {"cpu_ms": 6.0}, "singles_http": {"cpu_ms": 6.0 / http},
                    "case_service": {"cpu_ms": 4.0}, "singles_service": {"cpu_ms": 2.0},
                    "n": 100, "rounds": 3}

        extras = Extras(redis=False, redis_note="")
        extras.cases = result(1.4)
        row = _cases_row(extras)
        assert "met" == row.status
        (line,) = goal_lines([row])
        assert "1.40× five single verifications by CPU over HTTP" in line
        assert "service level 2.00×" in line
        assert "wall time 0.50× over HTTP, 0.70× at the service level" in line
        extras.cases = result(1.6)
        assert _cases_row(extras).status.startswith("not met: 1.60× > 1.5×")
        extras.cases = None
        assert "not measured" == _cases_row(extras).status


class TestGoals:
    """A goal is judged on both ratios, the p99 limit, errors and (single) server CPU."""

    @staticmethod
    def _rows(values: list[float], base: list[float], *, p99: float = 10.0,
              cpu: float = 200.0, base_cpu: float = 250.0) -> tuple[Row, Row]:
        row = Row("row", "req/s", values=values, p99_ms=[p99] * len(values),
                  cpu_us=[cpu] * len(values), http=True)
        baseline = Row("base", "req/s", values=base, cpu_us=[base_cpu] * len(base), http=True)
        return row, baseline

    def test_met_needs_both_ratios(self) -> None:
        """Ratio of medians and median of per-round ratios must both reach the goal."""
        from bench._report import verdict
        from bench._run import _judge

        row, base = self._rows([1000.0, 1000.0, 1000.0], [1000.0, 990.0, 1010.0])
        _judge(row, base, "naive", 1.0, "g")
        assert "met" == row.status
        assert [1.0, 1000 / 990, 1000 / 1010] == row.round_ratios
        # Medians equal (ratio 1.0), per-round ratios 0.9, 1.1, 0.83 (median 0.9).
        row, base = self._rows([900.0, 1100.0, 1000.0], [1000.0, 1000.0, 1200.0])
        _judge(row, base, "naive", 1.0, "g")
        assert 1.0 == row.ratio
        assert row.status.startswith("not met: median of per-round ratios 0.90× < 1×")
        assert "not met" == verdict(row.status)
        # Rates that move from round to round while the ratio holds: met.
        row, base = self._rows([100.0, 2000.0, 4000.0], [50.0, 1000.0, 2000.0])
        _judge(row, base, "naive", 2.0, "g")
        assert (2.0, 2.0, "met") == (row.ratio, row.round_ratio, row.status)

    def test_p99_errors_and_cpu(self) -> None:
        """A p99 above 50 ms, an error, or (with ``cpu``) more CPU than the baseline's."""
        from bench._run import _flag, _judge

        row, base = self._rows([3000.0], [1000.0], p99=51.0)
        _judge(row, base, "naive", 2.0, "g")
        assert "not met: p99 51 ms > 50 ms" == row.status
        row, base = self._rows([3000.0], [1000.0], cpu=300.0)
        _judge(row, base, "naive", 1.0, "g", cpu=True)
        assert "not met: server CPU 300 > 250 µs/request" == row.status
        assert "server CPU 300 µs/request against 250" in row.measured
        row, base = self._rows([3000.0], [1000.0])
        row.errors = 2
        _judge(row, base, "naive", 1.0, "g", cpu=True)
        assert "not met: 2 errors" == row.status
        flagged, _ = self._rows([100.0], [100.0], p99=80.0)
        _flag(flagged)
        assert "p99 80 ms > 50 ms" == flagged.status

    def test_unmeasured_baseline_is_not_measured(self) -> None:
        """Without the baseline's values the goal is "not measured", never "met"."""
        from bench._report import goal_lines
        from bench._run import _judge

        row = Row("two workers", "req/s", values=[5.0], http=True)
        _judge(row, Row("one", text="not available in this build"), "one worker", 1.5,
               "two workers ≥ 1.5× one worker")
        assert row.status.startswith("not measured")
        (line,) = goal_lines([row, Row("no goal", values=[1.0])])
        assert line.startswith("goal: two workers ≥ 1.5× one worker — measured: ")
        assert line.endswith("— **not measured**")


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

    @pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
    @pytest.mark.allow_blocking
    def test_tree_cpu_counts_worker_processes(self) -> None:
        """A server's CPU includes the processes it started (``serve --workers N``)."""
        from bench._procs import cpu_seconds, tree_cpu_seconds

        burn = ("import subprocess, sys, time\n"
                "child = subprocess.Popen([sys.executable, '-c', "
                "'import time\\nt = time.process_time()\\n"
                "while time.process_time() - t < 0.4: pass\\ntime.sleep(30)'])\n"
                "time.sleep(30)\n")
        parent = subprocess.Popen([sys.executable, "-c", burn])
        try:
            import time

            deadline = time.monotonic() + 20
            total = 0.0
            while time.monotonic() < deadline:
                total = tree_cpu_seconds(parent.pid) or 0.0
                own = cpu_seconds(parent.pid) or 0.0
                if total - own >= 0.35:
                    break
                time.sleep(0.1)
            assert total - own >= 0.35, (total, own)
        finally:
            from bench._procs import _descendants, _end_leftovers

            below = _descendants(parent.pid)
            parent.kill()
            parent.wait()
            _end_leftovers(below, 5.0)

    def test_cpu_is_a_column_of_measured_rounds(self) -> None:
        """Each round's CPU µs per request is kept; a batch row's is per licence; nothing is
        claimed when a round was not measured."""
        from bench._report import render_table
        from bench._run import Http, _add_cpu, _http_row

        measured = Http("partner", "http://127.0.0.1:1/q", Path("p"), Path("w"))
        for cpu in (400.0, 300.0, 500.0):
            result = {"requests": 1000}
            _add_cpu(result, measured, None)
            assert "cpu_us" not in result  # nothing read: nothing claimed
            measured.results.append({"requests": 1000, "seconds": 1.0, "p50_ms": 1.0,
                                     "p99_ms": 2.0, "errors": 0, "cpu_us": cpu})
        row = _http_row(measured, "partner", "req/s")
        assert 400.0 == row.cpu_median
        batch = _http_row(measured, "batch", "licences/s", per=100)
        assert 4.0 == batch.cpu_median
        measured.results.append({"requests": 10, "seconds": 1.0, "p50_ms": 1.0,
                                 "p99_ms": 2.0, "errors": 0})
        assert _http_row(measured, "partner", "req/s").cpu_median is None
        table = render_table([row])
        assert "| 400 |" in table


class TestNodeBaseline:
    """The Node.js baseline: pinned exactly, and a clear reason when it cannot run."""

    def test_jose_is_pinned_exactly(self) -> None:
        """package.json names one exact jose version, the one package-lock.json locks."""
        import json

        from bench._node import NODE_DIR, locked_jose

        package = json.loads((NODE_DIR / "package.json").read_text(encoding="utf-8"))
        assert {"jose"} == set(package["dependencies"])
        assert locked_jose() == package["dependencies"]["jose"]
        assert locked_jose()[0].isdigit()  # no range such as ^ or ~

    def test_missing_node_or_npm_is_reported(self, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
        """Without node on PATH, or without npm when jose is not installed, the baseline
        says so instead of failing the run."""
        import shutil

        from bench import _node

        monkeypatch.setattr(shutil, "which", lambda name: None)
        found = _node.ensure_node(lambda _: None)
        assert found.node is None
        assert found.describe().startswith("not measured: node not found on PATH")
        fake = tmp_path / "node"
        fake.write_text("#!/bin/sh\necho v20.1.0\n")
        fake.chmod(0o755)
        monkeypatch.setattr(shutil, "which", lambda name: str(fake) if name == "node" else None)
        folder = tmp_path / "baseline"
        folder.mkdir()
        (folder / "package-lock.json").write_text(
            '{"packages": {"node_modules/jose": {"version": "6.2.19"}}}')
        found = _node.ensure_node(lambda _: None, folder)
        assert found.node is None
        assert found.problem.startswith("npm not found on PATH")


class TestCacheCounters:
    """The tier-2 row's note reads B's cache counters from ``/metrics``."""

    def test_counters_are_found_whatever_the_label_order(self) -> None:
        """prometheus_client writes labels in the family's order (event before tier); a
        ``worker`` label (several workers) is summed over."""
        from bench._run import _counter_delta

        before = {'ecert_cache_events_total{event="hit",tier="redis"}': 10.0}
        after = {'ecert_cache_events_total{event="hit",tier="redis"}': 25.0,
                 'ecert_cache_events_total{event="miss",tier="redis",worker="1"}': 2.0,
                 'ecert_cache_events_total{tier="memory",event="hit"}': 3.0,
                 'ecert_cache_memory_entries': 4.0}
        assert {"redis hits": 15, "redis misses": 2, "redis errors": 0,
                "tier-1 hits": 3} == _counter_delta(before, after)


def test_instruction_totals_are_read_from_callgrind_output() -> None:
    """``bench._instr`` reads the ``totals:`` line: with counting switched on and off while
    the server runs, callgrind's ``summary:`` line says 0."""
    text = ("version: 1\ncmd: python -m gateway serve\nsummary: 0\nfn=(1) main\n0 5\n"
            "totals: 2241514\n")
    assert parse_total(text) == 2_241_514
    with pytest.raises(ValueError, match="no totals line"):
        parse_total("version: 1\nsummary: 0\n")


def test_periodic_work_is_taken_out_of_the_count() -> None:
    """The server's own periodic work, counted in an idle window, is taken out of the
    requests' window in proportion to its length: what is left is the requests' work."""
    counted = Counted(requests=1000, total=2_600_000_000, window_s=40.0,
                      idle_total=50_000_000, idle_s=10.0)
    assert counted.idle_per_s == 5_000_000
    assert counted.per_request == (2_600_000_000 - 5_000_000 * 40.0) / 1000
    silent = Counted(requests=10, total=1000, window_s=1.0, idle_total=0, idle_s=10.0)
    assert silent.per_request == 100


@pytest.mark.skipif(shutil.which("valgrind") is None or shutil.which("callgrind_control") is None,
                    reason="valgrind is not installed")
def test_instruction_counts_of_the_minimal_endpoint() -> None:
    """``bench._instr`` end to end on its cheapest row: the minimal endpoint under callgrind,
    100 requests counted, a count in the range an aiohttp request takes (tens of thousands
    of instructions at least, and not the whole start-up of the interpreter)."""
    done = subprocess.run([sys.executable, "-m", "bench._instr", "--rows", "minimal",
                           "--requests", "100"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = orjson.loads(done.stdout.strip().splitlines()[-1])
    per_request = result["instructions"]["minimal"]
    assert 20_000 < per_request < 1_500_000, result
    assert result["idle_per_s"]["minimal"] >= 0


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """A ``bare`` baseline server on a free port, for the tests of this module that ask."""
    from bench._procs import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench._baselines", "bare", "--port",
                             str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                _, err = proc.communicate()
                raise RuntimeError(f"the bare baseline did not start: {err[-2000:]!r}") from None
            time.sleep(0.05)
    yield port
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err[-2000:]


def _post(body: bytes) -> bytes:
    return b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class TestBareBaseline:
    """``python -m bench._baselines bare``: the protocol the bench's bare row measures answers
    HTTP/1.1 as a server must (keep-alive, pipelining in order, bodies in several reads,
    chunked bodies, refusals), so that its row measures a real server's work."""

    @staticmethod
    def _exchange(port: int, raw: bytes, answers: int
                  ) -> list[tuple[int, dict[str, str], bytes]]:
        """Send ``raw`` on one connection (in pieces of 64 KiB) and read ``answers`` answers."""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            for i in range(0, len(raw), 1 << 16):
                sock.sendall(raw[i:i + (1 << 16)])
            got: list[tuple[int, dict[str, str], bytes]] = []
            buffer = b""
            while len(got) < answers:
                while b"\r\n\r\n" not in buffer:
                    chunk = sock.recv(65536)
                    assert chunk, f"connection closed after {len(got)} answers"
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                status_line, *lines = head.decode().split("\r\n")
                headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
                length = int(headers["content-length"])
                while len(buffer) < length:
                    chunk = sock.recv(65536)
                    assert chunk, "connection closed inside a body"
                    buffer += chunk
                got.append((int(status_line.split()[1]), headers, buffer[:length]))
                buffer = buffer[length:]
            return got

    def test_pipelined_requests_are_answered_in_order(self, port: int) -> None:
        body = b'{"credential": "x"}'
        raw = (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
               + _post(body)
               + b"GET /elsewhere HTTP/1.1\r\nHost: a\r\n\r\n"
               + b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"2\r\n{}\r\n0\r\n\r\n")
        got = self._exchange(port, raw, 4)
        assert [status for status, _, _ in got] == [200, 200, 404, 200]
        assert orjson.loads(got[0][2]) == {"status": "ok"}
        assert orjson.loads(got[1][2]) == {"ok": True, "service": "bare"}
        assert orjson.loads(got[3][2]) == {"ok": True, "service": "bare"}
        assert all(h["content-type"] == "application/json" for _, h, _ in got)

    def test_a_body_in_many_reads_is_read_whole_before_the_answer(self, port: int) -> None:
        # Larger than the parser's buffer (64 KiB) and than one read: flow control pauses
        # and resumes the transport, and the answer waits for the last byte.
        body = b"y" * 600_000
        raw = (_post(body) + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        got = self._exchange(port, raw, 2)
        assert [status for status, _, _ in got] == [200, 200]
        assert orjson.loads(got[1][2]) == {"status": "ok"}

    def test_refusals_close_the_connection(self, port: int) -> None:
        big = b"z" * 1_100_000  # over the 1 MiB the bare server reads
        got = self._exchange(port, _post(big), 1)
        assert got[0][0] == 413
        assert got[0][1]["connection"] == "close"
        got = self._exchange(port, b"NOT HTTP AT ALL\r\n\r\n", 1)
        assert got[0][0] == 400
        assert got[0][1]["connection"] == "close"

    def test_connection_close_is_honoured(self, port: int) -> None:
        got = self._exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                             1)
        assert got[0][0] == 200
        assert got[0][1]["connection"] == "close"


def test_instruction_rows_serve_the_gateway_with_or_without_the_lane(tmp_path: Path) -> None:
    """``bench._instr --http-lane off`` starts every gateway row with ``ECERT_HTTP_LANE=0``
    (an A/B of the lane), and leaves the baselines and the default alone."""
    from bench._instr import ROWS, _rows

    for name in ("naive", "naive-warm", "single", "single-warm", "repeated", "batch",
                 "batch-warm"):
        (tmp_path / f"{name}.jsonl").write_bytes(b'{"credential": "x"}\n')
    made = {row.name: row.env for row in _rows(ROWS, tmp_path, tmp_path, "key", 100)}
    assert all("ECERT_HTTP_LANE" not in env for env in made.values())
    off = {row.name: row.env
           for row in _rows(ROWS, tmp_path, tmp_path, "key", 100, http_lane=False)}
    gateways = {"single", "hit", "batch", "translation"}
    assert {name for name, env in off.items() if env.get("ECERT_HTTP_LANE") == "0"} == gateways
    assert off["single"]["ECERT_CACHE_ENABLED"] == "0"
    assert "ECERT_CACHE_ENABLED" not in off["hit"]
