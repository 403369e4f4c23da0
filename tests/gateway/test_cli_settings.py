"""Every command finds its settings one way: its options, ``ECERT_*`` and ``--config``."""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson
import pytest

from gateway.__main__ import build_parser, main
from gateway.audit import RecordFilter, append_cli_event, open_store
from gateway.infra.datafolder import create_data_folder
from tests.audit.conftest import event

pytestmark = pytest.mark.allow_blocking

SETTINGS_OPTIONS = {"--data-dir", "--config", "--postgres-dsn"}


def _leaves(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
            ) -> dict[str, argparse.ArgumentParser]:
    """Every runnable command of the parser, by its words."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {" ".join(words): parser}
    found: dict[str, argparse.ArgumentParser] = {}
    for action in subs:
        for name, child in action.choices.items():
            found.update(_leaves(child, (*words, name)))
    return found


COMMANDS = sorted(_leaves(build_parser()))


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_the_settings_options(command: str) -> None:
    """``--data-dir``, ``--config`` and ``--postgres-dsn`` on every command, from one parent
    parser: before, ``licences`` and ``clients``/``operators`` took no ``--config``,
    ``registry`` no ``--postgres-dsn``, ``init`` neither."""
    parser = _leaves(build_parser())[command]
    options = {s for a in parser._actions for s in a.option_strings}
    assert SETTINGS_OPTIONS <= options


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A new data folder."""
    path = tmp_path / "data"
    create_data_folder(path)
    return path


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _logged(folder: Path, postgres_dsn: str) -> list[str]:
    """The event types the folder's PostgreSQL log holds, oldest first."""
    store = open_store(folder, postgres_dsn)
    try:
        return [orjson.loads(record)["event_type"]
                for _, record in store.query(RecordFilter(limit=100))]
    finally:
        store.close()


