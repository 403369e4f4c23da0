"""``python -m bench._cases``: a 一件事 check against five single verifications, one run.

The issue's goal: a 一件事 check with 5 requirements, all licences presented,
costs at most 1.5× five single verifications, measured in the same run.

One process builds the standard mock federation (served on loopback, so
status lists are fetched for real and then held by their ``ttl``) and a
gateway app (``create_app``: the real audit log, SQLite, in a temporary data
folder; the verdict cache on) and measures two workloads over the same kind of
licences, **each licence used once** (no verdict-cache hit on either side):

* ``singles``: 5 × ``POST /v1/verifications``, one after the other;
* ``case``: 1 × ``POST /v1/cases`` for ``listing-compliance``
  (企业上市合法合规信息核查: 5 requirements), its 5 licences presented, no
  partner asked.

Both through HTTP on loopback (``aiohttp.test_utils.TestClient``), and both at
the service level too (``VerificationService.verify`` × 5 against
``CaseService.check``: no HTTP, so the case gets no credit for its four
requests saved). Rounds alternate (singles, case, singles, case ...) so drift
hits both alike. Cost is the process's CPU time (``time.process_time``: the
gateway, the client and the idle mocks share the process) and wall time per
unit of work; the ratio ``case / singles`` is what the goal bounds.

A bench row for ``bench/_run.py``: run this module as a subprocess (pinned to
the gateway's CPU like ``bench._inproc``), read its JSON line, and print
``case_cpu_ratio_http`` against the 1.5 goal, with the service-level ratio
beside it. Licences are ES256 (Shanghai): SM2 signing in the mocks is pure
Python and would make the pools slow to build.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer

from gateway.cases.routes import CASES_KEY
from gateway.cases.service import CaseRequest
from gateway.credentials.store import IdentityKind, add_identity
from gateway.settings import load_settings
from gateway.verification.service import VerificationRequest
from gateway.web.app import create_app
from gateway.web.appkeys import VERIFICATION_KEY
from mocks import Federation, MockRegion, make_resident_id, make_uscc, serve_federation
from trust import TrustList

BUSINESS_LICENCE = "11100000MB0143028R001"
ID_CARD = "11100000000013127D001"
PROPERTY = "11100000MB03271699001"
USE_CAUSE = "企业上市合法合规信息核查（基准测试）"
GOAL = 1.5


class _Pool:
    """Unique licences for the five requirements of ``listing-compliance``."""

    def __init__(self, region: MockRegion, seed: int) -> None:
        rng = random.Random(seed)
        self.region = region
        self.applicant = {
            "enterprise": make_uscc("91", region.id_prefixes[0], f"{rng.randrange(10**8):08d}"),
            "legal_representative": make_resident_id(region.id_prefixes, rng),
            "actual_controller": make_resident_id(region.id_prefixes, rng),
            "board_secretary": make_resident_id(region.id_prefixes, rng),
        }
        self._wanted = [(BUSINESS_LICENCE, "enterprise", "001"),
                        (ID_CARD, "legal_representative", "111"),
                        (ID_CARD, "actual_controller", "111"),
                        (ID_CARD, "board_secretary", "111"),
                        (PROPERTY, "enterprise", "001")]

    def five(self) -> list[str]:
        """Five fresh licences, one per requirement."""
        return [self.region.issue(type_code=t, lic_override={
            "holder_code": self.applicant[role], "holder_code_type": code_type}).token
            for t, role, code_type in self._wanted]


def _per(samples: list[tuple[float, float]]) -> dict[str, float]:
    cpu = [c for c, _ in samples]
    wall = [w for _, w in samples]
    return {"cpu_ms": statistics.median(cpu) * 1000, "wall_ms": statistics.median(wall) * 1000}


async def _measure(n: int, rounds: int, seed: int) -> dict[str, Any]:
    federation = Federation.standard(seed=seed, codes=["310000"])
    async with serve_federation(federation) as served:
        now = datetime.now(UTC)
        trust = TrustList.from_json(served.federation.trust_list(
            version=1, issued_at=now - timedelta(hours=1), next_update=now + timedelta(days=1)))
        with tempfile.TemporaryDirectory(prefix="bench-cases-") as tmp:
            data_dir = Path(tmp)
            key = await asyncio.to_thread(add_identity, data_dir, IdentityKind.CLIENT, "bench")
            settings = load_settings({}, None, {"data_dir": data_dir, "access_log": False})
            app = create_app(settings, trust_list=trust)
            async with TestClient(TestServer(app)) as client:
                return await _rounds(client, key, _Pool(federation["310000"], seed), n, rounds)


async def _rounds(client: TestClient[Any, Any], key: str, pool: _Pool, n: int,
                  rounds: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    app = client.app
    assert app is not None
    verification, cases = app[VERIFICATION_KEY], app[CASES_KEY]

    async def singles_http(tokens: list[str]) -> None:
        for token in tokens:
            resp = await client.post("/v1/verifications", headers=headers,
                                     json={"credential": token, "use_cause": USE_CAUSE})
            body = await resp.json()
            assert body["indication"] == "TOTAL_PASSED", body

    async def case_http(tokens: list[str]) -> None:
        resp = await client.post("/v1/cases", headers=headers, json={
            "bundle": "listing-compliance", "applicant": pool.applicant, "licences": tokens,
            "use_cause": USE_CAUSE, "partners": []})
        body = await resp.json()
        assert body["met"] is True, orjson.dumps(body)[:2000]

    async def singles_service(tokens: list[str]) -> None:
        for token in tokens:
            answer = await verification.verify(
                VerificationRequest(credential=token, use_cause=USE_CAUSE), actor="bench")
            assert answer["indication"] == "TOTAL_PASSED"

    async def case_service(tokens: list[str]) -> None:
        answer = await cases.check(CaseRequest(
            bundle="listing-compliance", matter=None, applicant=pool.applicant,
            licences=tuple(tokens), use_cause=USE_CAUSE, partners=()), actor="bench")
        assert answer["met"] is True

    workloads = {"singles_http": singles_http, "case_http": case_http,
                 "singles_service": singles_service, "case_service": case_service}
    # Warm-up: the status list fetched, code paths and the audit writer warm.
    for run in workloads.values():
        for _ in range(5):
            await run(pool.five())
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in workloads}
    for _ in range(rounds):
        for name, run in workloads.items():
            batches = [pool.five() for _ in range(n)]  # issued outside the timed part
            cpu, wall = time.process_time(), time.perf_counter()
            for tokens in batches:
                await run(tokens)
            samples[name].append(((time.process_time() - cpu) / n,
                                  (time.perf_counter() - wall) / n))
    result: dict[str, Any] = {name: _per(s) for name, s in samples.items()}
    for level in ("http", "service"):
        single, case = result[f"singles_{level}"], result[f"case_{level}"]
        result[f"case_cpu_ratio_{level}"] = case["cpu_ms"] / single["cpu_ms"]
        result[f"case_wall_ratio_{level}"] = case["wall_ms"] / single["wall_ms"]
    result.update(n=n, rounds=rounds, goal=GOAL)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print one JSON line, then a readable summary on stderr."""
    parser = argparse.ArgumentParser(prog="python -m bench._cases", description=__doc__)
    parser.add_argument("--n", type=int, default=100, help="units of work per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=25)
    args = parser.parse_args(argv)
    result = asyncio.run(_measure(args.n, args.rounds, args.seed))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    for level in ("http", "service"):
        sys.stderr.write(
            f"{level:8} five singles {result[f'singles_{level}']['cpu_ms']:7.2f} ms CPU, "
            f"one case {result[f'case_{level}']['cpu_ms']:7.2f} ms CPU: "
            f"ratio {result[f'case_cpu_ratio_{level}']:.2f} (goal <= {GOAL})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
