"""`ecert-gateway serve --workers 2`: two processes on one port, one data folder, one Redis.

Which worker answers a new connection is the kernel's choice; to send a request
to one worker in particular, the test stops the other one (SIGSTOP): its share
of the listening socket then waits, and the running worker accepts every new
connection. Every request here goes on a new connection.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from gateway.__main__ import main
from gateway.credentials.store import IdentityKind, Role, add_identity
from gateway.infra.datafolder import create_data_folder
from gateway.partner.checks import RedisRateLimiter
from gateway.settings import SettingsError, load_settings
from gateway.web.workermetrics import SNAPSHOT_INTERVAL_S
from mocks import Federation, PartnerClient, RunningFederation, serve_federation
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.allow_blocking]

SH_MATTER = "310000-20-SFJ-0001"
RATE_BURST = 4
"""Partner requests allowed in total (the bucket refills at 0.01 a second meanwhile)."""
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
    return found


_TIMEOUT = aiohttp.ClientTimeout(total=30)
"""Per request: a request that hangs (a worker stopped with its connection, a lock never
released) fails its test with the request named, not after aiohttp's default 5 minutes."""


def _running(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running."""
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def _redis_dump(url: str, pattern: str) -> dict[bytes, bytes]:
    """Every key matching ``pattern`` and its value."""
    client = redis.Redis.from_url(url)
    try:
        found = {}
        for key in client.scan_iter(pattern):
            value = client.get(key)
            found[key] = value if isinstance(value, bytes) else b""
        return found
    finally:
        client.close()


def _database(url: str, number: int) -> str:
    """``url`` on Redis database ``number`` (rate-limit buckets of other tests stay apart)."""
    return re.sub(r"/\d+$", "", url) + f"/{number}"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, check=False,
                          capture_output=True, text=True, timeout=120)


class Serve:
    """One `ecert-gateway serve --workers 2` process and its workers."""

    def __init__(self, data: Path, trust: Path, redis_url: str, log: Path, *,
                 postgres_dsn: str | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**os.environ, "ECERT_REDIS_URL": redis_url, "ECERT_APPROVALS_REQUIRED": "1",
               "ECERT_LOG_LEVEL": "INFO", "ECERT_PARTNER_RATE_BURST": str(RATE_BURST),
               "ECERT_PARTNER_RATE_PER_S": "0.01", "ECERT_SHUTDOWN_TIMEOUT_S": "3"}
        if postgres_dsn is not None:
            env["ECERT_POSTGRES_DSN"] = postgres_dsn
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--workers", "2",
                 "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(data),
                 "--trust-list", str(trust)],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)

    def workers(self) -> list[int]:
        return sorted(_children(self.proc.pid))

    @contextmanager
    def only(self, worker: int) -> Iterator[None]:
        """Every new connection goes to ``worker``: the others are stopped meanwhile."""
        others = [pid for pid in self.workers() if pid != worker]
        for pid in others:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in _running(others):
                os.kill(pid, signal.SIGCONT)

    def answered_by(self) -> dict[int, int]:
        """Access-log lines per worker index."""
        counts: dict[int, int] = {}
        for line in self.log.read_bytes().splitlines():
            entry = orjson.loads(line)
            if entry.get("logger") == "gateway.access" and "worker" in entry:
                counts[entry["worker"]] = counts.get(entry["worker"], 0) + 1
        return counts

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in _children(self.proc.pid):
            os.kill(pid, signal.SIGKILL)


async def _ready(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(300):
        try:
            async with session.get(f"{base}/readyz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("serve --workers 2 did not become ready")


async def _both_ready(serve: Serve, http: aiohttp.ClientSession) -> list[int]:
    """The two workers' pids, once each of them answers /readyz."""
    await _ready(http, serve.base)
    for _ in range(300):
        if len(serve.workers()) == 2:
            break
        await asyncio.sleep(0.1)
    workers = serve.workers()
    assert 2 == len(workers)
    for worker in workers:
        with serve.only(worker):
            await _ready(http, serve.base)
    return workers


@pytest.fixture
async def federation() -> AsyncIterator[RunningFederation]:
    """Shanghai, unseeded (fresh keys: nothing in the session's Redis matches by chance)."""
    async with serve_federation(Federation.standard(codes=["310000"])) as running:
        yield running


@pytest.mark.slow
@pytest.mark.redis
async def test_two_workers_share_log_replay_limits_sessions_and_trust_changes(
        tmp_path: Path, redis_url: str, federation: RunningFederation) -> None:
    """Concurrent verifications leave exactly one audit entry each and `audit verify` passes;
    a partner token spent at one worker is refused at the other; the partner's rate limit is
    its configured total; a console session made on one worker works on the other; an
    anchor revoked through one worker is refused by the other at once; /metrics on either
    counts both workers' requests, labelled by worker; a killed worker is
    replaced; SIGTERM stops both workers and the supervisor exits 0."""
    sh = federation.federation["310000"]
    now = datetime.now(UTC)
    trust = tmp_path / "trust.json"
    trust.write_bytes(orjson.dumps(federation.federation.trust_list(
        version=1, issued_at=now - timedelta(hours=1), next_update=now + timedelta(days=3))))
    data = tmp_path / "data"
    client_key = add_identity(data, IdentityKind.CLIENT, "window")
    proposer = add_identity(data, IdentityKind.OPERATOR, "zhang", Role.OPERATOR)
    approver = add_identity(data, IdentityKind.OPERATOR, "li", Role.APPROVER)
    scraper = add_identity(data, IdentityKind.OPERATOR, "mark", Role.METRICS)
    serve = Serve(data, trust, _database(redis_url, 7), tmp_path / "serve.log")
    connector = aiohttp.TCPConnector(force_close=True, limit=64)  # a new connection each time
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT,
                                         cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            first, second = await _both_ready(serve, http)

            async def verify(token: str, request_id: str = "") -> dict[str, Any]:
                headers = {"Authorization": f"Bearer {client_key}"}
                if request_id:
                    headers["X-Request-Id"] = request_id
                async with http.post(f"{serve.base}/v1/verifications", headers=headers,
                                     json={"credential": token}) as resp:
                    assert 200 == resp.status, await resp.text()
                    answer: dict[str, Any] = await resp.json()
                    return answer

            # Many concurrent verifications, each with its own request id.
            licences = [sh.issue().token for _ in range(20)]
            sent = [f"workers-test-{n:04d}" for n in range(240)]
            gate = asyncio.Semaphore(24)

            async def one(n: int, request_id: str) -> str:
                async with gate:
                    return str((await verify(licences[n % 20], request_id))["indication"])

            answers = await asyncio.gather(*(one(n, rid) for n, rid in enumerate(sent)))
            assert {"TOTAL_PASSED"} == set(answers)
            served = serve.answered_by()
            assert served.get(0, 0) > 0
            assert served.get(1, 0) > 0
            # /metrics, whichever worker answers it, counts every worker's requests.
            await asyncio.sleep(SNAPSHOT_INTERVAL_S + 0.5)
            for worker in (first, second):
                with serve.only(worker):
                    async with http.get(f"{serve.base}/metrics",
                                        headers={"Authorization": f"Bearer {scraper}"}) as resp:
                        assert 200 == resp.status
                        text = await resp.text()
                counted = {sample.labels["worker"]: sample.value
                           for family in text_string_to_metric_families(text)
                           for sample in family.samples
                           if sample.name == "ecert_http_requests_total"
                           and sample.labels["route"] == "/v1/verifications"}
                assert {"0", "1"} == set(counted)
                assert len(sent) == sum(counted.values())

            # A partner token spent at one worker is refused at the other.
            partner = PartnerClient(sh, serve.base, session=http)
            body = orjson.dumps(partner.by_identifier("no-such-licence", matter_code=SH_MATTER))
            token = partner.sign(body)
            with serve.only(first):
                spent = await partner.query(body, token=token)
            assert spent.status not in (401, 429), spent.body
            with serve.only(second):
                replayed = await partner.query(body, token=token)
            assert 401 == replayed.status
            assert "replayed" in replayed.body["detail"]
            # The rate limit is the partner's total: the burst less the one spent above,
            # whichever worker the requests reach.
            statuses = []
            for n in range(RATE_BURST):
                with serve.only((first, second)[n % 2]):
                    statuses.append((await partner.query(body)).status)
            assert 429 not in statuses[:RATE_BURST - 1]
            assert 429 == statuses[-1]

            # A console session made on one worker serves on the other.
            with serve.only(first):
                async with http.get(f"{serve.base}/console/login") as resp:
                    found = _CSRF.search(await resp.text())
                    assert found is not None
            with serve.only(second):
                async with http.post(f"{serve.base}/console/login", allow_redirects=False,
                                     data={"csrf": found.group(1), "token": proposer}) as resp:
                    assert 303 == resp.status
                    assert "/console/" == resp.headers["Location"]
            with serve.only(first):
                async with http.get(f"{serve.base}/console/trust-list",
                                    allow_redirects=False) as resp:
                    assert 200 == resp.status
            # Redis holds neither the operator's token nor the cookie's session id.
            cookie = next(c.value for c in http.cookie_jar if c.key == "ecert_console")
            stored = await asyncio.to_thread(_redis_dump, _database(redis_url, 7),
                                             "ecert:v1:console-session:*")
            assert stored
            assert not any(proposer.encode() in key + value or cookie.encode() in key + value
                           for key, value in stored.items())

            # Both workers accept the licence (and cache the verdict) ...
            licence = licences[0]
            for worker in (first, second):
                with serve.only(worker):
                    assert "TOTAL_PASSED" == (await verify(licence))["indication"]
            # ... until its signing anchor is revoked through the first.
            change = {"kind": "revoke-anchor", "region_code": "310000", "kid": sh.licence_kid,
                      "reason": "key-compromise"}
            with serve.only(first):
                async with http.post(f"{serve.base}/v1/admin/proposals",
                                     headers={"Authorization": f"Bearer {proposer}"},
                                     json={"changes": [change], "note": "key leaked"}) as resp:
                    assert 201 == resp.status, await resp.text()
                    proposal = await resp.json()
                async with http.post(
                        f"{serve.base}/v1/admin/proposals/{proposal['id']}/approve",
                        headers={"Authorization": f"Bearer {approver}"}) as resp:
                    assert 200 == resp.status, await resp.text()
                applied = time.monotonic()
                answer = await verify(licence)
                assert ("REVOKED", 2) == (answer["sub_indication"], answer["trust_list_version"])
            with serve.only(second):
                answer = await verify(licence)
                while answer["sub_indication"] != "REVOKED" and time.monotonic() - applied < 5:
                    await asyncio.sleep(0.05)
                    answer = await verify(licence)
            assert ("REVOKED", 2) == (answer["sub_indication"], answer["trust_list_version"])

            # A worker killed outright is replaced.
            os.kill(second, signal.SIGKILL)
            replaced: list[int] = []
            for _ in range(100):
                replaced = [pid for pid in serve.workers() if pid not in (first, second)]
                if replaced:
                    break
                await asyncio.sleep(0.1)
            assert 1 == len(replaced)
            with serve.only(replaced[0]):
                await _ready(http, serve.base)

        # SIGTERM: both workers stop, the supervisor exits 0, within a few seconds.
        workers = serve.workers()
        stopping = time.monotonic()
        serve.proc.send_signal(signal.SIGTERM)
        assert 0 == await asyncio.to_thread(serve.proc.wait, 15)
        assert time.monotonic() - stopping < 5
        assert not _running(workers)
    finally:
        serve.stop()

    # One audit entry per verification request: none lost, none twice; the log verifies.
    checked = _cli("audit", "verify", "--quiet", "--data-dir", str(data))
    assert 0 == checked.returncode, checked.stderr
    listed = _cli("audit", "query", "--event-type", "verification", "--limit", "100000",
                  "--data-dir", str(data))
    assert 0 == listed.returncode, listed.stderr
    ids = [orjson.loads(line)["record"]["request_id"] for line in listed.stdout.splitlines()]
    logged = sorted(rid for rid in ids if rid.startswith("workers-test-"))
    assert sent == logged
    # The trust-list file was imported once at start-up, not once per worker.
    loaded = _cli("audit", "query", "--event-type", "trust-list-loaded", "--data-dir", str(data))
    assert 1 == len(loaded.stdout.splitlines())


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
async def test_two_workers_on_postgresql_keep_one_entry_per_request(
        tmp_path: Path, redis_url: str, postgres_dsn: str,
        federation: RunningFederation) -> None:
    """On PostgreSQL too: concurrent verifications through both workers, one audit entry
    each (the advisory lock serialises the workers' batches), and `audit verify` passes."""
    sh = federation.federation["310000"]
    now = datetime.now(UTC)
    trust = tmp_path / "trust.json"
    trust.write_bytes(orjson.dumps(federation.federation.trust_list(
        version=1, issued_at=now - timedelta(hours=1), next_update=now + timedelta(days=3))))
    data = tmp_path / "data"
    env = {**os.environ, "ECERT_POSTGRES_DSN": postgres_dsn}
    create_data_folder(data)
    made = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "gateway", "clients", "add", "window",
                         "--data-dir", str(data)],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert 0 == made.returncode, made.stderr
    client_key = made.stdout.strip().splitlines()[-1]
    serve = Serve(data, trust, _database(redis_url, 9), tmp_path / "serve.log",
                  postgres_dsn=postgres_dsn)
    sent = [f"pg-workers-{n:04d}" for n in range(120)]
    try:
        connector = aiohttp.TCPConnector(force_close=True, limit=24)
        async with aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT) as http:
            await _both_ready(serve, http)
            licences = [sh.issue().token for _ in range(10)]

            async def one(n: int, request_id: str) -> int:
                async with http.post(f"{serve.base}/v1/verifications",
                                     headers={"Authorization": f"Bearer {client_key}",
                                              "X-Request-Id": request_id},
                                     json={"credential": licences[n % 10]}) as resp:
                    return resp.status

            assert {200} == set(await asyncio.gather(*(one(n, r) for n, r in enumerate(sent))))
        served = serve.answered_by()
        assert served.get(0, 0) > 0
        assert served.get(1, 0) > 0
        serve.proc.send_signal(signal.SIGTERM)
        assert 0 == await asyncio.to_thread(serve.proc.wait, 15)
    finally:
        serve.stop()
    checked = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "gateway", "audit", "verify", "--quiet",
                         "--data-dir", str(data)],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert 0 == checked.returncode, checked.stderr
    listed = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "gateway", "audit", "query", "--event-type",
                         "verification", "--limit", "100000", "--data-dir", str(data)],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    ids = [orjson.loads(line)["record"]["request_id"] for line in listed.stdout.splitlines()]
    assert sent == sorted(rid for rid in ids if rid.startswith("pg-workers-"))


