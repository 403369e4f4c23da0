"""``ecert-gateway audit verify|query|stats|export|prune``, and the CLI's way into the log.

Every subcommand takes the settings options (``--data-dir DIR``, ``--config
FILE``, ``--postgres-dsn DSN``: ``gateway.cli.settings_options``) after its own
name, so the log is found where ``serve`` writes it. A failure is a domain error
for ``gateway.__main__`` to report; a log that does not verify is a one-line
reason and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NoReturn

import orjson
from tqdm import tqdm

from gateway.audit import (
    AuditPruner,
    AuditStoreError,
    RecordFilter,
    append_cli_event,
    open_store,
    origin_for,
    verify_log,
)
from gateway.audit._keys import load_signing_key
from gateway.audit._service import report_day_ms, report_today
from gateway.audit._store import AuditStore
from gateway.audit.event import AuditEvent, EventType
from gateway.audit.routes import csv_header, csv_rows
from gateway.audit.witness import CosignatureReport, WitnessPolicy, verify_cosignatures
from gateway.audit.witness_store import WitnessStore, witness_database
from gateway.cli import CommandParser
from gateway.cli._progress import progress_bar, wanted
from gateway.cli.credentials import acting_operator, add_credential_arguments, read_token
from gateway.credentials.store import CredentialError, Role
from gateway.settings import Settings, load_settings
from trust.note import NoteSigner, NoteVerifier

__all__ = ["append_cli_event", "register"]


_TIME_EXAMPLE = "e.g. 2026-12-01T00:00:00+08:00 or 2026-11-30T16:00:00Z"


def _time_ms(text: str) -> int:
    """An RFC 3339 time with a time zone, as Unix milliseconds (an argparse ``type``)."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not an RFC 3339 time ({_TIME_EXAMPLE}): {text!r}") from exc
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} needs a time zone, such as +08:00 or Z ({_TIME_EXAMPLE})")
    return int(parsed.timestamp() * 1000)


def _day(text: str) -> date:
    """A calendar day ``YYYY-MM-DD`` (an argparse ``type``)."""
    reason = argparse.ArgumentTypeError(f"not a date YYYY-MM-DD (e.g. 2026-12-01): {text!r}")
    if len(text) != 10:
        raise reason
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise reason from exc


