"""``python -m bench._baselines``: the baseline HTTP servers a gateway scenario is compared with.

* ``minimal``: aiohttp, ``POST /`` reads the body and returns a small JSON.
  The ceiling of any aiohttp endpoint on this machine.
* ``naive``: aiohttp, ``POST /`` parses ``{"credential": ...}`` and runs one
  ``jwt.decode(token, key=<one PyJWK ES256 key>, algorithms=["ES256"])`` (PyJWT),
  returning the claims' ``jti`` as JSON. What a first attempt at "verify a
  licence over HTTP" costs: one signature check and JSON, no trust list, no
  status list, no receipt, no audit record.

* ``floor``: the work the gateway's goals oblige every request to do, and
  nothing else, each piece as cheap as this stack makes it: no trust-list,
  claim, identifier, agreement, status or time checks, no cache, no
  authentication, a one-line answer. ``POST /verify`` (``{"credential"}`` or
  ``{"items": [...]}``): one ES256 verification per licence with its issuer's
  key picked by ``kid`` from a dict of pre-parsed keys, the payload read for
  the holder fields, an ES256 receipt signed over the credential's SHA-256,
  and an audit record made durable through the gateway's own ``AuditService``
  (SQLite, synchronous=FULL, group commit). ``POST /hit``: the receipt and the
  audit record only (what a cache hit must still do). ``POST /audit``: the
  audit record only (what an audited translation must still do). ``POST
  /partner`` (a partner query by identifier, ``Authorization: Bearer
  <ecert-request+jwt>``): what every answered partner query must do, one ES256
  check of the request token with the partner's key picked by ``kid``, its
  ``jti`` spent once in the replay cache (the gateway's ``RedisReplayCache``
  with ``--redis-url``, as gateway A runs in the bench, else its
  ``MemoryReplayCache``), the licence read through the gateway's own licence
  store (``--licences DIR``, a gateway data folder; it remembers licences found
  before, as the gateway's does), the licence signed with
  ES256, and an audit record made durable. Its two signature operations run on
  a ``gateway.infra.crypto_thread.CryptoThread`` beside the loop, as the gateway's
  do. Its rates bound what any gateway
  built this way on this machine can reach.

All answer ``GET /`` with ``{"status": "ok"}`` for readiness and run until
SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

import jwt
import orjson
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from gateway.audit import AuditService
from gateway.audit.event import ActorKind, AuditEvent, EventType
from gateway.infra.crypto_thread import CryptoThread
from gateway.infra.redislink import redis_client
from gateway.infra.signing import SigningKey
from gateway.licences.store import LicenceStore, open_store
from gateway.partner.checks import MemoryReplayCache, RedisReplayCache, ReplayCache
from gateway.settings import load_settings
from trust import MAX_REQUEST_LIFETIME_S, REQUEST_SKEW_S, b64url_decode, day_start_s

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


@dataclass(slots=True)
class _FloorState:
    keys: dict[str, ec.EllipticCurvePublicKey]
    sign_receipt: Callable[[dict[str, Any]], str]
    crypto: CryptoThread
    """Where ``/partner`` checks request-token signatures and signs licences."""
    sign_licence: Callable[[dict[str, Any]], Awaitable[str]]
    """The licence signer, its signature made on ``crypto``."""
    audit: AuditService | None = None
    request_keys: dict[str, ec.EllipticCurvePublicKey] = field(default_factory=dict)
    licences: LicenceStore | None = None
    replay: ReplayCache | None = None


_FLOOR: Final = web.AppKey("floor", _FloorState)
_ECDSA: Final = ec.ECDSA(hashes.SHA256())


def _licence_keys(trust_list: dict[str, Any], use: str = "licence-signing"
                  ) -> dict[str, ec.EllipticCurvePublicKey]:
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for partner in trust_list["partners"]:
        for anchor in partner["anchors"]:
            jwk = anchor.get("jwk")
            if anchor.get("use") == use and jwk and jwk.get("crv") == "P-256":
                key = jwt.PyJWK(jwk, algorithm="ES256").key
                if isinstance(key, ec.EllipticCurvePublicKey):
                    keys[anchor["kid"]] = key
    return keys


def _es256_parts(keys: dict[str, ec.EllipticCurvePublicKey], token: str
                 ) -> tuple[ec.EllipticCurvePublicKey, bytes, bytes, str]:
    """The key the header's ``kid`` names, the DER signature, the signing input, the payload
    part."""
    header_b64, payload_b64, sig_b64 = token.split(".")
    key = keys[orjson.loads(b64url_decode(header_b64))["kid"]]
    sig = b64url_decode(sig_b64)
    der = encode_dss_signature(int.from_bytes(sig[:32]), int.from_bytes(sig[32:]))
    return key, der, f"{header_b64}.{payload_b64}".encode(), payload_b64


def _es256_check(key: ec.EllipticCurvePublicKey, der: bytes, data: bytes) -> bool:
    try:
        key.verify(der, data, _ECDSA)
    except InvalidSignature:
        return False
    return True


def _es256(keys: dict[str, ec.EllipticCurvePublicKey], token: str) -> tuple[bool, bytes]:
    """One ES256 check (nothing else) with the key the header's ``kid`` names; the payload."""
    key, der, data, payload_b64 = _es256_parts(keys, token)
    return _es256_check(key, der, data), b64url_decode(payload_b64)


