"""``ecert-gateway trust list|proposals|show|propose|approve|reject|history|diff|export|import``.

``trust list`` prints the current trust list as a table (partners and their
anchors); ``trust proposals`` lists the proposals (``trust list`` did before).

The CLI works on the data folder directly (its trust-list store and audit
log) through the same ``TrustListService`` as ``/v1/admin/``, so every step
plans, audits and commits as over HTTP, refusals included: this module only
parses, finds the acting operator, calls the service and prints its outcome.
A write takes the acting operator's own token (``--token-file FILE`` or
``ECERT_OPERATOR_TOKEN``, ``gateway.cli.credentials``), which must belong to an
enabled operator with a fitting role; a refused credential is audited too. A
proposal is applied only when ``approvals_required`` other operators approved
it. A running gateway serves the new version within a poll interval (its
``TrustWatcher``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import unicodedata
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from gateway.audit import append_cli_event
from gateway.audit.event import AuditEvent
from gateway.cli import CommandParser
from gateway.cli.credentials import acting_operator, add_credential_arguments, read_token
from gateway.credentials.store import CredentialError, Role
from gateway.infra.signing import SigningKey, load_or_create_key
from gateway.settings import Settings
from gateway.trustlist import (
    AdminError,
    AdminRefusal,
    ImportOutcome,
    ProposalStatus,
    StoredVersion,
    TrustListService,
    change_summary,
    export_keys,
    trusted_signers,
)
from trust import (
    EXPORT_ALGS,
    Alg,
    Anchor,
    AnchorStatus,
    ImportRefusal,
    SignedListError,
    TrustList,
    VerifyingKey,
    diff_documents,
)

__all__ = ["register"]

T = TypeVar("T")


def _now() -> datetime:
    """The system clock: the time of every step the CLI records."""
    return datetime.now(UTC)


class _CliAudit:
    """The audit port of a CLI command: each record appended to the data folder's log.

    Sequenced with a running gateway's records (``append_cli_event``); the
    blocking append runs on a worker thread.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def append(self, event: AuditEvent) -> int:
        """Make the record durable; ``AuditUnavailableError`` when it cannot be."""
        settings = self._settings
        return await asyncio.to_thread(
            append_cli_event, settings.data_dir, event, postgres_dsn=settings.postgres_dsn,
            gateway_id=settings.gateway_id)


def _warn_unaudited(_: AuditEvent, exc: Exception) -> None:
    """A refusal whose record the log could not take: the refusal stands, a line says so."""
    print(f"warning: the refusal could not be audited: {exc}", file=sys.stderr)


def _service(settings: Settings, *, signing_key: SigningKey | None = None,
             sm2_signing_key: SigningKey | None = None,
             signers: Mapping[str, VerifyingKey] | None = None) -> TrustListService:
    """The trust-list service of the admin API, for one CLI command on the data folder."""
    return TrustListService(settings=settings, audit=_CliAudit(settings), clock=_now,
                            via_cli=True, signing_key=signing_key, signers=signers or {},
                            sm2_signing_key=sm2_signing_key,
                            on_unaudited_refusal=_warn_unaudited)


def _run(service: TrustListService, step: Callable[[TrustListService], Awaitable[T]]) -> T:
    """Run one step of ``service`` to its end, then close the service's store."""

    async def run() -> T:
        try:
            return await step(service)
        finally:
            await service.close()

    return asyncio.run(run())


def _operator(settings: Settings, args: argparse.Namespace, roles: AbstractSet[Role], *,
              proposal_id: str | None = None) -> str:
    """The acting operator: the owner of the presented token, enabled, holding one of ``roles``.

    A refused credential is audited (``trust-list-credential-refused``) with
    the command, the refusal and the name given with ``--as``; never the token.
    A folder that does not exist is no instance's: nothing is created there for
    the record.
    """
    try:
        token = read_token(args.token_file, os.environ)
        return acting_operator(settings.data_dir, token, roles, claimed=args.as_name,
                               postgres_dsn=settings.postgres_dsn).name
    except CredentialError as exc:
        if settings.data_dir.is_dir():
            _refuse_credential(settings, args, exc, proposal_id)
        raise