@pytest.mark.slow
@pytest.mark.redis
async def test_a_worker_that_cannot_start_stops_the_serve(tmp_path: Path, redis_url: str
                                                          ) -> None:
    """A --trust-list the workers refuse: the serve exits 1 with the reason in its log,
    rather than restarting workers that fail the same way (or that serve without it)."""
    trust = tmp_path / "trust.json"
    trust.write_text("{not json", encoding="utf-8")
    serve = Serve(tmp_path / "data", trust, _database(redis_url, 10), tmp_path / "serve.log")
    try:
        assert 1 == await asyncio.to_thread(serve.proc.wait, 30)
    finally:
        serve.stop()
    log = (await asyncio.to_thread(serve.log.read_text)).splitlines()
    assert any('"worker failed to start: stopping"' in line for line in log)
    assert not any('"worker ended; restarting it"' in line for line in log)


class TestRefusals:
    """What ``--workers`` refuses, before anything starts."""

    def test_more_than_one_worker_needs_redis(self, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
        """Without redis_url, workers > 1 exits 1 with a line saying why; nothing serves."""
        port = free_port()
        code = main(["serve", "--workers", "2", "--listen", f"127.0.0.1:{port}",
                     "--data-dir", str(tmp_path / "data")])
        assert 1 == code
        err = capsys.readouterr().err
        assert err.startswith("ecert-gateway serve: workers = 2 needs redis_url")
        assert not (tmp_path / "data").exists()

    @pytest.mark.parametrize("workers", ["0", "257", "-1"])
    def test_workers_out_of_range(self, tmp_path: Path, workers: str) -> None:
        """workers is 1 to 256."""
        with pytest.raises(SettingsError, match="workers must be between 1 and 256"):
            load_settings({"ECERT_WORKERS": workers, "ECERT_DATA_DIR": str(tmp_path)}, None)


class TestSharedRateLimit:
    """The partners' rate limit kept in Redis."""

    async def test_redis_down_keeps_a_share_of_the_limit_per_worker(self) -> None:
        """Redis unreachable: each of 2 workers allows half the burst, then refuses."""
        client = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_timeout=0.2,
                                socket_connect_timeout=0.2)
        limiter = RedisRateLimiter(client, 0.001, 4, share=2)
        try:
            waits = [await limiter.acquire("310000") for _ in range(3)]
        finally:
            await limiter.close()
        assert waits[:2] == [None, None]
        assert waits[2] is not None
        assert waits[2] > 0

    @pytest.mark.redis
    async def test_one_bucket_for_every_limiter_on_one_redis(self, redis_url: str) -> None:
        """Two limiters (two workers) on one Redis spend from one bucket per partner."""
        url = _database(redis_url, 8)
        region = f"test-{os.getpid()}-{time.monotonic_ns()}"
        limiters = [RedisRateLimiter(aioredis.Redis.from_url(url), 0.001, 3, share=2)
                    for _ in range(2)]
        try:
            waits = [await limiters[n % 2].acquire(region) for n in range(4)]
        finally:
            for limiter in limiters:
                await limiter.close()
        assert [None, None, None] == waits[:3]
        assert waits[3] is not None
        assert waits[3] > 0