def _floor_verify(state: _FloorState, token: str) -> tuple[str, dict[str, str]]:
    """One ES256 signature check and the holder fields."""
    verified, payload = _es256(state.keys, token)
    lic = orjson.loads(payload)["lic"]
    return ("TOTAL_PASSED" if verified else "TOTAL_FAILED",
            {"holder_code": lic["holder_code"], "holder_name": lic["holder_name"]})


async def _floor_one(state: _FloorState, token: str, *, verify: bool,
                     receipt: bool) -> dict[str, Any]:
    started = time.perf_counter()
    at = datetime.now(UTC)
    digest = hashlib.sha256(token.encode()).hexdigest()
    indication, personal = "TOTAL_PASSED", dict[str, str]()
    if verify:
        indication, personal = _floor_verify(state, token)
    answer: dict[str, Any] = {"indication": indication}
    if receipt:
        claims = {"iss": "330500", "iat": int(at.timestamp()), "credential_sha256": digest,
                  "indication": indication}
        answer["receipt"] = state.sign_receipt(claims)
    assert state.audit is not None
    await state.audit.append(AuditEvent(
        event_type=EventType.VERIFICATION, actor_kind=ActorKind.LOCAL_SYSTEM,
        actor_id="floor", at=at, outcome=indication, personal=personal,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
        details={"credential_sha256": digest}))
    return answer


def _floor_handler(*, verify: bool, receipt: bool) -> Any:
    async def handle(request: web.Request) -> web.Response:
        state = request.app[_FLOOR]
        body = orjson.loads(await request.read())
        if "items" in body:
            results = await asyncio.gather(*(
                _floor_one(state, item["credential"], verify=verify, receipt=receipt)
                for item in body["items"]))
            return _json(orjson.dumps({"results": results}))
        return _json(orjson.dumps(await _floor_one(state, body.get("credential", ""),
                                                   verify=verify, receipt=receipt)))
    return handle


async def _floor_partner(request: web.Request) -> web.Response:
    state = request.app[_FLOOR]
    started = time.perf_counter()
    at = datetime.now(UTC)
    now = int(at.timestamp())
    raw = await request.read()
    token = request.headers.get("Authorization", "").partition(" ")[2]
    key, der, data, payload_b64 = _es256_parts(state.request_keys, token)
    if not await state.crypto.run(_es256_check, key, der, data):
        return _json(orjson.dumps({"cn_status": 11}), status=401)
    claims = orjson.loads(b64url_decode(payload_b64))
    assert state.replay is not None
    assert state.licences is not None
    assert state.audit is not None
    if not await state.replay.first_use(f"{claims['iss']}:{claims['jti']}",
                                        MAX_REQUEST_LIFETIME_S + REQUEST_SKEW_S):
        return _json(orjson.dumps({"cn_status": 11}), status=401)
    identifier = orjson.loads(raw)["identifier"]
    _, found = await state.licences.find(identifier.split(".")[5], identifier=identifier)
    answer: dict[str, Any] = {"cn_status": 10, "licences": []}
    if found:
        lic = found[0].lic
        licence = {"iss": "330500", "jti": identifier, "iat": now,
                   "nbf": day_start_s(date.fromisoformat(str(lic["valid_from"]))), "lic": lic,
                   "status": {"status_list": {"idx": found[0].status_idx, "uri": "floor"}}}
        if lic.get("valid_until"):
            licence["exp"] = day_start_s(date.fromisoformat(str(lic["valid_until"]))) + 86400
        answer = {"cn_status": 0, "licences": [await state.sign_licence(licence)]}
    await state.audit.append(AuditEvent(
        event_type=EventType.PARTNER_QUERY, actor_kind=ActorKind.PARTNER,
        actor_id=str(claims["iss"]), at=at, outcome="ok", cn_status=answer["cn_status"],
        licence_identifier=identifier, partner_region=str(claims["iss"]),
        latency_ms=round((time.perf_counter() - started) * 1000, 3)))
    return _json(orjson.dumps(answer))


