"""``python -m bench._baselines``: the baseline HTTP servers a gateway scenario is compared with.

* ``minimal``: aiohttp, ``POST /`` reads the body and returns a small JSON.
  The ceiling of any aiohttp endpoint on this machine.
* ``naive``: aiohttp, ``POST /`` parses ``{"credential": ...}`` and runs one
  ``jwt.decode(token, key=<one PyJWK ES256 key>, algorithms=["ES256"])`` (PyJWT),
  returning the claims' ``jti`` as JSON. What a first attempt at "verify a
  licence over HTTP" costs: one signature check and JSON, no trust list, no
  status list, no receipt, no audit record.

* ``bare``: no web framework: an ``asyncio.Protocol`` on uvloop that parses
  HTTP/1.1 with aiohttp's own C parser (llhttp) and answers ``POST /`` with the
  minimal endpoint's JSON once the body has arrived. What parsing one request
  and answering it costs in Python on this machine (the parse, the system calls,
  the loop), without aiohttp's web layer (request and response objects, the
  handler task, the stream writer): the difference between ``minimal`` and
  ``bare`` is that layer's price, a cost of the library and not a bound.

The Node.js counterpart of ``naive`` (jose's ``compactVerify``) is
``bench/node/server.js``. Earlier runs also had a ``floor`` server built from
the gateway's own audit service and signer; issue 22 showed it measured those
components rather than a limit, so it was removed (``bench/README.md``).

All answer ``GET /`` with ``{"status": "ok"}`` for readiness and run until
SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import jwt
import orjson
import uvloop
from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import HttpRequestParser

_OK: Final = orjson.dumps({"status": "ok"})
_KEY: Final = web.AppKey("naive_key", jwt.PyJWK)


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


async def _ready(_: web.Request) -> web.Response:
    return _json(_OK)


async def _minimal(request: web.Request) -> web.Response:
    await request.read()
    return _json(orjson.dumps({"ok": True, "service": "minimal"}))


async def _naive(request: web.Request) -> web.Response:
    try:
        token = orjson.loads(await request.read())["credential"]
        claims = jwt.decode(
            token, key=request.app[_KEY], algorithms=["ES256"], options={"verify_aud": False}
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, jwt.InvalidTokenError) as exc:
        return _json(orjson.dumps({"valid": False, "error": type(exc).__name__}), status=400)
    return _json(orjson.dumps({"valid": True, "jti": claims.get("jti")}))


def create_minimal_app() -> web.Application:
    """The minimal JSON endpoint."""
    app = web.Application()
    app.router.add_get("/", _ready)
    app.router.add_post("/", _minimal)
    return app


def create_naive_app(jwk: dict[str, object]) -> web.Application:
    """The naive verify endpoint, with the one key it knows."""
    app = web.Application()
    app[_KEY] = jwt.PyJWK(jwk, algorithm="ES256")
    app.router.add_get("/", _ready)
    app.router.add_post("/", _naive)
    return app


_BARE_HEAD: Final = (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n%s\r\n")
_BARE_LIMIT: Final = 1 << 20
"""Largest body the bare server reads (aiohttp's ``client_max_size`` default)."""


class BareProtocol(BaseProtocol):
    """One connection of the ``bare`` baseline: HTTP/1.1 keep-alive and pipelining,
    answers in the order asked, each once its whole body has arrived.

    ``GET /`` answers ``{"status": "ok"}``, ``POST /`` the minimal endpoint's JSON,
    anything else 404; a request the parser refuses gets 400 and the connection closes.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._http = HttpRequestParser(self, loop, 2**16, max_line_size=8190,
                                       max_field_size=8190, max_headers=128)
        # Also where BaseProtocol's flow control pauses and resumes it (a large body).
        self._parser = self._http
        self._queue: deque[tuple[Any, Any]] = deque()  # (message, payload) not yet answered
        self._closing = False
        self._read = 0  # body bytes read of the request in front
        self._flushing = False

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            messages, _, _ = self._http.feed_data(data)
        except HttpProcessingError:
            self._closing = True
            self._answer(400, b"Bad Request", orjson.dumps({"error": "bad request"}), close=True)
            return
        self._queue.extend(messages)
        if self._queue:  # new requests, or more of the body of the one in front
            self._flush()

    def _flush(self) -> None:
        """Answer, in order, every queued request whose body is complete. The body of the
        request in front is read as it comes (so the transport is never left paused on a
        full buffer) and counted, as a handler reading it would."""
        if self._flushing:  # reading resumed from inside: data_received, then here again
            return
        self._flushing = True
        try:
            self._answer_ready()
        finally:
            self._flushing = False

    def _answer_ready(self) -> None:
        queue = self._queue
        while queue and not self._closing:
            message, payload = queue[0]
            self._read += len(payload.read_nowait())
            if not payload.is_eof():
                return  # the rest of the body comes later: data_received calls again
            queue.popleft()
            size, self._read = self._read, 0
            close = message.should_close
            if size > _BARE_LIMIT:
                self._answer(413, b"Payload Too Large", orjson.dumps({"error": "too large"}),
                             close=True)
                close = True
            elif message.path != "/":
                self._answer(404, b"Not Found", orjson.dumps({"error": "not found"}), close)
            elif message.method == "POST":
                self._answer(200, b"OK", orjson.dumps({"ok": True, "service": "bare"}), close)
            else:
                self._answer(200, b"OK", _OK, close)
            if close:
                self._closing = True

    def _answer(self, status: int, reason: bytes, body: bytes, close: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        extra = b"Connection: close\r\n" if close else b""
        transport.write(_BARE_HEAD % (status, reason, len(body), extra) + body)
        if close:
            transport.close()


async def serve_bare(port: int) -> None:
    """Serve the ``bare`` baseline on 127.0.0.1:``port`` until SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: BareProtocol(loop), "127.0.0.1", port)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve one baseline until signalled."""
    parser = argparse.ArgumentParser(prog="python -m bench._baselines", description=__doc__)
    parser.add_argument("kind", choices=["minimal", "naive", "bare"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--jwk", type=Path, help="public JWK file (naive)")
    args = parser.parse_args(argv)
    if args.kind == "bare":
        uvloop.run(serve_bare(args.port))
        return 0
    if args.kind == "naive":
        if args.jwk is None:
            parser.error("naive needs --jwk")
        app = create_naive_app(orjson.loads(args.jwk.read_bytes()))
    else:
        app = create_minimal_app()
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None,
                shutdown_timeout=2.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
