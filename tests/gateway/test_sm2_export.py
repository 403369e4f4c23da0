"""The signed trust-list export in SM2 (``GET /v1/admin/trust-list/export?alg=SM2SM3``).

Over HTTP: the export, ``/.well-known/jwks.json`` and the import of a second gateway.
The SM2 export is checked with the published SM2 trust-list key through the gateway's
own key path and with ``openssl pkeyutl -verify -digest sm3``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from mocks import RunningFederation, b64url_decode
from tests.gateway.conftest import trust_document
from tests.gateway.test_admin_api import _auth, _tokens, _write_list, start
from tests.openssl import openssl, openssl_sm2_verify, sm2_spki
from trust import Alg, key_from_jwk

__all__ = ["start"]  # the fixture, imported to be used here

pytestmark = pytest.mark.asyncio

Client = TestClient[web.Request, web.Application]
Start = Callable[..., Awaitable[Client]]
EXPORT = "/v1/admin/trust-list/export"


def _part(token: str, index: int) -> dict[str, Any]:
    found: dict[str, Any] = orjson.loads(b64url_decode(token.split(".")[index]))
    return found


def _tamper(token: str) -> str:
    """``token`` with one character of its claims changed (the signature kept)."""
    head, claims, signature = token.split(".")
    middle = len(claims) // 2
    flipped = "A" if claims[middle] != "A" else "B"
    return f"{head}.{claims[:middle]}{flipped}{claims[middle + 1:]}.{signature}"


def _key_path_verifies(jwk: dict[str, Any], token: str) -> bool:
    signing_input, signature = token.rsplit(".", 1)
    public = {k: v for k, v in jwk.items() if k != "ecert_use"}
    return key_from_jwk(public).verify(Alg.SM2SM3, signing_input.encode(),
                                       b64url_decode(signature))


async def _trust_list_keys(client: Client) -> dict[str, dict[str, Any]]:
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    return {k["alg"]: k for k in jwks["keys"] if k.get("ecert_use") == "trust-list"}


@pytest.fixture
async def exporter(start: Start, tmp_path: Path,
                   running: RunningFederation) -> tuple[Client, dict[str, str]]:
    """A gateway on the federation's list (version 3), with its operators' tokens."""
    folder = tmp_path / "a"
    folder.mkdir()
    tokens = await _tokens(folder)
    client = await start(folder, _write_list(folder / "tl.json",
                                             trust_document(running.federation)))
    return client, tokens


async def test_sm2_export_verifies_with_jwks_key_and_openssl(
        exporter: tuple[Client, dict[str, str]], tmp_path: Path) -> None:
    """alg=SM2SM3: the export is signed SM2SM3 by the SM2 trust-list key published in the
    JWKS; it verifies through the gateway's key path and with openssl, and a tampered
    copy verifies with neither."""
    client, tokens = exporter
    resp = await client.get(EXPORT, params={"alg": "SM2SM3"}, headers=_auth(tokens["vera"]))
    assert (200, "application/trustlist+jwt") == (resp.status, resp.content_type)
    token = await resp.text()
    header = _part(token, 0)
    assert ("SM2SM3", "trustlist+jwt") == (header["alg"], header["typ"])
    jwk = (await _trust_list_keys(client))["SM2SM3"]
    assert (header["kid"], "EC", "SM2") == (jwk["kid"], jwk["kty"], jwk["crv"])
    assert 3 == _part(token, 1)["trust_list_version"]
    assert _key_path_verifies(jwk, token)
    assert not _key_path_verifies(jwk, _tamper(token))
    openssl()
    spki = sm2_spki(b64url_decode(jwk["x"]), b64url_decode(jwk["y"]))
    for candidate, expected in ((token, True), (_tamper(token), False)):
        signing_input, signature = candidate.rsplit(".", 1)
        assert expected == await asyncio.to_thread(
            openssl_sm2_verify, spki, signing_input.encode(), b64url_decode(signature),
            tmp_path)


@pytest.mark.parametrize("params", [{}, {"alg": "EdDSA"}], ids=["default", "EdDSA"])
async def test_default_export_stays_eddsa(exporter: tuple[Client, dict[str, str]],
                                          params: dict[str, str]) -> None:
    """Without alg (or alg=EdDSA) the export is signed EdDSA by the Ed25519 key, as before."""
    client, tokens = exporter
    resp = await client.get(EXPORT, params=params, headers=_auth(tokens["vera"]))
    header = _part(await resp.text(), 0)
    keys = await _trust_list_keys(client)
    assert (200, "EdDSA", keys["EdDSA"]["kid"]) == (resp.status, header["alg"], header["kid"])


@pytest.mark.parametrize("alg", ["ES256", "RS256", "sm2sm3", ""])
async def test_unpublished_alg_is_400(exporter: tuple[Client, dict[str, str]],
                                      alg: str) -> None:
    """An alg other than the published EdDSA and SM2SM3 is refused by name (400)."""
    client, tokens = exporter
    resp = await client.get(EXPORT, params={"alg": alg}, headers=_auth(tokens["vera"]))
    problem = await resp.json()
    assert (400, f"alg {alg!r} is not one of EdDSA, SM2SM3") == (resp.status, problem["detail"])


async def test_sm2_export_imports_and_tampered_is_refused(
        exporter: tuple[Client, dict[str, str]], start: Start, tmp_path: Path) -> None:
    """A second gateway trusting the SM2 trust-list key imports the SM2 export; a tampered
    copy is refused as ``signature`` and changes nothing."""
    client, tokens = exporter
    token = await (await client.get(EXPORT, params={"alg": "SM2SM3"},
                                    headers=_auth(tokens["vera"]))).text()
    folder = tmp_path / "b"
    folder.mkdir()
    b_tokens = await _tokens(folder)
    sm2_jwk = (await _trust_list_keys(client))["SM2SM3"]
    (folder / "trust-list-signers.json").write_bytes(orjson.dumps({"keys": [sm2_jwk]}))
    b = await start(folder)
    bad = await b.post("/v1/admin/trust-list/import", headers=_auth(b_tokens["adam"]),
                       data=_tamper(token))
    assert (422, "signature") == (bad.status, (await bad.json())["reason"])
    good = await b.post("/v1/admin/trust-list/import", headers=_auth(b_tokens["adam"]),
                        data=token)
    assert (201, 3) == (good.status, (await good.json())["version"])
