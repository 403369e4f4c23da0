"""The lane: the busiest routes answered without aiohttp's per-request machinery.

aiohttp's connection protocol answers every request the same way: a task per
request, a ``Request`` object, a ``StreamWriter``, a ``Response`` prepared
header by header. On this project's machines that machinery costs more CPU
than parsing the request and answering it (``docs/performance.md``, "The HTTP
layer", with the bench's ``bare`` row). For the routes of ``LANE_ROUTES``
(verifications, partner queries, translations), the connection protocol of
``gateway.web.runner`` hands a request to ``Lane.answer`` instead when it is
simple and the connection is idle:

* the same middleware and the same handler run (request id, problem bodies,
  metrics and access log, authentication, limits, the verification): only the
  request object differs, a ``LaneRequest`` holding what the parser gave (the
  body, whole or still coming, is read from the parser's stream as aiohttp's
  request reads it);
* the answer is written to the transport as aiohttp would write it: the same
  status line, the handler's headers, ``Content-Length``, ``Date``, ``Server``
  and ``Connection`` by aiohttp's rules.

Anything else goes aiohttp's way, unchanged: other routes and methods,
``Expect``, an upgrade, a request the parser refused, and every request that
arrives while aiohttp is busy on the connection (answers leave in the order
the requests came). A request answered before its body was read whole (a
refusal) has the rest of its body read and dropped after the answer, for up to
aiohttp's lingering time, as aiohttp does; the connection closes if it does
not end by then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial, update_wrapper
from typing import Any, Final, cast

from aiohttp import hdrs, web
from aiohttp.helpers import HeadersMixin, rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion10, HttpVersion11, RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_urldispatcher import UrlMappingMatchInfo
from multidict import CIMultiDictProxy, MultiDict, MultiDictProxy

__all__ = ["LANE_ROUTES", "Lane", "LaneRequest", "lanes_of"]

LANE_ROUTES: Final = (
    ("POST", "/v1/verifications"),
    ("POST", "/v1/verifications/batch"),
    ("POST", "/v1/partner/licences/query"),
    ("POST", "/v1/matters/translate"),
)
"""Method and path of the routes the lane answers: the requests sent most, by local
systems (verifications, translations) and by partners (queries) (issue 22)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _NoOutput:
    """``request.writer`` of a lane request, as aiohttp's ``handle_error`` reads it: nothing
    of the answer is written before the handler returns."""

    output_size = 0


class LaneRequest(HeadersMixin, dict[str, Any]):
    """What the lane's handler and middleware read of a request (a ``web.Request``'s names):
    the parser's message and body, the application, the route matched, the peer.

    It is a mapping, as a ``web.Request`` is, for the values the middleware and the
    handlers keep on a request (its id, the caller)."""

    writer = _NoOutput()
    query: MultiDictProxy[str] = MultiDictProxy(MultiDict())
    """Always empty: a request with a query string does not take the lane."""

    def __init__(self, message: RawRequestMessage, payload: StreamReader,
                 app: web.Application, match_info: UrlMappingMatchInfo,
                 peername: Callable[[], object]) -> None:
        super().__init__()
        self._message = message
        self._headers: CIMultiDictProxy[str] = message.headers
        self.content = payload
        self.app = app
        self.match_info = match_info
        self._peername = peername

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        return self._headers

    @property
    def method(self) -> str:
        return self._message.method

    @property
    def path(self) -> str:
        return self._message.path

    @property
    def remote(self) -> str | None:
        """The peer's address, as ``web.Request.remote`` gives it (no proxy headers)."""
        peer = self._peername()
        if isinstance(peer, (list, tuple)):
            return str(peer[0])
        return None if peer is None else str(peer)

    async def read(self) -> bytes:
        """The body, read to its end."""
        return await self.content.read()


