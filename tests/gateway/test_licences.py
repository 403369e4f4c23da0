"""Huzhou's licence library: row checks, ``licences import|demo``, holder keys, backends."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import logging
import os
import random
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

import gateway.licences.store as licences_module
from gateway.__main__ import run_command
from gateway.cli import command_settings
from gateway.cli import licences as cli
from gateway.infra.datafolder import create_data_folder
from gateway.infra.redislink import redis_client
from gateway.licences.store import (
    HolderKeyring,
    LicenceRecordError,
    LicenceState,
    LicenceStoreError,
    PostgresLicenceStore,
    SqliteLicenceStore,
    licence_db_path,
    open_repository,
    open_store,
    record_from_mapping,
)
from gateway.partner.checks import RedisReplayCache
from gateway.settings import load_settings
from mocks import make_resident_id
from tests.conftest import REPO
from tests.gateway.test_partner_api import (
    HOLDER,
    ORG_HOLDER,
    OTHER_HOLDER,
    import_rows,
    licence_row,
)
from tests.terminal import Terminal

THIRD_HOLDER = make_resident_id(["330523"], random.Random(11))
"""A holder the other rows of the coalescing test never have."""

_CSV_COLUMNS = ("identifier", "type_code", "type_name", "number", "issuer_name", "issuer_code",
                "issue_date", "holder_name", "holder_code", "holder_code_type", "valid_from",
                "valid_until", "matters", "fields", "state")


def run(*argv: str) -> int:
    """Run ``ecert-gateway licences ...`` through the module's own parser."""
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["licences", *argv])
    return run_command(args, command_settings(args, os.environ))


