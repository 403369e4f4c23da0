"""``python -m bench._inproc``: the in-process measurements (no HTTP), one JSON line out.

* ``es256``: a loop of raw ``cryptography`` ES256 verifications over the naive
  pool's licences (signing input and DER signature prepared beforehand), on one
  core: the ceiling of any verifier in Python on this machine.
* ``sm2``: a loop of SM2SM3 verifications through the gateway's own signature
  path (``trust.key_from_jwk(...).verify``: SM3(Z_A ‖ input) and OpenSSL's SM2
  through ctypes) over the SM2 pool's licences, on one core, and in the same
  run ``openssl speed -seconds D sm2`` (its verify/s): the ratio is the
  issue's speed goal (at least 0.5).
* ``audit``: appends/s through ``AuditService`` (the group-committing writer,
  SQLite with ``synchronous=FULL``) with many concurrent appenders for a fixed
  time, with its CPU per record (the process, and the event loop's thread alone);
  ``--proved`` asks each record's receipt (``append_proved`` and its JSON),
  ``--group N`` hands N records over at once (``append_proved_many``, as a batch
  request does); then the time of ``AuditService.entry(i)`` (store read +
  inclusion proof against the latest checkpoint) at the tree size reached.
* ``audit-scale``: a log of N records (default 1,000,000) built by batch inserts
  through the store (records made by one process per core), then the service's
  first start (tree rebuilt from every stored leaf hash, chunk nodes kept), its
  start-up with the kept nodes (seconds, CPU seconds, RSS, tree bytes per million
  entries), inclusion proofs (``AuditService.entry``) and consistency proofs to
  the latest size (p50/p99, CPU per proof), reads of one random 4 KiB page of the
  log's database with the kernel's read-ahead off (p50/p99: the disk's own latency,
  under any proof that reads the disk), and ``verify_log`` over the whole log
  (every leaf recomputed from the stored record bytes, every checkpoint checked).
  With ``--data-dir`` the log is kept; a folder that holds one is measured as is.
* ``translate``: ``Registry.translate`` calls/s on the warm sample registry
  (``config/registry``), cycling through every Huzhou matter and partner region,
  both directions, on one core.
* ``verifier``: the verifier's Python work beside the ES256 call it makes, in one
  run on one core: licences issued by the mock federation (two regions, each
  with its status list already held, as the gateway holds it) verified with
  ``Verifier.start`` + ``Pending.finish``, and the raw ``cryptography`` ES256
  verification of the very same signing inputs and signatures with the same
  keys; the two alternate every 50 licences, CPU time (``time.process_time``)
  per licence, medians over rounds. The Python work is their difference; the issue's goal is
  a ratio (Python work ÷ ES256) of at most 1.
* ``service``: what ``VerificationService`` costs per licence beyond the verifier, with
  no HTTP in the way (a development measurement: quieter than the HTTP rows, and
  without their load generator). A data folder made for it, the verdict cache off,
  the mock federation's status lists fetched once and held; fresh licences every
  round, issued before it is timed. Per licence, in interleaved rounds: the raw
  ``cryptography`` ES256 verification, the verifier (``Verifier.start`` +
  ``Pending.finish``, status lists held), ``verify_batch`` with batches of 100 and
  ``verify`` with 32 callers at once (as served: the requests of one turn of the
  event loop verified together), each to its durable audit record and log-backed
  receipt; and the same with every request verified by itself (``alone``: the
  service's ``coalesce`` off, as before it was on); and a tier-1 cache hit
  (``hit``: a second gateway with the verdict cache on, 32 callers cycling over 100
  licences it verified once, each hit to its own durable record and receipt;
  ``hit_vs_single`` is its cost ÷ ``verify``'s). CPU time is the process's
  (every thread: the audit writer's commits and fsyncs included). ``batch_ratio``
  (raw ES256 ÷ batch) is what the HTTP batch row's goal compares, without HTTP: an
  upper bound for that row.
* ``trust-load``: ``TrustList.from_json`` (JSON parse, schema and every anchor
  validated) of the trust-list files given, each loaded in turn (8 partners, 43
  partners, 8, 43, ...) many times; the median and p90 of each, in ms.

``service``, ``audit`` and ``audit-scale`` run on the event loop ``serve`` runs the
gateway on (uvloop when installed, as by default), and name it (``event_loop``):
how their thread hand-offs wake the loop is part of what they measure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import orjson
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from gateway.audit import (
    ActorKind,
    AuditEvent,
    AuditService,
    EventType,
    open_store,
    verify_log,
)
from gateway.audit._keys import HmacKeyring
from gateway.audit._leaves import LEAVES_FILE
from gateway.audit._nodes import NODES_FILE
from gateway.audit._record import Pseudonymiser, Uuid7Generator, build_record, encode_record
from gateway.audit._service import _row
from gateway.audit._store import EntryRow
from gateway.settings import load_settings
from gateway.verification.service import VerificationRequest
from gateway.web.app import create_app
from gateway.web.appkeys import VERIFICATION_KEY
from gateway.web.runner import loop_factory
from mocks import Federation, b64url_decode, serve_federation
from registry import NATIONAL, MatterCode, RegionCode, Registry, load_bundle
from trust import Alg, TrustList, Verdict, Verifier, key_from_jwk, parse_status_list

ROOT = Path(__file__).resolve().parents[1]


def _prepared(pool: Path, limit: int = 5000) -> list[tuple[bytes, bytes]]:
    prepared = []
    for line in pool.read_bytes().splitlines()[:limit]:
        token = orjson.loads(line)["credential"]
        head, payload, signature = token.split(".")
        raw = b64url_decode(signature)
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        prepared.append((f"{head}.{payload}".encode("ascii"), der))
    return prepared


def es256(pool: Path, jwk_file: Path, duration: float, warmup: float) -> dict[str, Any]:
    """Verifications/s of the raw loop."""
    key = jwt.PyJWK(orjson.loads(jwk_file.read_bytes()), algorithm="ES256").key
    assert isinstance(key, ec.EllipticCurvePublicKey)
    items = _prepared(pool)
    algorithm = ec.ECDSA(hashes.SHA256())
    result = {}
    for phase, seconds in (("warm", warmup), ("measure", duration)):
        count = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            for message, der in items[count % len(items):][:256]:
                key.verify(der, message, algorithm)  # raises on a bad signature
                count += 1
        result[phase] = (count, time.perf_counter() - start)
    count, elapsed = result["measure"]
    return {"count": count, "seconds": elapsed, "rate": count / elapsed}


_RawCheck = tuple[ec.EllipticCurvePublicKey, bytes, bytes]


def _raw_checks(tokens: Sequence[str], trust_list: TrustList) -> list[_RawCheck]:
    """Each token's anchor key, DER signature and signing input, for raw ES256 loops."""
    raw: list[_RawCheck] = []
    for token in tokens:
        head, body, sig = token.split(".")
        kid = orjson.loads(b64url_decode(head))["kid"]
        anchor_key = trust_list.anchors(kid)[0].key
        assert anchor_key is not None
        public_key = anchor_key.public_key
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        signature = b64url_decode(sig)
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                   int.from_bytes(signature[32:], "big"))
        raw.append((public_key, der, f"{head}.{body}".encode("ascii")))
    return raw


