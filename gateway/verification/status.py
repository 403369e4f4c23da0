"""Fetching partners' status lists: only from registered prefixes, bounded, cached by ttl.

The verifier decides *whether* a list may be fetched (the partner's
``status_uri_prefixes``, judged by ``trust``); this adapter checks that again,
fetches the list with a timeout and a size limit, verifies it through the pure
core, and keeps it until its ``ttl`` runs out.

* Concurrent requests for one URI share one fetch, which runs as a task of its
  own: a caller that gives up (a cancelled request) does not cancel it for the
  others.
* A failed fetch is remembered for ``retry_after_s`` (per trust-list version,
  for at most ``max_failures`` URIs, the oldest forgotten first): until then the
  URI is not tried again, so a hanging partner costs one timeout, not one per
  licence.
* At most ``MAX_CONNECTIONS_PER_HOST`` fetches run against one host; a fetch
  waiting for a connection counts against its timeout.
* A failed fetch keeps the last good list: the verifier then judges its freshness
  and answers TRY_LATER once it is too old, never a pass.
* A list held and fresh that has no entry for a licence's index (the licence is
  newer than the list: a partner's list grows as it issues) is fetched again
  before its ttl, at most once every ``SHORT_LIST_REFETCH_S`` per URI; until a
  list with the entry arrives, the verifier answers TRY_LATER for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import aiohttp

from gateway.infra.metrics import MetricFamily
from trust import Partner, StatusList, StatusListError, StatusUnavailable, TrustList
from trust import parse_status_list as parse

__all__ = ["StatusFetcher"]

_log = logging.getLogger("gateway.status")

DEFAULT_REFRESH_S = 300.0
"""How long a list without ``ttl`` is kept before it is fetched again."""
MIN_REFRESH_S = 1.0
DEFAULT_RETRY_AFTER_S = 5.0
"""How long a URI whose fetch failed is not tried again."""
SHORT_LIST_REFETCH_S = 5.0
"""How soon a held list without a licence's entry may be fetched again (its ttl aside)."""
MAX_FAILURES = 1024
"""Failed URIs remembered at most (for the retry pause and the alerts)."""
MAX_CONNECTIONS = 100
MAX_CONNECTIONS_PER_HOST = 10
"""A partner naming many lists on a hanging server holds no more connections than this,
so the other partners' fetches are not queued behind it."""

_Result = StatusList | StatusUnavailable


@dataclass(slots=True)
class _Entry:
    status: StatusList
    refresh_at: float
    trust_version: int
    fetched_at: float


@dataclass(frozen=True, slots=True)
class _Failure:
    retry_at: float
    trust_version: int
    reason: str


