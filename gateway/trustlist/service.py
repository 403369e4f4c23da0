"""The trust-list service: every version kept, proposals under dual control, propagation.

Operators propose changes (``trust._changes``); approvers other than the author
approve them; when ``settings.approvals_required`` approvals are in, the change
is applied as the next version. Every version is kept (``gateway.trustlist.store``:
SQLite ``data_dir/trustlist.db`` by default, PostgreSQL when ``postgres_dsn`` is
set), so history, diffs and signed exports of any version stay available.

``TrustListService`` is the one workflow for every change, whether it comes
through ``/v1/admin/`` or the CLI: each step is one method that follows one
order: *plan* (read and validate, no write), *audit* (the record must be
durable, or nothing happens; a refusal is audited too), *commit* (one
transaction that re-checks what the plan read, so a concurrent writer makes it
fail with a conflict instead of overwriting). The store is synchronous; the
service runs it on one worker thread.

Propagation: ``TrustWatcher`` polls the store's current version every 250 ms
and swaps the gateway's ``TrustState`` when any instance, or the CLI, applied
a newer one.

Errors::

    * TrustStoreError      the store is unreachable or failed (``gateway.trustlist.store``)
      x StoreConflictError a concurrent writer changed what a commit relied on
    * AdminError           a request on proposals or versions is refused (``refusal`` says why)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import orjson

from gateway.audit.event import ActorKind, AuditEvent, AuditLog, EventType
from gateway.credentials.store import Role
from gateway.infra.signing import SigningKey, load_or_create_key
from gateway.infra.sql import StorageError
from gateway.settings import Settings
from gateway.trustlist.state import TrustState, empty_trust_list
from gateway.trustlist.store import (
    Proposal,
    ProposalStatus,
    StoreConflictError,
    StoredVersion,
    TrustListStore,
    TrustStoreError,
    Vote,
    open_trust_store,
)
from trust import (
    Alg,
    ChangeError,
    JoseError,
    SignedListError,
    Sm2UnavailableError,
    TrustList,
    TrustListError,
    VerifyingKey,
    apply_changes,
    canonical_json,
    export_signed,
    key_from_jwk,
    parse_changes,
    verify_export,
)

__all__ = [
    "APPROVERS",
    "PROPOSERS",
    "READERS",
    "AdminError",
    "AdminRefusal",
    "ImportOutcome",
    "POLL_INTERVAL_S",
    "Proposal",
    "ProposalStatus",
    "StoreConflictError",
    "StoredVersion",
    "TrustListService",
    "TrustListStore",
    "TrustStoreError",
    "TrustWatcher",
    "Vote",
    "change_summary",
    "export_keys",
    "open_trust_store",
    "read_start_document",
    "trusted_signers",
    "version_row",
]

_log = logging.getLogger("gateway.trustlist.service")

READERS = frozenset({Role.VIEWER, Role.OPERATOR, Role.APPROVER, Role.AUDITOR})
"""Who may read the trust list, its versions, proposals and alerts."""
PROPOSERS = frozenset({Role.OPERATOR, Role.APPROVER})
"""Who may propose a change."""
APPROVERS = frozenset({Role.APPROVER})
"""Who may approve or reject another operator's proposal, or import a signed export."""

T = TypeVar("T")

POLL_INTERVAL_S = 0.25
"""How often every instance looks for a newer applied version."""
SIGNERS_FILE = "trust-list-signers.json"
"""A JWKS in the data folder naming other gateways whose signed exports may be imported."""


# -- errors --------------------------------------------------------------------------------


class AdminRefusal(StrEnum):
    """Why a request on proposals or versions is refused."""

    NOT_FOUND = "not-found"
    OWN_PROPOSAL = "own-proposal"
    NOT_PENDING = "not-pending"
    ALREADY_VOTED = "already-voted"
    CONFLICT = "conflict"
    UNKNOWN_OPERATOR = "unknown-operator"


