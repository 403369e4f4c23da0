"""Only ``init`` and ``serve`` make a data folder; other commands refuse a path that is not one."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gateway.__main__ import build_parser, main
from gateway.infra.datafolder import MARKER

pytestmark = pytest.mark.allow_blocking

# Every command that takes --data-dir, with the other arguments it needs to get that far.
# "{inputs}" is a folder of input files outside the data folder.
COMMANDS: dict[str, list[str]] = {
    "clients add": ["clients", "add", "window-01"],
    "operators add": ["operators", "add", "olga", "--role", "viewer"],
    "clients list": ["clients", "list"],
    "clients disable": ["clients", "disable", "window-01"],
    "clients enable": ["clients", "enable", "window-01"],
    "clients rotate": ["clients", "rotate", "window-01"],
    "clients expire": ["clients", "expire", "window-01", "--expires", "90d"],
    "operators list": ["operators", "list"],
    "operators disable": ["operators", "disable", "olga"],
    "operators enable": ["operators", "enable", "olga"],
    "operators rotate": ["operators", "rotate", "olga"],
    "operators expire": ["operators", "expire", "olga", "--expires", "90d"],
    "audit verify": ["audit", "verify"],
    "audit query": ["audit", "query"],
    "audit stats": ["audit", "stats"],
    "audit export": ["audit", "export"],
    "audit prune": ["audit", "prune", "--list"],
    "registry import": ["registry", "import", "{inputs}/map.csv"],
    "registry coverage": ["registry", "coverage"],
    "licences import": ["licences", "import", "{inputs}/licences.jsonl"],
    "licences demo": ["licences", "demo", "--count", "1"],
    "trust list": ["trust", "list"],
    "trust proposals": ["trust", "proposals"],
    "trust show": ["trust", "show"],
    "trust propose": ["trust", "propose", "--change", "{}"],
    "trust approve": ["trust", "approve", "some-id"],
    "trust reject": ["trust", "reject", "some-id"],
    "trust history": ["trust", "history"],
    "trust diff": ["trust", "diff"],
    "trust export": ["trust", "export"],
    "trust import": ["trust", "import", "{inputs}/list.jwt"],
    "receipt verify": ["receipt", "verify", "{inputs}/receipt.json"],
}


def _leaf_commands(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
                   ) -> dict[str, argparse.ArgumentParser]:
    """Every runnable command of the parser, by its words (``"trust list"``)."""
    found: dict[str, argparse.ArgumentParser] = {}
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {" ".join(words): parser}
    for action in subs:
        for name, child in action.choices.items():
            found.update(_leaf_commands(child, (*words, name)))
    return found


def _takes_data_dir(parser: argparse.ArgumentParser) -> bool:
    return any("--data-dir" in a.option_strings for a in parser._actions)


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """Input files the commands read, outside any data folder."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "map.csv").write_text("source,target\n", encoding="utf-8")
    (folder / "licences.jsonl").write_text("{}\n", encoding="utf-8")
    (folder / "list.jwt").write_text("a.b.c\n", encoding="utf-8")
    (folder / "receipt.json").write_text("{}\n", encoding="utf-8")
    return folder


def _argv(command: str, data_dir: Path, inputs: Path) -> list[str]:
    words = [w.replace("{inputs}", str(inputs)) for w in COMMANDS[command]]
    return [*words, "--data-dir", str(data_dir)]


def test_every_command_with_a_data_dir_is_covered() -> None:
    """The table above names every command that takes --data-dir, except init and serve."""
    leaves = _leaf_commands(build_parser())
    with_data_dir = {name for name, p in leaves.items() if _takes_data_dir(p)}
    assert with_data_dir - {"init", "serve"} == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_missing_folder_is_refused_and_not_made(
        command: str, tmp_path: Path, inputs: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A mistyped path that does not exist: exit 1, one line that says so, nothing made."""
    monkeypatch.setenv("ECERT_OPERATOR_TOKEN", "ecg_o_not-a-real-token")
    missing = tmp_path / "typo" / "data"
    assert 1 == main(_argv(command, missing, inputs))
    err = capsys.readouterr().err
    expected = (f"ecert-gateway {command}: {missing} does not exist; make a new instance with "
                f"`ecert-gateway init --data-dir {missing}` (or check the path)")
    assert [expected] == err.splitlines()
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_folder_that_is_not_a_data_folder_is_refused_untouched(
        command: str, tmp_path: Path, inputs: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An existing folder that is not a data folder: exit 1, one line, left as it was."""
    monkeypatch.setenv("ECERT_OPERATOR_TOKEN", "ecg_o_not-a-real-token")
    other = tmp_path / "documents"
    other.mkdir()
    (other / "notes.txt").write_text("not a gateway\n", encoding="utf-8")
    before = _tree(other)
    assert 1 == main(_argv(command, other, inputs))
    err = capsys.readouterr().err
    expected = (f"ecert-gateway {command}: {other} is not a gateway data folder (no {MARKER}); "
                f"make a new instance with `ecert-gateway init --data-dir {other}`")
    assert [expected] == err.splitlines()
    assert before == _tree(other)


def test_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --data-dir naming a file is refused the same way, not with an OS error."""
    path = tmp_path / "data"
    path.write_text("", encoding="utf-8")
    assert 1 == main(["clients", "add", "w", "--data-dir", str(path)])
    err = capsys.readouterr().err
    assert "is not a gateway data folder" in err
    assert "Errno" not in err


def test_after_init_the_commands_work(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """``init`` makes the folder; then reads, a licence import and a key work on it."""
    data = tmp_path / "data"
    assert 0 == main(["init", "--data-dir", str(data)])
    assert f"made a new gateway data folder: {data}" in capsys.readouterr().out
    assert (data / MARKER).is_file()
    for argv in (["trust", "list"], ["trust", "proposals"], ["trust", "history"],
                 ["licences", "demo", "--count", "2"],
                 ["licences", "import", str(data / "demo-licences.jsonl")],
                 ["clients", "add", "window-01"], ["audit", "query"],
                 ["registry", "coverage"]):
        assert 0 == main([*argv, "--data-dir", str(data)]), argv
    assert "ecg_c_" in capsys.readouterr().out


def test_legacy_folder_with_stores_is_accepted(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A folder made before the marker existed (it holds a store) is still a data folder."""
    data = tmp_path / "data"
    assert 0 == main(["init", "--data-dir", str(data)])
    assert 0 == main(["clients", "add", "w", "--data-dir", str(data)])
    (data / MARKER).unlink()
    assert 0 == main(["trust", "history", "--data-dir", str(data)])
    capsys.readouterr()


def test_legacy_folder_of_a_postgres_log_is_accepted(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A pre-marker folder whose audit log is in PostgreSQL holds ``audit-backend``, no .db."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "audit-backend").write_text("postgres\n", encoding="utf-8")
    assert 1 == main(["audit", "query", "--data-dir", str(data)])  # the log is elsewhere
    err = capsys.readouterr().err
    assert "not a gateway data folder" not in err
    assert f"no audit log in {data}" in err