class StatusFetcher:
    """Fetches, verifies and caches status lists for the verification service."""

    def __init__(self, *, timeout_s: float, max_bytes: int,
                 retry_after_s: float = DEFAULT_RETRY_AFTER_S,
                 max_failures: int = MAX_FAILURES) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_bytes = max_bytes
        self._retry_after_s = retry_after_s
        self._max_failures = max(1, max_failures)
        self._session: aiohttp.ClientSession | None = None
        self._cache: dict[str, _Entry] = {}
        self._inflight: dict[tuple[str, int], asyncio.Task[_Result]] = {}
        self._failed: dict[str, _Failure] = {}
        self.fetches = 0
        self.failures = 0
        self.failing: dict[str, tuple[float, str]] = {}
        """URIs whose last fetch failed: Unix time and reason (cleared by a success;
        at most ``max_failures``, the oldest dropped first)."""

    def metric_families(self) -> list[MetricFamily]:
        """Fetches made and failed, for ``/metrics``."""
        return [
            MetricFamily("ecert_status_fetches", "counter", "Partner status lists fetched.",
                         [({}, self.fetches)]),
            MetricFamily("ecert_status_fetch_failures", "counter",
                         "Partner status-list fetches that failed.", [({}, self.failures)]),
        ]

    async def start(self) -> None:
        """Open the HTTP client session."""
        connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS,
                                         limit_per_host=MAX_CONNECTIONS_PER_HOST)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                              trust_env=False, auto_decompress=True)

    async def close(self) -> None:
        """Stop the fetches still running and close the HTTP client session."""
        running = list(self._inflight.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
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
        """Drop one cached list (and a remembered failure), or all of them."""
        if uri is None:
            self._cache.clear()
            self._failed.clear()
        else:
            self._cache.pop(uri, None)
            self._failed.pop(uri, None)

    def _fallback(self, uri: str, trust_list: TrustList, reason: str) -> _Result:
        """The last good list under this trust list, else ``StatusUnavailable``."""
        previous = self._cache.get(uri)
        if previous is not None and previous.trust_version == trust_list.version:
            # Keep the last good list; the verifier judges whether it is still fresh.
            return previous.status
        return StatusUnavailable(reason)

    def ready(self, uri: str, partner: Partner, trust_list: TrustList,
              covering: int = -1) -> _Result | None:
        """What ``get`` answers without waiting: the refusal of a URI outside ``partner``'s
        prefixes, or the list held for ``uri`` that needs no refreshing yet; else None.

        ``covering``: the largest entry index the caller needs. A held list too short for
        it counts as not held when it may be fetched again already (``_short``)."""
        if not partner.status_uri_allowed(uri):  # remembered by the partner, per URI
            return StatusUnavailable(f"status URI {uri} is outside partner "
                                     f"{partner.region_code}'s registered prefixes; not fetched")
        hit = self.cached(uri, trust_list)
        if hit is not None and covering >= 0 and self._short(uri, hit, covering):
            return None
        return hit

    def _short(self, uri: str, status: StatusList, covering: int) -> bool:
        """Whether ``status`` has no entry ``covering`` and was fetched long enough ago to
        be fetched again for it (a licence newer than the list)."""
        if status.value(covering) is not None:
            return False
        entry = self._cache.get(uri)
        return entry is None or entry.fetched_at + SHORT_LIST_REFETCH_S <= time.monotonic()

    def answer_now(self, uri: str, partner: Partner, trust_list: TrustList,
                   covering: int = -1) -> _Result | None:
        """``ready``, or what ``get`` answers at once for a URI whose last fetch failed and
        is not yet due again (the last good list, else ``StatusUnavailable``); None when
        ``get`` would fetch. ``covering`` as in ``ready``."""
        hit = self.ready(uri, partner, trust_list, covering)
        if hit is not None:
            return hit
        failed = self._failed.get(uri)
        if (failed is not None and failed.retry_at > time.monotonic()
                and failed.trust_version == trust_list.version):
            return self._fallback(uri, trust_list, failed.reason)
        return None

    async def get(self, uri: str, partner: Partner, trust_list: TrustList,
                  covering: int = -1) -> _Result:
        """The status list at ``uri``, which must lie under one of ``partner``'s prefixes.

        The verifier checked the prefixes already; they are checked again here so
        that no caller can make this adapter fetch anything else. ``covering`` as in
        ``ready``: a held list without that entry is fetched again when it may be.
        """
        hit = self.ready(uri, partner, trust_list, covering)
        if hit is not None:
            return hit
        failed = self._failed.get(uri)
        if failed is not None:
            if failed.retry_at > time.monotonic() and failed.trust_version == trust_list.version:
                return self._fallback(uri, trust_list, failed.reason)
            del self._failed[uri]
        key = (uri, trust_list.version)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._fetch(uri, partner, trust_list), name=f"status-fetch {uri}")
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._settled(key, done))
        # The fetch belongs to every caller waiting for it: one giving up leaves it running.
        return await asyncio.shield(task)

    def _settled(self, key: tuple[str, int], task: asyncio.Task[_Result]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled() and task.exception() is not None:
            _log.error("status list fetch raised", exc_info=task.exception())

    def _remember_failure(self, uri: str, trust_list: TrustList, reason: str) -> None:
        for table in (self._failed, self.failing):
            table.pop(uri, None)  # re-inserted last: the oldest failure is dropped first
            while len(table) >= self._max_failures:
                del table[next(iter(table))]
        self._failed[uri] = _Failure(time.monotonic() + self._retry_after_s,
                                     trust_list.version, reason)
        self.failing[uri] = (time.time(), reason)

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

    async def _fetch(self, uri: str, partner: Partner, trust_list: TrustList) -> _Result:
        self.fetches += 1
        try:
            body = await self._download(uri)
            status = parse(body.strip(), trust_list=trust_list,
                           region=partner.region_code, uri=uri)
        except (aiohttp.ClientError, TimeoutError, StatusListError) as exc:
            self.failures += 1
            reason = f"status list {uri} unavailable: {str(exc) or type(exc).__name__}"
            self._remember_failure(uri, trust_list, reason)
            _log.warning("status list fetch failed", extra={"uri": uri, "error": str(exc)})
            return self._fallback(uri, trust_list, reason)
        self._failed.pop(uri, None)
        self.failing.pop(uri, None)
        ttl = float(status.ttl_s) if status.ttl_s is not None else DEFAULT_REFRESH_S
        refresh = max(MIN_REFRESH_S, min(ttl, float(partner.status_max_age_s)))
        now = time.monotonic()
        self._cache[uri] = _Entry(status, now + refresh, trust_list.version, now)
        return status
