"""POST /v1/partner/licences/query and GET /v1/status/{name}, over HTTP with mock partners."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.types import Options
from prometheus_client.parser import text_string_to_metric_families

from gateway.audit.event import ActorKind, AuditEvent, EventType
from gateway.infra.crypto_thread import CryptoThread
from gateway.licences.store import (
    CHANGE_POLL_S,
    HolderKeyring,
    open_repository,
    record_from_mapping,
)
from gateway.partner import routes as partner_routes
from gateway.partner import service as partner_service
from gateway.partner.checks import (
    MemoryReplayCache,
    RateLimiter,
    RequestTokenError,
    check_request_token,
    check_request_token_async,
)
from gateway.partner.routes import PARTNER_KEY, QUERY_PATH, setup
from gateway.partner.service import SIGNED_REUSE_S
from gateway.settings import load_settings
from gateway.web.app import create_app
from mocks import (
    BUSINESS_LICENCE,
    CONSTRUCTION_WORKER,
    Federation,
    PartnerClient,
    RunningFederation,
    b64url_decode,
    make_resident_id,
    make_uscc,
    public_jwk,
    sign_compact,
)
from tests.fakes import MemoryAudit
from tests.gateway.conftest import PrivateRedis, metric_value, scrape_metrics, trust_document
from tests.tokens import resign_raw
from trust import TrustList, iso7064_check_char

SHANGHAI = "310000"
SH_MATTER = "310000-20-SFJ-0001"
"""A Shanghai matter the sample registry maps to Huzhou through the national list."""
ISSUER = make_uscc("11", "330500", "45706332")
"""湖州市住房和城乡建设局 (illustrative USCC with Huzhou's division code)."""
_RNG = random.Random(7)
HOLDER = make_resident_id(["330502"], _RNG)
OTHER_HOLDER = make_resident_id(["330521"], _RNG)
ORG_HOLDER = make_uscc("91", "330502", "12345678")

Client = TestClient[web.Request, web.Application]
CHINA = timezone(timedelta(hours=8))


def china_today() -> date:
    """Today in China, the calendar licence dates are written in."""
    return datetime.now(CHINA).date()
Start = Callable[..., Awaitable[Client]]


def licence_row(serial: int, *, type_code: str = CONSTRUCTION_WORKER, holder: str = HOLDER,
                holder_type: str = "111", state: str = "valid",
                valid_until: date | None = None, issued: date | None = None) -> dict[str, Any]:
    """A Huzhou licence row as ``licences import`` takes it."""
    issued = issued or china_today() - timedelta(days=30)
    until = valid_until or issued + timedelta(days=730)
    serial_text = f"2026{serial:08d}"
    body = f"{type_code}{ISSUER}{serial_text}001"
    return {
        "identifier": f"1.2.156.3005.2.{type_code}.{ISSUER}.{serial_text}.001."
                      f"{iso7064_check_char(body)}",
        "type_code": type_code, "type_name": "建筑施工特种作业人员操作资格证书",
        "number": f"浙A{serial:012d}", "issuer_name": "湖州市住房和城乡建设局",
        "issuer_code": ISSUER, "issue_date": issued.isoformat(), "holder_name": "沈建国",
        "holder_code": holder, "holder_code_type": holder_type,
        "valid_from": issued.isoformat(), "valid_until": until.isoformat(),
        "fields": {"operation_category": "建筑电工"}, "state": state,
    }


def import_rows(data_dir: Path, rows: Sequence[dict[str, Any]],
                postgres_dsn: str | None = None) -> None:
    """Store rows as the CLI would (blocking: run in an executor)."""
    keyring = HolderKeyring.load(data_dir)
    with open_repository(data_dir, postgres_dsn) as repo:
        repo.import_records([record_from_mapping(r) for r in rows], keyring)


def _wired(app: web.Application) -> bool:
    return any(r.resource is not None and r.resource.canonical == QUERY_PATH
               for r in app.router.routes())


@pytest.fixture
def start(aiohttp_client: Callable[..., Awaitable[Client]], tmp_path: Path,
          audit: MemoryAudit, running: RunningFederation) -> Start:
    """Import licences, then start a gateway with the partner API on the federation's list."""

    async def _start(rows: Sequence[dict[str, Any]] = (), *,
                     trust_list: TrustList | None = None, **settings: Any) -> Client:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, import_rows, tmp_path, rows,
                                   settings.get("postgres_dsn"))
        config = load_settings({}, None, {"data_dir": tmp_path, **settings})
        tl = trust_list or TrustList.from_json(trust_document(running.federation))
        app = create_app(config, audit=audit, trust_list=tl)
        if not _wired(app):
            setup(app)
        return await aiohttp_client(app)

    return _start


def partner(client: Client, running: RunningFederation, region: str = SHANGHAI
            ) -> PartnerClient:
    """A mock partner sending through the test client's session."""
    return PartnerClient(running.federation[region], str(client.make_url("")),
                         session=client.session)


async def memory_metrics(client: Client) -> dict[str, int]:
    """The licence store's memory counters and size, as ``/metrics`` gives them."""
    text = await scrape_metrics(client)
    found: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ecert_licence_memory_events_total":
                found[sample.labels["event"]] = int(sample.value)
            elif sample.name == "ecert_licence_memory_entries":
                found["entries"] = int(sample.value)
    return found


def _events(audit: MemoryAudit) -> list[AuditEvent]:
    return [e for e in audit.events if e.event_type is EventType.PARTNER_QUERY]


def _b64json(part: str) -> dict[str, Any]:
    import orjson

    value = orjson.loads(b64url_decode(part))
    assert isinstance(value, dict)
    return value


async def _jwk(client: Client, kid: str) -> jwt.PyJWK:
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    return jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == kid))


