"""Credentials over HTTP and on a running gateway: revocation at once, rotation, expiry, roles."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.__main__ import main
from gateway.audit.event import EventType
from gateway.credentials.store import IdentityKind, Role, add_identity, identity_db_path
from tests.fakes import MemoryAudit
from tests.gateway.conftest import AppFactory

pytestmark = pytest.mark.asyncio

Client = TestClient[web.Request, web.Application]

REVOCATION_BOUND_S = 1.0
"""How soon a change made by another process must be honoured: the watcher polls every
250 ms; the rest is slack for a loaded test machine."""

PEOPLE = {"olga": Role.OPERATOR, "adam": Role.APPROVER, "alice": Role.APPROVER,
          "vera": Role.VIEWER, "audrey": Role.AUDITOR}


class FakeClock:
    """The wall clock, moved on by the test."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _tokens(data_dir: Path) -> dict[str, str]:
    tokens = {name: await asyncio.to_thread(add_identity, data_dir, IdentityKind.OPERATOR,
                                            name, role) for name, role in PEOPLE.items()}
    tokens["window"] = await asyncio.to_thread(add_identity, data_dir, IdentityKind.CLIENT,
                                               "window-01")
    return tokens


async def _as_client(client: Client, key: str) -> int:
    """The status of a local system's request (a verification of a malformed licence)."""
    resp = await client.post("/v1/verifications", headers=_auth(key), json={"credential": "x"})
    return resp.status


async def _list(client: Client, token: str) -> int:
    return (await client.get("/v1/admin/credentials", headers=_auth(token))).status


async def _post(client: Client, token: str, path: str, body: object | None = None,
                ) -> tuple[int, Any]:
    resp = await client.post(f"/v1/admin/credentials/{path}", headers=_auth(token), json=body)
    return resp.status, await resp.json()


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def _until_refused(request: Callable[[], Awaitable[int]]) -> float:
    """Seconds until ``request()`` answers 401 (polled every 20 ms; fails past 5 s)."""
    started = time.monotonic()
    while time.monotonic() - started < 5.0:
        status = await request()
        if status == 401:
            return time.monotonic() - started
        assert 200 == status
        await asyncio.sleep(0.02)
    pytest.fail("still accepted 5 s after the change")


class TestRevocationAtOnce:
    """A disabled credential is refused by running instances at once, or within the bound."""

    async def test_cli_disable_is_honoured_by_a_running_gateway_within_the_bound(
            self, gateway_client: AppFactory, tmp_path: Path) -> None:
        """A key answered (and cached) a moment ago is 401 within 1 s of `clients disable`."""
        tokens = await _tokens(tmp_path)
        client = await gateway_client()
        assert 200 == await _as_client(client, tokens["window"])
        assert 200 == await _list(client, tokens["adam"])
        assert 0 == await _cli("clients", "disable", "window-01", "--reason", "leaked",
                               "--data-dir", str(tmp_path))
        took = await _until_refused(lambda: _as_client(client, tokens["window"]))
        assert took < REVOCATION_BOUND_S
        assert 0 == await _cli("operators", "disable", "adam", "--data-dir", str(tmp_path))
        took = await _until_refused(lambda: _list(client, tokens["adam"]))
        assert took < REVOCATION_BOUND_S
        assert 200 == await _list(client, tokens["alice"])

    async def test_http_disable_is_401_on_the_very_next_request(
            self, gateway_client: AppFactory, tmp_path: Path, audit: MemoryAudit) -> None:
        """An approver's disable clears this instance's cache before it is answered."""
        tokens = await _tokens(tmp_path)
        client = await gateway_client()
        assert 200 == await _as_client(client, tokens["window"])
        assert 200 == await _list(client, tokens["olga"])
        status, body = await _post(client, tokens["adam"], "clients/window-01/disable",
                                   {"reason": "terminal stolen"})
        assert (200, "disabled", "adam", "terminal stolen") == (
            status, body["credential"]["state"], body["credential"]["disabled_by"],
            body["credential"]["disabled_reason"])
        assert 401 == await _as_client(client, tokens["window"])
        status, _ = await _post(client, tokens["adam"], "operators/olga/disable")
        assert 200 == status
        assert 401 == await _list(client, tokens["olga"])
        status, _ = await _post(client, tokens["adam"], "clients/window-01/enable")
        assert 200 == status
        assert 200 == await _as_client(client, tokens["window"])
        changes = [(e.actor_id, e.details["action"], e.outcome)
                   for e in audit.of(EventType.IDENTITY_CHANGE)]
        assert [("adam", "client-disabled", "ok"), ("adam", "operator-disabled", "ok"),
                ("adam", "client-enabled", "ok")] == changes
        assert "terminal stolen" == audit.of(EventType.IDENTITY_CHANGE)[0].details["reason"]

    async def test_another_instance_on_the_same_folder_honours_a_revocation(
            self, gateway_client: AppFactory, tmp_path: Path) -> None:
        """Disabled through instance A, the key is refused by instance B within the bound."""
        tokens = await _tokens(tmp_path)
        first, second = await gateway_client(), await gateway_client()
        assert 200 == await _as_client(second, tokens["window"])
        status, _ = await _post(first, tokens["adam"], "clients/window-01/disable")
        assert 200 == status
        took = await _until_refused(lambda: _as_client(second, tokens["window"]))
        assert took < REVOCATION_BOUND_S

    async def test_nothing_changes_when_the_audit_log_cannot_take_the_record(
            self, gateway_client: AppFactory, tmp_path: Path, audit: MemoryAudit) -> None:
        """No record, no change: 503, and the key still works."""
        tokens = await _tokens(tmp_path)
        client = await gateway_client()
        audit.failing = True
        status, body = await _post(client, tokens["adam"], "clients/window-01/disable")
        assert (503, "Audit log unavailable") == (status, body["title"])
        audit.failing = False
        assert 200 == await _as_client(client, tokens["window"])
        listed = await (await client.get("/v1/admin/credentials/clients/window-01",
                                         headers=_auth(tokens["adam"]))).json()
        assert "active" == listed["state"]


