"""Retention: a log of several kinds and ages is verified, pruned under dual control through
the CLI, and verified again, on SQLite and on a real PostgreSQL; proofs of kept and pruned
entries are checked against one checkpoint by the RFC 6962 verifier of test_audit_http."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from aiohttp import web

from gateway.__main__ import main
from gateway.audit import AuditService, EventType
from gateway.audit.routes import setup_routes
from gateway.credentials.store import IdentityKind, IdentityStore, Role, add_identity
from gateway.infra.datafolder import create_data_folder
from gateway.settings import RECORD_KINDS, RETENTION_MIN_DAYS, SettingsError, load_settings
from gateway.web.appkeys import AUDIT_KEY, IDENTITIES_KEY, SETTINGS_KEY
from gateway.web.middleware import request_middleware
from tests.audit.conftest import EventFactory
from tests.audit.test_audit_http import open_checkpoint_note, path_root

Place = tuple[Path, str | None]

NOW = datetime.now(UTC)

# (kind, age in days): the defaults keep verifications and partner queries 366 days,
# operator changes 1827.
AGES = [
    (EventType.VERIFICATION, 400), (EventType.PARTNER_QUERY, 500), (EventType.VERIFICATION, 367),
    (EventType.OPERATOR_CHANGE, 400), (EventType.VERIFICATION, 200),
    (EventType.PARTNER_QUERY, 365), (EventType.VERIFICATION, 1), (EventType.OPERATOR_CHANGE, 2000),
]
PRUNED = {0, 1, 2, 7}
"""The indices older than their kind's policy."""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    """Each engine: SQLite in the data folder, or a fresh PostgreSQL database."""
    data_dir = tmp_path / "data"
    create_data_folder(data_dir)
    if request.param == "sqlite":
        return data_dir, None
    return data_dir, str(request.getfixturevalue("postgres_dsn"))


def _opts(place: Place) -> list[str]:
    data_dir, dsn = place
    return ["--data-dir", str(data_dir), *(["--postgres-dsn", dsn] if dsn else [])]


def _marker(i: int) -> str:
    return f"retention-marker-{i:03d}-zq"


@pytest.fixture
def tokens(place: Place, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Path]:
    """Token files of two auditors (ann, ben) and an approver (olga)."""
    files = {}
    for name, role in (("ann", "auditor"), ("ben", "auditor"), ("olga", "approver")):
        assert 0 == main(["operators", "add", name, "--role", role, *_opts(place)])
        token = capsys.readouterr().out.strip().splitlines()[-1]
        files[name] = tmp_path / f"{name}.token"
        files[name].write_text(token)
    return files


def _fill(place: Place, make_event: EventFactory) -> tuple[int, list[bytes]]:
    """The log of AGES (with an injected clock for the writer) after what is there (the
    operators' records); returns the index of its first entry and the record bytes."""
    data_dir, dsn = place
    fixed_ms = int(NOW.timestamp() * 1000)

    async def fill() -> tuple[int, list[bytes]]:
        service = AuditService(data_dir=data_dir, postgres_dsn=dsn, clock_ms=lambda: fixed_ms,
                               checkpoint_interval_s=3600)
        await service.start()
        try:
            base = service.tree_size
            for i, (kind, days) in enumerate(AGES):
                assert base + i == await service.append(make_event(
                    event_type=kind, at=NOW - timedelta(days=days), use_cause=_marker(i),
                    outcome="ok"))
            await service.publish()
            records = []
            for i in range(len(AGES)):
                proof = await service.entry(base + i)
                assert proof is not None
                records.append(proof.leaf)
            return base, records
        finally:
            await service.stop()

    return asyncio.run(fill())


def _verify(place: Place, capsys: pytest.CaptureFixture[str]) -> str:
    assert 0 == main(["audit", "verify", "--quiet", *_opts(place)])
    return capsys.readouterr().out.strip()


