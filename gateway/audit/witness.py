"""Witnessing (c2sp.org/tlog-witness): partners cosign Huzhou's checkpoints, Huzhou
cosigns theirs.

* ``Witnessing``, a background task beside the audit log: every
  ``[witness] interval_s`` it sends the latest kept checkpoint to each witness of
  the policy with ``add-checkpoint``, with a consistency proof from the size that
  witness last cosigned (a 409 names another size: it is taken and the request
  made again from there). Each cosignature returned is checked against the
  witness's key before it is kept (``WitnessStore``, append-only). A checkpoint
  with cosignatures by ``k`` of the ``n`` witnesses is *witnessed*. A witness that
  fails (down, slow, refusing) is tried again after a growing pause; each call
  is bounded by ``timeout_s``; nothing here is on a request's path.
* ``HuzhouWitness``, behind ``POST /v1/witness/add-checkpoint``: cosigns partners'
  checkpoints (``[[witness.logs]]``) with Huzhou's witness key
  (``data_dir/keys/witness-ed25519.key``), keeping per origin the size and root it
  cosigned, judged and advanced atomically under the store's write lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit._service import AuditService
from gateway.audit.witness_store import (
    StoredCosignature,
    WitnessStore,
    WitnessStoreError,
)
from gateway.infra.keyfiles import keys_dir, load_or_create_secret
from gateway.infra.metrics import MetricFamily
from gateway.infra.sql import StorageError, Worker
from gateway.settings import Settings, WitnessSettings
from trust.merkle import verify_consistency
from trust.note import NoteError, NoteVerifier, open_checkpoint
from trust.witness import (
    AddCheckpoint,
    CosignatureSigner,
    WitnessError,
    WitnessKey,
    cosignatures,
    judge,
    note_with_cosignatures,
    signature_lines,
)

__all__ = [
    "WITNESS_KEY_FILE",
    "HuzhouWitness",
    "WitnessPolicy",
    "WitnessStatus",
    "Witnessing",
    "CosignatureReport",
    "ReceiptAgainstWitnessed",
    "check_receipt_witnessed",
    "check_witnessed",
    "load_witness_signer",
    "verify_cosignatures",
    "witness_key_name",
]

_log = logging.getLogger("gateway.audit.witness")

WITNESS_KEY_FILE = "witness-ed25519.key"
_MAX_BACKOFF_S = 300.0
_MAX_RESPONSE = 16 << 10


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def witness_key_name(settings: Settings, origin: str) -> str:
    """The key name of Huzhou's witness: configured, or the log origin's first part +
    ``/witness`` (``huzhou.ecert-gateway/witness``)."""
    return settings.witness.key_name or origin.split("/", 1)[0] + "/witness"


@dataclass(frozen=True, slots=True)
class WitnessPolicy:
    """Which witnesses count, and how many of them make a checkpoint witnessed."""

    witnesses: tuple[WitnessKey, ...]
    k: int

    @classmethod
    def from_settings(cls, settings: WitnessSettings) -> WitnessPolicy:
        """The policy of ``[witness]`` (already validated by the settings loader)."""
        return cls(tuple(WitnessKey.from_vkey(w.vkey) for w in settings.witnesses),
                   settings.k if settings.witnesses else 0)

    @property
    def names(self) -> tuple[str, ...]:
        """The witnesses' key names."""
        return tuple(w.name for w in self.witnesses)


@dataclass(frozen=True, slots=True)
class WitnessedCheck:
    """Who cosigned one checkpoint note, against a policy."""

    size: int
    cosigned: dict[str, int]
    """Witness name -> the time its cosignature states."""
    k: int
    n: int

    @property
    def met(self) -> bool:
        """Whether at least ``k`` of the policy's witnesses cosigned."""
        return self.n > 0 and len(self.cosigned) >= self.k


def check_witnessed(note: str, log: NoteVerifier, policy: WitnessPolicy) -> WitnessedCheck:
    """Check a witnessed checkpoint: the log's signature, then each cosignature of a
    policy witness (one that does not verify is ``NoteError``), then count them."""
    body = open_checkpoint(note, log)
    found = cosignatures(note, policy.witnesses)
    return WitnessedCheck(body.size, found, policy.k, len(policy.witnesses))


@dataclass(frozen=True, slots=True)
class CosignatureReport:
    """What ``audit verify`` found of the kept cosignatures."""

    ok: bool
    checked: int
    """Cosignatures by policy witnesses checked (every kept one)."""
    latest: WitnessedCheck | None
    """The largest cosigned checkpoint, and who cosigned it."""
    latest_note: str | None
    reason: str = ""