class TestRotation:
    """A new secret once; the old one works for the overlap asked, not a second longer."""

    async def test_rotate_with_overlap(self, gateway_client: AppFactory, tmp_path: Path,
                                       audit: MemoryAudit) -> None:
        """The old key works until the overlap ends, even when cached; the new one at once."""
        tokens = await _tokens(tmp_path)
        clock = FakeClock()
        client = await gateway_client(clock=clock)
        old = tokens["window"]
        assert 200 == await _as_client(client, old)
        resp = await client.post("/v1/admin/credentials/clients/window-01/rotate",
                                 headers=_auth(tokens["adam"]),
                                 json={"overlap": "1h", "expires": "90d"})
        body = await resp.json()
        assert (200, "no-store") == (resp.status, resp.headers["Cache-Control"])
        new = body["secret"]
        assert new.startswith("ecg_c_")
        assert new != old
        until = datetime.fromisoformat(body["credential"]["old_secret_until"])
        assert clock() + timedelta(minutes=59) < until <= clock() + timedelta(hours=1)
        assert 200 == await _as_client(client, old)
        assert 200 == await _as_client(client, new)
        clock.offset = until - datetime.now(UTC) - timedelta(seconds=1)
        assert 200 == await _as_client(client, old)
        clock.offset += timedelta(seconds=1)
        assert 401 == await _as_client(client, old)
        assert 200 == await _as_client(client, new)
        shown = await (await client.get("/v1/admin/credentials",
                                        headers=_auth(tokens["audrey"]))).read()
        records = b"".join(orjson.dumps(e.details) for e in audit.events)
        for secret in (old, new):
            assert secret.encode() not in shown + records
        rotated = audit.of(EventType.IDENTITY_CHANGE)[-1]
        assert ("adam", "client-rotated") == (rotated.actor_id, rotated.details["action"])

    async def test_rotate_without_overlap_refuses_the_old_key_at_once(
            self, gateway_client: AppFactory, tmp_path: Path) -> None:
        """The default: no overlap; the cached old key is refused on the next request."""
        tokens = await _tokens(tmp_path)
        client = await gateway_client()
        assert 200 == await _as_client(client, tokens["window"])
        status, body = await _post(client, tokens["adam"], "clients/window-01/rotate")
        assert (200, None) == (status, body["credential"]["old_secret_until"])
        assert 401 == await _as_client(client, tokens["window"])
        assert 200 == await _as_client(client, str(body["secret"]))

    async def test_cli_rotation_is_honoured_by_a_running_gateway(
            self, gateway_client: AppFactory, tmp_path: Path,
            capsys: pytest.CaptureFixture[str]) -> None:
        """`clients rotate` without overlap: the old key is refused within the bound."""
        tokens = await _tokens(tmp_path)
        client = await gateway_client()
        assert 200 == await _as_client(client, tokens["window"])
        capsys.readouterr()
        assert 0 == await _cli("clients", "rotate", "window-01", "--data-dir", str(tmp_path))
        new = capsys.readouterr().out.strip().splitlines()[-1]
        took = await _until_refused(lambda: _as_client(client, tokens["window"]))
        assert took < REVOCATION_BOUND_S
        assert 200 == await _as_client(client, new)

    async def test_an_approver_rotates_their_own_token_but_no_other_operators(
            self, gateway_client: AppFactory, tmp_path: Path, audit: MemoryAudit) -> None:
        """Another operator's new token would be the caller's: 403, audited, nothing changed."""
        tokens = await _tokens(tmp_path)
        client = await gateway_client()
        status, body = await _post(client, tokens["adam"], "operators/alice/rotate")
        assert (403, "other-operator") == (status, body["reason"])
        assert 200 == await _list(client, tokens["alice"])
        refused = audit.of(EventType.IDENTITY_CHANGE)[-1]
        assert ("refused", "operator-rotate-refused", "alice") == (
            refused.outcome, refused.details["action"], refused.details["name"])
        status, body = await _post(client, tokens["adam"], "operators/adam/rotate",
                                   {"overlap": "10m"})
        assert 200 == status
        assert 200 == await _list(client, str(body["secret"]))
        assert 200 == await _list(client, tokens["adam"])  # inside its overlap


