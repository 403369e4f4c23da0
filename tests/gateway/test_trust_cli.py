"""`ecert-gateway trust ...`: the same dual control, history and signed export on the CLI."""

from __future__ import annotations

import argparse
import base64
import os
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.__main__ import main, run_command
from gateway.audit import RecordFilter, open_store
from gateway.cli import command_settings
from gateway.cli.credentials import TOKEN_ENV
from gateway.cli.trust import register
from gateway.credentials.store import IdentityKind, Role, add_identity, identity_db_path
from gateway.infra.datafolder import create_data_folder
from gateway.infra.signing import load_or_create_key
from gateway.trustlist.service import open_trust_store, version_row
from mocks import Federation
from tests.gateway.conftest import trust_document

pytestmark = pytest.mark.allow_blocking


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["trust", *argv])
    return run_command(args, command_settings(args, os.environ))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A data folder with operators, each token in ``tokens/NAME`` (mode 0600) beside it."""
    create_data_folder(tmp_path)
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    for name, role in (("olga", Role.OPERATOR), ("adam", Role.APPROVER),
                       ("alice", Role.APPROVER), ("vera", Role.VIEWER)):
        (tokens / name).write_text(add_identity(tmp_path, IdentityKind.OPERATOR, name, role)
                                   + "\n", encoding="ascii")
        (tokens / name).chmod(0o600)
    return tmp_path


def _as(folder: Path, name: str) -> tuple[str, ...]:
    """The options that make ``name`` the acting operator: the name and their token."""
    return ("--as", name, "--token-file", str(folder / "tokens" / name))


def _seed(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Put version 3 into the store: export it from a scratch folder, import it here."""
    _export_v3(folder)
    assert 0 == _cli("import", str(folder / "v3.jwt"), "--data-dir", str(folder),
                     *_as(folder, "adam"))
    capsys.readouterr()


def _export_v3(folder: Path) -> None:
    """Write ``v3.jwt``, exported from a scratch folder whose signer ``folder`` trusts."""
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


