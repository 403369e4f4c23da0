"""What a user of ``ecert-gateway`` reads: reasons instead of raw errors, help, version."""

from __future__ import annotations

import argparse
import os
import shlex
from importlib import metadata
from pathlib import Path

import pytest

from gateway.__main__ import build_parser, main

pytestmark = pytest.mark.allow_blocking


class TestReasonsNotRawErrors:
    """Each of these printed a raw OS or library message (``[Errno 17] File exists`` ...)."""

    def test_init_on_a_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The file in the way is named, and what to do."""
        path = tmp_path / "data"
        path.write_text("", encoding="utf-8")
        assert 1 == main(["init", "--data-dir", str(path)])
        assert [(f"ecert-gateway init: {path} exists and is a file, not a folder; give another "
                "--data-dir, or move the file away")] == capsys.readouterr().err.splitlines()

    def test_init_below_a_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """``[Errno 20] Not a directory``: the file in the path is named."""
        blocker = tmp_path / "srv"
        blocker.write_text("", encoding="utf-8")
        path = blocker / "ecert"
        assert 1 == main(["init", "--data-dir", str(path)])
        assert [(f"ecert-gateway init: {blocker} (in the path of {path}) exists and is a file, "
                "not a folder; give another --data-dir, or move the file away")
                ] == capsys.readouterr().err.splitlines()

    @pytest.mark.parametrize("command", ["init", "serve"])
    def test_dangling_link(self, command: str, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
        """``[Errno 17] File exists`` for a link to a folder that is not there (yet)."""
        link = tmp_path / "data"
        os.symlink(tmp_path / "mounted" / "ecert", link)
        assert 1 == main([command, "--data-dir", str(link)])
        assert [(f"ecert-gateway {command}: {link} is a link to {tmp_path}/mounted/ecert, which "
                "does not exist; make that folder first, or give another --data-dir")
                ] == capsys.readouterr().err.splitlines()
        assert not (tmp_path / "mounted").exists()

    def test_missing_input_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """``[Errno 2] No such file or directory: 'x'`` becomes ``x: No such file or directory``."""
        data = tmp_path / "data"
        assert 0 == main(["init", "--data-dir", str(data)])
        assert 0 == main(["operators", "add", "olga", "--role", "operator", "--data-dir",
                          str(data)])
        token = tmp_path / "olga.token"
        token.write_text(capsys.readouterr().out.splitlines()[-1], encoding="utf-8")
        missing = tmp_path / "changes.json"
        assert 1 == main(["trust", "propose", "--file", str(missing), "--token-file", str(token),
                          "--data-dir", str(data)])
        assert 1 == main(["registry", "import", str(missing), "--data-dir", str(data)])
        assert 1 == main(["audit", "export", "--out", str(tmp_path), "--data-dir", str(data)])
        assert [f"ecert-gateway trust propose: {missing}: No such file or directory",
                f"ecert-gateway registry import: {missing}: No such file or directory",
                f"ecert-gateway audit export: {tmp_path}: Is a directory"
                ] == capsys.readouterr().err.splitlines()

    @pytest.mark.parametrize(("where", "level"), [("env", "LOUD"), ("toml", "verbose")])
    def test_unknown_log_level(self, where: str, level: str, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
        """``Unknown level: 'LOUD'`` from logging: now the setting and its values are named."""
        data = tmp_path / "data"
        argv = ["serve", "--data-dir", str(data), "--listen", "127.0.0.1:1"]
        if where == "env":
            monkeypatch.setenv("ECERT_LOG_LEVEL", level)
        else:
            config = tmp_path / "gateway.toml"
            config.write_text(f'log_level = "{level}"\n', encoding="utf-8")
            argv += ["--config", str(config)]
        assert 1 == main(argv)
        assert [("ecert-gateway serve: log_level: expected one of DEBUG, INFO, WARNING, ERROR, "
                f"CRITICAL (any case), got '{level}'")] == capsys.readouterr().err.splitlines()
        assert not data.exists()


class TestHelpAndVersion:
    """``ecert-gateway --help`` is written for users; ``--version`` exists."""

    def test_top_level_help_is_for_users(self, capsys: pytest.CaptureFixture[str]) -> None:
        """It showed the module's developer docstring; now a description and examples."""
        with pytest.raises(SystemExit) as stopped:
            main(["--help"])
        out = capsys.readouterr().out
        assert 0 == stopped.value.code
        assert "the only place an error becomes an exit code" not in out.lower()
        assert "``" not in out
        assert "e-licence mutual-recognition gateway" in out
        commands = set(_subcommands())
        section = out.split("commands:")[1].split("examples:")[0].splitlines()
        listed = {line.split()[0] for line in section  # "    NAME  help", not continuations
                  if line.startswith("    ") and not line.startswith("     ")}
        assert commands == listed
        assert "examples:" in out

    def test_every_example_parses(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Each example in the epilog is a command line the parser accepts."""
        from gateway.__main__ import EPILOG

        examples = [line.split("#")[0].strip() for line in EPILOG.splitlines()
                    if line.startswith("  ecert-gateway ") and "COMMAND" not in line]
        assert len(examples) >= 5
        for example in examples:
            build_parser().parse_args(shlex.split(example)[1:])

    @pytest.mark.parametrize("flag", ["--version", "-V"])
    def test_version_from_the_package_metadata(self, flag: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
        """``ecert-gateway --version`` prints the installed package's version."""
        with pytest.raises(SystemExit) as stopped:
            main([flag])
        assert 0 == stopped.value.code
        assert f"ecert-gateway {metadata.version('ecert-gateway')}\n" == capsys.readouterr().out


def _subcommands() -> list[str]:
    parser = build_parser()
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(action.choices)
