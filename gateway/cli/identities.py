"""``clients add`` and ``operators add``: make a credential, print it once."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path

from gateway.audit.event import ActorKind, AuditEvent, EventType
from gateway.identity import IdentityKind, Role, add_identity

__all__ = ["register"]


def _record(args: argparse.Namespace, kind: IdentityKind, name: str, role: Role | None) -> None:
    from gateway.audit import append_cli_event  # noqa: PLC0415 - keeps this module light

    # The CLI is part of the entry point: it may read the environment (STYLE.md).
    dsn = args.postgres_dsn or os.environ.get("ECERT_POSTGRES_DSN") or None
    append_cli_event(Path(args.data_dir), AuditEvent(
        event_type=EventType.IDENTITY_CHANGE,
        actor_kind=ActorKind.CLI,
        actor_id="cli",
        at=datetime.now(UTC),
        outcome="ok",
        details={"action": f"{kind.value}-added", "name": name,
                 "role": None if role is None else role.value},
    ), postgres_dsn=dsn)


def _add_client(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    token = add_identity(data_dir, IdentityKind.CLIENT, args.name)
    _record(args, IdentityKind.CLIENT, args.name, None)
    print(f"local system {args.name!r} added; its API key (shown once, stored only as a hash):")
    print(token)
    return 0


def _add_operator(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    role = Role(args.role)
    token = add_identity(data_dir, IdentityKind.OPERATOR, args.name, role)
    _record(args, IdentityKind.OPERATOR, args.name, role)
    print(f"operator {args.name!r} ({role.value}) added; token (shown once, stored as a hash):")
    print(token)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``clients`` and ``operators`` to the command line."""
    clients = subparsers.add_parser("clients", help="local systems and their API keys")
    clients_sub = clients.add_subparsers(dest="action", required=True)
    add = clients_sub.add_parser("add", help="add a local system; prints its API key")
    add.add_argument("name")
    add.add_argument("--data-dir", required=True)
    add.add_argument("--postgres-dsn",
                     help="the audit log's PostgreSQL (default ECERT_POSTGRES_DSN)")
    add.set_defaults(func=_add_client)

    operators = subparsers.add_parser("operators", help="operators, approvers, auditors, viewers")
    operators_sub = operators.add_subparsers(dest="action", required=True)
    add_op = operators_sub.add_parser("add", help="add an operator; prints its token")
    add_op.add_argument("name")
    add_op.add_argument("--role", required=True, choices=[r.value for r in Role])
    add_op.add_argument("--data-dir", required=True)
    add_op.add_argument("--postgres-dsn",
                        help="the audit log's PostgreSQL (default ECERT_POSTGRES_DSN)")
    add_op.set_defaults(func=_add_operator)