def _whole_number(text: str, *, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of at least {least}, got {text!r}")
    return value


def _limit(text: str) -> int:
    """How many records to print: at least 1 (an argparse ``type``)."""
    return _whole_number(text, least=1)


def _index(text: str) -> int:
    """An audit-log index: 0 or more (an argparse ``type``)."""
    return _whole_number(text, least=0)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", type=_time_ms, metavar="TIME",
                        help=f"RFC 3339 time with a time zone, inclusive ({_TIME_EXAMPLE})")
    parser.add_argument("--to", dest="end", type=_time_ms, metavar="TIME",
                        help="RFC 3339 time with a time zone, exclusive")
    parser.add_argument("--partner", help="partner region code")
    parser.add_argument("--matter", help="matter code, or REGION:CODE")
    parser.add_argument("--event-type", choices=[t.value for t in EventType], metavar="TYPE",
                        help="event type: " + ", ".join(t.value for t in EventType))
    parser.add_argument("--outcome", help="outcome (TOTAL_PASSED, ok, refused ...)")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``audit verify|query|stats|export`` to the top-level parser."""
    audit = subparsers.add_parser("audit", help="check and read the audit log")
    commands = audit.add_subparsers(dest="audit_command", required=True,
                                    parser_class=CommandParser)

    verify = commands.add_parser("verify", help="recompute the tree and check every checkpoint")
    verify.add_argument(
        "--vkey", help="the log's verifier key held elsewhere (default: the data folder's key)"
    )
    verify.add_argument(
        "--checkpoint", type=Path, action="append", default=[],
        help="a checkpoint note saved elsewhere that the log must still match (repeatable)",
    )  # fmt: skip
    verify.add_argument("--origin", help="the log's origin (default: as recorded in the log)")
    verify.add_argument(
        "--witness-policy", type=Path, metavar="FILE",
        help="a TOML file whose [witness] table names the witnesses and k (default: the"
             " settings' [witness]); every kept cosignature is checked against it",
    )  # fmt: skip
    verify.add_argument("--quiet", action="store_true", help="no progress bar")
    verify.set_defaults(func=cmd_verify)

    query = commands.add_parser(
        "query", help="print matching records as JSON lines, oldest first, a page at a time",
        description="Print matching records as JSON lines, oldest first. When more match than "
                    "--limit, standard error says how many remain and the --after that prints "
                    "the next page.")
    _filters(query)
    query.add_argument("--limit", type=_limit, default=100, metavar="N",
                       help="print at most N records (default 100)")
    query.add_argument("--after", type=_index, default=None, metavar="INDEX",
                       help="start after this log index (the next page: the last index printed)")
    query.set_defaults(func=cmd_query)

    stats = commands.add_parser("stats", help="counts per partner x matter x outcome of a day")
    stats.add_argument("--day", type=_day,
                       help="YYYY-MM-DD in China Standard Time (default today)")
    stats.set_defaults(func=cmd_stats)

    export = commands.add_parser("export", help="write matching records as CSV")
    _filters(export)
    export.add_argument("--out", type=Path, help="output file (default: standard output)")
    export.set_defaults(func=cmd_export)

    prune = commands.add_parser(
        "prune", help="retention: propose a prune, approve another auditor's (it then runs),"
                      " or list them",
        description="Delete the record bodies older than the retention policy ([audit."
                    "retention]), keeping their leaf hashes and every checkpoint. One auditor "
                    "proposes (--propose), a different auditor approves (--approve ID), which "
                    "runs the prune. Writes take the auditor's token (--token-file or "
                    "ECERT_OPERATOR_TOKEN).")
    step = prune.add_mutually_exclusive_group(required=True)
    step.add_argument("--propose", action="store_true",
                      help="propose pruning every kind by its policy (or as narrowed below)")
    step.add_argument("--approve", type=_index, metavar="ID",
                      help="approve proposal ID (another auditor's) and run the prune")
    step.add_argument("--list", action="store_true", help="print the proposals as JSON lines")
    prune.add_argument("--before", type=_time_ms, metavar="TIME",
                       help="with --propose: prune only records older than this (never newer "
                            "than a chosen kind's policy allows)")
    prune.add_argument("--kind", action="append", choices=[t.value for t in EventType],
                       metavar="KIND", help="with --propose: only this record kind (repeatable)")
    prune.add_argument("--through", type=_index, metavar="INDEX",
                       help="with --propose: only entries up to and including this index")
    add_credential_arguments(prune)
    prune.set_defaults(func=cmd_prune)


def _fail(args: argparse.Namespace, message: str) -> int:
    """A check that did not pass: one line naming the command, exit status 1."""
    print(f"ecert-gateway audit {args.audit_command}: {message}", file=sys.stderr)
    return 1


def _open(settings: Settings) -> AuditStore:
    data_dir = settings.data_dir
    if settings.postgres_dsn is None and not (data_dir / "audit.db").exists():
        raise AuditStoreError(f"no audit log in {data_dir}")
    return open_store(data_dir, settings.postgres_dsn)


PROGRESS_FROM = 50_000
"""Logs of fewer entries verify in a moment: ``audit verify`` draws no bar for them."""


class _Progress:
    """``audit verify``'s progress bar (tqdm) on standard error, for a log of
    ``PROGRESS_FROM`` entries or more, when standard error is a terminal and ``--quiet``
    is not given."""

    def __init__(self, quiet: bool) -> None:
        self._enabled = wanted(quiet)
        self._bar: tqdm[NoReturn] | None = None

    def __call__(self, done: int, total: int) -> None:
        if not self._enabled or total < PROGRESS_FROM:
            return
        if self._bar is None:
            self._bar = progress_bar(total=total, desc="verifying", unit=" entries",
                                     enabled=True)
        self._bar.update(done - self._bar.n)

    def end(self) -> None:
        if self._bar is not None:
            self._bar.close()


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Recompute the whole tree from stored records and check every checkpoint."""
    store = _open(settings)
    try:
        origin = args.origin or store.meta("origin")
        if args.vkey:
            verifier = NoteVerifier.from_vkey(args.vkey)
        else:
            stored_vkey = store.meta("vkey")
            name = origin or origin_for(settings.gateway_id, settings.audit.origin)
            verifier = NoteSigner(name, load_signing_key(settings.data_dir)).verifier
            if stored_vkey is not None and stored_vkey != verifier.to_vkey():
                return _fail(args, "the data folder's signing key is not the key this log "
                                   "records")
        extra = [path.read_text(encoding="utf-8") for path in args.checkpoint]
        cosigned = _cosignatures(args, settings, verifier)
        if cosigned is not None and cosigned.latest_note is not None:
            extra.append(cosigned.latest_note)  # the witnessed tree must be the log's too
        progress = _Progress(args.quiet)
        report = verify_log(
            store, verifier, origin=origin, extra_checkpoints=extra, progress=progress
        )
        progress.end()
    finally:
        store.close()
    if not report.ok:
        where = "" if report.index is None else f"index {report.index}: "
        return _fail(args, f"audit log verification failed at {where}{report.reason}")
    pruned = (f" ({report.pruned} pruned: their kept leaf hashes, covered by approved prunes)"
              if report.pruned else "")
    print(f"ok: {report.entries} entries{pruned}, {report.checkpoints} checkpoints verified")
    if cosigned is not None:
        if not cosigned.ok:
            return _fail(args, f"cosignature verification failed: {cosigned.reason}")
        print(_witnessed_line(cosigned))
    return 0


