"""/v1/admin/: dual control over the trust list, history, signed export, propagation."""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.__main__ import run_command
from gateway.audit.event import EventType
from gateway.cli import command_settings
from gateway.credentials.store import IdentityKind, Role, add_identity
from gateway.infra.signing import load_or_create_key
from gateway.settings import Settings, load_settings
from gateway.trustlist.routes import setup
from gateway.web.app import create_app
from gateway.web.appkeys import SETTINGS_KEY
from mocks import KEYS_VALID_UNTIL, RunningFederation, rfc3339
from tests.fakes import MemoryAudit
from tests.gateway.conftest import AppFactory, metric_value, scrape_metrics, trust_document
from trust import TrustListError, export_signed

pytestmark = pytest.mark.asyncio

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]
OPERATORS = {"olga": Role.OPERATOR, "adam": Role.APPROVER, "alice": Role.APPROVER,
             "pete": Role.APPROVER, "vera": Role.VIEWER, "audrey": Role.AUDITOR}


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _add(data_dir: Path, kind: IdentityKind, name: str, role: Role | None = None) -> str:
    return await asyncio.get_running_loop().run_in_executor(
        None, add_identity, data_dir, kind, name, role)


async def _tokens(data_dir: Path) -> dict[str, str]:
    tokens = {name: await _add(data_dir, IdentityKind.OPERATOR, name, role)
              for name, role in OPERATORS.items()}
    tokens["client"] = await _add(data_dir, IdentityKind.CLIENT, "window-01")
    return tokens


def _write_list(path: Path, document: dict[str, Any]) -> Path:
    path.write_bytes(orjson.dumps(document))
    return path


def make_app(settings: Settings, audit: MemoryAudit) -> web.Application:
    """The gateway with the trust-list store set up (idempotent once create_app wires it)."""
    app = create_app(settings, audit=audit)
    setup(app)
    return app


@pytest.fixture
def start(aiohttp_client: ClientFactory, audit: MemoryAudit) -> Callable[..., Awaitable[Client]]:
    """Start a gateway on a data folder, optionally with --trust-list FILE."""

    async def _start(data_dir: Path, trust_list: Path | None = None, **extra: Any) -> Client:
        settings = load_settings({}, None, {"data_dir": data_dir, "trust_list_file": trust_list,
                                            **extra})
        return await aiohttp_client(make_app(settings, audit))

    return _start


@pytest.fixture
async def tokens(tmp_path: Path) -> dict[str, str]:
    """Tokens of the operators in OPERATORS, and a local system's key, in tmp_path."""
    return await _tokens(tmp_path)


@pytest.fixture
async def gateway(start: Callable[..., Awaitable[Client]], tmp_path: Path,
                  running: RunningFederation) -> Client:
    """A gateway started with the federation's list (version 3) as --trust-list."""
    path = _write_list(tmp_path / "tl.json", trust_document(running.federation))
    return await start(tmp_path, path)


async def _propose(client: Client, token: str, *changes: dict[str, Any]) -> Any:
    resp = await client.post("/v1/admin/proposals", headers=_auth(token),
                             json={"changes": list(changes), "note": "test"})
    return resp.status, await resp.json()


async def _approve(client: Client, token: str, proposal_id: str) -> Any:
    resp = await client.post(f"/v1/admin/proposals/{proposal_id}/approve",
                             headers=_auth(token), json={"comment": "ok"})
    return resp.status, await resp.json()


async def _apply(client: Client, tokens: dict[str, str], *changes: dict[str, Any]) -> Any:
    status, proposal = await _propose(client, tokens["olga"], *changes)
    assert 201 == status, proposal
    await _approve(client, tokens["adam"], proposal["id"])
    status, body = await _approve(client, tokens["alice"], proposal["id"])
    assert (200, "applied") == (status, body["status"]), body
    return body


async def _verify(client: Client, key: str, token: str) -> Any:
    resp = await client.post("/v1/verifications", headers=_auth(key),
                             json={"credential": token})
    assert 200 == resp.status
    return await resp.json()


async def _version(client: Client, token: str) -> int:
    resp = await client.get("/v1/admin/trust-list", headers=_auth(token))
    return int((await resp.json())["version"])