class TestFound:
    """A valid licence is found and handed out signed by Huzhou."""

    @pytest.mark.parametrize("crypto_thread", [True, False], ids=["crypto-thread", "on-loop"])
    async def test_identifier_query_verifies_with_pyjwt_and_status_resolves(
            self, start: Start, running: RunningFederation, audit: MemoryAudit,
            crypto_thread: bool) -> None:
        """cn 0: the licence verifies with PyJWT and the JWKS key, and its status entry is 0;
        the same whether the signature work runs on the crypto thread or on the loop."""
        row = licence_row(1)
        client = await start([licence_row(0, state="revoked"), row], crypto_thread=crypto_thread)
        sh = partner(client, running)
        answer = await sh.query(sh.by_identifier(row["identifier"], matter_code=SH_MATTER))
        crypto = client.app[PARTNER_KEY].crypto
        on_thread = crypto_thread and (os.cpu_count() or 1) > 1
        assert on_thread == crypto.enabled
        # The request token's signature check and the licence's signature.
        assert (2 if on_thread else 0) == crypto.calls
        metrics = await scrape_metrics(client)
        assert crypto.calls == metric_value(metrics, "ecert_crypto_thread_calls_total")
        assert crypto.batches == metric_value(metrics, "ecert_crypto_thread_batches_total")
        assert 200 == answer.status
        assert 0 == answer.cn_status
        assert 1 == len(answer.body["licences"])
        token = answer.body["licences"][0]
        header = _b64json(token.split(".")[0])
        assert "ecert+jwt" == header["typ"]
        assert "ES256" == header["alg"]
        assert header["kid"].startswith("330500-lic-")
        key = await _jwk(client, header["kid"])
        claims = jwt.decode(token, key.key, algorithms=["ES256"], issuer="330500",
                            options={"require": ["iss", "iat", "jti", "exp"]})
        assert row["identifier"] == claims["jti"]
        assert HOLDER == claims["lic"]["holder_code"]
        assert CONSTRUCTION_WORKER == claims["lic"]["type_code"]
        assert row["valid_until"] == claims["lic"]["valid_until"]
        # nbf/exp: 00:00 China time on valid_from and on the day after valid_until (inclusive).
        starts = datetime.combine(date.fromisoformat(row["valid_from"]), datetime.min.time(), CHINA)
        ends = datetime.combine(date.fromisoformat(row["valid_until"]) + timedelta(days=1),
                                datetime.min.time(), CHINA)
        assert (starts.timestamp(), ends.timestamp()) == (claims["nbf"], claims["exp"])
        # The status entry resolves through Huzhou's published list.
        reference = claims["status"]["status_list"]
        resp = await client.get(urlsplit(reference["uri"]).path)
        assert 200 == resp.status
        status_token = await resp.text()
        status_header = _b64json(status_token.split(".")[0])
        assert "statuslist+jwt" == status_header["typ"]
        status_key = await _jwk(client, status_header["kid"])
        status_claims = jwt.decode(status_token, status_key.key, algorithms=["EdDSA"])
        assert reference["uri"] == status_claims["sub"]
        assert 300 == status_claims["ttl"]
        assert status_claims["exp"] > status_claims["iat"]
        assert 2 == status_claims["status_list"]["bits"]
        data = zlib.decompress(b64url_decode(status_claims["status_list"]["lst"]))

        def value(idx: int) -> int:
            return (data[idx * 2 // 8] >> (idx * 2 % 8)) & 0b11

        assert 0 == value(reference["idx"])
        assert 1 == value(0)  # the revoked licence imported first
        # The matter is reported in both schemes.
        assert [{"region": SHANGHAI, "code": SH_MATTER, "name": "机动车驾驶证公证"}] == \
            answer.body["matter"]["partner"]
        assert ["公共服务-00901-001"] == [m["code"] for m in answer.body["matter"]["huzhou"]]
        event = _events(audit)[-1]
        assert SHANGHAI == event.partner_region
        assert ActorKind.PARTNER is event.actor_kind
        assert {"region": SHANGHAI, "code": SH_MATTER} == event.matter_before
        assert ({"region": "330500", "code": "公共服务-00901-001"},) == event.matters_after
        assert "ok" == event.outcome
        assert 0 == event.cn_status
        assert row["identifier"] == event.licence_identifier

    async def test_a_licence_signed_lately_is_handed_out_again_as_signed(
            self, start: Start, running: RunningFederation) -> None:
        """Within ``SIGNED_REUSE_S`` of its signature a licence's token is handed out again
        as it was signed (its ``iat`` says when): one signature for both queries. After
        that time, for another status list or for a licence the store hands out anew (a
        changed row), it is signed afresh."""
        row = licence_row(1)
        client = await start([row], crypto_thread=False)
        service = client.app[PARTNER_KEY]
        sh = partner(client, running)
        body = sh.by_identifier(row["identifier"], matter_code=SH_MATTER)
        first, second = [(await sh.query(body)).body["licences"] for _ in range(2)]
        assert 1 == len(first)
        assert first == second
        signed_at = jwt.decode(first[0], options={"verify_signature": False})["iat"]
        licence = await service.store.by_identifier(row["identifier"])
        assert licence is not None
        uri = service.status_uri
        again = await service.sign_licence(licence, iat=signed_at, status_uri=uri)
        late = await service.sign_licence(licence, iat=signed_at + SIGNED_REUSE_S - 1,
                                          status_uri=uri)
        assert again == late  # the store's object: reused within the time
        after = await service.sign_licence(licence, iat=signed_at + SIGNED_REUSE_S,
                                           status_uri=uri)
        assert after != late
        key = await _jwk(client, _b64json(after.split(".")[0])["kid"])
        future: Options = {"verify_iat": False}  # signed "later" than the test runs
        claims = jwt.decode(after, key.key, algorithms=["ES256"], options=future)
        assert signed_at + SIGNED_REUSE_S == claims["iat"]
        assert after == await service.sign_licence(
            licence, iat=signed_at + SIGNED_REUSE_S + 1, status_uri=uri)
        anew = await service.sign_licence(replace(licence), iat=signed_at + SIGNED_REUSE_S + 1,
                                          status_uri=uri)
        assert anew != after  # another object: another row, signed afresh
        other = await service.sign_licence(licence, iat=signed_at + SIGNED_REUSE_S + 1,
                                           status_uri=uri + "-other")
        assert other != after  # the same row for another status list: signed afresh
        assert uri + "-other" == jwt.decode(other, key.key, algorithms=["ES256"],
                                            options=future)["status"]["status_list"]["uri"]

    async def test_signed_licences_are_held_only_while_reusable(
            self, start: Start, monkeypatch: pytest.MonkeyPatch) -> None:
        """A token no longer reusable is dropped, oldest first: when another is signed,
        by ``prune_signed``, and by the partner context's timer when no query comes.
        Past ``SIGNED_MAX`` the oldest goes, not every token at once."""
        monkeypatch.setattr(partner_routes, "SIGNED_PRUNE_S", 0.01)  # the timer, below
        rows = [licence_row(n) for n in (1, 2, 3, 4)]
        client = await start(rows, crypto_thread=False)
        service = client.app[PARTNER_KEY]
        t = 1_800_000_000
        now = [t]  # the timer prunes by the service's clock: nothing is stale before the end
        service.clock = lambda: datetime.fromtimestamp(now[0], UTC)
        uri = service.status_uri
        licences = []
        for row in rows:
            found = await service.store.by_identifier(row["identifier"])
            assert found is not None
            licences.append(found)
        one, two, three, four = licences
        first = await service.sign_licence(one, iat=t, status_uri=uri)
        await service.sign_licence(two, iat=t + 1, status_uri=uri)
        await service.sign_licence(three, iat=t + 2, status_uri=uri)
        assert 3 == service.signed_held
        assert 0 == service.prune_signed(t + SIGNED_REUSE_S - 1)  # all still reusable
        # A changed row is signed afresh and goes behind the others, as does a token
        # signed again once its window passed.
        await service.sign_licence(replace(two), iat=t + 30, status_uri=uri)
        again = await service.sign_licence(one, iat=t + SIGNED_REUSE_S, status_uri=uri)
        assert again != first
        assert 3 == service.signed_held
        assert 1 == service.prune_signed(t + SIGNED_REUSE_S + 2)  # three, not two or one
        assert 2 == service.signed_held
        assert again == await service.sign_licence(one, iat=t + SIGNED_REUSE_S + 2,
                                                   status_uri=uri)  # still held
        # Signing drops what is no longer reusable before it keeps the new token.
        await service.sign_licence(two, iat=t + 2 * SIGNED_REUSE_S, status_uri=uri)
        assert 1 == service.signed_held
        # At the cap the oldest goes; the newer tokens are still handed out as signed.
        monkeypatch.setattr(partner_service, "SIGNED_MAX", 2)
        late = t + 2 * SIGNED_REUSE_S
        kept_three = await service.sign_licence(three, iat=late, status_uri=uri)
        kept_four = await service.sign_licence(four, iat=late, status_uri=uri)
        assert 2 == service.signed_held
        assert kept_three == await service.sign_licence(three, iat=late, status_uri=uri)
        assert kept_four == await service.sign_licence(four, iat=late, status_uri=uri)
        # With no query at all, the context's timer drops them once they are stale.
        await asyncio.sleep(0.05)
        assert 2 == service.signed_held
        now[0] = late + SIGNED_REUSE_S
        for _ in range(200):
            if service.signed_held == 0:
                break
            await asyncio.sleep(0.01)
        assert 0 == service.signed_held

    async def test_holder_query_returns_valid_licences_and_audits_holder_only_as_personal(
            self, start: Start, running: RunningFederation, audit: MemoryAudit) -> None:
        """A holder query returns that holder's valid licences of the type; the holder
        code reaches the audit port only in ``personal``."""
        rows = [licence_row(1), licence_row(2), licence_row(3, holder=OTHER_HOLDER),
                licence_row(4, state="revoked")]
        client = await start(rows)
        sh = partner(client, running)
        answer = await sh.query(sh.by_holder(HOLDER.lower(), CONSTRUCTION_WORKER,
                                             matter_code=SH_MATTER))
        assert 200 == answer.status
        assert 0 == answer.cn_status
        crypto = client.app[PARTNER_KEY].crypto
        if crypto.enabled:  # one check, then both licences signed in one hand-off
            assert (3, 2) == (crypto.calls, crypto.batches)
        ids = [_b64json(t.split(".")[1])["jti"] for t in answer.body["licences"]]
        assert sorted([rows[0]["identifier"], rows[1]["identifier"]]) == sorted(ids)
        event = _events(audit)[-1]
        assert ids == event.details["identifiers"]  # each token where the record says
        assert {"holder_code": HOLDER.lower()} == dict(event.personal)
        outside = repr({**{f: getattr(event, f) for f in event.__slots__ if f != "personal"}})
        assert HOLDER not in outside.upper()

    async def test_organisation_holder_query(self, start: Start,
                                              running: RunningFederation) -> None:
        """An organisation (code type 001) is found by its USCC."""
        row = licence_row(5, type_code=BUSINESS_LICENCE, holder=ORG_HOLDER, holder_type="001")
        client = await start([row])
        sh = partner(client, running)
        answer = await sh.query(sh.by_holder(ORG_HOLDER, BUSINESS_LICENCE, holder_code_type="001",
                                             matter_code=SH_MATTER))
        assert (200, 0) == (answer.status, answer.cn_status)

    async def test_crypto_thread_is_gone_after_shutdown(self, start: Start,
                                                        running: RunningFederation) -> None:
        """The partner context stops its crypto thread when the app shuts down."""

        def alive() -> list[str]:
            return [t.name for t in threading.enumerate() if t.name.startswith("partner-crypto")]

        row = licence_row(1)
        client = await start([row])
        sh = partner(client, running)
        assert 0 == (await sh.query(sh.by_identifier(row["identifier"],
                                                     matter_code=SH_MATTER))).cn_status
        assert client.app[PARTNER_KEY].crypto.enabled
        assert alive()
        await client.close()
        assert [] == alive()

    async def test_jwks_lists_licence_and_status_keys(self, start: Start) -> None:
        """Huzhou's licence- and status-signing keys are published."""
        client = await start()
        jwks = await (await client.get("/.well-known/jwks.json")).json()
        uses = {k.get("ecert_use") for k in jwks["keys"]}
        assert {"licence-signing", "status-signing"} <= uses
        assert 404 == (await client.get("/v1/status/nope")).status


HOSTILE_HOSTS = ["evil.example", "evil.example:8443", "127.0.0.1:1", "[::1]:9",
                 "evil.example/../x", "h" * 8000 + ".example"]
"""Host headers a client may send; none may reach what Huzhou signs."""


class TestPublicUrl:
    """Status URIs come from the ``public_url`` setting (default: from ``listen``),
    never from the request's Host header."""

    @pytest.mark.parametrize("configured", [None, "https://gw.huzhou.example/ecert/"],
                             ids=["default", "configured"])
    async def test_status_list_is_one_list_whatever_the_host(
            self, start: Start, configured: str | None) -> None:
        """Every Host, hostile, long or new, gets the same signed list (one token, so one
        cache entry), whose ``sub`` is the public URL's status URI."""
        settings = {"public_url": configured} if configured else {}
        client = await start([licence_row(1)], **settings)
        base = (configured or "http://127.0.0.1:8080").rstrip("/")
        hosts: list[str | None] = [None, *HOSTILE_HOSTS, *(f"h{i}.example" for i in range(60))]
        tokens = set()
        for host in hosts:
            resp = await client.get("/v1/status/licences",
                                    headers={"Host": host} if host else None)
            assert 200 == resp.status
            tokens.add(await resp.text())
        assert 1 == len(tokens)
        status_claims = _b64json(tokens.pop().split(".")[1])
        assert f"{base}/v1/status/licences" == status_claims["sub"]

    @pytest.mark.parametrize("configured", [None, "https://gw.huzhou.example/ecert"],
                             ids=["default", "configured"])
    async def test_licences_handed_out_name_the_public_status_uri(
            self, start: Start, running: RunningFederation, configured: str | None) -> None:
        """A partner's answer names the public URL's status list, whatever Host it sent."""
        row = licence_row(1)
        settings = {"public_url": configured} if configured else {}
        client = await start([row], **settings)
        base = configured or "http://127.0.0.1:8080"
        sh = partner(client, running)
        body = sh.by_identifier(row["identifier"], matter_code=SH_MATTER)
        uris = set()
        for host in [None, *HOSTILE_HOSTS]:
            answer = await sh.query(body, headers={"Host": host} if host else None)
            assert (200, 0) == (answer.status, answer.cn_status)
            claims = _b64json(answer.body["licences"][0].split(".")[1])
            uris.add(claims["status"]["status_list"]["uri"])
        assert {f"{base}/v1/status/licences"} == uris
        status_claims = _b64json((await (await client.get(
            "/v1/status/licences", headers={"Host": "evil.example"})).text()).split(".")[1])
        assert uris == {status_claims["sub"]}

    async def test_wildcard_listen_without_public_url_warns(
            self, start: Start, running: RunningFederation,
            caplog: pytest.LogCaptureFixture) -> None:
        """Listening on every address with no public_url, the gateway says at start-up
        which URL it signs and how to set the right one; a set public_url is silent."""
        # Both starts share one data folder, so they get one list: a list built per start
        # (its issued_at to the second) differs when a second passes between them, and the
        # second start then refuses version 3 with other content than the stored one.
        trust_list = TrustList.from_json(trust_document(running.federation))
        with caplog.at_level("WARNING", logger="gateway.partner.checks"):
            client = await start(listen="0.0.0.0:8080", trust_list=trust_list)
        warned = [r.getMessage() for r in caplog.records if r.name == "gateway.partner.checks"]
        assert 1 == len(warned)
        assert "http://127.0.0.1:8080" in warned[0]
        assert "ECERT_PUBLIC_URL" in warned[0]
        sub = _b64json((await (await client.get("/v1/status/licences")).text()).split(".")[1])
        assert "http://127.0.0.1:8080/v1/status/licences" == sub["sub"]
        caplog.clear()
        with caplog.at_level("WARNING", logger="gateway.partner.checks"):
            await start(listen="0.0.0.0:8080", public_url="https://gw.huzhou.example",
                        trust_list=trust_list)
        assert [] == [r for r in caplog.records if r.name == "gateway.partner.checks"]


class TestAnswers:
    """Each lookup outcome has its national status code."""

    async def test_not_found_is_200_cn_10(self, start: Start, running: RunningFederation,
                                          audit: MemoryAudit) -> None:
        """An identifier Huzhou does not hold: 200, cn 10, no licences."""
        client = await start([licence_row(1)])
        sh = partner(client, running)
        answer = await sh.query(sh.by_identifier(licence_row(99)["identifier"],
                                                 matter_code=SH_MATTER))
        assert (200, 10, []) == (answer.status, answer.cn_status, answer.body["licences"])
        assert 10 == _events(audit)[-1].cn_status

    async def test_unknown_type_is_200_cn_13(self, start: Start,
                                             running: RunningFederation) -> None:
        """A licence type Huzhou does not publish: 200, cn 13."""
        client = await start([licence_row(1)])
        sh = partner(client, running)
        answer = await sh.query(sh.by_holder(HOLDER, "11100000000013338W099",
                                             matter_code=SH_MATTER))
        assert (200, 13) == (answer.status, answer.cn_status)

    @pytest.mark.parametrize(("state", "expired", "cn_status"), [
        ("revoked", False, 21), ("valid", True, 22), ("suspended", False, 23),
        ("revoked", True, 21)])
    async def test_licence_states(self, start: Start, running: RunningFederation,
                                  state: str, expired: bool, cn_status: int) -> None:
        """Revoked 21, expired 22, suspended 23; no licence is handed out."""
        issued = china_today() - timedelta(days=1000)
        today = china_today()
        until = today - timedelta(days=1) if expired else today + timedelta(days=9)
        row = licence_row(1, state=state, issued=issued, valid_until=until)
        client = await start([row])
        sh = partner(client, running)
        answer = await sh.query(sh.by_identifier(row["identifier"], matter_code=SH_MATTER))
        assert (200, cn_status, []) == (answer.status, answer.cn_status, answer.body["licences"])

    async def test_revoked_while_running_is_refused_within_a_second(
            self, start: Start, running: RunningFederation, tmp_path: Path) -> None:
        """The gateway remembers licences it handed out, yet a revocation imported while it
        runs (another process's commit) is answered 21 within about a second."""
        row = licence_row(1)
        client = await start([row])
        sh = partner(client, running)
        body = sh.by_identifier(row["identifier"], matter_code=SH_MATTER)
        assert [0, 0] == [(await sh.query(body)).cn_status for _ in range(2)]
        assert await memory_metrics(client) == {"hit": 1, "miss": 1, "dropped": 0,
                                                "check-failed": 0, "entries": 1}
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, import_rows, tmp_path, [{**row, "state": "revoked"}])
        revoked_at = time.monotonic()
        # Seen within two change polls (1 s) plus slack for a loaded machine; the licence
        # memory alone would keep answering 0 for up to REMEMBER_S (60 s).
        while (answer := await sh.query(body)).cn_status == 0:
            assert time.monotonic() - revoked_at < 2 * CHANGE_POLL_S + 2.0, "revocation not seen"
            await asyncio.sleep(0.05)
        assert (200, 21, []) == (answer.status, answer.cn_status, answer.body["licences"])
        seen = await memory_metrics(client)
        assert (seen["dropped"], seen["entries"]) == (1, 1)  # forgotten, then the revoked one

    async def test_last_valid_day_is_still_valid(self, start: Start,
                                                 running: RunningFederation) -> None:
        """valid_until is inclusive (China's calendar)."""
        today = china_today()
        row = licence_row(1, issued=today - timedelta(days=400), valid_until=today)
        client = await start([row])
        sh = partner(client, running)
        answer = await sh.query(sh.by_identifier(row["identifier"], matter_code=SH_MATTER))
        assert 0 == answer.cn_status


class TestAuthentication:
    """Bad, expired, replayed or lifted request tokens are 401, cn 11."""

    async def _expect_401(self, answer: Any, audit: MemoryAudit) -> None:
        assert 401 == answer.status
        assert 11 == answer.cn_status
        assert "application/problem+json" in answer.headers["Content-Type"]
        event = _events(audit)[-1]
        assert ("refused", 11) == (event.outcome, event.cn_status)

    async def test_key_not_in_trust_list(self, start: Start, running: RunningFederation,
                                         audit: MemoryAudit) -> None:
        """A request signed with a key Huzhou does not trust."""
        client = await start([licence_row(1)])
        region = running.federation[SHANGHAI]
        kid = region.add_signing_key("ES256", use="request-signing", publish=False)
        sh = partner(client, running)
        answer = await sh.query(sh.by_identifier(licence_row(1)["identifier"],
                                                 matter_code=SH_MATTER), kid=kid)
        await self._expect_401(answer, audit)
        event = _events(audit)[-1]
        assert event.partner_region is None
        assert SHANGHAI == event.details["claimed_iss"]
        assert {"region": SHANGHAI, "code": SH_MATTER} == event.matter_before

    async def test_another_regions_key(self, start: Start, running: RunningFederation,
                                       audit: MemoryAudit) -> None:
        """Hefei's key cannot speak for Shanghai."""
        client = await start()
        sh = partner(client, running)
        hefei = partner(client, running, "340100")
        answer = await hefei.query(sh.by_identifier(licence_row(1)["identifier"],
                                                    matter_code=SH_MATTER),
                                   claims_override={"iss": SHANGHAI})
        await self._expect_401(answer, audit)

    async def test_local_system_key_is_not_a_partner_credential(
            self, start: Start, running: RunningFederation, audit: MemoryAudit) -> None:
        """A bearer that is not a request token is 401."""
        client = await start()
        sh = partner(client, running)
        answer = await sh.query(sh.by_identifier(licence_row(1)["identifier"],
                                                 matter_code=SH_MATTER), token="x" * 43)
        await self._expect_401(answer, audit)

    @pytest.mark.parametrize("size", [8_300, 12_000, 16_000])
    async def test_oversized_token_is_judged_and_audited(
            self, start: Start, running: RunningFederation, audit: MemoryAudit, size: int) -> None:
        """A token over the 8 KiB limit reaches the handler (not only the HTTP parser):
        401 cn 11 with a problem body and an audit record, up to the parser's field limit."""
        from gateway.partner.checks import MAX_TOKEN_BYTES
        from gateway.web.app import MAX_HEADER_FIELD_BYTES

        assert MAX_TOKEN_BYTES < size <= MAX_HEADER_FIELD_BYTES - len("Bearer ")
        client = await start()
        sh = partner(client, running)
        answer = await sh.query(sh.by_identifier(licence_row(1)["identifier"],
                                                 matter_code=SH_MATTER), token="x" * size)
        await self._expect_401(answer, audit)
        assert "longer than" in answer.body["detail"]

    async def test_token_at_the_limit_reaches_the_handler(
            self, start: Start, running: RunningFederation, audit: MemoryAudit) -> None:
        """A token of exactly 8 KiB is the gateway's to judge: with "Bearer " in front its
        header field is over aiohttp's default limit, which refused it unaudited."""
        from gateway.partner.checks import MAX_TOKEN_BYTES

        client = await start()
        sh = partner(client, running)
        answer = await sh.query(sh.by_identifier(licence_row(1)["identifier"],
                                                 matter_code=SH_MATTER),
                                token="x" * MAX_TOKEN_BYTES)
        await self._expect_401(answer, audit)
        assert "not a compact JWS" in answer.body["detail"]  # judged, not refused for size

    async def test_expired_token(self, start: Start, running: RunningFederation,
                                 audit: MemoryAudit) -> None:
        """A token past its exp (beyond the skew)."""
        client = await start([licence_row(1)])
        sh = partner(client, running)
        answer = await sh.query(sh.by_identifier(licence_row(1)["identifier"],
                                                 matter_code=SH_MATTER),
                                iat=int(time.time()) - 400, lifetime=300)
        await self._expect_401(answer, audit)
        assert "expired" in answer.body["detail"]

    @pytest.mark.parametrize("claims", [
        {"exp": 2**63 - 1}, {"iat": -10**12}, {"iat": 1e308}, {"iat": True}, {"jti": 5},
        {"aud": ["310000"]}, {"iss": None}, {"body_sha256": 5}, {"nbf": 2**63 - 1},
    ], ids=repr)
    async def test_odd_token_claims_are_401(self, start: Start, running: RunningFederation,
                                            audit: MemoryAudit, claims: dict[str, Any]) -> None:
        """Signed claims out of range or of the wrong type: 401 cn 11, never a 500."""
        client = await start([licence_row(1)])
        sh = partner(client, running)
        answer = await sh.query(sh.by_identifier(licence_row(1)["identifier"],
                                                 matter_code=SH_MATTER),
                                claims_override=claims)
        await self._expect_401(answer, audit)

    async def test_token_not_yet_valid(self, start: Start, running: RunningFederation,
                                       audit: MemoryAudit) -> None:
        """A token whose nbf lies two minutes ahead (beyond the 30 s skew): 401 cn 11."""
        client = await start([licence_row(1)])
        sh = partner(client, running)
        body = sh.by_identifier(licence_row(1)["identifier"], matter_code=SH_MATTER)
        # Taken here, not when the tests are collected: the suite may run for minutes.
        answer = await sh.query(body, claims_override={"nbf": int(time.time()) + 120})
        await self._expect_401(answer, audit)

    async def test_replayed_jti(self, start: Start, running: RunningFederation,
                                audit: MemoryAudit) -> None:
        """The same token twice: the second is refused."""
        client = await start([licence_row(1)])
        sh = partner(client, running)
        body = sh.by_identifier(licence_row(1)["identifier"], matter_code=SH_MATTER)
        import orjson

        token = sh.sign(orjson.dumps(body))
        first = await sh.query(body, token=token)
        assert 200 == first.status
        second = await sh.query(body, token=token)
        await self._expect_401(second, audit)
        assert "replay" in second.body["detail"]

    @pytest.mark.parametrize("edit", [
        ("payload", b'"aud":', b'"aud":"320500","aud":'),
        ("header", b'"typ":', b'"typ":"JWT","typ":'),
    ], ids=["payload-aud", "header-typ"])
    async def test_repeated_member_name(self, start: Start, running: RunningFederation,
                                        audit: MemoryAudit,
                                        edit: tuple[str, bytes, bytes]) -> None:
        """A token whose header or claims repeat a name (the last value genuine) is 401;
        the same token signed again without the repeat is answered."""
        part, old, new = edit
        client = await start([licence_row(1)])
        sh = partner(client, running)
        body = sh.by_identifier(licence_row(1)["identifier"], matter_code=SH_MATTER)
        import orjson

        region = running.federation[SHANGHAI]
        repeated = resign_raw(region, sh.sign(orjson.dumps(body)), part, old, new)
        answer = await sh.query(body, token=repeated)
        await self._expect_401(answer, audit)
        assert f"{part} repeats a member name in an object" in answer.body["detail"]
        control = resign_raw(region, sh.sign(orjson.dumps(body)), part, old, old)
        assert 200 == (await sh.query(body, token=control)).status

    async def test_body_changed_after_signing(self, start: Start, running: RunningFederation,
                                              audit: MemoryAudit) -> None:
        """A token lifted onto another body."""
        client = await start([licence_row(1), licence_row(2)])
        sh = partner(client, running)
        import orjson

        signed = orjson.dumps(sh.by_identifier(licence_row(1)["identifier"],
                                               matter_code=SH_MATTER))
        answer = await sh.query(sh.by_identifier(licence_row(2)["identifier"],
                                                 matter_code=SH_MATTER), signed_body=signed)
        await self._expect_401(answer, audit)
        assert "body_sha256" in answer.body["detail"]

    async def test_token_for_another_path_or_audience(self, start: Start,
                                                      running: RunningFederation,
                                                      audit: MemoryAudit) -> None:
        """htu and aud bind the token to this endpoint of this gateway."""
        client = await start()
        sh = partner(client, running)
        body = sh.by_identifier(licence_row(1)["identifier"], matter_code=SH_MATTER)
        answer = await sh.query(body, claims_override={"htu": "/v1/verifications"})
        await self._expect_401(answer, audit)
        answer = await sh.query(body, aud="320500")
        await self._expect_401(answer, audit)


class TestRefusals:
    """Requests that authenticate but may not be answered."""

    async def test_missing_use_cause_is_400_cn_12(self, start: Start,
                                                  running: RunningFederation,
                                                  audit: MemoryAudit) -> None:
        """No reason for use: 400, cn 12."""
        client = await start([licence_row(1)])
        sh = partner(client, running)
        body = sh.by_identifier(licence_row(1)["identifier"], matter_code=SH_MATTER)
        del body["use_cause"]
        answer = await sh.query(body)
        assert (400, 12) == (answer.status, answer.cn_status)
        event = _events(audit)[-1]
        assert ("refused", 12, SHANGHAI) == (event.outcome, event.cn_status,
                                             event.partner_region)
        assert {"region": SHANGHAI, "code": SH_MATTER} == event.matter_before

    @pytest.mark.parametrize("change", ["no-matter", "long-cause", "half-holder", "both",
                                        "other-region", "bad-identifier"])
    async def test_malformed_queries_are_400_cn_12(self, start: Start,
                                                   running: RunningFederation,
                                                   change: str) -> None:
        """Missing or malformed fields: 400, cn 12."""
        client = await start()
        sh = partner(client, running)
        body = sh.by_identifier(licence_row(1)["identifier"], matter_code=SH_MATTER)
        if change == "no-matter":
            del body["matter"]
        elif change == "long-cause":
            body["use_cause"] = "因" * 201
        elif change == "half-holder":
            body = sh.by_holder(HOLDER, CONSTRUCTION_WORKER, matter_code=SH_MATTER)
            del body["holder_code_type"]
        elif change == "both":
            body["holder_code"] = HOLDER
        elif change == "other-region":
            body["matter"]["region"] = "340100"
        else:
            body["identifier"] = "1.2.156.3005.2.nonsense"
        answer = await sh.query(body)
        assert (400, 12) == (answer.status, answer.cn_status)

    async def test_suspended_partner_is_403_try_later(self, start: Start,
                                                      running: RunningFederation,
                                                      audit: MemoryAudit) -> None:
        """A suspended partner authenticates but is refused: 403, cn 100, TRY_LATER."""
        running.federation[SHANGHAI].partner_status = "suspended"
        client = await start([licence_row(1)])
        sh = partner(client, running)
        answer = await sh.query(sh.by_identifier(licence_row(1)["identifier"],
                                                 matter_code=SH_MATTER))
        assert (403, 100) == (answer.status, answer.cn_status)
        assert "TRY_LATER" == answer.body["sub_indication"]
        assert SHANGHAI == _events(audit)[-1].partner_region

    async def test_type_out_of_agreement_is_403_cn_100(self, start: Start,
                                                       running: RunningFederation) -> None:
        """A licence type the agreement does not list."""
        running.federation[SHANGHAI].recognised_licence_types = (BUSINESS_LICENCE,)
        client = await start([licence_row(1)])
        sh = partner(client, running)
        answer = await sh.query(sh.by_identifier(licence_row(1)["identifier"],
                                                 matter_code=SH_MATTER))
        assert (403, 100) == (answer.status, answer.cn_status)

    async def test_matter_out_of_agreement_is_403_cn_100(self, start: Start,
                                                         running: RunningFederation) -> None:
        """A partner matter the agreement does not list; a listed one passes."""
        running.federation[SHANGHAI].recognised_matters = ("310000-20-SFJ-0002",)
        client = await start([licence_row(1)])
        sh = partner(client, running)
        identifier = licence_row(1)["identifier"]
        answer = await sh.query(sh.by_identifier(identifier, matter_code=SH_MATTER))
        assert (403, 100) == (answer.status, answer.cn_status)
        answer = await sh.query(sh.by_identifier(identifier, matter_code="310000-20-SFJ-0002"))
        assert (200, 0) == (answer.status, answer.cn_status)

    async def test_rate_limit_is_429_with_retry_after(self, start: Start,
                                                      running: RunningFederation,
                                                      audit: MemoryAudit) -> None:
        """Past the burst, a partner is told when to come back; others are unaffected."""
        client = await start([licence_row(1)], partner_rate_per_s=0.1, partner_rate_burst=2)
        sh = partner(client, running)
        body = sh.by_identifier(licence_row(1)["identifier"], matter_code=SH_MATTER)
        statuses = [(await sh.query(body)).status for _ in range(2)]
        assert [200, 200] == statuses
        limited = await sh.query(body)
        assert 429 == limited.status
        assert int(limited.headers["Retry-After"]) >= 1
        assert "refused" == _events(audit)[-1].outcome
        hefei = partner(client, running, "340100")
        other = await hefei.query(hefei.by_identifier(licence_row(1)["identifier"],
                                                      matter_code="340100-whatever"))
        assert 200 == other.status

    @pytest.mark.parametrize("backend", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
    async def test_refused_tokens_do_not_cost_the_partner(
            self, start: Start, running: RunningFederation, audit: MemoryAudit,
            request: pytest.FixtureRequest, backend: str) -> None:
        """A used token replayed many times at once, beside forged and expired tokens, is
        refused 401 (cn 11) and audited each time, and charges the partner nothing: its
        fresh tokens pass until its own burst is spent, and only then is it 429."""
        import orjson

        burst = 3
        redis = {"redis_url": request.getfixturevalue("redis_url")} if backend == "redis" else {}
        client = await start([licence_row(1)], partner_rate_per_s=0.001,
                             partner_rate_burst=burst, **redis)
        sh = partner(client, running)
        body = sh.by_identifier(licence_row(1)["identifier"], matter_code=SH_MATTER)
        used = sh.sign(orjson.dumps(body))
        assert 200 == (await sh.query(body, token=used)).status
        header, claims, signature = sh.sign(orjson.dumps(body)).split(".")
        flipped = "A" if signature[10] != "A" else "B"
        forged = f"{header}.{claims}.{signature[:10]}{flipped}{signature[11:]}"
        expired = sh.sign(orjson.dumps(body), iat=int(time.time()) - 400, lifetime=300)
        replays = 40
        refused = await asyncio.gather(
            *(sh.query(body, token=used) for _ in range(replays)),
            *(sh.query(body, token=token) for token in (forged, expired) for _ in range(5)))
        assert {(401, 11)} == {(answer.status, answer.cn_status) for answer in refused}
        assert all("application/problem+json" in a.headers["Content-Type"] for a in refused)
        fresh = [await sh.query(body) for _ in range(burst - 1)]
        assert [(200, 0)] * (burst - 1) == [(a.status, a.cn_status) for a in fresh]
        over = await sh.query(body)
        assert 429 == over.status  # the bucket is live: the partner's own queries spend it
        events = _events(audit)
        assert 1 + replays + 10 + burst == len(events)
        flood = events[1:1 + replays + 10]
        assert {("refused", 11, 401)} == {(e.outcome, e.cn_status, e.details["http_status"])
                                          for e in flood}
        replayed = [e for e in flood if "replay" in str(e.details["reason"])]
        assert replays == len(replayed)
        assert {SHANGHAI} == {e.partner_region for e in replayed}
        assert 10 == sum(e.partner_region is None and SHANGHAI == e.details["claimed_iss"]
                         for e in flood)
        assert [("ok", 0)] * (burst - 1) + [("refused", 99)] == \
            [(e.outcome, e.cn_status) for e in events[-burst:]]

    async def test_every_query_is_audited(self, start: Start, running: RunningFederation,
                                          audit: MemoryAudit) -> None:
        """One record per query, refused ones included; holder codes only in personal."""
        client = await start([licence_row(1)])
        sh = partner(client, running)
        await sh.query(sh.by_holder(HOLDER, CONSTRUCTION_WORKER, matter_code=SH_MATTER))
        await sh.query(sh.by_holder(HOLDER, CONSTRUCTION_WORKER, matter_code=SH_MATTER),
                       token="bad")
        no_cause = sh.by_holder(HOLDER, CONSTRUCTION_WORKER, matter_code=SH_MATTER)
        no_cause["use_cause"] = ""
        await sh.query(no_cause)
        events = _events(audit)
        assert 3 == len(events)
        assert ["ok", "refused", "refused"] == [e.outcome for e in events]
        assert [0, 11, 12] == [e.cn_status for e in events]
        for event in events:
            public = repr({f: getattr(event, f) for f in event.__slots__ if f != "personal"})
            assert HOLDER not in public


class TestBackends:
    """The same API on Redis (replay cache) and PostgreSQL (licence store)."""

    async def test_start_up_failing_after_the_store_opened_closes_it(
            self, tmp_path: Path, audit: MemoryAudit, running: RunningFederation) -> None:
        """A bad setting read after the licence store opened fails start-up and leaves no
        store thread or watcher behind. (``load_settings`` refuses a rate of 0; the
        settings are changed after loading to reach the rate limiter with one.)"""
        await asyncio.get_running_loop().run_in_executor(None, import_rows, tmp_path,
                                                         [licence_row(1)])
        config = replace(load_settings({}, None, {"data_dir": tmp_path}), partner_rate_per_s=0.0)
        app = create_app(config, audit=audit,
                         trust_list=TrustList.from_json(trust_document(running.federation)))
        if not _wired(app):
            setup(app)
        runner = web.AppRunner(app)
        with pytest.raises(ValueError, match="positive rate"):
            await runner.setup()
        await runner.cleanup()
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("licences-")]

    @pytest.mark.redis
    async def test_replay_refused_through_redis(self, start: Start, running: RunningFederation,
                                                redis_url: str) -> None:
        """With Redis configured, a replayed jti is refused."""
        client = await start([licence_row(1)], redis_url=redis_url)
        sh = partner(client, running)
        body = sh.by_identifier(licence_row(1)["identifier"], matter_code=SH_MATTER)
        import orjson

        token = sh.sign(orjson.dumps(body))
        assert 200 == (await sh.query(body, token=token)).status
        again = await sh.query(body, token=token)
        assert (401, 11) == (again.status, again.cn_status)
        ready = await (await client.get("/readyz")).json()
        assert "ok" == ready["checks"]["replay-cache"]

    @pytest.mark.redis
    @pytest.mark.allow_blocking
    async def test_redis_down_is_a_503_with_its_audit_record(
            self, start: Start, running: RunningFederation, audit: MemoryAudit,
            private_redis: PrivateRedis) -> None:
        """Redis stopped: a query is refused 503 (cn 99, a problem body) with an audit
        record, never answered without its jti check; Redis back: queries are answered."""
        await asyncio.sleep(0.3)
        client = await start([licence_row(1)], redis_url=private_redis.url)
        sh = partner(client, running)
        body = sh.by_identifier(licence_row(1)["identifier"], matter_code=SH_MATTER)
        assert (200, 0) == ((first := await sh.query(body)).status, first.cn_status)
        private_redis.stop()
        down = await sh.query(body)
        assert (503, 99) == (down.status, down.cn_status)
        assert down.body["type"].endswith("replay-cache-unavailable")
        assert [] == down.body.get("licences", [])
        private_redis.start()
        await asyncio.sleep(0.5)
        back = await sh.query(body)
        assert (200, 0) == (back.status, back.cn_status)
        events = _events(audit)
        assert [("ok", 0), ("error", 99), ("ok", 0)] == [(e.outcome, e.cn_status)
                                                         for e in events]
        assert 503 == events[1].details["http_status"]

    @pytest.mark.postgres
    async def test_found_in_postgres(self, start: Start, running: RunningFederation,
                                     postgres_dsn: str) -> None:
        """Licences imported into PostgreSQL are found, and states hold."""
        rows = [licence_row(1), licence_row(2, state="suspended")]
        client = await start(rows, postgres_dsn=postgres_dsn)
        sh = partner(client, running)
        found = await sh.query(sh.by_holder(HOLDER, CONSTRUCTION_WORKER, matter_code=SH_MATTER))
        assert (200, 0, 1) == (found.status, found.cn_status, len(found.body["licences"]))
        suspended = await sh.query(sh.by_identifier(rows[1]["identifier"],
                                                    matter_code=SH_MATTER))
        assert 23 == suspended.cn_status


class TestRequestToken:
    """check_request_token on its own: boundaries one second either side."""

    @pytest.fixture
    def federation(self) -> Federation:
        """Shanghai alone."""
        return Federation.standard(seed=3, codes=[SHANGHAI])

    def _check(self, federation: Federation, *, now: int, **token_args: Any) -> None:
        tl = TrustList.from_json(trust_document(federation))
        body = b'{"x":1}'
        token = federation[SHANGHAI].request_token(body=body, path=QUERY_PATH, **token_args)
        _check_both(token, trust_list=tl, audience="330500", method="POST",
                    path=QUERY_PATH, body=body, now=now, skew_s=30)

    def test_lifetime_boundary(self, federation: Federation) -> None:
        """exp - iat = 300 passes; 301 fails."""
        now = int(time.time())
        self._check(federation, now=now, iat=now, lifetime=300)
        with pytest.raises(RequestTokenError, match="300"):
            self._check(federation, now=now, iat=now, lifetime=301)

    def test_expiry_boundary(self, federation: Federation) -> None:
        """Accepted up to exp + skew, refused one second later."""
        iat = int(time.time()) - 200
        self._check(federation, now=iat + 100 + 30, iat=iat, lifetime=100)
        with pytest.raises(RequestTokenError, match="expired"):
            self._check(federation, now=iat + 100 + 31, iat=iat, lifetime=100)

    def test_future_iat_boundary(self, federation: Federation) -> None:
        """iat up to skew ahead passes; one second more fails."""
        now = int(time.time())
        self._check(federation, now=now, iat=now + 30)
        with pytest.raises(RequestTokenError, match="future"):
            self._check(federation, now=now, iat=now + 31)

    def test_wrong_typ_refused(self, federation: Federation) -> None:
        """A licence-typed token is not a request token."""
        tl = TrustList.from_json(trust_document(federation))
        region = federation[SHANGHAI]
        claims = {"iss": SHANGHAI, "aud": "330500", "iat": int(time.time()),
                  "exp": int(time.time()) + 60, "jti": "j", "htm": "POST", "htu": QUERY_PATH,
                  "body_sha256": ""}
        token = sign_compact({"alg": "ES256", "typ": "ecert+jwt", "kid": region.request_kid},
                             claims, region.private_key(region.request_kid), "ES256")
        with pytest.raises(RequestTokenError, match="typ"):
            _check_both(token, trust_list=tl, audience="330500", method="POST",
                        path=QUERY_PATH, body=b"", now=int(time.time()))

    def test_bad_signature_refused(self, federation: Federation) -> None:
        """A token whose signature is another message's does not verify (on either path)."""
        tl = TrustList.from_json(trust_document(federation))
        body = b'{"x":1}'
        token = federation[SHANGHAI].request_token(body=body, path=QUERY_PATH)
        other = federation[SHANGHAI].request_token(body=b"{}", path=QUERY_PATH)
        forged = token.rsplit(".", 1)[0] + "." + other.rsplit(".", 1)[1]
        with pytest.raises(RequestTokenError, match="signature does not verify"):
            _check_both(forged, trust_list=tl, audience="330500", method="POST",
                        path=QUERY_PATH, body=body, now=int(time.time()))

    @staticmethod
    def _with_request_anchors(federation: Federation, jwks: Sequence[dict[str, Any]]
                              ) -> TrustList:
        """The trust list with Shanghai's request-signing anchor replaced by one anchor per
        JWK, each under the same kid, in this order (a list loaded as it is keeps them all)."""
        doc = trust_document(federation)
        shanghai = next(p for p in doc["partners"] if p["region_code"] == SHANGHAI)
        real = next(a for a in shanghai["anchors"] if a["use"] == "request-signing")
        shanghai["anchors"] = [*(a for a in shanghai["anchors"] if a is not real),
                               *({**real, "jwk": jwk} for jwk in jwks)]
        return TrustList.from_json(doc)

    def test_second_anchor_under_the_kid_verifies(self, federation: Federation) -> None:
        """Two anchors under one kid (a rotation gone wrong): a token made with the second
        anchor's key is accepted after the first key fails, and refused without it."""
        region = federation[SHANGHAI]
        body = b'{"x":1}'
        token = region.request_token(body=body, path=QUERY_PATH)
        real = public_jwk(region.private_key(region.request_kid).public_key())
        stranger = public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key())
        checks = {"audience": "330500", "method": "POST", "path": QUERY_PATH, "body": body,
                  "now": int(time.time())}
        _check_both(token, trust_list=self._with_request_anchors(federation, [stranger, real]),
                    **checks)
        with pytest.raises(RequestTokenError, match="signature does not verify"):
            _check_both(token, trust_list=self._with_request_anchors(federation, [stranger]),
                        **checks)

    def test_anchor_without_a_usable_key_verifies_nothing(self, federation: Federation) -> None:
        """An anchor whose JWK the gateway cannot use (kty oct) accepts no token."""
        body = b'{"x":1}'
        token = federation[SHANGHAI].request_token(body=body, path=QUERY_PATH)
        tl = self._with_request_anchors(federation, [{"kty": "oct", "k": "c2VjcmV0"}])
        assert tl.anchors(federation[SHANGHAI].request_kid)[0].key is None
        with pytest.raises(RequestTokenError, match="signature does not verify"):
            _check_both(token, trust_list=tl, audience="330500", method="POST",
                        path=QUERY_PATH, body=body, now=int(time.time()))

    def test_weak_rsa_anchor_verifies_nothing(self, federation: Federation) -> None:
        """A token really signed (RS256) with a 1024-bit RSA anchor's key is refused: the
        allow-list forbids the key, so it verifies nothing."""
        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the point
        region = federation[SHANGHAI]
        body = b'{"x":1}'
        now = int(time.time())
        claims = {"iss": SHANGHAI, "aud": "330500", "iat": now, "exp": now + 60, "jti": "w1",
                  "htm": "POST", "htu": QUERY_PATH,
                  "body_sha256": hashlib.sha256(body).hexdigest()}
        token = sign_compact({"alg": "RS256", "typ": "ecert-request+jwt",
                              "kid": region.request_kid}, claims, weak, "RS256")
        tl = self._with_request_anchors(federation, [public_jwk(weak.public_key())])
        key = tl.anchors(region.request_kid)[0].key
        assert key is not None
        assert key.weak_reason is not None
        with pytest.raises(RequestTokenError, match="signature does not verify"):
            _check_both(token, trust_list=tl, audience="330500", method="POST",
                        path=QUERY_PATH, body=body, now=now)


