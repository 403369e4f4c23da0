"""``ecert-gateway``: the command line. The only place an error becomes an exit code."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Mapping
from importlib import metadata
from typing import Final

from aiohttp import web

from gateway.audit import AuditStoreError, PruneError, ReceiptError
from gateway.audit.event import AuditUnavailableError
from gateway.cli import (
    Command,
    audit,
    command_settings,
    identities,
    licences,
    os_error_text,
    receipt,
    registry,
    settings_options,
    trust,
)
from gateway.credentials.store import CredentialError, IdentityError
from gateway.infra.datafolder import DataFolderError, create_data_folder, require_data_folder
from gateway.infra.sql import StorageError
from gateway.licences.store import LicenceError
from gateway.settings import Settings, SettingsError
from gateway.trustlist.service import AdminError, TrustStoreError
from gateway.web.app import create_app
from gateway.web.logs import configure_logging
from gateway.web.runner import serve
from gateway.web.workers import WorkersError, check_workers, supervise
from registry import RegistryError
from trust import ChangeError, TrustError

__all__ = ["EXIT_CODES", "exit_for", "main", "run_command"]


GC_YOUNG_THRESHOLD = 20_000
"""Container objects allocated (net) before the youngest generation is collected."""


async def _settle_heap(_: web.Application) -> None:
    """Leave what start-up built out of the cyclic collector's work, and collect less often.

    The trust list, the registry, the audit tree and the rest live as long as
    the process; frozen, they are no longer traversed by every collection that
    the requests' short-lived objects trigger. Those objects are freed by their
    reference counts; a collection of the youngest generation finds little but
    the requests still in flight, so it runs every 20,000 allocations rather than
    Python's 700 (a few MB more at most between collections; what it saves is in
    docs/performance.md).
    """
    gc.collect()
    gc.freeze()
    _young, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    check_workers(settings)
    configure_logging(settings.log_level)
    create_data_folder(settings.data_dir)

    def make_app(settings: Settings) -> web.Application:
        app = create_app(settings)
        app.on_startup.append(_settle_heap)  # after the cleanup contexts opened every store
        return app

    logging.getLogger("gateway").info(
        "gateway starting", extra={"listen": settings.listen, "data_dir": str(settings.data_dir),
                                   "workers": settings.workers}
    )
    if settings.workers > 1:
        # One listening socket, N forked workers, each with its own application
        # (gateway.web.workers).
        return supervise(make_app, settings)
    # Stops accepting on SIGTERM/SIGINT, lets in-flight requests finish (up to
    # shutdown_timeout_s), then runs the cleanup contexts in reverse (gateway.web.runner).
    serve(make_app(settings), settings)
    return 0


def _init(args: argparse.Namespace, settings: Settings) -> int:
    path = settings.data_dir
    if create_data_folder(path):
        print(f"made a new gateway data folder: {path}")
    else:
        print(f"{path} is already a gateway data folder; nothing changed")
    return 0


DESCRIPTION = """\
The Huzhou e-licence mutual-recognition gateway: it tells Huzhou's local systems
whether a partner region's e-licence is genuine, valid and recognised, answers
partner regions' queries of Huzhou licences, and keeps the operators' trust-anchor
list and a tamper-evident audit log.

Every command works on one instance's data folder (--data-dir DIR), made by
`init` or by the first `serve`; other commands refuse a folder that is not one."""

EPILOG = """\
examples:
  ecert-gateway init --data-dir /srv/ecert
  ecert-gateway serve --data-dir /srv/ecert --listen 0.0.0.0:8080 --trust-list list.json
  ecert-gateway clients add window-01 --data-dir /srv/ecert      # prints its API key once
  ecert-gateway operators add olga --role operator --data-dir /srv/ecert
  ecert-gateway trust list --data-dir /srv/ecert                 # partners and anchors now
  ecert-gateway audit query --data-dir /srv/ecert --event-type partner-query
  ecert-gateway COMMAND --help                                   # a command's options