class TestDualControl:
    """A change needs approvals by others; roles decide who may do what."""

    async def test_proposal_does_nothing_until_approved(
            self, gateway: Client, tokens: dict[str, str], running: RunningFederation,
            audit: MemoryAudit) -> None:
        """Suspending Shanghai takes effect only with the second approval."""
        licence = running.federation["310000"].issue().token
        status, proposal = await _propose(gateway, tokens["olga"],
                                          {"kind": "suspend-partner", "region_code": "310000"})
        assert (201, "pending", 2) == (status, proposal["status"], proposal["approvals_required"])
        assert 3 == await _version(gateway, tokens["vera"])
        assert "TOTAL_PASSED" == (await _verify(gateway, tokens["client"], licence))["indication"]
        status, once = await _approve(gateway, tokens["adam"], proposal["id"])
        assert (200, "pending", ["adam"]) == (status, once["status"],
                                              [a["operator"] for a in once["approvals"]])
        assert "TOTAL_PASSED" == (await _verify(gateway, tokens["client"], licence))["indication"]
        status, twice = await _approve(gateway, tokens["alice"], proposal["id"])
        assert (200, "applied", 4) == (status, twice["status"], twice["result_version"])
        body = await _verify(gateway, tokens["client"], licence)
        assert ("INDETERMINATE", 4) == (body["indication"], body["trust_list_version"])
        actions = [e.details.get("action") for e in audit.events
                   if e.event_type is EventType.OPERATOR_CHANGE]
        assert ["trust-list-proposal-created", "trust-list-proposal-approved",
                "trust-list-change-applied"] == actions
        applied = next(e for e in audit.events if e.details.get("action") ==
                   "trust-list-change-applied")
        assert ("alice", 4) == (applied.actor_id, applied.trust_list_version)

    async def test_author_cannot_approve_or_reject_own(self, gateway: Client,
                                                        tokens: dict[str, str]) -> None:
        """An approver who proposed may not vote on the proposal: 403."""
        _, proposal = await _propose(gateway, tokens["pete"],
                                     {"kind": "suspend-partner", "region_code": "520500"})
        status, body = await _approve(gateway, tokens["pete"], proposal["id"])
        assert (403, "own-proposal") == (status, body["reason"])
        resp = await gateway.post(f"/v1/admin/proposals/{proposal['id']}/reject",
                                  headers=_auth(tokens["pete"]), json={})
        assert 403 == resp.status
        again = await (await gateway.get(f"/v1/admin/proposals/{proposal['id']}",
                                         headers=_auth(tokens["vera"]))).json()
        assert ("pending", []) == (again["status"], again["approvals"])

    async def test_rejection_closes_the_proposal(self, gateway: Client,
                                                 tokens: dict[str, str]) -> None:
        """One rejection settles a proposal; later approvals are refused with 409."""
        _, proposal = await _propose(gateway, tokens["olga"],
                                     {"kind": "suspend-partner", "region_code": "520500"})
        resp = await gateway.post(f"/v1/admin/proposals/{proposal['id']}/reject",
                                  headers=_auth(tokens["adam"]), json={"reason": "no"})
        assert "rejected" == (await resp.json())["status"]
        status, body = await _approve(gateway, tokens["alice"], proposal["id"])
        assert (409, "not-pending") == (status, body["reason"])
        assert 3 == await _version(gateway, tokens["vera"])

    async def test_viewer_cannot_propose(self, gateway: Client, tokens: dict[str, str]) -> None:
        """A viewer reads but may not propose: 403."""
        status, _ = await _propose(gateway, tokens["vera"],
                                   {"kind": "suspend-partner", "region_code": "310000"})
        assert 403 == status
        assert 200 == (await gateway.get("/v1/admin/proposals", headers=_auth(tokens["vera"]))
                       ).status

    async def test_operator_cannot_approve(self, gateway: Client, tokens: dict[str, str]) -> None:
        """Only approvers approve: an operator gets 403."""
        _, proposal = await _propose(gateway, tokens["pete"],
                                     {"kind": "suspend-partner", "region_code": "310000"})
        status, _ = await _approve(gateway, tokens["olga"], proposal["id"])
        assert 403 == status

    async def test_auditor_changes_nothing(self, gateway: Client, tokens: dict[str, str]) -> None:
        """Every write is 403 for an auditor; every read is allowed."""
        _, proposal = await _propose(gateway, tokens["olga"],
                                     {"kind": "suspend-partner", "region_code": "310000"})
        auditor = _auth(tokens["audrey"])
        writes = [
            ("/v1/admin/proposals", {"changes": [{"kind": "suspend-partner",
                                                  "region_code": "310000"}]}),
            (f"/v1/admin/proposals/{proposal['id']}/approve", {}),
            (f"/v1/admin/proposals/{proposal['id']}/reject", {}),
            ("/v1/admin/trust-list/import", {"jws": "a.b.c"}),
        ]
        for path, body in writes:
            assert 403 == (await gateway.post(path, headers=auditor, json=body)).status, path
        for path in ("/v1/admin/trust-list", "/v1/admin/trust-list/versions",
                     "/v1/admin/trust-list/versions/3", "/v1/admin/trust-list/export",
                     "/v1/admin/proposals", f"/v1/admin/proposals/{proposal['id']}",
                     "/v1/admin/alerts"):
            assert 200 == (await gateway.get(path, headers=auditor)).status, path

    async def test_missing_or_wrong_credentials_are_401(self, gateway: Client,
                                                        tokens: dict[str, str]) -> None:
        """No token, an unknown one, or a local system's key: 401."""
        for headers in ({}, _auth("ecg_o_unknown"), _auth(tokens["client"])):
            assert 401 == (await gateway.get("/v1/admin/trust-list", headers=headers)).status
            assert 401 == (await gateway.post("/v1/admin/proposals", headers=headers,
                                              json={"changes": []})).status

    async def test_invalid_change_is_422_with_problems(
            self, gateway: Client, tokens: dict[str, str], running: RunningFederation) -> None:
        """A weak key is refused at proposal time with the reason."""
        sh = running.federation["310000"]
        kid = sh.add_signing_key("RS256", kid="310000-weak", rsa_bits=1024, publish=False)
        status, body = await _propose(gateway, tokens["olga"], {
            "kind": "add-anchor", "region_code": "310000",
            "anchor": {"kid": kid, "use": "licence-signing", "jwk": sh.public_jwk(kid),
                       "valid_from": "2026-01-01T00:00:00Z",
                       "valid_until": "2027-01-01T00:00:00Z"}})
        assert 422 == status
        assert [("change #1 (add-anchor) anchor '310000-weak': weak key: RSA key of 1024 bits "
                "is under the 2048-bit minimum")] == body["problems"]