class AdminError(Exception):
    """A request on proposals or versions is refused; ``refusal`` says why."""

    def __init__(self, refusal: AdminRefusal, message: str) -> None:
        super().__init__(message)
        self.refusal = refusal


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def version_row(document: Mapping[str, Any], *, at: datetime, source: str, actor: str,
                proposal_id: str | None = None) -> StoredVersion:
    """A version record for ``document`` (its digest over the canonical JSON)."""
    version = document["version"]
    assert isinstance(version, int)
    return StoredVersion(version, dict(document),
                         hashlib.sha256(canonical_json(document)).hexdigest(), _iso(at),
                         source, actor, proposal_id)


# -- plans: read and validate, write nothing -----------------------------------------------


def _current(store: TrustListStore) -> StoredVersion:
    current = store.version()
    if current is None:
        raise AdminError(AdminRefusal.CONFLICT, "the store holds no trust list yet")
    return current


def _plan_proposal(store: TrustListStore, *, author: str, changes: object, note: str | None,
                  at: datetime) -> tuple[Proposal, StoredVersion]:
    """A pending proposal whose changes apply to the current list at ``at``.

    Raises ``ChangeError`` with every problem. A ``revoke-anchor`` without
    ``revoked_at`` is pinned to ``at``, so approval time never moves it.
    """
    parsed = parse_changes(changes)
    current = _current(store)
    raw: list[dict[str, Any]] = []
    for change in parsed:
        data = change.to_json()
        if data.get("kind") == "revoke-anchor" and data.get("revoked_at") is None:
            data["revoked_at"] = _iso(at)
        raw.append(data)
    apply_changes(current.document, parse_changes(raw), at=at)
    proposal = Proposal(
        id=str(uuid.uuid4()), created_at=_iso(at), author=author,
        base_version=current.version, changes=raw, note=note,
        status=ProposalStatus.PENDING, updated_at=_iso(at),
    )
    return proposal, current


@dataclass(frozen=True, slots=True)
class _VotePlan:
    """What a vote will do, computed before anything is written."""

    before: Proposal
    vote: Vote
    status: ProposalStatus
    reason: str | None = None
    version: StoredVersion | None = None
    expected_current: int | None = None
    problems: tuple[str, ...] = field(default=())


def _plan_vote(store: TrustListStore, *, proposal_id: str, operator: str, approve: bool,
               comment: str | None, at: datetime, approvals_required: int) -> _VotePlan:
    """Check the vote and, when it completes the approvals, build the next version."""
    proposal = store.proposal(proposal_id)
    if proposal is None:
        raise AdminError(AdminRefusal.NOT_FOUND, f"no proposal {proposal_id!r}")
    if proposal.author == operator:
        raise AdminError(AdminRefusal.OWN_PROPOSAL,
                         "the author of a proposal may not approve or reject it (dual control)")
    if proposal.status is not ProposalStatus.PENDING:
        raise AdminError(AdminRefusal.NOT_PENDING,
                         f"proposal {proposal_id} is {proposal.status.value}, not pending")
    if any(v.operator == operator for v in proposal.votes):
        raise AdminError(AdminRefusal.ALREADY_VOTED,
                         f"{operator} has already voted on proposal {proposal_id}")
    vote = Vote(operator, approve, _iso(at), comment)
    if not approve:
        return _VotePlan(proposal, vote, ProposalStatus.REJECTED, reason=comment)
    if len(proposal.approvals) + 1 < approvals_required:
        return _VotePlan(proposal, vote, ProposalStatus.PENDING)
    current = _current(store)
    try:
        document = apply_changes(current.document, parse_changes(proposal.changes), at=at)
    except ChangeError as exc:
        return _VotePlan(proposal, vote, ProposalStatus.FAILED,
                        reason=f"no longer applies to version {current.version}: {exc}",
                        problems=exc.problems)
    row = version_row(document, at=at, source="proposal", actor=proposal.author,
                       proposal_id=proposal.id)
    return _VotePlan(proposal, vote, ProposalStatus.APPLIED, version=row,
                    expected_current=current.version)


