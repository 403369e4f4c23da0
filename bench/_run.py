"""One benchmark run: start everything, measure in rounds, report, stop everything."""

from __future__ import annotations

import argparse
import math
import os
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final

import orjson

from bench import _cluster, _wrk
from bench._inproc import translate_calls
from bench._node import NodeBaseline, ensure_node
from bench._procs import (
    HOST,
    ROOT,
    Children,
    Pinning,
    free_port,
    http_post,
    peak_memory_kib,
    python,
    resident_memory_kib,
    run_bounded,
    tree_cpu_seconds,
)
from bench._report import (
    P99_LIMIT_MS,
    Row,
    git_commit,
    goal_lines,
    machine,
    prepend_results,
    render_table,
    utc_stamp,
)

__all__ = ["main"]

RESULTS: Final = Path(__file__).resolve().parent / "RESULTS.md"
BATCH_SIZE: Final = 100
REPEATED: Final = 4
TRANSLATE_BODY: Final = {
    "source": {"region": "330500", "code": "许可-00906-002"},
    "target_region": "330100",
    "conditions": {"applicant_type": "enterprise"},
}
SCENARIO_KEYS: Final = ("minimal", "bare", "naive", "node", "single", "single-43",
                         "single-sm2", "batch", "repeated", "translation", "partner",
                         "partner-43", "tier2", "workers-1", "workers-2", "es256", "sm2",
                         "audit", "trust-load", "cases", "audit-scale")
ALIASES: Final = {"workers": ("workers-1", "workers-2"),
                  "federation": ("single", "single-43", "partner", "partner-43", "trust-load")}
"""``--only`` names that stand for several scenarios (a ratio needs both of its rows)."""
# Issue 22's goals, each against a baseline measured in the same run (ratios of rates).
GOAL_SINGLE: Final = 1.0
"""Single verification, cache off, ÷ naive; and server CPU per request ≤ naive's."""
GOAL_CACHE_HIT: Final = 2.0
"""Tier-1 cache hit ÷ naive."""
GOAL_PARTNER: Final = 1.0
"""Partner query by identifier ÷ naive."""
GOAL_BATCH: Final = 0.5
"""Batch licences/s ÷ the raw ES256 loop on one core."""
GOAL_TRANSLATION: Final = 0.6
"""HTTP translation ÷ minimal."""
GOAL_WORKERS: Final = 1.5
"""``serve --workers 2`` ÷ ``serve --workers 1``, load generator on the same two CPUs."""
GOAL_TIER2: Final = 1.2
GOAL_PROPAGATION_MS: Final = 1000.0
GOAL_MEMORY_MB: Final = 250.0
GOAL_TRANSLATE_INPROC: Final = 200_000.0
GOAL_SM2_PRIMITIVE: Final = 0.5
"""SM2 verification through the gateway's signature path against ``openssl speed sm2``."""
GOAL_CASE: Final = 1.5
"""Issue 25: a 一件事 check with 5 requirements, all licences presented, costs at most this
many times five single verifications (CPU per unit of work over HTTP, ``bench._cases``)."""
GOAL_FEDERATION: Final = 0.9
"""Issue 26: single verification and partner queries "keep their speed" with the full
federation. Our reading: the rate at 43 partners ÷ the rate at 8, same load, same run, at
least this (a loss of at most 10 %, about the spread of rounds on the shared machine)."""
FULL_FEDERATION: Final = "full"
"""The mocks' federation of the 43-partner rows (``Federation.named``)."""
SM2_POOL: Final = 1000
"""SM2SM3 licences of the single-sm2 pool (the mocks sign SM2 in pure Python, ~7 ms each)."""
REDIS_URL: Final = "redis://127.0.0.1:6379/1"
# Upper guesses of throughput on one core, to size the pools of unique licences so that no
# licence is sent twice in a run (checked afterwards and reported when it happened anyway).
EXPECTED_SINGLE_PER_S: Final = 5000
EXPECTED_BATCH_LICENCES_PER_S: Final = 6000
EXPECTED_PARTNER_PER_S: Final = 6000
"""Upper guess of partner queries/s: sizes each round's pool of one-use request tokens."""
WORKERS_POOL: Final = 10_000
"""ES256 licences cycled by the workers rows (instances D and E, cache off)."""
BATCH_CONNECTIONS: Final = 1
"""Batches in flight. A batch of 100 keeps the server's core busy for about 20 ms, so by
Little's law each batch in flight adds that much to every batch's latency: two in flight
served about 6 % more licences a second (the loop verifies one while the other's audit
commit is made durable) with a p99 of 69-77 ms, one in flight a p99 of 40-47 ms
(2026-12-07, docs/performance.md). No row may buy throughput with a p99 above 50 ms, so
the row runs one. With the 32 connections of the other rows, 3,200 licences would queue
and the p99 of a batch would measure that queue, not the gateway."""


def log(message: str) -> None:
    """Progress to stderr, so stdout holds the table."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class Options:
    """What the command line asked for, with the defaults of full and quick runs."""

    quick: bool
    load: str | None
    write: bool
    duration: float
    warmup: float
    connections: int
    rounds: int
    appenders: int
    seed: int
    redis_url: str
    changes: int
    """Trust-list changes timed for propagation."""
    verdicts: int
    """Distinct verdicts in gateway A's tier 1 for the memory measurement."""
    tier2: int
    """Licences of the tier-2 working set (B holds one entry in tier 1)."""
    licences: int
    """Huzhou's licence library (``licences demo --count``)."""
    only: frozenset[str] | None = None
    """Development runs: measure only these scenarios, print them, write nothing."""
    crypto_thread: bool = True
    """The gateways' ``crypto_thread`` setting (A/B runs)."""
    http_lane: bool = True
    """The gateways' ``http_lane`` setting (A/B runs)."""
    batch_connections: int = BATCH_CONNECTIONS
    """Connections of the batch row."""
    without_node: bool = False
    """A full run goes on without the Node.js baseline (else it stops at the start)."""
    case_units: int = 100
    """Units of work per round of the 一件事 measurement (``bench._cases --n``)."""
    trust_loads: int = 200
    """``TrustList.from_json`` calls per list (8 and 43 partners) of the load-time rows."""
    audit_entries: int = 1_000_000
    """Entries of the audit log at scale (``bench._inproc audit-scale``)."""
    audit_data_dir: Path | None = None
    """Where that log is built and kept (measured as it is when it holds one)."""
    audit_proofs: int = 500
    """Inclusion and consistency proofs timed at scale, each."""

    def wants(self, *keys: str) -> bool:
        """Whether this run measures any of ``keys`` (a full run measures everything)."""
        return self.only is None or not self.only.isdisjoint(keys)

    @classmethod
    def parse(cls, argv: Sequence[str] | None) -> Options:
        """Parse the command line."""
        parser = argparse.ArgumentParser(
            prog="python -m bench",
            description="Benchmark the gateway against baselines measured in the same run.",
        )
        parser.add_argument("--quick", action="store_true",
                            help="~2 s per scenario, tiny pools, one round (harness check)")
        parser.add_argument("--without-node", action="store_true",
                            help="a full run without node/npm: the Node.js row says why (quick "
                                 "and --only runs go on without it anyway)")
        parser.add_argument("--batch-connections", type=int, default=BATCH_CONNECTIONS,
                            help=f"connections of the batch row ({BATCH_CONNECTIONS})")
        parser.add_argument("--load", choices=["wrk", "python"],
                            help="load generator (default: wrk; python with --quick)")
        parser.add_argument("--no-write", action="store_true",
                            help="print only; do not prepend the run to bench/RESULTS.md")
        parser.add_argument("--duration", type=float, help="seconds per measurement (10; quick 2)")
        parser.add_argument("--connections", type=int, default=32,
                            help="concurrent connections, the same for every HTTP scenario")
        parser.add_argument("--rounds", type=int,
                            help="rounds over all scenarios; medians are quoted (3; quick 1)")
        parser.add_argument("--seed", type=int, default=2026, help="seed of the mock federation")
        parser.add_argument("--redis-url", default=REDIS_URL,
                            help="Redis database of the run, flushed at its start and end "
                                 f"(default {REDIS_URL})")
        parser.add_argument("--only", metavar="KEYS",
                            help="development: comma-separated scenario keys to measure "
                                 f"({', '.join(SCENARIO_KEYS)}; workers = both workers rows); "
                                 "prints their rows and goals and writes nothing")
        parser.add_argument("--audit-entries", type=int,
                            help="entries of the audit log at scale (1,000,000; quick 20,000)")
        parser.add_argument("--audit-data-dir", type=Path,
                            help="keep the log at scale in this folder, or measure the one it "
                                 "holds (built once: 10,000,000 entries take ~14 GB and "
                                 "about 20 minutes)")
        parser.add_argument("--audit-proofs", type=int, default=500,
                            help="inclusion and consistency proofs timed at scale, each (500)")
        parser.add_argument("--crypto-thread", choices=["on", "off"], default="on",
                            help="development: partner signature work on a thread beside the "
                                 "loop (gateways' crypto_thread setting), or on the loop; "
                                 "with --only")
        parser.add_argument("--http-lane", choices=["on", "off"], default="on",
                            help="development: the gateways' http_lane setting (simple requests "
                                 "to the busiest routes answered without aiohttp's per-request "
                                 "machinery), or every request aiohttp's way; with --only")
        args = parser.parse_args(argv)
        only = None
        if args.only:
            named = [k.strip() for k in args.only.split(",") if k.strip()]
            only = frozenset(x for k in named for x in ALIASES.get(k, (k,)))
            if unknown := only - set(SCENARIO_KEYS):
                parser.error(f"--only: unknown scenario(s) {sorted(unknown)}")
        if args.crypto_thread == "off" and not only:
            parser.error("--crypto-thread off is for development runs (with --only)")
        if args.http_lane == "off" and not only:
            parser.error("--http-lane off is for development runs (with --only)")
        if (args.audit_entries is not None and args.audit_entries < 1) or args.audit_proofs < 1:
            parser.error("--audit-entries and --audit-proofs must be positive")
        duration = args.duration or (2.0 if args.quick else 10.0)
        if duration <= 0 or args.connections < 1 or args.batch_connections < 1:
            parser.error("--duration and the connection counts must be positive")
        return cls(
            quick=args.quick,
            load=args.load,
            write=not args.no_write,
            duration=duration,
            warmup=0.5 if args.quick else min(3.0, max(1.0, duration / 5)),
            connections=args.connections,
            rounds=max(1, args.rounds or (1 if args.quick else 3)),
            appenders=100 if args.quick else 1000,
            seed=args.seed,
            redis_url=args.redis_url,
            changes=3 if args.quick else 20,
            # The cache fill serves only the memory row, which a development run skips.
            verdicts=2000 if args.quick or only else 100_000,
            tier2=200 if args.quick or (only and "tier2" not in only) else 2000,
            licences=2000 if args.quick else 10_000,
            only=only,
            crypto_thread=args.crypto_thread == "on",
            http_lane=args.http_lane == "on",
            batch_connections=args.batch_connections,
            without_node=args.without_node,
            case_units=10 if args.quick else 100,
            trust_loads=20 if args.quick else 200,
            audit_entries=args.audit_entries or (20_000 if args.quick else 1_000_000),
            audit_data_dir=args.audit_data_dir,
            audit_proofs=args.audit_proofs,
        )