def _line_time(key: WitnessKey, text: str, line: str) -> int:
    """The time a kept cosignature line of ``key`` states, or ``NoteError``."""
    _, parsed = signature_lines(text + "\n" + line)
    if len(parsed) != 1 or parsed[0][0] != key.name or parsed[0][1][:4] != key.key_id:
        raise NoteError(f"the line kept for {key.name} is not one cosignature by its key")
    return key.timestamp_of(text, parsed[0][1][4:])


def verify_cosignatures(store: WitnessStore, log: NoteVerifier,
                        policy: WitnessPolicy) -> CosignatureReport:
    """Check every kept cosignature of a policy witness over the checkpoint it names (one
    that does not verify fails the report), and say who cosigned the largest one."""
    keys = {w.name: w for w in policy.witnesses}
    checked = 0
    latest: WitnessedCheck | None = None
    latest_note = None
    for size in store.cosigned_sizes():
        note = store.submitted(size)
        if note is None:
            return CosignatureReport(False, checked, latest, latest_note,
                                     f"cosignatures of checkpoint {size} but no such note kept")
        try:
            body = open_checkpoint(note, log)
        except NoteError as exc:
            return CosignatureReport(False, checked, latest, latest_note,
                                     f"checkpoint {size}: {exc}")
        text = note[: note.index("\n\n") + 1]
        cosigned: dict[str, int] = {}
        for row in store.cosignatures(size):
            key = keys.get(row.witness)
            if key is None:
                continue
            try:
                cosigned[key.name] = _line_time(key, text, row.line)
            except NoteError as exc:
                return CosignatureReport(False, checked, latest, latest_note,
                                         f"checkpoint {body.size}: {exc}")
            checked += 1
        latest = WitnessedCheck(body.size, cosigned, policy.k, len(policy.witnesses))
        latest_note = note_with_cosignatures(note, [r.line for r in store.cosignatures(size)
                                                    if r.witness in keys])
    return CosignatureReport(True, checked, latest, latest_note)


@dataclass(frozen=True, slots=True)
class ReceiptAgainstWitnessed:
    """A receipt's checkpoint found on the same history as a witnessed checkpoint."""

    receipt_size: int
    witnessed_size: int
    witnessed: WitnessedCheck | None
    """Who cosigned the witnessed checkpoint (None: no policy given, not checked)."""


def check_receipt_witnessed(receipt_note: str, witnessed_note: str, proof: Sequence[bytes],
                            log: NoteVerifier, policy: WitnessPolicy | None
                            ) -> ReceiptAgainstWitnessed:
    """Check that a receipt's checkpoint and a witnessed checkpoint are one history: both
    signed by the log, the smaller tree a prefix of the larger (``proof``: RFC 6962, from
    the smaller size to the larger, ``GET /v1/audit/consistency``), and, with a policy, the
    witnessed one cosigned by k of its witnesses. ``NoteError`` or ``MerkleProofError``
    names what fails."""
    receipt = open_checkpoint(receipt_note, log)
    witnessed = open_checkpoint(witnessed_note, log)
    small, large = sorted((receipt, witnessed), key=lambda body: body.size)
    if small.size > 0:  # every tree extends the empty one
        verify_consistency(small.size, large.size, proof, small.root_hash, large.root_hash)
    check = None
    if policy is not None:
        check = check_witnessed(witnessed_note, log, policy)
        if not check.met:
            raise NoteError(f"the witnessed checkpoint has {len(check.cosigned)} of the"
                            f" {check.k} cosignatures the policy needs")
    return ReceiptAgainstWitnessed(receipt.size, witnessed.size, check)


# -- Huzhou's log, witnessed -------------------------------------------------------------------


@dataclass(slots=True)
class WitnessStatus:
    """Where one witness of the policy stands."""

    key: WitnessKey
    url: str
    known_size: int = 0
    """The size it last cosigned (as far as this instance knows)."""
    cosigned_size: int = 0
    failures: int = 0
    """Consecutive failed rounds."""
    next_try: float = 0.0
    last_error: str = ""
    ahead: bool = False
    """It names a size larger than Huzhou's latest checkpoint: waiting for the log to grow."""


class _WitnessFailedError(Exception):
    pass


@dataclass(slots=True)
class _Served:
    size: int = -1
    note: str = ""