def _commit_vote(store: TrustListStore, plan: _VotePlan) -> Proposal:
    """Write the planned vote; ``StoreConflictError`` when something moved meanwhile."""
    store.record_vote(plan.before.id, plan.vote, expected_votes=len(plan.before.votes),
                      status=plan.status, reason=plan.reason, version=plan.version,
                      expected_current=plan.expected_current)
    after = store.proposal(plan.before.id)
    assert after is not None
    return after


def read_start_document(path: Path, keys: Mapping[str, VerifyingKey], *,
                        at: datetime) -> dict[str, Any]:
    """A start-up or CLI trust-list file: plain JSON, or a signed export that verifies."""
    data = path.read_bytes().strip()
    if data[:1] == b"{":
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise TrustListError(f"{path.name}: not JSON: {exc}") from exc
        TrustList.from_json(document)
        assert isinstance(document, dict)
        return document
    signed = verify_export(data, keys, at=at)
    return dict(signed.document)


def export_keys(settings: Settings) -> tuple[SigningKey, SigningKey | None]:
    """This instance's trust-list keys (blocking; made on first use): the EdDSA one
    (``keys/trust-list.key``) and the SM2SM3 one (``keys/trust-list.sm2.key``) for the
    exports asked for in SM2, None when this libcrypto has no SM2 (logged)."""
    prefix = f"{settings.gateway_id}-tl"
    key = load_or_create_key(settings.data_dir, "trust-list", kid_prefix=prefix)
    try:
        sm2 = load_or_create_key(settings.data_dir, "trust-list", kid_prefix=prefix,
                                 alg="SM2SM3")
    except Sm2UnavailableError as exc:
        _log.warning("no SM2 trust-list key: %s; exports cannot be signed SM2SM3", exc)
        return key, None
    return key, sm2


def trusted_signers(data_dir: Path, configured: Sequence[Mapping[str, Any]],
                    own: Sequence[SigningKey]) -> dict[str, VerifyingKey]:
    """Keys whose ``trustlist+jwt`` exports may be imported, by ``kid`` (blocking).

    This instance's own trust-list keys (EdDSA, and SM2SM3 when it has one), the
    ``configured`` JWKs (``[admin] trust_list_signers``) and the JWKS in
    ``data_dir/trust-list-signers.json``.
    """
    jwks: list[Any] = [key.public_jwk for key in own]
    jwks.extend(configured)
    path = data_dir / SIGNERS_FILE
    if path.exists():
        loaded = orjson.loads(path.read_bytes())
        if isinstance(loaded, Mapping) and isinstance(loaded.get("keys"), list):
            jwks.extend(loaded["keys"])
    keys: dict[str, VerifyingKey] = {}
    for jwk in jwks:
        if not isinstance(jwk, Mapping) or not isinstance(jwk.get("kid"), str):
            raise TrustListError("a trusted trust-list signer JWK needs a kid")
        public = {k: v for k, v in jwk.items() if k != "ecert_use"}
        try:
            keys[jwk["kid"]] = key_from_jwk(public)
        except JoseError as exc:
            raise TrustListError(f"trusted signer {jwk['kid']!r}: {exc}") from exc
    return keys


# -- audit ---------------------------------------------------------------------------------


def _audit_event(action: str, *, actor: str, via_cli: bool, at: datetime, outcome: str = "ok",
                 version: int | None = None, **details: Any) -> AuditEvent:
    """The audit record of one trust-list step."""
    return AuditEvent(
        event_type=EventType.OPERATOR_CHANGE,
        actor_kind=ActorKind.CLI if via_cli else ActorKind.OPERATOR,
        actor_id=actor, at=at, outcome=outcome, trust_list_version=version,
        details={"action": action, **{k: v for k, v in details.items() if v is not None}},
    )