def test_propose_approve_history_diff(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A CLI proposal applies after two other approvers; history and diff show it; audited."""
    _seed(folder, capsys)
    data = ("--data-dir", str(folder))
    change = orjson.dumps({"kind": "suspend-partner", "region_code": "520500"}).decode()
    assert 1 == _cli("propose", *data, *_as(folder, "vera"), "--change", change)
    assert "vera is viewer" in capsys.readouterr().err
    assert 0 == _cli("propose", *data, *_as(folder, "olga"), "--change", change, "--note", "outage")
    proposal_id = capsys.readouterr().out.strip().splitlines()[-1]
    assert 1 == _cli("approve", proposal_id, *data, *_as(folder, "olga"))
    err = capsys.readouterr().err.strip()
    assert 1 == len(err.splitlines())
    assert 0 == _cli("approve", proposal_id, *data, *_as(folder, "adam"))
    assert "pending (1/2 approvals)" in capsys.readouterr().out
    assert 0 == _cli("approve", proposal_id, *data, *_as(folder, "alice"))
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
    assert 0 == _cli("proposals", *data)
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
    assert 0 == _cli("propose", *data, *_as(folder, "olga"), "--change", change)
    proposal_id = capsys.readouterr().out.strip().splitlines()[-1]
    assert 0 == _cli("approve", proposal_id, *data, *_as(folder, "adam"))
    assert 0 == _cli("approve", proposal_id, *data, *_as(folder, "alice"))
    capsys.readouterr()
    assert 1 == _cli("import", str(folder / "v3.jwt"), *data, *_as(folder, "adam"))
    err = capsys.readouterr().err.strip()
    assert "rollback refused" in err
    assert 1 == len(err.splitlines())


def _audited(folder: Path) -> list[dict[str, Any]]:
    """Every audit record of the data folder, oldest first."""
    store = open_store(folder, None)
    try:
        return [orjson.loads(r) for _, r in store.query(RecordFilter(limit=1000))]
    finally:
        store.close()


def _records(folder: Path, action: str) -> list[dict[str, Any]]:
    """The audit records of one ``details.action``."""
    return [r for r in _audited(folder) if r.get("details", {}).get("action") == action]


class TestCredentials:
    """A CLI write proves which operator runs it: their own token, as over HTTP (issue 19, 14)."""

    @pytest.fixture(autouse=True)
    def _no_token_in_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv(TOKEN_ENV, raising=False)

    _CHANGE = orjson.dumps({"kind": "suspend-partner", "region_code": "520500"}).decode()

    def _propose(self, folder: Path, capsys: pytest.CaptureFixture[str],
                 *acting: str) -> str:
        assert 0 == main(["trust", "propose", "--data-dir", str(folder), *acting,
                          "--change", self._CHANGE])
        return capsys.readouterr().out.strip().splitlines()[-1]

    def test_names_alone_change_nothing(self, folder: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
        """The red team's run: propose as op, approve as ap1 and ap2, no secret: all refused."""
        _seed(folder, capsys)
        data = ("--data-dir", str(folder))
        assert 1 == main(["trust", "propose", *data, "--as", "olga", "--change", self._CHANGE])
        err = capsys.readouterr().err.strip()
        assert 1 == len(err.splitlines())
        assert "--token-file" in err
        assert TOKEN_ENV in err
        proposal_id = self._propose(folder, capsys, *_as(folder, "olga"))
        for name in ("adam", "alice"):
            assert 1 == main(["trust", "approve", proposal_id, *data, "--as", name])
            assert TOKEN_ENV in capsys.readouterr().err
        assert 1 == main(["trust", "reject", proposal_id, *data, "--as", "adam"])
        assert 1 == main(["trust", "import", str(folder / "v3.jwt"), *data, "--as", "adam"])
        capsys.readouterr()
        assert 0 == main(["trust", "show", *data, "--proposal", proposal_id])
        shown = orjson.loads(capsys.readouterr().out)
        assert ("pending", []) == (shown["status"], shown["approvals"])
        assert 0 == main(["trust", "history", *data])
        assert ["3"] == [line.split()[0] for line in capsys.readouterr().out.splitlines()]
        refused = _records(folder, "trust-list-credential-refused")
        assert [("trust propose", "olga"), ("trust approve", "adam"), ("trust approve", "alice"),
                ("trust reject", "adam"), ("trust import", "adam")] == [
            (r["details"]["command"], r["details"]["claimed_as"]) for r in refused]
        assert {("missing", "cli", "cli", "refused")} == {
            (r["details"]["refusal"], r["actor_kind"], r["actor_id"], r["outcome"])
            for r in refused}
        assert proposal_id == refused[1]["details"]["proposal_id"]

    def test_as_must_name_the_tokens_owner(self, folder: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
        """Olga's token with ``--as adam`` is refused, and audited as Olga's."""
        _seed(folder, capsys)
        data = ("--data-dir", str(folder))
        olga = ("--token-file", str(folder / "tokens" / "olga"))
        assert 1 == main(["trust", "propose", *data, *olga, "--as", "adam",
                          "--change", self._CHANGE])
        err = capsys.readouterr().err.strip()
        assert 1 == len(err.splitlines())
        assert "--as adam does not match the token, which is olga's" in err
        proposal_id = self._propose(folder, capsys, *_as(folder, "alice"))
        adam = ("--token-file", str(folder / "tokens" / "adam"))
        assert 1 == main(["trust", "approve", proposal_id, *data, *adam, "--as", "alice"])
        assert "which is adam's" in capsys.readouterr().err
        refused = _records(folder, "trust-list-credential-refused")
        assert [("olga", "adam", "mismatch"), ("adam", "alice", "mismatch")] == [
            (r["actor_id"], r["details"]["claimed_as"], r["details"]["refusal"])
            for r in refused]
        assert 0 == main(["trust", "show", *data, "--proposal", proposal_id])
        assert [] == orjson.loads(capsys.readouterr().out)["approvals"]

    def test_one_token_is_one_approval(self, folder: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
        """The proposer's own token cannot approve; one approver's token counts once."""
        _seed(folder, capsys)
        data = ("--data-dir", str(folder))
        adam = ("--token-file", str(folder / "tokens" / "adam"))
        proposal_id = self._propose(folder, capsys, *adam)
        assert 1 == main(["trust", "approve", proposal_id, *data, *adam])
        assert "dual control" in capsys.readouterr().err
        alice = ("--token-file", str(folder / "tokens" / "alice"))
        assert 0 == main(["trust", "approve", proposal_id, *data, *alice])
        assert "pending (1/2 approvals)" in capsys.readouterr().out
        assert 1 == main(["trust", "approve", proposal_id, *data, *alice])
        assert "already voted" in capsys.readouterr().err
        refused = _records(folder, "trust-list-vote-refused")
        assert [("adam", proposal_id), ("alice", proposal_id)] == [
            (r["actor_id"], r["details"]["proposal_id"]) for r in refused]
        assert 0 == main(["trust", "history", *data])
        assert ["3"] == [line.split()[0] for line in capsys.readouterr().out.splitlines()]

    def test_two_approvers_tokens_apply_the_change(self, folder: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
        """Olga proposes with her token; Adam's and Alice's apply it, recorded as theirs."""
        _seed(folder, capsys)
        data = ("--data-dir", str(folder))
        proposal_id = self._propose(folder, capsys, "--token-file",
                                    str(folder / "tokens" / "olga"))
        for name in ("adam", "alice"):
            assert 0 == main(["trust", "approve", proposal_id, *data,
                              "--token-file", str(folder / "tokens" / name)])
        assert "applied as version 4" in capsys.readouterr().out
        applied = _records(folder, "trust-list-change-applied")
        assert [("alice", ["adam", "alice"])] == [
            (r["actor_id"], r["details"]["approvals"]) for r in applied]

    def test_unknown_disabled_and_foreign_tokens_are_refused(
            self, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """An unknown token, a disabled approver's, a local system's key, an empty file: refused."""
        _seed(folder, capsys)
        data = ("--data-dir", str(folder))
        proposal_id = self._propose(folder, capsys, *_as(folder, "olga"))
        with sqlite3.connect(identity_db_path(folder)) as conn:
            conn.execute("UPDATE identities SET disabled = 1 WHERE name = 'alice'")
        conn.close()
        others = folder / "others"
        others.mkdir()
        (others / "unknown").write_text("ecg_o_" + "A" * 43 + "\n", encoding="ascii")
        (others / "client").write_text(
            add_identity(folder, IdentityKind.CLIENT, "window-01") + "\n", encoding="ascii")
        (others / "empty").write_text("\n", encoding="ascii")
        cases = {str(folder / "tokens" / "alice"): "not an enabled operator's token",
                 str(others / "unknown"): "not an enabled operator's token",
                 str(others / "client"): "not an enabled operator's token",
                 str(others / "empty"): "must hold the token alone",
                 str(others / "missing"): "cannot read the token file"}
        for path, reason in cases.items():
            assert 1 == main(["trust", "approve", proposal_id, *data, "--token-file", path])
            err = capsys.readouterr().err.strip()
            assert 1 == len(err.splitlines()), err
            assert reason in err
        refused = _records(folder, "trust-list-credential-refused")
        assert ["unknown", "unknown", "unknown", "missing", "missing"] == [
            r["details"]["refusal"] for r in refused]
        raw = b"".join(orjson.dumps(r) for r in _audited(folder))
        for name in ("alice", "olga"):
            assert (folder / "tokens" / name).read_text().strip().encode() not in raw
        assert 0 == main(["trust", "show", *data, "--proposal", proposal_id])
        assert [] == orjson.loads(capsys.readouterr().out)["approvals"]

    def test_token_from_the_environment(self, folder: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
        """ECERT_OPERATOR_TOKEN names the actor; ``--token-file`` wins over it."""
        _seed(folder, capsys)
        data = ("--data-dir", str(folder))
        monkeypatch.setenv(TOKEN_ENV, (folder / "tokens" / "olga").read_text().strip())
        proposal_id = self._propose(folder, capsys)
        assert 1 == main(["trust", "approve", proposal_id, *data])
        assert "olga is operator" in capsys.readouterr().err
        monkeypatch.setenv(TOKEN_ENV, (folder / "tokens" / "adam").read_text().strip())
        assert 0 == main(["trust", "approve", proposal_id, *data])
        assert 0 == main(["trust", "approve", proposal_id, *data,
                          "--token-file", str(folder / "tokens" / "alice")])
        assert "applied as version 4" in capsys.readouterr().out
        applied = _records(folder, "trust-list-change-applied")
        assert ["adam", "alice"] == applied[0]["details"]["approvals"]


def test_refusal_in_a_process_of_its_own(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m gateway``: the token from the environment works; none is one line, exit 1."""
    _seed(folder, capsys)
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    argv = [sys.executable, "-m", "gateway", "trust", "propose", "--data-dir", str(folder),
            "--change", TestCredentials._CHANGE]
    refused = subprocess.run(argv, capture_output=True, text=True, env=env, check=False,
                             timeout=120)
    assert 1 == refused.returncode
    assert 1 == len(refused.stderr.strip().splitlines()), refused.stderr
    assert "Traceback" not in refused.stderr
    env[TOKEN_ENV] = (folder / "tokens" / "olga").read_text().strip()
    made = subprocess.run(argv, capture_output=True, text=True, env=env, check=False,
                          timeout=120)
    assert 0 == made.returncode, made.stderr
    assert "proposal by olga recorded" in made.stdout


def test_refused_steps_are_audited(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid change and a rollback import are audited as refused, as over HTTP."""
    _seed(folder, capsys)
    data = ("--data-dir", str(folder))
    bad = orjson.dumps({"kind": "suspend-partner", "region_code": "999999"}).decode()
    assert 1 == _cli("propose", *data, *_as(folder, "olga"), "--change", bad)
    renew = orjson.dumps({"kind": "renew", "next_update": "2099-01-01T00:00:00Z"}).decode()
    assert 0 == _cli("propose", *data, *_as(folder, "olga"), "--change", renew)
    proposal_id = capsys.readouterr().out.strip().splitlines()[-1]
    for name in ("adam", "alice"):
        assert 0 == _cli("approve", proposal_id, *data, *_as(folder, name))
    assert 1 == _cli("import", str(folder / "v3.jwt"), *data, *_as(folder, "adam"))
    assert [("olga", "refused")] == [(r["actor_id"], r["outcome"]) for r in
                                     _records(folder, "trust-list-proposal-refused")]
    imports = _records(folder, "trust-list-import-refused")
    assert [("adam", "rollback")] == [(r["actor_id"], r["details"]["refusal"])
                                      for r in imports]


class TestImportFiles:
    """What ``trust import FILE`` reads: a signed export, in UTF-8; never a plain list."""

    def test_plain_json_list_is_refused_saying_what_import_takes(
            self, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A plain list with Chinese names failed with "'ascii' codec can't decode"."""
        plain = folder / "trust-list.json"
        doc = trust_document(Federation.standard(seed=2, codes=["310000", "520500"]))
        plain.write_text(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode(), encoding="utf-8")
        assert "上海市".encode() in plain.read_bytes()
        assert 1 == main(["trust", "import", str(plain), "--data-dir", str(folder),
                          *_as(folder, "adam")])
        err = capsys.readouterr().err
        assert [(f"ecert-gateway trust import: {plain} holds plain JSON, not a signed export: "
                "trust import takes a trustlist+jwt made by `ecert-gateway trust export` (or "
                "GET /v1/admin/trust-list/export) on the exporting gateway; to change this "
                "list, use `trust propose`")] == err.splitlines()
        assert [("adam", "format")] == [(r["actor_id"], r["details"]["refusal"]) for r in
                                        _records(folder, "trust-list-import-refused")]
        assert 0 == main(["trust", "history", "--data-dir", str(folder)])
        assert "" == capsys.readouterr().out

    def test_signed_export_with_bom_or_in_a_jws_object_is_imported(
            self, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A UTF-8 BOM and CRLF (an editor's save) or ``{"jws": ...}`` (the HTTP body) work."""
        _export_v3(folder)
        token = (folder / "v3.jwt").read_text(encoding="utf-8").strip()
        saved = folder / "saved.jwt"
        saved.write_bytes(b"\xef\xbb\xbf" + token.encode() + b"\r\n")
        wrapped = folder / "wrapped.json"
        wrapped.write_text(orjson.dumps({"jws": token, "note": "上海市导出"}).decode(),
                           encoding="utf-8")
        data = ("--data-dir", str(folder))
        assert 0 == main(["trust", "import", str(saved), *data, *_as(folder, "adam")])
        assert "version 3 imported" in capsys.readouterr().out
        assert 0 == main(["trust", "import", str(wrapped), *data, *_as(folder, "adam")])
        assert "version 3 is already the current list" in capsys.readouterr().out


class TestTrustList:
    """``trust list`` shows the trust list; ``trust proposals`` lists proposals."""

    @staticmethod
    def _store_document(folder: Path) -> dict[str, Any]:
        """Store a list where Bijie is suspended, one key revoked and one window over."""
        doc = trust_document(Federation.standard(seed=2, codes=["310000", "520500"]))
        partners = {p["region_code"]: p for p in doc["partners"]}
        partners["520500"]["status"] = "suspended"
        shanghai = {a["use"]: a for a in partners["310000"]["anchors"]}
        shanghai["licence-signing"].update(status="revoked", revoked_at="2026-03-01T00:00:00Z",
                                           revocation_reason="superseded")
        shanghai["request-signing"]["valid_until"] = "2026-02-01T00:00:00Z"
        store = open_trust_store(folder, None)
        store.add_version(version_row(doc, at=datetime.now(UTC), source="start-up", actor="t"),
                          None)
        store.close()
        return doc

    @staticmethod
    def _rows(out: str) -> list[list[str]]:
        """The table's rows, cells split at runs of two or more spaces."""
        lines = out.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("REGION"))
        table = lines[start:lines.index("", start)]
        return [re.split(r" {2,}", line.strip()) for line in table]

    def test_list_shows_partners_and_anchors(self, folder: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
        """One row per anchor: region, name, state, use, kid, anchor state, window, note."""
        doc = self._store_document(folder)
        assert 0 == main(["trust", "list", "--data-dir", str(folder)])
        out = capsys.readouterr().out
        assert out.startswith(f"trust list version {doc['version']}, issued ")
        rows = self._rows(out)
        assert ["REGION", "NAME", "STATE", "USE", "KID", "ANCHOR", "VALID FROM", "VALID UNTIL",
                "NOTE"] == rows[0]
        anchors = [a for p in doc["partners"] for a in p["anchors"]]
        assert len(anchors) == len(rows) - 1
        kids = {a["kid"] for a in anchors}
        by_kid = {next(cell for cell in row if cell in kids): row for row in rows[1:]}
        assert kids == set(by_kid)
        shanghai = next(p for p in doc["partners"] if p["region_code"] == "310000")
        first = shanghai["anchors"][0]
        assert ["310000", "上海市", "active", first["use"], first["kid"]] == \
            by_kid[first["kid"]][:5]
        revoked = next(a for a in shanghai["anchors"] if a["use"] == "licence-signing")
        assert [revoked["use"], revoked["kid"], "revoked"] == by_kid[revoked["kid"]][:3]
        assert "revoked at 2026-03-01T00:00:00Z (superseded)" == by_kid[revoked["kid"]][-1]
        over = next(a for a in shanghai["anchors"] if a["use"] == "request-signing")
        assert ["2026-02-01T00:00:00Z", "window over"] == by_kid[over["kid"]][-2:]
        bijie = next(p for p in doc["partners"] if p["region_code"] == "520500")
        assert ["520500", "毕节市", "suspended"] == by_kid[bijie["anchors"][0]["kid"]][:3]
        assert out.endswith(f"2 partner(s) (1 active, 1 suspended), {len(anchors)} anchor(s)\n")

    def test_list_aligns_chinese_names(self, folder: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
        """Names take two columns a character on a terminal; the columns after them align."""
        self._store_document(folder)
        assert 0 == main(["trust", "list", "--data-dir", str(folder)])
        lines = capsys.readouterr().out.splitlines()
        header = next(line for line in lines if line.startswith("REGION"))
        column = header.index("STATE")
        for line in lines:
            if line[:6] in ("310000", "520500"):  # 上海市 / 毕节市: 3 characters, 6 columns
                assert column - 3 == line.index("active" if "310000" in line else "suspended")

    def test_empty_store_says_so(self, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Before the first start there is no list; that is said, not an error."""
        assert 0 == main(["trust", "list", "--data-dir", str(folder)])
        assert capsys.readouterr().out.startswith("no trust list stored yet")

    def test_proposals_moved_and_old_option_points_there(
            self, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """``trust proposals [--status S]`` lists proposals; ``trust list --status`` says so."""
        self._store_document(folder)
        data = ("--data-dir", str(folder))
        change = orjson.dumps({"kind": "resume-partner", "region_code": "520500"}).decode()
        assert 0 == main(["trust", "propose", *data, *_as(folder, "olga"), "--change", change])
        proposal_id = capsys.readouterr().out.strip().splitlines()[-1]
        assert 0 == main(["trust", "proposals", *data, "--status", "pending"])
        [line] = capsys.readouterr().out.splitlines()
        assert line.startswith(f"{proposal_id}  pending ")
        assert 0 == main(["trust", "list", *data])
        assert proposal_id not in capsys.readouterr().out
        assert 1 == main(["trust", "list", *data, "--status", "pending"])
        assert [("ecert-gateway trust list: `trust list` shows the trust list itself; proposals "
                "are listed by `trust proposals --status pending`")
                ] == capsys.readouterr().err.splitlines()


def test_export_in_sm2_imports_where_its_key_is_trusted(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``trust export --alg SM2SM3`` signs with the SM2 trust-list key
    (``keys/trust-list.sm2.key``); a folder trusting that key imports the export."""
    scratch = folder / "scratch"
    scratch.mkdir()
    doc = trust_document(Federation.standard(seed=2, codes=["310000", "520500"]))
    store = open_trust_store(scratch, None)
    store.add_version(version_row(doc, at=datetime.now(UTC), source="start-up", actor="t"), None)
    store.close()
    out = folder / "v3-sm2.jwt"
    assert 0 == _cli("export", "--data-dir", str(scratch), "--alg", "SM2SM3", "--out", str(out))
    signer = load_or_create_key(scratch, "trust-list", kid_prefix="330500-tl", alg="SM2SM3")
    assert f"(signed by {signer.kid})" in capsys.readouterr().out
    header = orjson.loads(base64.urlsafe_b64decode(out.read_text().split(".")[0] + "=="))
    assert ("SM2SM3", signer.kid) == (header["alg"], header["kid"])
    (folder / "trust-list-signers.json").write_bytes(orjson.dumps({"keys": [signer.public_jwk]}))
    assert 0 == _cli("import", str(out), "--data-dir", str(folder), *_as(folder, "adam"))
    assert f"version 3 imported (signed by {signer.kid})" in capsys.readouterr().out
