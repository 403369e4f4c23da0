"""``python -m mocks``: run the mock partner regions as HTTP servers.

``--federation standard`` (the default) runs the eight standard partners;
``--federation full`` the 43 of the full federation (every delta city but Huzhou,
and the three far partners), each with its history of retired keys.

Reserves a port per region, writes the trust list (``--trust-list-out``) and
sample licences (``--licences-out``, JSON Lines), prints each region's base
URL and ``ready`` once serving (signal handlers in place), then serves until
SIGINT or SIGTERM and exits 0. 上海, 苏州 and 杭州 run witnesses and 上海 keeps a
log (``mocks._witness``); ``--transparency-out`` writes their keys and URLs.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from mocks._federation import FEDERATIONS, Federation
from mocks._region import IssuedLicence, State
from mocks._server import reserve_sockets, serve_federation
from mocks._witness import ADD_CHECKPOINT_PATH, LogPublisher, MockLog, MockWitness


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mocks", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--federation", choices=FEDERATIONS, default="standard",
                        help="which regions to run (default: standard, eight partners)")
    parser.add_argument("--seed", type=int, default=None, help="derive keys and data from it")
    parser.add_argument("--trust-list-out", type=Path, help="write the trust list JSON here")
    parser.add_argument("--licences-out", type=Path, help="write sample licences (JSON Lines) here")
    parser.add_argument("--version", type=int, default=1, help="trust list version")
    parser.add_argument("--valid-days", type=int, default=7, help="days until next_update")
    parser.add_argument("--transparency-out", type=Path,
                        help="write the witnesses' and logs' keys and URLs (JSON) here")
    return parser


WITNESS_REGIONS = ("310000", "320500", "330100")
"""Regions that run a witness (上海, 苏州, 杭州)."""
LOG_REGIONS = ("310000",)
"""Regions that keep a log for Huzhou to witness (上海)."""


def _samples(federation: Federation) -> list[tuple[IssuedLicence, str, State]]:
    samples: list[tuple[IssuedLicence, str, State]] = []
    for region in federation:
        samples.append((region.demo_licence(0), region.region_code, "valid"))
        samples.append((region.demo_licence(1), region.region_code, "valid"))
    first = federation.regions[0]
    bad_states: tuple[State, ...] = ("revoked", "suspended")
    samples.extend((first.issue(state=state), first.region_code, state) for state in bad_states)
    samples.append((first.issue(check_char="lenient"), first.region_code, "valid"))
    return samples


async def _serve(federation: Federation, host: str, sockets: Mapping[str, socket.socket],
                 witnesses: Mapping[str, MockWitness],
                 publishers: Mapping[str, LogPublisher]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve_federation(federation, host, sockets=sockets, witnesses=witnesses,
                                publishers=publishers) as running:
        for region in federation:
            print(region.region_code, region.name, running.url(region.region_code), flush=True)
        print("ready", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the mock federation; return the exit code."""
    args = _parser().parse_args(argv)
    federation = Federation.named(args.federation, seed=args.seed)
    sockets = reserve_sockets(federation, args.host)
    now = datetime.now(UTC).replace(microsecond=0)
    if args.trust_list_out is not None:
        document = federation.trust_list(
            version=args.version, issued_at=now, next_update=now + timedelta(days=args.valid_days)
        )
        args.trust_list_out.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    if args.licences_out is not None:
        lines = [
            orjson.dumps(
                {
                    "region_code": code,
                    "identifier": licence.identifier,
                    "status_idx": licence.status_idx,
                    "state": state,
                    "alg": licence.header["alg"],
                    "token": licence.token,
                }
            )
            for licence, code, state in _samples(federation)
        ]
        args.licences_out.write_bytes(b"\n".join(lines) + b"\n")
    witnesses = {code: MockWitness(f"{code}.ecert-gateway/witness", seed=args.seed)
                 for code in WITNESS_REGIONS}
    publishers = {code: LogPublisher(MockLog(f"{code}.ecert-gateway/audit", seed=args.seed))
                  for code in LOG_REGIONS}
    if args.transparency_out is not None:
        urls = {region.region_code: region.base_url for region in federation}
        args.transparency_out.write_bytes(orjson.dumps({
            "witnesses": [{"region_code": code, "name": w.name, "vkey": w.vkey,
                           "url": f"{urls[code]}{ADD_CHECKPOINT_PATH}"}
                          for code, w in witnesses.items()],
            "logs": [{"region_code": code, "origin": p.log.origin,
                      "vkey": p.log.vkey, "admin": f"{urls[code]}/admin/witness",
                      "checkpoint": f"{urls[code]}/log/checkpoint"}
                     for code, p in publishers.items()],
        }, option=orjson.OPT_INDENT_2))
    asyncio.run(_serve(federation, args.host, sockets, witnesses, publishers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