def _cosignatures(args: argparse.Namespace, settings: Settings,
                  verifier: NoteVerifier) -> CosignatureReport | None:
    """The kept cosignatures checked against the policy (None: no policy, no witnesses)."""
    witness = settings.witness
    if args.witness_policy is not None:
        text = args.witness_policy.read_text(encoding="utf-8")
        witness = load_settings({}, text, {"data_dir": settings.data_dir}).witness
    if not witness.witnesses:
        return None
    policy = WitnessPolicy.from_settings(witness)
    if settings.postgres_dsn is None and not (settings.data_dir / "witness.db").exists():
        return CosignatureReport(True, 0, None, None)
    store = WitnessStore(witness_database(settings.data_dir, settings.postgres_dsn))
    try:
        return verify_cosignatures(store, verifier, policy)
    finally:
        store.close()


def _witnessed_line(report: CosignatureReport) -> str:
    latest = report.latest
    if latest is None:
        return "witnesses: no checkpoint has been cosigned yet"
    names = ", ".join(sorted(latest.cosigned)) or "none"
    verdict = "witnessed" if latest.met else "NOT witnessed"
    return (f"witnesses: checkpoint {latest.size} {verdict}: {len(latest.cosigned)} of"
            f" {latest.n} cosigned (k = {latest.k}): {names}; {report.checked} cosignatures"
            " verified")


def _filter_from(args: argparse.Namespace, limit: int) -> RecordFilter:
    return RecordFilter(
        start_ms=args.start,
        end_ms=args.end,
        partner=args.partner,
        matter=args.matter,
        event_type=args.event_type,
        outcome=args.outcome,
        limit=limit,
    )


_PAGE = 5000
"""Records read from the store at a time: memory stays bounded whatever ``--limit`` is."""