@pytest.mark.postgres
class TestPostgresFoundOneWay:
    """The PostgreSQL DSN comes from ``--postgres-dsn``, ``ECERT_POSTGRES_DSN`` or the
    settings file, for every command."""

    @pytest.fixture
    def pg_log(self, folder: Path, postgres_dsn: str) -> Path:
        """The folder, its audit log in PostgreSQL holding one record."""
        append_cli_event(folder, event(), postgres_dsn=postgres_dsn)
        return folder

    def test_audit_query_honours_the_environment(
            self, pg_log: Path, postgres_dsn: str, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> None:
        """``ECERT_POSTGRES_DSN`` reaches ``audit query``; before, it looked for SQLite
        and answered ``no audit log``."""
        monkeypatch.setenv("ECERT_POSTGRES_DSN", postgres_dsn)
        assert 0 == main(["audit", "query", "--data-dir", str(pg_log)])
        lines = capsys.readouterr().out.splitlines()
        assert [0] == [orjson.loads(line)["index"] for line in lines]

    def test_audit_query_honours_the_settings_file(
            self, pg_log: Path, postgres_dsn: str, tmp_path: Path,
            capsys: pytest.CaptureFixture[str]) -> None:
        """``postgres_dsn`` in ``--config`` reaches ``audit query`` (it took no
        ``--config`` before), and so does ``data_dir``."""
        config = _config(tmp_path, f'data_dir = "{pg_log}"\npostgres_dsn = "{postgres_dsn}"\n')
        assert 0 == main(["audit", "query", "--config", str(config)])
        lines = capsys.readouterr().out.splitlines()
        assert [0] == [orjson.loads(line)["index"] for line in lines]

    def test_clients_add_honours_the_settings_file(
            self, pg_log: Path, postgres_dsn: str, tmp_path: Path,
            capsys: pytest.CaptureFixture[str]) -> None:
        """``clients add --config FILE`` writes its audit record where the file says (the
        command took no ``--config`` before)."""
        config = _config(tmp_path, f'postgres_dsn = "{postgres_dsn}"\n')
        assert 0 == main(["clients", "add", "window-01", "--data-dir", str(pg_log),
                          "--config", str(config)])
        capsys.readouterr()
        assert ["verification", "identity-change"] == _logged(pg_log, postgres_dsn)

    def test_licences_demo_honours_the_settings_file(
            self, pg_log: Path, postgres_dsn: str, tmp_path: Path,
            capsys: pytest.CaptureFixture[str]) -> None:
        """``licences demo --config FILE`` stores the licences and their audit record in the
        file's PostgreSQL (the command took no ``--config`` before)."""
        config = _config(tmp_path, f'postgres_dsn = "{postgres_dsn}"\n')
        assert 0 == main(["licences", "demo", "--count", "2", "--quiet",
                          "--data-dir", str(pg_log), "--config", str(config)])
        assert "(store: postgresql" in capsys.readouterr().out
        assert ["verification", "licence-import"] == _logged(pg_log, postgres_dsn)


def test_data_dir_from_the_environment(folder: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """``ECERT_DATA_DIR`` names the folder for any command, as it did for ``serve``; before,
    every other command required ``--data-dir``."""
    monkeypatch.setenv("ECERT_DATA_DIR", str(folder))
    assert 0 == main(["trust", "history"])
    assert 0 == main(["clients", "list"])
    assert "(no clients in this data folder)" in capsys.readouterr().out


def test_an_option_beats_the_environment_and_the_file(
        folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``--data-dir`` over ``ECERT_DATA_DIR`` over the file's ``data_dir``."""
    other = tmp_path / "elsewhere"
    config = _config(tmp_path, f'data_dir = "{other}"\n')
    monkeypatch.setenv("ECERT_DATA_DIR", str(other))
    assert 0 == main(["clients", "list", "--config", str(config), "--data-dir", str(folder)])
    capsys.readouterr()
    assert not other.exists()


def test_audit_records_carry_the_configured_gateway_id(
        folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A CLI record names the gateway of the settings (``gateway_id``); before, ``clients``
    and ``licences`` always wrote 330500."""
    config = _config(tmp_path, 'gateway_id = "330521"\n')
    assert 0 == main(["clients", "add", "window-01", "--data-dir", str(folder),
                      "--config", str(config)])
    capsys.readouterr()
    store = open_store(folder, None)
    try:
        ((_, record),) = store.query(RecordFilter(limit=10))
    finally:
        store.close()
    assert "330521" == orjson.loads(record)["gateway"]


@pytest.mark.parametrize(("toml", "reason"), [
    ('[admin]\nexpiry_alert_days = "7"\n',
     "admin.expiry_alert_days: expected an integer, got '7'"),
    ('[partner.rate_limits]\n"310000" = {per_s = "fast"}\n',
     "partner.rate_limits.310000.per_s: expected a number, got 'fast'"),
    ("[registy]\ndir = '/srv/registry'\n", "settings file: unknown table [registy]"),
])
def test_serve_refuses_a_bad_table_before_it_starts(
        toml: str, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A feature table with a wrong type or name stops ``serve`` with one line naming the
    key, before any data folder is made; before, the first was read as 30, the second
    failed at start-up without the key's name, the third was ignored."""
    data = tmp_path / "data"
    config = _config(tmp_path, toml)
    argv = ["serve", "--data-dir", str(data), "--listen", "127.0.0.1:1", "--config", str(config)]
    assert 1 == main(argv)
    assert [f"ecert-gateway serve: {reason}"] == capsys.readouterr().err.splitlines()
    assert not data.exists()


def test_a_missing_settings_file_is_one_line(folder: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """``--config`` naming no file: the command and the file, one line, exit 1."""
    missing = tmp_path / "nope.toml"
    assert 1 == main(["audit", "stats", "--data-dir", str(folder), "--config", str(missing)])
    assert [f"ecert-gateway audit stats: {missing}: No such file or directory"] \
        == capsys.readouterr().err.splitlines()