class TestRevocation:
    """Revocation through the API is non-retroactive except for key compromise."""

    async def test_superseded_then_key_compromise(
            self, gateway: Client, tokens: dict[str, str], running: RunningFederation) -> None:
        """Superseded keeps earlier-signed licences passing; key-compromise fails them all."""
        sh = running.federation["310000"]
        now = datetime.now(UTC)
        earlier = sh.issue(iat=int((now - timedelta(days=2)).timestamp())).token
        later = sh.issue().token
        await _apply(gateway, tokens, {
            "kind": "revoke-anchor", "region_code": "310000", "kid": sh.licence_kid,
            "reason": "superseded", "revoked_at": rfc3339(now - timedelta(hours=1))})
        assert "TOTAL_PASSED" == (await _verify(gateway, tokens["client"], earlier))["indication"]
        failed = await _verify(gateway, tokens["client"], later)
        assert "REVOKED" == failed["sub_indication"]
        await _apply(gateway, tokens, {
            "kind": "revoke-anchor", "region_code": "310000", "kid": sh.licence_kid,
            "reason": "key-compromise"})
        for token in (earlier, later):
            body = await _verify(gateway, tokens["client"], token)
            assert ("REVOKED", 5) == (body["sub_indication"], body["trust_list_version"])


class TestHistory:
    """Every version is kept; diffs and alerts read them."""

    async def test_versions_and_diff(self, gateway: Client, tokens: dict[str, str]) -> None:
        """An applied change adds a version; the diff names what changed."""
        await _apply(gateway, tokens, {"kind": "suspend-partner", "region_code": "520500"})
        viewer = _auth(tokens["vera"])
        versions = (await (await gateway.get("/v1/admin/trust-list/versions",
                                             headers=viewer)).json())["versions"]
        assert [(3, "start-up"), (4, "proposal")] == [(v["version"], v["source"])
                                                      for v in versions]
        v3 = await (await gateway.get("/v1/admin/trust-list/versions/3", headers=viewer)).json()
        assert 3 == v3["document"]["version"]
        diff = await (await gateway.get("/v1/admin/trust-list/diff?from=3&to=4",
                                        headers=viewer)).json()
        partner = [c for c in diff["changes"] if c["op"] == "partner-changed"]
        assert [{"op": "partner-changed", "region_code": "520500", "kid": None,
                 "fields": {"status": ["active", "suspended"]}}] == partner
        assert 404 == (await gateway.get("/v1/admin/trust-list/versions/9", headers=viewer)
                       ).status

    @pytest.mark.parametrize("query", [
        "alerts?days=-1", "alerts?days=3651", "alerts?days=99999999999999999999999",
        "alerts?days=ten", "trust-list/versions/99999999999999999999999",
        "trust-list/versions/-3", "trust-list/diff?from=0&to=9223372036854775808",
    ])
    async def test_out_of_range_integers_are_4xx(self, gateway: Client,
                                                  tokens: dict[str, str], query: str) -> None:
        """An integer parameter out of range is a 400 problem, never a 500."""
        resp = await gateway.get(f"/v1/admin/{query}", headers=_auth(tokens["vera"]))
        assert 400 == resp.status
        assert resp.content_type == "application/problem+json"

    async def test_alerts(self, gateway: Client, tokens: dict[str, str]) -> None:
        """Anchors expiring within the window and a list near next_update are alerted."""
        viewer = _auth(tokens["vera"])
        soon = await (await gateway.get("/v1/admin/alerts", headers=viewer)).json()
        assert 30 == soon["days"]
        assert ["trust-list-expiring"] == [a["kind"] for a in soon["alerts"]]
        # A window reaching past the end of the mock anchors' validity also alerts them.
        days = (KEYS_VALID_UNTIL - datetime.now(UTC)).days + 2
        late = await (await gateway.get(f"/v1/admin/alerts?days={days}", headers=viewer)).json()
        kinds = {a["kind"] for a in late["alerts"]}
        assert {"trust-list-expiring", "anchor-expiring"} == kinds


