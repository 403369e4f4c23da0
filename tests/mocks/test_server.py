
"""The regions' HTTP servers on real loopback ports, and ``python -m mocks``."""

from __future__ import annotations

import signal
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import jwt
import orjson
import pytest

from mocks import Federation, RunningFederation, b64url_decode, serve_federation

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def running() -> AsyncIterator[RunningFederation]:
    """Two standard regions served on free loopback ports."""
    federation = Federation.standard(seed=3, codes=["310000", "652929"])
    async with serve_federation(federation) as served:
        yield served


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session closed after the test."""
    async with aiohttp.ClientSession() as client:
        yield client


class TestServer:
    """Each region answers on its own port with what a partner gateway publishes."""

    async def test_base_urls(self, running: RunningFederation) -> None:
        """Every region has a distinct http://127.0.0.1 base URL, also set on the region."""
        urls = running.urls
        assert 2 == len(set(urls.values()))
        assert all(u.startswith("http://127.0.0.1:") for u in urls.values())
        assert urls["310000"] == running.federation["310000"].base_url

    async def test_jwks(self, running: RunningFederation, session: aiohttp.ClientSession) -> None:
        """GET /jwks.json returns the region's published keys."""
        region = running.federation["652929"]
        async with session.get(running.url("652929") + "/jwks.json") as response:
            assert 200 == response.status
            assert region.jwks() == orjson.loads(await response.read())

    async def test_status_list(
        self, running: RunningFederation, session: aiohttp.ClientSession
    ) -> None:
        """A licence's status URI is served with the current list as statuslist+jwt."""
        region = running.federation["310000"]
        licence = region.issue()
        assert licence.status_idx is not None
        region.suspend(licence.status_idx)
        uri = licence.claims["status"]["status_list"]["uri"]
        assert uri.startswith(running.url("310000") + "/status/")
        async with session.get(uri) as response:
            assert ("application/statuslist+jwt", 200) == (response.content_type, response.status)
            token = await response.text()
        claims = jwt.decode(
            token, key=jwt.PyJWK(region.public_jwk(region.status_kid)), algorithms=["ES256"]
        )
        data = zlib.decompress(b64url_decode(claims["status_list"]["lst"]))
        offset = licence.status_idx * 2
        assert (2, uri, 300) == (
            (data[offset // 8] >> (offset % 8)) & 3,
            claims["sub"],
            claims["ttl"],
        )

    async def test_status_outage(
        self, running: RunningFederation, session: aiohttp.ClientSession
    ) -> None:
        """With ``status_available`` off the list answers 503; an unknown list 404."""
        region = running.federation["310000"]
        region.status_available = False
        async with session.get(region.status_uri) as response:
            assert 503 == response.status
        async with session.get(running.url("310000") + "/status/other") as response:
            assert 404 == response.status

    async def test_trust_entry(
        self, running: RunningFederation, session: aiohttp.ClientSession
    ) -> None:
        """GET /trust-entry returns the entry with the real status prefix."""
        async with session.get(running.url("310000") + "/trust-entry") as response:
            entry = orjson.loads(await response.read())
        prefixes = [running.url("310000") + "/status/"]
        assert prefixes == entry["endpoints"]["status_uri_prefixes"]

    async def test_demo_licence_and_admin(
        self, running: RunningFederation, session: aiohttp.ClientSession
    ) -> None:
        """GET /licences/1 is stable, and POST /admin/status revokes it."""
        base = running.url("310000")
        region = running.federation["310000"]
        async with (
            session.get(base + "/licences/1") as first,
            session.get(base + "/licences/1") as second,
        ):
            one, two = orjson.loads(await first.read()), orjson.loads(await second.read())
        assert one == two
        payload = jwt.decode(
            one["token"],
            key=jwt.PyJWK(region.public_jwk(region.licence_kid)),
            algorithms=["ES256"],
        )
        assert one["identifier"] == payload["jti"]
        url = f"{base}/admin/status/{one['status_idx']}"
        async with session.post(url, json={"state": "revoked"}) as response:
            assert 200 == response.status
        async with session.post(url, json={"state": "lost"}) as response:
            assert 400 == response.status
        assert 1 == region.status_of(one["status_idx"])

    async def test_unknown_licence(
        self, running: RunningFederation, session: aiohttp.ClientSession
    ) -> None:
        """A demo licence number that is not a small integer is 404."""
        async with session.get(running.url("310000") + "/licences/x") as response:
            assert 404 == response.status


class TestMain:
    """``python -m mocks`` writes its files, prints its URLs and stops on SIGTERM."""

    def test_run_and_stop(self, tmp_path: Path) -> None:
        """The process writes a trust list and licences whose status URIs it serves."""
        trust_list, licences = tmp_path / "trust.json", tmp_path / "licences.jsonl"
        command = [sys.executable, "-m", "mocks", "--seed", "1"]
        command += ["--trust-list-out", str(trust_list), "--licences-out", str(licences)]
        with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
            try:
                assert process.stdout is not None
                lines = [process.stdout.readline().strip() for _ in range(9)]
            finally:
                process.send_signal(signal.SIGTERM)
                code = process.wait(timeout=10)
        document = orjson.loads(trust_list.read_bytes())
        samples = [orjson.loads(line) for line in licences.read_bytes().splitlines()]
        assert ("ready", 0) == (lines[-1], code)
        assert 8 == len(document["partners"])
        urls = {line.split()[0]: line.split()[2] for line in lines[:-1]}
        first = samples[0]
        claims = jwt.decode(first["token"], options={"verify_signature": False})
        assert claims["status"]["status_list"]["uri"].startswith(urls[first["region_code"]])
        assert {"valid", "revoked", "suspended"} == {s["state"] for s in samples}
