"""StatusFetcher: bounded, cached by ttl, single-flight, failures never become passes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.status_fetch import StatusFetcher
from mocks import Federation, MockRegion
from trust import StatusList, StatusUnavailable, TrustList


class Partner:
    """A Shanghai mock whose status endpoint can be slowed, bloated or counted."""

    def __init__(self) -> None:
        self.region: MockRegion = Federation.standard(seed=3, codes=["310000"])["310000"]
        self.hits = 0
        self.delay = 0.0
        self.padding = b""

    async def handle(self, _: web.Request) -> web.Response:
        self.hits += 1
        await asyncio.sleep(self.delay)
        token = self.region.status_list_token(ttl=60).encode()
        return web.Response(body=token + self.padding)


@pytest.fixture
async def partner() -> AsyncIterator[tuple[Partner, TrustList, str]]:
    """A served status list and the trust list naming its region."""
    mock = Partner()
    app = web.Application()
    app.router.add_get("/status/lic-2026", mock.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    mock.region.base_url = str(server.make_url("")).rstrip("/")
    now = datetime.now(UTC)
    tl = TrustList.from_json(Federation([mock.region]).trust_list(
        version=1, issued_at=now - timedelta(hours=1), next_update=now + timedelta(days=1)))
    yield mock, tl, mock.region.status_uri
    await server.close()


async def _fetcher(limit_s: float = 2.0, max_bytes: int = 1 << 20) -> StatusFetcher:
    fetcher = StatusFetcher(timeout_s=limit_s, max_bytes=max_bytes)
    await fetcher.start()
    return fetcher


async def test_cached_by_ttl_and_single_flight(partner: tuple[Partner, TrustList, str]) -> None:
    """Ten concurrent look-ups and ten later ones cost one fetch while the ttl runs."""
    mock, tl, uri = partner
    fetcher = await _fetcher()
    try:
        p = tl.partner("310000")
        assert p is not None
        first = await asyncio.gather(*(fetcher.get(uri, p, tl) for _ in range(10)))
        later = [await fetcher.get(uri, p, tl) for _ in range(10)]
        assert all(isinstance(s, StatusList) for s in first + later)
        assert 1 == mock.hits
    finally:
        await fetcher.close()


async def test_timeout_is_unavailable(partner: tuple[Partner, TrustList, str]) -> None:
    """A partner slower than the timeout yields StatusUnavailable, not a hang."""
    mock, tl, uri = partner
    mock.delay = 1.0
    fetcher = await _fetcher(limit_s=0.2)
    try:
        p = tl.partner("310000")
        assert p is not None
        result = await fetcher.get(uri, p, tl)
        assert isinstance(result, StatusUnavailable)
    finally:
        await fetcher.close()


async def test_oversized_list_is_unavailable(partner: tuple[Partner, TrustList, str]) -> None:
    """A body over the size limit is refused unread beyond the limit."""
    mock, tl, uri = partner
    mock.padding = b" " * 5000
    fetcher = await _fetcher(max_bytes=2000)
    try:
        p = tl.partner("310000")
        assert p is not None
        result = await fetcher.get(uri, p, tl)
        assert isinstance(result, StatusUnavailable)
        assert "larger than" in result.reason
    finally:
        await fetcher.close()


async def test_new_trust_list_version_refetches(partner: tuple[Partner, TrustList, str]) -> None:
    """A list verified under an older trust list is not reused under a newer one."""
    mock, tl, uri = partner
    fetcher = await _fetcher()
    try:
        p = tl.partner("310000")
        assert p is not None
        await fetcher.get(uri, p, tl)
        newer = TrustList.from_json({**tl.document, "version": 2})
        await fetcher.get(uri, p, newer)
        assert 2 == mock.hits
    finally:
        await fetcher.close()