Settings: --config FILE (TOML, see config/gateway.example.toml) and ECERT_*
environment variables. Documentation: README.md and docs/ in the repository."""


def _version() -> str:
    """The installed package's version (``pyproject.toml``)."""
    try:
        return metadata.version("ecert-gateway")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The full command-line parser."""
    parser = argparse.ArgumentParser(prog="ecert-gateway", description=DESCRIPTION,
                                     epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-V", "--version", action="version",
                        version=f"%(prog)s {_version()}", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, title="commands")
    serve = sub.add_parser("serve", help="run the gateway", parents=[settings_options()])
    serve.add_argument("--listen", help="HOST:PORT (default 127.0.0.1:8080)")
    serve.add_argument("--workers", type=int, metavar="N",
                       help="worker processes on one port (default 1; more needs redis_url)")
    serve.add_argument("--trust-list", dest="trust_list_file", metavar="FILE",
                       help="trust-list JSON file to start from")
    serve.set_defaults(func=_serve)
    init = sub.add_parser("init", help="make a new, empty data folder for an instance",
                          parents=[settings_options()])
    init.set_defaults(func=_init)
    identities.register(sub)
    audit.register(sub)
    receipt.register(sub)
    registry.register(sub)
    licences.register(sub)
    trust.register(sub)
    return parser


_MAKE_DATA_FOLDER = frozenset({"init", "serve"})
"""The only commands that may make a data folder; every other one needs an existing one."""
_SUBCOMMANDS = ("audit_command", "receipt_command", "trust_command", "registry_command",
                "action")

EXIT_CODES: Final[Mapping[type[Exception], tuple[int, str]]] = {
    # The settings and the data folder, before any command runs.
    SettingsError: (1, ""),
    WorkersError: (1, ""),
    DataFolderError: (1, ""),
    # A file named on the command line (or --config) that cannot be read or written.
    OSError: (1, ""),
    # Refusals of the stores and workflows the commands drive.
    IdentityError: (1, ""),
    CredentialError: (1, ""),
    AdminError: (1, ""),
    TrustStoreError: (1, ""),
    ChangeError: (1, "change refused: "),
    TrustError: (1, ""),
    LicenceError: (1, ""),
    RegistryError: (1, ""),
    AuditUnavailableError: (1, "audit log unavailable: "),
    AuditStoreError: (1, ""),
    PruneError: (1, "prune refused: "),
    ReceiptError: (1, "receipt does not verify: "),
    StorageError: (1, ""),
    # Values refused as they are read (a JSON file, a time): the message says which.
    ValueError: (1, ""),
}
"""Each error a command may raise, as the exit status and the start of the one line
``ecert-gateway COMMAND: PREFIX MESSAGE`` on standard error. An error is found by its
class or the nearest base class listed; anything else is a bug and ends with its
traceback."""


def _command_name(args: argparse.Namespace) -> str:
    """``ecert-gateway trust list``: the command as the user typed it, for messages."""
    words = [args.command]
    words += [getattr(args, dest) for dest in _SUBCOMMANDS if getattr(args, dest, None)]
    return " ".join(["ecert-gateway", *words])


def exit_for(exc: Exception) -> tuple[int, str] | None:
    """The exit status and the message (one line) ``exc`` ends a command with; None for
    an error no command is expected to raise."""
    for cls in type(exc).__mro__:
        mapped = EXIT_CODES.get(cls)
        if mapped is not None:
            code, prefix = mapped
            if isinstance(exc, OSError):
                text = os_error_text(exc)
            else:
                text = next(iter(str(exc).splitlines()), "") or type(exc).__name__
            return code, prefix + text
    return None


def _report(args: argparse.Namespace, exc: Exception) -> int:
    """Print ``exc``'s one line and return its exit status; re-raise an unexpected error."""
    mapped = exit_for(exc)
    if mapped is None:
        raise exc
    code, message = mapped
    print(f"{_command_name(args)}: {message}", file=sys.stderr)
    return code


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run the command ``args`` were parsed for, with ``settings``; an error in
    ``EXIT_CODES`` becomes its exit status and one line on standard error."""
    command: Command = args.func
    try:
        return int(command(args, settings))
    except Exception as exc:  # _report re-raises what EXIT_CODES does not list
        return _report(args, exc)


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; exit non-zero with a one-line reason on failure.

    The settings are built once, from the command's options, the environment and
    ``--config`` (``gateway.cli.command_settings``), and handed to the command. Every
    command other than ``init`` and ``serve`` refuses a data folder that is not one
    before it runs, so a mistyped path creates nothing (``gateway.infra.datafolder``).
    Errors become exit statuses and lines here only (``EXIT_CODES``).
    """
    args = build_parser().parse_args(argv)
    offline = getattr(args, "offline", None)
    if offline is not None:
        # A command given all it needs on its command line runs without settings or a data
        # folder (receipt verify --vkey); it answers None when it needs them after all.
        try:
            code = offline(args)
        except Exception as exc:  # _report re-raises what EXIT_CODES does not list
            return _report(args, exc)
        if code is not None:
            return int(code)
    try:
        settings = command_settings(args, os.environ)
        if args.command not in _MAKE_DATA_FOLDER:
            require_data_folder(settings.data_dir)
    except Exception as exc:  # _report re-raises what EXIT_CODES does not list
        return _report(args, exc)
    return run_command(args, settings)


if __name__ == "__main__":
    sys.exit(main())
