"""``python -m bench._mockserver``: the mock federation process of a benchmark run.

Builds ``Federation.standard(seed=...)``, reserves a port per region, issues
unique licences (each with a status-list entry, so the gateway really fetches
and caches status lists) and writes into ``--out``:

* ``trust-list.json``: the federation's trust list;
* ``<pool>.jsonl``: request bodies, one JSON document a line (see ``POOLS``);
* ``naive-jwk.json``: the public JWK of the naive region's licence key;
* ``manifest.json`` last, once every region is served: the line counts.

Then serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import socket
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import orjson

from mocks import BUSINESS_LICENCE, CONSTRUCTION_WORKER, Federation, MockRegion, serve_federation
from mocks import reserve_sockets as reserve

USE_CAUSE: Final = "办理跨省通办事项（基准测试）"
TYPES: Final = (CONSTRUCTION_WORKER, BUSINESS_LICENCE)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench._mockserver", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder for the files")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--single", type=int, required=True, help="licences, one per body")
    parser.add_argument("--batch", type=int, required=True, help="batch bodies")
    parser.add_argument("--batch-size", type=int, default=100, help="licences per batch body")
    parser.add_argument("--naive", type=int, required=True, help="bodies of the naive region")
    parser.add_argument("--warm", type=int, required=True, help="bodies of each warm-up pool")
    parser.add_argument("--repeated", type=int, default=4, help="licences used over and over")
    parser.add_argument("--naive-region", default="310000")
    return parser


def _item(token: str) -> dict[str, Any]:
    return {"credential": token, "use_cause": USE_CAUSE}


def _spread(regions: Sequence[MockRegion]) -> Iterator[str]:
    """Unique licence tokens, round-robin over the regions and the licence types."""
    for n in itertools.count():
        region = regions[n % len(regions)]
        type_code = TYPES[(n // len(regions)) % len(TYPES)]
        yield region.issue(type_code=type_code).token


def _write_lines(path: Path, docs: Iterator[Any] | list[Any]) -> int:
    count = 0
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        for doc in docs:
            out.write(orjson.dumps(doc) + b"\n")
            count += 1
    tmp.replace(path)
    return count


def write_pools(federation: Federation, args: argparse.Namespace) -> dict[str, int]:
    """Issue the licences and write every body pool; return the line count of each."""
    out: Path = args.out
    regions = federation.regions
    spread = _spread(regions)
    naive_region = federation[args.naive_region]
    counts: dict[str, int] = {}

    def singles(n: int) -> Iterator[dict[str, Any]]:
        return (_item(next(spread)) for _ in range(n))

    def batches(n: int) -> Iterator[dict[str, Any]]:
        return ({"items": list(singles(args.batch_size))} for _ in range(n))

    def naive(n: int) -> Iterator[dict[str, Any]]:
        return (_item(naive_region.issue().token) for _ in range(n))

    counts["single"] = _write_lines(out / "single.jsonl", singles(args.single))
    counts["single-warm"] = _write_lines(out / "single-warm.jsonl", singles(args.warm))
    counts["batch"] = _write_lines(out / "batch.jsonl", batches(args.batch))
    counts["batch-warm"] = _write_lines(
        out / "batch-warm.jsonl", batches(max(1, args.warm // args.batch_size))
    )
    counts["naive"] = _write_lines(out / "naive.jsonl", naive(args.naive))
    counts["naive-warm"] = _write_lines(out / "naive-warm.jsonl", naive(args.warm))
    repeated = [_item(region.issue().token) for region in regions[: args.repeated]]
    counts["repeated"] = _write_lines(out / "repeated.jsonl", repeated)
    counts["samples"] = _write_lines(
        out / "samples.jsonl", [_item(region.issue().token) for region in regions]
    )
    return counts


async def _serve(
    federation: Federation, sockets: Mapping[str, socket.socket], manifest: dict[str, Any],
    out: Path,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve_federation(federation, "127.0.0.1", sockets=sockets) as running:
        manifest["regions"] = dict(running.urls)
        manifest["pid"] = os.getpid()
        tmp = out / "manifest.tmp"
        await loop.run_in_executor(None, tmp.write_bytes, orjson.dumps(manifest))
        await loop.run_in_executor(None, tmp.replace, out / "manifest.json")
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Write the pools, then serve the federation until signalled."""
    args = _parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    federation = Federation.standard(seed=args.seed)
    sockets = reserve(federation, "127.0.0.1")
    now = datetime.now(UTC).replace(microsecond=0)
    document = federation.trust_list(
        version=1, issued_at=now - timedelta(minutes=5), next_update=now + timedelta(days=7)
    )
    (args.out / "trust-list.json").write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    naive = federation[args.naive_region]
    jwk = naive.public_jwk(naive.licence_kid)
    (args.out / "naive-jwk.json").write_bytes(orjson.dumps(jwk))
    counts = write_pools(federation, args)
    manifest: dict[str, Any] = {
        "counts": counts,
        "batch_size": args.batch_size,
        "naive_region": args.naive_region,
    }
    asyncio.run(_serve(federation, sockets, manifest, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