def verifier(licences: int, rounds: int, seed: int = 22) -> dict[str, Any]:
    """CPU µs per licence of ``Verifier.start`` + ``Pending.finish`` and of the raw ES256
    verification of the same licences, interleaved rounds; medians and the ratio."""
    federation = Federation.standard(seed=seed, codes=["310000", "320500"])
    now = datetime.now(UTC)
    trust_list = TrustList.from_json(federation.trust_list(
        version=3, issued_at=now - timedelta(days=1), next_update=now + timedelta(days=6)))
    regions = [federation["310000"], federation["320500"]]
    tokens = [regions[i % 2].issue().token for i in range(licences)]
    statuses = {r.status_uri: parse_status_list(r.status_list_token(), trust_list=trust_list,
                                                region=r.region_code, uri=r.status_uri)
                for r in regions}
    lean = Verifier(trust_list)
    algorithm = ec.ECDSA(hashes.SHA256())
    raw = _raw_checks(tokens, trust_list)
    at = datetime.now(UTC)
    for token in tokens:  # every licence passes: the measured path is the common one
        verdict = lean.check(token, at=at, status=statuses)
        if not verdict.passed:
            raise AssertionError(f"a bench licence does not pass: {verdict.checks}")

    block = 50

    def one_round() -> tuple[float, float]:
        """CPU µs per licence of both, the two alternating every ``block`` licences so
        that a change of load on the machine reaches both alike."""
        spent_lean = spent_raw = 0.0
        clock = time.process_time
        for first in range(0, len(tokens), block):
            start = clock()
            for token in tokens[first:first + block]:
                pending = lean.start(token, at=at)
                if not isinstance(pending, Verdict):
                    ref = pending.status_needed
                    pending.finish(None if ref is None else statuses[ref.uri])
            middle = clock()
            for public_key, der, message in raw[first:first + block]:
                public_key.verify(der, message, algorithm)
            spent_lean += middle - start
            spent_raw += clock() - middle
        return spent_lean / len(tokens) * 1e6, spent_raw / len(tokens) * 1e6

    one_round()
    lean_us: list[float] = []
    raw_us: list[float] = []
    python_us: list[float] = []
    for _ in range(rounds):
        one, two = one_round()
        lean_us.append(one)
        raw_us.append(two)
        python_us.append(one - two)
    python = statistics.median(python_us)
    es256_us = statistics.median(raw_us)
    return {"licences": licences, "rounds": rounds,
            "verifier_us": round(statistics.median(lean_us), 1),
            "es256_us": round(es256_us, 1),
            "python_us": round(python, 1),
            "python_us_rounds": [round(v, 1) for v in python_us],
            "ratio": round(python / es256_us, 3),
            "ratio_rounds": [round(p / r, 3) for p, r in zip(python_us, raw_us, strict=True)]}


