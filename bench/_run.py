"""One benchmark run: start everything, measure in rounds, report, stop everything."""

from __future__ import annotations

import argparse
import math
import shlex
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
from bench._procs import (
    HOST,
    ROOT,
    Children,
    Pinning,
    cpu_seconds,
    free_port,
    http_post,
    peak_memory_kib,
    python,
    resident_memory_kib,
    run_bounded,
)
from bench._report import Row, git_commit, machine, prepend_results, render_table, utc_stamp

__all__ = ["main"]

RESULTS: Final = Path(__file__).resolve().parent / "RESULTS.md"
BATCH_SIZE: Final = 100
REPEATED: Final = 4
TRANSLATE_BODY: Final = {
    "source": {"region": "330500", "code": "许可-00906-002"},
    "target_region": "330100",
    "conditions": {"applicant_type": "enterprise"},
}
SCENARIO_KEYS: Final = ("minimal", "naive", "floor-verify", "floor-batch", "floor-hit",
                         "floor-audit", "floor-partner", "single", "single-sm2", "batch",
                         "repeated", "translation",
                         "partner", "tier2", "es256", "sm2", "audit")
GOAL_SINGLE: Final = 0.8
GOAL_BATCH: Final = 0.45
GOAL_TRANSLATION: Final = 0.5
GOAL_CACHE_HIT: Final = 0.4
GOAL_PARTNER: Final = 0.7
GOAL_TIER2: Final = 1.2
GOAL_PROPAGATION_MS: Final = 1000.0
GOAL_MEMORY_MB: Final = 250.0
GOAL_TRANSLATE_INPROC: Final = 200_000.0
GOAL_SM2_PRIMITIVE: Final = 0.5
"""SM2 verification through the gateway's signature path against ``openssl speed sm2``."""
SM2_POOL: Final = 1000
"""SM2SM3 licences of the single-sm2 pool (the mocks sign SM2 in pure Python, ~7 ms each)."""
REDIS_URL: Final = "redis://127.0.0.1:6379/1"
# Upper guesses of throughput on one core, to size the pools of unique licences so that no
# licence is sent twice in a run (checked afterwards and reported when it happened anyway).
EXPECTED_SINGLE_PER_S: Final = 5000
EXPECTED_BATCH_LICENCES_PER_S: Final = 6000
EXPECTED_PARTNER_PER_S: Final = 6000
"""Upper guess of partner queries/s: sizes each round's pool of one-use request tokens."""


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
    """The gateways' ``crypto_thread`` setting, and the floor's counterpart (A/B runs)."""

    @classmethod
    def parse(cls, argv: Sequence[str] | None) -> Options:
        """Parse the command line."""
        parser = argparse.ArgumentParser(
            prog="python -m bench",
            description="Benchmark the gateway against baselines measured in the same run.",
        )
        parser.add_argument("--quick", action="store_true",
                            help="~2 s per scenario, tiny pools, one round (harness check)")
        parser.add_argument("--load", choices=["wrk", "python"],
                            help="load generator (default: wrk; python with --quick)")
        parser.add_argument("--no-write", action="store_true",
                            help="print only; do not prepend the run to bench/RESULTS.md")
        parser.add_argument("--duration", type=float, help="seconds per measurement (15; quick 2)")
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
                                 f"({', '.join(SCENARIO_KEYS)}); prints their rates only "
                                 "and writes nothing")
        parser.add_argument("--crypto-thread", choices=["on", "off"], default="on",
                            help="development: partner signature work on a thread beside the "
                                 "loop (gateways' crypto_thread setting, and the floor's "
                                 "/partner), or on the loop; with --only")
        args = parser.parse_args(argv)
        only = None
        if args.only:
            only = frozenset(k.strip() for k in args.only.split(",") if k.strip())
            if unknown := only - set(SCENARIO_KEYS):
                parser.error(f"--only: unknown scenario(s) {sorted(unknown)}")
        if args.crypto_thread == "off" and not only:
            parser.error("--crypto-thread off is for development runs (with --only)")
        duration = args.duration or (2.0 if args.quick else 15.0)
        if duration <= 0 or args.connections < 1:
            parser.error("--duration and --connections must be positive")
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
    """The process serving ``url``: its CPU time per request is recorded with each result."""


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
            return (f"wrk (1 thread, {self.opts.connections} connections, Lua script cycling "
                    f"pre-built bodies)")
        return (f"python -m bench._load (aiohttp client in its own process, "
                f"{self.opts.connections} connections)")

    def measure(self, scenario: Http, offset: int) -> dict[str, Any]:
        """Warm up on the warm pool, then measure on the pool from ``offset``."""
        opts = self.opts
        pin = self.pinning.prefix("load")
        limit = opts.duration + opts.warmup + 120
        if self.kind == "python":
            argv = [*pin, python(), "-m", "bench._load", "--url", scenario.url,
                    "--bodies", str(scenario.pool), "--offset", str(offset),
                    "--warm-bodies", str(scenario.warm), "--warmup", str(opts.warmup),
                    "--connections", str(opts.connections), "--duration", str(opts.duration)]
            for name, value in scenario.headers.items():
                argv += ["--header", f"{name}: {value}"]
            if scenario.auth_lines:
                argv.append("--auth-lines")
            done = run_bounded(argv, limit)
            if done.returncode != 0:
                raise RuntimeError(f"load generator failed: {done.stderr[-1000:]}")
            result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
            return result
        assert self.wrk is not None
        warm = _wrk.command(self.wrk, self.script, scenario.url, scenario.warm, offset=0,
                            connections=opts.connections, duration=opts.warmup,
                            headers=scenario.headers, auth_lines=scenario.auth_lines)
        run_bounded([*pin, *warm], limit)
        argv = _wrk.command(self.wrk, self.script, scenario.url, scenario.pool, offset=offset,
                            connections=opts.connections, duration=opts.duration,
                            headers=scenario.headers, auth_lines=scenario.auth_lines)
        cpu_before = _server_cpu(scenario)
        done = run_bounded([*pin, *argv], limit)
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed: {done.stderr[-1000:]}")
        result = _wrk.parse(done.stdout)
        _add_cpu(result, scenario, cpu_before)
        return result