def change_summary(changes: Sequence[Mapping[str, Any]]) -> list[str]:
    """Short, key-free lines for the audit record: ``kind region kid``."""
    lines = []
    for change in changes:
        partner = change.get("partner")
        region = change.get("region_code") or (
            partner.get("region_code") if isinstance(partner, Mapping) else None)
        anchor = change.get("anchor")
        kid = change.get("kid") or (anchor.get("kid") if isinstance(anchor, Mapping) else None)
        lines.append(" ".join(str(p) for p in (change.get("kind"), region, kid) if p))
    return lines


def _vote_event(plan: _VotePlan, *, via_cli: bool, at: datetime) -> AuditEvent:
    """The audit record of a planned vote."""
    action = {
        ProposalStatus.PENDING: "trust-list-proposal-approved",
        ProposalStatus.APPLIED: "trust-list-change-applied",
        ProposalStatus.REJECTED: "trust-list-proposal-rejected",
        ProposalStatus.FAILED: "trust-list-change-failed",
    }[plan.status]
    return _audit_event(
        action, actor=plan.vote.operator, via_cli=via_cli, at=at,
        outcome="error" if plan.status is ProposalStatus.FAILED else "ok",
        version=None if plan.version is None else plan.version.version,
        proposal_id=plan.before.id, author=plan.before.author,
        approvals=[*plan.before.approvals, plan.vote.operator] if plan.vote.approve else None,
        changes=change_summary(plan.before.changes), reason=plan.reason,
        sha256=None if plan.version is None else plan.version.sha256,
    )


def _add_version(store: TrustListStore, *, row: StoredVersion, expected: int | None) -> None:
    store.add_version(row, expected)


# -- the async service ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    """What importing a signed export did."""

    version: StoredVersion
    """The version imported, or the current one when the export held it already."""
    imported: bool
    """False when the export held the current version, with the same content."""
    signer: str
    """The ``kid`` of the trusted signer whose signature verified."""


