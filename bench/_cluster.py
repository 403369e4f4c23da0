"""The scenarios that need Redis, a second gateway instance or operators.

* Redis: the run's own database (``redis://127.0.0.1:6379/1`` by default),
  flushed at the start (so no earlier run can produce hits) and at the end.
* The gateway's data folder: the client key, two operators (a proposer and an
  approver, for dual control with ``ECERT_APPROVALS_REQUIRED=1``), a scraper's
  token for ``/metrics``, Huzhou's licence library (``licences demo``) and a
  settings file that raises the partner's rate limit and names Redis.
* Partner pools: asked of the mock federation's control endpoint just before
  each round (request tokens live at most 300 s).
* Tier-2 warm-up on instance A, trust-list propagation A → B, and the verdict
  fill of the memory measurement.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import re
import statistics
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import orjson
import redis
from redis.exceptions import RedisError

from bench._procs import http_get, http_post, python, run_bounded
from trust import CHINA_TZ

__all__ = [
    "PARTNER_MATTER",
    "PARTNER_REGION",
    "Propagation",
    "RedisDb",
    "cli_token",
    "fill_cache",
    "metric_sum",
    "metrics",
    "next_database",
    "partner_identifiers",
    "partner_pool",
    "partner_sanity",
    "propagation",
    "warm_batches",
    "write_settings",
]

PARTNER_REGION: Final = "310000"
"""Shanghai: a mock region in the trust list, with a request-signing key."""
PARTNER_MATTER: Final = "310000-20-SFJ-0001"
"""A matter of Shanghai's own catalogue (the query names the partner's matter)."""
PARTNER_RATE: Final = 100_000
"""Per second and burst: high enough that the limiter is not what is measured."""


class RedisDb:
    """The run's Redis database: flushed at the start and at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.error = ""
        self._client: redis.Redis | None = None
        try:
            client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
            client.ping()
        except (RedisError, OSError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            return
        self._client = client

    @property
    def available(self) -> bool:
        """Whether Redis answered."""
        return self._client is not None

    def flush(self) -> None:
        """FLUSHDB (only this database)."""
        if self._client is not None:
            self._client.flushdb()

    def close(self) -> None:
        """Flush and close (errors are ignored: the run is ending)."""
        if self._client is None:
            return
        with contextlib.suppress(RedisError, OSError):
            self._client.flushdb()
        self._client.close()
        self._client = None


def next_database(url: str) -> str:
    """``url`` naming the next database of the same Redis (``/1`` → ``/2``; none → ``/1``):
    the 43-partner instances' own, so their trust-list version key, verdicts and replay
    cache never meet the eight-partner instances'."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path.strip("/")
    number = int(path) + 1 if path.isdigit() else 1
    return urllib.parse.urlunsplit(parts._replace(path=f"/{number}"))


def write_settings(path: Path, redis_url: str | None) -> Path:
    """The settings file of both instances: Redis (when up) and the partner's rate limit."""
    lines = [f'redis_url = "{redis_url}"'] if redis_url else []
    lines += ["", "[partner.rate_limits]",
              f'"{PARTNER_REGION}" = {{per_s = {PARTNER_RATE}, burst = {PARTNER_RATE}}}', ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def cli_token(args: Sequence[str], what: str) -> str:
    """Run ``python -m gateway ARGS`` and return the last line it printed (a key)."""
    done = run_bounded([python(), "-m", "gateway", *args], 300)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed: {done.stderr[-800:]}")
    return done.stdout.strip().splitlines()[-1]


def partner_identifiers(data: Path, out: Path) -> int:
    """Write the identifiers of the demo licences valid today (they answer ``found``)."""
    today = datetime.now(CHINA_TZ).date()
    names = []
    for line in (data / "demo-licences.jsonl").read_bytes().splitlines():
        row = orjson.loads(line)
        until = row.get("valid_until")
        if row.get("state") == "valid" and (until is None or date.fromisoformat(until) >= today):
            names.append(row["identifier"])
    if not names:
        raise RuntimeError("the demo licence library holds no valid licence")
    out.write_text("\n".join(names) + "\n", encoding="utf-8")
    return len(names)


def partner_pool(control: str, *, identifiers: Path, out: Path, count: int,
                 offset: int = 0) -> int:
    """Have the mock partner sign ``count`` queries into ``out``; return the line count."""
    spec = {"region": PARTNER_REGION, "identifiers": str(identifiers), "matter": PARTNER_MATTER,
            "count": count, "offset": offset, "lifetime": 300, "out": str(out)}
    status, body = http_post(f"{control}/partner-pool", orjson.dumps(spec), timeout=600)
    if status != 200:
        raise RuntimeError(f"the mock partner could not sign a pool: {status} {body[:300]!r}")
    lines: int = orjson.loads(body)["lines"]
    return lines


def partner_sanity(url: str, line: bytes) -> None:
    """One signed query by identifier answers 200, cn_status 0, one licence."""
    auth, _, body = line.partition(b"\t")
    status, answer = http_post(url, body, {"Authorization": auth.decode("ascii")})
    parsed = orjson.loads(answer) if answer else {}
    if status != 200 or parsed.get("cn_status") != 0 or len(parsed.get("licences", [])) != 1:
        raise RuntimeError(f"sanity check: a partner query answered {status}: {answer[:600]!r}")


def _batch_bodies(pool: Path, size: int) -> list[bytes]:
    lines = [line for line in pool.read_bytes().splitlines() if line.strip()]
    return [b'{"items":[' + b",".join(lines[i:i + size]) + b"]}"
            for i in range(0, len(lines), size)]


def _post_batch(url: str, body: bytes, headers: dict[str, str]) -> int:
    """Post one batch; the number of items that passed (raises on a non-200 answer)."""
    status, answer = http_post(url, body, headers, timeout=300)
    if status != 200:
        raise RuntimeError(f"a batch answered {status}: {answer[:300]!r}")
    return sum(1 for r in orjson.loads(answer)["results"] if r["indication"] == "TOTAL_PASSED")


def warm_batches(gateway: str, headers: dict[str, str], pool: Path, size: int) -> int:
    """Verify every licence of a single-body pool on ``gateway`` through the batch endpoint
    (each item is cached, in tier 2 too); return how many passed."""
    url = f"{gateway}/v1/verifications/batch"
    return sum(_post_batch(url, body, headers) for body in _batch_bodies(pool, size))


def fill_cache(gateway: str, headers: dict[str, str], pool: Path, workers: int = 4) -> int:
    """Post every batch body of ``pool`` (a few in flight); return how many items passed."""
    url = f"{gateway}/v1/verifications/batch"
    bodies = [line for line in pool.read_bytes().splitlines() if line.strip()]
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as executor:
        return sum(executor.map(lambda body: _post_batch(url, body, headers), bodies))


def metrics(gateway: str, token: str) -> dict[str, float]:
    """``GET /metrics`` with a scraper's ``token`` as ``{"name{labels}": value}``."""
    status, body = http_get(f"{gateway}/metrics", timeout=10,
                            headers={"Authorization": f"Bearer {token}"})
    if status != 200:
        raise RuntimeError(f"GET /metrics answered {status}")
    values: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric_sum(values: dict[str, float], name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` that carry ``labels`` (in any order, other labels
    such as a ``worker`` index summed over), from what :func:`metrics` returned."""
    total = 0.0
    for sample, value in values.items():
        sample_name, brace, rest = sample.partition("{")
        if sample_name != name:
            continue
        found = dict(_LABEL.findall(rest)) if brace else {}
        if all(found.get(key) == wanted for key, wanted in labels.items()):
            total += value
    return total


def _version(gateway: str) -> int:
    _, body = http_get(f"{gateway}/readyz", timeout=5)
    version: int = orjson.loads(body)["trust_list_version"]
    return version


@dataclass(slots=True)
class Propagation:
    """Times from A's approve answer to B serving the new version, in ms (None: timed out)."""

    times_ms: list[float | None] = field(default_factory=list)

    @property
    def done(self) -> list[float]:
        """The changes that reached B."""
        return [t for t in self.times_ms if t is not None]

    @property
    def median(self) -> float | None:
        """Median over the changes that reached B."""
        return statistics.median(self.done) if self.done else None

    @property
    def worst(self) -> float | None:
        """Worst case; None when any change did not reach B at all."""
        if not self.times_ms or None in self.times_ms:
            return None
        return max(self.done)


def propagation(a: str, b: str, *, proposer: str, approver: str, changes: int,
                poll_s: float = 0.01, timeout_s: float = 10.0,
                pause_s: float = 0.2) -> Propagation:
    """Make ``changes`` trust-list changes through A's admin API (``renew`` with a new
    ``next_update``: propose, then approve by another operator) and time each one from the
    approve answer to B's ``GET /readyz`` showing the new ``trust_list_version``."""
    result = Propagation()
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)
    for n in range(changes):
        before = _version(a)
        change = {"kind": "renew",
                  "next_update": (base + timedelta(minutes=n + 1)).strftime("%Y-%m-%dT%H:%M:%SZ")}
        status, body = http_post(f"{a}/v1/admin/proposals",
                                 orjson.dumps({"changes": [change], "note": f"bench {n + 1}"}),
                                 {"Authorization": f"Bearer {proposer}"})
        if status != 201:
            raise RuntimeError(f"proposal answered {status}: {body[:400]!r}")
        proposal: dict[str, Any] = orjson.loads(body)
        status, body = http_post(f"{a}/v1/admin/proposals/{proposal['id']}/approve", b"{}",
                                 {"Authorization": f"Bearer {approver}"})
        approved = time.perf_counter()
        if status != 200:
            raise RuntimeError(f"approval answered {status}: {body[:400]!r}")
        target = orjson.loads(body).get("result_version") or before + 1
        elapsed: float | None = None
        tick = approved
        while time.perf_counter() - approved < timeout_s:
            if _version(b) >= target:
                elapsed = (time.perf_counter() - approved) * 1000
                break
            tick += poll_s
            time.sleep(max(0.0, tick - time.perf_counter()))
        result.times_ms.append(elapsed)
        time.sleep(pause_s)
    return result
