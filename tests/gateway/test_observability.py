"""The access log (one JSON line a request, no secrets) and per-route request metrics."""

from __future__ import annotations

import ast
import asyncio
import inspect
import logging
import textwrap
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, make_mocked_request
from prometheus_client import CollectorRegistry

from gateway.settings import load_settings
from gateway.web import app as app_module
from gateway.web.app import create_app
from gateway.web.logs import JsonFormatter
from gateway.web.observability import HttpObserver
from mocks import RunningFederation
from tests.fakes import MemoryAudit
from tests.gateway.conftest import AppFactory, metric_value, scrape_metrics, trust_document
from trust import TrustList

Client = TestClient[web.Request, web.Application]


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    formatter = JsonFormatter()
    return [orjson.loads(formatter.format(r)) for r in caplog.records
            if r.name == "gateway.access"]


async def test_one_access_line_per_request_without_secrets(
        gateway_client: AppFactory, client_key: str, running: RunningFederation,
        caplog: pytest.LogCaptureFixture) -> None:
    """Each request logs one JSON line: its id, the route template, status, duration, caller;
    never the key, the credential, the query string or an identifier from the path."""
    client = await gateway_client()
    licence = running.federation["310000"].issue()
    caplog.set_level(logging.INFO, logger="gateway.access")
    ok = await client.post("/v1/verifications?secret-query=yes",
                           headers={"Authorization": f"Bearer {client_key}",
                                    "X-Request-Id": "req-ok-1"},
                           json={"credential": licence.token})
    refused = await client.get("/v1/audit/entries/12345",
                               headers={"Authorization": "Bearer ecg_o_not-a-token"})
    missing = await client.get(f"/no/such/{licence.identifier}")
    assert (200, 401, 404) == (ok.status, refused.status, missing.status)
    lines = _access_lines(caplog)
    assert 3 == len(lines)
    first, second, third = lines
    assert {"request_id": "req-ok-1", "method": "POST", "route": "/v1/verifications",
            "status": 200, "caller": "window-01"} == {
        k: first[k] for k in ("request_id", "method", "route", "status", "caller")}
    assert isinstance(first["duration_ms"], float)
    assert ("/v1/audit/entries/{index}", 401, None) == (
        second["route"], second["status"], second["caller"])
    assert refused.headers["X-Request-Id"] == second["request_id"]
    assert ("(unmatched)", 404) == (third["route"], third["status"])
    text = caplog.text + "".join(orjson.dumps(line).decode() for line in lines)
    for secret in (client_key, licence.token, "secret-query", licence.identifier,
                   "ecg_o_not-a-token", "12345"):
        assert secret not in text


async def test_access_log_can_be_switched_off(
        gateway_client: AppFactory, caplog: pytest.LogCaptureFixture) -> None:
    """``access_log = false`` writes no access line; metrics still count the request."""
    client = await gateway_client(access_log=False)
    caplog.set_level(logging.INFO, logger="gateway.access")
    assert 200 == (await client.get("/healthz")).status
    assert [] == _access_lines(caplog)
    metrics = await scrape_metrics(client)
    assert 1 == metric_value(metrics, "ecert_http_requests_total", method="GET",
                             route="/healthz", status="200")


async def test_requests_are_counted_and_timed_per_route_template(
        gateway_client: AppFactory, client_key: str, running: RunningFederation) -> None:
    """/metrics counts requests per method, route template and status, with a latency
    histogram per route, and declares HELP and TYPE for every family."""
    client = await gateway_client()
    auth = {"Authorization": f"Bearer {client_key}"}
    for _ in range(3):
        token = running.federation["310000"].issue().token
        assert 200 == (await client.post("/v1/verifications", headers=auth,
                                          json={"credential": token})).status
    assert 401 == (await client.get("/v1/audit/entries/7")).status
    assert 401 == (await client.get("/v1/audit/entries/8")).status
    metrics = await scrape_metrics(client)
    assert 3 == metric_value(metrics, "ecert_http_requests_total", method="POST",
                             route="/v1/verifications", status="200")
    assert 2 == metric_value(metrics, "ecert_http_requests_total", method="GET",
                             route="/v1/audit/entries/{index}", status="401")
    assert 3 == metric_value(metrics, "ecert_http_request_duration_seconds_count",
                             method="POST", route="/v1/verifications")
    assert 3 == metric_value(metrics, "ecert_http_request_duration_seconds_bucket",
                             method="POST", route="/v1/verifications", le="+Inf")
    assert 3 == metric_value(metrics, "ecert_verifications_total", indication="TOTAL_PASSED")
    families = {line.split()[2] for line in metrics.splitlines() if line.startswith("# TYPE")}
    helped = {line.split()[2] for line in metrics.splitlines() if line.startswith("# HELP")}
    assert families == helped
    assert {"ecert_http_requests_total", "ecert_http_request_duration_seconds",
            "ecert_verifications_total", "ecert_trust_list_version"} <= families


