"""The gateway's middleware: a request id on every answer, a problem body for every failure."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, make_mocked_request

from gateway.audit._service import LogIntegrityError
from gateway.web.logs import request_id_of, request_id_var
from gateway.web.middleware import request_middleware
from gateway.web.problems import Problem

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


class _Seen(logging.Handler):
    """Remembers the request id in context when each record was logged."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str | None] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.ids.append(request_id_var.get())


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"id": request_id_of(request), "ctx": request_id_var.get()})


async def _problem(_: web.Request) -> web.Response:
    raise Problem(409, "Conflict", "already there", extra={"cn_status": 12},
                  headers={"Retry-After": "3"})


async def _bug(_: web.Request) -> web.Response:
    raise KeyError("a bug")


async def _audit_broken(_: web.Request) -> web.Response:
    raise LogIntegrityError("leaf hashes no longer match")


async def _read(request: web.Request) -> web.Response:
    return web.json_response({"bytes": len(await request.read())})


async def _redirect(_: web.Request) -> web.Response:
    raise web.HTTPFound("/ok")


@pytest.fixture
async def client(aiohttp_client: MakeClient) -> Client:
    app = web.Application(middlewares=[request_middleware], client_max_size=64)
    app.router.add_get("/ok", _ok)
    app.router.add_post("/read", _read)
    app.router.add_get("/problem", _problem)
    app.router.add_get("/bug", _bug)
    app.router.add_get("/audit", _audit_broken)
    app.router.add_get("/redirect", _redirect)
    return await aiohttp_client(app)


async def test_request_id_given_or_made(client: Client) -> None:
    """A sane X-Request-Id is kept; a missing, long or unprintable one is replaced."""
    given = await client.get("/ok", headers={"X-Request-Id": "req-42"})
    assert "req-42" == given.headers["X-Request-Id"]
    assert {"id": "req-42", "ctx": "req-42"} == await given.json()
    made = [await client.get("/ok", headers=h)
            for h in ({}, {"X-Request-Id": "x" * 65}, {"X-Request-Id": "a\tb"})]
    ids = [r.headers["X-Request-Id"] for r in made]
    assert len(set(ids)) == 3
    assert all(i not in ("x" * 65, "a\tb") and 0 < len(i) <= 64 for i in ids)
    assert [{"id": i, "ctx": i} for i in ids] == [await r.json() for r in made]


async def test_request_id_context_is_reset() -> None:
    """The logging context holds the id only while the handler runs, failures included."""
    seen: list[str | None] = []

    async def handler(_: web.Request) -> web.StreamResponse:
        seen.append(request_id_var.get())
        raise KeyError("a bug")

    request = make_mocked_request("GET", "/x", headers={"X-Request-Id": "ctx-1"})
    response = await request_middleware(request, handler)
    assert (500, ["ctx-1"]) == (response.status, seen)
    assert request_id_var.get() is None


async def test_problem_keeps_status_headers_and_extras(client: Client) -> None:
    """A raised Problem becomes its problem body, with the request id."""
    response = await client.get("/problem", headers={"X-Request-Id": "p-1"})
    assert 409 == response.status
    assert "application/problem+json" == response.content_type
    assert "3" == response.headers["Retry-After"]
    assert "p-1" == response.headers["X-Request-Id"]
    body = await response.json()
    assert body["detail"] == "already there"
    assert body["cn_status"] == 12
    assert body["request_id"] == "p-1"


async def test_http_errors_become_problems(client: Client) -> None:
    """Unknown path, wrong method and an oversized body answer problem bodies too."""
    missing = await client.get("/nowhere")
    wrong = await client.delete("/ok")
    big = await client.post("/read", data=b"x" * 1000)
    for response, status in ((missing, 404), (wrong, 405), (big, 413)):
        assert status == response.status
        assert "application/problem+json" == response.content_type
        assert response.headers["X-Request-Id"]
        assert status == (await response.json())["status"]
    assert "request body exceeds the gateway's limit" == (await big.json())["detail"]
    small = await client.post("/read", data=b"x" * 10)
    assert {"bytes": 10} == await small.json()


async def test_unexpected_error_is_a_500_logged_with_its_request_id(client: Client) -> None:
    """A bug answers 500 without a trace; the log line carries the request id."""
    seen = _Seen()
    logging.getLogger("gateway.web.problems").addHandler(seen)
    try:
        response = await client.get("/bug", headers={"X-Request-Id": "bug-7"})
    finally:
        logging.getLogger("gateway.web.problems").removeHandler(seen)
    assert 500 == response.status
    body = await response.json()
    assert body["request_id"] == "bug-7"
    assert "a bug" not in body["detail"]
    assert ["bug-7"] == seen.ids


async def test_mapped_domain_error_subclass(client: Client) -> None:
    """A subclass of a mapped error (the audit log's integrity error) maps as its base: 503."""
    response = await client.get("/audit")
    assert 503 == response.status
    assert (await response.json())["title"] == "Audit log unavailable"


async def test_redirect_passes_through(client: Client) -> None:
    """A redirect is not a failure."""
    response = await client.get("/redirect", allow_redirects=False)
    assert 302 == response.status
    assert "/ok" == response.headers["Location"]
