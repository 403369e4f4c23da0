"""Acknowledged records survive SIGKILL, and the log stays consistent with its checkpoints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.audit import AuditService, open_store, verify_log
from gateway.audit._keys import load_signing_key
from trust.note import NoteSigner

ROOT = Path(__file__).resolve().parents[2]


def _start(data_dir: Path, dsn: str | None) -> subprocess.Popen[bytes]:
    """Start an appender and wait until its service runs."""
    args = [sys.executable, str(ROOT / "tests" / "audit" / "appender.py"), str(data_dir)]
    if dsn:
        args.append(dsn)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, env=env, cwd=ROOT)
    assert proc.stdout is not None
    try:
        assert b"ready\n" == proc.stdout.readline()
    except BaseException:
        proc.kill()
        proc.communicate(timeout=10)
        raise
    return proc


def _kill(proc: subprocess.Popen[bytes]) -> list[int]:
    """SIGKILL an appender; return the indices it acknowledged."""
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=10)
    acked = [int(line) for line in out.decode().split("\n")[:-1] if line.strip()]
    assert len(acked) > 50, "the appender made too little progress to test anything"
    return acked


def _run_and_kill(data_dir: Path, dsn: str | None, *, run_s: float = 1.2) -> list[int]:
    """Start the appender, let it work, SIGKILL it; return the indices it acknowledged."""
    proc = _start(data_dir, dsn)
    try:
        time.sleep(run_s)
    finally:
        acked = _kill(proc)
    return acked


async def _check(data_dir: Path, dsn: str | None, acked: list[int]) -> None:
    store = open_store(data_dir, dsn)
    try:
        size = store.size()
        assert max(acked) < size
        for index in acked[-50:]:
            assert store.entry(index) is not None
        checkpoints = store.checkpoints()
        assert checkpoints, "no checkpoint was published while the log grew"
        verifier = NoteSigner("huzhou.ecert-gateway/audit", load_signing_key(data_dir)).verifier
        report = verify_log(store, verifier)
        assert report.ok, report.reason
        assert report.entries == size
        assert report.checkpoints == len(checkpoints)
    finally:
        store.close()
    # The next start accepts the log and extends it.
    async with AuditService(data_dir=data_dir, postgres_dsn=dsn) as service:
        assert size == service.tree_size


@pytest.mark.slow
@pytest.mark.allow_blocking
async def test_sqlite_survives_sigkill(data_dir: Path) -> None:
    """SQLite: every acknowledged record survives SIGKILL, consistent with each checkpoint."""
    acked = _run_and_kill(data_dir, None)
    await _check(data_dir, None, acked)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.allow_blocking
async def test_postgres_survives_sigkill(data_dir: Path, postgres_dsn: str) -> None:
    """PostgreSQL: the same guarantee."""
    acked = _run_and_kill(data_dir, postgres_dsn)
    await _check(data_dir, postgres_dsn, acked)


def _run_two_and_kill(data_dir: Path, *, run_s: float = 1.5) -> tuple[list[int], list[int]]:
    """Two appenders on one SQLite log at once; the indices each acknowledged."""
    first = _start(data_dir, None)  # the first makes the keys and the log
    try:
        second = _start(data_dir, None)
    except BaseException:
        _kill(first)
        raise
    try:
        time.sleep(run_s)
    finally:
        acked = _kill(first), _kill(second)
    return acked


@pytest.mark.slow
@pytest.mark.allow_blocking
async def test_two_processes_append_to_one_sqlite_log(data_dir: Path) -> None:
    """Two processes appending to one SQLite log at once (they queue on its lock file, as
    the workers of `serve --workers 2` do): no index is given twice, none is lost, and
    the log verifies with every checkpoint either kept."""
    one, two = _run_two_and_kill(data_dir)
    assert not set(one) & set(two), "an index was acknowledged to both processes"
    assert len(one) == len(set(one))
    assert len(two) == len(set(two))
    await _check(data_dir, None, [*one, *two])
