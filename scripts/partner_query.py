"""Query the running demo gateway as a partner region would.

Rebuilds the partner's mock keys from the demo's seed, signs an
``ecert-request+jwt`` over the exact request body, and prints Huzhou's answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from mocks import Federation, PartnerClient


async def _query(args: argparse.Namespace) -> int:
    region = Federation.standard(seed=args.seed, codes=[args.region])[args.region]
    async with PartnerClient(region, args.gateway) as client:
        answer = await client.query(client.by_identifier(
            args.identifier, matter_code=args.matter_code, use_cause=args.use_cause))
    print(f"HTTP {answer.status}")
    print(json.dumps(answer.body, ensure_ascii=False, indent=2))
    return 0 if answer.status == 200 else 1


def main() -> int:
    """Parse the options and send one query."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gateway", default="http://127.0.0.1:8080")
    parser.add_argument("--region", default="310000", help="the querying partner region")
    parser.add_argument("--seed", type=int, default=2026, help="the demo federation's seed")
    parser.add_argument("--identifier", required=True, help="a Huzhou 证照标识")
    parser.add_argument("--matter-code", default="310000-20-SFJ-0001",
                        help="the partner's own matter code for the case")
    parser.add_argument("--use-cause", default="办理跨省通办事项")
    return asyncio.run(_query(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