def _refuse_credential(settings: Settings, args: argparse.Namespace, exc: CredentialError,
                       proposal_id: str | None) -> None:
    """Audit a refused credential; the actor is the token's owner if it names one, else cli."""
    actor = "cli" if exc.identity is None else exc.identity.name
    _run(_service(settings), lambda service: service.refuse_credential(
        actor, command=f"trust {args.trust_command}", refusal=exc.refusal.value,
        claimed_as=args.as_name, reason=str(exc), proposal_id=proposal_id))


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _width(text: str) -> int:
    """Columns ``text`` takes on a terminal: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns two spaces apart, by display width; no trailing spaces."""
    widths = [max(_width(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell + " " * (w - _width(cell)) for cell, w in zip(row, widths, strict=True))
            .rstrip() for row in rows]


def _anchor_note(anchor: Anchor, now: datetime) -> str:
    notes = []
    if anchor.status is AnchorStatus.REVOKED:
        reason = anchor.revocation_reason.value if anchor.revocation_reason else "no reason"
        when = f" at {_iso(anchor.revoked_at)}" if anchor.revoked_at else ""
        notes.append(f"revoked{when} ({reason})")
    if now > anchor.valid_until:
        notes.append("window over")
    elif now < anchor.valid_from:
        notes.append("window not started")
    if anchor.key_problem:
        notes.append(f"key unusable: {anchor.key_problem}")
    return "; ".join(notes)


def _trust_list_table(trust_list: TrustList, now: datetime) -> list[str]:
    """The lines ``trust list`` prints: a heading, one row per anchor, a summary."""
    stale = ("; PAST next_update: verifications answer TRY_LATER until it is renewed"
             if now > trust_list.next_update else "")
    lines = [(f"trust list version {trust_list.version}, issued {_iso(trust_list.issued_at)} "
             f"by {trust_list.issuer}, next update {_iso(trust_list.next_update)}{stale}"), ""]
    rows: list[tuple[str, ...]] = [("REGION", "NAME", "STATE", "USE", "KID", "ANCHOR",
                                    "VALID FROM", "VALID UNTIL", "NOTE")]
    partners = sorted(trust_list.partners.values(), key=lambda p: p.region_code)
    for partner in partners:
        first = (partner.region_code, partner.name, partner.status.value)
        if not partner.anchors:
            rows.append((*first, "(no anchors)", "", "", "", "", ""))
        for n, anchor in enumerate(partner.anchors):
            rows.append((*(first if n == 0 else ("", "", "")), anchor.use.value, anchor.kid,
                         anchor.status.value, _iso(anchor.valid_from), _iso(anchor.valid_until),
                         _anchor_note(anchor, now)))
    if partners:
        lines += _table(rows)
    states = Counter(p.status.value for p in partners)
    anchors = sum(len(p.anchors) for p in partners)
    by_state = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    lines += ["", (f"{len(partners)} partner(s){f' ({by_state})' if partners else ''}, "
                  f"{anchors} anchor(s)")]
    return lines


def _list(args: argparse.Namespace, settings: Settings) -> int:
    """The current trust list: every partner and its anchors, as a table."""
    if args.status is not None:
        raise ValueError("`trust list` shows the trust list itself; proposals are listed by "
                         f"`trust proposals --status {args.status}`")
    row = _run(_service(settings), lambda service: service.find_version())
    if row is None:
        print("no trust list stored yet: the gateway starts from --trust-list FILE or "
              "DIR/trust-list.json, else from an empty list (version 0, trusts nobody)")
        return 0
    print("\n".join(_trust_list_table(TrustList.from_json(row.document), datetime.now(UTC))))
    return 0


def _proposals(args: argparse.Namespace, settings: Settings) -> int:
    """Proposals, newest first, with their approvals and changes."""
    status = ProposalStatus(args.status) if args.status else None
    for p in _run(_service(settings), lambda service: service.proposals(status)):
        print(f"{p.id}  {p.status.value:8}  {p.created_at}  by {p.author}  "
              f"approvals {len(p.approvals)}/{settings.approvals_required}  "
              + "; ".join(change_summary(p.changes)))
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    if args.proposal:
        proposal = _run(_service(settings), lambda service: service.proposal(args.proposal))
        _print_json(proposal.to_json(settings.approvals_required))
        return 0
    row = _run(_service(settings), lambda service: service.find_version(args.version))
    if row is None:
        raise AdminError(AdminRefusal.NOT_FOUND, "no such version" if args.version is not None
                         else "the store holds no trust list yet")
    _print_json(row.document)
    return 0


def _history(args: argparse.Namespace, settings: Settings) -> int:
    for row in _run(_service(settings), lambda service: service.history()):
        via = f" (proposal {row.proposal_id})" if row.proposal_id else ""
        print(f"{row.version:6}  {row.created_at}  {row.source:8}  {row.actor}{via}  "
              f"sha256:{row.sha256[:16]}")
    return 0


def _diff(args: argparse.Namespace, settings: Settings) -> int:

    async def read(service: TrustListService) -> tuple[
            int, int | None, StoredVersion | None, StoredVersion | None]:
        current = await service.find_version()
        to = args.to if args.to is not None else None if current is None else current.version
        start = args.start if args.start is not None else max((to or 0) - 1, 0)
        return start, to, await service.find_version(start), await service.find_version(to)

    start, to, old, new = _run(_service(settings), read)
    if old is None or new is None:
        raise AdminError(AdminRefusal.NOT_FOUND, f"no version {start if old is None else to}")
    _print_json({"from": start, "to": to,
                 "changes": [e.to_json() for e in diff_documents(old.document, new.document)]})
    return 0


def _propose(args: argparse.Namespace, settings: Settings) -> int:
    author = _operator(settings, args, {Role.OPERATOR, Role.APPROVER})
    if args.file:
        changes = orjson.loads(Path(args.file).read_bytes())
    elif args.change:
        changes = orjson.loads(args.change)
    else:
        raise ValueError("give the changes with --file FILE or --change JSON")
    if isinstance(changes, dict) and "changes" in changes:
        changes = changes["changes"]
    proposal = _run(_service(settings),
                    lambda service: service.propose(author, changes, args.note))
    print(f"proposal by {author} recorded; it changes nothing until "
          f"{settings.approvals_required} other operator(s) approve it:")
    print(proposal.id)
    return 0


def _vote(args: argparse.Namespace, settings: Settings, approve: bool) -> int:
    operator = _operator(settings, args, {Role.APPROVER}, proposal_id=args.id)
    after = _run(_service(settings), lambda service: service.vote(
        operator, args.id, approve=approve, comment=args.comment))
    if after.status is ProposalStatus.APPLIED:
        print(f"proposal {after.id} applied as version {after.result_version}")
    elif after.status is ProposalStatus.FAILED:
        print(f"proposal {after.id} failed: {after.reason}", file=sys.stderr)
        return 1
    else:
        print(f"proposal {after.id} is {after.status.value} "
              f"({len(after.approvals)}/{settings.approvals_required} approvals)")
    return 0


def _approve(args: argparse.Namespace, settings: Settings) -> int:
    return _vote(args, settings, True)


def _reject(args: argparse.Namespace, settings: Settings) -> int:
    return _vote(args, settings, False)


def _export(args: argparse.Namespace, settings: Settings) -> int:
    alg = Alg(args.alg)
    sm2 = alg is Alg.SM2SM3
    key = load_or_create_key(settings.data_dir, "trust-list",
                             kid_prefix=f"{settings.gateway_id}-tl",
                             alg="SM2SM3" if sm2 else "EdDSA")

    async def export(service: TrustListService) -> tuple[StoredVersion, str]:
        row = await service.find_version(args.version)
        if row is None:
            raise AdminError(AdminRefusal.NOT_FOUND, "no such version")
        return row, await service.export(row.version, alg)

    service = (_service(settings, sm2_signing_key=key) if sm2
               else _service(settings, signing_key=key))
    row, token = _run(service, export)
    if args.out:
        Path(args.out).write_text(token + "\n", encoding="ascii")
        print(f"version {row.version} exported to {args.out} (signed by {key.kid})")
    else:
        print(token)
    return 0


def _export_token(path: Path, data: bytes) -> bytes:
    """The signed export a file holds: a ``trustlist+jwt`` alone, or as ``{"jws": "..."}``.

    The bytes go to ``verify_export`` as they are (a JWS is ASCII; anything else
    is refused there as ``format``). Plain JSON without ``jws`` (a trust-list
    document, a list of changes) is refused as ``format`` here, saying what
    ``trust import`` takes instead of failing on its first non-ASCII byte.
    """
    text = data.removeprefix(b"\xef\xbb\xbf").strip()
    if text[:1] not in (b"{", b"["):
        return text
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("jws"), str):
        return str(parsed["jws"]).encode("utf-8")
    raise SignedListError(
        ImportRefusal.FORMAT,
        f"{path} holds plain JSON, not a signed export: trust import takes a trustlist+jwt "
        "made by `ecert-gateway trust export` (or GET /v1/admin/trust-list/export) on the "
        "exporting gateway; to change this list, use `trust propose`")


