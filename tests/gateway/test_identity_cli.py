"""`clients` and `operators`: secrets printed once, only hashes stored, every change audited."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.__main__ import main
from gateway.credentials.store import identity_db_path, lookup_token
from gateway.infra.datafolder import create_data_folder

pytestmark = pytest.mark.allow_blocking


@pytest.fixture
def data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A data folder made by ``ecert-gateway init`` (the commands refuse any other path)."""
    assert 0 == main(["init", "--data-dir", str(tmp_path / "data")])
    capsys.readouterr()
    return tmp_path / "data"


def test_clients_add_prints_key_once_and_stores_its_hash(
        data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The key is the last line printed; the store holds its SHA-256, not the key."""
    assert 0 == main(["clients", "add", "window-01", "--data-dir", str(data_dir)])
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert key.startswith("ecg_c_")
    raw = identity_db_path(data_dir).read_bytes()
    assert key.encode() not in raw
    with sqlite3.connect(identity_db_path(data_dir)) as conn:
        rows = conn.execute("SELECT kind, name FROM identities").fetchall()
    assert [("client", "window-01")] == rows


def test_duplicate_name_fails_with_one_line(data_dir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Adding the same name twice exits non-zero with a one-line reason."""
    assert 0 == main(["clients", "add", "w", "--data-dir", str(data_dir)])
    capsys.readouterr()
    assert 1 == main(["clients", "add", "w", "--data-dir", str(data_dir)])
    err = capsys.readouterr().err.strip()
    assert 1 == len(err.splitlines())
    assert "already exists" in err


def test_operators_add_is_audited(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Adding an auditor writes an identity-change record to the audit log."""
    assert 0 == main(["operators", "add", "li", "--role", "auditor", "--data-dir",
                      str(data_dir)])
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert token.startswith("ecg_o_")
    assert 0 == main(["audit", "query", "--data-dir", str(data_dir)])
    out = capsys.readouterr().out
    assert "identity-change" in out
    assert token not in out


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _audit_records(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    assert 0 == main(["audit", "query", "--data-dir", str(data_dir), "--limit", "1000"])
    return [orjson.loads(line)["record"]
            for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def _hashes(data_dir: Path) -> list[str]:
    with sqlite3.connect(identity_db_path(data_dir)) as conn:
        found = [r[0] for r in conn.execute(
            "SELECT token_sha256 FROM identities UNION SELECT token_sha256 FROM retired_secrets")]
    conn.close()
    return found


class TestCredentialLifecycle:
    """`list`, `disable`, `enable`, `rotate`, `expire` for local systems and operators."""

    @pytest.fixture(autouse=True)
    def _data_folder(self, tmp_path: Path) -> None:
        """Each test's tmp_path is an instance's data folder (``ecert-gateway init``)."""
        create_data_folder(tmp_path)

    def test_list_prints_a_table_and_json_and_never_a_secret(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Name, kind, role, created, expires, state; no secret and no hash, in either form."""
        data = ("--data-dir", str(tmp_path))
        secrets = [_run(capsys, "operators", "add", "olga", "--role", "approver", *data)[1],
                   _run(capsys, "operators", "add", "vera", "--role", "viewer",
                        "--expires", "2099-01-31T00:00:00Z", *data)[1]]
        assert 0 == _run(capsys, "operators", "disable", "olga", "--reason", "left", *data)[0]
        secrets.append(_run(capsys, "operators", "rotate", "vera", "--overlap", "1h",
                            "--expires", "2099-01-31T00:00:00Z", *data)[1])
        secrets = [s.strip().splitlines()[-1] for s in secrets]
        code, table, _ = _run(capsys, "operators", "list", *data)
        assert 0 == code
        lines = table.splitlines()
        assert ["NAME", "KIND", "ROLE", "CREATED", "EXPIRES", "STATE"] == lines[0].split()[:6]
        assert ["olga", "operator", "approver"] == lines[1].split()[:3]
        assert ("never", "disabled") == tuple(lines[1].split()[4:6])
        assert ["vera", "operator", "viewer"] == lines[2].split()[:3]
        assert "active" == lines[2].split()[5]
        code, listed, _ = _run(capsys, "operators", "list", "--json", *data)
        assert 0 == code
        assert listed.endswith("\n")
        rows = orjson.loads(listed)
        assert [("olga", "disabled", "left", "cli", None), ("vera", "active", None, None,
                                                            "2099-01-31T00:00:00Z")] == [
            (r["name"], r["state"], r["disabled_reason"], r["disabled_by"], r["expires_at"])
            for r in rows]
        assert rows[1]["old_secret_until"] is not None
        for secret in [*secrets, *_hashes(tmp_path)]:
            assert secret not in table + listed
        assert "(no clients in this data folder)" in _run(capsys, "clients", "list", *data)[1]

    def test_every_change_is_audited_and_never_with_a_secret(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """add, disable, enable, rotate, expire each write an identity-change record."""
        data = ("--data-dir", str(tmp_path))
        outputs = [
            _run(capsys, "clients", "add", "w1", "--expires", "90d", *data),
            _run(capsys, "clients", "disable", "w1", "--reason", "lost", *data),
            _run(capsys, "clients", "enable", "w1", *data),
            _run(capsys, "clients", "rotate", "w1", "--overlap", "2h", "--expires", "30d", *data),
            _run(capsys, "clients", "expire", "w1", "--expires", "never", *data),
            _run(capsys, "clients", "disable", "w1", *data),
            _run(capsys, "clients", "disable", "w1", *data),
        ]
        assert [0, 0, 0, 0, 0, 0, 1] == [code for code, _, _ in outputs]
        secrets = [outputs[0][1].strip().splitlines()[-1], outputs[3][1].strip().splitlines()[-1]]
        assert all(s.startswith("ecg_c_") for s in secrets)
        records = [r for r in _audit_records(tmp_path, capsys)
                   if r["event_type"] == "identity-change"]
        assert [("client-added", "ok"), ("client-disabled", "ok"), ("client-enabled", "ok"),
                ("client-rotated", "ok"), ("client-expiry-set", "ok"),
                ("client-disabled", "ok"), ("client-disable-refused", "refused")] == [
            (r["details"]["action"], r["outcome"]) for r in records]
        assert {"cli"} == {r["actor_id"] for r in records}
        assert "lost" == records[1]["details"]["reason"]
        assert records[3]["details"]["old_secret_until"] is not None
        assert records[4]["details"]["expires_at"] is None
        raw = orjson.dumps(records).decode()
        for secret in [*secrets, *_hashes(tmp_path)]:
            assert secret not in raw

    def test_rotation_replaces_the_secret(self, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
        """Without overlap the old token stops at once; with one it works until it ends."""
        data = ("--data-dir", str(tmp_path))
        first = _run(capsys, "operators", "add", "adam", "--role", "approver", *data)[1]
        first = first.strip().splitlines()[-1]
        code, out, _ = _run(capsys, "operators", "rotate", "adam", *data)
        second = out.strip().splitlines()[-1]
        assert (0, True) == (code, second.startswith("ecg_o_"))
        assert "the old secret no longer works" in out
        assert lookup_token(tmp_path, first) is None
        assert "adam" == getattr(lookup_token(tmp_path, second), "name", None)
        code, out, _ = _run(capsys, "operators", "rotate", "adam", "--overlap", "1h", *data)
        third = out.strip().splitlines()[-1]
        now = datetime.now(UTC)
        assert lookup_token(tmp_path, second, at=now + timedelta(minutes=59)) is not None
        assert lookup_token(tmp_path, second, at=now + timedelta(minutes=61)) is None
        assert lookup_token(tmp_path, third, at=now + timedelta(days=365)) is not None
        # a rotation without overlap ends the earlier overlap too
        assert 0 == _run(capsys, "operators", "rotate", "adam", *data)[0]
        assert lookup_token(tmp_path, second) is None
        assert lookup_token(tmp_path, third) is None

    def test_expiry_ends_a_token(self, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
        """A token with an expiry works until that second, not at it."""
        data = ("--data-dir", str(tmp_path))
        code, out, _ = _run(capsys, "operators", "add", "li", "--role", "auditor",
                            "--expires", "2098-06-01T12:00:00+08:00", *data)
        assert 0 == code
        token = out.strip().splitlines()[-1]
        assert "expires 2098-06-01T04:00:00Z" in out
        end = datetime(2098, 6, 1, 4, tzinfo=UTC)
        assert lookup_token(tmp_path, token, at=end - timedelta(seconds=1)) is not None
        assert lookup_token(tmp_path, token, at=end) is None
        assert 0 == _run(capsys, "operators", "expire", "li", "--expires", "never", *data)[0]
        assert lookup_token(tmp_path, token, at=end) is not None

    @pytest.mark.parametrize("argv", [
        ["clients", "disable", "nobody"], ["clients", "enable", "nobody"],
        ["clients", "rotate", "nobody"], ["clients", "expire", "nobody", "--expires", "1d"],
        ["operators", "disable", "nobody"], ["operators", "rotate", "nobody"],
        ["operators", "enable", "window-01"]])
    def test_unknown_names_fail_with_one_line(self, tmp_path: Path, argv: list[str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
        """An unknown name (or one of the other kind) exits 1 with one line naming it."""
        assert 0 == main(["clients", "add", "window-01", "--data-dir", str(tmp_path)])
        capsys.readouterr()
        code, out, err = _run(capsys, *argv, "--data-dir", str(tmp_path))
        assert (1, "") == (code, out)
        assert 1 == len(err.strip().splitlines())
        assert f"named {argv[2]!r}" in err

    @pytest.mark.parametrize(("argv", "message"), [
        (["clients", "add", "w2", "--expires", "yesterday"], "neither a duration"),
        (["clients", "add", "w2", "--expires", "2020-01-01T00:00:00Z"], "not in the future"),
        (["clients", "add", "w2", "--expires", "2099-01-01T00:00:00"], "with an offset"),
        (["clients", "rotate", "w1", "--overlap", "31d"], "longer than 30 days"),
        (["clients", "rotate", "w1", "--overlap", "soon"], "neither a duration"),
        (["clients", "expire", "w1", "--expires", "0s"], "not in the future"),
        (["clients", "enable", "w1"], "is not disabled")])
    def test_bad_values_fail_with_one_line(self, tmp_path: Path, argv: list[str], message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
        """A time that is not one, in the past, or an overlap too long: exit 1, one line."""
        assert 0 == main(["clients", "add", "w1", "--data-dir", str(tmp_path)])
        key = capsys.readouterr().out.strip().splitlines()[-1]
        code, _, err = _run(capsys, *argv, "--data-dir", str(tmp_path))
        assert 1 == code
        assert 1 == len(err.strip().splitlines())
        assert message in err
        assert lookup_token(tmp_path, key) is not None

    def test_a_folder_that_is_not_a_data_folder_is_refused(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`list` and the changes do not make an empty instance of a mistyped path."""
        for argv in (["clients", "list"], ["operators", "disable", "x"]):
            code, _, err = _run(capsys, *argv, "--data-dir", str(tmp_path / "typo"))
            assert 1 == code
            assert "does not exist" in err
        assert not (tmp_path / "typo").exists()


class TestMigration:
    """An identity database made by the first schema is migrated when opened."""

    @pytest.fixture(autouse=True)
    def _data_folder(self, tmp_path: Path) -> None:
        """Each test's tmp_path is an instance's data folder (``ecert-gateway init``)."""
        create_data_folder(tmp_path)

    def test_first_schema_database_is_migrated_additively(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Its keys and disabled rows stand; an older gateway's query still reads the table."""
        enabled, disabled = "ecg_c_" + "a" * 43, "ecg_o_" + "b" * 43
        conn = sqlite3.connect(identity_db_path(tmp_path))
        with conn:
            conn.execute(_FIRST_SCHEMA)
            conn.executemany(
                "INSERT INTO identities (token_sha256, kind, name, role, created_at, disabled) "
                "VALUES (?, ?, ?, ?, '2025-01-02T03:04:05+00:00', ?)",
                [(_sha(enabled), "client", "window-01", None, 0),
                 (_sha(disabled), "operator", "olga", "approver", 1)])
        conn.close()
        code, out, _ = _run(capsys, "clients", "list", "--json", "--data-dir", str(tmp_path))
        assert 0 == code
        assert [("window-01", "active", "2025-01-02T03:04:05Z", None)] == [
            (r["name"], r["state"], r["created_at"], r["expires_at"]) for r in orjson.loads(out)]
        code, out, _ = _run(capsys, "operators", "list", "--json", "--data-dir", str(tmp_path))
        assert [("olga", "disabled")] == [(r["name"], r["state"]) for r in orjson.loads(out)]
        assert "window-01" == getattr(lookup_token(tmp_path, enabled), "name", None)
        assert lookup_token(tmp_path, disabled) is None
        with sqlite3.connect(identity_db_path(tmp_path)) as conn:
            assert 1 == conn.execute("PRAGMA user_version").fetchone()[0]
            # the query of the gateway before schema 1, for an instance not yet upgraded
            old_reader = conn.execute(
                "SELECT kind, name, role FROM identities WHERE token_sha256 = ? AND disabled = 0",
                (_sha(enabled),)).fetchall()
        conn.close()
        assert [("client", "window-01", None)] == old_reader
        assert 0 == _run(capsys, "operators", "enable", "olga", "--data-dir", str(tmp_path))[0]
        assert "olga" == getattr(lookup_token(tmp_path, disabled), "name", None)

    def test_a_database_from_a_newer_gateway_is_refused(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A schema this code does not know is not written to: one line, exit 1."""
        assert 0 == main(["clients", "add", "w1", "--data-dir", str(tmp_path)])
        with sqlite3.connect(identity_db_path(tmp_path)) as conn:
            conn.execute("PRAGMA user_version = 99")
        conn.close()
        code, _, err = _run(capsys, "clients", "list", "--data-dir", str(tmp_path))
        assert 1 == code
        assert "schema version 99" in err


_FIRST_SCHEMA = """
CREATE TABLE identities (
    token_sha256 TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT,
    created_at TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    UNIQUE (kind, name)
)
"""
"""The identity table as the gateway made it before schema versions."""


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