def _prune(place: Place, token: Path, *args: str) -> int:
    return main(["audit", "prune", *args, "--token-file", str(token), *_opts(place)])


def _proofs(place: Place, indices: list[int]) -> list[tuple[Any, ...]]:
    """(proof, vkey) of each index, from a restarted service (latest checkpoint)."""
    data_dir, dsn = place

    async def read() -> list[tuple[Any, ...]]:
        service = AuditService(data_dir=data_dir, postgres_dsn=dsn, checkpoint_interval_s=3600)
        await service.start()
        try:
            await service.publish()
            return [(await service.entry(i), service.vkey()) for i in indices]
        finally:
            await service.stop()

    return asyncio.run(read())


def _raw_files(place: Place) -> Iterator[bytes]:
    data_dir, _ = place
    for path in data_dir.glob("audit.db*"):
        if path.name != "audit.db-writelock":  # the writers' empty flock file
            yield path.read_bytes()


def _pg_table_file(dsn: str) -> bytes | None:
    """The bytes of audit_entries' heap file, after a checkpoint; None when unreadable."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        folder = conn.execute("SHOW data_directory").fetchone()
        relation = conn.execute("SELECT pg_relation_filepath('audit_entries')").fetchone()
    assert folder is not None
    assert relation is not None
    try:
        return (Path(str(folder[0])) / str(relation[0])).read_bytes()
    except OSError:
        return None


def _sql(place: Place, statement: str) -> None:
    data_dir, dsn = place
    if dsn is None:
        db = sqlite3.connect(data_dir / "audit.db")
        try:
            with db:
                db.execute(statement)
        finally:
            db.close()
        return
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement)


def _refused(place: Place, statement: str) -> str:
    with pytest.raises((sqlite3.DatabaseError, psycopg.Error)) as caught:
        _sql(place, statement)
    return str(caught.value)


@pytest.mark.allow_blocking
def test_prune_keeps_the_log_verifiable(place: Place, tokens: dict[str, Path],
                                        make_event: EventFactory,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Verified before; proposed by one auditor, refused to her own approval, approved by
    another; the bodies older than the policy are gone from the database, the others
    intact; verified after; kept and pruned entries prove against the same checkpoint."""
    base, records = _fill(place, make_event)
    capsys.readouterr()
    total = base + len(AGES)
    assert f"ok: {total} entries, 1 checkpoints verified" == _verify(place, capsys)

    assert 0 == _prune(place, tokens["ann"], "--propose")
    proposal = orjson.loads(capsys.readouterr().out)
    assert {"verification": 2, "partner-query": 1, "operator-change": 1} == {
        k: v for k, v in proposal["entries"].items() if v}
    assert "pending" == proposal["status"]

    assert 1 == _prune(place, tokens["ann"], "--approve", str(proposal["id"]))
    assert "approved by an auditor other than its proposer" in capsys.readouterr().err
    assert 1 == _prune(place, tokens["olga"], "--approve", str(proposal["id"]))
    assert "this needs one of ['auditor']" in capsys.readouterr().err
    for blob in _raw_files(place):  # nothing pruned yet
        assert _marker(0).encode() in blob

    # A connection stays open meanwhile, as a running gateway's would: the WAL is not
    # removed at the last close, so what the prune leaves in it is scanned too.
    holder = sqlite3.connect(place[0] / "audit.db") if place[1] is None else None
    if holder is not None:
        holder.execute("SELECT COUNT(*) FROM audit_entries").fetchall()
    assert 0 == _prune(place, tokens["ben"], "--approve", str(proposal["id"]))
    done = orjson.loads(capsys.readouterr().out)
    assert ("pruned", 4, "ben") == (done["status"], done["pruned"], done["approver"])
    assert 1 == _prune(place, tokens["ben"], "--approve", str(proposal["id"]))
    assert "already approved" in capsys.readouterr().err

    # Bodies: the pruned are gone from every file of the SQLite database; the kept intact.
    dsn = place[1]
    if dsn is None:
        blobs = list(_raw_files(place))
        assert len(blobs) >= 2  # the database and its WAL (truncated by the prune)
        for i in range(len(AGES)):
            present = any(_marker(i).encode() in blob for blob in blobs)
            assert present == (i not in PRUNED), i
    if holder is not None:
        holder.close()

    out = _verify(place, capsys)
    assert out.startswith(f"ok: {total + 6} entries (4 pruned"), out

    if dsn is not None:
        with psycopg.connect(dsn) as conn:
            found = conn.execute("SELECT idx - %s, record FROM audit_entries WHERE idx >= %s",
                                 (base, base)).fetchall()
        rows: dict[int, bytes] = {int(i): bytes(r) for i, r in found}
        for i in range(len(AGES)):
            assert (bytes(rows[i]) == b"") == (i in PRUNED)
            if i not in PRUNED:
                assert records[i] == bytes(rows[i])
        table = _pg_table_file(dsn)
        if table is not None:  # a private server: its files can be read
            for i in range(len(AGES)):
                assert (_marker(i).encode() in table) == (i not in PRUNED), i

    # Proofs: one checkpoint, both kinds of entry, checked from RFC 6962 alone.
    proofs = _proofs(place, [base + i for i in range(len(AGES))])
    checkpoints = {proof.checkpoint for proof, _ in proofs}
    assert 1 == len(checkpoints)
    for i, (proof, vkey) in enumerate(proofs):
        _, size, root = open_checkpoint_note(proof.checkpoint, vkey)
        leaf = hashlib.sha256(b"\x00" + records[i]).digest()
        assert (i in PRUNED) == proof.pruned
        if proof.pruned:
            assert leaf == proof.leaf_hash  # the kept hash is the hash of the deleted record
            assert b"" == proof.leaf
        else:
            assert records[i] == proof.leaf
        assert root == path_root(base + i, size, leaf, proof.inclusion)

    # The query says which were pruned, with their leaf hash.
    assert 0 == main(["audit", "query", *_opts(place), "--limit", str(total)])
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [base + i for i in sorted(PRUNED)] == [
        line["index"] for line in lines if line.get("pruned")]

    # The triggers: nothing else may change.
    newest = base + AGES.index((EventType.VERIFICATION, 1))
    # (an empty blob and a shorter hash written so that both engines read them alike)
    for statement in (
            f"UPDATE audit_entries SET record = substr(record, 1, 0) WHERE idx = {newest}",  # noqa: S608 - an index of the test's
            f"DELETE FROM audit_entries WHERE idx = {base}",  # noqa: S608 - an index of the test's
            f"UPDATE audit_entries SET leaf_hash = substr(leaf_hash, 1, 1) WHERE idx = {base}",  # noqa: S608 - an index of the test's
            "DELETE FROM audit_prune_grants"):
        assert "append-only" in _refused(place, statement)


