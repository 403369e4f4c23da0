"""Fetching partners' status lists: only from registered prefixes, bounded, cached by ttl.

The verifier decides *whether* a list may be fetched (the partner's
``status_uri_prefixes``, judged by ``trust``); this adapter checks that again,
fetches it with a timeout and a size limit, verifies it through the pure core,
and keeps it until its ``ttl`` runs out. Concurrent requests for one URI share
one fetch. A failed refresh keeps the last good list: the verifier then judges
its freshness and answers TRY_LATER once it is too old, never a pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import aiohttp

from trust import Partner, StatusList, StatusListError, StatusUnavailable, TrustList
from trust import parse_status_list as parse

__all__ = ["StatusFetcher"]

_log = logging.getLogger("gateway.status")

DEFAULT_REFRESH_S = 300.0
"""How long a list without ``ttl`` is kept before it is fetched again."""
MIN_REFRESH_S = 1.0


@dataclass(slots=True)
class _Entry:
    status: StatusList
    refresh_at: float
    trust_version: int


class StatusFetcher:
    """Fetches, verifies and caches status lists for the verification service."""

    def __init__(self, *, timeout_s: float, max_bytes: int) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_bytes = max_bytes
        self._session: aiohttp.ClientSession | None = None
        self._cache: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Future[StatusList | StatusUnavailable]] = {}
        self.fetches = 0
        self.failures = 0
        self.failing: dict[str, tuple[float, str]] = {}
        """URIs whose last fetch failed: Unix time and reason (cleared by a success)."""

    async def start(self) -> None:
        """Open the HTTP client session."""
        self._session = aiohttp.ClientSession(timeout=self._timeout, trust_env=False,
                                              auto_decompress=True)

    async def close(self) -> None:
        """Close the HTTP client session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def cached(self, uri: str, trust_list: TrustList) -> StatusList | None:
        """The cached list for ``uri`` if it does not need refreshing yet."""
        entry = self._cache.get(uri)
        if (entry is not None and entry.refresh_at > time.monotonic()
                and entry.trust_version == trust_list.version):
            return entry.status
        return None

    def held(self, uri: str) -> StatusList | None:
        """The last good list for ``uri``, however old (for cache validity checks)."""
        entry = self._cache.get(uri)
        return None if entry is None else entry.status

    def held_lists(self) -> list[StatusList]:
        """Every list held (for alerts on stale partner data)."""
        return [entry.status for entry in self._cache.values()]

    def refresh_in(self, uri: str) -> float | None:
        """Seconds until ``uri`` is fetched again, or None when nothing is held."""
        entry = self._cache.get(uri)
        return None if entry is None else max(0.0, entry.refresh_at - time.monotonic())

    def forget(self, uri: str | None = None) -> None:
        """Drop one cached list, or all of them."""
        if uri is None:
            self._cache.clear()
        else:
            self._cache.pop(uri, None)

    async def get(
        self, uri: str, partner: Partner, trust_list: TrustList
    ) -> StatusList | StatusUnavailable:
        """The status list at ``uri``, which must lie under one of ``partner``'s prefixes.

        The verifier checked the prefixes already; they are checked again here so
        that no caller can make this adapter fetch anything else.
        """
        if not partner.status_uri_allowed(uri):
            return StatusUnavailable(f"status URI {uri} is outside partner "
                                     f"{partner.region_code}'s registered prefixes; not fetched")
        hit = self.cached(uri, trust_list)
        if hit is not None:
            return hit
        running = self._inflight.get(uri)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[StatusList | StatusUnavailable] = (
            asyncio.get_running_loop().create_future()
        )
        self._inflight[uri] = future
        try:
            result = await self._fetch(uri, partner, trust_list)
            future.set_result(result)
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            del self._inflight[uri]
        return result

    async def _download(self, uri: str) -> bytes:
        assert self._session is not None, "StatusFetcher.start() was not called"
        limit = self._max_bytes
        async with self._session.get(uri, allow_redirects=False) as response:
            if response.status != 200:
                raise StatusListError(f"status list fetch answered HTTP {response.status}")
            if response.content_length is not None and response.content_length > limit:
                raise StatusListError(f"status list larger than {limit} bytes")
            # read(n) answers with what has arrived so far, up to n bytes: read on until
            # the end of the body or one byte past the limit.
            body = bytearray()
            while len(body) <= limit:
                chunk = await response.content.read(limit + 1 - len(body))
                if not chunk:
                    break
                body += chunk
        if len(body) > limit:
            raise StatusListError(f"status list larger than {limit} bytes")
        return bytes(body)

    async def _fetch(
        self, uri: str, partner: Partner, trust_list: TrustList
    ) -> StatusList | StatusUnavailable:
        self.fetches += 1
        try:
            body = await self._download(uri)
            status = parse(body.strip(), trust_list=trust_list,
                           region=partner.region_code, uri=uri)
        except (aiohttp.ClientError, TimeoutError, StatusListError) as exc:
            self.failures += 1
            reason = f"status list {uri} unavailable: {exc or type(exc).__name__}"
            self.failing[uri] = (time.time(), reason)
            _log.warning("status list fetch failed", extra={"uri": uri, "error": str(exc)})
            previous = self._cache.get(uri)
            if previous is not None and previous.trust_version == trust_list.version:
                # Keep the last good list; the verifier judges whether it is still fresh.
                return previous.status
            return StatusUnavailable(reason)
        self.failing.pop(uri, None)
        ttl = float(status.ttl_s) if status.ttl_s is not None else DEFAULT_REFRESH_S
        refresh = max(MIN_REFRESH_S, min(ttl, float(partner.status_max_age_s)))
        self._cache[uri] = _Entry(status, time.monotonic() + refresh, trust_list.version)
        return status