def _server_cpu(scenario: Http) -> float | None:
    return None if scenario.server_pid is None else cpu_seconds(scenario.server_pid)


def _add_cpu(result: dict[str, Any], scenario: Http, before: float | None) -> None:
    """``cpu_us``: the server's CPU time (every thread) per request of the measurement.

    Less sensitive to a shared machine than the rate: time another tenant takes from
    the server's core is not counted (cache and frequency effects still are).
    """
    after = _server_cpu(scenario)
    if before is not None and after is not None and result.get("requests"):
        result["cpu_us"] = (after - before) * 1e6 / result["requests"]


def _inproc(pinning: Pinning, args: Sequence[str], limit: float) -> dict[str, Any]:
    done = run_bounded([*pinning.prefix("server"), python(), "-m", "bench._inproc", *args],
                       limit)
    if done.returncode != 0:
        raise RuntimeError(f"in-process measurement failed: {done.stderr[-1500:]}")
    result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
    return result


_QUICK_SIZES: Final = {"single": 600, "batch": 6, "naive": 300, "warm": 200, "sm2": 100}
_POOL_USERS: Final = {"single": frozenset({"single", "floor-verify"}),
                      "batch": frozenset({"batch", "floor-batch"})}
"""The scenarios that send each sized pool of unique licences."""


def _sizes(opts: Options) -> dict[str, int]:
    if opts.quick:
        return dict(_QUICK_SIZES)
    seconds = opts.duration * opts.rounds
    sizes = {
        "single": math.ceil(seconds * EXPECTED_SINGLE_PER_S),
        "batch": math.ceil(seconds * EXPECTED_BATCH_LICENCES_PER_S / BATCH_SIZE),
        "naive": 5000,
        "warm": max(1000, math.ceil(opts.warmup * EXPECTED_SINGLE_PER_S)),
        "sm2": SM2_POOL,
    }
    if opts.only is not None:
        # A development run issues full pools only for what it measures (issuing the
        # single pool alone takes minutes); the start-up checks still get their share.
        for pool, users in _POOL_USERS.items():
            if not opts.only & users:
                sizes[pool] = _QUICK_SIZES[pool]
    return sizes


def _sanity(gateway: str, headers: dict[str, str], work: Path, naive: str, minimal: str) -> None:
    """Every region's licence passes with a status list, so do the first licences of the
    SM2 pool (one of each SM2 region), a batch passes, baselines answer."""
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
    for url in (naive, minimal):
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
    row = Row(scenario=label, unit=unit, http=True)
    for result in scenario.results:
        row.values.append(result["requests"] * per / result["seconds"])
        row.p50_ms.append(result["p50_ms"])
        row.p99_ms.append(result["p99_ms"])
        row.errors += int(result["errors"])
    return row