@pytest.mark.allow_blocking
def test_refuses_a_cut_off_newer_than_the_policy(place: Place, tokens: dict[str, Path],
                                                make_event: EventFactory,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A --before later than a chosen kind's policy is refused, naming the kind; so is a
    prune of a kind whose policy was lengthened after the proposal."""
    base, _ = _fill(place, make_event)
    capsys.readouterr()
    before = (NOW - timedelta(days=300)).isoformat()
    assert 1 == _prune(place, tokens["ann"], "--propose", "--before", before)
    assert "records are kept" in capsys.readouterr().err
    assert 1 == _prune(place, tokens["ann"], "--propose", "--before", before,
                       "--kind", "verification")
    assert "verification records are kept 366 days" in capsys.readouterr().err

    assert 0 == _prune(place, tokens["ann"], "--propose", "--kind", "verification")
    proposal = orjson.loads(capsys.readouterr().out)
    config = place[0].parent / "gateway.toml"
    config.write_text("[audit.retention]\nverification = 1000\n")
    assert 1 == main(["audit", "prune", "--approve", str(proposal["id"]), "--token-file",
                      str(tokens["ben"]), "--config", str(config), *_opts(place)])
    assert "verification records are kept 1000 days" in capsys.readouterr().err
    assert f"ok: {base + len(AGES) + 4} entries, " in _verify(place, capsys)

    # Whoever owns the database can add a grant of their own and empty a recent record
    # under it (the triggers stop mistakes, not owners): audit verify names the grant.
    newest = base + AGES.index((EventType.VERIFICATION, 1))
    pid = int(proposal["id"])
    forged = ("INSERT INTO audit_prune_grants (proposal_idx, event_type, end_idx, cutoff_ms,"
              " approval_idx, created_ms) VALUES ({0}, 'verification', 1000000, 9000000000000,"
              " {0}, 0)")
    _sql(place, forged.format(pid))
    _sql(place, f"UPDATE audit_entries SET record = substr(record, 1, 0) WHERE idx = {newest}")  # noqa: S608 - the test's index
    assert 1 == main(["audit", "verify", "--quiet", *_opts(place)])
    assert (f"prune grant of proposal {proposal['id']}: entry {proposal['id']} is not its"
            " approval") in capsys.readouterr().err


# -- over HTTP ------------------------------------------------------------------------------


async def test_http_propose_approve_and_pruned_entry(
        aiohttp_client: Any, data_dir: Path, make_event: EventFactory,
        blocking_guard: Any) -> None:
    """/v1/audit/prunes: auditors only; the proposer may not approve; a cut-off newer than
    the policy is 422; once approved, a pruned entry answers ``pruned`` with its leaf hash
    and an inclusion proof that leads to the signed root."""
    tokens = {name: await asyncio.to_thread(add_identity, data_dir, IdentityKind.OPERATOR,
                                            name, role)
              for name, role in (("ann", Role.AUDITOR), ("ben", Role.AUDITOR),
                                 ("olga", Role.APPROVER))}
    service = AuditService(data_dir=data_dir, checkpoint_interval_s=3600)
    await service.start()
    old = await service.append(make_event(at=NOW - timedelta(days=400), outcome="ok"))
    kept = await service.append(make_event(at=NOW - timedelta(days=10), outcome="ok"))
    app = web.Application(middlewares=[request_middleware])
    identities = IdentityStore(data_dir)
    await identities.open()
    app[IDENTITIES_KEY] = identities
    app[AUDIT_KEY] = service
    app[SETTINGS_KEY] = load_settings({}, None, {"data_dir": data_dir})
    setup_routes(app)
    client = await aiohttp_client(app)
    try:
        def auth(name: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {tokens[name]}"}

        forbidden = await client.post("/v1/audit/prunes", json={}, headers=auth("olga"))
        assert 403 == forbidden.status
        too_new = await client.post("/v1/audit/prunes", headers=auth("ann"), json={
            "kinds": ["verification"], "before": (NOW - timedelta(days=300)).isoformat()})
        assert (422, "policy") == (too_new.status, (await too_new.json())["reason"])
        made = await client.post("/v1/audit/prunes", headers=auth("ann"),
                                 json={"kinds": ["verification"]})
        assert 201 == made.status
        proposal = (await made.json())["proposal"]
        assert {"verification": 1} == proposal["entries"]
        own = await client.post(f"/v1/audit/prunes/{proposal['id']}/approve",
                                headers=auth("ann"))
        assert (403, "own-proposal") == (own.status, (await own.json())["reason"])
        approved = await client.post(f"/v1/audit/prunes/{proposal['id']}/approve",
                                     headers=auth("ben"))
        assert 200 == approved.status, await approved.text()
        assert 1 == (await approved.json())["pruned"]
        listed = await (await client.get("/v1/audit/prunes", headers=auth("ann"))).json()
        assert ["pruned"] == [p["status"] for p in listed["proposals"]]
        one = await (await client.get(f"/v1/audit/prunes/{proposal['id']}",
                                      headers=auth("ann"))).json()
        assert ("pruned", "ben", 1) == (one["proposal"]["status"], one["proposal"]["approver"],
                                        one["proposal"]["pruned"])
        assert 404 == (await client.get(f"/v1/audit/prunes/{kept}", headers=auth("ann"))).status

        await service.publish()
        vkey = service.vkey()
        answers = {}
        for index in (old, kept):
            response = await client.get(f"/v1/audit/entries/{index}", headers=auth("ann"))
            assert 200 == response.status
            answers[index] = await response.json()
        assert answers[old]["checkpoint"] == answers[kept]["checkpoint"]
        assert answers[old]["pruned"] is True
        assert "record" not in answers[old]
        assert "pruned" not in answers[kept]
        for index, body in answers.items():
            _, size, root = open_checkpoint_note(body["checkpoint"], vkey)
            leaf = (base64.b64decode(body["leaf_hash"]) if body.get("pruned")
                    else hashlib.sha256(b"\x00" + base64.b64decode(body["leaf"])).digest())
            proof = [base64.b64decode(h) for h in body["inclusion"]]
            assert root == path_root(index, size, leaf, proof)
        records = await (await client.get("/v1/audit/records",
                                          headers=auth("ann"))).json()
        assert {"index": old, "record": None, "pruned": True} == records["records"][old]
        export = await client.get("/v1/audit/export.csv", headers=auth("ann"))
        assert 200 == export.status
        lines = (await export.text()).splitlines()
        assert lines[1 + old].startswith(f"{old},,")  # the index alone
    finally:
        if blocking_guard is not None:
            blocking_guard.deactivate()
        await identities.close()
        await service.stop()


# -- the policy -----------------------------------------------------------------------------


class TestRetentionSettings:
    """``[audit.retention]``: days per record kind, typed and validated when settings load."""

    def test_defaults_cover_every_kind(self) -> None:
        """Every record kind has a default at or above the minimum; the settings' list of
        kinds is the audit log's."""
        settings = load_settings({}, None, {"data_dir": "/a"})
        assert {t.value for t in EventType} == set(RECORD_KINDS)
        assert set(RECORD_KINDS) == set(settings.audit.retention)
        assert min(settings.audit.retention.values()) >= RETENTION_MIN_DAYS == 184

    def test_a_kind_is_set_others_keep_their_default(self) -> None:
        """A kind given takes its value; the minimum itself is accepted."""
        settings = load_settings({}, "[audit.retention]\nverification = 184\n"
                                     "partner-query = 400\n", {"data_dir": "/a"})
        assert (184, 400, 1827) == (settings.audit.retention["verification"],
                                    settings.audit.retention["partner-query"],
                                    settings.audit.retention["operator-change"])

    @pytest.mark.parametrize(("toml", "message"), [
        ("[audit.retention]\nverification = 183\n",
         "audit.retention.verification: 183 days is under the minimum of 184"),
        ("[audit.retention]\npartner-query = 180\n",
         "audit.retention.partner-query: 180 days is under the minimum of 184"),
        ("[audit.retention]\nverifications = 400\n",
         "unknown record kind 'audit.retention.verifications'"),
        ("[audit.retention]\nverification = '400'\n",
         "audit.retention.verification: expected an integer"),
        ("[audit]\nretention = 400\n", "audit.retention: expected a table"),
    ])
    def test_refused_by_name(self, toml: str, message: str) -> None:
        """Under the legal minimum (six months: up to 184 days), an unknown kind, a value
        that is not a whole number of days: refused, naming the setting."""
        with pytest.raises(SettingsError, match=re.escape(message)):
            load_settings({}, toml, {"data_dir": "/a"})
