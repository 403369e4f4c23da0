"""``python -m bench._mockserver``: the mock federation process of a benchmark run.

Builds ``Federation.named(--federation, seed=...)`` (``standard``: the eight partners;
``full``: the 43 partners of the full federation, with their retired keys), reserves a
port per region, issues
unique licences (each with a status-list entry, so the gateway really fetches
and caches status lists) and writes into ``--out``:

* ``trust-list.json``: the federation's trust list;
* ``<pool>.jsonl``: request bodies, one JSON document a line (see ``POOLS``);
* ``naive-jwk.json``: the public JWK of the naive region's licence key;
* ``sm2-jwks.json``: the public JWKs of the SM2 regions' licence keys, by ``kid``;
* ``manifest.json`` last, once every region is served: the line counts.

Then serves until SIGINT or SIGTERM. With ``--control-port`` it also answers
``POST /partner-pool`` on loopback: a partner region (``310000`` by default)
signs a pool of partner queries of Huzhou's licences by identifier, each line
``Bearer <ecert-request+jwt>\t<body>`` with a fresh ``jti`` and the
``body_sha256`` of exactly that body (``mocks.PartnerClient.sign``). The run
asks for a pool just before each round's partner measurement, because request
tokens live at most 300 s.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
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
from aiohttp import web

from mocks import (
    BUSINESS_LICENCE,
    CONSTRUCTION_WORKER,
    FEDERATIONS,
    Federation,
    MockRegion,
    PartnerClient,
    serve_federation,
)
from mocks import reserve_sockets as reserve

USE_CAUSE: Final = "办理跨省通办事项（基准测试）"
TYPES: Final = (CONSTRUCTION_WORKER, BUSINESS_LICENCE)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench._mockserver", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder for the files")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--federation", choices=FEDERATIONS, default="standard",
                        help="standard: the eight partners; full: the 43 of the full "
                             "federation (40 delta cities and 3 far partners)")
    parser.add_argument("--single", type=int, required=True, help="licences, one per body")
    parser.add_argument("--batch", type=int, required=True, help="batch bodies")
    parser.add_argument("--batch-size", type=int, default=100, help="licences per batch body")
    parser.add_argument("--naive", type=int, required=True, help="bodies of the naive region")
    parser.add_argument("--warm", type=int, required=True, help="bodies of each warm-up pool")
    parser.add_argument("--repeated", type=int, default=4, help="licences used over and over")
    parser.add_argument("--naive-region", default="310000")
    parser.add_argument("--sm2", type=int, default=0,
                        help="SM2SM3 licences (毕节, 白山) of the single-sm2 pool, cycled")
    parser.add_argument("--workers", type=int, default=0,
                        help="licences of the workers pool (cycled by `serve --workers N`)")
    parser.add_argument("--tier2", type=int, default=0,
                        help="licences of the tier-2 (second instance) working set")
    parser.add_argument("--fill", type=int, default=0,
                        help="batch bodies of unique licences to fill a verdict cache")
    parser.add_argument("--control-port", type=int,
                        help="loopback port for POST /partner-pool (signed partner queries)")
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
    # The verification rows and their floors measure ES256 licences; the regions that sign
    # with SM2 (毕节, 白山) are in the start-up checks (samples), licence and status list.
    spread = _spread([r for r in regions if r.licence_alg == "ES256"])
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
    # Without batch or naive pools (the 43-partner mock process) their warm-up pools keep
    # one body each, for the start-up checks.
    counts["batch-warm"] = _write_lines(
        out / "batch-warm.jsonl",
        batches(max(1, args.warm // args.batch_size) if args.batch else 1),
    )
    counts["naive"] = _write_lines(out / "naive.jsonl", naive(args.naive))
    counts["naive-warm"] = _write_lines(out / "naive-warm.jsonl",
                                        naive(args.warm if args.naive else 1))
    repeated = [_item(region.issue().token) for region in regions[: args.repeated]]
    counts["repeated"] = _write_lines(out / "repeated.jsonl", repeated)
    counts["samples"] = _write_lines(
        out / "samples.jsonl", [_item(region.issue().token) for region in regions]
    )
    counts["tier2"] = _write_lines(out / "tier2.jsonl", singles(args.tier2))
    counts["workers"] = _write_lines(out / "workers.jsonl", singles(args.workers))
    counts["fill"] = _write_lines(out / "fill.jsonl", batches(args.fill))
    # SM2SM3 licences for the SM2 single row: the mocks sign SM2 in pure Python (~7 ms a
    # signature), so this pool is small and the row cycles it (with the verdict cache off,
    # a licence sent again is verified again in full).
    sm2 = _spread([r for r in regions if r.licence_alg == "SM2SM3"])
    counts["single-sm2"] = _write_lines(out / "single-sm2.jsonl",
                                        (_item(next(sm2)) for _ in range(args.sm2)))
    return counts


def write_partner_pool(federation: Federation, *, region: str, identifiers: Path, matter: str,
                       count: int, offset: int, lifetime: int, out: Path) -> int:
    """``count`` signed queries by identifier (cycling the identifiers file from ``offset``),
    one ``Bearer <token>\t<body>`` line each; return the line count."""
    names = [line for line in identifiers.read_text(encoding="utf-8").splitlines() if line]
    if not names:
        raise ValueError(f"no identifiers in {identifiers}")
    client = PartnerClient(federation[region], "http://127.0.0.1")  # only signs here

    def lines() -> Iterator[bytes]:
        for n in range(count):
            body = orjson.dumps(client.by_identifier(
                names[(offset + n) % len(names)], matter_code=matter, use_cause=USE_CAUSE))
            yield b"Bearer " + client.sign(body, lifetime=lifetime).encode("ascii") + b"\t" + body

    written = 0
    tmp = out.with_suffix(".tmp")
    with tmp.open("wb") as handle:
        for line in lines():
            handle.write(line + b"\n")
            written += 1
    tmp.replace(out)
    return written


async def _control(federation: Federation, port: int) -> web.AppRunner:
    """The loopback control endpoint: ``POST /partner-pool``."""

    async def partner_pool(request: web.Request) -> web.Response:
        spec: dict[str, Any] = await request.json()
        job = functools.partial(
            write_partner_pool, federation, region=str(spec.get("region", "310000")),
            identifiers=Path(spec["identifiers"]), matter=str(spec["matter"]),
            count=int(spec["count"]), offset=int(spec.get("offset", 0)),
            lifetime=int(spec.get("lifetime", 300)), out=Path(spec["out"]))
        try:
            lines = await asyncio.get_running_loop().run_in_executor(None, job)
        except (ValueError, KeyError, OSError) as exc:
            return web.json_response({"error": repr(exc)}, status=400)
        return web.json_response({"lines": lines})

    app = web.Application()
    app.router.add_post("/partner-pool", partner_pool)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _serve(
    federation: Federation, sockets: Mapping[str, socket.socket], manifest: dict[str, Any],
    out: Path, control_port: int | None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    control = None if control_port is None else await _control(federation, control_port)
    try:
        async with serve_federation(federation, "127.0.0.1", sockets=sockets) as running:
            manifest["regions"] = dict(running.urls)
            manifest["pid"] = os.getpid()
            tmp = out / "manifest.tmp"
            await loop.run_in_executor(None, tmp.write_bytes, orjson.dumps(manifest))
            await loop.run_in_executor(None, tmp.replace, out / "manifest.json")
            await stop.wait()
    finally:
        if control is not None:
            await control.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """Write the pools, then serve the federation until signalled."""
    args = _parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    federation = Federation.named(args.federation, seed=args.seed)
    sockets = reserve(federation, "127.0.0.1")
    now = datetime.now(UTC).replace(microsecond=0)
    document = federation.trust_list(
        version=1, issued_at=now - timedelta(minutes=5), next_update=now + timedelta(days=7)
    )
    (args.out / "trust-list.json").write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    naive = federation[args.naive_region]
    jwk = naive.public_jwk(naive.licence_kid)
    (args.out / "naive-jwk.json").write_bytes(orjson.dumps(jwk))
    sm2_jwks = {r.licence_kid: r.public_jwk(r.licence_kid) for r in federation.regions
                if r.licence_alg == "SM2SM3"}
    (args.out / "sm2-jwks.json").write_bytes(orjson.dumps(sm2_jwks))
    counts = write_pools(federation, args)
    manifest: dict[str, Any] = {
        "counts": counts,
        "federation": args.federation,
        "partners": len(federation),
        "batch_size": args.batch_size,
        "naive_region": args.naive_region,
    }
    asyncio.run(_serve(federation, sockets, manifest, args.out, args.control_port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