@dataclass
class Witnessing:
    """The task that gets Huzhou's checkpoints witnessed (see the module docstring)."""

    audit: AuditService
    settings: WitnessSettings
    store: Worker[WitnessStore]
    clock: Callable[[], float] = time.monotonic
    statuses: list[WitnessStatus] = field(default_factory=list)
    witnessed_size: int = 0
    unwitnessed_since: float | None = None
    rounds: int = 0
    _session: aiohttp.ClientSession | None = None
    _task: asyncio.Task[None] | None = None
    _served: _Served = field(default_factory=_Served)

    def __post_init__(self) -> None:
        self.policy = WitnessPolicy.from_settings(self.settings)
        self.statuses = [WitnessStatus(WitnessKey.from_vkey(w.vkey), w.url)
                         for w in self.settings.witnesses]

    async def start(self) -> None:
        """Learn where each witness stood, then start the task (if there are witnesses)."""
        if not self.statuses:
            return
        sizes = await self.store.run(lambda s: s.last_sizes())
        for status in self.statuses:
            status.known_size = status.cosigned_size = sizes.get(status.key.name, 0)
        witnessed = await self.store.run(
            lambda s: s.witnessed_sizes(self.policy.names, self.policy.k))
        self.witnessed_size = witnessed[0] if witnessed else 0
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s))
        self._task = asyncio.create_task(self._loop(), name="audit-witnessing")

    async def stop(self) -> None:
        """Stop the task and close the HTTP session."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("witnessing round failed")
            await asyncio.sleep(self.settings.interval_s)

    async def round(self) -> None:
        """Send the latest checkpoint to every witness due, and count the cosignatures."""
        self.rounds += 1
        latest = await self.audit.latest_checkpoint()
        if latest is None or latest.size == 0:
            return
        now = self.clock()
        if latest.size > self.witnessed_size and self.unwitnessed_since is None:
            self.unwitnessed_since = now
        due = [s for s in self.statuses
               if s.cosigned_size < latest.size and s.next_try <= now]
        if due:
            await self.store.run(lambda s: s.add_submitted(latest.size, latest.note, _now_ms()))
            await asyncio.gather(*(self._submit(s, latest.size, latest.note) for s in due))
        got = sum(1 for s in self.statuses if s.cosigned_size >= latest.size)
        if got >= self.policy.k and latest.size > self.witnessed_size:
            since = self.witnessed_size
            witnessed = await self.store.run(
                lambda s: s.witnessed_sizes(self.policy.names, self.policy.k, since))
            if witnessed:
                self.witnessed_size = witnessed[0]
        if self.witnessed_size >= latest.size:
            self.unwitnessed_since = None
        elif self.alerting:
            _log.warning("audit checkpoint %d not witnessed for %.0f s (%d of %d needed)",
                         latest.size, self.unwitnessed_s, self.policy.k, len(self.statuses))

    @property
    def unwitnessed_s(self) -> float:
        """How long the latest checkpoint has waited for k cosignatures (0: witnessed)."""
        return 0.0 if self.unwitnessed_since is None else self.clock() - self.unwitnessed_since

    @property
    def alerting(self) -> bool:
        """Whether the latest checkpoint has waited longer than ``alert_after_s``."""
        return self.unwitnessed_s > self.settings.alert_after_s

    async def _submit(self, status: WitnessStatus, size: int, note: str) -> None:
        try:
            await asyncio.wait_for(self._exchange(status, size, note),
                                   timeout=self.settings.timeout_s * 3)
        except (TimeoutError, _WitnessFailedError, aiohttp.ClientError, OSError, NoteError,
                WitnessStoreError, StorageError) as exc:
            status.failures += 1
            status.last_error = str(exc) or type(exc).__name__
            pause = min(self.settings.interval_s * (2 ** status.failures), _MAX_BACKOFF_S)
            status.next_try = self.clock() + pause
            # 422: the witness holds a checkpoint of this log that the new one does not
            # extend. That is an integrity incident (a fork, or a rewritten log), not an outage.
            level = logging.CRITICAL if status.last_error.startswith("HTTP 422") else \
                logging.WARNING
            _log.log(level, "witness %s: %s (next try in %.1f s)", status.key.name,
                     status.last_error, pause)
            return
        status.failures = 0
        status.last_error = ""

    async def _exchange(self, status: WitnessStatus, size: int, note: str) -> None:
        assert self._session is not None
        text = note[: note.index("\n\n") + 1]
        for _ in range(3):  # a 409 moves the old size; twice in a row is a witness in a hurry
            old = status.known_size
            if old > size:
                status.ahead = True  # it saw a bigger tree: wait for ours to grow past it
                return
            status.ahead = False
            proof = await self.audit.consistency(old, size) if 0 < old < size else []
            body = AddCheckpoint(old, tuple(proof), note).to_body()
            async with self._session.post(status.url, data=body,
                                          headers={"Content-Type": "text/plain"}) as response:
                answer = await response.content.read(_MAX_RESPONSE)
                if response.status == 409 and response.content_type == "text/x.tlog.size":
                    given = answer.decode("ascii", "replace").strip()
                    if not given.isdigit():
                        raise _WitnessFailedError(f"409 with a malformed size {given!r}")
                    status.known_size = int(given)
                    continue
                if response.status != 200:
                    raise _WitnessFailedError(f"HTTP {response.status}: "
                                  f"{answer[:200].decode('utf-8', 'replace').strip()}")
            await self._keep(status, size, text, answer.decode("utf-8", "replace"))
            return
        raise _WitnessFailedError("the witness keeps naming other sizes")

    async def _keep(self, status: WitnessStatus, size: int, text: str, answer: str) -> None:
        lines = [line + "\n" for line in answer.splitlines() if line]
        _, parsed = signature_lines(text + "\n" + "".join(lines))
        for (name, raw), line in zip(parsed, lines, strict=True):
            if name != status.key.name or raw[:4] != status.key.key_id:
                continue
            cosigned_at = status.key.timestamp_of(text, raw[4:])  # NoteError when bad
            row = StoredCosignature(size, name, line, cosigned_at, _now_ms())
            await self.store.run(lambda s, row=row: s.add_cosignature(row))  # type: ignore[misc]
            status.known_size = status.cosigned_size = size
            return
        raise _WitnessFailedError("no cosignature by its key in the answer")

    async def witnessed_note(self) -> str | None:
        """The largest checkpoint cosigned by k witnesses, with their cosignatures."""
        if self.witnessed_size and self._served.size == self.witnessed_size:
            return self._served.note
        since = self.witnessed_size
        sizes = await self.store.run(
            lambda s: s.witnessed_sizes(self.policy.names, self.policy.k, since))
        for size in sizes:
            note = await self.store.run(lambda s, size=size: s.submitted(size))  # type: ignore[misc]
            rows = await self.store.run(lambda s, size=size: s.cosignatures(size))  # type: ignore[misc]
            if note is None:
                continue
            lines = [r.line for r in rows if r.witness in self.policy.names]
            full = note_with_cosignatures(note, lines)
            try:
                if len(cosignatures(full, self.policy.witnesses)) < self.policy.k:
                    continue
            except NoteError:
                _log.critical("a kept cosignature of checkpoint %d does not verify", size)
                continue
            self._served = _Served(size, full)
            return full
        return None

    def metric_families(self) -> list[MetricFamily]:
        """What ``/metrics`` shows of witnessing."""
        return [
            MetricFamily("ecert_audit_witnessed_size", "gauge",
                         "Size of the largest checkpoint cosigned by k witnesses.",
                         [({}, float(self.witnessed_size))]),
            MetricFamily("ecert_audit_unwitnessed_seconds", "gauge",
                         "How long the latest checkpoint has waited for k cosignatures.",
                         [({}, self.unwitnessed_s)]),
            MetricFamily("ecert_audit_witness_alert", "gauge",
                         "1 when the latest checkpoint is unwitnessed past alert_after_s.",
                         [({}, 1.0 if self.alerting else 0.0)]),
            MetricFamily("ecert_audit_witness_cosigned_size", "gauge",
                         "The largest checkpoint size each witness cosigned.",
                         [({"witness": s.key.name}, float(s.cosigned_size))
                          for s in self.statuses]),
            MetricFamily("ecert_audit_witness_failures", "gauge",
                         "Consecutive failed add-checkpoint rounds, per witness.",
                         [({"witness": s.key.name}, float(s.failures)) for s in self.statuses]),
        ]


# -- Huzhou's witness ----------------------------------------------------------------------------


def load_witness_signer(data_dir: Path, name: str) -> CosignatureSigner:
    """Huzhou's witness key (``keys/witness-ed25519.key``, made on first use)."""
    seed = load_or_create_secret(keys_dir(data_dir) / WITNESS_KEY_FILE)
    return CosignatureSigner(name, Ed25519PrivateKey.from_private_bytes(seed))