async def test_metrics_count_alerts_by_the_apps_clock(gateway_client: AppFactory) -> None:
    """/metrics counts the alerts at the app's clock; before, it read the system clock, so
    a gateway run on a test's (or a replay's) time reported another moment's alerts."""
    later = datetime.now(UTC) + timedelta(days=3650)
    client = await gateway_client(clock=lambda: later)
    metrics = await scrape_metrics(client)
    assert 1 == metric_value(metrics, "ecert_alerts", kind="trust-list-stale")


async def test_metrics_count_anchors_within_the_configured_days(
        tmp_path: Path, running: RunningFederation,
        aiohttp_client: Callable[[web.Application], Awaitable[Client]]) -> None:
    """An anchor whose window ends within ``[admin] expiry_alert_days`` counts on /metrics,
    as on ``GET /v1/admin/alerts``; before, /metrics always took 30 days."""
    trust_list = TrustList.from_json(trust_document(running.federation))
    ending = min(anchor.valid_until for partner in trust_list.partners.values()
                 for anchor in partner.anchors)
    at = ending - timedelta(days=45)
    counts = []
    for n, environ in enumerate(({}, {"ECERT_ADMIN_EXPIRY_ALERT_DAYS": "60"})):
        data = tmp_path / str(n)
        data.mkdir()
        settings = load_settings(environ, None, {"data_dir": data})
        client = await aiohttp_client(create_app(settings, audit=MemoryAudit(),
                                                 trust_list=trust_list, clock=lambda: at))
        counts.append(metric_value(await scrape_metrics(client), "ecert_alerts",
                                   kind="anchor-expiring"))
    assert None is counts[0]
    assert (counts[1] or 0) >= 1


def test_every_service_reports_its_own_families() -> None:
    """/metrics asks each service for its families and reaches into none of them."""
    source = inspect.getsource(app_module._service_metrics)
    function = ast.parse(textwrap.dedent(source)).body[0]
    assert isinstance(function, ast.FunctionDef)
    calls = {node.attr for statement in function.body for node in ast.walk(statement)
             if isinstance(node, ast.Attribute)}
    assert {"metric_families", "get", "status", "admin", "expiry_alert_days"} == calls


async def test_requests_of_one_loop_turn_are_logged_at_the_next_each_as_its_own(
        caplog: pytest.LogCaptureFixture) -> None:
    """The observer counts and logs the requests answered in one turn of the event loop at
    the start of the next, each line with its own id, status, duration and time; a scrape
    takes in what is still pending first."""
    observer = HttpObserver(CollectorRegistry(), access_log=True)
    caplog.set_level(logging.INFO, logger="gateway.access")
    now = time.perf_counter()
    answered = [("r-1", 200, now - 0.2), ("r-2", 404, now - 0.5), ("r-3", 200, now)]
    for request_id, status, started in answered:
        observer.observe(make_mocked_request("POST", "/x"), status, started, request_id)
    assert [] == _access_lines(caplog)  # not on the requests' own path
    await asyncio.sleep(0)
    lines = _access_lines(caplog)
    assert [("r-1", 200), ("r-2", 404), ("r-3", 200)] == [
        (line["request_id"], line["status"]) for line in lines]
    durations = [float(str(line["duration_ms"])) for line in lines]
    assert durations[1] >= 500 > durations[0] >= 200 > durations[2] >= 0
    observer.observe(make_mocked_request("GET", "/y"), 503, time.perf_counter(), "r-4")
    counted = {sample.labels["status"]: sample.value for family in observer.families()
               if family.name == "ecert_http_requests" for sample in family.samples}
    assert {"200": 2, "404": 1, "503": 1} == counted
    assert ["r-4"] == [line["request_id"] for line in _access_lines(caplog)[3:]]
    observer.flush()  # nothing pending: nothing counted or logged twice
    await asyncio.sleep(0)
    assert 4 == len(_access_lines(caplog))
