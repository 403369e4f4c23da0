"""``audit verify|query|stats|export`` through argparse, as ``__main__`` will call them."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from gateway.audit import AuditService, append_cli_event
from gateway.cli.audit import register
from tests.audit.conftest import HOLDER_CODE, EventFactory, event

pytestmark = pytest.mark.allow_blocking


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ecert-gateway")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code


@pytest.fixture
def log_dir(data_dir: Path, make_event: EventFactory) -> Path:
    """A data folder whose log holds 25 records and a checkpoint."""

    async def fill() -> None:
        async with AuditService(data_dir=data_dir) as svc:
            await asyncio.gather(
                *(svc.append(make_event(partner_region=f"3{i % 2}0000")) for i in range(25))
            )

    asyncio.run(fill())
    return data_dir


class TestVerify:
    """audit verify."""

    def test_intact_log(self, log_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """An untouched log verifies and exits 0."""
        assert 0 == _run("audit", "verify", "--data-dir", str(log_dir))
        assert "ok: 25 entries" in capsys.readouterr().out

    def test_tampered_log(self, log_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A changed record makes it exit 1 naming the index, on one line."""
        conn = sqlite3.connect(log_dir / "audit.db")
        conn.execute("DROP TRIGGER audit_entries_no_update")
        (record,) = conn.execute("SELECT record FROM audit_entries WHERE idx = 11").fetchone()
        conn.execute(
            "UPDATE audit_entries SET record = ? WHERE idx = 11",
            (record.replace(b"window-01", b"window-02"),),
        )
        conn.commit()
        conn.close()
        assert 1 == _run("audit", "verify", "--data-dir", str(log_dir), "--quiet")
        err = capsys.readouterr().err
        assert "index 11" in err
        assert 1 == len(err.strip().splitlines())

    def test_external_checkpoint_beyond_log(
        self, log_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A checkpoint kept elsewhere that the log no longer reaches fails verification."""
        from gateway.audit._keys import load_signing_key
        from trust.note import Checkpoint, NoteSigner

        signer = NoteSigner("huzhou.ecert-gateway/audit", load_signing_key(log_dir))
        note = Checkpoint(signer.name, 40, bytes(32)).sign(signer)
        saved = tmp_path / "cp.txt"
        saved.write_text(note)
        code = _run("audit", "verify", "--data-dir", str(log_dir), "--checkpoint", str(saved))
        assert 1 == code
        assert "index 25" in capsys.readouterr().err

    def test_missing_log(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """No log is a one-line failure."""
        assert 1 == _run("audit", "verify", "--data-dir", str(tmp_path))
        assert "no audit log" in capsys.readouterr().err

    def test_progress_bar_on_a_terminal(self, log_dir: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
        """On a terminal a long log's check draws a bar (tqdm) to its end; ``--quiet``
        draws nothing."""
        import sys

        import gateway.cli.audit as audit_cli
        from tests.terminal import Terminal

        monkeypatch.setattr(audit_cli, "PROGRESS_FROM", 10)  # 25 entries are long here
        quiet, shown = Terminal(), Terminal()
        monkeypatch.setattr(sys, "stderr", quiet.stream)
        assert 0 == _run("audit", "verify", "--data-dir", str(log_dir), "--quiet")
        monkeypatch.setattr(sys, "stderr", shown.stream)
        assert 0 == _run("audit", "verify", "--data-dir", str(log_dir))
        quiet.close()
        shown.close()
        assert [] == quiet.frames()
        bars = [text for _, text in shown.frames()]
        assert bars
        assert all(text.startswith("verifying:") for text in bars)
        assert "100%" in bars[-1]
        assert "25/25" in bars[-1]


class TestRead:
    """audit query, stats and export."""

    def test_query(self, log_dir: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
        """Query prints matching records as JSON lines."""
        assert 0 == _run("audit", "query", "--data-dir", str(log_dir), "--partner", "310000")
        lines = capsysbinary.readouterr().out.splitlines()
        assert 12 == len(lines)
        assert all(orjson.loads(x)["record"]["partner_region"] == "310000" for x in lines)

    def test_stats(self, log_dir: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
        """Stats counts a day's records per partner, matter and outcome."""
        assert 0 == _run("audit", "stats", "--data-dir", str(log_dir), "--day", "2026-11-26")
        body = orjson.loads(capsysbinary.readouterr().out)
        assert 25 == body["total"]
        assert 2 == len(body["counts"])

    def test_export(self, log_dir: Path, tmp_path: Path) -> None:
        """Export writes CSV with masks and no raw personal data."""
        out = tmp_path / "audit.csv"
        assert 0 == _run("audit", "export", "--data-dir", str(log_dir), "--out", str(out))
        text = out.read_text(encoding="utf-8")
        assert 25 == len(list(csv.DictReader(io.StringIO(text))))
        assert HOLDER_CODE not in text


def test_stats_count_days_in_china_standard_time(tmp_path: Path,
                                                  capsysbinary: pytest.CaptureFixture[bytes]
                                                  ) -> None:
    """An act at 17:00 UTC on the 26th is counted on the 27th, Huzhou's calendar day."""
    late = event(at=datetime(2026, 11, 26, 17, 0, tzinfo=UTC))
    append_cli_event(tmp_path, late)
    capsysbinary.readouterr()
    assert 0 == _run("audit", "stats", "--data-dir", str(tmp_path), "--day", "2026-11-26")
    assert 0 == orjson.loads(capsysbinary.readouterr().out)["total"]
    assert 0 == _run("audit", "stats", "--data-dir", str(tmp_path), "--day", "2026-11-27")
    assert 1 == orjson.loads(capsysbinary.readouterr().out)["total"]