@dataclass(slots=True)
class Http:
    """An HTTP scenario: where to POST, which pool, how results are counted."""

    key: str
    url: str
    pool: Path
    warm: Path
    headers: dict[str, str] = field(default_factory=dict)
    per_request: int = 1
    """Licences per request (batches)."""
    unique: bool = False
    """Whether every licence should be sent once per run (checked afterwards)."""
    results: list[dict[str, Any]] = field(default_factory=list)
    pool_lines: int = 0
    auth_lines: bool = False
    """Pool lines are ``<Authorization value>\t<body>`` (a header per request)."""
    fresh: bool = False
    """The pool is made anew before every round (``pool_lines`` is one round's)."""
    prepare: Callable[[int], None] | None = None
    """Called with the round number before the scenario is measured."""
    finish: Callable[[int], None] | None = None
    """Called with the round number after the scenario was measured."""
    server_pid: int | None = None
    """The process serving ``url``: its CPU time per request (with the processes it started:
    workers) is recorded with each result."""
    connections: int | None = None
    """Connections of this scenario (None: ``--connections``)."""
    pinned: bool = True
    """Load generator on its own CPU (False: servers and load share every CPU)."""


class LoadGenerator:
    """Runs one warm-up plus one measurement with wrk or the project's generator."""

    def __init__(self, kind: str, wrk: str | None, pinning: Pinning, work: Path,
                 opts: Options) -> None:
        self.kind = kind
        self.wrk = wrk
        self.pinning = pinning
        self.opts = opts
        self.script = work / "bodies.lua"
        self.script.write_text(_wrk.LUA, encoding="utf-8")

    def describe(self) -> str:
        """One line for the output."""
        if self.kind == "wrk":
            return (f"wrk (1 thread, {self.opts.connections} connections, batch "
                    f"{self.opts.batch_connections}; Lua script cycling pre-built bodies)")
        return (f"python -m bench._load (aiohttp client in its own process, "
                f"{self.opts.connections} connections; batch {self.opts.batch_connections})")

    def measure(self, scenario: Http, offset: int) -> dict[str, Any]:
        """Warm up on the warm pool, then measure on the pool from ``offset``; the server's
        CPU time is read around the measurement alone (the warm-up runs separately)."""
        opts = self.opts
        pin = self.pinning.prefix("load" if scenario.pinned else "free")
        connections = scenario.connections or opts.connections
        limit = opts.duration + opts.warmup + 120
        if self.kind == "python":
            def load(pool: Path, seconds: float, start: int) -> list[str]:
                argv = [*pin, python(), "-m", "bench._load", "--url", scenario.url,
                        "--bodies", str(pool), "--offset", str(start),
                        "--connections", str(connections), "--duration", str(seconds)]
                for name, value in scenario.headers.items():
                    argv += ["--header", f"{name}: {value}"]
                return [*argv, "--auth-lines"] if scenario.auth_lines else argv

            run_bounded(load(scenario.warm, opts.warmup, 0), limit)
            cpu_before = _server_cpu(scenario)
            done = run_bounded(load(scenario.pool, opts.duration, offset), limit)
            if done.returncode != 0:
                raise RuntimeError(f"load generator failed: {done.stderr[-1000:]}")
            result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
            _add_cpu(result, scenario, cpu_before)
            return result
        assert self.wrk is not None
        warm = _wrk.command(self.wrk, self.script, scenario.url, scenario.warm, offset=0,
                            connections=connections, duration=opts.warmup,
                            headers=scenario.headers, auth_lines=scenario.auth_lines)
        run_bounded([*pin, *warm], limit)
        argv = _wrk.command(self.wrk, self.script, scenario.url, scenario.pool, offset=offset,
                            connections=connections, duration=opts.duration,
                            headers=scenario.headers, auth_lines=scenario.auth_lines)
        cpu_before = _server_cpu(scenario)
        done = run_bounded([*pin, *argv], limit)
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed: {done.stderr[-1000:]}")
        result = _wrk.parse(done.stdout)
        _add_cpu(result, scenario, cpu_before)
        return result


def _server_cpu(scenario: Http) -> float | None:
    return None if scenario.server_pid is None else tree_cpu_seconds(scenario.server_pid)


def _add_cpu(result: dict[str, Any], scenario: Http, before: float | None) -> None:
    """``cpu_us``: the server's CPU time (every thread) per request of the measurement.

    Less sensitive to a shared machine than the rate: time another tenant takes from
    the server's core is not counted (cache and frequency effects still are).
    """
    after = _server_cpu(scenario)
    if before is not None and after is not None and result.get("requests"):
        result["cpu_us"] = (after - before) * 1e6 / result["requests"]


def _inproc(pinning: Pinning, args: Sequence[str], limit: float,
            module: str = "bench._inproc") -> dict[str, Any]:
    done = run_bounded([*pinning.prefix("server"), python(), "-m", module, *args], limit)
    if done.returncode != 0:
        raise RuntimeError(f"in-process measurement failed: {done.stderr[-1500:]}")
    result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
    return result


_QUICK_SIZES: Final = {"single": 600, "single-43": 600, "batch": 6, "naive": 300, "warm": 200,
                       "sm2": 100, "workers": 300}
_POOL_USERS: Final = {"single": frozenset({"single"}), "single-43": frozenset({"single-43"}),
                      "batch": frozenset({"batch"}),
                      "workers": frozenset({"workers-1", "workers-2"})}
"""The scenarios that send each sized pool of unique licences."""


def _sizes(opts: Options) -> dict[str, int]:
    if opts.quick:
        return dict(_QUICK_SIZES)
    seconds = opts.duration * opts.rounds
    sizes = {
        "single": math.ceil(seconds * EXPECTED_SINGLE_PER_S),
        "single-43": math.ceil(seconds * EXPECTED_SINGLE_PER_S),
        "batch": math.ceil(seconds * EXPECTED_BATCH_LICENCES_PER_S / BATCH_SIZE),
        "naive": 5000,
        "warm": max(1000, math.ceil(opts.warmup * EXPECTED_SINGLE_PER_S)),
        "sm2": SM2_POOL,
        "workers": WORKERS_POOL,
    }
    if opts.only is not None:
        # A development run issues full pools only for what it measures (issuing the
        # single pool alone takes minutes); the start-up checks still get their share.
        for pool, users in _POOL_USERS.items():
            if not opts.only & users:
                sizes[pool] = _QUICK_SIZES[pool]
    return sizes


def _sanity(gateway: str, headers: dict[str, str], work: Path, baselines: Sequence[str]) -> None:
    """Every region's licence passes with a status list, so do the first licences of the
    SM2 pool (one of each SM2 region), a batch passes, baselines answer 200."""
    sm2 = (work / "single-sm2.jsonl").read_bytes().splitlines()[:2]
    for line in [*(work / "samples.jsonl").read_bytes().splitlines(), *sm2]:
        status, body = http_post(f"{gateway}/v1/verifications", line, headers)
        answer = orjson.loads(body) if body else {}
        if status != 200 or answer.get("indication") != "TOTAL_PASSED" \
                or not answer.get("status_list") or not answer.get("receipt"):
            raise RuntimeError(f"sanity check: the gateway answered {status}: {body[:600]!r}")
    batch = (work / "batch-warm.jsonl").read_bytes().splitlines()[0]
    status, body = http_post(f"{gateway}/v1/verifications/batch", batch, headers, timeout=60)
    results = orjson.loads(body).get("results", []) if status == 200 else []
    if len(results) != BATCH_SIZE or any(r["indication"] != "TOTAL_PASSED" for r in results):
        raise RuntimeError(f"sanity check: a batch answered {status}: {body[:600]!r}")
    sample = (work / "naive-warm.jsonl").read_bytes().splitlines()[0]
    for url in baselines:
        status, body = http_post(url, sample)
        if status != 200:
            raise RuntimeError(f"sanity check: baseline {url} answered {status}: {body[:300]!r}")


def _probe_translation(gateway: str, headers: dict[str, str]) -> tuple[bool, str]:
    status, body = http_post(f"{gateway}/v1/matters/translate", orjson.dumps(TRANSLATE_BODY),
                             headers)
    if status == 200:
        return True, "answered 200"
    try:
        kind = orjson.loads(body).get("kind", "")
    except orjson.JSONDecodeError:
        kind = ""
    if status == 404 and not str(kind).startswith("unknown"):
        return False, "skipped: POST /v1/matters/translate answers 404 (registry wiring not landed)"
    return False, f"skipped: the translation probe answered {status} {body[:120]!r}"


def _probe_cache(gateway: str, headers: dict[str, str], work: Path) -> bool:
    """Whether the gateway has a verdict cache: the same licence twice, is the second cached?"""
    body = (work / "repeated.jsonl").read_bytes().splitlines()[0]
    answers = [http_post(f"{gateway}/v1/verifications", body, headers) for _ in range(2)]
    status, second = answers[-1]
    return status == 200 and orjson.loads(second).get("cached") is True


def _http_row(scenario: Http, label: str, unit: str, per: int = 1) -> Row:
    """A row from an HTTP scenario's rounds; ``per`` licences a request (CPU is per licence)."""
    row = Row(scenario=label, unit=unit, http=True)
    for result in scenario.results:
        row.values.append(result["requests"] * per / result["seconds"])
        row.p50_ms.append(result["p50_ms"])
        row.p99_ms.append(result["p99_ms"])
        row.errors += int(result["errors"])
        if "cpu_us" in result:
            row.cpu_us.append(result["cpu_us"] / per)
    if len(row.cpu_us) != len(row.values):
        row.cpu_us = []  # a round without it: no median claimed
    return row


def _compare(row: Row, base: Row, name: str) -> None:
    """Ratio of medians and, round by round, the ratio of the two rows' values."""
    row.baseline = name
    if row.median is None or not base.median:
        return
    row.ratio = row.median / base.median
    if len(row.values) == len(base.values) and all(base.values):
        row.round_ratios = [a / b for a, b in zip(row.values, base.values, strict=True)]


def _judge(row: Row, base: Row, name: str, goal: float, goal_name: str, *,
           cpu: bool = False) -> None:
    """Compare ``row`` with ``base`` and judge the goal: met when the ratio of medians and
    the median of per-round ratios both reach ``goal``, the p99 is at most 50 ms, no
    request failed and (``cpu``) the server CPU per request is at most the baseline's."""
    _compare(row, base, name)
    row.goal = goal
    row.goal_name = goal_name
    if row.ratio is None:
        row.status = "not measured" + (f": {row.text}" if row.text else "")
        row.measured = row.text or f"not measured ({base.scenario}: {base.text or 'none'})"
        return
    problems = []
    if row.ratio < goal:
        problems.append(f"ratio {row.ratio:.2f}× < {goal:g}×")
    per_round = row.round_ratio
    if per_round is not None and per_round < goal:
        problems.append(f"median of per-round ratios {per_round:.2f}× < {goal:g}×")
    measured = [f"{row.ratio:.2f}× {name}"
                + ("" if per_round is None else f" (median of per-round ratios {per_round:.2f}×)")]
    if cpu:
        mine, theirs = row.cpu_median, base.cpu_median
        if mine is None or theirs is None:
            problems.append("server CPU per request not measured")
        else:
            measured.append(f"server CPU {mine:,.0f} µs/request against {theirs:,.0f}")
            if mine > theirs:
                problems.append(f"server CPU {mine:,.0f} > {theirs:,.0f} µs/request")
    p99 = row.p99_median
    if p99 is not None:
        measured.append(f"p99 {p99:.1f} ms")
        if p99 > P99_LIMIT_MS:
            problems.append(f"p99 {p99:.0f} ms > {P99_LIMIT_MS:.0f} ms")
    if row.errors:
        problems.append(f"{row.errors} errors")
    row.measured = ", ".join(measured)
    row.status = "met" if not problems else "not met: " + "; ".join(problems)