async def _jwks_trust_key(client: Client) -> dict[str, Any]:
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    found: dict[str, Any] = next(k for k in jwks["keys"] if k.get("ecert_use") == "trust-list")
    return found


class TestExportImport:
    """Signed exports move a list between data folders; bad ones are refused with reasons."""

    async def test_export_import_reproduces_the_list(
            self, start: Callable[..., Awaitable[Client]], tmp_path: Path,
            running: RunningFederation) -> None:
        """An export imported into a second data folder serves the same document."""
        a_dir, b_dir = tmp_path / "a", tmp_path / "b"
        a_dir.mkdir()
        b_dir.mkdir()
        a_tokens, b_tokens = await _tokens(a_dir), await _tokens(b_dir)
        a = await start(a_dir, _write_list(a_dir / "tl.json", trust_document(running.federation)))
        await _apply(a, a_tokens, {"kind": "suspend-partner", "region_code": "520500"})
        (b_dir / "trust-list-signers.json").write_bytes(
            orjson.dumps({"keys": [await _jwks_trust_key(a)]}))
        b = await start(b_dir)
        assert 0 == await _version(b, b_tokens["vera"])
        export = await a.get("/v1/admin/trust-list/export", headers=_auth(a_tokens["vera"]))
        assert "application/trustlist+jwt" == export.content_type
        token = await export.text()
        resp = await b.post("/v1/admin/trust-list/import", headers=_auth(b_tokens["adam"]),
                            data=token)
        imported = await resp.json()
        assert (201, 4, True) == (resp.status, imported["version"], imported["imported"])
        a_doc = await (await a.get("/v1/admin/trust-list",
                                   headers=_auth(a_tokens["vera"]))).json()
        b_doc = await (await b.get("/v1/admin/trust-list",
                                   headers=_auth(b_tokens["vera"]))).json()
        assert a_doc == b_doc
        again = await b.post("/v1/admin/trust-list/import", headers=_auth(b_tokens["adam"]),
                             json={"jws": token})
        assert (200, False) == (again.status, (await again.json())["imported"])
        ready = await (await b.get("/readyz")).json()
        assert 4 == ready["trust_list_version"]

    async def test_tampered_older_or_expired_refused(
            self, start: Callable[..., Awaitable[Client]], tmp_path: Path,
            running: RunningFederation) -> None:
        """Each bad export is refused with its reason, and nothing changes."""
        tokens = await _tokens(tmp_path)
        document = trust_document(running.federation, version=7)
        client = await start(tmp_path, _write_list(tmp_path / "tl.json", document))
        loop = asyncio.get_running_loop()
        key = await loop.run_in_executor(None, partial(
            load_or_create_key, tmp_path, "trust-list", kid_prefix="330500-tl"))
        older = export_signed({**document, "version": 6}, key.sign)
        now = datetime.now(UTC)
        expired = export_signed({**document, "version": 8,
                                 "issued_at": rfc3339(now - timedelta(days=9)),
                                 "next_update": rfc3339(now - timedelta(days=2))}, key.sign)
        head, _, sig = export_signed({**document, "version": 8}, key.sign).split(".")
        claims = {"iss": "330500", "iat": 0, "exp": int((now + timedelta(days=7)).timestamp()),
                  "trust_list_version": 9, "trust_list": {**document, "version": 9}}
        body = base64.urlsafe_b64encode(orjson.dumps(claims)).decode().rstrip("=")
        tampered = f"{head}.{body}.{sig}"
        cases = {older: (409, "rollback"), expired: (422, "freeze"),
                 tampered: (422, "signature")}
        for token, (status, reason) in cases.items():
            resp = await client.post("/v1/admin/trust-list/import",
                                     headers=_auth(tokens["adam"]), data=token)
            problem = await resp.json()
            assert (status, reason) == (resp.status, problem["reason"]), problem["detail"]
        assert 7 == await _version(client, tokens["vera"])