def create_floor_app(trust_list: dict[str, Any], data_dir: Path, *,
                     licences: Path | None = None, redis_url: str | None = None,
                     crypto_thread: bool = True) -> web.Application:
    """The floor endpoints, with the trust list's ES256 licence keys and an audit log;
    ``/partner`` also reads the licence library in ``licences`` (a gateway data folder)."""
    # The gateway's own ES256 signer (header encoded once), with a throwaway key.
    key = SigningKey(kid="floor", private=ec.generate_private_key(ec.SECP256R1()),
                     use="receipt", alg="ES256")
    app = web.Application(client_max_size=16 * 1024 * 1024)
    # /partner's signature work on a thread beside the loop, as the gateway's.
    crypto = CryptoThread(enabled=crypto_thread, name="floor-crypto")
    app[_FLOOR] = _FloorState(
        _licence_keys(trust_list), key.signer({"typ": "ecert-receipt+jwt"}), crypto,
        key.async_signer({"typ": "ecert+jwt"}, crypto.run),
        request_keys=_licence_keys(trust_list, "request-signing"))

    async def audit_ctx(app: web.Application) -> AsyncIterator[None]:
        state = app[_FLOOR]
        if licences is not None:
            # The gateway's store as the gateway opens it: licences found before are
            # remembered (the default cache size), so the floor pays what the gateway pays.
            state.licences = open_store(load_settings({}, None, {"data_dir": licences}))
            await state.licences.open()
        state.replay = (RedisReplayCache(redis_client(redis_url, timeout_s=1.0))
                        if redis_url else MemoryReplayCache())
        try:
            async with AuditService(data_dir=data_dir, gateway_id="330500") as audit:
                state.audit = audit
                yield
        finally:
            await state.crypto.close()
            await state.replay.close()
            if state.licences is not None:
                await state.licences.close()

    app.cleanup_ctx.append(audit_ctx)
    app.router.add_get("/", _ready)
    app.router.add_post("/verify", _floor_handler(verify=True, receipt=True))
    app.router.add_post("/hit", _floor_handler(verify=False, receipt=True))
    app.router.add_post("/audit", _floor_handler(verify=False, receipt=False))
    app.router.add_post("/partner", _floor_partner)
    return app


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
    parser.add_argument("kind", choices=["minimal", "naive", "floor"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--jwk", type=Path, help="public JWK file (naive)")
    parser.add_argument("--trust-list", type=Path, help="trust-list JSON (floor)")
    parser.add_argument("--licences", type=Path,
                        help="gateway data folder whose licence library /partner reads (floor)")
    parser.add_argument("--redis-url", help="Redis for /partner's jti replay cache (floor)")
    parser.add_argument("--no-crypto-thread", action="store_true",
                        help="/partner's signature work on the loop (floor; A/B runs)")
    args = parser.parse_args(argv)
    if args.kind == "floor":
        if args.trust_list is None:
            parser.error("floor needs --trust-list")
        with tempfile.TemporaryDirectory(prefix="ecert-floor-") as tmp:
            app = create_floor_app(orjson.loads(args.trust_list.read_bytes()), Path(tmp),
                                   licences=args.licences, redis_url=args.redis_url,
                                   crypto_thread=not args.no_crypto_thread)
            web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None,
                        shutdown_timeout=2.0)
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
