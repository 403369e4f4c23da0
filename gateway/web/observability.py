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

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.infra.metrics import MetricFamily
from gateway.web.logs import log_access

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

_access = logging.getLogger("gateway.access")


def route_of(request: web.BaseRequest) -> str:
    """The template of the route ``request`` matched, or ``UNMATCHED_ROUTE``."""
    match_info = getattr(request, "match_info", None)
    route = getattr(match_info, "route", None)
    resource = getattr(route, "resource", None)
    canonical = getattr(resource, "canonical", None)
    return canonical if isinstance(canonical, str) else UNMATCHED_ROUTE


class HttpObserver:
    """Counts, times and (optionally) logs every request the middleware sees."""

    def __init__(self, registry: CollectorRegistry, *, access_log: bool) -> None:
        self.access_log = access_log
        self._requests = Counter(
            "ecert_http_requests", "HTTP requests answered, by route template and status.",
            ["method", "route", "status"], registry=registry)
        self._latency = Histogram(
            "ecert_http_request_duration_seconds",
            "Time from the request reaching the gateway's handler chain to its answer.",
            ["method", "route"], buckets=_BUCKETS, registry=registry)
        # The label look-up costs more than the increment: keep each child once made.
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._histograms: dict[tuple[str, str], Any] = {}

    def observe(self, request: web.Request, status: int, started: float,
                request_id: str) -> None:
        """Record one answered request (``started`` is a ``time.perf_counter()`` reading)."""
        elapsed = time.perf_counter() - started
        method, route = request.method, route_of(request)
        key = (method, route, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self._requests.labels(method, route, str(status))
        counter.inc()
        histogram = self._histograms.get((method, route))
        if histogram is None:
            histogram = self._histograms[(method, route)] = self._latency.labels(method, route)
        histogram.observe(elapsed)
        if self.access_log:
            log_access(_access, request_id=request_id, method=method, route=route,
                       status=status, duration_ms=round(elapsed * 1000, 3),
                       caller=request.get(CALLER_KEY))


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