class HuzhouWitness:
    """Huzhou's tlog-witness: cosigns the configured partners' checkpoints."""

    def __init__(self, signer: CosignatureSigner, settings: WitnessSettings,
                 store: Worker[WitnessStore],
                 clock_s: Callable[[], int] = lambda: int(time.time())) -> None:
        self.signer = signer
        self.logs = {log.origin: NoteVerifier.from_vkey(log.vkey) for log in settings.logs}
        self._store = store
        self._clock_s = clock_s

    @property
    def vkey(self) -> str:
        """The witness's cosignature/v1 vkey."""
        return self.signer.key.to_vkey()

    async def add_checkpoint(self, body: bytes) -> str:
        """Judge and cosign one request: the cosignature line, or ``WitnessError``."""
        request = AddCheckpoint.from_body(body)
        origin = request.note.split("\n", 1)[0]
        if origin not in self.logs:
            raise WitnessError(404, f"unknown log {origin!r}")
        logs = self.logs

        def decide(state: dict[str, tuple[int, bytes]]) -> tuple[int, bytes, str]:
            checkpoint = judge(request, logs, state)
            return checkpoint.size, checkpoint.root_hash, request.note

        await self._store.run(lambda s: s.advance(origin, decide, _now_ms()))
        # tlog-cosignature: the signed message holds the checkpoint's note text exactly.
        return self.signer.cosign(request.note[: request.note.index("\n\n") + 1],
                                  self._clock_s())