class TestExpiry:
    """An expired secret is refused, checked against the time of every request."""

    async def test_expiry_is_checked_on_every_request_even_when_cached(
            self, gateway_client: AppFactory, tmp_path: Path) -> None:
        """Accepted one second before its end (and cached), refused at its end."""
        end = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
        key = await asyncio.to_thread(add_identity, tmp_path, IdentityKind.CLIENT, "kiosk",
                                      None, expires=end.isoformat())
        clock = FakeClock()
        client = await gateway_client(clock=clock)
        assert 200 == await _as_client(client, key)
        clock.offset = end - datetime.now(UTC) - timedelta(seconds=1)
        assert 200 == await _as_client(client, key)
        clock.offset += timedelta(seconds=1)
        assert 401 == await _as_client(client, key)
        token = await asyncio.to_thread(add_identity, tmp_path, IdentityKind.OPERATOR, "ann",
                                        Role.AUDITOR)
        shown = await (await client.get("/v1/admin/credentials/clients/kiosk",
                                        headers=_auth(token))).json()
        assert ("expired", end) == (shown["state"], datetime.fromisoformat(shown["expires_at"]))

    async def test_rotation_keeps_the_lifetime_unless_told(
            self, gateway_client: AppFactory, tmp_path: Path) -> None:
        """A 30-day key rotated is valid 30 days from the rotation; "never" removes the end."""
        await asyncio.to_thread(add_identity, tmp_path, IdentityKind.CLIENT, "kiosk", None,
                                expires="30d")
        tokens = await _tokens(tmp_path)
        client = await gateway_client()
        status, body = await _post(client, tokens["adam"], "clients/kiosk/rotate")
        assert 200 == status
        ends = datetime.fromisoformat(body["credential"]["expires_at"])
        left = ends - datetime.now(UTC)
        assert timedelta(days=30) - timedelta(minutes=1) < left <= timedelta(days=30)
        status, body = await _post(client, tokens["adam"], "clients/kiosk/rotate",
                                   {"expires": "never"})
        assert (200, None) == (status, body["credential"]["expires_at"])