_SERVICE_USE_CAUSE = "办理跨省通办事项（基准测试）"
_SERVICE_BATCH = 100
_SERVICE_CALLERS = 32
_SERVICE_HIT_POOL = 100
"""Licences the tier-1 hit path cycles over (verified once before the rounds)."""


async def service(licences: int, rounds: int, seed: int = 22) -> dict[str, Any]:
    """CPU µs per licence of raw ES256, the verifier, ``verify_batch`` and ``verify``
    (module doc), interleaved rounds; medians and ratios."""
    federation = Federation.standard(seed=seed, codes=["310000", "320500"])
    regions = [federation["310000"], federation["320500"]]
    async with serve_federation(federation) as served:
        now = datetime.now(UTC)
        trust_list = TrustList.from_json(served.federation.trust_list(
            version=1, issued_at=now - timedelta(hours=1), next_update=now + timedelta(days=1)))
        with (tempfile.TemporaryDirectory(prefix="bench-service-") as tmp,
              tempfile.TemporaryDirectory(prefix="bench-service-hits-") as tmp_hits):
            settings = load_settings({}, None, {"data_dir": Path(tmp), "access_log": False,
                                                "cache_enabled": False})
            app = create_app(settings, trust_list=trust_list)
            # The tier-1 hit path: a gateway of its own with the verdict cache on, so
            # the other paths' fresh licences are verified as they were, without a cache.
            cached = create_app(load_settings({}, None, {"data_dir": Path(tmp_hits),
                                                         "access_log": False}),
                                trust_list=trust_list)
            # The apps' start-up and clean-up.
            async with TestClient(TestServer(app)), TestClient(TestServer(cached)):
                return await _service_rounds(app[VERIFICATION_KEY], regions, trust_list,
                                             licences, rounds, cached=cached[VERIFICATION_KEY])


