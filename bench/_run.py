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

from bench import _wrk
from bench._procs import (
    HOST,
    ROOT,
    Children,
    Pinning,
    free_port,
    http_post,
    peak_memory_kib,
    python,
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
GOAL_SINGLE: Final = 0.8
GOAL_BATCH: Final = 0.45
GOAL_TRANSLATION: Final = 0.5
GOAL_CACHE_HIT: Final = 0.4
# Upper guesses of throughput on one core, to size the pools of unique licences so that no
# licence is sent twice in a run (checked afterwards and reported when it happened anyway).
EXPECTED_SINGLE_PER_S: Final = 3000
EXPECTED_BATCH_LICENCES_PER_S: Final = 4500


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
        args = parser.parse_args(argv)
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
            done = run_bounded(argv, limit)
            if done.returncode != 0:
                raise RuntimeError(f"load generator failed: {done.stderr[-1000:]}")
            result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
            return result
        assert self.wrk is not None
        warm = _wrk.command(self.wrk, self.script, scenario.url, scenario.warm, offset=0,
                            connections=opts.connections, duration=opts.warmup,
                            headers=scenario.headers)
        run_bounded([*pin, *warm], limit)
        argv = _wrk.command(self.wrk, self.script, scenario.url, scenario.pool, offset=offset,
                            connections=opts.connections, duration=opts.duration,
                            headers=scenario.headers)
        done = run_bounded([*pin, *argv], limit)
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed: {done.stderr[-1000:]}")
        return _wrk.parse(done.stdout)


def _inproc(pinning: Pinning, args: Sequence[str], limit: float) -> dict[str, Any]:
    done = run_bounded([*pinning.prefix("server"), python(), "-m", "bench._inproc", *args],
                       limit)
    if done.returncode != 0:
        raise RuntimeError(f"in-process measurement failed: {done.stderr[-1500:]}")
    result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
    return result


def _sizes(opts: Options) -> dict[str, int]:
    if opts.quick:
        return {"single": 600, "batch": 6, "naive": 300, "warm": 200}
    seconds = opts.duration * opts.rounds
    return {
        "single": math.ceil(seconds * EXPECTED_SINGLE_PER_S),
        "batch": math.ceil(seconds * EXPECTED_BATCH_LICENCES_PER_S / BATCH_SIZE),
        "naive": 5000,
        "warm": max(1000, math.ceil(opts.warmup * EXPECTED_SINGLE_PER_S)),
    }


def _sanity(gateway: str, headers: dict[str, str], work: Path, naive: str, minimal: str) -> None:
    """Every region's licence passes with a status list, a batch passes, baselines answer."""
    for line in (work / "samples.jsonl").read_bytes().splitlines():
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


def _uniqueness(scenarios: Sequence[Http], rounds: int) -> list[str]:
    notes = []
    for s in scenarios:
        if not s.unique:
            continue
        per_round = s.pool_lines // rounds
        sent = max((r["requests"] for r in s.results), default=0)
        if sent > per_round:
            notes.append(f"{s.key}: up to {sent:,} requests in a round but {per_round:,} "
                         f"unique bodies per round: licences were sent more than once "
                         f"(pool too small for this machine's speed).")
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
            try:
                return _run(opts, command, work, children)
            finally:
                children.stop_all()
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


def _run(opts: Options, command: str, work: Path, children: Children) -> int:
    started = time.monotonic()
    commit = git_commit()  # at the start: the tree measured, even if HEAD moves during the run
    pinning = children.pinning
    log(f"pinning: {pinning.describe()}")
    kind = opts.load or ("python" if opts.quick else "wrk")
    wrk_path = None
    load_note = ""
    if kind == "wrk":
        wrk_path = _wrk.ensure_wrk(log)
        if wrk_path is None:
            kind = "python"
            load_note = " (wrk was asked for but is unavailable: fell back to the python generator)"
    sizes = _sizes(opts)

    # -- the mock federation: trust list first, pools of unique licences, then it serves
    pools = work / "pools"
    log(f"mock federation: issuing {sizes['single']:,} single, {sizes['batch']:,}×{BATCH_SIZE} "
        f"batch and {sizes['naive']:,} naive-region licences (plus warm-up pools)")
    children.start("mockserver", [
        python(), "-m", "bench._mockserver", "--out", str(pools), "--seed", str(opts.seed),
        "--single", str(sizes["single"]), "--batch", str(sizes["batch"]),
        "--batch-size", str(BATCH_SIZE), "--naive", str(sizes["naive"]),
        "--warm", str(sizes["warm"]), "--repeated", str(REPEATED),
    ], role="load")
    children.wait_file("mockserver", pools / "trust-list.json", 60)

    # -- the gateway, with a client key made by the CLI, and the baselines
    data = work / "gateway"
    made = run_bounded([python(), "-m", "gateway", "clients", "add", "bench", "--data-dir",
                        str(data)], 120)
    if made.returncode != 0:
        raise RuntimeError(f"clients add failed: {made.stderr[-800:]}")
    key = made.stdout.strip().splitlines()[-1]
    auth = {"Authorization": f"Bearer {key}"}
    gw_port, minimal_port, naive_port = free_port(), free_port(), free_port()
    gateway = children.start("gateway", [
        python(), "-m", "gateway", "serve", "--listen", f"{HOST}:{gw_port}",
        "--data-dir", str(data), "--trust-list", str(pools / "trust-list.json"),
    ])
    children.start("minimal", [python(), "-m", "bench._baselines", "minimal",
                               "--port", str(minimal_port)])
    children.wait_file("mockserver", pools / "naive-jwk.json", 300)
    children.start("naive", [python(), "-m", "bench._baselines", "naive",
                             "--port", str(naive_port), "--jwk", str(pools / "naive-jwk.json")])
    gw = f"http://{HOST}:{gw_port}"
    minimal = f"http://{HOST}:{minimal_port}/"
    naive = f"http://{HOST}:{naive_port}/"
    children.wait_http("gateway", f"{gw}/readyz")
    children.wait_http("minimal", minimal)
    children.wait_http("naive", naive)
    children.wait_file("mockserver", pools / "manifest.json", 900)
    manifest = orjson.loads((pools / "manifest.json").read_bytes())
    counts: dict[str, int] = manifest["counts"]
    log(f"pools ready in {time.monotonic() - started:.0f} s: {counts}")
    _sanity(gw, auth, pools, naive, minimal)
    translate_ok, translate_note = _probe_translation(gw, auth)
    log(f"translation: {translate_note}")
    cache = _probe_cache(gw, auth, pools)
    log(f"verdict cache: {'on (a repeated licence is answered cached)' if cache else 'none'}")

    def pool(name: str) -> Path:
        return pools / f"{name}.jsonl"

    scenarios = [
        Http("minimal", minimal, pool("naive"), pool("naive-warm")),
        Http("naive", naive, pool("naive"), pool("naive-warm")),
        Http("single", f"{gw}/v1/verifications", pool("single"), pool("single-warm"), auth,
             unique=True),
        Http("batch", f"{gw}/v1/verifications/batch", pool("batch"), pool("batch-warm"), auth,
             per_request=BATCH_SIZE, unique=True),
        Http("repeated", f"{gw}/v1/verifications", pool("repeated"), pool("repeated"), auth),
    ]
    if translate_ok:
        body = work / "translate.jsonl"
        body.write_bytes(orjson.dumps(TRANSLATE_BODY) + b"\n")
        scenarios.append(Http("translation", f"{gw}/v1/matters/translate", body, body, auth))
    for s in scenarios:
        s.pool_lines = counts.get(s.pool.stem, 1)

    load = LoadGenerator(kind, wrk_path, pinning, work, opts)
    log(f"load generator: {load.describe()}{load_note}")
    es256: list[dict[str, Any]] = []
    audits: list[dict[str, Any]] = []
    inproc_limit = opts.duration + opts.warmup + 180
    for round_no in range(opts.rounds):
        for s in scenarios:
            children.check_alive()
            offset = round_no * (s.pool_lines // opts.rounds)
            log(f"round {round_no + 1}/{opts.rounds}: {s.key} "
                f"({opts.warmup:g} s warm-up + {opts.duration:g} s)")
            s.results.append(load.measure(s, offset))
            r = s.results[-1]
            log(f"  {r['requests'] * s.per_request / r['seconds']:,.0f}/s, "
                f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, errors {r['errors']}")
        log(f"round {round_no + 1}/{opts.rounds}: raw ES256 loop (in-process, one core)")
        es256.append(_inproc(pinning, [
            "es256", "--pool", str(pool("naive")), "--jwk", str(pools / "naive-jwk.json"),
            "--duration", str(opts.duration), "--warmup", str(opts.warmup)], inproc_limit))
        log(f"  {es256[-1]['rate']:,.0f} verifications/s")
        log(f"round {round_no + 1}/{opts.rounds}: audit appends "
            f"({opts.appenders} concurrent appenders, in-process)")
        audits.append(_inproc(pinning, [
            "audit", "--appenders", str(opts.appenders), "--duration", str(opts.duration),
            "--warmup", str(opts.warmup), "--proofs", "100" if opts.quick else "500"],
            inproc_limit))
        log(f"  {audits[-1]['rate']:,.0f} appends/s, proof p50 {audits[-1]['proof_p50_ms']:.3f} ms"
            f" at {audits[-1]['tree_size']:,} entries")
    peak = peak_memory_kib(gateway.pid)
    children.check_alive()

    rows, notes = _rows(scenarios, es256=es256, audits=audits, peak_kib=peak,
                        translate_ok=translate_ok, translate_note=translate_note, opts=opts,
                        cache=cache)
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


def _rows(scenarios: Sequence[Http], *, es256: Sequence[dict[str, Any]],
          audits: Sequence[dict[str, Any]], peak_kib: int | None, translate_ok: bool,
          translate_note: str, opts: Options, cache: bool) -> tuple[list[Row], list[str]]:
    by: Callable[[str], Http] = {s.key: s for s in scenarios}.__getitem__
    minimal = _http_row(by("minimal"), "Baseline: minimal JSON endpoint (aiohttp)", "req/s")
    naive = _http_row(by("naive"), "Baseline: naive verify (aiohttp + PyJWT ES256, one key)",
                      "req/s")
    _compare(naive, minimal, "minimal JSON", None)
    raw = Row("Baseline: raw ES256 verify loop (cryptography, in-process, one core)",
              "verif/s", values=[r["rate"] for r in es256])
    single = _http_row(by("single"), "Gateway: single verification, unique licences "
                       + ("(cache on, every lookup a miss)" if cache
                          else "(cache off: not landed)"), "req/s")
    _compare(single, naive, "naive verify", GOAL_SINGLE)
    batch = _http_row(by("batch"),
                      f"Gateway: batch verification, {BATCH_SIZE} unique licences per request",
                      "licences/s", per=BATCH_SIZE)
    _compare(batch, raw, "raw ES256 loop", GOAL_BATCH)
    repeated = _http_row(
        by("repeated"),
        f"Gateway: repeated verification of the same {REPEATED} licences "
        + ("(tier-1 cache hits)" if cache
           else "(future tier-1 cache-hit scenario; cache not landed, so full work)"), "req/s")
    _compare(repeated, minimal, "minimal JSON", GOAL_CACHE_HIT,
             "" if cache else " (cache not landed)")
    if translate_ok:
        translation = _http_row(by("translation"), "Gateway: matter translation", "req/s")
        _compare(translation, minimal, "minimal JSON", GOAL_TRANSLATION)
    else:
        translation = Row("Gateway: matter translation", text=translate_note,
                          goal=GOAL_TRANSLATION, baseline="minimal JSON", status="not measured")
    partner = Row("Gateway: partner query", text="not landed", status="not measured")
    appends = Row(f"Audit appends (AuditService batching writer, SQLite FULL, "
                  f"{opts.appenders} concurrent appenders, in-process)", "appends/s",
                  values=[a["rate"] for a in audits])
    sizes = [a["tree_size"] for a in audits]
    proof = Row(f"Audit inclusion proof via AuditService.entry at tree size "
                f"~{int(statistics.median(sizes)):,} (store read + proof)", "ms",
                values=[a["proof_p50_ms"] for a in audits],
                p50_ms=[a["proof_p50_ms"] for a in audits],
                p99_ms=[a["proof_p99_ms"] for a in audits])
    memory = Row("Gateway peak memory (VmHWM of the gateway process, whole run)",
                 text="unknown" if peak_kib is None else f"{peak_kib / 1024:.0f} MiB")
    rows = [minimal, naive, raw, single, batch, repeated, translation, partner, appends, proof,
            memory]
    notes = [
        ("Every gateway request does all its work: every check of the licence, the status "
         "list (fetched from the mock partner and cached by its ttl), a signed receipt and a "
         "durable audit record (SQLite, synchronous=FULL) before the answer."),
        ("Median over rounds; Rounds lists each round; p50/p99 are medians of each round's "
         "percentiles; Ratio = median ÷ median of the baseline measured in this run with the "
         "same load generator."),
        "The batch row counts licences/s (requests/s × 100); its p50/p99 are per batch request.",
    ]
    return rows, notes
