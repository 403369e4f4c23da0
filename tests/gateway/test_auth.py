"""Bearer credentials at the HTTP edge: header bytes that are not UTF-8."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import load_settings
from mocks import RunningFederation
from tests.gateway.conftest import trust_document
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
}
"""Routes of each kind of caller (local system, operator, auditor, partner)."""


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
