"""Huzhou signs with SM2 where a partner's agreement asks for it (``signing_alg: SM2SM3``).

Over HTTP: the partner query, ``/.well-known/jwks.json`` and ``/v1/status/{name}``.
The licence and the status list it points to are checked with the published SM2
keys through the gateway's own verifier path, and with the ``openssl`` command.
"""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from mocks import RunningFederation, b64url_decode
from tests.gateway.conftest import trust_document
from tests.gateway.test_partner_api import (
    SH_MATTER,
    SHANGHAI,
    Start,
    _b64json,
    licence_row,
    partner,
    start,
)
from tests.openssl import openssl, openssl_sm2_verify, sm2_spki
from trust import Alg, TrustList, key_from_jwk

__all__ = ["start"]  # the fixture, imported to be used here

pytestmark = pytest.mark.asyncio


def _agreement(running: RunningFederation, signing_alg: str | None) -> TrustList:
    """The federation's list, Shanghai's agreement saying ``signing_alg`` (None: absent)."""
    doc = trust_document(running.federation)
    if signing_alg is not None:
        next(p for p in doc["partners"] if p["region_code"] == SHANGHAI)[
            "signing_alg"] = signing_alg
    return TrustList.from_json(doc)


def _verifies(jwk: dict[str, Any], token: str) -> bool:
    """Whether ``token``'s SM2SM3 signature verifies with ``jwk`` (the verifier's key path)."""
    signing_input, signature = token.rsplit(".", 1)
    return key_from_jwk(jwk).verify(Alg.SM2SM3, signing_input.encode(),
                                    b64url_decode(signature))


async def test_sm2_agreement_gets_sm2_licence_and_status_list(
        start: Start, running: RunningFederation, tmp_path: Path) -> None:
    """Shanghai's agreement says SM2SM3: its licence is signed SM2SM3 with Huzhou's SM2
    licence key, published in the JWKS as an SM2 JWK; the signature verifies through the
    gateway's key path and with ``openssl pkeyutl -verify -rawin -digest sm3``; the licence
    points to the SM2-signed status list, which verifies with the SM2 status key."""
    row = licence_row(1)
    client = await start([row], trust_list=_agreement(running, "SM2SM3"))
    sh = partner(client, running)
    answer = await sh.query(sh.by_identifier(row["identifier"], matter_code=SH_MATTER))
    assert (200, 0) == (answer.status, answer.cn_status)
    token = answer.body["licences"][0]
    header = _b64json(token.split(".")[0])
    assert ("SM2SM3", "ecert+jwt") == (header["alg"], header["typ"])
    jwks = {k["kid"]: k for k in (await (await client.get("/.well-known/jwks.json")).json())[
        "keys"]}
    jwk = jwks[header["kid"]]
    assert ("EC", "SM2", "SM2SM3", "licence-signing") == (
        jwk["kty"], jwk["crv"], jwk["alg"], jwk["ecert_use"])
    assert _verifies(jwk, token)
    assert not _verifies(jwk, token[:-8] + ("A" if token[-8] != "A" else "B") + token[-7:])
    signing_input, signature = token.rsplit(".", 1)
    openssl()
    spki = sm2_spki(b64url_decode(jwk["x"]), b64url_decode(jwk["y"]))
    assert await asyncio.to_thread(openssl_sm2_verify, spki, signing_input.encode(),
                                   b64url_decode(signature), tmp_path)
    claims = _b64json(token.split(".")[1])
    assert row["identifier"] == claims["jti"]
    reference = claims["status"]["status_list"]
    assert urlsplit(reference["uri"]).path == "/v1/status/licences-sm2"
    resp = await client.get(urlsplit(reference["uri"]).path)
    assert 200 == resp.status
    status_token = await resp.text()
    status_header = _b64json(status_token.split(".")[0])
    assert ("SM2SM3", "statuslist+jwt") == (status_header["alg"], status_header["typ"])
    status_jwk = jwks[status_header["kid"]]
    assert ("SM2", "status-signing") == (status_jwk["crv"], status_jwk["ecert_use"])
    assert _verifies(status_jwk, status_token)
    status_claims = _b64json(status_token.split(".")[1])
    assert reference["uri"] == status_claims["sub"]
    data = zlib.decompress(b64url_decode(status_claims["status_list"]["lst"]))
    idx = reference["idx"]
    assert 0 == (data[idx * 2 // 8] >> (idx * 2 % 8)) & 0b11


@pytest.mark.parametrize("signing_alg", [None, "ES256"], ids=["absent", "ES256"])
async def test_other_agreements_keep_es256(start: Start, running: RunningFederation,
                                           signing_alg: str | None) -> None:
    """Without ``signing_alg`` or with ES256, the licence is ES256 and points to the EdDSA
    status list, as before; the SM2 keys are published all the same."""
    row = licence_row(1)
    client = await start([row], trust_list=_agreement(running, signing_alg))
    sh = partner(client, running)
    answer = await sh.query(sh.by_identifier(row["identifier"], matter_code=SH_MATTER))
    token = answer.body["licences"][0]
    assert "ES256" == _b64json(token.split(".")[0])["alg"]
    uri = _b64json(token.split(".")[1])["status"]["status_list"]["uri"]
    assert urlsplit(uri).path == "/v1/status/licences"
    status = await (await client.get("/v1/status/licences")).text()
    assert "EdDSA" == _b64json(status.split(".")[0])["alg"]
    jwks = (await (await client.get("/.well-known/jwks.json")).json())["keys"]
    assert {"licence-signing", "status-signing", "trust-list"} == {
        k["ecert_use"] for k in jwks if k.get("crv") == "SM2"}
