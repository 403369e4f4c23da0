"""`ecert-gateway trust ...`: the same dual control, history and signed export on the CLI."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.audit import RecordFilter, open_store
from gateway.cli.trust import register
from gateway.identity import IdentityKind, Role, add_identity
from gateway.signing import load_or_create_key
from gateway.trustlists import open_trust_store, version_row
from mocks import Federation
from tests.gateway.conftest import trust_document

pytestmark = pytest.mark.allow_blocking


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["trust", *argv])
    return int(args.func(args))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A data folder with operators and a stored list (version 3, seeded via import)."""
    for name, role in (("olga", Role.OPERATOR), ("adam", Role.APPROVER),
                       ("alice", Role.APPROVER), ("vera", Role.VIEWER)):
        add_identity(tmp_path, IdentityKind.OPERATOR, name, role)
    return tmp_path


def _seed(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Put version 3 into the store: export it from a scratch folder, import it here."""
    scratch = folder / "scratch"
    scratch.mkdir()
    doc = trust_document(Federation.standard(seed=2, codes=["310000", "520500"]))
    store = open_trust_store(scratch, None)
    store.add_version(version_row(doc, at=datetime.now(UTC), source="start-up", actor="t"), None)
    store.close()
    assert 0 == _cli("export", "--data-dir", str(scratch), "--out", str(folder / "v3.jwt"))
    # This folder trusts the scratch folder's trust-list signer.
    signer = load_or_create_key(scratch, "trust-list", kid_prefix="330500-tl")
    jwks: dict[str, Any] = {"keys": [signer.public_jwk]}
    (folder / "trust-list-signers.json").write_bytes(orjson.dumps(jwks))
    assert 0 == _cli("import", str(folder / "v3.jwt"), "--data-dir", str(folder), "--as", "adam")
    capsys.readouterr()


def test_propose_approve_history_diff(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A CLI proposal applies after two other approvers; history and diff show it; audited."""
    _seed(folder, capsys)
    data = ("--data-dir", str(folder))
    change = orjson.dumps({"kind": "suspend-partner", "region_code": "520500"}).decode()
    assert 1 == _cli("propose", *data, "--as", "vera", "--change", change)
    assert "vera is viewer" in capsys.readouterr().err
    assert 0 == _cli("propose", *data, "--as", "olga", "--change", change, "--note", "outage")
    proposal_id = capsys.readouterr().out.strip().splitlines()[-1]
    assert 1 == _cli("approve", proposal_id, *data, "--as", "olga")
    err = capsys.readouterr().err.strip()
    assert 1 == len(err.splitlines())
    assert 0 == _cli("approve", proposal_id, *data, "--as", "adam")
    assert "pending (1/2 approvals)" in capsys.readouterr().out
    assert 0 == _cli("approve", proposal_id, *data, "--as", "alice")
    assert "applied as version 4" in capsys.readouterr().out
    assert 0 == _cli("history", *data)
    lines = capsys.readouterr().out.strip().splitlines()
    assert ["3", "4"] == [line.split()[0] for line in lines]
    assert 0 == _cli("diff", *data)
    diff = orjson.loads(capsys.readouterr().out)
    assert [["active", "suspended"]] == [c["fields"]["status"] for c in diff["changes"]
                                         if c["op"] == "partner-changed"]
    assert 0 == _cli("show", *data, "--proposal", proposal_id)
    assert "applied" == orjson.loads(capsys.readouterr().out)["status"]
    assert 0 == _cli("list", *data)
    assert proposal_id in capsys.readouterr().out
    store = open_store(folder, None)
    try:
        records = [orjson.loads(r) for _, r in store.query(RecordFilter(limit=100))]
    finally:
        store.close()
    actions = [r.get("details", {}).get("action") for r in records]
    assert "trust-list-change-applied" in actions


def test_import_refuses_rollback(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Importing an export older than the current list fails with a one-line reason."""
    _seed(folder, capsys)
    data = ("--data-dir", str(folder))
    change = orjson.dumps({"kind": "renew", "next_update": "2099-01-01T00:00:00Z"}).decode()
    assert 0 == _cli("propose", *data, "--as", "olga", "--change", change)
    proposal_id = capsys.readouterr().out.strip().splitlines()[-1]
    assert 0 == _cli("approve", proposal_id, *data, "--as", "adam")
    assert 0 == _cli("approve", proposal_id, *data, "--as", "alice")
    capsys.readouterr()
    assert 1 == _cli("import", str(folder / "v3.jwt"), *data, "--as", "adam")
    err = capsys.readouterr().err.strip()
    assert "rollback refused" in err
    assert 1 == len(err.splitlines())
