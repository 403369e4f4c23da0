"""``audit verify|query|stats|export`` through argparse, as ``__main__`` will call them."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from gateway.__main__ import main, run_command
from gateway.audit import AuditService, EventType, append_cli_event
from gateway.cli import command_settings
from gateway.cli.audit import register
from tests.audit.conftest import HOLDER_CODE, EventFactory, event

pytestmark = pytest.mark.allow_blocking


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ecert-gateway")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return run_command(args, command_settings(args, os.environ))


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


class TestQueryPapercuts:
    """``ecert-gateway audit query|stats`` through ``main``: paging, limits, refused options."""

    @staticmethod
    def _indexes(out: bytes) -> list[int]:
        return [orjson.loads(line)["index"] for line in out.splitlines()]

    def test_says_how_many_remain_and_how_to_page(
            self, log_dir: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
        """A page shorter than the matches ends with a line on stderr: the count and --after."""
        data = ("--data-dir", str(log_dir))
        assert 0 == main(["audit", "query", *data, "--limit", "10"])
        done = capsysbinary.readouterr()
        assert list(range(10)) == self._indexes(done.out)
        assert (b"ecert-gateway audit query: printed 10 of 25 matching records; 15 more: "
                b"add --after 9 for the next page\n") == done.err
        assert 0 == main(["audit", "query", *data, "--limit", "10", "--after", "9"])
        done = capsysbinary.readouterr()
        assert list(range(10, 20)) == self._indexes(done.out)
        assert (b"ecert-gateway audit query: printed 10 of 15 matching records after index 9; "
                b"5 more: add --after 19 for the next page\n") == done.err
        assert 0 == main(["audit", "query", *data, "--limit", "10", "--after", "19"])
        done = capsysbinary.readouterr()
        assert list(range(20, 25)) == self._indexes(done.out)
        assert b"" == done.err

    def test_counts_only_matching_records(
            self, log_dir: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
        """With a filter, the count is of the records that match it."""
        assert 0 == main(["audit", "query", "--data-dir", str(log_dir), "--partner", "310000",
                          "--limit", "5"])
        done = capsysbinary.readouterr()
        assert 5 == len(done.out.splitlines())
        assert b"printed 5 of 12 matching records; 7 more" in done.err

    def test_reads_the_store_a_page_at_a_time(
            self, log_dir: Path, capsysbinary: pytest.CaptureFixture[bytes],
            monkeypatch: pytest.MonkeyPatch) -> None:
        """A limit above the read size is served by several reads, in order, without gaps."""
        monkeypatch.setattr("gateway.cli.audit._PAGE", 7)
        assert 0 == main(["audit", "query", "--data-dir", str(log_dir), "--limit", "20"])
        done = capsysbinary.readouterr()
        assert list(range(20)) == self._indexes(done.out)
        assert b"printed 20 of 25 matching records; 5 more: add --after 19" in done.err
        assert 0 == main(["audit", "query", "--data-dir", str(log_dir)])
        assert list(range(25)) == self._indexes(capsysbinary.readouterr().out)

    def test_nothing_matching_is_said(
            self, log_dir: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
        """No match: nothing on stdout, and stderr says so."""
        assert 0 == main(["audit", "query", "--data-dir", str(log_dir), "--partner", "999999"])
        done = capsysbinary.readouterr()
        assert (b"", b"ecert-gateway audit query: no matching records\n") == (done.out, done.err)

    @pytest.mark.parametrize("limit", ["0", "-1", "ten"])
    def test_limit_below_one_is_refused(
            self, limit: str, log_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--limit 0 and -1 printed one record; now they are refused, naming the option."""
        with pytest.raises(SystemExit) as stopped:
            main(["audit", "query", "--data-dir", str(log_dir), "--limit", limit])
        done = capsys.readouterr()
        assert 2 == stopped.value.code
        assert "" == done.out
        assert (f"argument --limit: must be a whole number of at least 1, got '{limit}'"
                in done.err)

    def test_unknown_event_type_is_refused_with_the_known_types(
            self, log_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """An unknown --event-type printed nothing and exited 0; now it lists the known ones."""
        with pytest.raises(SystemExit) as stopped:
            main(["audit", "query", "--data-dir", str(log_dir), "--event-type", "verify"])
        err = capsys.readouterr().err
        assert 2 == stopped.value.code
        assert "argument --event-type: invalid choice: 'verify'" in err
        assert all(f"'{t.value}'" in err for t in EventType)
        assert 0 == main(["audit", "query", "--data-dir", str(log_dir),
                          "--event-type", "verification", "--limit", "1"])
        assert '"event_type":"verification"' in capsys.readouterr().out

    @pytest.mark.parametrize(("option", "value", "reason"), [
        ("--from", "yesterday", ("argument --from: not an RFC 3339 time (e.g. "
                                "2026-12-01T00:00:00+08:00 or 2026-11-30T16:00:00Z): 'yesterday'")),
        ("--to", "2026-11-27T00:00:00", "argument --to: '2026-11-27T00:00:00' needs a time zone"),
    ])
    def test_bad_time_names_the_option_and_the_format(
            self, option: str, value: str, reason: str, log_dir: Path,
            capsys: pytest.CaptureFixture[str]) -> None:
        """A raw ``Invalid isoformat string`` no longer reaches the user."""
        for command in ("query", "export"):
            with pytest.raises(SystemExit) as stopped:
                main(["audit", command, "--data-dir", str(log_dir), option, value])
            err = capsys.readouterr().err
            assert 2 == stopped.value.code
            assert reason in err
            assert "isoformat" not in err

    def test_times_with_a_zone_filter(
            self, log_dir: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
        """The records are at 2026-11-26T08:30:01Z, i.e. 16:30:01 in Huzhou."""
        data = ("--data-dir", str(log_dir))
        assert 0 == main(["audit", "query", *data, "--from", "2026-11-26T16:30:00+08:00",
                          "--to", "2026-11-26T08:31:00Z"])
        assert 25 == len(capsysbinary.readouterr().out.splitlines())
        assert 0 == main(["audit", "query", *data, "--from", "2026-11-26T08:31:00Z"])
        assert b"" == capsysbinary.readouterr().out

    def test_stats_bad_day_names_the_option(
            self, log_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """``audit stats --day yesterday`` says which option and the format."""
        with pytest.raises(SystemExit):
            main(["audit", "stats", "--data-dir", str(log_dir), "--day", "yesterday"])
        err = capsys.readouterr().err
        assert "argument --day: not a date YYYY-MM-DD (e.g. 2026-12-01): 'yesterday'" in err