def write_jsonl(path: Path, rows: Sequence[dict[str, Any] | str]) -> Path:
    """One row a line; strings are written as they are (broken lines)."""
    lines = [r if isinstance(r, str) else orjson.dumps(r).decode() for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """The same rows as CSV (fields as JSON, matters joined by |)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_CSV_COLUMNS)
    writer.writeheader()
    for row in rows:
        cells = dict(row)
        cells["fields"] = orjson.dumps(row["fields"]).decode() if row.get("fields") else ""
        cells["matters"] = "|".join(row.get("matters", []))
        writer.writerow(cells)
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def bad_rows() -> list[dict[str, Any] | str]:
    """Good rows on lines 1 and 7, bad ones between them."""
    wrong_check = licence_row(2)
    wrong_check["identifier"] = wrong_check["identifier"][:-1] + (
        "0" if wrong_check["identifier"][-1] != "0" else "1")
    bad_issuer = licence_row(3)
    bad_issuer["issuer_code"] = "113305004570633270"
    bad_id = licence_row(4, holder=HOLDER[:-1] + ("0" if HOLDER[-1] != "0" else "1"))
    bad_date = licence_row(5)
    bad_date["valid_until"] = "2026-02-30"
    return [licence_row(1), wrong_check, bad_issuer, bad_id, bad_date, "{not json",
            licence_row(6, holder=OTHER_HOLDER)]


class TestRecords:
    """record_from_mapping checks one row."""

    def test_good_row(self) -> None:
        """A good row keeps every lic key; 长期 is null."""
        row = licence_row(1)
        row["valid_until"] = None
        record = record_from_mapping(row)
        assert LicenceState.VALID is record.state
        assert record.lic["valid_until"] is None
        assert HOLDER == record.lic["holder_code"]

    @pytest.mark.parametrize(("change", "message"), [
        ({"state": "cancelled"}, "state"),
        ({"holder_code_type": "11"}, "holder_code_type"),
        ({"type_code": "11100000000013338W011"}, "type_code differs"),
        ({"valid_from": "2030-01-01", "valid_until": "2029-01-01"}, "before"),
        ({"colour": "red"}, "unknown keys"),
        ({"number": ""}, "number"),
    ])
    def test_bad_rows(self, change: dict[str, Any], message: str) -> None:
        """Each problem is named, without quoting holder data."""
        row = {**licence_row(1), **change}
        with pytest.raises(LicenceRecordError, match=message) as caught:
            record_from_mapping(row)
        assert HOLDER not in str(caught.value)


class TestImport:
    """``licences import``: bad rows reported by line, good rows kept, idempotent."""

    def test_bad_rows_reported_with_line_numbers_good_rows_kept(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str],
            caplog: pytest.LogCaptureFixture) -> None:
        """Lines 2-6 are rejected with their numbers; lines 1 and 7 are stored."""
        caplog.set_level(logging.DEBUG)
        path = write_jsonl(tmp_path / "batch.jsonl", bad_rows())
        assert 1 == run("import", str(path), "--data-dir", str(tmp_path / "data"))
        err = capsys.readouterr().err
        for line, reason in [(2, "check character"), (3, "issuer_code"), (4, "身份证号"),
                             (5, "valid_until"), (6, "JSON")]:
            assert f"{path}:{line}: " in err
            assert reason in next(x for x in err.splitlines() if f"{path}:{line}:" in x)
        assert f"{path}:1:" not in err
        assert f"{path}:7:" not in err
        with open_repository(tmp_path / "data") as repo:
            assert 2 == repo.count()
            assert repo.by_identifier(licence_row(1)["identifier"]) is not None
            assert repo.by_identifier(licence_row(6)["identifier"]) is not None
        assert HOLDER not in err
        assert HOLDER not in caplog.text

    def test_csv_with_line_numbers(self, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
        """CSV rows count from the header's line 1."""
        good = licence_row(1)
        good["matters"] = ["许可-00393-002", "公共服务-00901-001"]
        bad = licence_row(2)
        bad["issue_date"] = "yesterday"
        path = write_csv(tmp_path / "batch.csv", [good, bad])
        assert 1 == run("import", str(path), "--data-dir", str(tmp_path))
        assert f"{path}:3: issue_date" in capsys.readouterr().err
        with open_repository(tmp_path) as repo:
            stored = repo.by_identifier(good["identifier"])
        assert stored is not None
        assert ["许可-00393-002", "公共服务-00901-001"] == stored.lic["matters"]
        assert {"operation_category": "建筑电工"} == stored.lic["fields"]

    def test_reimport_changes_nothing_and_update_keeps_status_index(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The same file twice changes nothing; a changed row keeps its status index."""
        rows = [licence_row(n) for n in range(5)]
        path = write_jsonl(tmp_path / "batch.jsonl", rows)
        assert 0 == run("import", str(path), "--data-dir", str(tmp_path))
        with open_repository(tmp_path) as repo:
            before = {r["identifier"]: repo.by_identifier(r["identifier"]) for r in rows}
        assert 0 == run("import", str(path), "--data-dir", str(tmp_path))
        assert "added 0, updated 0, unchanged 5" in capsys.readouterr().out
        with open_repository(tmp_path) as repo:
            after = {i: repo.by_identifier(i) for i in before}
        assert before == after
        changed = licence_row(3, state="revoked")
        write_jsonl(path, [changed])
        assert 0 == run("import", str(path), "--data-dir", str(tmp_path))
        with open_repository(tmp_path) as repo:
            stored = repo.by_identifier(changed["identifier"])
            entries = repo.status_entries()
        assert stored is not None
        old = before[changed["identifier"]]
        assert old is not None
        assert (LicenceState.REVOKED, old.status_idx) == (stored.state, stored.status_idx)
        assert {old.status_idx: 1} == dict(entries.values)
        assert 5 == entries.size

    def test_one_audit_record_without_personal_data(self, tmp_path: Path) -> None:
        """The import is one audit record with counts and the file digest; no holder code
        is written to the audit log or any file but the licence store."""
        import hashlib

        path = write_jsonl(tmp_path / "batch.jsonl", bad_rows())
        data_dir = tmp_path / "data"
        run("import", str(path), "--data-dir", str(data_dir))
        from gateway.audit import open_store

        store = open_store(data_dir, None)
        try:
            entries = list(store.iter_entries())
        finally:
            store.close()
        assert 1 == len(entries)
        record = orjson.loads(entries[0][1])
        text = entries[0][1].decode()
        assert "licence-import" in text
        assert hashlib.sha256(path.read_bytes()).hexdigest() in text
        assert '"rejected":5' in text.replace(" ", "")
        assert record is not None
        for file in data_dir.rglob("*"):
            if file.is_file() and not file.name.startswith("licences.db"):
                assert HOLDER.encode() not in file.read_bytes(), file.name

    def test_unknown_csv_column_fails_whole_file(self, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
        """A header naming something else is refused before any row is read."""
        path = tmp_path / "x.csv"
        path.write_text("identifier,colour\n1,red\n", encoding="utf-8")
        assert 1 == run("import", str(path), "--data-dir", str(tmp_path))
        assert "unknown columns" in capsys.readouterr().err


class TestDemo:
    """``licences demo`` makes realistic, valid Huzhou licences."""

    def test_demo_rows_are_valid_and_varied(self) -> None:
        """Every generated row passes the import checks; states are mixed."""
        rows = list(cli.demo_rows(600, seed=1))
        records = [record_from_mapping(r) for r in rows]
        assert 600 == len({r.identifier for r in records})
        states = {r.state for r in records}
        assert {LicenceState.VALID, LicenceState.REVOKED, LicenceState.SUSPENDED} == states
        assert all(str(r.lic["issuer_code"])[2:6] == "3305" for r in records)
        prefixes = {str(r.lic["holder_code"])[:6] for r in records
                    if r.lic["holder_code_type"] == "111"}
        assert prefixes <= {"330502", "330503", "330521", "330522", "330523"}

    def test_demo_imports(self, tmp_path: Path) -> None:
        """The command writes the file and imports it."""
        assert 0 == run("demo", "--data-dir", str(tmp_path), "--count", "300")
        with open_repository(tmp_path) as repo:
            assert 300 == repo.count()
        assert (tmp_path / "demo-licences.jsonl").exists()


def write_quick_rows(path: Path, count: int) -> Path:
    """``count`` good rows, written a line at a time, whose checks are quick (the holder
    is an organisation: no 身份证号 county look-up), so that a large file is cheap."""
    with path.open("wb") as out:
        for n in range(count):
            out.write(orjson.dumps(licence_row(n, holder=ORG_HOLDER, holder_type="001")) + b"\n")
    return path


def peak_rss_kib(argv: Sequence[str], log: Path) -> int:
    """Run ``ecert-gateway ARGV`` and return the peak resident memory of that process
    alone (its own rusage, KiB), failing if it fails."""
    with log.open("wb") as out:
        child = subprocess.Popen([sys.executable, "-m", "gateway", *argv], cwd=REPO,
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    assert 0 == child.returncode, log.read_text(encoding="utf-8")
    return usage.ru_maxrss // (1024 if sys.platform == "darwin" else 1)  # macOS: bytes


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    """A terminal for standard error; the test puts it in place (pytest's own capture
    takes ``sys.stderr`` back between a fixture and the test)."""
    term = Terminal()
    yield term
    term.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_dsn(request: pytest.FixtureRequest) -> str | None:
    """Each licence store: None for SQLite in the data folder, else a PostgreSQL DSN."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("postgres_dsn"))


def _rows_in(frame: str) -> int | None:
    found = re.search(r"([\d,]+) rows", frame)
    return None if found is None else int(found.group(1).replace(",", ""))


class TestStreamingImport:
    """``licences import`` streams: bounded memory, progress at once, all rows or none."""

    @pytest.mark.slow
    def test_memory_does_not_grow_with_the_file(self, tmp_path: Path) -> None:
        """An import of 50,000 rows peaks within 30 MB of one of 5,000 (the whole file and
        every row used to be held: some 200 MB more)."""
        small = write_quick_rows(tmp_path / "small.jsonl", 5_000)
        large = write_quick_rows(tmp_path / "large.jsonl", 50_000)
        for folder in ("small", "large"):
            create_data_folder(tmp_path / folder)  # what `ecert-gateway init` does
        small_kib = peak_rss_kib(["licences", "import", str(small), "--data-dir",
                                  str(tmp_path / "small")], tmp_path / "small.log")
        large_kib = peak_rss_kib(["licences", "import", str(large), "--data-dir",
                                  str(tmp_path / "large")], tmp_path / "large.log")
        assert large_kib - small_kib < 30 * 1024, (small_kib, large_kib)
        with open_repository(tmp_path / "large") as repo:
            assert 50_000 == repo.count()
            assert 50_000 == repo.status_entries().size

    def test_progress_on_a_terminal_from_the_first_second(
            self, tmp_path: Path, terminal: Terminal, monkeypatch: pytest.MonkeyPatch) -> None:
        """On a terminal, the bar is drawn at once and shows rows, rate and time left
        within the first second, long before the import ends; its last frame says 100 %
        and every row."""
        path = write_quick_rows(tmp_path / "batch.jsonl", 20_000)
        monkeypatch.setattr(sys, "stderr", terminal.stream)
        started = time.monotonic()
        assert 0 == run("import", str(path), "--data-dir", str(tmp_path))
        ended = time.monotonic()
        terminal.close()
        frames = [(at - started, text) for at, text in terminal.frames()]
        bars = [(at, text) for at, text in frames if "batch.jsonl:" in text and "%|" in text]
        assert bars, frames
        assert bars[0][0] < 1.0, bars[0]
        moving = [(at, text) for at, text in bars if 0 < (_rows_in(text) or 0) < 20_000]
        assert moving, bars
        first_at, first = moving[0]
        assert first_at < 1.0, (first_at, first)
        assert first_at < (ended - started) / 2, (first_at, ended - started)
        assert re.search(r"\[00:0\d<[\d:?]+, [\d,]+ rows, [\d,]+/s\]", first), first
        counts = [_rows_in(text) or 0 for _, text in bars]
        assert counts == sorted(counts)
        assert "100%" in bars[-1][1]
        assert "20,000 rows" in bars[-1][1]

    def test_demo_shows_progress_from_the_start(
            self, tmp_path: Path, terminal: Terminal, monkeypatch: pytest.MonkeyPatch) -> None:
        """``licences demo`` draws a bar while it generates, then the import's."""
        monkeypatch.setattr(sys, "stderr", terminal.stream)
        started = time.monotonic()
        assert 0 == run("demo", "--data-dir", str(tmp_path), "--count", "3000")
        terminal.close()
        frames = [(at - started, text) for at, text in terminal.frames()]
        generating = [(at, text) for at, text in frames if text.startswith("generating:")]
        assert generating, frames
        assert generating[0][0] < 1.0, generating[0]
        assert "3000/3000" in generating[-1][1]
        assert any(text.startswith("demo-licences.jsonl:") and "3,000 rows" in text
                   for _, text in frames), frames

    def test_no_progress_when_quiet_or_not_a_terminal(
            self, tmp_path: Path, terminal: Terminal, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> None:
        """``--quiet`` on a terminal, or standard error not a terminal: the bad rows and
        nothing else."""
        path = write_jsonl(tmp_path / "batch.jsonl", bad_rows())
        assert 1 == run("import", str(path), "--data-dir", str(tmp_path / "a"))
        err = capsys.readouterr().err
        assert f"{path}:6: not a JSON object" in err
        assert "\r" not in err
        assert "%|" not in err
        monkeypatch.setattr(sys, "stderr", terminal.stream)
        assert 1 == run("import", str(path), "--data-dir", str(tmp_path / "b"), "--quiet")
        terminal.close()
        drawn = [text for _, text in terminal.frames()]
        assert [f"{path}:{n}" for n in range(2, 7)] == [t.split(": ")[0] for t in drawn[:5]]
        assert drawn[5].startswith("ecert-gateway licences import: 5 rows rejected")
        assert 6 == len(drawn)

    def test_every_row_stored_as_given(self, tmp_path: Path, store_dsn: str | None,
                                       capsys: pytest.CaptureFixture[str]) -> None:
        """5,000 varied rows over three batches, with a bad line, a blank one, a repeated
        identifier and a bad state among them: each good row is stored as checked, with
        the status index of its place in the file; the bad ones are named by line."""
        rows = list(cli.demo_rows(5_000, seed=5))
        lines: list[dict[str, Any] | str] = [
            *rows[:2500], "{not json", "", *rows[2500:], rows[10], {**rows[20], "state": "x"}]
        path = write_jsonl(tmp_path / "batch.jsonl", lines)
        store = ["--postgres-dsn", store_dsn] if store_dsn else []
        assert 1 == run("import", str(path), "--data-dir", str(tmp_path), *store)
        out, err = capsys.readouterr()
        assert "5003 rows; added 5000, updated 0, unchanged 0, rejected 3" in out
        assert f"{path}:2501: not a JSON object" in err
        assert f"{path}:5003: identifier repeats line 11" in err
        assert f"{path}:5004: state must be" in err
        with open_repository(tmp_path, store_dsn) as repo:
            assert 5000 == repo.count()
            entries = repo.status_entries()
            sample = [0, 1999, 2000, 2499, 2500, 4999, *random.Random(1).sample(range(5000), 40)]
            stored = {n: repo.by_identifier(rows[n]["identifier"]) for n in sample}
        assert 5000 == entries.size
        assert {n: LicenceState(row["state"]).status_value for n, row in enumerate(rows)
                if row["state"] != "valid"} == dict(entries.values)
        for n, found in stored.items():
            expected = record_from_mapping(rows[n])
            assert found is not None
            assert (expected.lic, expected.state, n) == (found.lic, found.state,
                                                        found.status_idx)
        assert 1 == run("import", str(path), "--data-dir", str(tmp_path), *store)
        assert "added 0, updated 0, unchanged 5000, rejected 3" in capsys.readouterr().out

    @pytest.mark.parametrize("problem", ["not UTF-8", "line too long"])
    def test_a_file_unreadable_halfway_stores_nothing(
            self, tmp_path: Path, store_dsn: str | None, capsys: pytest.CaptureFixture[str],
            problem: str) -> None:
        """The import is one transaction: a file found unreadable after two batches were
        written stores none of its rows."""
        path = write_quick_rows(tmp_path / "batch.jsonl", 2 * cli.BATCH + 10)
        line = 2 * cli.BATCH + 11
        if problem == "not UTF-8":
            tail, message = b"\xff\xfe\n", f"batch.jsonl is not UTF-8 (line {line})"
        else:
            tail = b'{"identifier": "' + b"1" * cli.MAX_LINE + b'"}\n'
            message = f"batch.jsonl: line {line} is longer than {cli.MAX_LINE} bytes"
        with path.open("ab") as out:
            out.write(tail)
        store = ["--postgres-dsn", store_dsn] if store_dsn else []
        assert 1 == run("import", str(path), "--data-dir", str(tmp_path), *store)
        assert message in capsys.readouterr().err
        with open_repository(tmp_path, store_dsn) as repo:
            assert 0 == repo.count()


class TestHolderKeys:
    """Holder lookups by versioned HMAC."""

    def test_pseudonyms_are_keyed_and_versioned(self, tmp_path: Path) -> None:
        """Case does not matter; another key gives another pseudonym; every version is tried."""
        keyring = HolderKeyring.load(tmp_path)
        first = keyring.pseudonym("111", HOLDER)
        assert first == keyring.pseudonym("111", HOLDER.lower())
        assert HOLDER not in first
        assert first.startswith("v1:")
        assert 2 == HolderKeyring.add_version(tmp_path)
        rotated = HolderKeyring.load(tmp_path)
        assert rotated.pseudonyms("111", HOLDER)[-1] == first
        assert rotated.pseudonyms("111", HOLDER)[0].startswith("v2:")
        assert first != HolderKeyring.load(tmp_path / "other").pseudonym("111", HOLDER)

    async def test_lookup_survives_rotation_and_reimport_rekeys(self, tmp_path: Path) -> None:
        """After a rotation old rows are still found; a re-import moves them to the new key."""
        import asyncio

        from tests.gateway.test_partner_api import import_rows

        loop = asyncio.get_running_loop()
        row = licence_row(1)
        await loop.run_in_executor(None, import_rows, tmp_path, [row])
        await loop.run_in_executor(None, HolderKeyring.add_version, tmp_path)
        keyring = await loop.run_in_executor(None, HolderKeyring.load, tmp_path)
        store = SqliteLicenceStore(licence_db_path(tmp_path))
        await store.open()
        try:
            found = await store.by_holder(keyring.pseudonyms("111", HOLDER), row["type_code"])
            assert [row["identifier"]] == [f.identifier for f in found]
        finally:
            await store.close()

        def reimport() -> int:
            with open_repository(tmp_path) as repo:
                return repo.import_records([record_from_mapping(row)], keyring).rekeyed

        assert 1 == await loop.run_in_executor(None, reimport)


async def _concurrent_finds(tmp_path: Path, postgres_dsn: str | None) -> None:
    """Many finds at once share store trips and each gets its own answer."""
    from tests.gateway.test_partner_api import import_rows

    loop = asyncio.get_running_loop()
    rows = [licence_row(n, holder=HOLDER if n % 2 else OTHER_HOLDER) for n in range(1, 7)]
    lone = licence_row(7, holder=THIRD_HOLDER)  # found alone, after the others
    await loop.run_in_executor(None, import_rows, tmp_path, [*rows, lone], postgres_dsn)
    keyring = await loop.run_in_executor(None, HolderKeyring.load, tmp_path)
    store = open_store(load_settings({}, None, {"data_dir": tmp_path,
                                                "postgres_dsn": postgres_dsn}))
    assert isinstance(store, SqliteLicenceStore | PostgresLicenceStore)
    await store.open()
    trips = 0
    run_one = store._run

    async def counted(fn: Any) -> Any:
        nonlocal trips
        trips += 1
        return await run_one(fn)

    store._run = counted  # type: ignore[method-assign]
    type_code = rows[0]["type_code"]
    missing = licence_row(99)["identifier"]  # well formed, never imported
    queries: list[tuple[str, str | None, Sequence[str]]] = [
        *((type_code, r["identifier"], ()) for r in rows),
        (type_code, missing, ()),
        (type_code, None, keyring.pseudonyms("111", HOLDER)),
        (type_code, None, keyring.pseudonyms("111", OTHER_HOLDER)),
        (type_code, None, keyring.pseudonyms("111", "110101199003076518")),
        ("99999999999999999X", rows[0]["identifier"], ()),
    ]
    try:
        answers = await asyncio.gather(*(store.find(t, identifier=i, pseudonyms=p)
                                         for t, i, p in queries))
        alone = await store.find(type_code, identifier=lone["identifier"])
    finally:
        await store.close()
    found = [(published, [c.identifier for c in candidates]) for published, candidates in answers]
    ids = [r["identifier"] for r in rows]
    assert found == [
        *((True, [i]) for i in ids),
        (True, []),
        (True, sorted(ids[0::2])),
        (True, sorted(ids[1::2])),
        (True, []),
        (False, []),
    ]
    assert [lone["identifier"]] == [c.identifier for c in alone[1]]
    assert trips == 2  # the eleven concurrent finds shared one trip; the lone one had its own


async def _large_batch(tmp_path: Path, postgres_dsn: str | None) -> None:
    """A batch of identifier finds longer than one IN list, with repeats and misses, looked
    up together: each answer is its own identifier's licence, as a lone find gives it."""
    from tests.gateway.test_partner_api import import_rows

    loop = asyncio.get_running_loop()
    rows = [licence_row(n, state="revoked" if n % 7 == 0 else "valid") for n in range(1, 76)]
    await loop.run_in_executor(None, import_rows, tmp_path, rows, postgres_dsn)
    store = open_store(load_settings({}, None, {"data_dir": tmp_path,
                                                "postgres_dsn": postgres_dsn}))
    await store.open()
    type_code = rows[0]["type_code"]
    wanted = [r["identifier"] for r in rows] + [rows[3]["identifier"], rows[70]["identifier"]]
    wanted += [licence_row(n)["identifier"] for n in (200, 201)]  # never imported
    try:
        together = await asyncio.gather(*(store.find(type_code, identifier=i) for i in wanted))
        alone = [await store.find(type_code, identifier=i) for i in wanted[::9]]
    finally:
        await store.close()
    assert len(wanted) == len(together) == 79
    for identifier, (published, found) in zip(wanted, together, strict=True):
        assert published
        assert [identifier] == [c.identifier for c in found] or (
            identifier not in {r["identifier"] for r in rows} and found == [])
    states = {r["identifier"]: r["state"] for r in rows}
    assert [states[i] for i in wanted[:75]] == [f[0].state.value for _, f in together[:75]]
    assert [(p, [c.identifier for c in f]) for p, f in together[::9]] == [
        (p, [c.identifier for c in f]) for p, f in alone]


class TestConcurrentFinds:
    """``LicenceStore.find`` coalesces concurrent queries into shared store trips."""

    async def test_sqlite(self, tmp_path: Path) -> None:
        """SQLite (the default store)."""
        await _concurrent_finds(tmp_path, None)

    @pytest.mark.postgres
    async def test_postgres(self, tmp_path: Path, postgres_dsn: str) -> None:
        """PostgreSQL."""
        await _concurrent_finds(tmp_path, postgres_dsn)

    async def test_large_batch_sqlite(self, tmp_path: Path) -> None:
        """More finds than one IN list holds, on SQLite."""
        await _large_batch(tmp_path, None)

    @pytest.mark.postgres
    async def test_large_batch_postgres(self, tmp_path: Path, postgres_dsn: str) -> None:
        """The same on PostgreSQL."""
        await _large_batch(tmp_path, postgres_dsn)


class _Trips:
    """Counts a store's lookup trips to its thread (or connection); its checks for
    changes are not counted. While ``gate`` is set and unset, lookups wait for it."""

    def __init__(self, store: Any) -> None:
        self.count = 0
        self.gate: asyncio.Event | None = None
        call_one = store._call

        async def counted(fn: Any, *args: Any) -> Any:
            if fn is licences_module._find_many:
                self.count += 1
                if self.gate is not None:
                    await self.gate.wait()
            return await call_one(fn, *args)

        store._call = counted


async def _remembered_until_changed(tmp_path: Path, postgres_dsn: str | None) -> None:
    """A licence found once is answered from memory; a revocation committed by another
    connection (``licences import``) is seen within two polls, and a licence changed
    back is seen again."""
    loop = asyncio.get_running_loop()
    row = licence_row(1)
    await loop.run_in_executor(None, import_rows, tmp_path, [row], postgres_dsn)
    poll_s = 0.1
    store: Any
    if postgres_dsn:
        store = PostgresLicenceStore(postgres_dsn, cache_size=10, poll_s=poll_s)
    else:
        store = SqliteLicenceStore(licence_db_path(tmp_path), cache_size=10, poll_s=poll_s)
    await store.open()
    trips = _Trips(store)
    type_code, identifier = row["type_code"], row["identifier"]

    async def state_after_change(state: str) -> tuple[float, str]:
        await loop.run_in_executor(None, import_rows, tmp_path, [{**row, "state": state}],
                                   postgres_dsn)
        started = loop.time()
        while True:
            _, found = await store.find(type_code, identifier=identifier)
            if found[0].state.value == state or loop.time() - started > 5:
                return loop.time() - started, found[0].state.value
            await asyncio.sleep(0.005)

    try:
        first = await store.find(type_code, identifier=identifier)
        before = trips.count
        again = [await store.find(type_code, identifier=identifier) for _ in range(20)]
        assert trips.count == before  # twenty answers from memory, no trip
        assert all(a == first for a in again)
        assert first[1][0].state is LicenceState.VALID
        waited, state = await state_after_change("revoked")
        assert state == "revoked"
        assert waited < 4 * poll_s + 0.5
        waited, state = await state_after_change("valid")
        assert (state, waited < 4 * poll_s + 0.5) == ("valid", True)
    finally:
        await store.close()


class TestRememberedLicences:
    """The async store remembers licences found by identifier, never past a change."""

    async def test_sqlite(self, tmp_path: Path) -> None:
        """SQLite: PRAGMA data_version moves when ``licences import`` commits."""
        await _remembered_until_changed(tmp_path, None)

    @pytest.mark.postgres
    async def test_postgres(self, tmp_path: Path, postgres_dsn: str) -> None:
        """PostgreSQL: the statement trigger bumps licence_changes."""
        await _remembered_until_changed(tmp_path, postgres_dsn)

    @pytest.mark.parametrize("error", [sqlite3.OperationalError("disk I/O error"),
                                       RuntimeError("a bug in the check")])
    async def test_nothing_from_memory_while_checks_fail(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
        """When the store cannot say whether the library changed, every find makes a trip;
        the checks go on, and memory serves again once one passes."""
        row = licence_row(1)
        await asyncio.get_running_loop().run_in_executor(None, import_rows, tmp_path, [row])
        store = SqliteLicenceStore(licence_db_path(tmp_path), cache_size=10, poll_s=0.1)
        await store.open()
        trips = _Trips(store)
        working = licences_module._change_version

        async def find_three() -> int:
            counted = trips.count
            for _ in range(3):
                await store.find(row["type_code"], identifier=row["identifier"])
            return trips.count - counted

        try:
            assert await find_three() == 1

            def broken(conn: Any, d: Any) -> int:
                raise error

            monkeypatch.setattr(licences_module, "_change_version", broken)
            await asyncio.sleep(0.35)
            assert await find_three() == 3
            assert store.memory_counts["check-failed"] >= 2
            monkeypatch.setattr(licences_module, "_change_version", working)
            await asyncio.sleep(0.15)
            # (the licence read while checks failed may be kept: the version did not move)
            assert await find_three() <= 1
            assert await find_three() == 0
        finally:
            await store.close()

    @pytest.mark.postgres
    async def test_postgres_without_its_change_row(self, tmp_path: Path,
                                                   postgres_dsn: str) -> None:
        """PostgreSQL: with the licence_changes row gone no change could be seen: the check
        says so (LicenceStoreError) and nothing is served from memory."""
        import psycopg

        row = licence_row(1)
        await asyncio.get_running_loop().run_in_executor(None, import_rows, tmp_path, [row],
                                                         postgres_dsn)
        store = PostgresLicenceStore(postgres_dsn, cache_size=10, poll_s=0.1)
        await store.open()
        trips = _Trips(store)
        try:
            with psycopg.connect(postgres_dsn, autocommit=True) as conn:
                conn.execute("DELETE FROM licence_changes")
            with pytest.raises(LicenceStoreError, match="licence_changes has no row"):
                await store._call(licences_module._change_version)
            await asyncio.sleep(0.25)
            for _ in range(3):
                await store.find(row["type_code"], identifier=row["identifier"])
            assert trips.count == 3
        finally:
            await store.close()

    @pytest.mark.postgres
    async def test_postgres_counts_transactions_not_rows(self, tmp_path: Path,
                                                         postgres_dsn: str) -> None:
        """An import of many rows in one transaction moves the change counter once."""
        import psycopg

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, import_rows, tmp_path, [licence_row(1)], postgres_dsn)

        def version() -> int:
            with psycopg.connect(postgres_dsn, autocommit=True) as conn:
                found = conn.execute("SELECT version FROM licence_changes").fetchone()
                assert found is not None
                return int(found[0])

        before = version()
        rows = [licence_row(n, state="revoked" if n == 1 else "valid") for n in range(1, 41)]
        await loop.run_in_executor(None, import_rows, tmp_path, rows, postgres_dsn)
        assert version() == before + 1

    async def test_no_licence_from_memory_past_its_age(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """However the checks go, a licence read longer than REMEMBER_S ago is read again."""
        row = licence_row(1)
        await asyncio.get_running_loop().run_in_executor(None, import_rows, tmp_path, [row])
        monkeypatch.setattr(licences_module, "REMEMBER_S", 0.2)
        store = SqliteLicenceStore(licence_db_path(tmp_path), cache_size=10, poll_s=0.05)
        await store.open()
        trips = _Trips(store)
        try:
            for _ in range(3):
                await store.find(row["type_code"], identifier=row["identifier"])
            assert trips.count == 1
            await asyncio.sleep(0.3)
            await store.find(row["type_code"], identifier=row["identifier"])
            assert trips.count == 2
        finally:
            await store.close()

    async def test_a_store_that_fails_to_open_is_closed(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """open() that fails after connecting leaves no connection or watcher behind; a
        failing first change check does not fail open(), it only keeps memory unused."""
        def broken(conn: Any, d: Any) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(licences_module, "_setup", broken)
        store = SqliteLicenceStore(licence_db_path(tmp_path), cache_size=10)
        with pytest.raises(LicenceStoreError):
            await store.open()
        assert store._db._conn is None
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("licences-")]

        monkeypatch.undo()
        row = licence_row(1)
        await asyncio.get_running_loop().run_in_executor(None, import_rows, tmp_path, [row])
        monkeypatch.setattr(licences_module, "_change_version", broken)
        store = SqliteLicenceStore(licence_db_path(tmp_path), cache_size=10)
        await store.open()
        trips = _Trips(store)
        try:
            for _ in range(2):
                await store.find(row["type_code"], identifier=row["identifier"])
            assert (trips.count, store.memory_counts["check-failed"]) == (2, 1)
        finally:
            await store.close()

    async def test_a_find_begun_before_a_change_is_not_remembered(self, tmp_path: Path) -> None:
        """A lookup in flight when the library changed may carry the old licence: it is
        answered, but not remembered."""
        rows = [licence_row(1), licence_row(2)]
        await asyncio.get_running_loop().run_in_executor(None, import_rows, tmp_path, rows)
        store = SqliteLicenceStore(licence_db_path(tmp_path), cache_size=10, poll_s=60)
        await store.open()
        trips = _Trips(store)
        type_code, identifier = rows[0]["type_code"], rows[0]["identifier"]
        try:
            trips.gate = asyncio.Event()
            pending = asyncio.create_task(store.find(type_code, identifier=identifier))
            await asyncio.sleep(0.01)
            store._forget()  # what a check that saw a change does
            trips.gate.set()
            assert (await pending)[1][0].identifier == identifier
            await store.find(type_code, identifier=identifier)
            assert trips.count == 2  # not remembered: asked again
            await store.find(type_code, identifier=identifier)
            assert trips.count == 2  # remembered now
        finally:
            await store.close()

    async def test_bounded(self, tmp_path: Path) -> None:
        """At most ``cache_size`` licences are kept; the oldest goes first."""
        rows = [licence_row(n) for n in range(1, 4)]
        await asyncio.get_running_loop().run_in_executor(None, import_rows, tmp_path, rows)
        store = SqliteLicenceStore(licence_db_path(tmp_path), cache_size=2, poll_s=60)
        await store.open()
        trips = _Trips(store)
        type_code = rows[0]["type_code"]
        try:
            for r in rows:
                await store.find(type_code, identifier=r["identifier"])
            assert trips.count == 3
            await store.find(type_code, identifier=rows[2]["identifier"])
            await store.find(type_code, identifier=rows[1]["identifier"])
            assert trips.count == 3
            await store.find(type_code, identifier=rows[0]["identifier"])
            assert trips.count == 4
        finally:
            await store.close()

    async def test_off(self, tmp_path: Path) -> None:
        """``licence_cache_max_entries = 0``: every find makes a trip."""
        row = licence_row(1)
        await asyncio.get_running_loop().run_in_executor(None, import_rows, tmp_path, [row])
        store = open_store(load_settings({}, None, {"data_dir": tmp_path,
                                                    "licence_cache_max_entries": 0}))
        await store.open()
        trips = _Trips(store)
        try:
            for _ in range(3):
                await store.find(row["type_code"], identifier=row["identifier"])
            assert trips.count == 3
        finally:
            await store.close()


class TestBackends:
    """PostgreSQL store and Redis replay cache against real servers."""

    @pytest.mark.postgres
    def test_postgres_import_is_idempotent(self, tmp_path: Path, postgres_dsn: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
        """The CLI imports into PostgreSQL; twice changes nothing."""
        path = write_jsonl(tmp_path / "batch.jsonl", bad_rows())
        assert 1 == run("import", str(path), "--data-dir", str(tmp_path),
                        "--postgres-dsn", postgres_dsn)
        assert 1 == run("import", str(path), "--data-dir", str(tmp_path),
                        "--postgres-dsn", postgres_dsn)
        out = capsys.readouterr().out
        assert "added 2, updated 0, unchanged 0" in out
        assert "added 0, updated 0, unchanged 2" in out
        with open_repository(tmp_path, postgres_dsn) as repo:
            assert ("postgresql", 2) == (repo.backend, repo.count())
            assert 2 == repo.status_entries().size

    @pytest.mark.redis
    async def test_redis_replay_cache(self, redis_url: str) -> None:
        """SET NX EX: the first use wins, the second is refused."""
        import uuid

        cache = RedisReplayCache(redis_client(redis_url, timeout_s=1.0))
        key = f"310000:{uuid.uuid4().hex}"
        try:
            assert await cache.first_use(key, 60)
            assert not await cache.first_use(key, 60)
            await cache.ping()
            # Concurrent uses share one script call: of ten racing for one jti exactly one
            # wins; other jtis in the same round trip are judged on their own, with their TTL.
            raced = f"310000:{uuid.uuid4().hex}"
            others = [f"310000:{uuid.uuid4().hex}" for _ in range(5)]
            answers = await asyncio.gather(*(cache.first_use(raced, 30) for _ in range(10)),
                                           *(cache.first_use(k, 90) for k in others))
            assert 1 == sum(answers[:10])
            assert all(answers[10:])
            probe = redis_client(redis_url, timeout_s=1.0)
            try:
                assert 0 < await probe.ttl(RedisReplayCache.PREFIX + raced) <= 30
                assert 30 < await probe.ttl(RedisReplayCache.PREFIX + others[0]) <= 90
            finally:
                await probe.aclose()
        finally:
            await cache.close()