async def _service_rounds(verification: Any, regions: list[Any], trust_list: TrustList,
                          licences: int, rounds: int, *, cached: Any) -> dict[str, Any]:
    clock = time.process_time

    def issue(n: int) -> list[str]:
        return [regions[i % 2].issue().token for i in range(n)]

    def requests(tokens: list[str]) -> list[VerificationRequest]:
        return [VerificationRequest(credential=t, use_cause=_SERVICE_USE_CAUSE) for t in tokens]

    async def batches(tokens: list[str]) -> float:
        items = requests(tokens)
        start = clock()
        for first in range(0, len(items), _SERVICE_BATCH):
            answers = await verification.verify_batch(items[first:first + _SERVICE_BATCH],
                                                      actor="bench")
            if answers[0]["indication"] != "TOTAL_PASSED":
                raise AssertionError(f"a bench licence does not pass: {answers[0]}")
        return (clock() - start) / len(items) * 1e6

    async def singles(tokens: list[str], *, together: bool) -> float:
        queue = deque(requests(tokens))

        async def caller() -> None:
            while queue:
                answer = await verification.verify(queue.popleft(), actor="bench")
                if answer["indication"] != "TOTAL_PASSED":
                    raise AssertionError(f"a bench licence does not pass: {answer}")

        verification.coalesce = together  # False: each request verified by itself
        try:
            start = clock()
            await asyncio.gather(*(caller() for _ in range(_SERVICE_CALLERS)))
            return (clock() - start) / len(tokens) * 1e6
        finally:
            verification.coalesce = True

    async def hits(pool: list[VerificationRequest], count: int) -> float:
        queue = deque(pool[i % len(pool)] for i in range(count))

        async def caller() -> None:
            while queue:
                answer = await cached.verify(queue.popleft(), actor="bench")
                if not answer["cached"] or answer["indication"] != "TOTAL_PASSED":
                    raise AssertionError(f"a bench licence is not a passing hit: {answer}")

        start = clock()
        await asyncio.gather(*(caller() for _ in range(_SERVICE_CALLERS)))
        return (clock() - start) / count * 1e6

    def verifier_alone(tokens: list[str]) -> float:
        snapshot = verification.trust.snapshot
        held = verification.status.held
        at = datetime.now(UTC)
        start = clock()
        for token in tokens:
            pending = snapshot.verifier.start(token, at=at)
            if not isinstance(pending, Verdict):
                ref = pending.status_needed
                verdict = pending.finish(None if ref is None else held(ref.uri))
                if not verdict.passed:
                    raise AssertionError(f"a bench licence does not pass: {verdict.checks}")
        return (clock() - start) / len(tokens) * 1e6

    def es256(tokens: list[str]) -> float:
        raw = _raw_checks(tokens, trust_list)
        algorithm = ec.ECDSA(hashes.SHA256())
        start = clock()
        for public_key, der, message in raw:
            public_key.verify(der, message, algorithm)
        return (clock() - start) / len(raw) * 1e6

    # Every round's licences are issued before the status lists are first fetched, so
    # the lists the service holds (and ``verifier_alone`` reads) have their entries.
    measured: dict[str, list[float]] = {"es256": [], "verifier": [], "batch": [], "single": [],
                                        "alone": [], "hit": []}
    issued = [{name: issue(licences) for name in measured if name != "hit"}
              for _ in range(rounds)]
    warm = [issue(2 * _SERVICE_BATCH), issue(2 * _SERVICE_CALLERS), issue(2 * _SERVICE_CALLERS)]
    hit_pool = requests(issue(_SERVICE_HIT_POOL))
    await batches(warm[0])  # status lists fetched, paths and writer warm
    await singles(warm[1], together=True)
    await singles(warm[2], together=False)
    for item in hit_pool:  # each kept (decoded) in the cached gateway's tier 1
        await cached.verify(item, actor="bench")
    await hits(hit_pool, 2 * _SERVICE_CALLERS)
    for pools in issued:  # the hit path reuses its pool
        measured["es256"].append(es256(pools["es256"]))
        measured["verifier"].append(verifier_alone(pools["verifier"]))
        measured["batch"].append(await batches(pools["batch"]))
        measured["single"].append(await singles(pools["single"], together=True))
        measured["alone"].append(await singles(pools["alone"], together=False))
        measured["hit"].append(await hits(hit_pool, licences))
    med = {name: statistics.median(values) for name, values in measured.items()}
    return {
        "licences": licences, "rounds": rounds,
        **{f"{name}_us": round(value, 1) for name, value in med.items()},
        **{f"{name}_us_rounds": [round(v, 1) for v in values]
           for name, values in measured.items()},
        "verifier_python_us": round(med["verifier"] - med["es256"], 1),
        "batch_beyond_verifier_us": round(med["batch"] - med["verifier"], 1),
        "single_beyond_verifier_us": round(med["single"] - med["verifier"], 1),
        "alone_beyond_verifier_us": round(med["alone"] - med["verifier"], 1),
        "hit_vs_single": round(med["hit"] / med["single"], 3),
        "single_vs_alone": round(med["single"] / med["alone"], 3),
        "single_vs_alone_rounds": [round(c / s, 3) for c, s in
                                   zip(measured["single"], measured["alone"], strict=True)],
        "batch_ratio": round(med["es256"] / med["batch"], 3),
        "batch_ratio_rounds": [round(e / b, 3) for e, b in
                               zip(measured["es256"], measured["batch"], strict=True)],
    }


def _event(n: int) -> AuditEvent:
    return AuditEvent(
        event_type=EventType.VERIFICATION,
        actor_kind=ActorKind.LOCAL_SYSTEM,
        actor_id=f"bench-{n % 97}",
        at=datetime.now(UTC),
        source_addr="127.0.0.1",
        outcome="TOTAL_PASSED",
        cn_status=0,
        use_cause="办理跨省通办事项（基准测试）",
        licence_identifier=f"1.2.156.3005.2.11100000000013338W.{n:08d}",
        licence_type="11100000000013338W",
        issuer_region="310000",
        partner_region="310000",
        trust_list_version=1,
        latency_ms=1.0,
        personal={"holder_code": f"3105021990010{n % 100000:05d}", "holder_name": "张三"},
        details={"credential_sha256": f"{n:064x}"},
    )