@dataclass(frozen=True, slots=True)
class Lane:
    """One route the lane answers: its handler under the application's middleware."""

    app: web.Application
    match_info: UrlMappingMatchInfo
    handler: Handler

    async def answer(self, message: RawRequestMessage, payload: StreamReader,
                     peername: Callable[[], object],
                     on_error: Callable[[LaneRequest, BaseException], web.StreamResponse],
                     ) -> tuple[bytes, bool]:
        """The bytes of the answer to one request and whether the connection stays open.

        ``on_error`` makes the answer to an exception the middleware let through (the
        connection protocol's ``handle_error``: logged, a 500 that closes), as aiohttp's
        ``_handle_request`` does."""
        request = LaneRequest(message, payload, self.app, self.match_info, peername)
        try:
            response = await self.handler(cast(web.Request, request))
        except web.HTTPException as exc:  # aiohttp answers these as they are
            response = exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            response = on_error(request, exc)
        try:
            return _serialise(response, message)
        except (ValueError, TypeError) as exc:  # a header value aiohttp would refuse too
            return _serialise(on_error(request, exc), message)


def _serialise(response: web.StreamResponse, message: RawRequestMessage) -> tuple[bytes, bool]:
    """``response`` as aiohttp writes it for ``message``: ``prepare``'s headers, then the
    body; and whether the connection is kept."""
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes):
        raise TypeError(f"the lane answers only with a bytes body, not {type(body).__name__}")
    if response._cookies or response.compression or response.chunked:
        # What prepare() would add or change here (it reads _cookies too: the ``cookies``
        # property makes an empty jar); no handler of LANE_ROUTES asks for it.
        raise TypeError("the lane writes no cookies, compression or chunked answers")
    keep_alive = response.keep_alive
    if keep_alive is None:
        keep_alive = not message.should_close
    version = message.version
    headers = response.headers
    lines = [f"HTTP/{version.major}.{version.minor} {response.status} {response.reason}"]
    for name, value in headers.items():
        if name.lower() != "content-length":
            lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    if hdrs.DATE not in headers:
        lines.append(f"Date: {rfc822_formatted_time()}")
    if hdrs.SERVER not in headers:
        lines.append(f"Server: {SERVER_SOFTWARE}")
    if hdrs.CONNECTION not in headers:
        if keep_alive:
            if version == HttpVersion10:
                lines.append("Connection: keep-alive")
        elif version == HttpVersion11:
            lines.append("Connection: close")
    head = "\r\n".join(lines)
    breaks = len(lines) - 1
    if head.count("\n") != breaks or head.count("\r") != breaks:
        # aiohttp refuses the same (_serialize_headers): never a header split in two.
        raise ValueError("newline or carriage return in the status line or a header")
    return head.encode("utf-8") + b"\r\n\r\n" + body, bool(keep_alive)


def lanes_of(app: web.Application) -> Mapping[tuple[str, str], Lane]:
    """The lanes of a frozen ``app``: each route of ``LANE_ROUTES`` it serves, wrapped in
    its middleware as aiohttp wraps it (``Application._handle``). None where the
    application serves the route in a way the lane does not copy (old-style middleware,
    a sub-application, response signals): those go aiohttp's way."""
    if not app.frozen or app.on_response_prepare:
        return {}
    middlewares = app._middlewares_handlers  # what Application._handle wraps handlers in
    if middlewares is None or any(not new_style for _, new_style in middlewares):
        return {}
    lanes: dict[tuple[str, str], Lane] = {}
    for route in app.router.routes():
        key = (route.method, route.resource.canonical if route.resource else "")
        if key not in LANE_ROUTES or not isinstance(route.resource, web.PlainResource):
            continue
        match_info = UrlMappingMatchInfo({}, route)
        match_info.add_app(app)
        match_info.freeze()
        handler: Handler = route.handler
        for middleware, _ in middlewares:  # innermost first, as aiohttp builds the chain
            handler = update_wrapper(partial(middleware, handler=handler), handler)
        lanes[key] = Lane(app, match_info, handler)
    return lanes
