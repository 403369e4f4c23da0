"""SM2SM3 over HTTP: mock SM2 licences, licences signed by the ``openssl`` command, and
SM2 keys proposed by operators (POST /v1/verifications, /v1/admin/proposals)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.credentials.store import IdentityKind, Role, add_identity
from gateway.settings import load_settings
from gateway.trustlist.routes import setup
from gateway.web.app import create_app
from mocks import KEYS_VALID_FROM, KEYS_VALID_UNTIL, MockRegion, RunningFederation, rfc3339
from tests.fakes import MemoryAudit
from tests.gateway.conftest import AppFactory, trust_document
from tests.openssl import DEFAULT_ID, OpenSslSm2Key, openssl
from trust import TrustList, b64url_decode, b64url_encode

pytestmark = pytest.mark.asyncio

Client = TestClient[web.Request, web.Application]
_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")
_KID = "520500-lic-openssl"
_BAD_SIGNING_ALG = ("change #1 (upsert-partner): signing_alg must be one of "
                    "ES256, SM2SM3")


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _jwk(spki: bytes) -> dict[str, str]:
    """The SM2 JWK of an ``openssl pkey -pubout -outform DER`` key."""
    assert spki.startswith(_SPKI_PREFIX + b"\x04")
    return {"kty": "EC", "crv": "SM2", "x": b64url_encode(spki[-64:-32]),
            "y": b64url_encode(spki[-32:])}


def _pem(spki: bytes) -> str:
    return ("-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(spki).decode()
            + "-----END PUBLIC KEY-----\n")


def _openssl_licence(region: MockRegion, folder: Path, *, distid: str = DEFAULT_ID,
                     kid: str = _KID) -> tuple[OpenSslSm2Key, str]:
    """A key made by ``openssl genpkey`` and a licence of ``region`` whose signature is
    ``openssl pkeyutl -sign -rawin -digest sm3`` over its signing input."""
    openssl()
    key = OpenSslSm2Key.generate(folder)
    claims = region.issue().claims
    header = {"alg": "SM2SM3", "typ": "ecert+jwt", "kid": kid}
    signing_input = (b64url_encode(orjson.dumps(header)) + "."
                     + b64url_encode(orjson.dumps(claims)))
    signature = key.sign(signing_input.encode(), folder, distid=distid)
    return key, f"{signing_input}.{b64url_encode(signature)}"


def _anchor(jwk: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"kid": _KID, "use": "licence-signing", "jwk": {**jwk, "kid": _KID},
            "valid_from": rfc3339(KEYS_VALID_FROM), "valid_until": rfc3339(KEYS_VALID_UNTIL),
            "status": "active", **extra}


async def _verify(client: Client, key: str, token: str) -> Any:
    resp = await client.post("/v1/verifications", headers=_auth(key),
                             json={"credential": token, "use_cause": "跨省通办"})
    assert 200 == resp.status
    return await resp.json()


def _signature_check(body: dict[str, Any]) -> str:
    check: dict[str, str] = next(c for c in body["checks"] if c["name"] == "signature")
    return f"{check['result']}: {check['detail']}"


_OPENSSL_PASSED = f"PASSED: SM2SM3 signature verifies with {_KID!r}"


class TestMockSm2Licences:
    """毕节 signs its licences and status lists with SM2; the gateway fetches and checks both."""

    async def test_passes_with_its_status_list(self, gateway_client: AppFactory,
                                               running: RunningFederation,
                                               client_key: str) -> None:
        """TOTAL_PASSED, the SM2-signed status list fetched from the region and used."""
        client = await gateway_client()
        bijie = running.federation["520500"]
        body = await _verify(client, client_key, bijie.issue().token)
        assert ("TOTAL_PASSED", 0) == (body["indication"], body["cn_status"])
        assert body["status_list"]["uri"].startswith(running.url("520500"))
        signature = next(c for c in body["checks"] if c["name"] == "signature")
        assert "SM2SM3 signature verifies with '520500-lic-2026a'" == signature["detail"]

    async def test_revoked(self, gateway_client: AppFactory, running: RunningFederation,
                           client_key: str) -> None:
        """An entry the region revoked in its SM2-signed list: REVOKED, cn_status 21."""
        client = await gateway_client()
        bijie = running.federation["520500"]
        issued = bijie.issue()
        assert issued.status_idx is not None
        bijie.revoke(issued.status_idx)
        body = await _verify(client, client_key, issued.token)
        assert ("TOTAL_FAILED", "REVOKED", 21) == (body["indication"], body["sub_indication"],
                                                  body["cn_status"])

    async def test_tampered(self, gateway_client: AppFactory, running: RunningFederation,
                            client_key: str) -> None:
        """A payload changed under an SM2 signature: SIG_CRYPTO_FAILURE."""
        client = await gateway_client()
        head, body_b64, sig = running.federation["520500"].issue().token.split(".")
        claims = orjson.loads(b64url_decode(body_b64))
        claims["lic"]["holder_name"] = "张三"
        token = f"{head}.{b64url_encode(orjson.dumps(claims))}.{sig}"
        body = await _verify(client, client_key, token)
        assert "SIG_CRYPTO_FAILURE" == body["sub_indication"]


    async def test_off_curve_anchor_is_a_crypto_constraint(
            self, gateway_client: AppFactory, running: RunningFederation,
            client_key: str) -> None:
        """A trust list whose SM2 anchor is off the curve loads, that anchor unusable: its
        licences answer CRYPTO_CONSTRAINTS_FAILURE, saying why."""
        doc = trust_document(running.federation)
        bijie = next(p for p in doc["partners"] if p["region_code"] == "520500")
        jwk = next(a for a in bijie["anchors"] if a["kid"] == "520500-lic-2026a")["jwk"]
        y = bytearray(b64url_decode(jwk["y"]))
        y[-1] ^= 1
        jwk["y"] = b64url_encode(bytes(y))
        client = await gateway_client(TrustList.from_json(doc))
        body = await _verify(client, client_key, running.federation["520500"].issue().token)
        assert ("TOTAL_FAILED", "CRYPTO_CONSTRAINTS_FAILURE", 11) == (
            body["indication"], body["sub_indication"], body["cn_status"])
        anchor = next(c for c in body["checks"] if c["name"] == "anchor")
        assert ("anchor '520500-lic-2026a' key cannot be used: SM2 point is not on the "
                "curve") == anchor["detail"]


class TestOpenSslInterop:
    """A licence signed with the ``openssl`` command line verifies in the gateway."""

    @pytest.mark.parametrize("ids", [
        (DEFAULT_ID, None), ("ALICE123@YAHOO.COM", "ALICE123@YAHOO.COM"),
    ], ids=["default-id", "anchor-sm2_id"])
    async def test_openssl_signed_licence_passes(
            self, gateway_client: AppFactory, running: RunningFederation, client_key: str,
            tmp_path: Path, ids: tuple[str, str | None]) -> None:
        """``openssl genpkey`` key in the trust list, ``openssl pkeyutl -sign`` licence
        (signer ID ``distid``, the anchor's ``sm2_id``): TOTAL_PASSED over HTTP, with the
        region's status list."""
        distid, sm2_id = ids
        bijie = running.federation["520500"]
        key, token = await asyncio.to_thread(_openssl_licence, bijie, tmp_path, distid=distid)
        doc = trust_document(running.federation)
        extra = {} if sm2_id is None else {"sm2_id": sm2_id}
        next(p for p in doc["partners"] if p["region_code"] == "520500")["anchors"].append(
            _anchor(_jwk(key.public_der), **extra))
        client = await gateway_client(TrustList.from_json(doc))
        body = await _verify(client, client_key, token)
        assert ("TOTAL_PASSED", _OPENSSL_PASSED) == (body["indication"],
                                                     _signature_check(body)), body

    async def test_signer_id_must_match(
            self, gateway_client: AppFactory, running: RunningFederation, client_key: str,
            tmp_path: Path) -> None:
        """Signed under OpenSSL's default ID but anchored with another: SIG_CRYPTO_FAILURE."""
        bijie = running.federation["520500"]
        key, token = await asyncio.to_thread(_openssl_licence, bijie, tmp_path)
        doc = trust_document(running.federation)
        next(p for p in doc["partners"] if p["region_code"] == "520500")["anchors"].append(
            _anchor(_jwk(key.public_der), sm2_id="ALICE123@YAHOO.COM"))
        client = await gateway_client(TrustList.from_json(doc))
        body = await _verify(client, client_key, token)
        assert "SIG_CRYPTO_FAILURE" == body["sub_indication"]


def _sm2_root(folder: Path) -> str:
    """A self-signed SM2 CA certificate made by openssl, base64 DER."""
    openssl()
    return base64.b64encode(OpenSslSm2Key.generate(folder).self_signed_ca(folder)).decode()


async def _start_admin(aiohttp_client: Callable[..., Awaitable[Client]], tmp_path: Path,
                       audit: MemoryAudit, document: dict[str, Any]) -> tuple[Client,
                                                                             dict[str, str]]:
    path = tmp_path / "tl.json"
    await asyncio.to_thread(path.write_bytes, orjson.dumps(document))
    settings = load_settings({}, None, {"data_dir": tmp_path, "trust_list_file": path})
    app = create_app(settings, audit=audit)
    setup(app)
    people = {"olga": Role.OPERATOR, "adam": Role.APPROVER, "alice": Role.APPROVER}
    tokens = {name: await asyncio.to_thread(add_identity, tmp_path, IdentityKind.OPERATOR,
                                            name, role) for name, role in people.items()}
    tokens["client"] = await asyncio.to_thread(add_identity, tmp_path, IdentityKind.CLIENT,
                                               "window-01")
    return await aiohttp_client(app), tokens


@pytest.fixture
async def admin(aiohttp_client: Callable[..., Awaitable[Client]], tmp_path: Path,
                audit: MemoryAudit, running: RunningFederation) -> tuple[Client, dict[str, str]]:
    """A gateway started with the federation's list as --trust-list, with operators olga,
    and approvers adam and alice, and a local system's key ("client")."""
    return await _start_admin(aiohttp_client, tmp_path, audit,
                              trust_document(running.federation))


async def _propose(client: Client, token: str, change: dict[str, Any]) -> tuple[int, Any]:
    resp = await client.post("/v1/admin/proposals", headers=_auth(token),
                             json={"changes": [change], "note": "SM2 key of 毕节"})
    return resp.status, await resp.json()


class TestOperatorsAddSm2Keys:
    """SM2 keys through the operators' input checks and dual control."""

    async def test_openssl_pem_key_added_then_its_licence_passes(
            self, admin: tuple[Client, dict[str, str]], running: RunningFederation,
            tmp_path: Path) -> None:
        """An SM2 key proposed as the PEM ``openssl pkey -pubout`` writes, approved twice:
        the licence ``openssl`` signed with it, refused before, passes after."""
        client, tokens = admin
        key, token = await asyncio.to_thread(_openssl_licence, running.federation["520500"],
                                             tmp_path)
        before = await _verify(client, tokens["client"], token)
        assert "UNKNOWN_ISSUER" == before["sub_indication"]
        change = {"kind": "add-anchor", "region_code": "520500", "anchor": {
            "kid": _KID, "use": "licence-signing", "pem": _pem(key.public_der),
            "valid_from": rfc3339(KEYS_VALID_FROM), "valid_until": rfc3339(KEYS_VALID_UNTIL)}}
        status, proposal = await _propose(client, tokens["olga"], change)
        assert 201 == status, proposal
        for approver in ("adam", "alice"):
            resp = await client.post(f"/v1/admin/proposals/{proposal['id']}/approve",
                                     headers=_auth(tokens[approver]), json={"comment": "ok"})
            assert 200 == resp.status
        assert "applied" == (await resp.json())["status"]
        after = await _verify(client, tokens["client"], token)
        assert ("TOTAL_PASSED", _OPENSSL_PASSED) == (after["indication"],
                                                     _signature_check(after))

    async def test_off_curve_key_is_422(self, admin: tuple[Client, dict[str, str]],
                                        running: RunningFederation) -> None:
        """An SM2 JWK with one bit of y changed is refused at proposal, with the reason."""
        client, tokens = admin
        jwk = running.federation["520500"].public_jwk("520500-lic-2026a")
        y = bytearray(b64url_decode(jwk["y"]))
        y[0] ^= 0x80
        change = {"kind": "add-anchor", "region_code": "520500", "anchor": {
            "kid": "520500-lic-bent", "use": "licence-signing",
            "jwk": {**jwk, "kid": "520500-lic-bent", "y": b64url_encode(bytes(y))},
            "valid_from": rfc3339(KEYS_VALID_FROM), "valid_until": rfc3339(KEYS_VALID_UNTIL)}}
        status, body = await _propose(client, tokens["olga"], change)
        assert 422 == status
        assert [("change #1 (add-anchor) anchor '520500-lic-bent': unsupported key: SM2 point "
                 "is not on the curve")] == body["problems"]

    @pytest.mark.parametrize(("signing_alg", "problems"), [
        ("SM2SM3", None),
        ("ES256", None),
        ("RS256", [_BAD_SIGNING_ALG]),
        (["SM2SM3"], [_BAD_SIGNING_ALG]),
    ], ids=["SM2SM3", "ES256", "RS256", "a-list"])
    async def test_agreement_signing_alg(self, admin: tuple[Client, dict[str, str]],
                                         signing_alg: object,
                                         problems: list[str] | None) -> None:
        """An agreement's signing_alg (what Huzhou signs that partner's licences with) is
        ES256 or SM2SM3; anything else is refused at proposal (422)."""
        client, tokens = admin
        status, body = await _propose(client, tokens["olga"], {
            "kind": "upsert-partner",
            "partner": {"region_code": "310000", "signing_alg": signing_alg}})
        assert (201 if problems is None else 422, problems) == (status, body.get("problems"))

    async def test_sm2_root_certificate_is_accepted(self, admin: tuple[Client, dict[str, str]],
                                                    tmp_path: Path) -> None:
        """An SM2 root-ca certificate made by openssl is a proposal like any other (201)."""
        client, tokens = admin
        root = await asyncio.to_thread(_sm2_root, tmp_path)
        status, body = await _propose(client, tokens["olga"], {
            "kind": "add-anchor", "region_code": "520500",
            "anchor": {"kid": "520500-root-sm2", "use": "root-ca", "x5c": [root]}})
        assert (201, None) == (status, body.get("problems"))


async def test_start_with_an_sm2_root_in_the_trust_list(
        aiohttp_client: Callable[..., Awaitable[Client]], tmp_path: Path, audit: MemoryAudit,
        running: RunningFederation) -> None:
    """A --trust-list holding an SM2 root-ca certificate made by openssl starts the
    gateway, and 毕节's kid-signed SM2 licences pass."""
    doc = trust_document(running.federation)
    next(p for p in doc["partners"] if p["region_code"] == "520500")["anchors"].append({
        "kid": "520500-root-sm2", "use": "root-ca",
        "x5c": [await asyncio.to_thread(_sm2_root, tmp_path)],
        "valid_from": rfc3339(KEYS_VALID_FROM), "valid_until": rfc3339(KEYS_VALID_UNTIL)})
    client, tokens = await _start_admin(aiohttp_client, tmp_path, audit, doc)
    body = await _verify(client, tokens["client"], running.federation["520500"].issue().token)
    assert "TOTAL_PASSED" == body["indication"]



async def _openssl_chain(folder: Path, *, distid: str | None,
                         intermediate: bool = False) -> tuple[OpenSslSm2Key, str, list[str]]:
    """An SM2 root and a signer certificate it issued (through an intermediate CA with
    ``intermediate``), all made by the openssl command: (the signer's key, the root, and
    the x5c: signer first, as base64 DER)."""
    def make() -> tuple[OpenSslSm2Key, str, list[str]]:
        openssl()
        for part in ("root", "inter", "signer"):
            (folder / part).mkdir()
        root_key = OpenSslSm2Key.generate(folder / "root")
        root = root_key.self_signed_ca(folder / "root")
        issuer_key, issuer, chain = root_key, root, []
        if intermediate:
            inter_key = OpenSslSm2Key.generate(folder / "inter")
            inter = root_key.issue(inter_key, root, folder / "inter", ca=True)
            issuer_key, issuer, chain = inter_key, inter, [inter]
        signer_key = OpenSslSm2Key.generate(folder / "signer")
        signer = issuer_key.issue(signer_key, issuer, folder / "signer", distid=distid)
        return (signer_key, base64.b64encode(root).decode(),
                [base64.b64encode(c).decode() for c in (signer, *chain)])

    return await asyncio.to_thread(make)


@pytest.mark.parametrize(("distid", "intermediate", "indication"), [
    (DEFAULT_ID, False, "TOTAL_PASSED"),
    (DEFAULT_ID, True, "TOTAL_PASSED"),
    (None, False, "TOTAL_FAILED"),
], ids=["default-id", "through-an-intermediate", "openssl-3.0-empty-id"])
async def test_openssl_certificate_chain_verifies(
        aiohttp_client: Callable[..., Awaitable[Client]], tmp_path: Path, audit: MemoryAudit,
        running: RunningFederation, *, distid: str | None, intermediate: bool,
        indication: str) -> None:
    """An SM2 root (``openssl req -x509 -sm3``) as 毕节's root-ca anchor, a signer
    certificate it issued (``openssl x509 -req -sm3``), directly or through an
    intermediate CA, in x5c, the licence signed by ``openssl pkeyutl``: it passes over
    HTTP, anchored by the chain. A certificate signed
    under OpenSSL 3.0's empty signer ID (no ``-sigopt distid``) is no chain: the profile's
    certificate signatures are made under 1234567812345678 (GM/T 0015)."""
    signer_key, root, x5c = await _openssl_chain(tmp_path, distid=distid,
                                                 intermediate=intermediate)
    doc = trust_document(running.federation)
    next(p for p in doc["partners"] if p["region_code"] == "520500")["anchors"].append({
        "kid": "520500-root-openssl", "use": "root-ca", "x5c": [root],
        "valid_from": rfc3339(KEYS_VALID_FROM), "valid_until": rfc3339(KEYS_VALID_UNTIL)})
    client, tokens = await _start_admin(aiohttp_client, tmp_path, audit, doc)
    header = {"alg": "SM2SM3", "typ": "ecert+jwt", "x5c": x5c}
    signing_input = (b64url_encode(orjson.dumps(header)) + "."
                     + b64url_encode(orjson.dumps(running.federation["520500"].issue().claims)))
    signature = await asyncio.to_thread(signer_key.sign, signing_input.encode(), tmp_path)
    body = await _verify(client, tokens["client"],
                         f"{signing_input}.{b64url_encode(signature)}")
    assert indication == body["indication"], body
    anchor = next(c for c in body["checks"] if c["name"] == "anchor")
    if distid is None:
        assert "CHAIN_CONSTRAINTS_FAILURE" == body["sub_indication"]
        assert "is issued neither by root '520500-root-openssl'" in anchor["detail"]
    else:
        assert anchor["detail"].startswith(
            f"x5c chain to root-ca '520500-root-openssl' of 520500: chain of {len(x5c)} ")
        assert "PASSED: SM2SM3 signature verifies with '520500-root-openssl'" == (
            _signature_check(body))


_ALICE_ID = "ALICE123@YAHOO.COM"


def _root_and_two_signers(folder: Path) -> tuple[str, dict[str, tuple[OpenSslSm2Key, str]]]:
    """An SM2 root (openssl) and two signer certificates it issued: one signed under
    ``_ALICE_ID``, one under the default ID (the root as base64 DER, and per ID the
    signer's key and certificate)."""
    openssl()
    (folder / "root").mkdir()
    root_key = OpenSslSm2Key.generate(folder / "root")
    root = root_key.self_signed_ca(folder / "root")
    signers: dict[str, tuple[OpenSslSm2Key, str]] = {}
    for distid in (_ALICE_ID, DEFAULT_ID):
        part = folder / ("alice" if distid == _ALICE_ID else "default")
        part.mkdir()
        key = OpenSslSm2Key.generate(part)
        cert = root_key.issue(key, root, part, distid=distid)
        signers[distid] = (key, base64.b64encode(cert).decode())
    return base64.b64encode(root).decode(), signers


async def test_root_ca_sm2_id_proposed_approved_then_chains_follow_it(
        admin: tuple[Client, dict[str, str]], running: RunningFederation,
        tmp_path: Path) -> None:
    """An SM2 root-ca anchor proposed over HTTP with sm2_id, shown in the proposal and the
    diff, applied by two other approvers: a chain whose certificate the root signed under
    that ID passes, one signed under the default ID fails (CHAIN_CONSTRAINTS_FAILURE)."""
    client, tokens = admin
    root, signers = await asyncio.to_thread(_root_and_two_signers, tmp_path)
    change = {"kind": "add-anchor", "region_code": "520500", "anchor": {
        "kid": "520500-root-alice", "use": "root-ca", "x5c": [root], "sm2_id": _ALICE_ID,
        "valid_from": rfc3339(KEYS_VALID_FROM), "valid_until": rfc3339(KEYS_VALID_UNTIL)}}
    status, proposal = await _propose(client, tokens["olga"], change)
    assert (201, _ALICE_ID) == (status, proposal["changes"][0]["anchor"]["sm2_id"]), proposal
    for approver in ("adam", "alice"):
        resp = await client.post(f"/v1/admin/proposals/{proposal['id']}/approve",
                                 headers=_auth(tokens[approver]), json={"comment": "ok"})
        assert 200 == resp.status
    applied = await resp.json()
    assert "applied" == applied["status"]
    diff = await (await client.get("/v1/admin/trust-list/diff",
                                   headers=_auth(tokens["adam"]))).json()
    added = next(c for c in diff["changes"] if c["kid"] == "520500-root-alice")
    assert ("anchor-added", [None, _ALICE_ID]) == (added["op"], added["fields"]["sm2_id"])
    claims = running.federation["520500"].issue().claims
    outcome = {}
    for distid, (key, cert) in signers.items():
        header = {"alg": "SM2SM3", "typ": "ecert+jwt", "x5c": [cert]}
        signing_input = (b64url_encode(orjson.dumps(header)) + "."
                         + b64url_encode(orjson.dumps(claims)))
        signature = await asyncio.to_thread(key.sign, signing_input.encode(), tmp_path)
        body = await _verify(client, tokens["client"],
                             f"{signing_input}.{b64url_encode(signature)}")
        outcome[distid] = (body["indication"], body["sub_indication"])
    assert {_ALICE_ID: ("TOTAL_PASSED", None),
            DEFAULT_ID: ("TOTAL_FAILED", "CHAIN_CONSTRAINTS_FAILURE")} == outcome
