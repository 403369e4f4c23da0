"""Query the running demo gateway as a partner region would.

Rebuilds the partner's mock keys from the demo's seed, signs an
``ecert-request+jwt`` over the exact request body, and prints Huzhou's answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from urllib.parse import urlsplit

import aiohttp

from mocks import STANDARD_PARTNERS, Federation, PartnerClient

_PROG = "partner_query.py"


async def _query(args: argparse.Namespace) -> int:
    region = Federation.standard(seed=args.seed, codes=[args.region])[args.region]
    async with PartnerClient(region, args.gateway) as client:
        answer = await client.query(client.by_identifier(
            args.identifier, matter_code=args.matter_code, use_cause=args.use_cause))
    print(f"HTTP {answer.status}")
    print(json.dumps(answer.body, ensure_ascii=False, indent=2))
    return 0 if answer.status == 200 else 1


def _fail(message: str) -> int:
    print(f"{_PROG}: {message}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Parse the options and send one query; a one-line reason and exit 1 when it cannot."""
    regions = {p.region_code: p.name for p in STANDARD_PARTNERS}
    known = ", ".join(f"{code} {name}" for code, name in regions.items())
    parser = argparse.ArgumentParser(prog=_PROG, description=__doc__)
    parser.add_argument("--gateway", default="http://127.0.0.1:8080",
                        help="the demo gateway's base URL (default %(default)s)")
    parser.add_argument("--region", default="310000",
                        help=f"the querying partner region, one of the demo's: {known}")
    parser.add_argument("--seed", type=int, default=2026, help="the demo federation's seed")
    parser.add_argument("--identifier", required=True, help="a Huzhou 证照标识")
    parser.add_argument("--matter-code", default="310000-20-SFJ-0001",
                        help="the partner's own matter code for the case")
    parser.add_argument("--use-cause", default="办理跨省通办事项")
    args = parser.parse_args(argv)
    if args.region not in regions:
        return _fail(f"--region {args.region} is not one of the demo's partner regions: {known}")
    if urlsplit(args.gateway).scheme not in ("http", "https"):
        return _fail(f"--gateway {args.gateway!r} is not an http:// or https:// URL")
    try:
        return asyncio.run(_query(args))
    except (aiohttp.ClientError, TimeoutError) as exc:
        return _fail(f"cannot reach the gateway at {args.gateway} ({exc}); "
                     "is it running (make run)?")


if __name__ == "__main__":
    sys.exit(main())