def _flag(row: Row) -> None:
    """Flag a row without a goal whose p99 is above 50 ms, or that counted errors."""
    if row.goal_name:
        return
    flags = [row.status] if row.status else []
    if (p99 := row.p99_median) is not None and p99 > P99_LIMIT_MS:
        flags.append(f"p99 {p99:.0f} ms > {P99_LIMIT_MS:.0f} ms")
    if row.errors:
        flags.append(f"{row.errors} errors")
    row.status = "; ".join(flags)


def _uniqueness(scenarios: Sequence[Http], rounds: int) -> list[str]:
    notes = []
    for s in scenarios:
        if not s.unique:
            continue
        per_round = s.pool_lines if s.fresh else s.pool_lines // rounds
        sent = max((r["requests"] for r in s.results), default=0)
        what = "request tokens" if s.fresh else "licences"
        if sent > per_round:
            notes.append(f"{s.key}: up to {sent:,} requests in a round but {per_round:,} "
                         f"unique bodies per round: {what} were sent more than once "
                         f"(pool too small for this machine's speed"
                         f"{'; replayed tokens are refused, 401' if s.fresh else ''}).")
        elif s.fresh:
            notes.append(f"{s.key}: every request token sent once (≤{sent:,} requests of "
                         f"{per_round:,} fresh tokens signed per round).")
        else:
            notes.append(f"{s.key}: every licence sent at most once per run "
                         f"(≤{sent:,} of {per_round:,} unique bodies per round).")
    return notes


