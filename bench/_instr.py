"""``python -m bench._instr``: instructions per request, counted by callgrind (development).

The HTTP rows of ``make bench`` measure time, on a machine shared with other
tenants: the same code read 338 to 571 µs a request in 20 runs of one evening
(``docs/performance.md``), so a change worth a few percent cannot be told from
the noise. Valgrind's callgrind counts the instructions a process executes
instead, and that count does not depend on what else the machine runs: the same
binaries, inputs and work give the same count within about one percent (the single
row: 2,241,514 and 2,256,453 instructions a request in two runs of one commit).

For each endpoint asked (``--rows``), the server runs under ``valgrind
--tool=callgrind --instr-atstart=no`` (about fifty times slower than without),
is warmed up with counting off, is counted idle for ``IDLE_S`` (its periodic
work, whose rate times the requests' window is taken out: valgrind stretches
that window about fiftyfold), then answers ``--requests`` requests (32 in
flight) with counting on (``callgrind_control -i on|off``), and is stopped. The
count covers every thread of the server (the audit writer's commits included)
but not the kernel's work in system calls, so it is a companion to the bench's
CPU per request, not a replacement: instructions differ in cost (an ES256
verification runs several instructions a cycle, Python's interpreter far
fewer).

Rows: ``minimal``, ``bare`` and ``naive`` (the bench's baselines), ``single`` (unique
licences, cache off), ``hit`` (four licences over and over, cache on),
``batch`` (100 unique licences a request, cache off; counted per licence),
``translation``. The mock federation and the licences are the bench's own
(``bench._mockserver``, one seed), so two runs compare; the gateway rows share
one data folder in turn, so give two runs the same ``--rows``. One JSON line
out, and a line a row on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson

from bench._inproc import translate_calls
from bench._procs import HOST, Children, Pinning, free_port, python, run_bounded

ROWS: Final = ("minimal", "bare", "naive", "single", "hit", "batch", "translation")
BATCH_SIZE: Final = 100
IN_FLIGHT: Final = 32
IDLE_S: Final = 10.0
"""Seconds of the idle window counted before the requests."""


@dataclass(frozen=True)
class Row:
    """One endpoint: how its server starts, where requests go, what they carry."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready: str
    url: str
    bodies: list[bytes]
    warm: list[bytes]
    per_request: int = 1
    auth: str | None = None


def parse_total(text: str) -> int:
    """The instruction total of a callgrind output file: its ``totals:`` line (with
    counting switched on and off while running, the ``summary:`` line says 0)."""
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name == "totals":
            return int(value.split()[0])
    raise ValueError("no totals line in the callgrind output")


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().split(b"\n") if line.strip()]


async def _send(url: str, bodies: Sequence[bytes], auth: str | None) -> None:
    """Every body POSTed once, ``IN_FLIGHT`` at a time; any answer but 200 stops the run."""
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = auth
    queue = list(reversed(bodies))
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one() -> None:
            while queue:
                body = queue.pop()
                async with session.post(url, data=body, headers=headers) as response:
                    text = await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url} answered {response.status}: {text[:300]!r}")

        await asyncio.gather(*(one() for _ in range(IN_FLIGHT)))


def _control(*args: str) -> None:
    done = subprocess.run(["callgrind_control", *args], capture_output=True, text=True,
                          timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"callgrind_control {' '.join(args)}: {done.stderr or done.stdout}")


@dataclass(frozen=True)
class Counted:
    """What one row's server executed: the requests' window and an idle one before it."""

    requests: int
    total: int
    window_s: float
    idle_total: int
    idle_s: float

    @property
    def idle_per_s(self) -> float:
        """Instructions a second of the server's own periodic work (timers, pollers)."""
        return self.idle_total / self.idle_s if self.idle_s > 0 else 0.0

    @property
    def per_request(self) -> float:
        """The window's instructions less the periodic work of as long, per request."""
        return max(0.0, self.total - self.idle_per_s * self.window_s) / self.requests


def count(row: Row, requests: int, work: Path, children: Children) -> Counted:
    """Instructions the server of ``row`` executes for ``requests`` requests, and in an
    idle window of ``IDLE_S`` before them (valgrind stretches wall time about fiftyfold,
    so the server's periodic work weighs that much more per request than when it serves
    at full speed: it is measured apart and taken out)."""
    out = work / f"callgrind.{row.name}"
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={out}", *row.argv]
    pid = str(children.start(row.name, argv, env=row.env, role="free").pid)
    try:
        children.wait_http(row.name, row.ready, timeout=600)
        asyncio.run(_send(row.url, row.warm, row.auth))
        bodies = [row.bodies[i % len(row.bodies)] for i in range(requests)]
        _control("-i", "on", pid)
        began = time.monotonic()
        time.sleep(IDLE_S)
        _control("-d", pid)  # the idle window to <out>.1; counting goes on from zero
        idle_s = time.monotonic() - began
        began = time.monotonic()
        asyncio.run(_send(row.url, bodies, row.auth))
        window_s = time.monotonic() - began
        _control("-i", "off", pid)
    finally:
        children.stop(row.name, grace=300)
    idle = Path(f"{out}.1")
    return Counted(requests=requests, total=parse_total(out.read_text(errors="replace")),
                   window_s=window_s, idle_total=parse_total(idle.read_text(errors="replace")),
                   idle_s=idle_s)