def _compare(row: Row, base: Row, name: str, goal: float | None,
             miss_note: str = "") -> None:
    row.baseline = name
    if row.median is None or not base.median:
        return
    row.ratio = row.median / base.median
    row.goal = goal
    if goal is not None:
        row.status = "met" if row.ratio >= goal else ("missed" + miss_note)
    if row.errors:
        row.status = (row.status + f"; {row.errors} errors").lstrip("; ")


def _floor(row: Row, base: Row, name: str, goal: float) -> None:
    """A floor row: the ratio the mandatory work alone reaches against a goal's baseline."""
    _compare(row, base, name, None)
    row.goal_text = f"bounds ≥{goal:g}×"
    if row.ratio is not None:
        row.status = ("goal within reach" if row.ratio >= goal
                      else "goal out of reach on this stack")
    if row.errors:
        row.status = (row.status + f"; {row.errors} errors").lstrip("; ")


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
        with tempfile.TemporaryDirectory(prefix="ecert-bench-") as tmp:
            work = Path(tmp)
            (work / "logs").mkdir()
            children = Children(Pinning.detect(), work / "logs")
            redis_db = _cluster.RedisDb(opts.redis_url)
            try:
                redis_db.flush()  # no earlier run can produce hits
                return _run(opts, command, work, children, redis_db)
            finally:
                children.stop_all()
                redis_db.close()  # flushed again: nothing of this run stays behind
    except (KeyboardInterrupt, _InterruptedError):
        log("interrupted: every child process was stopped")
        return 130
    except RuntimeError as exc:
        log(f"failed: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


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
    translate: dict[str, Any] | None = None
    """In-process Registry.translate rates (memoised as served, and not)."""
    audit_scale: dict[str, Any] | None = None
    """Proof and verify times over a large log built for the purpose."""


def _counter_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    names = {"redis hits": 'ecert_cache_events_total{tier="redis",event="hit"}',
             "redis misses": 'ecert_cache_events_total{tier="redis",event="miss"}',
             "redis errors": 'ecert_cache_events_total{tier="redis",event="error"}',
             "tier-1 hits": 'ecert_cache_events_total{tier="memory",event="hit"}'}
    return {label: int(after.get(name, 0) - before.get(name, 0)) for label, name in names.items()}


def _run(opts: Options, command: str, work: Path, children: Children,
         redis_db: _cluster.RedisDb) -> int:
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
    extras = Extras(redis=redis_db.available,
                    redis_note="" if redis_db.available else redis_db.error)

    # -- the mock federation: trust list first, pools of unique licences, then it serves
    pools = work / "pools"
    fill_batches = math.ceil(opts.verdicts * 1.01 / BATCH_SIZE)
    control_port = free_port()
    log(f"mock federation: issuing {sizes['single']:,} single, {sizes['batch']:,}×{BATCH_SIZE} "
        f"batch, {sizes['naive']:,} naive-region, {opts.tier2:,} tier-2 and "
        f"{fill_batches:,}×{BATCH_SIZE} cache-fill licences (plus warm-up pools)")
    children.start("mockserver", [
        python(), "-m", "bench._mockserver", "--out", str(pools), "--seed", str(opts.seed),
        "--single", str(sizes["single"]), "--batch", str(sizes["batch"]),
        "--batch-size", str(BATCH_SIZE), "--naive", str(sizes["naive"]),
        "--warm", str(sizes["warm"]), "--repeated", str(REPEATED),
        "--tier2", str(opts.tier2), "--fill", str(fill_batches), "--sm2", str(sizes["sm2"]),
        "--control-port", str(control_port),
    ], role="load")
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

    # -- gateway A (measured), then B on the same data folder and Redis; the baselines
    gw_port, b_port, minimal_port, naive_port = free_port(), free_port(), free_port(), free_port()
    floor_port = free_port()
    c_port = free_port()
    serve = [python(), "-m", "gateway", "serve", "--data-dir", str(data),
             "--trust-list", str(pools / "trust-list.json"), "--config", str(settings)]
    env = {"ECERT_APPROVALS_REQUIRED": "1",
           "ECERT_CRYPTO_THREAD": "1" if opts.crypto_thread else "0"}
    log(f"crypto thread (partner signature work): {'on' if opts.crypto_thread else 'off'}")
    gateway = children.start("gateway", [*serve, "--listen", f"{HOST}:{gw_port}"], env=env)
    minimal_proc = children.start("minimal", [python(), "-m", "bench._baselines", "minimal",
                                              "--port", str(minimal_port)])
    children.wait_file("mockserver", pools / "naive-jwk.json", 300)
    naive_proc = children.start("naive", [
        python(), "-m", "bench._baselines", "naive", "--port", str(naive_port),
        "--jwk", str(pools / "naive-jwk.json")])
    # The partner floor reads gateway A's licence library and, like A, spends jtis in Redis.
    floor_proc = children.start("floor", [
        python(), "-m", "bench._baselines", "floor", "--port", str(floor_port),
        "--trust-list", str(pools / "trust-list.json"), "--licences", str(data),
        *(["--redis-url", opts.redis_url] if redis_db.available else []),
        *([] if opts.crypto_thread else ["--no-crypto-thread"])])
    floor = f"http://{HOST}:{floor_port}"
    gw = f"http://{HOST}:{gw_port}"
    gw_b = f"http://{HOST}:{b_port}"
    minimal = f"http://{HOST}:{minimal_port}/"
    naive = f"http://{HOST}:{naive_port}/"
    children.wait_http("gateway", f"{gw}/readyz")
    # B only once A has seeded the store from the trust list.
    gateway_b = children.start("gateway-b", [*serve, "--listen", f"{HOST}:{b_port}"],
                               env={**env, "ECERT_CACHE_MAX_ENTRIES": "1"})
    # C serves the uncached scenarios (issue 3: "with caching off"): no cache, no Redis.
    settings_c = _cluster.write_settings(work / "gateway-nocache.toml", None)
    serve_c = [python(), "-m", "gateway", "serve", "--data-dir", str(data),
               "--trust-list", str(pools / "trust-list.json"), "--config", str(settings_c)]
    gateway_c = children.start("gateway-c", [*serve_c, "--listen", f"{HOST}:{c_port}"],
                               env={**env, "ECERT_CACHE_ENABLED": "0"})
    gw_c = f"http://{HOST}:{c_port}"
    children.wait_http("minimal", minimal)
    children.wait_http("naive", naive)
    children.wait_http("floor", f"{floor}/")
    children.wait_http("gateway-b", f"{gw_b}/readyz")
    children.wait_http("gateway-c", f"{gw_c}/readyz")
    children.wait_file("mockserver", pools / "manifest.json", 900)
    manifest = orjson.loads((pools / "manifest.json").read_bytes())
    counts: dict[str, int] = manifest["counts"]
    log(f"pools ready in {time.monotonic() - started:.0f} s: {counts}")
    _sanity(gw, auth, pools, naive, minimal)
    control = f"http://{HOST}:{control_port}"
    partner_url = f"{gw}/v1/partner/licences/query"
    probe = work / "partner-probe.jsonl"
    _cluster.partner_pool(control, identifiers=identifiers, out=probe, count=1)
    _cluster.partner_sanity(partner_url, probe.read_bytes().splitlines()[0])
    _cluster.partner_pool(control, identifiers=identifiers, out=probe, count=1, offset=1)
    _cluster.partner_sanity(f"{floor}/partner", probe.read_bytes().splitlines()[0])
    translate_ok, translate_note = _probe_translation(gw, auth)
    log(f"translation: {translate_note}")
    cache = _probe_cache(gw, auth, pools)
    log(f"verdict cache: {'on (a repeated licence is answered cached)' if cache else 'none'}")

    def pool(name: str) -> Path:
        return pools / f"{name}.jsonl"

    scenarios = [
        Http("minimal", minimal, pool("naive"), pool("naive-warm")),
        Http("naive", naive, pool("naive"), pool("naive-warm")),
        Http("floor-verify", f"{floor}/verify", pool("single"), pool("single-warm")),
        Http("floor-batch", f"{floor}/verify", pool("batch"), pool("batch-warm"),
             per_request=BATCH_SIZE),
        Http("floor-hit", f"{floor}/hit", pool("repeated"), pool("repeated")),
        Http("floor-audit", f"{floor}/audit", pool("repeated"), pool("repeated")),
        Http("single", f"{gw_c}/v1/verifications", pool("single"), pool("single-warm"), auth,
             unique=True),
        # SM2SM3 licences of 毕节 and 白山, a small pool cycled: C has no verdict cache, so
        # each request verifies its licence in full all the same.
        Http("single-sm2", f"{gw_c}/v1/verifications", pool("single-sm2"), pool("single-sm2"),
             auth),
        Http("batch", f"{gw_c}/v1/verifications/batch", pool("batch"), pool("batch-warm"), auth,
             per_request=BATCH_SIZE, unique=True),
        Http("repeated", f"{gw}/v1/verifications", pool("repeated"), pool("repeated"), auth),
    ]
    if translate_ok:
        body = work / "translate.jsonl"
        body.write_bytes(orjson.dumps(TRANSLATE_BODY) + b"\n")
        scenarios.append(Http("translation", f"{gw}/v1/matters/translate", body, body, auth))
    for s in scenarios:
        s.pool_lines = counts.get(s.pool.stem, 1)

    floor_partner = Http("floor-partner", f"{floor}/partner", probe, probe, unique=True,
                         auth_lines=True, fresh=True)
    partner = Http("partner", partner_url, probe, probe, unique=True, auth_lines=True,
                   fresh=True)

    def fresh_tokens(scenario: Http, salt: int) -> Callable[[int], None]:
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
            if scenario is partner:
                extras.partner_pools.append((warm_n + count, time.monotonic() - began))
            log(f"  signed {warm_n + count:,} {scenario.key} request tokens in "
                f"{time.monotonic() - began:.1f} s")

        return prepare

    floor_partner.prepare = fresh_tokens(floor_partner, 3571)
    partner.prepare = fresh_tokens(partner, 0)
    scenarios += [floor_partner, partner]

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

    servers = {minimal: minimal_proc, naive: naive_proc, floor: floor_proc, gw: gateway,
               gw_b: gateway_b, gw_c: gateway_c}
    for s in scenarios:
        s.server_pid = next(proc.pid for base, proc in servers.items()
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

    if opts.only is not None:
        _print_only(scenarios, es256, sm2)
        return 0

    # -- once per run, in-process: the registry's translate rate and the audit log at scale
    log("registry: in-process translate on the warm sample registry")
    extras.translate = _inproc(pinning, ["translate", "--duration", str(opts.duration),
                                         "--warmup", str(opts.warmup)], inproc_limit)
    log(f"  {extras.translate['rate']:,.0f}/s as served, "
        f"{extras.translate['rate_unmemoised']:,.0f}/s with the answer memo off")
    scale = 20_000 if opts.quick else 1_000_000
    log(f"audit log at scale: building {scale:,} records, then proofs and verify_log")
    extras.audit_scale = _inproc(pinning, ["audit-scale", "--entries", str(scale),
                                           "--proofs", "200"], 900)
    log(f"  proof p50 {extras.audit_scale['proof_p50_ms']:.3f} ms, "
        f"verify {extras.audit_scale['verify_s']:.1f} s")

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
    children.check_alive()
    log(f"memory: filling A's tier 1 with {fill_batches * BATCH_SIZE:,} distinct verdicts "
        f"(batch endpoint)")
    extras.rss_before_kib = resident_memory_kib(gateway.pid)
    began = time.monotonic()
    extras.filled = _cluster.fill_cache(gw, auth, pool("fill"))
    extras.fill_seconds = time.monotonic() - began
    extras.entries = int(_cluster.metrics(gw, scraper).get("ecert_cache_memory_entries", 0))
    extras.rss_kib = resident_memory_kib(gateway.pid)
    log(f"  {extras.filled:,} passed in {extras.fill_seconds:.1f} s; {extras.entries:,} entries, "
        f"VmRSS {(extras.rss_kib or 0) / 1024:.0f} MiB")
    peak = peak_memory_kib(gateway.pid)
    children.check_alive()

    rows, notes = _rows(scenarios, es256=es256, sm2=sm2, audits=audits, peak_kib=peak,
                        translate_ok=translate_ok, translate_note=translate_note, opts=opts,
                        cache=cache, extras=extras, load_kind=kind)
    notes += _uniqueness(scenarios, opts.rounds)
    table = render_table(rows)
    elapsed = time.monotonic() - started
    meta = [
        f"- Date: {utc_stamp()}",
        f"- Commit: {commit}",
        f"- Machine: {machine()}",
        f"- Command: `{command}`",
        f"- Load generator: {load.describe()}{load_note}",
        f"- Pinning: {pinning.describe()}",
        (f"- Settings: {opts.rounds} round(s) × {opts.duration:g} s per scenario after "
         f"{opts.warmup:g} s warm-up, {opts.connections} connections for every HTTP scenario; "
         f"run took {elapsed:.0f} s"),
        ("- Gateway: instances A (cache on), B (tier 2 only) and C (cache off: the single and "
         "batch rows) on one data folder; A and B "
         + (f"with Redis {opts.redis_url} (flushed at the start and the end of the run)"
            if extras.redis else f"without Redis ({extras.redis_note})")
         + f"; Huzhou's library: `licences demo --count {opts.licences}`"),
    ]
    section = "\n".join([
        f"## {utc_stamp()} — {commit}{' (quick)' if opts.quick else ''}", "",
        *meta, "", table, "", *(f"- {n}" for n in notes),
    ])
    print(section, flush=True)
    if opts.write:
        prepend_results(RESULTS, section)
        log(f"prepended to {RESULTS.relative_to(ROOT)}")
    return 0


def _print_only(scenarios: Sequence[Http], es256: Sequence[dict[str, Any]],
                sm2: Sequence[dict[str, Any]] = ()) -> None:
    """A development run's rates (``--only``): medians only, no goals, nothing written."""
    rates = {s.key: statistics.median(r["requests"] * s.per_request / r["seconds"]
                                      for r in s.results) for s in scenarios}
    if es256:
        rates["es256"] = statistics.median(r["rate"] for r in es256)
    if sm2:
        rates["sm2"] = statistics.median(r["rate"] for r in sm2)
        measured = [r["openssl"] for r in sm2 if r["openssl"]]
        if measured:
            rates["openssl-sm2"] = statistics.median(measured)
    cpu = _cpu_medians(scenarios)
    for key, rate in rates.items():
        per = f"   server CPU {cpu[key]:7,.0f} µs/request" if key in cpu else ""
        print(f"{key:12} {rate:12,.0f}/s{per}", flush=True)


def _rows(scenarios: Sequence[Http], *, es256: Sequence[dict[str, Any]],
          sm2: Sequence[dict[str, Any]], audits: Sequence[dict[str, Any]],
          peak_kib: int | None, translate_ok: bool,
          translate_note: str, opts: Options, cache: bool, extras: Extras,
          load_kind: str) -> tuple[list[Row], list[str]]:
    index = {s.key: s for s in scenarios}
    by: Callable[[str], Http] = index.__getitem__
    minimal = _http_row(by("minimal"), "Baseline: minimal JSON endpoint (aiohttp)", "req/s")
    naive = _http_row(by("naive"), "Baseline: naive verify (aiohttp + PyJWT ES256, one key)",
                      "req/s")
    _compare(naive, minimal, "minimal JSON", None)
    raw = Row("Baseline: raw ES256 verify loop (cryptography, in-process, one core)",
              "verif/s", values=[r["rate"] for r in es256])
    single = _http_row(by("single"), "Gateway: single verification, unique licences "
                       "(cache off, instance C)", "req/s")
    _compare(single, naive, "naive verify", GOAL_SINGLE)
    floor_verify = _http_row(by("floor-verify"), "Floor: ES256 check + ES256 receipt + durable "
                             "audit record per licence, no other work (bench._baselines floor "
                             "/verify, same single pool)", "req/s")
    _floor(floor_verify, naive, "naive verify", GOAL_SINGLE)
    single_sm2 = _http_row(by("single-sm2"), "Gateway: single verification, SM2SM3 licences of "
                           "毕节 and 白山 (cache off, instance C; a pool cycled)", "req/s")
    _compare(single_sm2, single, "single verification (ES256)", None)
    openssl_sm2 = Row("Baseline: openssl speed sm2, verify (OpenSSL's own loop, one core)",
                      "verif/s", values=[r["openssl"] for r in sm2 if r["openssl"]])
    if not openssl_sm2.values:
        openssl_sm2.text = "not measured: no openssl command or no SM2 in it"
    sm2_primitive = Row("SM2SM3 verify through the gateway's signature path (in-process, one "
                        "core, SM3(Z_A ‖ input) + OpenSSL SM2 via ctypes)", "verif/s",
                        values=[r["rate"] for r in sm2])
    _compare(sm2_primitive, openssl_sm2, "openssl speed sm2", GOAL_SM2_PRIMITIVE)
    batch = _http_row(by("batch"),
                      f"Gateway: batch verification, {BATCH_SIZE} unique licences per request "
                      "(cache off, instance C)",
                      "licences/s", per=BATCH_SIZE)
    _compare(batch, raw, "raw ES256 loop", GOAL_BATCH)
    floor_batch = _http_row(by("floor-batch"), f"Floor: the same per licence, {BATCH_SIZE} "
                            "licences per request (/verify, same batch pool)", "licences/s",
                            per=BATCH_SIZE)
    _floor(floor_batch, raw, "raw ES256 loop", GOAL_BATCH)
    repeated = _http_row(
        by("repeated"),
        f"Gateway: repeated verification of the same {REPEATED} licences "
        + ("(tier-1 cache hits)" if cache
           else "(future tier-1 cache-hit scenario; cache not landed, so full work)"), "req/s")
    _compare(repeated, minimal, "minimal JSON", GOAL_CACHE_HIT,
             "" if cache else " (cache not landed)")
    floor_hit = _http_row(by("floor-hit"), "Floor: ES256 receipt + durable audit record, no "
                          "other work (what a cache hit must still do; /hit)", "req/s")
    _floor(floor_hit, minimal, "minimal JSON", GOAL_CACHE_HIT)
    floor_audit = _http_row(by("floor-audit"), "Floor: durable audit record only (what an "
                            "audited translation must still do; /audit)", "req/s")
    _floor(floor_audit, minimal, "minimal JSON", GOAL_TRANSLATION)
    if translate_ok:
        translation = _http_row(by("translation"), "Gateway: matter translation", "req/s")
        _compare(translation, minimal, "minimal JSON", GOAL_TRANSLATION)
    else:
        translation = Row("Gateway: matter translation", text=translate_note,
                          goal=GOAL_TRANSLATION, baseline="minimal JSON", status="not measured")
    partner = _http_row(by("partner"),
                        f"Gateway: partner query by identifier (Shanghai, a fresh signed request "
                        f"token per request, library of {opts.licences:,} licences)", "req/s")
    _compare(partner, naive, "naive verify", GOAL_PARTNER)
    floor_partner = _http_row(by("floor-partner"), "Floor: request-token ES256 check + jti "
                              "spent in the replay cache + one licence-store read + ES256 "
                              "licence signature + durable audit record, no other work "
                              "(/partner, a fresh pool)", "req/s")
    _floor(floor_partner, naive, "naive verify", GOAL_PARTNER)
    tier2_label = (f"Tier-2 cache hits (second instance): B re-verifies {opts.tier2:,} "
                   f"licences warmed on A, B's tier 1 holds 1 entry")
    if "tier2" in index:
        tier2 = _http_row(by("tier2"), tier2_label, "req/s")
        _compare(tier2, single, "single verification (uncached)", GOAL_TIER2)
    else:
        tier2 = Row(tier2_label, text=f"not measured: no Redis ({extras.redis_note})",
                    baseline="single verification (uncached)", goal=GOAL_TIER2,
                    status="not measured")
    propagation = _propagation_row(extras, opts)
    memory_now = _memory_row(extras, opts)
    appends = Row(f"Audit appends (AuditService batching writer, SQLite FULL, "
                  f"{opts.appenders} concurrent appenders, in-process)", "appends/s",
                  values=[a["rate"] for a in audits])
    sizes = [a["tree_size"] for a in audits]
    proof = Row(f"Audit inclusion proof via AuditService.entry at tree size "
                f"~{int(statistics.median(sizes)):,} (store read + proof)", "ms",
                values=[a["proof_p50_ms"] for a in audits],
                p50_ms=[a["proof_p50_ms"] for a in audits],
                p99_ms=[a["proof_p99_ms"] for a in audits])
    memory = Row("Gateway peak memory (VmHWM of gateway A, whole run)",
                 text="unknown" if peak_kib is None else f"{peak_kib / 1024:.0f} MiB")
    rows = [minimal, naive, raw, single, floor_verify, single_sm2, openssl_sm2, sm2_primitive,
            batch, floor_batch, repeated, floor_hit,
            translation, floor_audit, partner, floor_partner, tier2,
            propagation, memory_now, appends, proof, *_scale_rows(extras), memory]
    notes = [
        ("Every gateway request does all its work: every check of the licence, the status "
         "list (fetched from the mock partner and cached by its ttl), a signed receipt and a "
         "durable audit record (SQLite, synchronous=FULL) before the answer."),
        ("Median over rounds; Rounds lists each round; p50/p99 are medians of each round's "
         "percentiles; Ratio = median ÷ median of the baseline measured in this run with the "
         "same load generator."),
        "The batch row counts licences/s (requests/s × 100); its p50/p99 are per batch request.",
        *_cpu_note(scenarios),
        *_extra_notes(extras, opts, load_kind),
    ]
    return rows, notes


def _cpu_medians(scenarios: Sequence[Http]) -> dict[str, float]:
    """Server CPU µs per request of each scenario measured in every round (median)."""
    return {s.key: statistics.median(r["cpu_us"] for r in s.results)
            for s in scenarios if s.results and all("cpu_us" in r for r in s.results)}


def _cpu_note(scenarios: Sequence[Http]) -> list[str]:
    """Server CPU per request of each HTTP scenario (medians over rounds), when measured."""
    parts = [f"{key} {us:,.0f}" for key, us in _cpu_medians(scenarios).items()]
    if not parts:
        return []
    return [("Server CPU per request, µs (user + system time of the serving process, all its "
             "threads, over each measurement ÷ its requests; median over rounds; less "
             "sensitive than the rates to other tenants of the machine): "
             + ", ".join(parts) + ".")]


def _scale_rows(extras: Extras) -> list[Row]:
    """Registry translate rate and the audit log at scale (measured once per run)."""
    rows: list[Row] = []
    if extras.translate is not None:
        t = extras.translate
        for key, how in (("rate", "answers memoised, as the gateway serves"),
                         ("rate_unmemoised", "answer memo off: every call walks the maps")):
            row = Row(f"Registry: in-process translate, warm ({how}; "
                      f"{t['distinct_calls']} distinct calls cycled, one core)", "lookups/s",
                      values=[t[key]], goal_text=f"≥ {GOAL_TRANSLATE_INPROC:,.0f}/s")
            row.status = "met" if t[key] >= GOAL_TRANSLATE_INPROC else "missed"
            rows.append(row)
    if extras.audit_scale is not None:
        a = extras.audit_scale
        n = a["entries"]
        proof = Row(f"Audit inclusion proof at {n:,} entries (AuditService.entry: store read "
                    f"+ proof)", "ms", values=[a["proof_p50_ms"]], p50_ms=[a["proof_p50_ms"]],
                    p99_ms=[a["proof_p99_ms"]], goal_text="< 1 ms")
        proof.status = "met" if a["proof_p99_ms"] < 1.0 else "missed"
        verify = Row(f"audit verify of {n:,} entries (every leaf rehashed, every checkpoint "
                     f"checked; log {a['db_mb']:.0f} MB; service start-up "
                     f"{a['startup_s']:.1f} s)", "s", values=[a["verify_s"]],
                     goal_text="< 60 s")
        verify.status = "met" if a["verify_s"] < 60.0 and a["verified"] == n else "missed"
        rows += [proof, verify]
    return rows


def _propagation_row(extras: Extras, opts: Options) -> Row:
    label = (f"Trust-list propagation to a second instance ({opts.changes} changes proposed "
             f"and approved through A's admin API; approve answer → B's /readyz serves the "
             f"version{'' if extras.redis else '; no Redis: store polling only'})")
    result = extras.propagation
    row = Row(label, goal_text=f"< {GOAL_PROPAGATION_MS:.0f} ms (worst)")
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
        row.status = "missed"
    return row


def _memory_row(extras: Extras, opts: Options) -> Row:
    label = (f"Memory with {opts.verdicts:,} cached verdicts (VmRSS of gateway A after "
             f"filling its tier 1 through the batch endpoint)")
    row = Row(label, goal_text=f"< {GOAL_MEMORY_MB:.0f} MB")
    if extras.rss_kib is None or extras.entries is None:
        row.text, row.status = "unknown", "not measured"
        return row
    mb = extras.rss_kib * 1024 / 1e6
    row.text = (f"{mb:.0f} MB ({extras.rss_kib / 1024:.0f} MiB), "
                f"{extras.entries:,} entries")
    row.status = "met" if mb < GOAL_MEMORY_MB else "missed"
    if extras.entries < opts.verdicts:
        row.status += f" (only {extras.entries:,} of {opts.verdicts:,} entries held)"
    return row


def _extra_notes(extras: Extras, opts: Options, load_kind: str) -> list[str]:
    notes = []
    signed = ", ".join(f"{n:,} in {sec:.1f} s" for n, sec in extras.partner_pools)
    header = ("wrk: the Lua script splits each line and builds a per-request header table for "
              "`wrk.format`" if load_kind == "wrk"
              else "python generator: `--auth-lines`")
    notes.append(
        f"Partner query: `POST /v1/partner/licences/query` by identifier as Shanghai (310000), "
        f"matter {_cluster.PARTNER_MATTER}, cycling the {extras.identifiers:,} demo licences "
        f"valid today (each answer signs the licence: cn_status 0). Every request carries its "
        f"own `ecert-request+jwt` (unique jti, body_sha256 of that exact body, lifetime 300 s), "
        f"signed by the mock federation process before the timed window, per round, just "
        f"before that round ({signed}); pool lines are `<Authorization>\\t<body>` "
        f"({header}). Partner rate limit raised to {_cluster.PARTNER_RATE:,}/s, burst "
        f"{_cluster.PARTNER_RATE:,} (`[partner.rate_limits]` via `serve --config`)"
        + ("; jti replay cache in Redis." if extras.redis else "; jti replay cache in process."))
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
            f"{extras.filled:,} distinct licences passed through A's batch endpoint in "
            f"{extras.fill_seconds:.1f} s; VmRSS of the whole process read from /proc right "
            f"after{before}; entries from `ecert_cache_memory_entries` (tier 1 is bounded by "
            f"cache_max_entries, default 100,000). MB = 10^6 bytes.")
    return notes