def _import(args: argparse.Namespace, settings: Settings) -> int:
    actor = _operator(settings, args, {Role.APPROVER})
    key, sm2 = export_keys(settings)
    signers = trusted_signers(settings.data_dir, settings.admin.trust_list_signers,
                              [k for k in (key, sm2) if k is not None])
    path = Path(args.file)
    data = path.read_bytes()

    async def import_(service: TrustListService) -> ImportOutcome:
        try:
            token = _export_token(path, data)
        except SignedListError as exc:
            await service.refuse_import(actor, exc)
            raise
        return await service.import_signed(actor, token)

    outcome = _run(_service(settings, signing_key=key, sm2_signing_key=sm2, signers=signers),
                   import_)
    if not outcome.imported:
        print(f"version {outcome.version.version} is already the current list")
        return 0
    print(f"version {outcome.version.version} imported (signed by {outcome.signer})")
    return 0


def _common(parser: argparse.ArgumentParser, *, acting: bool = False) -> None:
    if acting:
        add_credential_arguments(parser)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``trust ...`` to the top-level parser."""
    trust = subparsers.add_parser(
        "trust", help="the trust-anchor list: show, change, export, import")
    commands = trust.add_subparsers(dest="trust_command", required=True,
                                    parser_class=CommandParser)

    list_ = commands.add_parser(
        "list", help="the current trust list: partners and their anchors, as a table")
    _common(list_)
    # `trust list --status` listed proposals before `trust proposals`; it now says where to look.
    list_.add_argument("--status", help=argparse.SUPPRESS)
    list_.set_defaults(func=_list)

    proposals = commands.add_parser("proposals", help="proposals, newest first")
    _common(proposals)
    proposals.add_argument("--status", choices=[s.value for s in ProposalStatus])
    proposals.set_defaults(func=_proposals)

    show = commands.add_parser("show", help="the current list, a version, or a proposal (JSON)")
    _common(show)
    show.add_argument("--version", type=int)
    show.add_argument("--proposal", help="a proposal id")
    show.set_defaults(func=_show)

    propose = commands.add_parser("propose", help="propose changes; prints the proposal id")
    _common(propose, acting=True)
    propose.add_argument("--file", help="JSON file: a change, a list, or {\"changes\": [...]}")
    propose.add_argument("--change", help="the same, inline")
    propose.add_argument("--note", help="why (kept with the proposal)")
    propose.set_defaults(func=_propose)

    for name, func, text in (("approve", _approve, "--comment"), ("reject", _reject, "--reason")):
        vote = commands.add_parser(name, help=f"{name} another operator's proposal")
        vote.add_argument("id")
        _common(vote, acting=True)
        vote.add_argument(text, dest="comment")
        vote.set_defaults(func=func)

    history = commands.add_parser("history", help="every kept version")
    _common(history)
    history.set_defaults(func=_history)

    diff = commands.add_parser("diff", help="what changed between two versions")
    _common(diff)
    diff.add_argument("--from", dest="start", type=int)
    diff.add_argument("--to", type=int)
    diff.set_defaults(func=_diff)

    export = commands.add_parser("export", help="a version as a signed trustlist+jwt")
    _common(export)
    export.add_argument("--version", type=int)
    export.add_argument("--out", help="file to write (default: standard output)")
    export.add_argument("--alg", choices=[a.value for a in EXPORT_ALGS],
                        default=Alg.EDDSA.value,
                        help="sign with the EdDSA trust-list key (default) or the SM2 one "
                             "(SM2SM3, for a partner whose agreement asks for SM2)")
    export.set_defaults(func=_export)

    imp = commands.add_parser("import", help="import a signed export from a trusted signer")
    imp.add_argument("file")
    _common(imp, acting=True)
    imp.set_defaults(func=_import)
