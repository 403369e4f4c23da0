"""HTTP faces of the mock regions (aiohttp), one server per region on loopback.

Routes of a region's server:

* ``GET /jwks.json`` and ``GET /.well-known/jwks.json``: its JWK Set;
* ``GET /status/{name}``: its status list token (``application/statuslist+jwt``),
  fresh on every request; 503 while ``region.status_available`` is False;
* ``GET /trust-entry``: its partner entry for a trust list;
* ``GET /licences/{n}``: demo licence ``n`` as ``{"identifier", "status_idx", "token"}``;
* ``GET /combined/{n}``: demo combined certificate (多证合一) ``n``, with its components'
  ``{"identifier", "type_code", "status_idx"}``, where the region issues them (else 404);
* ``POST /v1/partner/licences/query``: Huzhou's signed query for the region's licences
  (``MockRegion.answer_query``); 503 while ``region.query_available`` is False, after
  ``region.query_delay_s`` seconds;
* ``POST /admin/status/{idx}`` with ``{"state": "valid" | "revoked" | "suspended"}``:
  change a licence's status (for demos driving a mock in another process);
* for a region that runs a witness or keeps a log (``mocks._witness``):
  ``POST /witness/add-checkpoint``, ``GET /log/checkpoint``, ``POST /admin/witness``.

A region's status URI must name its real port, so ports are reserved
(sockets bound) before anything is issued: :func:`reserve_sockets` binds and
sets every region's ``base_url``; :func:`serve_federation` does it itself
when not handed sockets.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import orjson
from aiohttp import web

from mocks._federation import Federation
from mocks._partner_client import QUERY_PATH
from mocks._region import MockRegion
from mocks._witness import LogPublisher, MockWitness, add_transparency

__all__ = [
    "REGION_KEY",
    "RunningFederation",
    "create_region_app",
    "reserve_sockets",
    "serve_federation",
]

REGION_KEY: Final = web.AppKey("region", MockRegion)
"""Where a region app keeps its :class:`MockRegion`."""


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE), status=status,
                        content_type="application/json")


async def _jwks(request: web.Request) -> web.Response:
    return _json(request.app[REGION_KEY].jwks())


async def _status(request: web.Request) -> web.Response:
    region = request.app[REGION_KEY]
    if request.match_info["name"] != region.status_list_name:
        raise web.HTTPNotFound
    if not region.status_available:
        raise web.HTTPServiceUnavailable
    now = int(time.time())
    lifetime = region.status_lifetime_s
    token = region.status_list_token(
        iat=now,
        exp=None if lifetime is None else now + lifetime,
        ttl=region.status_ttl_s,
    )
    return web.Response(text=token, content_type="application/statuslist+jwt")


async def _trust_entry(request: web.Request) -> web.Response:
    return _json(request.app[REGION_KEY].trust_list_entry())


def _index(request: web.Request, name: str, limit: int) -> int:
    text = request.match_info[name]
    if not text.isdigit() or int(text) >= limit:
        raise web.HTTPNotFound
    return int(text)


async def _licence(request: web.Request) -> web.Response:
    licence = request.app[REGION_KEY].demo_licence(_index(request, "n", 1000))
    return _json(
        {"identifier": licence.identifier, "status_idx": licence.status_idx, "token": licence.token}
    )


async def _combined(request: web.Request) -> web.Response:
    region = request.app[REGION_KEY]
    if not region.combined_certificates:
        raise web.HTTPNotFound
    issued = region.demo_combined(_index(request, "n", 1000))
    return _json({"identifier": issued.identifier, "status_idx": issued.status_idx,
                  "token": issued.token,
                  "components": [{"identifier": c.identifier, "type_code": c.type_code,
                                  "status_idx": c.status_idx} for c in issued.components]})


async def _set_status(request: web.Request) -> web.Response:
    region = request.app[REGION_KEY]
    idx = _index(request, "idx", 1 << 20)
    try:
        state = orjson.loads(await request.read())["state"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise web.HTTPBadRequest(text='body must be {"state": ...}') from None
    actions = {"valid": region.reinstate, "revoked": region.revoke, "suspended": region.suspend}
    if state not in actions:
        raise web.HTTPBadRequest(text="state is valid, revoked or suspended")
    actions[state](idx)
    return _json({"idx": idx, "state": state})


async def _query(request: web.Request) -> web.Response:
    region = request.app[REGION_KEY]
    region.queries_seen += 1
    if region.query_delay_s:
        await asyncio.sleep(region.query_delay_s)
    if not region.query_available:
        raise web.HTTPServiceUnavailable
    auth = request.headers.get("Authorization", "")
    token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
    status, body = region.answer_query(token=token, path=request.path,
                                       body=await request.read())
    return _json(body, status)


def create_region_app(region: MockRegion, *, witness: MockWitness | None = None,
                      publisher: LogPublisher | None = None) -> web.Application:
    """Return the aiohttp application serving ``region`` (with its witness and its log's
    publisher, when it runs them: ``mocks._witness``)."""
    app = web.Application()
    app[REGION_KEY] = region
    add_transparency(app, witness, publisher)
    app.router.add_get("/jwks.json", _jwks)
    app.router.add_get("/.well-known/jwks.json", _jwks)
    app.router.add_get("/status/{name}", _status)
    app.router.add_get("/trust-entry", _trust_entry)
    app.router.add_get("/licences/{n}", _licence)
    app.router.add_get("/combined/{n}", _combined)
    app.router.add_post("/admin/status/{idx}", _set_status)
    app.router.add_post(QUERY_PATH, _query)
    return app


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def reserve_sockets(federation: Federation, host: str = "127.0.0.1") -> dict[str, socket.socket]:
    """Bind a free port per region on ``host`` and set each region's ``base_url`` to it.

    The caller owns the sockets until it hands them to :func:`serve_federation`
    (which closes them when it stops).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: dict[str, socket.socket] = {}
    try:
        for region in federation:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets[region.region_code] = sock
            sock.bind((host, 0))
            region.base_url = _url(host, sock.getsockname()[1])
    except OSError:
        for sock in sockets.values():
            sock.close()
        raise
    return sockets


@dataclass(frozen=True, slots=True)
class RunningFederation:
    """The federation while its servers run, with each region's base URL."""

    federation: Federation
    urls: Mapping[str, str]
    """Base URL (``http://127.0.0.1:PORT``) by region code."""

    def url(self, region_code: str) -> str:
        """Return the base URL of region ``region_code``."""
        return self.urls[region_code]


@asynccontextmanager
async def serve_federation(
    federation: Federation,
    host: str = "127.0.0.1",
    *,
    sockets: Mapping[str, socket.socket] | None = None,
    witnesses: Mapping[str, MockWitness] | None = None,
    publishers: Mapping[str, LogPublisher] | None = None,
) -> AsyncIterator[RunningFederation]:
    """Serve every region of ``federation`` on its own port until the block exits.

    Without ``sockets`` free ports are reserved first (see :func:`reserve_sockets`),
    so licences issued inside the block carry the real status URIs.
    """
    owned = dict(sockets) if sockets is not None else reserve_sockets(federation, host)
    async with AsyncExitStack() as stack:
        for sock in owned.values():
            stack.callback(sock.close)
        for region in federation:
            code = region.region_code
            app = create_region_app(region, witness=(witnesses or {}).get(code),
                                    publisher=(publishers or {}).get(code))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await web.SockSite(runner, owned[region.region_code]).start()
        yield RunningFederation(federation, {r.region_code: r.base_url for r in federation})