async def audit(data_dir: Path, appenders: int, duration: float, warmup: float,
                proofs: int, *, proved: bool = False, group: int = 1) -> dict[str, Any]:
    """Appends/s with ``appenders`` concurrent appenders, then proof times at the size reached.

    ``proved``: each appender asks for the receipt (``append_proved``, its JSON made as an
    answer makes it); ``group`` > 1: each appender hands over ``group`` records at once
    (``append_proved_many``/``append_many``, as a batch request does). The CPU per record
    is the process's (every thread) and the event loop thread's alone."""
    async with AuditService(data_dir=data_dir, checkpoint_interval_s=1.0) as service:
        counter = 0

        async def appender(deadline: float) -> None:
            nonlocal counter
            while time.perf_counter() < deadline:
                if group > 1:
                    events = [_event(counter + i) for i in range(group)]
                    counter += group
                    if proved:
                        for entry in await service.append_proved_many(events):
                            entry.to_json()
                    else:
                        await service.append_many(events)
                else:
                    counter += 1
                    if proved:
                        (await service.append_proved(_event(counter))).to_json()
                    else:
                        await service.append(_event(counter))

        async def phase(seconds: float) -> tuple[int, float, float, float]:
            before = counter
            start, cpu, loop_cpu = time.perf_counter(), _cpu_s(), time.thread_time()
            deadline = start + seconds
            await asyncio.gather(*(appender(deadline) for _ in range(appenders)))
            return (counter - before, time.perf_counter() - start, _cpu_s() - cpu,
                    time.thread_time() - loop_cpu)

        await phase(warmup)
        appended, elapsed, cpu_s, loop_cpu_s = await phase(duration)
        await service.publish()
        size = service.tree_size
        rng = random.Random(7)
        times = []
        for _ in range(proofs):
            index = rng.randrange(size)
            start = time.perf_counter()
            found = await service.entry(index)
            times.append(time.perf_counter() - start)
            assert found is not None
            assert found.tree_size >= index
    times.sort()
    return {
        "appends": appended, "seconds": elapsed, "rate": appended / elapsed,
        "appenders": appenders, "proved": proved, "group": group, "tree_size": size,
        "cpu_us_per_record": cpu_s / appended * 1e6,
        "loop_cpu_us_per_record": loop_cpu_s / appended * 1e6,
        "proof_p50_ms": statistics.median(times) * 1000,
        "proof_p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))] * 1000,
    }


_BUILD_BATCH = 20_000


