"""``clients`` and ``operators``: list, add, disable, enable, rotate, expire.

Each change is planned, audited (``identity-change``, actor ``cli``), then
committed, as the admin API does; a refused change (other than an unknown
name) is audited too, best-effort. Only ``add`` and ``rotate`` print a secret:
once, alone on the last line. Nothing prints a hash. These commands take no
operator token: whoever may write the data folder may manage its credentials
(as ``operators add`` always could), which is also the way back when no
approver can log in.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

import orjson

from gateway.audit.event import AuditEvent, AuditUnavailableError
from gateway.cli import CommandParser
from gateway.credentials.store import (
    Credential,
    CredentialAction,
    CredentialChange,
    CredentialRequest,
    IdentityError,
    IdentityKind,
    IdentityRefusal,
    Role,
    change_event,
    commit_change,
    identity_db_path,
    list_credentials,
    open_identities,
    plan_change,
    refusal_event,
)
from gateway.settings import Settings

__all__ = ["register"]

_GROUPS = {IdentityKind.CLIENT: "clients", IdentityKind.OPERATOR: "operators"}
_WHEN = "a duration (90d, 12h, 30m, 2w) or an RFC 3339 time (2027-01-31T00:00:00Z)"


def _append(settings: Settings, event: AuditEvent) -> None:
    from gateway.audit import append_cli_event  # noqa: PLC0415 - keeps this module light

    append_cli_event(settings.data_dir, event, postgres_dsn=settings.postgres_dsn,
                     gateway_id=settings.gateway_id)


def _audit_refusal(settings: Settings, request: CredentialRequest,
                   exc: IdentityError, at: datetime) -> None:
    """Record a refused change; best-effort (a warning says when it could not be)."""
    if exc.refusal is IdentityRefusal.NOT_FOUND or not settings.data_dir.is_dir():
        return
    try:
        _append(settings, refusal_event(request, str(exc), actor="cli", via_cli=True, at=at,
                                        refusal=exc.refusal.value))
    except AuditUnavailableError as failure:
        print(f"warning: the refusal could not be audited: {failure}", file=sys.stderr)


def _apply(settings: Settings, request: CredentialRequest) -> CredentialChange:
    """Plan, audit, commit: no record, no change."""
    at = datetime.now(UTC)
    conn = open_identities(settings.data_dir, settings.postgres_dsn)
    try:
        try:
            change = plan_change(conn, request, at, by="cli")
        except IdentityError as exc:
            _audit_refusal(settings, request, exc, at)
            raise
        _append(settings, change_event(change, actor="cli", via_cli=True))
        try:
            commit_change(conn, change)
        except IdentityError as exc:
            _audit_refusal(settings, request, exc, at)
            raise
    finally:
        conn.close()
    return change


def _when(moment: datetime | None, none: str = "never") -> str:
    return none if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _label(kind: IdentityKind, name: str, role: Role | None) -> str:
    return f"{kind.label} {name!r}" + ("" if role is None else f" ({role.value})")


def _list(args: argparse.Namespace, settings: Settings) -> int:
    data_dir = settings.data_dir
    found: list[Credential] = []
    dsn = settings.postgres_dsn
    if dsn or identity_db_path(data_dir).exists():
        conn = open_identities(data_dir, dsn)
        try:
            found = list_credentials(conn, datetime.now(UTC), args.kind)
        finally:
            conn.close()
    if args.json:
        sys.stdout.write(orjson.dumps([c.to_json() for c in found],
                                      option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    header = ("NAME", "KIND", "ROLE", "CREATED", "EXPIRES", "STATE", "OLD SECRET UNTIL")
    rows = [(c.name, c.kind.value, "-" if c.role is None else c.role.value,
             _when(c.created_at), _when(c.expires_at), c.state.value,
             _when(c.old_secret_until, "-")) for c in found]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        print(f"(no {_GROUPS[args.kind]} in this data folder)")
    return 0


def _add(args: argparse.Namespace, settings: Settings) -> int:
    kind: IdentityKind = args.kind
    role = Role(args.role) if kind is IdentityKind.OPERATOR else None
    change = _apply(settings, CredentialRequest(action=CredentialAction.ADD, kind=kind,
                                            name=args.name, role=role, expires=args.expires))
    what = "its API key" if kind is IdentityKind.CLIENT else "token"
    print(f"{_label(kind, args.name, role)} added, expires {_when(change.expires_at)}; "
          f"{what} (shown once, stored only as a hash):")
    print(change.secret)
    return 0


def _disable(args: argparse.Namespace, settings: Settings) -> int:
    change = _apply(settings, CredentialRequest(action=CredentialAction.DISABLE, kind=args.kind,
                                            name=args.name, reason=args.reason))
    print(f"{_label(args.kind, args.name, change.role)} disabled: its secrets are refused "
          "(a running gateway on this folder refuses them within a second)")
    return 0


def _enable(args: argparse.Namespace, settings: Settings) -> int:
    change = _apply(settings, CredentialRequest(action=CredentialAction.ENABLE, kind=args.kind,
                                            name=args.name))
    print(f"{_label(args.kind, args.name, change.role)} enabled")
    return 0


def _rotate(args: argparse.Namespace, settings: Settings) -> int:
    change = _apply(settings, CredentialRequest(action=CredentialAction.ROTATE, kind=args.kind,
                                            name=args.name, expires=args.expires,
                                            overlap=args.overlap))
    old = ("no longer works" if change.old_secret_until is None
           or change.old_secret_until <= change.at
           else f"works until {_when(change.old_secret_until)}")
    print(f"{_label(args.kind, args.name, change.role)} rotated; the old secret {old}; "
          f"the new one expires {_when(change.expires_at)} (shown once, stored only as a hash):")
    print(change.secret)
    return 0


def _expire(args: argparse.Namespace, settings: Settings) -> int:
    change = _apply(settings, CredentialRequest(action=CredentialAction.SET_EXPIRY, kind=args.kind,
                                            name=args.name, expires=args.expires))
    print(f"{_label(args.kind, args.name, change.role)} now expires {_when(change.expires_at)}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``clients`` and ``operators`` to the command line."""
    for kind, group, title in (
            (IdentityKind.CLIENT, "clients", "local systems and their API keys"),
            (IdentityKind.OPERATOR, "operators", "operators, approvers, auditors, viewers")):
        parser = subparsers.add_parser(group, help=title)
        commands = parser.add_subparsers(dest="action", required=True,
                                     parser_class=CommandParser)
        noun = "API key" if kind is IdentityKind.CLIENT else "token"

        list_ = commands.add_parser("list", help=f"every {kind.label}: state, expiry (no secrets)")
        list_.add_argument("--json", action="store_true", help="JSON instead of a table")
        list_.set_defaults(func=_list, kind=kind)

        add = commands.add_parser("add", help=f"add a {kind.label}; prints its {noun} once")
        add.add_argument("name")
        if kind is IdentityKind.OPERATOR:
            add.add_argument("--role", required=True, choices=[r.value for r in Role])
        add.add_argument("--expires", help=f"when the {noun} stops working: {_WHEN}; "
                                           "default never")
        add.set_defaults(func=_add, kind=kind)

        disable = commands.add_parser("disable", help=f"revoke: refuse the {noun} at once")
        disable.add_argument("name")
        disable.add_argument("--reason", help="why (kept with the credential and audited)")
        disable.set_defaults(func=_disable, kind=kind)

        enable = commands.add_parser("enable", help=f"let a disabled {noun} work again")
        enable.add_argument("name")
        enable.set_defaults(func=_enable, kind=kind)

        rotate = commands.add_parser("rotate", help=f"replace the {noun}; prints the new one once")
        rotate.add_argument("name")
        rotate.add_argument("--expires", help=f"when the new {noun} stops working: {_WHEN}, or "
                                              "never; default: the old one's lifetime")
        rotate.add_argument("--overlap", help=f"how long the old {noun} keeps working: "
                                              f"{_WHEN}; at most 30 days; default: not at all")
        rotate.set_defaults(func=_rotate, kind=kind)

        expire = commands.add_parser("expire", help=f"set or remove the {noun}'s expiry")
        expire.add_argument("name")
        expire.add_argument("--expires", required=True, help=f"{_WHEN}, or never")
        expire.set_defaults(func=_expire, kind=kind)
