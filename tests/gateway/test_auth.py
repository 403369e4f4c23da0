"""Bearer credentials at the HTTP edge: header bytes that are not UTF-8, and who reads /metrics."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.__main__ import main
from gateway.credentials.store import (
    NOT_CACHED,
    IdentityKind,
    IdentityStore,
    Role,
    add_identity,
)
from gateway.settings import load_settings
from gateway.web.app import create_app
from mocks import RunningFederation
from tests.gateway.conftest import AppFactory, metric_value, trust_document
from trust import TrustList

Client = TestClient[web.Request, web.Application]

ROUTES = sorted(
    (route.method, route.resource.canonical)
    for route in create_app(load_settings({}, None, {"data_dir": Path("unused")})).router.routes()
    if route.method != "HEAD" and route.resource is not None
)
"""Every route of the gateway (HEAD mirrors GET), from its own route table."""

AUTHENTICATED = {
    ("POST", "/v1/verifications"), ("POST", "/v1/verifications/batch"),
    ("POST", "/v1/matters/translate"), ("GET", "/v1/catalogues"),
    ("GET", "/v1/admin/trust-list"), ("POST", "/v1/admin/proposals"),
    ("POST", "/v1/admin/proposals/{id}/approve"), ("GET", "/v1/audit/records"),
    ("GET", "/v1/audit/export.csv"), ("POST", "/v1/partner/licences/query"),
    ("GET", "/metrics"),
}
"""Routes of each kind of caller (local system, operator, auditor, partner, scraper)."""


class Answer:
    """Status, headers and body of one raw HTTP/1.1 exchange."""

    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ", 2)[1])
        self.headers = {name.strip().lower(): value.strip()
                        for name, _, value in (line.partition(":") for line in lines[1:])}

    @property
    def content_type(self) -> str:
        """The media type, without parameters."""
        return self.headers.get("content-type", "").split(";")[0]


async def raw_request(client: Client, method: str, path: str,
                      authorization: bytes | None) -> Answer:
    """Send ``Authorization`` as these very bytes: aiohttp's client would encode a str as UTF-8."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    body = b"{}" if method == "POST" else b""
    auth = b"" if authorization is None else b"Authorization: " + authorization + b"\r\n"
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: gateway\r\n".encode() + auth
                 + b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
                 + b"Connection: close\r\n\r\n" + body)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    return Answer(raw)


@pytest.mark.parametrize("authorization", [b"Bearer \xff\xfe", b"Bearer caf\xe9"],
                         ids=["ff-fe", "latin-1-e-acute"])
async def test_non_utf8_authorization_is_refused_like_no_credential_on_every_route(
        aiohttp_client: Callable[..., Awaitable[Client]], tmp_path: Path,
        running: RunningFederation, authorization: bytes) -> None:
    """On every route of the route table, an Authorization header whose bytes are not UTF-8
    is answered as a missing credential is: a 401 problem body where a credential is
    needed, the route's own answer where none is; never a 5xx."""
    # The whole gateway, its own audit log included (the audit routes need it).
    client = await aiohttp_client(create_app(
        load_settings({}, None, {"data_dir": tmp_path}),
        trust_list=TrustList.from_json(trust_document(running.federation))))
    refused: set[tuple[str, str]] = set()
    for method, canonical in ROUTES:
        path = re.sub(r"\{[^}]+\}", "1", canonical)
        without = await raw_request(client, method, path, None)
        bad = await raw_request(client, method, path, authorization)
        assert (method, canonical, without.status, without.content_type) == (
            method, canonical, bad.status, bad.content_type)
        assert bad.status < 500, (method, canonical)
        if bad.status == 401:
            refused.add((method, canonical))
            assert "application/problem+json" == bad.content_type
            assert bad.headers["www-authenticate"].startswith("Bearer")
            problem = orjson.loads(bad.body)
            assert (401, bad.headers["x-request-id"]) == (problem["status"],
                                                          problem["request_id"])
    assert AUTHENTICATED <= refused


async def test_metrics_needs_an_operator_or_scraper_token(
        gateway_client: AppFactory, client_key: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """/metrics answers 401 without a credential, with an unknown one and with a local
    system's API key; 200 with a scraper's token (``operators add --role metrics``) and
    with an operator token of any role. The scraper's token opens nothing else (403)."""
    client = await gateway_client()
    assert 0 == await asyncio.to_thread(main, ["operators", "add", "prometheus", "--role",
                                               "metrics", "--data-dir", str(tmp_path)])
    scraper = capsys.readouterr().out.strip().splitlines()[-1]

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    for headers in ({}, bearer("ecg_o_" + "A" * 43), bearer(client_key)):
        refused = await client.get("/metrics", headers=headers)
        assert (401, "application/problem+json") == (refused.status, refused.content_type)
        assert "ecert_" not in await refused.text()
    scraped = await client.get("/metrics", headers=bearer(scraper))
    assert (200, "text/plain") == (scraped.status, scraped.content_type)
    assert 3 == metric_value(await scraped.text(), "ecert_trust_list_version")
    for role in Role:
        token = await asyncio.to_thread(add_identity, tmp_path, IdentityKind.OPERATOR,
                                        f"op-{role.value}", role)
        assert 200 == (await client.get("/metrics", headers=bearer(token))).status
    for path in ("/v1/admin/trust-list", "/v1/admin/alerts", "/v1/audit/records"):
        assert 403 == (await client.get(path, headers=bearer(scraper))).status


async def test_a_remembered_key_is_answered_without_the_database(tmp_path: Path) -> None:
    """``IdentityStore.cached`` answers a key the store looked up a moment ago (the request
    path takes it without an await), says ``NOT_CACHED`` for one it has not, and judges a
    remembered key's expiry at every call, as ``lookup`` does."""
    key = await asyncio.to_thread(add_identity, tmp_path, IdentityKind.CLIENT, "window-09",
                                  expires="2030-01-01T00:00:00Z")
    now = [datetime(2029, 12, 31, 23, 59, 59, tzinfo=UTC)]
    store = IdentityStore(tmp_path, clock=lambda: now[0])
    await store.open()
    try:
        assert NOT_CACHED is store.cached(key)
        found = await store.lookup(key)
        assert found is not None
        assert "window-09" == found.name
        await store.close()  # from here, an answer can only come from what is remembered
        assert found == store.cached(key)
        assert found == await store.lookup(key)
        assert NOT_CACHED is store.cached(key + "x")
        now[0] = datetime(2030, 1, 1, tzinfo=UTC)  # the key's end: refused, and forgotten
        assert None is store.cached(key)
        assert NOT_CACHED is store.cached(key)
    finally:
        await store.close()
