"""The real command: `ecert-gateway serve` as a process, keys added while it runs, SIGTERM,
requests its HTTP parser refuses."""

from __future__ import annotations

import asyncio
import gc
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway.__main__ import GC_YOUNG_THRESHOLD, _settle_heap
from mocks import Federation, serve_federation
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.allow_blocking]


def _cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, check=True,
                          capture_output=True, text=True, timeout=60)
    return done.stdout.strip().splitlines()[-1]


async def _wait_ready(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(150):
        try:
            async with session.get(f"{base}/healthz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("gateway did not come up")


async def test_serve_honours_new_keys_and_drains_on_sigterm(tmp_path: Path) -> None:
    """A key made by the CLI works without restart; SIGTERM lets in-flight requests finish."""
    federation = Federation.standard(seed=9, codes=["310000"])
    async with serve_federation(federation) as running:
        now = datetime.now(UTC)
        trust = tmp_path / "trust.json"
        trust.write_bytes(orjson.dumps(running.federation.trust_list(
            version=1, issued_at=now - timedelta(hours=1), next_update=now + timedelta(days=1))))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once; the test then only awaits
            [sys.executable, "-m", "gateway", "serve", "--listen", f"127.0.0.1:{port}",
             "--data-dir", str(tmp_path / "data"), "--trust-list", str(trust)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "ECERT_LOG_LEVEL": "WARNING"},
        )
        try:
            async with aiohttp.ClientSession() as session:
                await _wait_ready(session, base)
                key = await asyncio.to_thread(
                    _cli, "clients", "add", "window-07", "--data-dir", str(tmp_path / "data"))
                headers = {"Authorization": f"Bearer {key}"}
                token = running.federation["310000"].issue().token
                async with session.post(f"{base}/v1/verifications", headers=headers,
                                        json={"credential": token}) as resp:
                    assert 200 == resp.status
                    assert "TOTAL_PASSED" == (await resp.json())["indication"]
                # Many requests in flight, then SIGTERM: each one is answered.
                batch = {"items": [{"credential": running.federation["310000"].issue().token}
                                   for _ in range(200)]}

                async def post_batch() -> int:
                    async with session.post(f"{base}/v1/verifications/batch", headers=headers,
                                            json=batch) as resp:
                        results = (await resp.json())["results"]
                        assert 200 == len(results)
                        return resp.status

                pending = [asyncio.create_task(post_batch()) for _ in range(4)]
                await asyncio.sleep(0.05)
                proc.send_signal(signal.SIGTERM)
                assert [200] * 4 == await asyncio.gather(*pending)
            code = await asyncio.to_thread(proc.wait, 30)
            assert 0 == code
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@asynccontextmanager
async def _gateway(data: Path, log: Path, **env: str) -> AsyncIterator[
        tuple[subprocess.Popen[bytes], str]]:
    """``ecert-gateway serve`` on a free port, its standard error (JSON log lines) in ``log``;
    killed at the end if the test left it running."""
    port = free_port()
    with log.open("wb") as err:
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once; the test then only awaits
            [sys.executable, "-m", "gateway", "serve", "--listen", f"127.0.0.1:{port}",
             "--data-dir", str(data)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
            env={**os.environ, "ECERT_LOG_LEVEL": "INFO", **env},
        )
    try:
        async with aiohttp.ClientSession() as session:
            await _wait_ready(session, f"http://127.0.0.1:{port}")
        yield proc, f"127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _log_records(log: Path) -> list[dict[str, Any]]:
    """The JSON records of a gateway's standard error; anything else (a traceback the
    interpreter printed) fails the test."""
    lines = log.read_text(encoding="utf-8").splitlines()
    records = []
    for line in lines:
        record = orjson.loads(line)  # raises on a line that is not one JSON record
        assert isinstance(record, dict)
        records.append(record)
    return records


async def _raw_exchange(address: str, request: bytes) -> bytes:
    """Send ``request`` as these bytes; everything the gateway sends back until it closes."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


async def test_sigterm_repeated_while_stopping_changes_nothing(tmp_path: Path) -> None:
    """SIGTERM sent again and again while the gateway drains: one graceful stop to its
    end (requests in flight answered), exit status 0, every line logged is a JSON record
    under ERROR (no CleanupError, no traceback), and each repeat is one WARNING. (Under
    aiohttp's run_app a second signal cancelled the stop under way: requests unanswered,
    CleanupError([CancelledError(), ...]) when it hit the cleanup, exit status 1.)"""
    data, log = tmp_path / "data", tmp_path / "gateway.log"
    await asyncio.to_thread(_cli, "init", "--data-dir", str(data))
    key = await asyncio.to_thread(_cli, "clients", "add", "window-07", "--data-dir", str(data))
    batch = {"items": [{"credential": f"not-a-licence-{i}"} for i in range(1000)]}
    async with _gateway(data, log, ECERT_SHUTDOWN_TIMEOUT_S="3") as (proc, address), \
            aiohttp.ClientSession() as session:
        host, port = address.rsplit(":", 1)
        # A request whose body never comes keeps the drain busy up to the shutdown
        # timeout, so the repeated signals below all arrive while the gateway stops.
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /v1/verifications HTTP/1.1\r\nHost: gateway\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        await writer.drain()

        async def post_batch() -> int:
            async with session.post(f"http://{address}/v1/verifications/batch", json=batch,
                                    headers={"Authorization": f"Bearer {key}"}) as resp:
                assert 1000 == len((await resp.json())["results"])
                return resp.status

        pending = [asyncio.create_task(post_batch()) for _ in range(4)]
        await asyncio.sleep(0.15)
        proc.send_signal(signal.SIGTERM)
        for _ in range(5):
            await asyncio.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
        # Batches in flight at the first signal are answered (under run_app the second
        # signal cancelled them: the connections closed without an answer).
        assert [200] * 4 == await asyncio.gather(*pending)
        code = await asyncio.to_thread(proc.wait, 30)
        await reader.read()
        writer.close()
    records = _log_records(log)
    assert 0 == code
    assert [] == [r for r in records if r["level"] not in ("DEBUG", "INFO", "WARNING")]
    assert "stopped" == records[-1]["message"]  # every cleanup context closed
    repeats = [r for r in records if "already stopping" in r["message"]]
    assert 1 <= len(repeats) <= 5
    assert {"WARNING"} == {r["level"] for r in repeats}


async def test_oversized_header_is_a_problem_that_echoes_nothing(tmp_path: Path) -> None:
    """A 20 KiB Authorization header (over the 16 KiB field limit) and a 20 KiB request
    line: each answered 431 with a problem body that holds nothing of the request, each
    logged as one WARNING line without it, no traceback; the gateway serves on."""
    data, log = tmp_path / "data", tmp_path / "gateway.log"
    marker = "ecg_o_" + secrets.token_urlsafe(32)
    async with _gateway(data, log) as (proc, address):
        header = await _raw_exchange(address, (
            f"GET /v1/admin/trust-list HTTP/1.1\r\nHost: gateway\r\n"
            f"Authorization: Bearer {marker}{'A' * 20480}\r\n\r\n").encode())
        line = await _raw_exchange(address, (
            f"GET /v1/admin/trust-list?token={marker}{'A' * 20480} HTTP/1.1\r\n"
            f"Host: gateway\r\n\r\n").encode())
        for answer in (header, line):
            head, _, body = answer.partition(b"\r\n\r\n")
            assert marker.encode() not in answer
            assert b" 431 " in head.split(b"\r\n")[0]
            assert b"content-type: application/problem+json" in head.lower()
            problem = orjson.loads(body)
            assert 431 == problem["status"]
            assert f"x-request-id: {problem['request_id']}".encode() in head.lower()
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://{address}/healthz") as resp:
            assert 200 == resp.status
        proc.send_signal(signal.SIGTERM)
        assert 0 == await asyncio.to_thread(proc.wait, 30)
    text = log.read_text(encoding="utf-8")
    assert marker not in text
    assert "Traceback" not in text
    records = _log_records(log)
    assert [] == [r for r in records if r["level"] not in ("DEBUG", "INFO", "WARNING")]
    refused = [r for r in records if r["level"] == "WARNING"]
    assert [("request refused by the HTTP parser", 431, "LineTooLong")] * 2 == [
        (r["message"], r["status"], r["error"]) for r in refused]


@pytest.mark.parametrize(("env", "expected"), [({}, "uvloop"), ({"ECERT_UVLOOP": "0"}, "asyncio")])
async def test_log_names_the_event_loop(tmp_path: Path, env: dict[str, str],
                                        expected: str) -> None:
    """``serve`` logs the loop it runs on: uvloop by default, asyncio's own when
    ``ECERT_UVLOOP=0``; it serves on either."""
    data, log = tmp_path / "data", tmp_path / "gateway.log"
    async with _gateway(data, log, **env) as (proc, address), aiohttp.ClientSession() as session:
        async with session.get(f"http://{address}/healthz") as resp:
            assert 200 == resp.status
        proc.send_signal(signal.SIGTERM)
        assert 0 == await asyncio.to_thread(proc.wait, 30)
    loops = [r.get("loop") for r in _log_records(log) if r["message"] == "event loop"]
    assert [expected] == loops


async def test_a_served_heap_is_frozen_and_collected_less_often() -> None:
    """What ``serve`` does once the application has started: what start-up built is
    frozen out of the collector's work, and the youngest generation is collected every
    ``GC_YOUNG_THRESHOLD`` allocations, the older generations as Python's defaults say."""
    before = gc.get_threshold()
    try:
        await _settle_heap(web.Application())
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
        assert GC_YOUNG_THRESHOLD > before[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