class TestPropagation:
    """A change applied anywhere is served everywhere on the same store."""

    async def test_two_instances_share_one_data_folder(
            self, start: Callable[..., Awaitable[Client]], tmp_path: Path,
            tokens: dict[str, str], running: RunningFederation) -> None:
        """An approval on one instance is served by the other within the poll interval."""
        path = _write_list(tmp_path / "tl.json", trust_document(running.federation))
        first = await start(tmp_path, path)
        second = await start(tmp_path, path)
        await _apply(first, tokens, {"kind": "suspend-partner", "region_code": "310000"})
        deadline = time.monotonic() + 10
        served = 3
        while time.monotonic() < deadline:
            served = (await (await second.get("/readyz")).json())["trust_list_version"]
            if served == 4:
                break
            await asyncio.sleep(0.05)
        assert 4 == served
        body = await _verify(second, tokens["client"],
                             running.federation["310000"].issue().token)
        assert "INDETERMINATE" == body["indication"]

    async def test_cli_change_reaches_the_running_gateway(
            self, gateway: Client, tmp_path: Path, tokens: dict[str, str]) -> None:
        """A change proposed and approved with the CLI is served by the running gateway."""
        from gateway.cli.trust import register

        def cli(*argv: str) -> int:
            # Runs on a worker thread, as the CLI is a process of its own (argparse stats files).
            parser = argparse.ArgumentParser()
            register(parser.add_subparsers(dest="command"))
            args = parser.parse_args(list(argv))
            return run_command(args, command_settings(args, {}))

        def acting(name: str) -> tuple[str, ...]:
            # Each operator's own token, from a file (the CLI takes no secret as an argument).
            path = tmp_path / f"{name}.token"
            path.write_text(tokens[name] + "\n", encoding="ascii")
            return ("--as", name, "--token-file", str(path))

        loop = asyncio.get_running_loop()
        data = ("--data-dir", str(tmp_path))
        change = orjson.dumps({"kind": "suspend-partner", "region_code": "520500"}).decode()
        olga, adam, alice = await loop.run_in_executor(
            None, lambda: (acting("olga"), acting("adam"), acting("alice")))
        assert 0 == await loop.run_in_executor(None, lambda: cli(
            "trust", "propose", *data, *olga, "--change", change))
        proposals = await (await gateway.get("/v1/admin/proposals?status=pending",
                                             headers=_auth(tokens["vera"]))).json()
        proposal_id = proposals["proposals"][0]["id"]
        assert 1 == await loop.run_in_executor(None, lambda: cli(
            "trust", "approve", proposal_id, *data, *olga))
        for who in (adam, alice):
            assert 0 == await loop.run_in_executor(None, lambda w=who: cli(  # type: ignore[misc]
                "trust", "approve", proposal_id, *data, *w))
        deadline = time.monotonic() + 10
        served = 3
        while time.monotonic() < deadline and served != 4:
            served = (await (await gateway.get("/readyz")).json())["trust_list_version"]
            await asyncio.sleep(0.05)
        assert 4 == served


