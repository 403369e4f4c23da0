"""The real command: `ecert-gateway serve` as a process, keys added while it runs, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson
import pytest

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