class TrustListService:
    """The one workflow for every trust-list change, for the admin API and the CLI alike.

    Each write is one method that plans (reads and validates on the store's
    worker thread, writing nothing), audits (the record must be durable, or
    nothing happens), commits (one transaction that re-checks the plan) and
    returns the outcome, or raises a domain error carrying data (``AdminError``,
    ``ChangeError``, ``SignedListError``). A refused step is audited too, the
    same way whoever asked; that record is best-effort, so a refusal still
    reaches the caller when the log cannot take it (``on_unaudited_refusal``
    hears of it; by default a warning is logged).

    ``via_cli`` marks the records of a CLI command (``actor_kind`` ``cli``);
    ``clock`` gives every time the service records. ``signing_key`` signs
    exports (EdDSA), ``sm2_signing_key`` the exports asked for in SM2SM3 (for a
    partner whose agreement asks for SM2), and ``signers`` are the keys whose
    exports may be imported; a service made for a step that needs none of them
    may go without.
    """

    def __init__(self, *, settings: Settings, audit: AuditLog, clock: Callable[[], datetime],
                 via_cli: bool, signing_key: SigningKey | None,
                 signers: Mapping[str, VerifyingKey],
                 sm2_signing_key: SigningKey | None = None,
                 on_unaudited_refusal: Callable[[AuditEvent, Exception], None] | None = None,
                 ) -> None:
        self.settings = settings
        self.audit = audit
        self.clock = clock
        self.via_cli = via_cli
        self.signing_key = signing_key
        self._export_keys: dict[Alg, SigningKey] = {
            alg: key for alg, key in ((Alg.EDDSA, signing_key), (Alg.SM2SM3, sm2_signing_key))
            if key is not None}
        self.signers = dict(signers)
        self._on_unaudited_refusal = on_unaudited_refusal
        self.state: TrustState | None = None
        self.on_applied: Callable[[int], Awaitable[None]] | None = None
        """Called after this instance applies a version (the Redis announcement)."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trustlist-store")
        self._store: TrustListStore | None = None

    @property
    def approvals_required(self) -> int:
        """Approvals by operators other than the author that apply a change."""
        return self.settings.approvals_required

    def _call(self, fn: Callable[[TrustListStore], T]) -> T:
        if self._store is None:
            self._store = open_trust_store(self.settings.data_dir, self.settings.postgres_dsn)
        return fn(self._store)

    async def _run(self, fn: Callable[[TrustListStore], T]) -> T:
        """Run ``fn(store)`` on the store's thread."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._call, fn)
        except (TrustStoreError, AdminError, TrustListError):
            raise
        except (StorageError, OSError) as exc:
            raise TrustStoreError(str(exc)) from exc

    async def close(self) -> None:
        """Close the store and stop the thread."""

        def _close(store: TrustListStore) -> None:
            store.close()
            self._store = None

        if self._store is not None:
            await self._run(_close)
        self._executor.shutdown(wait=False)  # idle: the close job above was the last

    async def _serve(self, row: StoredVersion) -> None:
        """Serve a version this instance just wrote, without waiting for the watcher."""
        if self.state is None:
            return
        loop = asyncio.get_running_loop()
        trust_list = await loop.run_in_executor(None, TrustList.from_json, row.document)
        if trust_list.version > self.state.snapshot.trust_list.version:
            self.state.replace(trust_list)
        if self.on_applied is not None:
            await self.on_applied(trust_list.version)

    def _event(self, action: str, actor: str, at: datetime, **details: Any) -> AuditEvent:
        return _audit_event(action, actor=actor, via_cli=self.via_cli, at=at, **details)

    # -- reads --

    async def current_version(self) -> int | None:
        """The number of the current version, or None when the store is empty."""
        return await self._run(lambda s: s.current_version())

    async def find_version(self, version: int | None = None) -> StoredVersion | None:
        """A kept version (default: the current one), or None when there is none."""
        return await self._run(lambda s: s.version(version))

    async def current(self) -> StoredVersion:
        """The current version."""
        return await self._run(_current)

    async def version(self, version: int) -> StoredVersion:
        """A kept version."""
        row = await self.find_version(version)
        if row is None:
            raise AdminError(AdminRefusal.NOT_FOUND, f"no version {version}")
        return row

    async def history(self) -> list[StoredVersion]:
        """Every version, oldest first."""
        return await self._run(lambda s: s.history())

    async def proposal(self, proposal_id: str) -> Proposal:
        """A proposal."""
        found = await self._run(lambda s: s.proposal(proposal_id))
        if found is None:
            raise AdminError(AdminRefusal.NOT_FOUND, f"no proposal {proposal_id!r}")
        return found

    async def proposals(self, status: ProposalStatus | None) -> list[Proposal]:
        """Proposals, newest first."""
        return await self._run(lambda s: s.proposals(status))

    @property
    def export_algs(self) -> tuple[Alg, ...]:
        """The algorithms this service signs exports with (its keys are in the JWKS)."""
        return tuple(self._export_keys)

    async def export(self, version: int | None = None, alg: Alg = Alg.EDDSA) -> str:
        """The signed ``trustlist+jwt`` of a version (default: the current one), signed
        ``alg``: EdDSA, or SM2SM3 with the SM2 trust-list key."""
        key = self._export_keys.get(alg)
        if key is None:
            raise RuntimeError(f"this trust-list service was made without a {alg} signing key")
        row = await (self.current() if version is None else self.version(version))
        return export_signed(row.document, key.sign)

    # -- writes --

    async def propose(self, author: str, changes: object, note: str | None) -> Proposal:
        """Record a proposal; it changes nothing until approved. ``ChangeError`` if invalid."""
        at = self.clock()
        try:
            proposal, current = await self._run(
                lambda s: _plan_proposal(s, author=author, changes=changes, note=note, at=at))
        except ChangeError as exc:
            await self._audit_refusal("trust-list-proposal-refused", author, at,
                                      reason=str(exc))
            raise
        await self.audit.append(self._event(
            "trust-list-proposal-created", author, at, version=current.version,
            proposal_id=proposal.id, changes=change_summary(proposal.changes), note=note))
        await self._run(lambda s: s.add_proposal(proposal))
        return proposal

    async def vote(self, operator: str, proposal_id: str, *, approve: bool,
                   comment: str | None) -> Proposal:
        """Approve or reject; the approval that completes the count applies the change."""
        at = self.clock()
        try:
            plan = await self._run(lambda s: _plan_vote(
                s, proposal_id=proposal_id, operator=operator, approve=approve,
                comment=comment, at=at, approvals_required=self.approvals_required))
        except AdminError as exc:
            if exc.refusal is not AdminRefusal.NOT_FOUND:
                await self._audit_refusal("trust-list-vote-refused", operator, at,
                                          proposal_id=proposal_id, reason=str(exc))
            raise
        await self.audit.append(_vote_event(plan, via_cli=self.via_cli, at=at))
        try:
            after = await self._run(lambda s: _commit_vote(s, plan))
        except StoreConflictError as exc:
            await self._audit_refusal("trust-list-vote-conflict", operator, at,
                                      proposal_id=proposal_id, reason=str(exc))
            raise AdminError(AdminRefusal.CONFLICT, str(exc)) from exc
        if plan.version is not None:
            await self._serve(plan.version)
        return after

    async def import_signed(self, actor: str, token: str | bytes) -> ImportOutcome:
        """Import a signed export (a ``trustlist+jwt``) as the next version.

        ``SignedListError`` (audited) when it is refused; an export of the
        current version with the same content changes nothing.
        """
        at = self.clock()

        def _plan(store: TrustListStore) -> tuple[StoredVersion | None, int | None, str]:
            current = store.version()
            signed = verify_export(token, self.signers, at=at,
                                   current=None if current is None else current.document)
            if signed.same_as_current:
                assert current is not None
                return None, current.version, signed.kid
            return (version_row(signed.document, at=at, source="import", actor=actor),
                    None if current is None else current.version, signed.kid)

        try:
            row, current_version, signer = await self._run(_plan)
        except SignedListError as exc:
            await self._refuse_import(actor, exc, at)
            raise
        if row is None:
            assert current_version is not None
            return ImportOutcome(await self.version(current_version), False, signer)
        await self.audit.append(self._event(
            "trust-list-imported", actor, at, version=row.version,
            previous_version=current_version, sha256=row.sha256))
        try:
            await self._run(lambda s: s.add_version(row, current_version))
        except StoreConflictError as exc:
            raise AdminError(AdminRefusal.CONFLICT, str(exc)) from exc
        await self._serve(row)
        return ImportOutcome(row, True, signer)

    async def refuse_import(self, actor: str, error: SignedListError) -> None:
        """Audit an export the caller refused before it reached ``import_signed``.

        The CLI refuses a file that holds plain JSON instead of an export while
        reading it; the refusal is recorded as ``import_signed`` records its own.
        """
        await self._refuse_import(actor, error, self.clock())

    async def _refuse_import(self, actor: str, error: SignedListError, at: datetime) -> None:
        await self._audit_refusal("trust-list-import-refused", actor, at,
                                  reason=str(error), refusal=error.reason.value)

    async def refuse_credential(self, actor: str, *, command: str, refusal: str,
                                claimed_as: str | None, reason: str,
                                proposal_id: str | None = None) -> None:
        """Audit a CLI write refused for its credential (``trust-list-credential-refused``).

        ``actor`` is the token's owner when the token names one; the record
        never holds the token.
        """
        await self._audit_refusal("trust-list-credential-refused", actor, self.clock(),
                                  command=command, refusal=refusal, claimed_as=claimed_as,
                                  reason=reason, proposal_id=proposal_id)

    async def _audit_refusal(self, action: str, actor: str, at: datetime,
                             **details: Any) -> None:
        # A refused step changed nothing; its record is best-effort so that the
        # refusal itself still reaches the caller when the log is down.
        event = self._event(action, actor, at, outcome="refused", **details)
        try:
            await self.audit.append(event)
        except Exception as exc:
            if self._on_unaudited_refusal is None:
                _log.warning("refusal not audited: %s", action, exc_info=True)
            else:
                self._on_unaudited_refusal(event, exc)

    # -- start-up --

    async def start(self, injected: TrustList | None) -> TrustList:
        """Reconcile the store with ``--trust-list`` (or an injected list); return what to serve.

        An empty store is seeded from the file, the data folder's
        ``trust-list.json`` or an empty list; a higher file version is imported,
        a lower one refuses start-up (rollback), an equal one must match.
        """
        settings = self.settings
        loop = asyncio.get_running_loop()
        at = self.clock()
        explicit: dict[str, Any] | None = None
        source_name = "injected"
        if injected is not None:
            explicit = dict(injected.document)
        elif settings.trust_list_file is not None:
            path = settings.trust_list_file
            source_name = path.name
            explicit = await loop.run_in_executor(
                None, lambda: read_start_document(path, self.signers, at=at))
        for _ in range(5):
            current = await self._run(lambda s: s.version())
            candidate = explicit
            if candidate is None and current is None:
                default = settings.data_dir / "trust-list.json"
                if await loop.run_in_executor(None, default.exists):
                    source_name = default.name
                    candidate = await loop.run_in_executor(
                        None, partial(read_start_document, default, self.signers, at=at))
                else:
                    source_name = "empty"
                    candidate = dict(empty_trust_list(settings.gateway_id, at).document)
            if candidate is None:
                assert current is not None
                return await loop.run_in_executor(None, TrustList.from_json, current.document)
            version = candidate["version"]
            if current is not None:
                if version < current.version:
                    raise TrustListError(
                        f"{source_name} holds trust-list version {version}, lower than the "
                        f"stored version {current.version} (rollback refused); start without "
                        "--trust-list to serve the stored list")
                if version == current.version:
                    if canonical_json(candidate) != canonical_json(current.document):
                        raise TrustListError(
                            f"{source_name} holds trust-list version {version} with other "
                            "content than the stored version of that number")
                    return await loop.run_in_executor(None, TrustList.from_json,
                                                      current.document)
            row = version_row(candidate, at=at, source="start-up", actor="gateway")
            await self.audit.append(AuditEvent(
                event_type=EventType.TRUST_LIST_LOADED, actor_kind=ActorKind.GATEWAY,
                actor_id=settings.gateway_id, at=at, outcome="ok", trust_list_version=version,
                details={"action": "trust-list-imported-at-start-up", "file": source_name,
                         "previous_version": None if current is None else current.version,
                         "sha256": row.sha256}))
            expected = None if current is None else current.version
            try:
                await self._run(partial(_add_version, row=row, expected=expected))
            except StoreConflictError:
                continue  # another instance started at the same moment: look again
            return await loop.run_in_executor(None, TrustList.from_json, candidate)
        raise TrustStoreError("the trust-list store kept changing during start-up")


# -- propagation ---------------------------------------------------------------------------


class TrustWatcher:
    """Swaps ``state`` to the store's newest version whenever one appears."""

    def __init__(self, service: TrustListService, state: TrustState, *,
                 interval_s: float = POLL_INTERVAL_S) -> None:
        self._service = service
        self._state = state
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start polling."""
        self._task = asyncio.create_task(self._loop(), name="trust-watcher")

    async def stop(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check(self) -> bool:
        """Look once; True when a newer version was swapped in."""
        served = self._state.snapshot.trust_list.version
        latest = await self._service.current_version()
        if latest is None or latest <= served:
            return False
        row = await self._service.find_version(latest)
        if row is None:
            return False
        loop = asyncio.get_running_loop()
        trust_list = await loop.run_in_executor(None, TrustList.from_json, row.document)
        if trust_list.version <= self._state.snapshot.trust_list.version:
            return False
        self._state.replace(trust_list)
        _log.info("trust list swapped", extra={"trust_list_version": trust_list.version})
        return True

    async def _loop(self) -> None:
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The current list keeps serving; its next_update still bounds its use.
                _log.warning("trust-list watcher could not read the store", exc_info=True)
            await asyncio.sleep(self._interval)