def _query_line(store: AuditStore, index: int, record: bytes) -> dict[str, Any]:
    """One line of ``audit query``: the record, or for a pruned one its kept leaf hash."""
    if record:
        return {"index": index, "record": orjson.loads(record)}
    found = store.entry(index)
    leaf = b"" if found is None else found[1]
    return {"index": index, "pruned": True, "leaf_hash": base64.b64encode(leaf).decode()}


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    """Print matching records, one JSON object a line: ``{"index": n, "record": {...}}``.

    When more records match than were printed, one line on standard error says
    how many and gives the ``--after`` of the next page (standard output stays
    JSON Lines).
    """
    store = _open(settings)
    out = sys.stdout.buffer
    flt = _filter_from(args, _PAGE)
    if args.after is not None:
        flt = replace(flt, after_index=args.after)
    printed = 0
    try:
        while printed < args.limit:
            want = min(args.limit - printed, _PAGE)
            rows = store.query(replace(flt, limit=want))
            for index, record in rows:
                out.write(orjson.dumps(_query_line(store, index, record)) + b"\n")
            printed += len(rows)
            if rows:
                flt = replace(flt, after_index=rows[-1][0])
            if len(rows) < want:
                break
        remaining = store.count(flt) if printed == args.limit else 0
    finally:
        store.close()
    out.flush()
    if remaining:
        after = "" if args.after is None else f" after index {args.after}"
        print(f"ecert-gateway audit query: printed {printed:,} of {printed + remaining:,} "
              f"matching records{after}; {remaining:,} more: add --after {flt.after_index} "
              "for the next page", file=sys.stderr)
    elif printed == 0:
        print("ecert-gateway audit query: no matching records", file=sys.stderr)
    return 0


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    """Print the counts of one day (China Standard Time) as JSON."""
    day: date = args.day or report_today()
    start, end = report_day_ms(day)
    store = _open(settings)
    try:
        rows = store.stats(start, end)
    finally:
        store.close()
    body: dict[str, Any] = {
        "day": day.isoformat(),
        "timezone": "+08:00",
        "counts": [{"partner": p, "matter": m, "outcome": o, "count": c} for p, m, o, c in rows],
        "total": sum(r[3] for r in rows),
    }
    sys.stdout.buffer.write(orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    """Write matching records as CSV."""
    store = _open(settings)
    flt = _filter_from(args, 5000)
    try:
        target = args.out.open("w", encoding="utf-8", newline="") if args.out else sys.stdout
        try:
            target.write(csv_header())
            while True:
                rows = store.query(flt)
                target.write(csv_rows([(i, orjson.loads(r) if r else {}) for i, r in rows]))
                if len(rows) < flt.limit:
                    break
                flt = replace(flt, after_index=rows[-1][0])
        finally:
            if args.out:
                target.close()
    finally:
        store.close()
    return 0


class _CliAudit:
    """The audit port of ``audit prune``: each record appended to the data folder's log
    (sequenced with a running gateway's records), on a worker thread."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def append(self, event: AuditEvent) -> int:
        settings = self._settings
        return await asyncio.to_thread(
            append_cli_event, settings.data_dir, event, postgres_dsn=settings.postgres_dsn,
            gateway_id=settings.gateway_id)


def _pruner(settings: Settings) -> AuditPruner:
    return AuditPruner(audit=_CliAudit(settings), open_store=lambda: _open(settings),
                       retention=settings.audit.retention, clock=lambda: datetime.now(UTC),
                       via_cli=True)


def _auditor(args: argparse.Namespace, settings: Settings) -> str:
    """The acting auditor: the owner of the presented token (``--token-file`` or
    ``ECERT_OPERATOR_TOKEN``), enabled, with the auditor role."""
    token = read_token(args.token_file, os.environ)
    return acting_operator(settings.data_dir, token, {Role.AUDITOR}, claimed=args.as_name,
                           postgres_dsn=settings.postgres_dsn).name


def cmd_prune(args: argparse.Namespace, settings: Settings) -> int:
    """``audit prune --propose | --approve ID | --list``."""
    pruner = _pruner(settings)
    if args.list:
        _open(settings).close()  # a folder without a log is refused before anything is made
        for proposal in asyncio.run(pruner.proposals()):
            sys.stdout.write(orjson.dumps(proposal.to_json()).decode() + "\n")
        return 0
    narrowing = args.before is not None or args.kind or args.through is not None
    if args.approve is not None and narrowing:
        return _fail(args, "--before, --kind and --through go with --propose only")
    try:
        actor = _auditor(args, settings)
    except CredentialError as exc:
        if settings.data_dir.is_dir():
            asyncio.run(pruner.refuse_credential(
                "cli" if exc.identity is None else exc.identity.name,
                f"credential refused ({exc.refusal.value}): {exc}"))
        return _fail(args, str(exc))
    _open(settings).close()
    if args.propose:
        before = (None if args.before is None
                  else datetime.fromtimestamp(args.before / 1000, UTC))
        proposal = asyncio.run(pruner.propose(actor, before=before, kinds=args.kind,
                                              through=args.through))
        sys.stdout.write(orjson.dumps(proposal.to_json(), option=orjson.OPT_INDENT_2).decode()
                         + "\n")
        print(f"prune proposal {proposal.id}: {sum(proposal.entries.values()):,} record(s) "
              "covered; another auditor approves it with --approve "
              f"{proposal.id}", file=sys.stderr)
        return 0
    outcome = asyncio.run(pruner.approve(actor, args.approve))
    sys.stdout.write(orjson.dumps(outcome.proposal.to_json(), option=orjson.OPT_INDENT_2)
                     .decode() + "\n")
    print(f"prune proposal {args.approve} approved: {outcome.pruned:,} record bodies pruned",
          file=sys.stderr)
    return 0
