"""The lane (``gateway.web.lane``): simple single verifications answered without aiohttp's
per-request machinery, byte for byte as aiohttp answers them, and everything else aiohttp's
way, in order.

Every other test of ``POST /v1/verifications`` that starts a gateway through
``gateway_client`` goes through the lane too (``GatewayTestServer``: the runner ``serve``
uses, lane on as by default); these tests check what is particular to it, comparing a
gateway with the lane and one without (``http_lane = false``)."""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import re
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.verification.service import VerificationService
from gateway.web.appkeys import VERIFICATION_KEY
from mocks import RunningFederation
from tests.gateway.conftest import AppFactory

pytestmark = pytest.mark.asyncio

Answer = tuple[str, dict[str, str], bytes]
"""Status line, headers (lower-case names) and body of one answer read off the socket."""


def _lane_taken(client: TestClient[web.Request, web.Application]) -> int:
    server = client.server.runner.server  # type: ignore[union-attr]
    return int(server.lane_taken)  # type: ignore[union-attr]


async def _exchange(client: TestClient[web.Request, web.Application], raw: bytes,
                    answers: int, *, pieces: list[int] | None = None,
                    pause: float = 0.0) -> list[Answer]:
    """Write ``raw`` on one new connection (cut at ``pieces`` offsets, ``pause`` seconds
    apart) and read ``answers`` answers; each body by its Content-Length."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        cuts = [0, *(pieces or []), len(raw)]
        for start, end in itertools.pairwise(cuts):
            writer.write(raw[start:end])
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
        got: list[Answer] = []
        for _ in range(answers):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            status, *lines = head[:-4].decode().split("\r\n")
            headers = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
            got.append((status, headers, body))
        return got
    finally:
        writer.close()


def _post(key: str | None, body: bytes, *, version: str = "1.1", extra: str = "",
          content_type: str = "application/json") -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (f"POST /v1/verifications HTTP/{version}\r\nHost: gateway\r\n{auth}"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            ).encode() + body


def _comparable(answer: Answer) -> tuple[str, list[str], dict[str, Any] | bytes]:
    """What two gateways answering the same request must agree on: the status line, the
    header names in order and every header value but the time, the request id and the
    length (a receipt's proof grows with the log), and the body with its per-request values
    (ids, times, receipts) taken out."""
    status, headers, body = answer
    names = list(headers)
    values = [f"{k}: {v}" for k, v in headers.items()
              if k not in ("date", "x-request-id", "content-length")]
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return status, names + values, body
    for key in ("request_id", "receipt", "checked_at", "verified_at"):
        if isinstance(data, dict):
            data.pop(key, None)
    return status, names + values, data


async def _twins(gateway_client: AppFactory, **settings: Any
                 ) -> tuple[TestClient[web.Request, web.Application],
                            TestClient[web.Request, web.Application]]:
    lane = await gateway_client(**settings)
    plain = await gateway_client(http_lane=False, **settings)
    return lane, plain


async def test_the_lane_answers_as_aiohttp_does(gateway_client: AppFactory,
                                                running: RunningFederation,
                                                client_key: str) -> None:
    """The same requests to a gateway with the lane and one without get the same answers:
    status line, headers (but the date and the request id), body (but what is per
    request), for a pass, a refusal of the licence, and the 4xx of the request itself."""
    lane, plain = await _twins(gateway_client)
    issued = running.federation["310000"].issue()
    good = orjson.dumps({"credential": issued.token, "use_cause": "办理营业执照变更"})
    cases = [
        _post(client_key, good),
        _post(client_key, good, version="1.0"),
        _post(client_key, good, extra="Connection: close\r\n"),
        _post(client_key, orjson.dumps({"credential": "not.a.licence"})),
        _post(None, good),
        _post("unknown-key", good),
        _post(client_key, b"{not json"),
        _post(client_key, b"[]"),
        _post(client_key, good, content_type="text/plain"),
        _post(client_key, orjson.dumps({"credential": issued.token, "use_cause": "x" * 201})),
        _post(client_key, good, extra="X-Request-Id: caller-chosen-1\r\n"),
    ]
    before = _lane_taken(lane)
    for raw in cases:
        ours = await _exchange(lane, raw, 1)
        theirs = await _exchange(plain, raw, 1)
        assert _comparable(ours[0]) == _comparable(theirs[0]), raw[:120]
    assert _lane_taken(lane) - before == len(cases)
    assert _lane_taken(plain) == 0
    # The caller's request id is kept, as the middleware keeps it.
    answer = await _exchange(lane, cases[-1], 1)
    assert answer[0][1]["x-request-id"] == "caller-chosen-1"


async def test_pipelined_requests_are_answered_in_order(gateway_client: AppFactory,
                                                        running: RunningFederation,
                                                        client_key: str) -> None:
    """Requests written at once, to the lane's route and to others, are answered in the
    order they came, each as it should be."""
    client = await gateway_client()
    first, second = (running.federation["310000"].issue() for _ in range(2))
    raw = (_post(client_key, orjson.dumps({"credential": first.token}))
           + b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n"
           + _post(client_key, orjson.dumps({"credential": second.token}))
           + b"GET /nowhere HTTP/1.1\r\nHost: gateway\r\n\r\n"
           + _post(client_key, orjson.dumps({"credential": first.token})))
    answers = await _exchange(client, raw, 5)
    assert [a[0] for a in answers] == ["HTTP/1.1 200 OK", "HTTP/1.1 200 OK", "HTTP/1.1 200 OK",
                                       "HTTP/1.1 404 Not Found", "HTTP/1.1 200 OK"]
    identifiers = [orjson.loads(a[2])["licence"]["identifier"]
                   for a in (answers[0], answers[2], answers[4])]
    assert identifiers == [first.identifier, second.identifier, first.identifier]


async def test_a_body_in_pieces_is_read_as_it_comes(gateway_client: AppFactory,
                                                    running: RunningFederation,
                                                    client_key: str) -> None:
    """Headers first, the body a moment later (as a client that writes them apart sends
    them): the lane reads the body as it comes and answers once it is whole."""
    client = await gateway_client()
    issued = running.federation["310000"].issue()
    raw = _post(client_key, orjson.dumps({"credential": issued.token}))
    cut = raw.index(b"\r\n\r\n") + 4
    before = _lane_taken(client)
    answers = await _exchange(client, raw + raw, 2, pieces=[cut, cut + 10, len(raw) + 5],
                              pause=0.05)
    assert [a[0] for a in answers] == ["HTTP/1.1 200 OK", "HTTP/1.1 200 OK"]
    assert orjson.loads(answers[0][2])["indication"] == "TOTAL_PASSED"
    assert "connection" not in answers[0][1]
    assert _lane_taken(client) == before + 2


async def test_a_refusal_before_the_body_reads_the_rest_then_serves_on(
        gateway_client: AppFactory, running: RunningFederation, client_key: str) -> None:
    """Refused before its body came (no key): the 401 is written, the rest of the body is
    read and dropped when it comes, and the connection serves the next request, with the
    lane as without it (aiohttp's lingering read)."""
    lane, plain = await _twins(gateway_client)
    body = orjson.dumps({"credential": running.federation["310000"].issue().token})
    refused = _post(None, body)
    cut = refused.index(b"\r\n\r\n") + 4
    for client in (lane, plain):
        answers = await _exchange(client, refused + _post(client_key, body), 2,
                                  pieces=[cut], pause=0.2)
        assert [a[0] for a in answers] == ["HTTP/1.1 401 Unauthorized", "HTTP/1.1 200 OK"]
        assert "connection" not in answers[0][1]


async def test_a_body_over_the_limit_is_answered_413_without_a_reset(
        gateway_client: AppFactory, client_key: str) -> None:
    """A declared length over the limit: 413 at once; the body the client goes on sending
    is read and dropped, so the answer is not lost to a reset (through the test client,
    which sends the whole body)."""
    client = await gateway_client()  # 1 MiB for a single verification
    for _ in range(3):
        resp = await client.post("/v1/verifications", data=io.BytesIO(b"x" * 3_000_000),
                                 headers={"Authorization": f"Bearer {client_key}",
                                          "Content-Type": "application/json"})
        assert resp.status == 413


async def test_an_expectation_goes_aiohttps_way(gateway_client: AppFactory,
                                                running: RunningFederation,
                                                client_key: str) -> None:
    """``Expect: 100-continue``: aiohttp answers the expectation, then the request."""
    client = await gateway_client()
    issued = running.federation["310000"].issue()
    raw = _post(client_key, orjson.dumps({"credential": issued.token}),
                extra="Expect: 100-continue\r\n")
    cut = raw.index(b"\r\n\r\n") + 4
    before = _lane_taken(client)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(raw[:cut])
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10) == (
            b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(raw[cut:])
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert _lane_taken(client) == before


async def test_connection_close_and_http_1_0_close_after_the_answer(
        gateway_client: AppFactory, running: RunningFederation, client_key: str) -> None:
    client = await gateway_client()
    body = orjson.dumps({"credential": running.federation["310000"].issue().token})
    for raw in (_post(client_key, body, extra="Connection: close\r\n"),
                _post(client_key, body, version="1.0")):
        reader, writer = await asyncio.open_connection(client.host, client.port)
        try:
            writer.write(raw)
            data = await asyncio.wait_for(reader.read(), 10)  # to the end: the server closed
        finally:
            writer.close()
        assert data.startswith((b"HTTP/1.1 200 OK", b"HTTP/1.0 200 OK"))
        assert data.count(b"HTTP/1.") == 1


async def test_an_error_in_the_handler_is_answered_as_without_the_lane(
        gateway_client: AppFactory, running: RunningFederation, client_key: str,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """An exception in the verification is logged and answered with the middleware's 500
    problem, as without the lane; the connection goes on serving."""
    lane, plain = await _twins(gateway_client)

    async def broken(self: VerificationService, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the verifier broke")

    body = orjson.dumps({"credential": running.federation["310000"].issue().token})
    with monkeypatch.context() as patch:
        patch.setattr(VerificationService, "verify", broken)
        with caplog.at_level(logging.ERROR):
            ours = await _exchange(lane, _post(client_key, body), 1)
        theirs = await _exchange(plain, _post(client_key, body), 1)
    assert _comparable(ours[0]) == _comparable(theirs[0])
    assert ours[0][0] == "HTTP/1.1 500 Internal Server Error"
    assert ours[0][1]["content-type"] == "application/problem+json"
    assert any("the verifier broke" in (r.exc_text or "") or
               (r.exc_info and "the verifier broke" in str(r.exc_info[1]))
               for r in caplog.records)
    again = await _exchange(lane, _post(client_key, body), 1)
    assert again[0][0] == "HTTP/1.1 200 OK"


async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(
        gateway_client: AppFactory, running: RunningFederation, client_key: str) -> None:
    """After a lane answer the connection is kept alive, and closed once idle for the
    keep-alive timeout, as aiohttp's loop closes it."""
    client = await gateway_client()
    server = client.server.runner.server  # type: ignore[union-attr]
    server._kwargs["keepalive_timeout"] = 0.3  # type: ignore[union-attr] # new connections
    body = orjson.dumps({"credential": running.federation["310000"].issue().token})
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(_post(client_key, body))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
        await reader.readexactly(length)
        rest = await asyncio.wait_for(reader.read(), 5)  # the server closes: EOF
    finally:
        writer.close()
    assert rest == b""


async def test_a_stop_lets_the_lane_answer_first(
        gateway_client: AppFactory, running: RunningFederation, client_key: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A graceful stop while the lane verifies: the answer is written before the
    connection closes."""
    client = await gateway_client()
    service = client.app[VERIFICATION_KEY]
    real = service.verify
    entered = asyncio.Event()

    async def slow(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        await asyncio.sleep(0.3)
        return await real(*args, **kwargs)

    monkeypatch.setattr(service, "verify", slow)
    body = orjson.dumps({"credential": running.federation["310000"].issue().token})
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(_post(client_key, body))
        await asyncio.wait_for(entered.wait(), 10)
        stopping = asyncio.create_task(client.server.runner.server.shutdown(5))  # type: ignore[union-attr]
        data = await asyncio.wait_for(reader.read(), 10)
        await stopping
    finally:
        writer.close()
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert b'"TOTAL_PASSED"' in data


@pytest.mark.parametrize("value", ["a\r\nSet-Cookie: x=1", "a\nb", "a\rb"])
async def test_a_header_split_in_two_is_refused(value: str) -> None:
    """A header value with a line break is never written (aiohttp refuses it too): the
    lane's serialiser raises, and ``Lane.answer`` answers with the error handler instead."""
    from aiohttp.base_protocol import BaseProtocol
    from aiohttp.http_parser import HttpRequestParser

    from gateway.web.lane import _serialise

    loop = asyncio.get_running_loop()
    parser = HttpRequestParser(BaseProtocol(loop), loop, 2**16)
    (message, _), *_ = parser.feed_data(b"POST /v1/verifications HTTP/1.1\r\n"
                                        b"Host: a\r\nContent-Length: 0\r\n\r\n")[0]
    good, keep = _serialise(web.Response(body=b"{}", headers={"X-A": "plain"}), message)
    assert keep
    assert good.startswith(b"HTTP/1.1 200 OK\r\nX-A: plain\r\nContent-Length: 2\r\n")
    assert good.endswith(b"\r\n\r\n{}")
    response = web.Response(body=b"{}")
    response.headers["X-A"] = value
    with pytest.raises(ValueError, match="newline or carriage return"):
        _serialise(response, message)
    # What aiohttp's prepare() would add, the lane does not write: refused, not dropped.
    cookie, compressed, chunked = (web.Response(body=b"{}") for _ in range(3))
    cookie.set_cookie("session", "x")
    compressed.enable_compression()
    chunked.enable_chunked_encoding()
    for response in (cookie, compressed, chunked):
        with pytest.raises(TypeError, match="no cookies, compression or chunked"):
            _serialise(response, message)


async def test_more_requests_pipelined_than_aiohttp_queues(
        gateway_client: AppFactory, running: RunningFederation, client_key: str) -> None:
    """More requests written at once than aiohttp's message queue holds (32): the parser
    pauses, and reading resumes as the lane takes them; every one is answered, in order."""
    client = await gateway_client()
    issued = [running.federation["310000"].issue() for _ in range(3)]
    raw = b"".join(_post(client_key, orjson.dumps({"credential": issued[i % 3].token}))
                   for i in range(45))
    answers = await _exchange(client, raw, 45)
    assert all(a[0] == "HTTP/1.1 200 OK" for a in answers)
    assert [orjson.loads(a[2])["licence"]["identifier"] for a in answers] == [
        issued[i % 3].identifier for i in range(45)]


async def test_more_bodiless_requests_pipelined_than_aiohttp_queues(
        gateway_client: AppFactory, client_key: str) -> None:
    """The same with requests that have no body (each refused: not JSON), so that no body
    read resumes the paused transport: the lane resumes it as aiohttp's loop would."""
    client = await gateway_client()
    answers = await _exchange(client, _post(client_key, b"") * 45, 45)
    assert [a[0] for a in answers] == ["HTTP/1.1 400 Bad Request"] * 45