class _InterruptedError(Exception):
    pass


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise _InterruptedError(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when it completed, 1 on a failure, 130 when interrupted."""
    opts = Options.parse(argv)
    command = shlex.join([_display_python(), "-m", "bench",
                          *(sys.argv[1:] if argv is None else argv)])
    previous = signal.signal(signal.SIGTERM, _on_term)
    # Ctrl-C must stop the run even when started from a shell that ignores SIGINT in
    # background jobs; children then get SIGTERM from stop_all.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if opts.only == frozenset({"audit-scale"}):
            return _audit_scale_run(opts, command)
        with tempfile.TemporaryDirectory(prefix="ecert-bench-") as tmp:
            work = Path(tmp)
            (work / "logs").mkdir()
            children = Children(Pinning.detect(), work / "logs")
            redis_db = _cluster.RedisDb(opts.redis_url)
            # The 43-partner instances get the next database of the same Redis.
            redis_43 = (_cluster.RedisDb(_cluster.next_database(opts.redis_url))
                        if opts.wants("partner-43") and redis_db.available else None)
            try:
                redis_db.flush()  # no earlier run can produce hits
                if redis_43 is not None:
                    redis_43.flush()
                return _run(opts, command, work, children, redis_db, redis_43=redis_43)
            finally:
                children.stop_all()
                redis_db.close()  # flushed again: nothing of this run stays behind
                if redis_43 is not None:
                    redis_43.close()
    except (KeyboardInterrupt, _InterruptedError):
        log("interrupted: every child process was stopped")
        return 130
    except RuntimeError as exc:
        log(f"failed: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def _audit_scale(pinning: Pinning, opts: Options) -> dict[str, Any]:
    """The audit log at scale, in-process: built (or found in ``--audit-data-dir``), then
    start-up, proofs and ``verify_log``, the page cache dropped before each when permitted."""
    n = opts.audit_entries
    log(f"audit log at scale: {n:,} records (built unless the folder holds them), then "
        f"start-up, {opts.audit_proofs} proofs of each kind and verify_log"
        f"{'' if opts.quick else ', page cache dropped before each'}")
    # Cold (the page cache dropped, for the whole machine) except in quick runs: those check
    # the harness, also from the tests.
    args = ["audit-scale", "--entries", str(n), "--proofs", str(opts.audit_proofs),
            *([] if opts.quick else ["--cold"])]
    if opts.audit_data_dir is not None:
        opts.audit_data_dir.mkdir(parents=True, exist_ok=True)
        args += ["--data-dir", str(opts.audit_data_dir)]
    # Building takes ~2 minutes of CPU per million records; verifying ~15 s per million.
    result = _inproc(pinning, args, 900 + 400 * max(1, n // 1_000_000))
    log(f"  inclusion p99 {result['proof_p99_ms']:.3f} ms, consistency p99 "
        f"{result['consistency_p99_ms']:.3f} ms, verify {result['verify_s']:.1f} s")
    return result


def _audit_scale_run(opts: Options, command: str) -> int:
    """``--only audit-scale``: the audit log at scale alone (no gateway, no load generator),
    its rows prepended to ``bench/RESULTS.md`` as a run of its own (unless ``--no-write``),
    which other ``--only`` runs never are: it is the one way to a row at 10,000,000 entries."""
    started = time.monotonic()
    commit = git_commit()
    # Pinning keeps the servers off the load generator's CPU; this run has no load
    # generator, and one CPU would only make the log's threads queue behind each other.
    pinning = Pinning()
    load_before = _load_average()
    extras = Extras(redis=False, redis_note="not used")
    extras.audit_scale = _audit_scale(pinning, opts)
    rows = _scale_rows(extras)
    a = extras.audit_scale
    meta = [
        f"- Date: {utc_stamp()}",
        f"- Commit: {commit}",
        f"- Machine: {machine()}",
        f"- Python: {sys.version.split()[0]}",
        f"- Command: `{command}`",
        "- Pinning: none (no load generator in this run; the process may use every CPU)",
        (f"- Settings: the audit log at scale alone, in-process (`bench._inproc audit-scale`,"
         f" on the {a.get('event_loop', 'asyncio')} event loop, as `serve` runs it):"
         f" {a['entries']:,} entries ("
         + (f"built in this run in {a['build_s']:.0f} s" if a.get("build_s") is not None
            else "found in --audit-data-dir, built earlier by `bench._inproc`")
         + (f"; first start on it {a['first_startup_s']:.0f} s, the tree rebuilt from every"
            " stored leaf hash and its nodes and leaf hashes kept"
            if a.get("first_startup_s") is not None else "")
         + f"), {a['proofs']} inclusion and {a['proofs']} consistency "
         f"proofs of random entries and sizes; page cache "
         + ("dropped before the start-up, each series of proofs and the verification"
            if a.get("page_cache_dropped")
            else "NOT dropped (" + ("not permitted" if a.get("cold") else "quick run")
            + "): reads may be warm")
         + f"; run took {time.monotonic() - started:.0f} s"),
        (f"- Machine load (1-minute average): {load_before} before the run, "
         + ", ".join(f"{x:.2f}" for x in a.get("load_1min", []))
         + " before and after the proofs (the machine is shared)"),
    ]
    section = "\n".join([
        f"## {utc_stamp()} — {commit} (audit log at scale)", "", *meta, "",
        "Goals:", "", *(f"- {g}" for g in goal_lines(rows)), "", render_table(rows), "",
    ])
    print(section, flush=True)
    if opts.write:
        prepend_results(RESULTS, section)
        log(f"prepended to {RESULTS.relative_to(ROOT)}")
    return 0


def _load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _display_python() -> str:
    exe = Path(sys.executable)
    try:
        return str(exe.relative_to(ROOT))
    except ValueError:
        return str(exe)


@dataclass(slots=True)
class Extras:
    """What the partner, second-instance, propagation and memory scenarios measured."""

    redis: bool
    redis_note: str
    identifiers: int = 0
    partner_pools: list[tuple[int, float]] = field(default_factory=list)
    """Per round: request tokens signed (warm-up + measurement) and the seconds it took."""
    tier2_warm: list[int] = field(default_factory=list)
    """Per round: licences of the working set that passed on A before B was measured."""
    tier2_counts: list[dict[str, int]] = field(default_factory=list)
    """Per round: B's cache counters over its warm-up and measurement."""
    propagation: _cluster.Propagation | None = None
    rss_kib: int | None = None
    rss_before_kib: int | None = None
    """VmRSS of A just before the fill (after the throughput rounds and the propagation)."""
    entries: int | None = None
    filled: int = 0
    fill_seconds: float = 0.0
    fill_note: str = ""
    """Where the fill's licences came from, when not from their own pool."""
    translate: dict[str, Any] | None = None
    """In-process Registry.translate rates (memoised as served, and not)."""
    audit_scale: dict[str, Any] | None = None
    """Proof and verify times over a large log built for the purpose."""
    partners_43: int = 0
    """Partners in the full federation's trust list (0: not started)."""
    redis_43: str = ""
    """The 43-partner instances' Redis URL (empty: none)."""
    partner43_pools: list[tuple[int, float]] = field(default_factory=list)
    """Per round: request tokens the full federation's Shanghai signed, and the seconds."""
    propagation_43: _cluster.Propagation | None = None
    """Propagation A43 → B43 (the full federation's trust list)."""
    trust_load: dict[str, Any] | None = None
    """``TrustList.from_json`` times at 8 and at 43 partners (``bench._inproc trust-load``)."""
    cases: dict[str, Any] | None = None
    """The 一件事 check against five single verifications (``bench._cases``)."""
    worker_shares: list[dict[str, int]] = field(default_factory=list)
    """Per round of the two-worker row: each worker's share of its requests, in percent."""


def _per_worker(values: dict[str, float], workers: int) -> dict[str, float]:
    """Requests answered so far by each worker (``ecert_http_requests_total`` by label)."""
    return {str(w): _cluster.metric_sum(values, "ecert_http_requests_total", worker=str(w))
            for w in range(workers)}


def _worker_shares(url: str, workers: int, scraper: str,
                   extras: Extras) -> tuple[Callable[[int], None], Callable[[int], None]]:
    """Hooks that log how a multi-worker scenario's requests were shared between workers."""
    before: dict[str, float] = {}

    def prepare(round_no: int) -> None:
        before.clear()
        before.update(_per_worker(_cluster.metrics(url, scraper), workers))

    def finish(round_no: int) -> None:
        time.sleep(1.2)  # the other workers' counters are snapshots at most a second old
        after = _per_worker(_cluster.metrics(url, scraper), workers)
        delta = {w: after[w] - before.get(w, 0.0) for w in sorted(after)}
        total = sum(delta.values()) or 1.0
        shares = {w: round(100 * n / total) for w, n in delta.items()}
        extras.worker_shares.append(shares)
        log(f"  requests per worker: {', '.join(f'{w}: {p}%' for w, p in shares.items())}")

    return prepare, finish


def _counter_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    wanted = {"redis hits": ("redis", "hit"), "redis misses": ("redis", "miss"),
              "redis errors": ("redis", "error"), "tier-1 hits": ("memory", "hit")}
    name = "ecert_cache_events_total"
    return {label: int(_cluster.metric_sum(after, name, tier=tier, event=event)
                       - _cluster.metric_sum(before, name, tier=tier, event=event))
            for label, (tier, event) in wanted.items()}


def _run(opts: Options, command: str, work: Path, children: Children,
         redis_db: _cluster.RedisDb, *, redis_43: _cluster.RedisDb | None) -> int:
    started = time.monotonic()
    commit = git_commit()  # at the start: the tree measured, even if HEAD moves during the run
    pinning = children.pinning
    log(f"pinning: {pinning.describe()}")
    if redis_db.available:
        log(f"redis: {opts.redis_url} flushed; both gateway instances use it (tier 2, "
            f"trust-list announcements, request-token jti)")
    else:
        log(f"redis: {opts.redis_url} unavailable ({redis_db.error}); tier-2 row not measured")
    kind = opts.load or ("python" if opts.quick else "wrk")
    wrk_path = None
    load_note = ""
    if kind == "wrk":
        wrk_path = _wrk.ensure_wrk(log)
        if wrk_path is None:
            kind = "python"
            load_note = " (wrk was asked for but is unavailable: fell back to the python generator)"
    sizes = _sizes(opts)
    node = (ensure_node(log) if opts.wants("node")
            else NodeBaseline(None, problem="not asked for (--only)"))
    log(f"node baseline: {node.describe()}")
    if node.problem and not (opts.quick or opts.only is not None or opts.without_node):
        raise RuntimeError(f"the Node.js baseline cannot run: {node.problem}. Install Node.js "
                           f"20 or newer with npm (the run installs jose itself), or pass "
                           f"--without-node to measure without it")
    workers_note = _serve_workers() if opts.wants("workers-1", "workers-2") else "not asked for"
    log(f"workers: {workers_note or 'serve accepts --workers'}")
    extras = Extras(redis=redis_db.available,
                    redis_note="" if redis_db.available else redis_db.error)

    # -- the mock federation: trust list first, pools of unique licences, then it serves
    pools = work / "pools"
    fill_batches = math.ceil(opts.verdicts * 1.01 / BATCH_SIZE)
    # The memory row's fill reuses the single pool when it is large enough: those licences
    # only ever reach instance C, which has no cache, so A has never seen them.
    fill_from_single = sizes["single"] >= fill_batches * BATCH_SIZE
    control_port = free_port()
    log(f"mock federation: issuing {sizes['single']:,} single, {sizes['batch']:,}×{BATCH_SIZE} "
        f"batch, {sizes['naive']:,} naive-region, {opts.tier2:,} tier-2, {sizes['workers']:,} "
        f"workers and "
        + ("no cache-fill licences (the fill reuses the single pool)" if fill_from_single
           else f"{fill_batches:,}×{BATCH_SIZE} cache-fill licences")
        + " (plus warm-up pools)")
    children.start("mockserver", [
        python(), "-m", "bench._mockserver", "--out", str(pools), "--seed", str(opts.seed),
        "--single", str(sizes["single"]), "--batch", str(sizes["batch"]),
        "--batch-size", str(BATCH_SIZE), "--naive", str(sizes["naive"]),
        "--warm", str(sizes["warm"]), "--repeated", str(REPEATED),
        "--tier2", str(opts.tier2), "--fill", str(0 if fill_from_single else fill_batches),
        "--sm2", str(sizes["sm2"]),
        "--workers", str(sizes["workers"] if opts.wants("workers-1", "workers-2") else 0),
        "--control-port", str(control_port),
    ], role="load")
    # The full federation (43 partners) for the 43-partner rows: its own mock process and
    # pools. It issues on the servers' CPU (idle during the set-up but for start-ups, while
    # the eight-partner pools keep the load CPU busy) and is moved to the load generator's
    # CPU before any measurement.
    federation_43 = opts.wants("single-43", "partner-43", "trust-load")
    gateways_43 = opts.wants("single-43", "partner-43")
    pools43 = work / "pools-43"
    control43_port = free_port()
    mock43 = None
    if federation_43:
        log(f"mock federation at 43 partners ({FULL_FEDERATION}): issuing "
            f"{sizes['single-43'] if opts.wants('single-43') else 0:,} single licences "
            f"(plus warm-up pools)")
        mock43 = children.start("mockserver-43", [
            python(), "-m", "bench._mockserver", "--federation", FULL_FEDERATION,
            "--out", str(pools43), "--seed", str(opts.seed),
            "--single", str(sizes["single-43"] if opts.wants("single-43") else 0),
            "--batch", "0", "--batch-size", str(BATCH_SIZE), "--naive", "0",
            "--warm", str(sizes["warm"]), "--repeated", str(REPEATED),
            "--control-port", str(control43_port)], role="server")
    children.wait_file("mockserver", pools / "trust-list.json", 60)

    # -- the gateway's data folder: client key, two operators, a scraper, the licence library
    data = work / "gateway"
    _cluster.cli_token(["init", "--data-dir", str(data)], "init")
    key = _cluster.cli_token(["clients", "add", "bench", "--data-dir", str(data)], "clients add")
    auth = {"Authorization": f"Bearer {key}"}
    proposer = _cluster.cli_token(["operators", "add", "bench-proposer", "--role", "operator",
                                   "--data-dir", str(data)], "operators add")
    approver = _cluster.cli_token(["operators", "add", "bench-approver", "--role", "approver",
                                   "--data-dir", str(data)], "operators add")
    scraper = _cluster.cli_token(["operators", "add", "bench-scraper", "--role", "metrics",
                                  "--data-dir", str(data)], "operators add")
    log(f"Huzhou's licence library: licences demo --count {opts.licences:,}")
    demo = run_bounded([python(), "-m", "gateway", "licences", "demo", "--count",
                        str(opts.licences), "--data-dir", str(data), "--no-progress"], 900)
    if demo.returncode != 0:
        raise RuntimeError(f"licences demo failed: {demo.stderr[-800:]}")
    identifiers = work / "partner-identifiers.txt"
    extras.identifiers = _cluster.partner_identifiers(data, identifiers)
    settings = _cluster.write_settings(work / "gateway.toml",
                                       opts.redis_url if redis_db.available else None)
    # The 43-partner instances: a copy of this data folder made before any instance seeded
    # its trust store (same client key, operators and licence library), their own trust list.
    data43 = work / "gateway-43"
    settings43 = None
    if gateways_43:
        shutil.copytree(data, data43)
        extras.redis_43 = redis_43.url if redis_43 is not None and redis_43.available else ""
        settings43 = _cluster.write_settings(work / "gateway-43.toml", extras.redis_43 or None)

    # -- gateway A (measured), then B and C on the same data folder; the baselines
    gw_port, b_port, minimal_port, naive_port = free_port(), free_port(), free_port(), free_port()
    c_port, node_port, bare_port = free_port(), free_port(), free_port()
    serve = [python(), "-m", "gateway", "serve", "--data-dir", str(data),
             "--trust-list", str(pools / "trust-list.json"), "--config", str(settings)]
    env = {"ECERT_APPROVALS_REQUIRED": "1",
           "ECERT_CRYPTO_THREAD": "1" if opts.crypto_thread else "0",
           "ECERT_HTTP_LANE": "1" if opts.http_lane else "0"}
    log(f"crypto thread (partner signature work): {'on' if opts.crypto_thread else 'off'}")
    log(f"HTTP lane: {'on' if opts.http_lane else 'off'}")
    gateway = children.start("gateway", [*serve, "--listen", f"{HOST}:{gw_port}"], env=env)
    minimal_proc = children.start("minimal", [python(), "-m", "bench._baselines", "minimal",
                                              "--port", str(minimal_port)])
    bare_proc = children.start("bare", [python(), "-m", "bench._baselines", "bare",
                                        "--port", str(bare_port)])
    children.wait_file("mockserver", pools / "naive-jwk.json", 300)
    naive_proc = children.start("naive", [
        python(), "-m", "bench._baselines", "naive", "--port", str(naive_port),
        "--jwk", str(pools / "naive-jwk.json")])
    node_proc = None
    if not node.problem:
        node_proc = children.start("node", node.argv(node_port, pools / "naive-jwk.json"))
    gw = f"http://{HOST}:{gw_port}"
    gw_b = f"http://{HOST}:{b_port}"
    minimal = f"http://{HOST}:{minimal_port}/"
    naive = f"http://{HOST}:{naive_port}/"
    bare = f"http://{HOST}:{bare_port}/"
    node_url = f"http://{HOST}:{node_port}/"
    children.wait_http("gateway", f"{gw}/readyz")
    # B only once A has seeded the store from the trust list.
    gateway_b = children.start("gateway-b", [*serve, "--listen", f"{HOST}:{b_port}"],
                               env={**env, "ECERT_CACHE_MAX_ENTRIES": "1"})
    # C serves the uncached scenarios (issue 3: "with caching off"): no cache, no Redis.
    settings_c = _cluster.write_settings(work / "gateway-nocache.toml", None)
    serve_c = [python(), "-m", "gateway", "serve", "--data-dir", str(data),
               "--trust-list", str(pools / "trust-list.json"), "--config", str(settings_c)]
    env_c = {**env, "ECERT_CACHE_ENABLED": "0"}
    gateway_c = children.start("gateway-c", [*serve_c, "--listen", f"{HOST}:{c_port}"],
                               env=env_c)
    gw_c = f"http://{HOST}:{c_port}"
    # A43 (as A, cache on, Redis: the partner row at 43), then C43 (as C: cache off, no
    # Redis: the single row at 43) and, in a full run, B43 (as B: propagation at 43).
    gw43 = gw43_b = gw43_c = ""
    procs43: dict[str, int] = {}
    names43: dict[str, str] = {}
    if gateways_43:
        assert settings43 is not None
        children.wait_file("mockserver-43", pools43 / "trust-list.json", 120)
        serve43 = [python(), "-m", "gateway", "serve", "--data-dir", str(data43),
                   "--trust-list", str(pools43 / "trust-list.json")]
        port = free_port()
        gw43 = f"http://{HOST}:{port}"
        names43[gw43] = "gateway-43"
        procs43[gw43] = children.start("gateway-43", [*serve43, "--config", str(settings43),
                                                      "--listen", f"{HOST}:{port}"],
                                       env=env).pid
        children.wait_http("gateway-43", f"{gw43}/readyz")
        if opts.wants("single-43"):
            port = free_port()
            gw43_c = f"http://{HOST}:{port}"
            names43[gw43_c] = "gateway-43-c"
            procs43[gw43_c] = children.start(
                "gateway-43-c", [*serve43, "--config", str(settings_c),
                                 "--listen", f"{HOST}:{port}"], env=env_c).pid
        if opts.only is None:
            port = free_port()
            gw43_b = f"http://{HOST}:{port}"
            names43[gw43_b] = "gateway-43-b"
            procs43[gw43_b] = children.start(
                "gateway-43-b", [*serve43, "--config", str(settings43),
                                 "--listen", f"{HOST}:{port}"],
                env={**env, "ECERT_CACHE_MAX_ENTRIES": "1"}).pid
        for url, name in names43.items():
            children.wait_http(name, f"{url}/readyz")
    children.wait_http("minimal", minimal)
    children.wait_http("naive", naive)
    children.wait_http("bare", bare)
    if node_proc is not None:
        children.wait_http("node", node_url)
    children.wait_http("gateway-b", f"{gw_b}/readyz")
    children.wait_http("gateway-c", f"{gw_c}/readyz")
    # D and E: `serve --workers 1` and `--workers 2` with C's cache off but A's settings
    # (workers share Redis: trust-list announcements, jti), not pinned (the workers and the
    # load generator share both CPUs), when this build's serve accepts --workers.
    workers: dict[int, tuple[str, int]] = {}
    if not workers_note and not redis_db.available:
        workers_note = f"not measured: no Redis for the workers ({redis_db.error})"
    if not workers_note:
        for n in (1, 2):
            port = free_port()
            proc = children.start(f"gateway-w{n}", [*serve, "--listen", f"{HOST}:{port}",
                                                    "--workers", str(n)], env=env_c, role="free")
            workers[n] = (f"http://{HOST}:{port}", proc.pid)
        for n, (url, _) in workers.items():
            try:
                children.wait_http(f"gateway-w{n}", f"{url}/readyz")
            except RuntimeError as exc:
                workers_note = f"`serve --workers {n}` did not start: {str(exc)[-300:]}"
                break
        if workers_note:
            log(f"workers: {workers_note}")
            for n in workers:
                children.stop(f"gateway-w{n}")
            workers.clear()
    children.wait_file("mockserver", pools / "manifest.json", 900)
    manifest = orjson.loads((pools / "manifest.json").read_bytes())
    counts: dict[str, int] = manifest["counts"]
    if fill_from_single:
        items = (pools / "single.jsonl").read_bytes().splitlines()[:fill_batches * BATCH_SIZE]
        (pools / "fill.jsonl").write_bytes(b"".join(
            b'{"items":[' + b",".join(items[i:i + BATCH_SIZE]) + b"]}\n"
            for i in range(0, len(items), BATCH_SIZE)))
        extras.fill_note = (" (the first licences of the single pool, which only instance C, "
                            "without a cache, had seen)")
    log(f"pools ready in {time.monotonic() - started:.0f} s: {counts}")
    counts43: dict[str, int] = {}
    if mock43 is not None:
        children.wait_file("mockserver-43", pools43 / "manifest.json", 900)
        manifest43 = orjson.loads((pools43 / "manifest.json").read_bytes())
        counts43 = manifest43["counts"]
        extras.partners_43 = int(manifest43["partners"])
        moved = pinning.move(mock43.pid, "load")
        log(f"43-partner pools ready in {time.monotonic() - started:.0f} s: {counts43}"
            + ("; its mock federation moved to the load generator's CPU" if moved else ""))
    _sanity(gw, auth, pools, [naive, minimal, *([node_url] if node_proc else [])])
    for url, _ in workers.values():
        _sanity(url, auth, pools, [])
    for url in (gw43_c, gw43):  # every one of the 43 regions' licences and status lists
        if url:
            _sanity(url, auth, pools43, [])
    control = f"http://{HOST}:{control_port}"
    partner_url = f"{gw}/v1/partner/licences/query"
    probe = work / "partner-probe.jsonl"
    _cluster.partner_pool(control, identifiers=identifiers, out=probe, count=1)
    _cluster.partner_sanity(partner_url, probe.read_bytes().splitlines()[0])
    control43 = f"http://{HOST}:{control43_port}"
    probe43 = work / "partner-43-probe.jsonl"
    if gw43 and opts.wants("partner-43"):
        _cluster.partner_pool(control43, identifiers=identifiers, out=probe43, count=1)
        _cluster.partner_sanity(f"{gw43}/v1/partner/licences/query",
                                probe43.read_bytes().splitlines()[0])
    translate_ok, translate_note = _probe_translation(gw, auth)
    log(f"translation: {translate_note}")
    cache = _probe_cache(gw, auth, pools)
    log(f"verdict cache: {'on (a repeated licence is answered cached)' if cache else 'none'}")

    def pool(name: str) -> Path:
        return pools / f"{name}.jsonl"

    scenarios = [
        Http("minimal", minimal, pool("naive"), pool("naive-warm")),
        Http("bare", bare, pool("naive"), pool("naive-warm")),
        Http("naive", naive, pool("naive"), pool("naive-warm")),
        Http("single", f"{gw_c}/v1/verifications", pool("single"), pool("single-warm"), auth,
             unique=True),
        # SM2SM3 licences of 毕节 and 白山, a small pool cycled: C has no verdict cache, so
        # each request verifies its licence in full all the same.
        Http("single-sm2", f"{gw_c}/v1/verifications", pool("single-sm2"), pool("single-sm2"),
             auth),
        Http("batch", f"{gw_c}/v1/verifications/batch", pool("batch"), pool("batch-warm"), auth,
             per_request=BATCH_SIZE, unique=True, connections=opts.batch_connections),
        Http("repeated", f"{gw}/v1/verifications", pool("repeated"), pool("repeated"), auth),
    ]
    if node_proc is not None:
        scenarios.insert(2, Http("node", node_url, pool("naive"), pool("naive-warm")))
    for n, (url, _) in workers.items():
        scenarios.append(Http(f"workers-{n}", f"{url}/v1/verifications", pool("workers"),
                              pool("workers"), auth, pinned=False))
        if n > 1:
            scenarios[-1].prepare, scenarios[-1].finish = _worker_shares(url, n, scraper, extras)
    if translate_ok:
        # The in-process rows' distinct translations, cycled: a window asks a set of them.
        body = work / "translate.jsonl"
        body.write_bytes(b"".join(
            orjson.dumps({"source": {"region": source, "code": code}, "target_region": target})
            + b"\n" for source, code, target in translate_calls()[1]))
        scenarios.append(Http("translation", f"{gw}/v1/matters/translate", body, body, auth))
    for s in scenarios:
        s.pool_lines = counts.get(s.pool.stem, 1)
    if gw43_c:
        # Right after the single row in every round: the two are measured back to back.
        single43 = Http("single-43", f"{gw43_c}/v1/verifications", pools43 / "single.jsonl",
                        pools43 / "single-warm.jsonl", auth, unique=True)
        single43.pool_lines = counts43.get("single", 1)
        scenarios.insert(next(n for n, s in enumerate(scenarios) if s.key == "single") + 1,
                         single43)

    partner = Http("partner", partner_url, probe, probe, unique=True, auth_lines=True,
                   fresh=True)

    def fresh_tokens(scenario: Http, salt: int, control: str,
                     record: list[tuple[int, float]]) -> Callable[[int], None]:
        def prepare(round_no: int) -> None:
            # Fresh one-use tokens (lifetime 300 s), signed just before the round needs
            # them; the pools are sized for the load generator's whole-second durations.
            began = time.monotonic()
            warm_n = math.ceil((max(1.0, round(opts.warmup)) + 1) * EXPECTED_PARTNER_PER_S)
            count = math.ceil((max(1.0, round(opts.duration)) + 1) * EXPECTED_PARTNER_PER_S)
            for old in (scenario.pool, scenario.warm):
                if old != probe:
                    old.unlink(missing_ok=True)
            scenario.warm = work / f"{scenario.key}-warm-{round_no + 1}.jsonl"
            scenario.pool = work / f"{scenario.key}-{round_no + 1}.jsonl"
            offset = round_no * 7919 + salt
            _cluster.partner_pool(control, identifiers=identifiers, out=scenario.warm,
                                  count=warm_n, offset=offset)
            scenario.pool_lines = _cluster.partner_pool(
                control, identifiers=identifiers, out=scenario.pool, count=count,
                offset=offset + warm_n)
            record.append((warm_n + count, time.monotonic() - began))
            log(f"  signed {warm_n + count:,} {scenario.key} request tokens in "
                f"{time.monotonic() - began:.1f} s")

        return prepare

    partner.prepare = fresh_tokens(partner, 0, control, extras.partner_pools)
    scenarios.append(partner)
    if gw43 and opts.wants("partner-43"):
        # Right after the partner row in every round, same tokens' count and lifetime,
        # signed by the full federation's Shanghai.
        partner43 = Http("partner-43", f"{gw43}/v1/partner/licences/query", probe43, probe43,
                         unique=True, auth_lines=True, fresh=True)
        partner43.prepare = fresh_tokens(partner43, 0, control43, extras.partner43_pools)
        scenarios.append(partner43)

    if redis_db.available:
        tier2 = Http("tier2", f"{gw_b}/v1/verifications", pool("tier2"), pool("tier2"), auth)
        tier2.pool_lines = counts.get("tier2", 1)
        before: dict[str, float] = {}

        def prepare_tier2(round_no: int) -> None:
            passed = _cluster.warm_batches(gw, auth, pool("tier2"), BATCH_SIZE)
            extras.tier2_warm.append(passed)
            log(f"  warmed {passed:,} of {tier2.pool_lines:,} licences on instance A")
            before.clear()
            before.update(_cluster.metrics(gw_b, scraper))

        def finish_tier2(round_no: int) -> None:
            delta = _counter_delta(before, _cluster.metrics(gw_b, scraper))
            extras.tier2_counts.append(delta)
            log(f"  instance B: {delta}")

        tier2.prepare, tier2.finish = prepare_tier2, finish_tier2
        scenarios.append(tier2)

    servers = {minimal: minimal_proc.pid, bare: bare_proc.pid, naive: naive_proc.pid,
               gw: gateway.pid, gw_b: gateway_b.pid, gw_c: gateway_c.pid,
               **({node_url: node_proc.pid} if node_proc else {}),
               **dict(workers.values()), **procs43}
    for s in scenarios:
        s.server_pid = next(pid for base, pid in servers.items()
                            if s.url.startswith(base.rstrip("/") + "/"))
    if opts.only is not None:
        scenarios = [s for s in scenarios if s.key in opts.only]
    load = LoadGenerator(kind, wrk_path, pinning, work, opts)
    log(f"load generator: {load.describe()}{load_note}")
    es256: list[dict[str, Any]] = []
    sm2: list[dict[str, Any]] = []
    audits: list[dict[str, Any]] = []
    inproc_limit = opts.duration + opts.warmup + 180
    for round_no in range(opts.rounds):
        for s in scenarios:
            children.check_alive()
            log(f"round {round_no + 1}/{opts.rounds}: {s.key} "
                f"({opts.warmup:g} s warm-up + {opts.duration:g} s)")
            if s.prepare is not None:
                s.prepare(round_no)
            offset = 0 if s.fresh else round_no * (s.pool_lines // opts.rounds)
            s.results.append(load.measure(s, offset))
            r = s.results[-1]
            log(f"  {r['requests'] * s.per_request / r['seconds']:,.0f}/s, "
                f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, errors {r['errors']}"
                + (f", server CPU {r['cpu_us']:,.0f} µs/request" if "cpu_us" in r else "")
                + (f", statuses {r['statuses']}" if r.get("statuses") else ""))
            if s.finish is not None:
                s.finish(round_no)
        if opts.only is None or "es256" in opts.only:
            log(f"round {round_no + 1}/{opts.rounds}: raw ES256 loop (in-process, one core)")
            es256.append(_inproc(pinning, [
                "es256", "--pool", str(pool("naive")), "--jwk", str(pools / "naive-jwk.json"),
                "--duration", str(opts.duration), "--warmup", str(opts.warmup)], inproc_limit))
            log(f"  {es256[-1]['rate']:,.0f} verifications/s")
        if opts.only is None or "sm2" in opts.only:
            log(f"round {round_no + 1}/{opts.rounds}: SM2SM3 verify loop through the gateway's "
                "signature path, then openssl speed sm2 (in-process, one core)")
            sm2.append(_inproc(pinning, [
                "sm2", "--pool", str(pool("single-sm2")), "--jwk", str(pools / "sm2-jwks.json"),
                "--duration", str(opts.duration), "--warmup", str(opts.warmup)],
                inproc_limit + 4 * opts.duration))
            log(f"  {sm2[-1]['rate']:,.0f} verifications/s; openssl speed sm2 verify "
                f"{sm2[-1]['openssl'] or 0:,.0f}/s")
        if opts.only is not None and "audit" not in opts.only:
            continue
        log(f"round {round_no + 1}/{opts.rounds}: audit appends "
            f"({opts.appenders} concurrent appenders, in-process)")
        audits.append(_inproc(pinning, [
            "audit", "--appenders", str(opts.appenders), "--duration", str(opts.duration),
            "--warmup", str(opts.warmup), "--proofs", "100" if opts.quick else "500"],
            inproc_limit))
        log(f"  {audits[-1]['rate']:,.0f} appends/s, proof p50 {audits[-1]['proof_p50_ms']:.3f} ms"
            f" at {audits[-1]['tree_size']:,} entries")

    # -- once per run, in-process, pinned like the loops: the 一件事 check against five
    #    single verifications (its own rounds, alternating), and the trust list's load time
    #    at 8 and at 43 partners (loads alternating)
    if opts.wants("cases"):
        rounds = str(opts.rounds)
        log(f"一件事: bench._cases, {opts.case_units} units × {rounds} rounds (in-process, "
            f"one core)")
        extras.cases = _inproc(pinning, ["--n", str(opts.case_units), "--rounds", rounds],
                               300 + opts.case_units * opts.rounds, module="bench._cases")
        log(f"  CPU ratio {extras.cases['case_cpu_ratio_http']:.2f} over HTTP, "
            f"{extras.cases['case_cpu_ratio_service']:.2f} at the service level")
    if opts.wants("trust-load") and mock43 is not None:
        log(f"trust-list load: TrustList.from_json at 8 and 43 partners, "
            f"{opts.trust_loads} loads each (in-process, one core)")
        extras.trust_load = _inproc(pinning, [
            "trust-load", "--lists", str(pools / "trust-list.json"),
            str(pools43 / "trust-list.json"), "--repeat", str(opts.trust_loads)], inproc_limit)
        log("  " + ", ".join(f"{t['partners']} partners {t['median_ms']:.2f} ms"
                             for t in extras.trust_load["lists"]))

    context = _Context(translate_ok=translate_ok, translate_note=translate_note, cache=cache,
                       node=node, workers_note=workers_note, load_kind=kind)
    if opts.only is not None:
        rows, notes = _rows(scenarios, es256=es256, sm2=sm2, audits=audits, peak_kib=None,
                            opts=opts, extras=extras, context=context)
        print("\n".join([render_table(rows), "", *(f"- {g}" for g in goal_lines(rows)),
                         *(f"- {n}" for n in notes)]), flush=True)
        return 0

    # -- once per run, in-process: the registry's translate rate and the audit log at scale
    log("registry: in-process translate on the warm sample registry")
    extras.translate = _inproc(pinning, ["translate", "--duration", str(opts.duration),
                                         "--warmup", str(opts.warmup)], inproc_limit)
    log(f"  {extras.translate['rate']:,.0f}/s as served, "
        f"{extras.translate['rate_unmemoised']:,.0f}/s with the answer memo off")
    extras.audit_scale = _audit_scale(pinning, opts)

    # -- trust-list propagation A → B (after the throughput rounds: a new version empties
    #    every tier 1), then the memory fill on the version it left behind
    children.check_alive()
    log(f"trust-list propagation: {opts.changes} changes through A's admin API, "
        f"B's /readyz polled every 10 ms")
    extras.propagation = _cluster.propagation(gw, gw_b, proposer=proposer, approver=approver,
                                              changes=opts.changes)
    done_ms = extras.propagation.done
    log(f"  {len(done_ms)}/{opts.changes} reached B; median "
        f"{statistics.median(done_ms) if done_ms else float('nan'):.0f} ms, "
        f"worst {max(done_ms, default=float('nan')):.0f} ms")
    if gw43 and gw43_b:
        children.check_alive()
        log(f"trust-list propagation at 43 partners: {opts.changes} changes through A43's "
            f"admin API, B43's /readyz polled every 10 ms")
        extras.propagation_43 = _cluster.propagation(gw43, gw43_b, proposer=proposer,
                                                     approver=approver, changes=opts.changes)
        done_ms = extras.propagation_43.done
        log(f"  {len(done_ms)}/{opts.changes} reached B43; median "
            f"{statistics.median(done_ms) if done_ms else float('nan'):.0f} ms, "
            f"worst {max(done_ms, default=float('nan')):.0f} ms")
    children.check_alive()
    log(f"memory: filling A's tier 1 with {fill_batches * BATCH_SIZE:,} distinct verdicts "
        f"(batch endpoint)")
    extras.rss_before_kib = resident_memory_kib(gateway.pid)
    began = time.monotonic()
    extras.filled = _cluster.fill_cache(gw, auth, pool("fill"))
    extras.fill_seconds = time.monotonic() - began
    extras.entries = int(_cluster.metric_sum(_cluster.metrics(gw, scraper),
                                             "ecert_cache_memory_entries"))
    extras.rss_kib = resident_memory_kib(gateway.pid)
    log(f"  {extras.filled:,} passed in {extras.fill_seconds:.1f} s; {extras.entries:,} entries, "
        f"VmRSS {(extras.rss_kib or 0) / 1024:.0f} MiB")
    peak = peak_memory_kib(gateway.pid)
    children.check_alive()

    rows, notes = _rows(scenarios, es256=es256, sm2=sm2, audits=audits, peak_kib=peak,
                        opts=opts, extras=extras, context=context)
    notes += _uniqueness(scenarios, opts.rounds)
    table = render_table(rows)
    elapsed = time.monotonic() - started
    meta = [
        f"- Date: {utc_stamp()}",
        f"- Commit: {commit}",
        f"- Machine: {machine()}",
        f"- Python: {sys.version.split()[0]}; Node.js baseline: {node.describe()}",
        f"- Command: `{command}`",
        f"- Load generator: {load.describe()}{load_note}",
        f"- Pinning: {pinning.describe()}",
        (f"- Settings: {opts.rounds} round(s) × {opts.duration:g} s per scenario after "
         f"{opts.warmup:g} s warm-up, {opts.connections} connections for every HTTP scenario "
         f"but batch ({opts.batch_connections}); run took {elapsed:.0f} s"),
        ("- Gateway: instances A (cache on), B (tier 2 only) and C (cache off: the single and "
         "batch rows) on one data folder, pinned; D and E (cache off, Redis, "
         "`serve --workers 1` and `--workers 2`, not pinned) "
         + (f"{workers_note}" if workers_note else "for the workers rows")
         + "; A and B "
         + (f"with Redis {opts.redis_url} (flushed at the start and the end of the run)"
            if extras.redis else f"without Redis ({extras.redis_note})")
         + f"; Huzhou's library: `licences demo --count {opts.licences}`"),
    ]
    goals = goal_lines(rows)
    section = "\n".join([
        f"## {utc_stamp()} — {commit}{' (quick)' if opts.quick else ''}", "",
        *meta, "",
        ("Goals (met: the ratio of medians and the median of per-round ratios both reach "
         f"the goal, p99 ≤ {P99_LIMIT_MS:.0f} ms, no errors):"), "",
        *(f"- {g}" for g in goals), "", table, "", *(f"- {n}" for n in notes),
    ])
    print(section, flush=True)
    if opts.write:
        prepend_results(RESULTS, section)
        log(f"prepended to {RESULTS.relative_to(ROOT)}")
    return 0


@dataclass(frozen=True, slots=True)
class _Context:
    """What the set-up found out, for the rows."""

    translate_ok: bool
    translate_note: str
    cache: bool
    node: NodeBaseline
    workers_note: str
    """Empty when the workers rows ran; else why not."""
    load_kind: str


def _serve_workers() -> str:
    """Empty when ``serve`` accepts ``--workers`` (its ``--help`` says so); else why not."""
    done = run_bounded([python(), "-m", "gateway", "serve", "--help"], 120)
    if done.returncode != 0:
        return f"not measured: `serve --help` failed ({done.returncode})"
    if "--workers" not in done.stdout:
        return "not available in this build (`serve --help` has no --workers)"
    return ""


def _rows(scenarios: Sequence[Http], *, es256: Sequence[dict[str, Any]],
          sm2: Sequence[dict[str, Any]], audits: Sequence[dict[str, Any]],
          peak_kib: int | None, opts: Options, extras: Extras,
          context: _Context) -> tuple[list[Row], list[str]]:
    """The table's rows, each judged against its baseline of the same run. A development
    run (``--only``) gets the rows of what it measured; a full run gets every row, with
    the reason in place of a value when a scenario could not run."""
    full = opts.only is None
    index = {s.key: s for s in scenarios}
    rows: list[Row] = []

    def http(key: str, label: str, unit: str = "req/s", per: int = 1,
             missing: str = "not measured") -> Row | None:
        if key in index:
            row = _http_row(index[key], label, unit, per)
        elif full:
            row = Row(label, text=missing, status="not measured")
        else:
            return None
        rows.append(row)
        return row

    def judged(row: Row | None, base: Row | None, name: str, goal: float, goal_name: str,
               *, cpu: bool = False) -> None:
        if row is None:
            return
        if base is None:
            base = Row(name, text="not measured in this run")
        _judge(row, base, name, goal, goal_name, cpu=cpu)

    def compared(row: Row | None, base: Row | None, name: str) -> None:
        if row is not None and base is not None:
            _compare(row, base, name)

    minimal = http("minimal", "Baseline: minimal JSON endpoint (aiohttp)")
    bare = http("bare", "Baseline: bare HTTP/1.1 protocol, no web layer (uvloop + aiohttp's C "
                "parser), the minimal endpoint's answer")
    compared(bare, minimal, "minimal JSON")
    naive = http("naive", "Baseline: naive verify (aiohttp + PyJWT ES256, one key)")
    compared(naive, minimal, "minimal JSON")
    node = http("node", "Baseline: Node.js verify (node:http + jose compactVerify, one key)",
                missing=context.node.describe())
    compared(node, naive, "naive verify")
    raw = None
    if es256 or full:
        raw = Row("Baseline: raw ES256 verify loop (cryptography, in-process, one core)",
                  "verif/s", values=[r["rate"] for r in es256])
        rows.append(raw)
    single = http("single", "Gateway: single verification, unique licences (cache off, "
                  "instance C)")
    judged(single, naive, "naive verify", GOAL_SINGLE,
           f"single verification, cache off ≥ {GOAL_SINGLE:g}× the naive endpoint, with "
           f"server CPU per request at most the naive endpoint's", cpu=True)
    n43 = extras.partners_43 or 43
    single43 = http("single-43", f"Gateway: single verification at {n43} partners, unique "
                    f"licences (cache off, instance C43: the full federation)")
    judged(single43, single, "8 partners (the single row)", GOAL_FEDERATION,
           f"single verification at {n43} partners ≥ {GOAL_FEDERATION:g}× at 8 partners, "
           f"cache off (issue 26: keeps its speed; our reading)")
    single_sm2 = http("single-sm2", "Gateway: single verification, SM2SM3 licences of 毕节 "
                      "and 白山 (cache off, instance C; a pool cycled)")
    compared(single_sm2, single, "single verification (ES256)")
    if sm2 or full:
        openssl_sm2 = Row("Baseline: openssl speed sm2, verify (OpenSSL's own loop, one core, "
                          "half a scenario's duration)",
                          "verif/s", values=[r["openssl"] for r in sm2 if r["openssl"]])
        if not openssl_sm2.values:
            openssl_sm2.text = "not measured: no openssl command or no SM2 in it"
        sm2_primitive = Row("SM2SM3 verify through the gateway's signature path (in-process, "
                            "one core, SM3(Z_A ‖ input) + OpenSSL SM2 via ctypes)", "verif/s",
                            values=[r["rate"] for r in sm2])
        rows += [openssl_sm2, sm2_primitive]
        judged(sm2_primitive, openssl_sm2, "openssl speed sm2", GOAL_SM2_PRIMITIVE,
               f"SM2SM3 verify through the gateway's signature path ≥ {GOAL_SM2_PRIMITIVE:g}× "
               f"openssl speed sm2 (issue 23)")
    batch = http("batch", f"Gateway: batch verification, {BATCH_SIZE} unique licences per "
                 f"request, {opts.batch_connections} in flight (cache off, instance C)",
                 "licences/s", per=BATCH_SIZE)
    judged(batch, raw if raw is not None and raw.values else None, "raw ES256 loop",
           GOAL_BATCH, f"batch ≥ {GOAL_BATCH:g}× the raw ES256 loop on one core")
    repeated = http("repeated", f"Gateway: tier-1 cache hits, the same {REPEATED} licences "
                    "over and over (instance A)" if context.cache else
                    f"Gateway: the same {REPEATED} licences over and over (no verdict cache "
                    "answered the probe, so full work)")
    judged(repeated, naive, "naive verify", GOAL_CACHE_HIT,
           f"tier-1 cache hit ≥ {GOAL_CACHE_HIT:g}× the naive endpoint")
    translation = http("translation", "Gateway: matter translation (HTTP, instance A; the "
                       "161 distinct translations of the in-process rows, cycled)",
                       missing=context.translate_note)
    judged(translation, minimal, "minimal JSON", GOAL_TRANSLATION,
           f"HTTP translation ≥ {GOAL_TRANSLATION:g}× the minimal endpoint")
    partner = http("partner", f"Gateway: partner query by identifier (Shanghai, a fresh signed "
                   f"request token per request, library of {opts.licences:,} licences)")
    judged(partner, naive, "naive verify", GOAL_PARTNER,
           f"partner query by identifier ≥ {GOAL_PARTNER:g}× the naive endpoint")
    partner43 = http("partner-43", f"Gateway: partner query by identifier at {n43} partners "
                     f"(Shanghai of the full federation, instance A43, the same load)")
    judged(partner43, partner, "8 partners (the partner row)", GOAL_FEDERATION,
           f"partner query by identifier at {n43} partners ≥ {GOAL_FEDERATION:g}× at 8 "
           f"partners (issue 26: keeps its speed; our reading)")
    tier2 = http("tier2", f"Tier-2 cache hits (second instance): B re-verifies {opts.tier2:,} "
                 f"licences warmed on A, B's tier 1 holds 1 entry",
                 missing=f"not measured: no Redis ({extras.redis_note})")
    judged(tier2, single, "single verification (uncached)", GOAL_TIER2,
           f"tier-2 cache hit on a second instance ≥ {GOAL_TIER2:g}× single verification")
    why = context.workers_note
    one = http("workers-1", "Gateway: single verification, cache off, `serve --workers 1` "
               "(instance D, not pinned: load generator on the same 2 CPUs)", missing=why)
    two = http("workers-2", "Gateway: single verification, cache off, `serve --workers 2` "
               "(instance E, not pinned: load generator on the same 2 CPUs)", missing=why)
    judged(two, one if one is not None and one.values else None, "one worker", GOAL_WORKERS,
           f"two workers ≥ {GOAL_WORKERS:g}× one worker on this machine, load generator "
           f"included")
    if two is not None and not two.values and why:
        two.measured = why
    if full:
        rows += [_propagation_row(extras.propagation, opts, extras.redis),
                 _propagation_row(extras.propagation_43, opts, bool(extras.redis_43),
                                  partners=n43),
                 _memory_row(extras, opts)]
    if full or extras.trust_load is not None:
        rows += _trust_load_rows(extras)
    if full or extras.cases is not None:
        rows.append(_cases_row(extras))
    if audits:
        sizes = [a["tree_size"] for a in audits]
        rows += [
            Row(f"Audit appends (AuditService batching writer, SQLite FULL, "
                f"{opts.appenders} concurrent appenders, in-process, "
                f"{audits[0].get('event_loop', 'asyncio')} event loop)", "appends/s",
                values=[a["rate"] for a in audits]),
            Row(f"Audit inclusion proof via AuditService.entry at tree size "
                f"~{int(statistics.median(sizes)):,} (store read + proof)", "ms",
                values=[a["proof_p50_ms"] for a in audits],
                p50_ms=[a["proof_p50_ms"] for a in audits],
                p99_ms=[a["proof_p99_ms"] for a in audits]),
        ]
    if full:
        rows += _scale_rows(extras)
        rows.append(Row("Gateway peak memory (VmHWM of gateway A, whole run)",
                        text="unknown" if peak_kib is None else f"{peak_kib / 1024:.0f} MiB"))
    for row in rows:
        if row.http:
            _flag(row)
    if node is not None and node.median:
        for row in rows:
            if row is not node and row.median and (row.http or row is raw):
                row.node = f"{node.median:,.0f}/s ({row.median / node.median:.2f}×)"
    notes = [
        ("Every gateway request does all its work: every check of the licence, the status "
         "list (fetched from the mock partner and cached by its ttl), a signed receipt and a "
         "durable audit record before the answer."),
        ("Median over rounds; Rounds lists each round; p50/p99 are medians of each round's "
         "percentiles. Ratio = median ÷ median of the baseline measured in this run with the "
         "same load generator; Per-round ratios = each round's value ÷ the baseline's value "
         "in the same round (rounds interleave every scenario), with their median. A goal is "
         f"met when both ratios reach it, the p99 is at most {P99_LIMIT_MS:.0f} ms and no "
         f"request failed; any other row whose p99 is above {P99_LIMIT_MS:.0f} ms is flagged."),
        ("CPU µs/req: user + system time of the serving process and every process it started "
         "(workers), all threads, from /proc over each measurement ÷ its requests, median "
         "over rounds; the batch row's is per licence. It is what a request costs the "
         "server, less sensitive than the rates to other tenants of the machine."),
        ("Node.js jose (÷): the Node.js endpoint's median rate in this run (it verifies one "
         "licence per request) and this row's median ÷ it."),
        *([] if not full and "bare" not in index else [
         ("Bare protocol: an `asyncio.Protocol` on uvloop that parses each request with "
         "aiohttp's own C parser (llhttp) and writes the minimal endpoint's answer once the "
         "body has arrived (`bench._baselines`): what parsing one request and answering it "
         "costs in Python here. Its CPU per request against the minimal endpoint's is the "
         "price of aiohttp's web layer (request and response objects, the handler task, the "
         "stream writer), which every aiohttp row pays: a cost of that library, not a bound "
         "(docs/performance.md, \"The HTTP layer\").")]),
        (f"The batch row counts licences/s (requests/s × {BATCH_SIZE}); its p50/p99 are per "
         f"batch request, with {opts.batch_connections} batch(es) in flight."),
        *([] if not full and "workers-2" not in index else [
         "Workers rows: instances D and E run `serve --workers 1` and `--workers 2` with the "
         "cache off (as C), on the same data folder and Redis (as A), not pinned, and the "
         "load generator is not pinned either: the two CPUs of the machine carry the "
         "gateway's workers and the load generator together. They cycle a pool of "
         f"{WORKERS_POOL:,} ES256 licences (quick: 300); with the cache off each request "
         "verifies its licence in full."
         + (f" This run: {context.workers_note}." if context.workers_note else "")
         + (" Requests per worker of the two-worker row (per round, from `/metrics`): "
            + "; ".join("/".join(f"{p}%" for p in shares.values())
                        for shares in extras.worker_shares) + "."
            if extras.worker_shares else "")]),
        *_extra_notes(extras, opts, context.load_kind),
    ]
    return rows, notes


def _scale_rows(extras: Extras) -> list[Row]:
    """Registry translate rate and the audit log at scale (measured once per run)."""
    rows: list[Row] = []
    if extras.translate is not None:
        t = extras.translate
        unmemoised = ("answer memo off: each call picks by day and conditions among "
                      "candidates built once per code and target")
        for key, how in (("rate", "answers memoised, as the gateway serves"),
                         ("rate_unmemoised", unmemoised)):
            row = Row(f"Registry: in-process translate, warm ({how}; "
                      f"{t['distinct_calls']} distinct calls cycled, one core)", "lookups/s",
                      values=[t[key]], goal_text=f"≥ {GOAL_TRANSLATE_INPROC:,.0f}/s")
            row.status = "met" if t[key] >= GOAL_TRANSLATE_INPROC else "not met"
            row.goal_name = (f"in-process translate ({how}) ≥ {GOAL_TRANSLATE_INPROC:,.0f} "
                             f"lookups/s")
            row.measured = f"{t[key]:,.0f} lookups/s"
            rows.append(row)
    if extras.audit_scale is not None:
        rows += _audit_scale_rows(extras.audit_scale)
    return rows


GOAL_PROOF_MS: Final = 1.0
"""Issue 26: inclusion and consistency proofs p99 < 1 ms (at 1,000,000 and 10,000,000)."""
GOAL_STARTUP_S: Final = 10.0
GOAL_VERIFY_S_PER_MILLION: Final = 60.0
"""``audit verify``: < 60 s at 1,000,000 entries, and (issue 26) < 10 minutes at 10,000,000."""


def _audit_scale_rows(a: dict[str, Any]) -> list[Row]:
    """Proofs, start-up, verification and memory of the audit log at scale."""
    n = a["entries"]
    cache = ("page cache dropped first" if a.get("page_cache_dropped")
             else "page cache not dropped")
    loop = a.get("event_loop", "asyncio")
    rows: list[Row] = []
    for key, what in (("proof", ("inclusion proof (AuditService.entry: the record and its "
                                 "proof in the latest checkpoint)")),
                      ("consistency", "consistency proof (random older size to the latest)")):
        p50, p99 = a[f"{key}_p50_ms"], a[f"{key}_p99_ms"]
        cpu_ms = a.get(f"{key}_cpu_ms")
        p90 = a.get(f"{key}_p90_ms")
        row = Row(f"Audit {what} at {n:,} entries, {cache}, {loop} event loop"
                  + (f"; p90 {p90:.3f} ms" if p90 is not None else ""), "ms", values=[p50],
                  p50_ms=[p50], p99_ms=[p99], goal_text=f"< {GOAL_PROOF_MS:g} ms (p99)",
                  cpu_us=[] if cpu_ms is None else [cpu_ms * 1000])
        row.status = "met" if p99 < GOAL_PROOF_MS else "not met"
        kind = "inclusion" if key == "proof" else key
        row.goal_name = f"audit {kind} proof at {n:,} entries < {GOAL_PROOF_MS:g} ms (p99)"
        row.measured = f"p50 {p50:.3f} ms, p99 {p99:.3f} ms"
        rows.append(row)
    if "page_read_p50_ms" in a:
        p50, p99 = a["page_read_p50_ms"], a["page_read_p99_ms"]
        rows.append(Row(f"One read of a random 4 KiB page of the log's database (os.pread,"
                        f" read-ahead off), {cache}: the disk's own latency, for the proofs"
                        f" above", "ms", values=[p50], p50_ms=[p50], p99_ms=[p99]))
    startup = Row(f"Audit service start-up at {n:,} entries (kept chunk nodes and leaf hashes;"
                  f" {cache}; RSS grew {a['rss_startup_growth_mb']:.0f} MB)", "s",
                  values=[a["startup_s"]], goal_text=f"< {GOAL_STARTUP_S:g} s")
    startup.status = "met" if a["startup_s"] < GOAL_STARTUP_S else "not met"
    startup.goal_name = f"audit start-up at {n:,} entries < {GOAL_STARTUP_S:g} s"
    startup.measured = f"{a['startup_s']:.2f} s"
    limit = GOAL_VERIFY_S_PER_MILLION * max(1.0, n / 1e6)
    verify = Row(f"audit verify of {n:,} entries (every leaf rehashed, every checkpoint "
                 f"checked; log {a['db_mb']:,.0f} MB; {cache})", "s", values=[a["verify_s"]],
                 goal_text=f"< {limit:g} s")
    verify.status = "met" if a["verify_s"] < limit and a["verified"] == n else "not met"
    verify.goal_name = f"audit verify of {n:,} entries < {limit:g} s"
    verify.measured = f"{a['verify_s']:.1f} s, {a['verified']:,} entries verified"
    memory = Row(f"Audit tree in memory per million entries (complete nodes from 16 leaves up;"
                 f" on disk: {a.get('nodes_mb', 0):,.0f} MB of chunk nodes and "
                 f"{a.get('leaves_mb', 0):,.0f} MB of leaf hashes beside the log)", "MB",
                 values=[a["tree_mb_per_million"]])
    return [*rows, startup, verify, memory]


def _trust_load_rows(extras: Extras) -> list[Row]:
    """``TrustList.from_json`` at 8 and at 43 partners (for information: no goal)."""
    result = extras.trust_load
    if result is None:
        return [Row(f"Trust-list load at {n} partners (TrustList.from_json, in-process)",
                    text="not measured") for n in (8, extras.partners_43 or 43)]
    rows: list[Row] = []
    for each in result["lists"]:
        row = Row(f"Trust-list load at {each['partners']} partners (TrustList.from_json: "
                  f"parse and validate {each['anchors']} anchors, {each['bytes'] / 1000:.0f} "
                  f"kB; in-process, one core, median of {each['loads']} loads)", "ms",
                  values=[each["median_ms"]])
        if rows:
            _compare(row, rows[0], f"{result['lists'][0]['partners']} partners (time ÷)")
        rows.append(row)
    return rows


def _cases_row(extras: Extras) -> Row:
    """Issue 25: a 一件事 check against five single verifications, judged by CPU over HTTP."""
    row = Row("一件事 check with 5 requirements, all licences presented (POST /v1/cases, "
              "listing-compliance) against five single verifications (bench._cases: "
              "in-process over loopback HTTP, each licence used once, CPU per unit of work)",
              baseline="five single verifications",
              goal_text=f"≤ {GOAL_CASE:g}× (CPU, HTTP)",
              goal_name=f"一件事 check with 5 requirements, all licences presented ≤ "
                        f"{GOAL_CASE:g}× five single verifications (CPU over HTTP, same run; "
                        f"issue 25)")
    c = extras.cases
    if c is None:
        row.text, row.status = "not measured", "not measured"
        row.measured = "not measured"
        return row
    http, service = c["case_cpu_ratio_http"], c["case_cpu_ratio_service"]
    row.ratio = http
    row.text = (f"CPU {http:.2f}× over HTTP; service level {service:.2f}×; wall "
                f"{c['case_wall_ratio_http']:.2f}× (HTTP), {c['case_wall_ratio_service']:.2f}× "
                f"(service)")
    row.measured = (
        f"{http:.2f}× five single verifications by CPU over HTTP "
        f"({c['case_http']['cpu_ms']:.2f} ms ÷ {c['singles_http']['cpu_ms']:.2f} ms); "
        f"service level {service:.2f}× ({c['case_service']['cpu_ms']:.2f} ms ÷ "
        f"{c['singles_service']['cpu_ms']:.2f} ms); wall time {c['case_wall_ratio_http']:.2f}× "
        f"over HTTP, {c['case_wall_ratio_service']:.2f}× at the service level; medians of "
        f"{c['rounds']} rounds × {c['n']} units")
    row.status = "met" if http <= GOAL_CASE else f"not met: {http:.2f}× > {GOAL_CASE:g}×"
    return row


def _propagation_row(result: _cluster.Propagation | None, opts: Options, redis: bool,
                     partners: int | None = None) -> Row:
    """Propagation A → B (``partners`` None) or A43 → B43 at ``partners`` partners."""
    where = ("" if partners is None else f" at {partners} partners")
    pair = "A's admin API; approve answer → B's" if partners is None else \
        "A43's admin API; approve answer → B43's"
    label = (f"Trust-list propagation to a second instance{where} ({opts.changes} changes "
             f"proposed and approved through {pair} /readyz serves the "
             f"version{'' if redis else '; no Redis: store polling only'})")
    row = Row(label, goal_text=f"< {GOAL_PROPAGATION_MS:.0f} ms (worst)",
              goal_name=f"trust-list propagation to a second instance{where} < "
                        f"{GOAL_PROPAGATION_MS:.0f} ms (worst of {opts.changes} changes)")
    if result is None or not result.times_ms:
        row.text, row.status = "not measured", "not measured"
        return row
    done = result.done
    missing = len(result.times_ms) - len(done)
    median = f"{statistics.median(done):.0f} ms" if done else "n/a"
    worst = f"{max(done):.0f} ms" if done else "n/a"
    row.text = f"median {median}, worst {worst}" + (
        f", {missing} not seen within 10 s" if missing else "")
    if result.worst is not None and result.worst < GOAL_PROPAGATION_MS:
        row.status = "met"
    else:
        row.status = "not met"
    row.measured = row.text
    return row


def _memory_row(extras: Extras, opts: Options) -> Row:
    label = (f"Memory with {opts.verdicts:,} cached verdicts (VmRSS of gateway A after "
             f"filling its tier 1 through the batch endpoint)")
    row = Row(label, goal_text=f"< {GOAL_MEMORY_MB:.0f} MB",
              goal_name=f"memory with {opts.verdicts:,} cached verdicts < "
                        f"{GOAL_MEMORY_MB:.0f} MB (VmRSS)")
    if extras.rss_kib is None or extras.entries is None:
        row.text, row.status = "unknown", "not measured"
        return row
    mb = extras.rss_kib * 1024 / 1e6
    row.text = (f"{mb:.0f} MB ({extras.rss_kib / 1024:.0f} MiB), "
                f"{extras.entries:,} entries")
    row.status = "met" if mb < GOAL_MEMORY_MB else "not met"
    if extras.entries < opts.verdicts:
        row.status = f"not met (only {extras.entries:,} of {opts.verdicts:,} entries held)"
    row.measured = row.text
    return row


def _extra_notes(extras: Extras, opts: Options, load_kind: str) -> list[str]:
    notes: list[str] = []
    if extras.partner_pools:  # the partner row ran
        signed = ", ".join(f"{n:,} in {sec:.1f} s" for n, sec in extras.partner_pools)
        header = ("wrk: the Lua script splits each line and builds a per-request header table for "
                  "`wrk.format`" if load_kind == "wrk"
                  else "python generator: `--auth-lines`")
        notes.append(
            f"Partner query: `POST /v1/partner/licences/query` by identifier as Shanghai (310000), "
            f"matter {_cluster.PARTNER_MATTER}, cycling the {extras.identifiers:,} demo licences "
            f"valid today (each answer signs the licence: cn_status 0). Every request carries "
            f"its own `ecert-request+jwt` (unique jti, body_sha256 of that exact body, lifetime "
            f"300 s), "
            f"signed by the mock federation process before the timed window, per round, just "
            f"before that round ({signed}); pool lines are `<Authorization>\\t<body>` "
            f"({header}). Partner rate limit raised to {_cluster.PARTNER_RATE:,}/s, burst "
            f"{_cluster.PARTNER_RATE:,} (`[partner.rate_limits]` via `serve --config`)"
            + ("; jti replay cache in Redis." if extras.redis
               else "; jti replay cache in process."))
    if extras.partners_43:
        signed = ", ".join(f"{n:,} in {sec:.1f} s" for n, sec in extras.partner43_pools)
        notes.append(
            f"{extras.partners_43} partners: the mocks' full federation "
            f"(`Federation.named(\"{FULL_FEDERATION}\")`: the 40 other delta cities and 柯坪, "
            f"白山, 毕节, each with its retired keys in the trust list) in its own mock process "
            f"(on the servers' CPU while it issues its pools during the set-up, then moved to "
            f"the load generator's CPU). "
            f"Instances A43 (as A: cache on, "
            + (f"Redis {extras.redis_43}, the run's next database" if extras.redis_43
               else "no Redis")
            + "), C43 (as C: cache off, no Redis) and, in a full run, B43 (as B: propagation "
            "only) serve a "
            "copy of the data folder made before any instance started (same client key, "
            "operators and licence library), with the full federation's trust list; pinned "
            "like A, B and C. The single row at 43 sends unique licences round-robin over the "
            "full federation's ES256 regions, the partner row at 43 queries as its Shanghai; "
            "each 43-partner row runs right after its 8-partner row in every round, with the "
            "same load generator, connections and durations. Goal (our reading of issue 26's "
            f"\"keep their speed\"): rate at 43 ÷ rate at 8 ≥ {GOAL_FEDERATION:g}, by the ratio of "
            "medians and the median of per-round ratios"
            + (f"; request tokens signed per round at 43: {signed}." if signed else "."))
    if extras.trust_load is not None:
        each = "; ".join(f"{t['partners']} partners: median {t['median_ms']:.2f} ms, p90 "
                         f"{t['p90_ms']:.2f} ms over {t['loads']} loads"
                         for t in extras.trust_load["lists"])
        notes.append(
            f"Trust-list load: `TrustList.from_json` of each served trust-list file's bytes "
            f"(JSON parse, schema, every anchor and certificate validated), the lists loaded "
            f"in turn after one warm load each, in-process on the servers' CPU; no goal (a "
            f"list six times the size costs more to read; the issue asks that it loads, "
            f"validates and is served). {each}.")
    result43 = extras.propagation_43
    if result43 is not None and result43.times_ms:
        each = ", ".join("timeout" if t is None else f"{t:.0f}" for t in result43.times_ms)
        notes.append(f"Propagation at {extras.partners_43 or 43} partners: the same changes "
                     f"on A43 → B43, right after the changes at 8. Each (ms): {each}.")
    if extras.cases is not None:
        notes.append(
            "一件事: `python -m bench._cases` pinned to the servers' CPU: one process with the "
            "mock Shanghai, a gateway app (real audit log, SQLite, verdict cache on) and an "
            "aiohttp test client; rounds alternate five `POST /v1/verifications` with one "
            "`POST /v1/cases` (listing-compliance, 5 requirements, its 5 licences presented, "
            "no partner asked), and the same at the service level (no HTTP); each licence is "
            "used once. Cost is the process's CPU time per unit of work (client and idle mocks "
            "included on both sides), median over rounds; the goal is judged on the HTTP CPU "
            "ratio.")
    if extras.tier2_counts:
        counts = "; ".join(
            f"round {n + 1}: warmed {w:,} on A; B " + ", ".join(f"{v:,} {k}" for k, v in c.items())
            for n, (w, c) in enumerate(zip(extras.tier2_warm, extras.tier2_counts, strict=False)))
        notes.append(
            f"Tier-2: instance B (`ECERT_CACHE_MAX_ENTRIES=1`, same data folder and Redis) "
            f"cycles {opts.tier2:,} licences that A verified through the batch endpoint just "
            f"before; B's own counters over warm-up + measurement ({counts}). A Redis miss on "
            f"B (a verdict expired with A's status-list freshness) is a full verification "
            f"that B stores back.")
    result = extras.propagation
    if result is not None and result.times_ms:
        each = ", ".join("timeout" if t is None else f"{t:.0f}" for t in result.times_ms)
        notes.append(
            f"Propagation: each change is a `renew` (new next_update) proposed by an operator "
            f"and approved by an approver (`ECERT_APPROVALS_REQUIRED=1`) on A; time from A's "
            f"approve answer to the first answer of B's `GET /readyz` with the new "
            f"trust_list_version (polled every 10 ms, so up to ~10 ms of it is the poll). "
            f"Goal judged on the worst case. Each (ms): {each}.")
    if extras.rss_kib is not None:
        before = ("" if extras.rss_before_kib is None else
                  f" (it was {extras.rss_before_kib * 1024 / 1e6:.0f} MB just before the fill, "
                  f"after the throughput rounds)")
        notes.append(
            f"Memory: after the propagation changes (a new trust-list version empties tier 1), "
            f"{extras.filled:,} distinct licences{extras.fill_note} passed through A's batch "
            f"endpoint in "
            f"{extras.fill_seconds:.1f} s; VmRSS of the whole process read from /proc right "
            f"after{before}; entries from `ecert_cache_memory_entries` (tier 1 is bounded by "
            f"cache_max_entries, default 100,000). MB = 10^6 bytes.")
    return notes
