"""Huzhou's outbound partner queries: a partner that misbehaves is unavailable, never a raise."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.cases.partners import MAX_LICENCES, PartnerQueries, PartnerReply
from gateway.infra.signing import load_or_create_key
from mocks import Federation
from tests.gateway.conftest import trust_document
from tests.services import free_port
from trust import Partner, TrustList

pytestmark = pytest.mark.asyncio

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def queries(tmp_path: Path) -> AsyncIterator[PartnerQueries]:
    """A started client with Huzhou's request key and a 1 s deadline."""
    key = await asyncio.to_thread(load_or_create_key, tmp_path, "request-signing",
                                  kid_prefix="330500-req", alg="ES256")
    client = PartnerQueries(key=key, gateway_id="330500", timeout_s=1.0)
    await client.start()
    yield client
    await client.close()


def _partner(url: str) -> Partner:
    tl = TrustList.from_json(trust_document(Federation.standard(seed=1, codes=["652929"])))
    partner = tl.partner("652929")
    assert partner is not None
    return dataclasses.replace(partner, query_endpoint=url)


async def _ask(queries: PartnerQueries, handler: Handler,
               aiohttp_server: Callable[..., Awaitable[TestServer]]) -> PartnerReply:
    app = web.Application()
    app.router.add_post("/q", handler)
    server = await aiohttp_server(app)
    return await queries.by_holder(
        _partner(str(server.make_url("/q"))), holder_code="652929199001011234",
        holder_code_type="111", type_code="11100000000013127D001",
        matter_code="公共服务-00902-001", use_cause="办理失业登记")


class TestMisbehaviour:
    @pytest.mark.parametrize(("body", "error"), [
        (b"<html>busy</html>", "answer is not a partner query answer"),
        (orjson.dumps({"cn_status": 0, "licences": "eyJ"}), "answer is not a partner query answer"),
        (b"x" * ((1 << 20) + 1), "answer over 1 MiB"),
        (orjson.dumps({"cn_status": 0, "licences": ["t"] * (MAX_LICENCES + 1)}),
         f"answer holds over {MAX_LICENCES} licences"),
    ], ids=["html", "licences-not-list", "too-large", "too-many"])
    async def test_a_bad_answer_is_an_error(
            self, queries: PartnerQueries, body: bytes, error: str,
            aiohttp_server: Callable[..., Awaitable[TestServer]]) -> None:
        """An answer that is not the API's is the partner unavailable, with why."""

        async def handler(_: web.Request) -> web.Response:
            return web.Response(body=body, content_type="application/json")

        reply = await _ask(queries, handler, aiohttp_server)
        assert (None, (), error) == (reply.cn_status, reply.licences, reply.error)

    async def test_a_refused_connection_is_an_error(self, queries: PartnerQueries) -> None:
        """Nobody listening: unreachable, at once."""
        reply = await queries.by_holder(
            _partner(f"http://127.0.0.1:{free_port()}/q"), holder_code="652929199001011234",
            holder_code_type="111", type_code="11100000000013127D001",
            matter_code="公共服务-00902-001", use_cause="办理失业登记")
        assert reply.error is not None
        assert reply.error.startswith("unreachable")

    async def test_the_token_binds_the_request(
            self, queries: PartnerQueries,
            aiohttp_server: Callable[..., Awaitable[TestServer]]) -> None:
        """The request carries an ecert-request+jwt for this partner, path and body."""
        seen: dict[str, object] = {}

        async def handler(request: web.Request) -> web.Response:
            token = request.headers["Authorization"].removeprefix("Bearer ")
            head, claims = (orjson.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
                            for p in token.split(".")[:2])
            body = await request.read()
            seen.update(head=head, claims=claims,
                        digest=hashlib.sha256(body).hexdigest(), body=orjson.loads(body))
            return web.json_response({"cn_status": 10, "message": "not found", "licences": []})

        reply = await _ask(queries, handler, aiohttp_server)
        assert (10, None) == (reply.cn_status, reply.error)
        claims = seen["claims"]
        assert isinstance(claims, dict)
        assert ("ecert-request+jwt", "ES256") == (seen["head"]["typ"], seen["head"]["alg"])  # type: ignore[index]
        assert ("330500", "652929", "POST", "/q", seen["digest"]) == (
            claims["iss"], claims["aud"], claims["htm"], claims["htu"], claims["body_sha256"])
        assert {"region": "330500", "code": "公共服务-00902-001"} == seen["body"]["matter"]  # type: ignore[index]
