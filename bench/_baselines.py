"""``python -m bench._baselines``: the baseline HTTP servers a gateway scenario is compared with.

* ``minimal``: aiohttp, ``POST /`` reads the body and returns a small JSON.
  The ceiling of any aiohttp endpoint on this machine.
* ``naive``: aiohttp, ``POST /`` parses ``{"credential": ...}`` and runs one
  ``jwt.decode(token, key=<one PyJWK ES256 key>, algorithms=["ES256"])`` (PyJWT),
  returning the claims' ``jti`` as JSON. What a first attempt at "verify a
  licence over HTTP" costs: one signature check and JSON, no trust list, no
  status list, no receipt, no audit record.

The Node.js counterpart of ``naive`` (jose's ``compactVerify``) is
``bench/node/server.js``. Earlier runs also had a ``floor`` server built from
the gateway's own audit service and signer; issue 22 showed it measured those
components rather than a limit, so it was removed (``bench/README.md``).

All answer ``GET /`` with ``{"status": "ok"}`` for readiness and run until
SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import jwt
import orjson
from aiohttp import web

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


def main(argv: Sequence[str] | None = None) -> int:
    """Serve one baseline until signalled."""
    parser = argparse.ArgumentParser(prog="python -m bench._baselines", description=__doc__)
    parser.add_argument("kind", choices=["minimal", "naive"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--jwk", type=Path, help="public JWK file (naive)")
    args = parser.parse_args(argv)
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