class TestRolesAndProblems:
    """Who may read and change credentials, and the problem bodies of refusals."""

    async def test_roles(self, gateway_client: AppFactory, tmp_path: Path) -> None:
        """Operators, approvers and auditors read; only approvers change; others 401/403."""
        tokens = await _tokens(tmp_path)
        client = await gateway_client()
        for name in ("olga", "adam", "audrey"):
            assert 200 == await _list(client, tokens[name]), name
        assert 403 == await _list(client, tokens["vera"])
        assert 401 == await _list(client, tokens["window"])
        assert 401 == (await client.get("/v1/admin/credentials")).status
        for name in ("olga", "audrey", "vera"):
            for action in ("disable", "rotate"):
                status, _ = await _post(client, tokens[name], f"clients/window-01/{action}")
                assert 403 == status, (name, action)
        assert 200 == await _as_client(client, tokens["window"])

    async def test_list_shows_state_and_no_secret(self, gateway_client: AppFactory,
                                                  tmp_path: Path) -> None:
        """The list names every credential with its state; no secret, no hash."""
        tokens = await _tokens(tmp_path)
        client = await gateway_client()
        await _post(client, tokens["adam"], "operators/vera/disable")
        resp = await client.get("/v1/admin/credentials?kind=operator",
                                headers=_auth(tokens["audrey"]))
        raw = await resp.read()
        listed = orjson.loads(raw)["credentials"]
        assert [("adam", "approver", "active"), ("alice", "approver", "active"),
                ("audrey", "auditor", "active"), ("olga", "operator", "active"),
                ("vera", "viewer", "disabled")] == [
            (c["name"], c["role"], c["state"]) for c in listed]
        with sqlite3.connect(identity_db_path(tmp_path)) as conn:
            hashes = [r[0] for r in conn.execute("SELECT token_sha256 FROM identities")]
        conn.close()
        for secret in [*tokens.values(), *hashes]:
            assert secret.encode() not in raw

    async def test_problem_bodies(self, gateway_client: AppFactory, tmp_path: Path) -> None:
        """Unknown name 404, twice disabled 409, a bad time 400, a body not JSON 415."""
        tokens = await _tokens(tmp_path)
        client = await gateway_client()
        cases = [("clients/nobody/disable", None, 404, "not-found"),
                 ("robots/window-01/disable", None, 404, "not-found"),
                 ("clients/window-01/rotate", {"expires": "yesterday"}, 400, "invalid"),
                 ("clients/window-01/rotate", {"overlap": "90d"}, 400, "invalid"),
                 ("clients/window-01/rotate", {"expires": 5}, 400, None)]
        for path, body, status, reason in cases:
            got, problem = await _post(client, tokens["adam"], path, body)
            assert (status, reason) == (got, problem.get("reason")), (path, problem)
            assert problem["request_id"]
        assert 200 == (await _post(client, tokens["adam"], "clients/window-01/disable"))[0]
        got, problem = await _post(client, tokens["adam"], "clients/window-01/disable")
        assert (409, "state") == (got, problem["reason"])
        resp = await client.post("/v1/admin/credentials/clients/window-01/enable",
                                 headers={**_auth(tokens["adam"]), "Content-Type": "text/plain"},
                                 data=b"{}")
        assert 415 == resp.status
        assert "application/problem+json" == resp.content_type


class TestMigration:
    """A data folder made before credentials had a life keeps working."""

    async def test_a_first_schema_database_is_migrated_and_its_keys_work(
            self, gateway_client: AppFactory, tmp_path: Path) -> None:
        """Keys stored by the first schema are honoured, and can be disabled."""
        key = "ecg_c_" + "k" * 43
        await asyncio.to_thread(_first_schema_database, tmp_path, key)
        client = await gateway_client()
        assert 200 == await _as_client(client, key)
        assert 0 == await _cli("clients", "disable", "window-01", "--data-dir", str(tmp_path))
        took = await _until_refused(lambda: _as_client(client, key))
        assert took < REVOCATION_BOUND_S


def _first_schema_database(data_dir: Path, key: str) -> None:
    """An identity.db as the gateway wrote it before schema versions existed."""
    conn = sqlite3.connect(identity_db_path(data_dir))
    with conn:
        conn.execute("CREATE TABLE identities (token_sha256 TEXT PRIMARY KEY, kind TEXT NOT "
                     "NULL, name TEXT NOT NULL, role TEXT, created_at TEXT NOT NULL, "
                     "disabled INTEGER NOT NULL DEFAULT 0, UNIQUE (kind, name))")
        conn.execute("INSERT INTO identities (token_sha256, kind, name, role, created_at) "
                     "VALUES (?, 'client', 'window-01', NULL, '2025-01-02T03:04:05+00:00')",
                     (hashlib.sha256(key.encode()).hexdigest(),))
    conn.close()
