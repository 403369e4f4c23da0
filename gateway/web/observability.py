"""What the gateway tells its operators about itself: metrics and the access log.

* ``/metrics`` is rendered by prometheus-client from one registry per app:
  the HTTP request counter and latency histogram recorded here, per route
  template (``/v1/audit/entries/{index}``, never the raw path, so no licence
  identifier or index becomes a label), and ``GatewayCollector``, which reads
  the services' own counters when scraped.
* The access log is one JSON line per request on the ``gateway.access``
  logger: request id, method, route template, status, duration and the
  caller's name (a local system's or operator's name, or ``partner:<region>``).
  Never a header, a query string, a body, a secret or holder data. The
  ``access_log`` setting switches it off.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from itertools import accumulate

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gateway.infra.metrics import MetricFamily
from gateway.web.logs import AccessLine, log_access

__all__ = [
    "CALLER_KEY",
    "GatewayCollector",
    "HttpObserver",
    "UNMATCHED_ROUTE",
    "route_of",
]

CALLER_KEY = web.RequestKey("caller", str)
"""The authenticated caller's name, set by the authentication step that found it."""

UNMATCHED_ROUTE = "(unmatched)"
"""The route label of a request that matched no route (a 404, a 405)."""

# Seconds: from a tier-1 cache hit (well under a millisecond) to a batch of 1,000.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            10.0)
_LE = (*(repr(bound) for bound in _BUCKETS), "+Inf")
"""The buckets' ``le`` labels as the text format writes them."""

_access = logging.getLogger("gateway.access")


def route_of(request: web.BaseRequest) -> str:
    """The template of the route ``request`` matched, or ``UNMATCHED_ROUTE``."""
    try:  # a routed request has them; a 404 or 405 has no resource, a bad request no match
        canonical = request.match_info.route.resource.canonical  # type: ignore[attr-defined]
    except AttributeError:
        return UNMATCHED_ROUTE
    return canonical if isinstance(canonical, str) else UNMATCHED_ROUTE


class HttpObserver:
    """Counts, times and (optionally) logs every request the middleware sees.

    The counts are plain integers kept per label set and read by a collector when
    ``/metrics`` is scraped: prometheus-client's ``Counter`` and ``Histogram`` take a
    lock per increment and per observation, which every request paid for twice. The
    event loop is the only writer, so no lock is needed; a scrape reads on the loop too.

    A request only leaves its answer here (``observe``); the requests answered in one turn
    of the event loop are then counted and logged together at the start of the next
    (``flush``), before any reply can reach a client, and a scrape flushes first. Each
    request's time, duration, status and caller are its own; what the requests of a turn
    share (the label sets, the access log's handler) is looked up once for all of them.
    """

    def __init__(self, registry: CollectorRegistry, *, access_log: bool) -> None:
        self.access_log = access_log
        self._counts: dict[tuple[str, str, int], int] = {}
        # Per (method, route): a count per bucket (not cumulative; the last is +Inf),
        # and the sum of the observed seconds.
        self._latencies: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
        self._answered: list[tuple[web.Request, int, float, str, float]] = []
        registry.register(_HttpCollector(self))

    def observe(self, request: web.Request, status: int, started: float,
                request_id: str) -> None:
        """Record one answered request (``started`` is a ``time.perf_counter()`` reading)."""
        answered = self._answered
        if not answered:
            asyncio.get_running_loop().call_soon(self.flush)
        answered.append((request, status, time.perf_counter() - started, request_id,
                         time.time()))

    def flush(self) -> None:
        """Count, time and log the requests answered since the last flush."""
        answered = self._answered
        if not answered:
            return
        self._answered = []
        counts, latencies = self._counts, self._latencies
        lines: list[AccessLine] = []
        for request, status, elapsed, request_id, at in answered:
            method, route = request.method, route_of(request)
            key = (method, route, status)
            counts[key] = counts.get(key, 0) + 1
            latency = latencies.get((method, route))
            if latency is None:
                latency = latencies[(method, route)] = ([0] * (len(_BUCKETS) + 1), [0.0])
            latency[0][bisect_left(_BUCKETS, elapsed)] += 1
            latency[1][0] += elapsed
            if self.access_log:
                lines.append(AccessLine(at, request_id, method, route, status,
                                        round(elapsed * 1000, 3), request.get(CALLER_KEY)))
        if lines:
            log_access(_access, lines)

    def families(self) -> Iterator[Metric]:
        """The request counter and the latency histogram, as prometheus-client families."""
        self.flush()
        requests = CounterMetricFamily(
            "ecert_http_requests", "HTTP requests answered, by route template and status.",
            labels=["method", "route", "status"])
        for (method, route, status), count in sorted(self._counts.items()):
            requests.add_metric([method, route, str(status)], count)
        yield requests
        latency = HistogramMetricFamily(
            "ecert_http_request_duration_seconds",
            "Time from the request reaching the gateway's handler chain to its answer.",
            labels=["method", "route"])
        for (method, route), (per_bucket, total) in sorted(self._latencies.items()):
            cumulative = list(accumulate(per_bucket))
            buckets = list(zip(_LE, cumulative, strict=True))
            latency.add_metric([method, route], buckets, total[0])
        yield latency


class _HttpCollector(Collector):
    """``HttpObserver``'s counts on a scrape."""

    def __init__(self, observer: HttpObserver) -> None:
        self._observer = observer

    def collect(self) -> Iterator[Metric]:
        """The observer's two families."""
        return self._observer.families()


class GatewayCollector(Collector):
    """Reads the services' own counters at scrape time (nothing is copied per request)."""

    def __init__(self, read: Callable[[], Iterable[MetricFamily]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        """One Prometheus family per ``MetricFamily``, with its labelled samples."""
        for found in self._read():
            labels = sorted({key for sample_labels, _ in found.samples for key in sample_labels})
            family: CounterMetricFamily | GaugeMetricFamily
            if found.kind == "counter":
                family = CounterMetricFamily(found.name, found.help, labels=labels)
            else:
                family = GaugeMetricFamily(found.name, found.help, labels=labels)
            for sample_labels, value in found.samples:
                family.add_metric([sample_labels.get(key, "") for key in labels], value)
            yield family

