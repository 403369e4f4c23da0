"""`clients add` and `operators add`: the secret printed once, only its hash stored, audited."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.__main__ import main
from gateway.identity import identity_db_path

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
