"""``ecert-gateway``: the command line. The only place an error becomes an exit code."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from importlib import metadata
from pathlib import Path

from aiohttp import web

from gateway.cli import audit, identities, licences, os_error_text, registry, trust
from gateway.credentials.store import IdentityError
from gateway.infra.datafolder import DataFolderError, create_data_folder, require_data_folder
from gateway.settings import SettingsError, load_settings
from gateway.web.app import create_app
from gateway.web.logs import configure_logging
from gateway.web.runner import serve
from trust import TrustError

__all__ = ["main"]


async def _settle_heap(_: web.Application) -> None:
    """Leave what start-up built out of the cyclic collector's work.

    The trust list, the registry, the audit tree and the rest live as long as
    the process; frozen, they are no longer traversed by every collection that
    the requests' short-lived objects trigger.
    """
    gc.collect()
    gc.freeze()


def _serve(args: argparse.Namespace) -> int:
    toml_text = Path(args.config).read_text(encoding="utf-8") if args.config else None
    settings = load_settings(
        os.environ,
        toml_text,
        {"listen": args.listen, "data_dir": args.data_dir, "trust_list_file": args.trust_list},
    )
    configure_logging(settings.log_level)
    create_data_folder(settings.data_dir)
    app = create_app(settings)
    app.on_startup.append(_settle_heap)  # after the cleanup contexts opened every store
    logging.getLogger("gateway").info(
        "gateway starting", extra={"listen": settings.listen, "data_dir": str(settings.data_dir)}
    )
    # Stops accepting on SIGTERM/SIGINT, lets in-flight requests finish (up to
    # shutdown_timeout_s), then runs the cleanup contexts in reverse (gateway.web.runner).
    serve(app, settings)
    return 0


def _init(args: argparse.Namespace) -> int:
    path = Path(args.data_dir)
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
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--listen", help="HOST:PORT (default 127.0.0.1:8080)")
    serve.add_argument("--data-dir", help="folder for every store and key of this instance")
    serve.add_argument("--trust-list", help="trust-list JSON file to start from")
    serve.add_argument("--config", help="settings file (TOML)")
    serve.set_defaults(func=_serve)
    init = sub.add_parser("init", help="make a new, empty data folder for an instance")
    init.add_argument("--data-dir", required=True, help="the folder to make")
    init.set_defaults(func=_init)
    identities.register(sub)
    audit.register(sub)
    registry.register(sub)
    licences.register(sub)
    trust.register(sub)
    return parser


_MAKE_DATA_FOLDER = frozenset({"init", "serve"})
"""The only commands that may make a data folder; every other one needs an existing one."""
_SUBCOMMANDS = ("audit_command", "trust_command", "registry_command", "action")


def _command_name(args: argparse.Namespace) -> str:
    """``ecert-gateway trust list``: the command as the user typed it, for messages."""
    words = [args.command]
    words += [getattr(args, dest) for dest in _SUBCOMMANDS if getattr(args, dest, None)]
    return " ".join(["ecert-gateway", *words])


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; exit non-zero with a one-line reason on failure.

    Every command that takes ``--data-dir`` other than ``init`` and ``serve``
    refuses a path that is not a gateway data folder before it runs, so a
    mistyped path creates nothing (``gateway.infra.datafolder``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        data_dir = getattr(args, "data_dir", None)
        if args.command not in _MAKE_DATA_FOLDER and data_dir is not None:
            require_data_folder(Path(data_dir))
        return int(args.func(args))
    except OSError as exc:
        print(f"{_command_name(args)}: {os_error_text(exc)}", file=sys.stderr)
        return 1
    except (SettingsError, IdentityError, TrustError, DataFolderError, ValueError) as exc:
        print(f"{_command_name(args)}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