def _check_both(token: str, **checks: Any) -> None:
    """check_request_token, and check_request_token_async with its signature checked on a
    crypto thread: both must accept, or both refuse for the same reason (raised)."""

    async def on_thread() -> None:
        crypto = CryptoThread()
        try:
            await check_request_token_async(token, run=crypto.run, **checks)
        finally:
            await crypto.close()
        assert crypto.calls >= 1, "the signature was not checked on the crypto thread"

    sync_error = async_error = None
    try:
        check_request_token(token, **checks)
    except RequestTokenError as exc:
        sync_error = exc
    try:
        asyncio.run(on_thread())
    except RequestTokenError as exc:
        async_error = exc
    assert str(sync_error) == str(async_error), (sync_error, async_error)
    if async_error is not None:
        raise async_error


class TestLimiterAndCache:
    """The rate limiter and the in-memory replay cache."""

    def test_token_bucket(self) -> None:
        """burst requests pass at once, then one per 1/rate seconds."""
        now = [0.0]
        limiter = RateLimiter(2.0, 3, clock=lambda: now[0])
        assert [None, None, None] == [limiter.take("310000") for _ in range(3)]
        wait = limiter.take("310000")
        assert wait == pytest.approx(0.5)
        now[0] += 0.5
        assert limiter.take("310000") is None
        assert limiter.take("340100") is None

    async def test_memory_replay_cache_expires(self) -> None:
        """A jti is refused while remembered, accepted again after its TTL."""
        now = [0.0]
        cache = MemoryReplayCache(clock=lambda: now[0])
        assert await cache.first_use("310000:a", 10)
        assert not await cache.first_use("310000:a", 10)
        now[0] += 11
        assert await cache.first_use("310000:a", 10)
