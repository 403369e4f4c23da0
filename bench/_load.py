"""``python -m bench._load``: the project's own HTTP load generator (aiohttp client).

The fallback when ``wrk`` is not available, and the default of ``--quick``.
It runs in its own process: ``--connections`` workers share one keep-alive
connection pool of that size, each POSTs the next body of the pool file (one
JSON document a line, cycled from ``--offset``) as soon as its previous answer
has been read, for ``--duration`` seconds after ``--warmup`` seconds on the
warm-up file. Prints one JSON line: requests, seconds, errors, p50 and p99
latency in milliseconds (per request, measured around the whole exchange).

With ``--auth-lines`` every line is ``<Authorization value>\t<body>``: each
request carries its own header (the partner queries' one-use request tokens).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson


@dataclass(slots=True)
class _Tally:
    latencies: list[float]
    errors: int = 0
    statuses: dict[int, int] | None = None


def read_bodies(path: Path) -> list[bytes]:
    """The non-empty lines of a pool file."""
    return [line for line in path.read_bytes().split(b"\n") if line.strip()]


def split_auth(lines: list[bytes]) -> list[tuple[bytes, str | None]]:
    """``<Authorization value>\t<body>`` lines as (body, header value) pairs."""
    pairs: list[tuple[bytes, str | None]] = []
    for line in lines:
        auth, sep, body = line.partition(b"\t")
        if not sep:
            raise ValueError("an --auth-lines pool line has no tab")
        pairs.append((body, auth.decode("ascii")))
    return pairs


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, round(fraction * len(sorted_values) + 0.5))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def _drive(
    session: aiohttp.ClientSession, url: str, bodies: list[tuple[bytes, str | None]], *,
    offset: int, connections: int, duration: float, headers: dict[str, str],
) -> tuple[_Tally, float]:
    tally = _Tally(latencies=[], statuses={})
    position = offset
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal position
        assert tally.statuses is not None
        while time.perf_counter() < deadline:
            body, auth = bodies[position % len(bodies)]
            position += 1
            sent = headers if auth is None else {**headers, "Authorization": auth}
            start = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=sent) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                tally.errors += 1
                await asyncio.sleep(0.01)
                continue
            tally.latencies.append(time.perf_counter() - start)
            tally.statuses[status] = tally.statuses.get(status, 0) + 1
            if status != 200:
                tally.errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return tally, time.perf_counter() - started


async def run(
    url: str, bodies: list[bytes], *, connections: int, duration: float, offset: int = 0,
    warm_bodies: list[bytes] | None = None, warmup: float = 0.0,
    headers: dict[str, str] | None = None, auth_lines: bool = False,
) -> dict[str, Any]:
    """Warm up, then measure; return the summary as plain JSON values."""

    def pairs(lines: list[bytes]) -> list[tuple[bytes, str | None]]:
        return split_auth(lines) if auth_lines else [(line, None) for line in lines]

    sent = {"Content-Type": "application/json", **(headers or {})}
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if warmup > 0:
            await _drive(session, url, pairs(warm_bodies or bodies), offset=0,
                         connections=connections, duration=warmup, headers=sent)
        tally, seconds = await _drive(session, url, pairs(bodies), offset=offset,
                                      connections=connections, duration=duration, headers=sent)
    ordered = sorted(tally.latencies)
    return {
        "requests": len(ordered),
        "seconds": seconds,
        "errors": tally.errors,
        "statuses": {str(k): v for k, v in sorted((tally.statuses or {}).items())},
        "p50_ms": percentile(ordered, 0.50) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run one measurement and print its JSON summary."""
    parser = argparse.ArgumentParser(prog="python -m bench._load", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", type=Path, required=True)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--warm-bodies", type=Path)
    parser.add_argument("--warmup", type=float, default=0.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--header", action="append", default=[], help="NAME: VALUE")
    parser.add_argument("--auth-lines", action="store_true",
                        help="each line is '<Authorization value>\\t<body>'")
    args = parser.parse_args(argv)
    headers = dict(h.split(": ", 1) for h in args.header)
    if not args.url.startswith("http://127.0.0.1:"):
        parser.error("the load generator only talks to 127.0.0.1")
    result = asyncio.run(run(
        args.url, read_bodies(args.bodies), connections=args.connections,
        duration=args.duration, offset=args.offset,
        warm_bodies=read_bodies(args.warm_bodies) if args.warm_bodies else None,
        warmup=args.warmup, headers=headers, auth_lines=args.auth_lines,
    ))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
