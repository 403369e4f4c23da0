"""The trust-list workflow: one service for ``/v1/admin/`` and ``ecert-gateway trust``.

The same steps, accepted and refused, taken through the admin API on one data
folder and through the CLI on another, seeded alike, leave the same audit
records, but for who asked (``operator`` or ``cli``), when, and what depends on
when (proposal ids, the digest of a version made at approval time). Every time
the service records is its clock's: the gateway's, or the system's for the CLI.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.__main__ import main
from gateway.audit import RecordFilter, open_store
from gateway.audit.event import EventType
from gateway.credentials.store import IdentityKind, Role, add_identity
from gateway.infra.datafolder import create_data_folder
from gateway.infra.signing import load_or_create_key
from gateway.settings import load_settings
from gateway.trustlist.service import open_trust_store, version_row
from gateway.web.app import create_app
from mocks import Federation
from tests.fakes import MemoryAudit
from tests.gateway.conftest import AppFactory, trust_document
from trust import export_signed

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]
OPERATORS = {"olga": Role.OPERATOR, "adam": Role.APPROVER, "alice": Role.APPROVER,
             "pete": Role.APPROVER}
SUSPEND = {"kind": "suspend-partner", "region_code": "520500"}
UNKNOWN_PARTNER = {"kind": "suspend-partner", "region_code": "999999"}
RENEW = {"kind": "renew", "next_update": "2099-01-01T00:00:00Z"}


@dataclass(frozen=True)
class Step:
    """One step an operator takes: ``propose`` (changes), ``approve``/``reject`` (a
    proposal, by its place among the proposals made), ``import`` (an export's name)."""

    what: str
    who: str
    proposal: int = 0
    changes: tuple[dict[str, Any], ...] = ()
    export: str = ""


STEPS = (
    Step("propose", "adam", changes=(SUSPEND,)),
    Step("approve", "adam", proposal=0),   # refused: the author (dual control)
    Step("approve", "alice", proposal=0),
    Step("approve", "alice", proposal=0),  # refused: already voted
    Step("approve", "pete", proposal=0),   # applied as version 4
    Step("propose", "olga", changes=(UNKNOWN_PARTNER,)),  # refused: no such partner
    Step("propose", "olga", changes=(RENEW,)),
    Step("reject", "alice", proposal=1),
    Step("approve", "pete", proposal=1),   # refused: not pending
    Step("import", "adam", export="v2"),   # refused: rollback
    Step("import", "adam", export="v9"),
    Step("import", "adam", export="v9"),   # the current list already: nothing recorded
)
HTTP_STATUS = (201, 403, 200, 409, 200, 422, 201, 200, 409, 409, 201, 200)
CLI_STATUS = (0, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0)


def _seed(folder: Path, document: dict[str, Any], signer: dict[str, Any]) -> dict[str, str]:
    """A data folder holding ``document`` as its list, trusting ``signer``; the tokens."""
    create_data_folder(folder)
    tokens = {name: add_identity(folder, IdentityKind.OPERATOR, name, role)
              for name, role in OPERATORS.items()}
    store = open_trust_store(folder, None)
    try:
        store.add_version(version_row(document, at=datetime.now(UTC), source="start-up",
                                      actor="test"), None)
    finally:
        store.close()
    (folder / "trust-list-signers.json").write_bytes(orjson.dumps({"keys": [signer]}))
    return tokens


def _operator_changes(folder: Path) -> list[dict[str, Any]]:
    """The ``operator-change`` records of a data folder's audit log, oldest first."""
    store = open_store(folder, None)
    try:
        records = [orjson.loads(r) for _, r in store.query(RecordFilter(limit=1000))]
    finally:
        store.close()
    return [r for r in records if r["event_type"] == "operator-change"]


def _comparable(records: list[dict[str, Any]], proposal_ids: list[str]) -> list[dict[str, Any]]:
    """The records without what differs by nature: who asked, when, and what depends on when."""
    names = {pid: f"<proposal {n}>" for n, pid in enumerate(proposal_ids)}
    pattern = re.compile("|".join(map(re.escape, names)))
    out = []
    for record in records:
        text = pattern.sub(lambda m: names[m.group(0)], orjson.dumps(record).decode())
        kept = {k: v for k, v in orjson.loads(text).items()
                if k not in ("event_id", "time", "actor_kind")}
        if kept["details"]["action"] == "trust-list-change-applied":
            # The applied version's issued_at is the approval time; so is its digest.
            assert re.fullmatch("[0-9a-f]{64}", kept["details"].pop("sha256"))
        out.append(kept)
    return out


async def _by_http(client: Client, tokens: dict[str, str],
                   exports: dict[str, str]) -> tuple[list[int], list[str]]:
    """Take the steps through ``/v1/admin/``: the statuses and the proposal ids made."""
    statuses: list[int] = []
    proposals: list[str] = []
    for step in STEPS:
        auth = {"Authorization": f"Bearer {tokens[step.who]}"}
        if step.what == "propose":
            resp = await client.post("/v1/admin/proposals", headers=auth,
                                     json={"changes": list(step.changes), "note": "test"})
            if resp.status == 201:
                proposals.append((await resp.json())["id"])
        elif step.what == "import":
            resp = await client.post("/v1/admin/trust-list/import", headers=auth,
                                     data=exports[step.export])
        else:
            key = "comment" if step.what == "approve" else "reason"
            resp = await client.post(
                f"/v1/admin/proposals/{proposals[step.proposal]}/{step.what}", headers=auth,
                json={key: "seen"})
        statuses.append(resp.status)
    return statuses, proposals


def _by_cli(folder: Path, capsys: pytest.CaptureFixture[str]) -> tuple[list[int], list[str]]:
    """Take the steps with ``ecert-gateway trust``: the exit statuses and the proposal ids."""
    statuses: list[int] = []
    proposals: list[str] = []
    for step in STEPS:
        acting = ["--data-dir", str(folder), "--token-file", str(folder / "tokens" / step.who)]
        if step.what == "propose":
            change = orjson.dumps(list(step.changes)).decode()
            argv = ["trust", "propose", *acting, "--change", change, "--note", "test"]
        elif step.what == "import":
            argv = ["trust", "import", str(folder / f"{step.export}.jwt"), *acting]
        else:
            option = "--comment" if step.what == "approve" else "--reason"
            argv = ["trust", step.what, proposals[step.proposal], *acting, option, "seen"]
        statuses.append(main(argv))
        out = capsys.readouterr().out
        if step.what == "propose" and statuses[-1] == 0:
            proposals.append(out.strip().splitlines()[-1])
    return statuses, proposals


async def test_cli_and_http_write_the_same_audit_records(
        aiohttp_client: ClientFactory, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Accepted and refused proposals, votes and imports: the same records either way."""
    document = trust_document(Federation.standard(seed=2, codes=["310000", "520500"]))
    by_http, by_cli, exporter = tmp_path / "http", tmp_path / "cli", tmp_path / "exporter"

    def prepare() -> tuple[dict[str, str], dict[str, str]]:
        exporter.mkdir()
        key = load_or_create_key(exporter, "trust-list", kid_prefix="330500-tl")
        exports = {f"v{n}": export_signed({**document, "version": n}, key.sign) for n in (2, 9)}
        http_tokens = _seed(by_http, document, key.public_jwk)
        cli_tokens = _seed(by_cli, document, key.public_jwk)
        (by_cli / "tokens").mkdir()
        for name, token in cli_tokens.items():
            (by_cli / "tokens" / name).write_text(token + "\n", encoding="ascii")
        for name, token in exports.items():
            (by_cli / f"{name}.jwt").write_text(token + "\n", encoding="ascii")
        return http_tokens, exports

    http_tokens, exports = await asyncio.to_thread(prepare)
    client = await aiohttp_client(create_app(load_settings({}, None, {"data_dir": by_http})))
    http_statuses, http_proposals = await _by_http(client, http_tokens, exports)
    # The CLI is a process of its own: run it off the test's event loop.
    cli_statuses, cli_proposals = await asyncio.to_thread(_by_cli, by_cli, capsys)
    assert (list(HTTP_STATUS), list(CLI_STATUS)) == (http_statuses, cli_statuses)

    http_records = await asyncio.to_thread(_operator_changes, by_http)
    cli_records = await asyncio.to_thread(_operator_changes, by_cli)
    assert ({"operator"}, {"cli"}) == ({r["actor_kind"] for r in http_records},
                                       {r["actor_kind"] for r in cli_records})
    assert [
        "trust-list-proposal-created", "trust-list-vote-refused", "trust-list-proposal-approved",
        "trust-list-vote-refused", "trust-list-change-applied", "trust-list-proposal-refused",
        "trust-list-proposal-created", "trust-list-proposal-rejected", "trust-list-vote-refused",
        "trust-list-import-refused", "trust-list-imported",
    ] == [r["details"]["action"] for r in http_records]
    assert _comparable(http_records, http_proposals) == _comparable(cli_records, cli_proposals)


@pytest.mark.allow_blocking
def test_cli_refusal_stands_when_the_log_cannot_take_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With the audit log unavailable, a refused vote is still refused (a warning line says
    it was not recorded) and an accepted one changes nothing: the same workflow as over HTTP."""
    document = trust_document(Federation.standard(seed=2, codes=["310000", "520500"]))
    tokens = _seed(tmp_path, document, load_or_create_key(
        tmp_path, "trust-list", kid_prefix="330500-tl").public_jwk)
    token_files = tmp_path / "tokens"
    token_files.mkdir()
    for name, token in tokens.items():
        (token_files / name).write_text(token + "\n", encoding="ascii")

    def trust(command: str, *args: str, who: str) -> int:
        return main(["trust", command, *args, "--data-dir", str(tmp_path),
                     "--token-file", str(token_files / who)])

    assert 0 == trust("propose", "--change", orjson.dumps(SUSPEND).decode(), who="adam")
    proposal_id = capsys.readouterr().out.strip().splitlines()[-1]
    # The folder now says its audit log is in PostgreSQL, and no DSN is given.
    (tmp_path / "audit-backend").write_text("postgres\n", encoding="utf-8")
    assert 1 == trust("approve", proposal_id, who="adam")
    warning, refusal = capsys.readouterr().err.splitlines()
    assert warning.startswith("warning: the refusal could not be audited: ")
    assert refusal.startswith("ecert-gateway trust approve: the author of a proposal may not")
    assert 1 == trust("approve", proposal_id, who="alice")
    assert "audit log is in PostgreSQL" in capsys.readouterr().err
    (tmp_path / "audit-backend").unlink()
    assert 0 == main(["trust", "show", "--proposal", proposal_id, "--data-dir", str(tmp_path)])
    shown = orjson.loads(capsys.readouterr().out)
    assert ("pending", []) == (shown["status"], shown["approvals"])
    assert ["trust-list-proposal-created"] == [
        r["details"]["action"] for r in _operator_changes(tmp_path)]


async def test_the_injected_clock_dates_every_step(
        gateway_client: AppFactory, tmp_path: Path, audit: MemoryAudit) -> None:
    """The gateway's clock, not the system's, dates the start-up version, proposals, votes,
    the applied version and their audit records."""
    at = (datetime.now(UTC) - timedelta(minutes=30)).replace(microsecond=0)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    client = await gateway_client(clock=lambda: at)
    tokens = {name: await asyncio.to_thread(add_identity, tmp_path, IdentityKind.OPERATOR,
                                            name, role)
              for name, role in OPERATORS.items()}

    def auth(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[name]}"}

    resp = await client.post("/v1/admin/proposals", headers=auth("olga"),
                             json={"changes": [SUSPEND]})
    proposal = await resp.json()
    for name in ("adam", "alice"):
        resp = await client.post(f"/v1/admin/proposals/{proposal['id']}/approve",
                                 headers=auth(name))
    applied = await resp.json()
    assert ("applied", stamp, [stamp, stamp]) == (
        applied["status"], applied["created_at"], [a["at"] for a in applied["approvals"]])
    versions = (await (await client.get("/v1/admin/trust-list/versions",
                                        headers=auth("olga"))).json())["versions"]
    assert [(3, stamp), (4, stamp)] == [(v["version"], v["created_at"]) for v in versions]
    changes = audit.of(EventType.OPERATOR_CHANGE) + audit.of(EventType.TRUST_LIST_LOADED)
    assert 4 == len(changes)
    assert {at} == {e.at for e in changes}