class TestStartUp:
    """--trust-list against the store: higher imports, lower refuses, equal is fine."""

    async def _start_fails(self, settings: Settings, audit: MemoryAudit) -> str:
        runner = web.AppRunner(make_app(settings, audit))
        try:
            with pytest.raises(TrustListError) as caught:
                await runner.setup()
        finally:
            await runner.cleanup()
        return str(caught.value)

    async def test_rollback_refused_higher_imported(
            self, start: Callable[..., Awaitable[Client]], tmp_path: Path,
            tokens: dict[str, str], running: RunningFederation, audit: MemoryAudit) -> None:
        """Lower refuses to start with the reason; higher is imported as a new version."""
        fed = running.federation
        first = await start(tmp_path, _write_list(tmp_path / "v5.json",
                                                  trust_document(fed, version=5)))
        assert 5 == await _version(first, tokens["vera"])
        older = _write_list(tmp_path / "v4.json", trust_document(fed, version=4))
        reason = await self._start_fails(
            load_settings({}, None, {"data_dir": tmp_path, "trust_list_file": older}), audit)
        assert "rollback refused" in reason
        assert "version 4, lower than the stored version 5" in reason
        newer = await start(tmp_path, _write_list(tmp_path / "v6.json",
                                                  trust_document(fed, version=6)))
        assert 6 == await _version(newer, tokens["vera"])
        loaded = [e for e in audit.events if e.event_type is EventType.TRUST_LIST_LOADED]
        assert [5, 6] == [e.trust_list_version for e in loaded]


@pytest.mark.postgres
class TestPostgresStore:
    """The PostgreSQL store: one history for every instance that shares it."""

    async def test_change_on_one_instance_served_by_another(
            self, start: Callable[..., Awaitable[Client]], tmp_path: Path,
            tokens: dict[str, str], running: RunningFederation, postgres_dsn: str) -> None:
        """Versions and proposals live in PostgreSQL; a second instance picks changes up."""
        path = _write_list(tmp_path / "tl.json", trust_document(running.federation))
        first = await start(tmp_path, path, postgres_dsn=postgres_dsn)
        second = await start(tmp_path, None, postgres_dsn=postgres_dsn)
        assert 3 == await _version(second, tokens["vera"])
        await _apply(first, tokens, {"kind": "suspend-partner", "region_code": "310000"})
        deadline = time.monotonic() + 10
        served = 3
        while time.monotonic() < deadline and served != 4:
            served = (await (await second.get("/readyz")).json())["trust_list_version"]
            await asyncio.sleep(0.05)
        assert 4 == served
        versions = (await (await second.get("/v1/admin/trust-list/versions",
                                            headers=_auth(tokens["vera"]))).json())["versions"]
        assert [3, 4] == [v["version"] for v in versions]
        assert not (tmp_path / "trustlist.db").exists()


async def test_alerts_name_a_failing_partner_endpoint_and_metrics_count_it(
        gateway_client: AppFactory, running: RunningFederation, client_key: str) -> None:
    """A status list that cannot be fetched shows as an alert and in /metrics."""
    client = await gateway_client()
    sh = running.federation["310000"]
    sh.status_available = False
    await client.post("/v1/verifications", headers={"Authorization": f"Bearer {client_key}"},
                      json={"credential": sh.issue().token})
    viewer = await asyncio.to_thread(add_identity, client.app[SETTINGS_KEY].data_dir,
                                     IdentityKind.OPERATOR, "viewer-9", Role.VIEWER)
    body = await (await client.get("/v1/admin/alerts",
                                   headers={"Authorization": f"Bearer {viewer}"})).json()
    kinds = [a["kind"] for a in body["alerts"]]
    assert "partner-endpoint-failing" in kinds
    metrics = await scrape_metrics(client)
    assert 1 == metric_value(metrics, "ecert_alerts", kind="partner-endpoint-failing")