def _rows(wanted: Sequence[str], pools: Path, data: Path, key: str, requests: int,
          *, http_lane: bool = True) -> list[Row]:
    py = python()
    serve = [py, "-m", "gateway", "serve", "--data-dir", str(data),
             "--trust-list", str(pools / "trust-list.json")]
    auth = f"Bearer {key}"
    made: list[Row] = []
    for name in wanted:
        port = free_port()
        base = f"http://{HOST}:{port}"
        if name in ("minimal", "bare", "naive"):
            jwk = ["--jwk", str(pools / "naive-jwk.json")] if name == "naive" else []
            made.append(Row(name, [py, "-m", "bench._baselines", name, "--port", str(port),
                                   *jwk], {}, f"{base}/", f"{base}/", _lines(pools / "naive.jsonl"),
                            _lines(pools / "naive-warm.jsonl")[:200]))
            continue
        gateway = [*serve, "--listen", f"{HOST}:{port}"]
        # http_lane off: every request aiohttp's way (docs/operators.md, "The lane").
        on = {} if http_lane else {"ECERT_HTTP_LANE": "0"}
        off = {**on, "ECERT_CACHE_ENABLED": "0"}
        if name == "single":
            made.append(Row(name, gateway, off, f"{base}/readyz", f"{base}/v1/verifications",
                            _lines(pools / "single.jsonl")[:requests],
                            _lines(pools / "single-warm.jsonl")[:200], auth=auth))
        elif name == "hit":
            repeated = _lines(pools / "repeated.jsonl")
            made.append(Row(name, gateway, on, f"{base}/readyz", f"{base}/v1/verifications",
                            repeated, repeated * 50, auth=auth))
        elif name == "batch":
            made.append(Row(name, gateway, off, f"{base}/readyz",
                            f"{base}/v1/verifications/batch",
                            _lines(pools / "batch.jsonl"), _lines(pools / "batch-warm.jsonl")[:2],
                            per_request=BATCH_SIZE, auth=auth))
        else:  # the in-process rows' distinct translations, cycled (as the bench's row)
            calls = [orjson.dumps({"source": {"region": source, "code": code},
                                   "target_region": target})
                     for source, code, target in translate_calls()[1]]
            made.append(Row(name, gateway, on, f"{base}/readyz",
                            f"{base}/v1/matters/translate", calls, calls, auth=auth))
    return made


def _cli(args: Sequence[str]) -> str:
    done = run_bounded([python(), "-m", "gateway", *args], 300)
    if done.returncode != 0:
        raise RuntimeError(f"gateway {args[0]} failed: {done.stderr[-800:]}")
    return done.stdout.strip().splitlines()[-1]


def run(wanted: Sequence[str], requests: int, seed: int, work: Path, *,
        http_lane: bool = True) -> dict[str, Any]:
    """Count every row asked; instructions per request (per licence for batch).
    ``http_lane`` off: the gateway rows are served with ``ECERT_HTTP_LANE=0``."""
    pools = work / "pools"
    batch_requests = max(1, requests // BATCH_SIZE)
    children = Children(Pinning(), work)  # not pinned: instructions do not mind
    try:
        children.start("mockserver", [
            python(), "-m", "bench._mockserver", "--out", str(pools), "--seed", str(seed),
            "--single", str(requests), "--batch", str(batch_requests), "--batch-size",
            str(BATCH_SIZE), "--naive", str(requests), "--warm", "400", "--repeated", "4"],
            role="free")
        children.wait_file("mockserver", pools / "manifest.json", 900)
        data = work / "gateway"
        _cli(["init", "--data-dir", str(data)])
        key = _cli(["clients", "add", "instr", "--data-dir", str(data)])
        per: dict[str, float] = {}
        idle: dict[str, float] = {}
        for row in _rows(wanted, pools, data, key, requests, http_lane=http_lane):
            n = batch_requests if row.per_request > 1 else requests
            counted = count(row, n, work, children)
            per[row.name] = counted.per_request / row.per_request
            idle[row.name] = counted.idle_per_s
            print(f"{row.name}: {per[row.name]:,.0f} instructions per "
                  f"{'licence' if row.per_request > 1 else 'request'} (the window: "
                  f"{counted.total:,} in {counted.window_s:.0f} s; idle "
                  f"{counted.idle_per_s:,.0f} a second, taken out)", file=sys.stderr)
    finally:
        children.stop_all()
    result: dict[str, Any] = {"requests": requests, "seed": seed,
                              "instructions": {k: round(v) for k, v in per.items()},
                              "idle_per_s": {k: round(v) for k, v in idle.items()}}
    for name in ("single", "hit", "batch"):
        if name in per and "naive" in per:
            result[f"{name}_vs_naive"] = round(per[name] / per["naive"], 3)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Count the rows asked and print one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m bench._instr", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="naive,single,hit",
                        help=f"comma-separated, of {', '.join(ROWS)} (default naive,single,hit)")
    parser.add_argument("--requests", type=int, default=2000,
                        help="requests counted per row (batch: this many licences)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the mock federation")
    parser.add_argument("--keep", type=Path, help="keep the work folder (callgrind files) here")
    parser.add_argument("--http-lane", choices=["on", "off"], default="on",
                        help="the gateway rows' http_lane setting (A/B of the lane)")
    args = parser.parse_args(argv)
    wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
    if unknown := set(wanted) - set(ROWS):
        parser.error(f"--rows: unknown {sorted(unknown)}")
    if args.requests < BATCH_SIZE:
        parser.error(f"--requests must be at least {BATCH_SIZE}")
    missing = [t for t in ("valgrind", "callgrind_control") if shutil.which(t) is None]
    if missing:
        print(f"needs {' and '.join(missing)} (Debian: apt-get install valgrind)",
              file=sys.stderr)
        return 2
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = run(wanted, args.requests, args.seed, args.keep,
                     http_lane=args.http_lane == "on")
    else:
        with tempfile.TemporaryDirectory(prefix="bench-instr-") as tmp:
            result = run(wanted, args.requests, args.seed, Path(tmp),
                         http_lane=args.http_lane == "on")
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
