"""Command-line subcommands, one module per group; each exposes ``register(subparsers)``.

Every command gets its settings one way: the options of ``settings_options()`` (a
parent parser of every command's parser: ``CommandParser``), the environment and the ``--config``
file, turned into ``Settings`` by ``command_settings`` (``load_settings``, as
``serve`` always did). ``gateway.__main__`` calls it once and hands the result to the
command: ``func(args, settings)``. A command raises domain errors; ``gateway.__main__``
turns each into an exit code and one line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway.settings import Settings, load_settings

__all__ = ["Command", "CommandParser", "command_settings", "os_error_text", "settings_options"]

Command = Callable[[argparse.Namespace, Settings], int]
"""A subcommand: its parsed options and its settings in, an exit code out."""

OPTION_SETTINGS = ("data_dir", "postgres_dsn", "listen", "trust_list_file", "workers")
"""Settings a command-line option may give (over the file and the environment); the
option's ``dest`` is the setting's name."""


def settings_options() -> argparse.ArgumentParser:
    """The options every command takes, as a parent parser: ``--data-dir``, ``--config``,
    ``--postgres-dsn``."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--data-dir", type=Path, metavar="DIR",
                        help="the instance's data folder (default: ECERT_DATA_DIR, or "
                             "data_dir in --config)")
    parent.add_argument("--config", type=Path, metavar="FILE",
                        help="settings file (TOML; see config/gateway.example.toml)")
    parent.add_argument("--postgres-dsn", metavar="DSN",
                        help="the stores' PostgreSQL (default: ECERT_POSTGRES_DSN, or "
                             "postgres_dsn in --config; none: SQLite in the data folder)")
    return parent


class CommandParser(argparse.ArgumentParser):
    """The parser of one command: ``settings_options()`` is always among its parents.

    Given as ``parser_class`` to a group's ``add_subparsers``, so that no command of the
    group can be made without the settings options.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["parents"] = [settings_options(), *kwargs.get("parents", ())]
        super().__init__(*args, **kwargs)


def command_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """The settings of one command: ``--config``'s file, then ``environ``'s ``ECERT_*``
    variables, then the options (``OPTION_SETTINGS``) given on the command line.

    Reads the settings file (blocking). Raises ``SettingsError`` (and ``OSError`` when
    the file cannot be read).
    """
    config: Path | None = getattr(args, "config", None)
    toml_text = None if config is None else config.read_text(encoding="utf-8")
    options = {name: getattr(args, name) for name in OPTION_SETTINGS
               if getattr(args, name, None) is not None}
    return load_settings(environ, toml_text, options)


def os_error_text(exc: OSError) -> str:
    """An OS error as a user reads it: ``FILE: reason``, without ``[Errno N]``."""
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return reason
    if exc.filename2 is not None:
        return f"{exc.filename} -> {exc.filename2}: {reason}"
    return f"{exc.filename}: {reason}"