def _build_rows(data_dir: Path, start: int, stop: int) -> list[tuple[Any, ...]]:
    """Records ``start..stop-1`` of the bench log, built as the service builds them
    (pseudonymised, canonical bytes, leaf hash), as plain tuples to send between processes."""
    pseudonymiser = Pseudonymiser(HmacKeyring.load(data_dir))
    new_id = Uuid7Generator(lambda: time.time_ns() // 1_000_000)
    rows = []
    for n in range(start, stop):
        record = build_record(_event(n), event_id=new_id(), pseudonymiser=pseudonymiser,
                              gateway="330500")
        row = _row(record, encode_record(record))
        rows.append((row.event_id, row.ts_ms, row.event_type, row.outcome, row.partner,
                     row.matter, row.record, row.leaf_hash))
    return rows


def _build_log(data_dir: Path, entries: int) -> tuple[float, float]:
    """Append ``entries`` records through the store in batches of 20,000, the records made by
    one process per core; (seconds, CPU seconds of this process and its workers)."""
    start, cpu = time.perf_counter(), _cpu_s(children=True)
    store = open_store(data_dir, None)
    HmacKeyring.load(data_dir)  # made once here, before the workers read it
    ranges = [(n, min(entries, n + _BUILD_BATCH)) for n in range(0, entries, _BUILD_BATCH)]
    workers = max(1, min(os.cpu_count() or 1, 4))
    with ProcessPoolExecutor(workers) as pool:
        # At most 2 batches per worker in flight: memory stays a few batches.
        pending: deque[Future[list[tuple[Any, ...]]]] = deque()
        for first, stop in ranges:
            pending.append(pool.submit(_build_rows, data_dir, first, stop))
            if len(pending) >= 2 * workers:
                store.append([EntryRow(*row) for row in pending.popleft().result()], None)
        while pending:
            store.append([EntryRow(*row) for row in pending.popleft().result()], None)
    store.close()
    return time.perf_counter() - start, _cpu_s(children=True) - cpu


def _cpu_s(*, children: bool = False) -> float:
    """User + system CPU seconds of this process (and of its finished children)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    if children:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        total += kids.ru_utime + kids.ru_stime
    return total


def _rss_mb() -> float:
    """Resident memory of this process now, MB (Linux; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def _db_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.glob("audit.db*"))


def _file_bytes(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _drop_page_cache() -> bool:
    """Write dirty pages out and drop the clean ones from the page cache (Linux, root):
    what follows reads the log from the disk. False when not permitted."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError:
        return False
    return True


_PAGE = 4096


def _cold_page_reads(path: Path, count: int, seed: int = 13) -> list[float]:
    """Seconds of each of ``count`` reads of one random 4 KiB page of ``path``, the
    kernel's read-ahead off (``POSIX_FADV_RANDOM``): what one read of the disk costs when
    the page cache was dropped just before, the floor under a proof read from it."""
    pages = path.stat().st_size // _PAGE
    rng = random.Random(seed)
    offsets = [rng.randrange(pages) * _PAGE for _ in range(count)]
    times: list[float] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        for offset in offsets:
            begin = time.perf_counter()
            os.pread(fd, _PAGE, offset)
            times.append(time.perf_counter() - begin)
    finally:
        os.close(fd)
    return times


def _pct(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


async def audit_scale(data_dir: Path, entries: int, proofs: int,
                      cold: bool = False) -> dict[str, Any]:
    """Start-up, proof and whole-log verification times over a log of ``entries``.

    A data folder that already holds a log is measured as it is (no build): build a large
    log once with ``--data-dir`` and measure it again after a change. ``cold``: the page
    cache is dropped before the start-up, before each series of proofs and before the
    verification (when permitted: ``page_cache_dropped`` says whether it was)."""
    store = open_store(data_dir, None)
    held = store.size()
    store.close()
    build_s = build_cpu_s = None
    if held == 0:
        build_s, build_cpu_s = _build_log(data_dir, entries)
    else:
        entries = held
    first_startup_s = None
    if not (data_dir / NODES_FILE).exists() or not (data_dir / LEAVES_FILE).exists():
        # The first start of this release on a log: the tree is rebuilt from every stored
        # leaf hash (once), its chunk nodes and the leaf hashes kept for the starts after it
        # (with kept nodes and no leaf file, the file is filled from the store: waited for).
        started = time.perf_counter()
        first = AuditService(data_dir=data_dir)
        await first.start()
        await first.leaves_kept()
        await first.stop()
        first_startup_s = time.perf_counter() - started
    loads = [os.getloadavg()[0]]
    dropped = cold and _drop_page_cache()
    rss_before = _rss_mb()
    started, cpu = time.perf_counter(), _cpu_s()
    service = AuditService(data_dir=data_dir)
    await service.start()
    startup_s, startup_cpu_s = time.perf_counter() - started, _cpu_s() - cpu
    tree_bytes = service.tree_memory_bytes()
    rss_after = _rss_mb()
    checkpoint = await service.publish()
    assert checkpoint is not None
    assert checkpoint.size == entries
    assert await service.leaves_kept() == entries
    rng = random.Random(11)
    picks = [rng.randrange(entries) for _ in range(proofs)]
    dropped = dropped and (not cold or _drop_page_cache())
    times = []
    cpu = _cpu_s()
    for index in picks:
        begin = time.perf_counter()
        found = await service.entry(index)
        times.append(time.perf_counter() - begin)
        assert found is not None
    proof_cpu_ms = (_cpu_s() - cpu) / proofs * 1000
    # Consistency from an older tree (a receipt's, an auditor's copy) to the latest.
    pairs = [rng.randrange(1, entries + 1) for _ in range(proofs)]
    dropped = dropped and (not cold or _drop_page_cache())
    ctimes = []
    cpu = _cpu_s()
    for older in pairs:
        begin = time.perf_counter()
        await service.consistency(older, entries)
        ctimes.append(time.perf_counter() - begin)
    consistency_cpu_ms = (_cpu_s() - cpu) / proofs * 1000
    verifier = service.verifier
    await service.stop()
    # The disk's own latency, measured the same way: one page read a time, cache dropped.
    dropped = dropped and (not cold or _drop_page_cache())
    page_times = _cold_page_reads(data_dir / "audit.db", proofs)
    loads.append(os.getloadavg()[0])
    dropped = dropped and (not cold or _drop_page_cache())
    store = open_store(data_dir, None)
    begin, cpu = time.perf_counter(), _cpu_s(children=True)
    report = verify_log(store, verifier)
    verify_s, verify_cpu_s = time.perf_counter() - begin, _cpu_s(children=True) - cpu
    store.close()
    assert report.ok, report.reason
    db_bytes = await asyncio.get_running_loop().run_in_executor(None, _db_bytes, data_dir)
    return {
        "entries": entries, "build_s": build_s, "build_cpu_s": build_cpu_s,
        "first_startup_s": first_startup_s, "startup_s": startup_s,
        "startup_cpu_s": startup_cpu_s,
        "proof_p50_ms": statistics.median(times) * 1000, "proof_p99_ms": _pct(times, 0.99),
        "proof_cpu_ms": proof_cpu_ms,
        "consistency_p50_ms": statistics.median(ctimes) * 1000,
        "consistency_p99_ms": _pct(ctimes, 0.99), "consistency_cpu_ms": consistency_cpu_ms,
        "proof_p90_ms": _pct(times, 0.90), "consistency_p90_ms": _pct(ctimes, 0.90),
        "page_read_p50_ms": statistics.median(page_times) * 1000,
        "page_read_p99_ms": _pct(page_times, 0.99),
        "verify_s": verify_s, "verify_cpu_s": verify_cpu_s, "verified": report.entries,
        "tree_mb_per_million": tree_bytes / 1e6 / (entries / 1e6),
        "rss_mb": rss_after, "rss_startup_growth_mb": rss_after - rss_before,
        "db_mb": db_bytes / 1e6,
        "leaves_mb": _file_bytes(data_dir / LEAVES_FILE) / 1e6,
        "nodes_mb": _file_bytes(data_dir / NODES_FILE) / 1e6,
        "proofs": proofs, "page_cache_dropped": dropped, "cold": cold,
        "load_1min": loads,
    }


def translate_calls() -> tuple[Registry, list[tuple[RegionCode, MatterCode, RegionCode]]]:
    """The sample registry and its distinct translations of today: every Huzhou matter
    into every partner's catalogue and every partner's matter into Huzhou's (the calls the
    in-process rows cycle, and the bodies of the HTTP translation row)."""
    folder = ROOT / "config" / "registry"
    files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
             if p.is_file()}
    loaded: Registry = load_bundle(files)
    today = datetime.now(UTC).date()
    huzhou_region = RegionCode("330500")
    huzhou = [MatterCode(c.code) for c in loaded.catalogue(huzhou_region, at=today).concepts]
    partners = [r for r in loaded.regions() if r not in (huzhou_region, NATIONAL)]
    calls: list[tuple[RegionCode, MatterCode, RegionCode]] = []
    for partner in partners:
        calls.extend((huzhou_region, code, partner) for code in huzhou)
        partner_codes = [MatterCode(c.code)
                         for c in loaded.catalogue(partner, at=today).concepts]
        calls.extend((partner, code, huzhou_region) for code in partner_codes)
    return loaded, calls


def translate(duration: float, warmup: float) -> dict[str, Any]:
    """Warm ``Registry.translate`` calls per second over the sample registry.

    Measured twice: as the gateway runs it (answers memoised per source, code,
    target, date and conditions) and with the memo off: every call checks the code's
    validity and picks, by day and conditions, among the candidate matches built once
    per (source, code, target), as a first call of the day does.
    """
    loaded, calls = translate_calls()
    today = datetime.now(UTC).date()
    out: dict[str, Any] = {"distinct_calls": len(calls)}
    unmemoised = Registry(loaded.catalogues, loaded.maps, cache_size=0)
    for name, registry in (("rate", loaded), ("rate_unmemoised", unmemoised)):
        result: dict[str, tuple[int, float]] = {}
        for phase, seconds in (("warm", warmup), ("measure", duration)):
            count = 0
            start = time.perf_counter()
            deadline = start + seconds
            while time.perf_counter() < deadline:
                for source, code, target in calls:
                    registry.translate(source, code, target, at=today)
                count += len(calls)
            result[phase] = (count, time.perf_counter() - start)
        count, elapsed = result["measure"]
        out[name] = count / elapsed
    return out


def trust_load(files: Sequence[Path], repeat: int) -> dict[str, Any]:
    """Times of ``TrustList.from_json`` on each file's bytes, the files taken in turn."""
    documents = [path.read_bytes() for path in files]
    for raw in documents:  # warm: imports, first-call caches
        TrustList.from_json(raw)
    times: list[list[float]] = [[] for _ in documents]
    for _ in range(repeat):
        for n, raw in enumerate(documents):
            start = time.perf_counter()
            TrustList.from_json(raw)
            times[n].append(time.perf_counter() - start)
    lists = []
    for raw, each in zip(documents, times, strict=True):
        document = orjson.loads(raw)
        partners = document.get("partners", [])
        ordered = sorted(each)
        lists.append({
            "partners": len(partners),
            "anchors": sum(len(p.get("anchors", [])) for p in partners),
            "bytes": len(raw),
            "median_ms": statistics.median(each) * 1000,
            "p90_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))] * 1000,
            "loads": len(each),
        })
    return {"lists": lists}


def sm2(pool: Path, jwks_file: Path, duration: float, warmup: float) -> dict[str, Any]:
    """Verifications/s of SM2SM3 through the gateway's signature path, and OpenSSL's."""
    jwks = orjson.loads(jwks_file.read_bytes())
    keys = {kid: key_from_jwk(jwk) for kid, jwk in jwks.items()}
    items = []
    for line in pool.read_bytes().splitlines()[:5000]:
        token = orjson.loads(line)["credential"]
        head, payload, signature = token.split(".")
        kid = orjson.loads(b64url_decode(head))["kid"]
        items.append((keys[kid], f"{head}.{payload}".encode("ascii"), b64url_decode(signature)))
    if not items:
        raise ValueError(f"no licences in {pool}")
    result = {}
    for phase, seconds in (("warm", warmup), ("measure", duration)):
        count = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            for key, message, signature in items[count % len(items):][:256]:
                if not key.verify(Alg.SM2SM3, message, signature):
                    raise AssertionError("an SM2 licence of the pool does not verify")
                count += 1
        result[phase] = (count, time.perf_counter() - start)
    count, elapsed = result["measure"]
    return {"count": count, "seconds": elapsed, "rate": count / elapsed,
            "openssl": _openssl_sm2_verify_rate(max(1.0, duration / 2))}


_OPENSSL_SM2 = re.compile(r"SM2 \(CurveSM2\)\s+\S+s\s+\S+s\s+([0-9.]+)\s+([0-9.]+)")


def _openssl_sm2_verify_rate(duration: float) -> float | None:
    """``openssl speed -seconds D sm2``: verify/s (None without the command or its row).
    It signs for D seconds, then verifies for D seconds, on one core."""
    found = shutil.which("openssl")
    if found is None:
        return None
    done = subprocess.run([found, "speed", "-seconds", str(max(1, round(duration))), "sm2"],
                          capture_output=True, text=True, timeout=4 * duration + 60,
                          check=False)
    match = _OPENSSL_SM2.search(done.stdout)
    return None if match is None else float(match.group(2))


def _on_gateway_loop(coro: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Run ``coro`` on the event loop ``serve`` runs the gateway on with its default
    settings (``gateway.web.runner.loop_factory``: uvloop when installed), so that the
    services measured here hop between threads and wake as they do when served; the
    result names the loop (``event_loop``)."""
    # Settings need a data folder; only their ``uvloop`` is read, nothing is opened.
    name, factory = loop_factory(load_settings({}, None, {"data_dir": Path(".")}))
    with asyncio.Runner(loop_factory=factory) as runner:
        return {**runner.run(coro), "event_loop": name}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one in-process measurement and print its JSON summary."""
    parser = argparse.ArgumentParser(prog="python -m bench._inproc", description=__doc__)
    parser.add_argument("what", choices=["es256", "sm2", "audit", "audit-scale", "translate",
                                         "trust-load", "verifier", "service"])
    parser.add_argument("--licences", type=int, default=2000,
                        help="licences (verifier; service: of each kind, per round)")
    parser.add_argument("--rounds", type=int, default=9,
                        help="interleaved rounds (verifier, service)")
    parser.add_argument("--entries", type=int, default=1_000_000, help="audit-scale log size")
    parser.add_argument("--pool", type=Path, help="naive pool file (es256)")
    parser.add_argument("--jwk", type=Path, help="naive key (es256); SM2 keys by kid (sm2)")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--appenders", type=int, default=1000)
    parser.add_argument("--proofs", type=int, default=500)
    parser.add_argument("--proved", action="store_true",
                        help="audit: append_proved, with the receipt's JSON")
    parser.add_argument("--group", type=int, default=1,
                        help="audit: records each appender hands over at once")
    parser.add_argument("--data-dir", type=Path, help="audit data folder (default: a temp one)")
    parser.add_argument("--cold", action="store_true",
                        help="audit-scale: drop the page cache before start-up, proofs, verify")
    parser.add_argument("--lists", type=Path, nargs="+", help="trust-list files (trust-load)")
    parser.add_argument("--repeat", type=int, default=200, help="loads of each list (trust-load)")
    args = parser.parse_args(argv)
    if args.what == "verifier":
        result = verifier(args.licences, args.rounds)
    elif args.what == "service":
        result = _on_gateway_loop(service(args.licences, args.rounds))
    elif args.what == "trust-load":
        if not args.lists:
            parser.error("trust-load needs --lists")
        result = trust_load(args.lists, args.repeat)
    elif args.what == "translate":
        result = translate(args.duration, args.warmup)
    elif args.what == "audit-scale":
        with tempfile.TemporaryDirectory(prefix="bench-audit-scale-") as tmp:
            folder = args.data_dir or Path(tmp)
            result = _on_gateway_loop(audit_scale(folder, args.entries, args.proofs, args.cold))
    elif args.what == "es256":
        if args.pool is None or args.jwk is None:
            parser.error("es256 needs --pool and --jwk")
        result = es256(args.pool, args.jwk, args.duration, args.warmup)
    elif args.what == "sm2":
        if args.pool is None or args.jwk is None:
            parser.error("sm2 needs --pool and --jwk")
        result = sm2(args.pool, args.jwk, args.duration, args.warmup)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
            folder = args.data_dir or Path(tmp)
            result = _on_gateway_loop(audit(folder, args.appenders, args.duration,
                                            args.warmup, args.proofs, proved=args.proved,
                                            group=args.group))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
