"""The audit service: group-committing writer, in-memory tree, checkpoint publisher.

Write path. ``append(event)`` builds the record (pseudonymised, canonical
bytes, leaf hash) on the event loop, queues it with a loop future and wakes the
writer task; ``append_many``/``append_proved_many`` queue a group of records with
one future. Before it takes a batch, the writer lets the event loop run the requests
it has ready, one turn at a time while their records keep arriving (at most
``_SETTLE_TURNS``), so they join the same commit rather than the next; it stops at the
first turn that adds none, so it never waits on an idle loop. When its last commit found
entries another writer had committed meanwhile (another worker of ``serve --workers N``
or another gateway on the same log), it first waits on its thread until that writer's
commit is over (``AuditStore.wait_turn``), and the loop's records keep arriving
meanwhile: writers sharing a log take turns with one commit each, each carrying what
came while the other committed, instead of each queueing a small batch behind the
other's and paying a commit (its fsync and signature) for it. Such a batch's tree is
hashed on the writer thread only, where the other's entries are seen. It takes whole
groups up to ``batch_max`` queued records and hands the batch to the writer thread once (one job
on the thread's queue: one hand-off and one wake-up back per batch, no per-record object
crosses threads). The thread commits them in one transaction under the sequencer lock (SQLite
``BEGIN IMMEDIATE`` with ``synchronous=FULL``, or a PostgreSQL advisory lock).
When a caller of the batch waits for a proof (``append_proved``), the same
transaction keeps ONE checkpoint signed for the tree the batch makes (its right
edge, ``Frontier``, is handed over with the batch), so one fsync covers both.
Back on the loop the writer grows the tree, makes the inclusion proofs from
memory (the leaf hashes of recent chunks are kept) and resolves every future.
A failed commit fails every future of the batch with ``AuditUnavailableError``.

Tree. The service keeps the complete nodes of the Merkle tree from chunks of
16 leaves up in memory, rebuilt at start from the chunk nodes kept in
``audit-tree.nodes`` below the latest checkpoint (``_nodes``) and the stored
leaf hashes after them, checked against that checkpoint, and grown only from
what the store confirms: its own batches plus entries other writers (another gateway on
the same PostgreSQL, or the CLI) committed first, which the store reports
under the same lock. Proofs are served from it, reading only the leaf hashes
of an older chunk they go into (checked against its node): from
``audit-tree.leaves`` (``_leaves``: one ``pread``, kept by the publisher from
the leaf hashes the tree took), else from the store.

Checkpoints. Every batch with a record whose caller wants a proof is covered
by its own checkpoint (above), which is what log-backed receipts carry. A
publisher task also looks every ``checkpoint_interval_s``; when the tree has
grown past the latest kept checkpoint (records nobody asked a proof of, or
entries other writers such as the CLI added) it proves consistency from that
checkpoint to the new tree with ``trust.merkle``, and only then signs the new
checkpoint and keeps it (all checkpoints are kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import orjson

from gateway.audit._keys import HmacKeyring, load_signing_key
from gateway.audit._leaves import LEAVES_FILE, LeafFile
from gateway.audit._nodes import (
    NODES_FILE,
    chunk_nodes_held,
    read_chunk_nodes,
    reset_chunk_nodes,
    write_chunk_nodes,
)
from gateway.audit._record import (
    Pseudonymiser,
    Uuid7Generator,
    build_record,
    encode_record,
    event_time_ms,
    record_matter,
    record_partner,
    record_time_ms,
)
from gateway.audit._store import (
    AuditStore,
    AuditStoreError,
    EntryRow,
    RecordFilter,
    Seal,
    StoredCheckpoint,
    open_store,
)
from gateway.audit._tree import (
    ChunkLevels,
    ChunkMismatchError,
    Frontier,
    GivenChunks,
    MerkleTree,
    MissingLeavesError,
    TreeError,
)
from gateway.audit.event import AuditEvent, AuditUnavailableError, LoggedEntry, receipt_json
from gateway.infra.metrics import MetricFamily
from trust import CHINA_TZ
from trust.merkle import HASH_SIZE, MerkleProofError, leaf_hash, verify_consistency
from trust.note import Checkpoint, NoteError, NoteSigner, NoteVerifier, open_checkpoint

__all__ = [
    "AuditService",
    "EntryProof",
    "LogIntegrityError",
    "append_event_sync",
    "check_log_identity",
    "origin_for",
]

_log = logging.getLogger("gateway.audit")

T = TypeVar("T")

_MAX_PENDING = 100_000
"""Rows queued at most; more are refused (``AuditUnavailableError``)."""
_INDEX, _PROVED, _INDICES, _PROVED_MANY = 0, 1, 2, 3
"""What a caller waits for: bit 1, a proof (``LoggedEntry``); bit 2, a list (one per event)."""
_MANY = 2
_SETTLE_TURNS = 8
"""Loop turns the writer lets run, while each adds records, before it takes a batch."""
_Waiter = tuple[int, "asyncio.Future[Any]", int]
"""One caller's rows in the queue: how many, its future, what it waits for."""
TREE_CHUNK_BITS = 4
"""The in-memory tree keeps nodes of 16 leaves and up: about 4 bytes per entry. (Chunks of
64 leaves keep a quarter of that but make a proof read and rehash 64 leaves, which doubled
its time; bench/RESULTS.md, 2026-11-27 05:20.)"""
_CATCH_UP_SLICE = 65_536
"""Leaf hashes read from the store at a time when the tree catches up (at start: the whole log)."""
_LEAVES_PENDING_MAX = 1 << 20
"""Leaf hashes held for ``audit-tree.leaves`` while it lags (32 MB at most): past that they are
dropped and read from the store when the file catches up."""
_FILL_WAIT_S = 0.5
"""How often a process waiting for another's fill of ``audit-tree.leaves`` looks again."""
_SKIP_MIN_CHUNKS = 4
"""Chunks another process's kept nodes must be ahead of the tree before it grows by them
(``_skip_ahead``) instead of by stored leaf hashes."""
_HMAC_CHECK = b"ecert-gateway audit hmac key check"
BACKEND_FILE = "audit-backend"


class LogIntegrityError(AuditUnavailableError):
    """The stored log contradicts what was signed or configured; it is not written to."""


def origin_for(gateway_id: str, configured: str | None = None) -> str:
    """The log's origin line (and key name): configured, or derived from the gateway id."""
    if configured:
        return configured
    return (
        "huzhou.ecert-gateway/audit"
        if gateway_id == "330500"
        else f"{gateway_id}.ecert-gateway/audit"
    )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _row(record: dict[str, Any], data: bytes, ts_ms: int | None = None) -> EntryRow:
    """The stored row of a record and its bytes: the columns queries filter on, derived
    from the record alone (the same for a live append and a rebuilt or imported one)."""
    return EntryRow(  # by position (the fields' order): cheaper than by name
        str(record["event_id"]),
        record_time_ms(record) if ts_ms is None else ts_ms,
        str(record["event_type"]),
        str(record["outcome"]),
        record_partner(record),
        record_matter(record),
        data,
        leaf_hash(data),
    )


def check_log_identity(
    store: AuditStore,
    keyring: HmacKeyring,
    *,
    origin: str | None = None,
    verifier: NoteVerifier | None = None,
) -> None:
    """Refuse a store that belongs to another origin, signing key or HMAC key.

    The first writer records them in ``audit_meta``; every later writer (other
    gateway instances, the CLI) must present the same, so one log never mixes
    pseudonyms or signatures made under different keys.
    """
    for version in range(1, keyring.current + 1):
        try:
            key = keyring.key(version)
        except KeyError:
            continue
        check = hmac.new(key, _HMAC_CHECK, "sha256").hexdigest()
        if store.set_meta_once(f"hmac_check_v{version}", check) != check:
            raise LogIntegrityError(
                f"keys/audit-hmac-v{version}.key differs from the key this log was written with"
            )
    if origin is not None and store.set_meta_once("origin", origin) != origin:
        raise LogIntegrityError(f"this log's origin is {store.meta('origin')!r}, not {origin!r}")
    if verifier is not None:
        vkey = verifier.to_vkey()
        if store.set_meta_once("vkey", vkey) != vkey:
            raise LogIntegrityError(
                "keys/audit-ed25519.key is not the key this log is signed with"
                f" ({store.meta('vkey')})"
            )


def _write_backend_marker(data_dir: Path, backend: str) -> None:
    path = data_dir / BACKEND_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8").strip() != backend:
        path.write_text(backend + "\n", encoding="utf-8")


def _check_backend(data_dir: Path, postgres_dsn: str | None) -> None:
    path = data_dir / BACKEND_FILE
    if (postgres_dsn is None and path.exists()
            and path.read_text(encoding="utf-8").strip() == "postgres"):
        raise AuditUnavailableError(
            "this data folder's audit log is in PostgreSQL: pass its DSN (--postgres-dsn)"
        )


def append_event_sync(
    data_dir: Path,
    event: AuditEvent,
    *,
    postgres_dsn: str | None = None,
    gateway_id: str = "330500",
) -> int:
    """Append one event from a process that runs no service (the CLI).

    The record is sequenced under the same lock the gateway's writer takes, so
    it joins the same log whether or not a gateway runs; a running gateway picks
    it up in its tree and covers it with its next checkpoint. Returns the index
    once the record is durable.
    """
    try:
        _check_backend(data_dir, postgres_dsn)
        store = open_store(data_dir, postgres_dsn)
        try:
            keyring = HmacKeyring.load(data_dir)
            check_log_identity(store, keyring)
            record = build_record(
                event,
                event_id=Uuid7Generator(_now_ms)(),
                pseudonymiser=Pseudonymiser(keyring),
                gateway=gateway_id,
            )
            first, _ = store.append([_row(record, encode_record(record))], None)
        finally:
            store.close()
    except (AuditStoreError, OSError, ValueError, TypeError) as exc:
        raise AuditUnavailableError(f"audit record not written: {exc}") from exc
    return first


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # the caller may have gone (cancelled): its job still ran
        future.set_result(result)


def _reject(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


_Job = tuple[Callable[["AuditStore"], Any] | None, "asyncio.Future[Any]",
             asyncio.AbstractEventLoop]
"""A worker's job: what to run on its store (None: close it), the future, its loop."""


def _hand_back(loop: asyncio.AbstractEventLoop,
               callback: Callable[[asyncio.Future[Any], Any], None],
               future: asyncio.Future[Any], value: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
        loop.call_soon_threadsafe(callback, future, value)


class _Worker:
    """One long-lived thread that owns one store connection.

    Jobs reach it through a ``SimpleQueue`` and their results come back with one
    ``call_soon_threadsafe`` each: no executor, no ``concurrent.futures`` future
    chained to an asyncio one per job (a batch of the writer is one job).
    """

    def __init__(self, name: str, factory: Callable[[], AuditStore]) -> None:
        self._factory = factory
        self._store: AuditStore | None = None
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        jobs = self._jobs
        while True:
            fn, future, loop = jobs.get()
            try:
                if fn is None:  # close: the last job
                    if self._store is not None:
                        self._store.close()
                        self._store = None
                    result = None
                else:
                    if self._store is None:
                        self._store = self._factory()
                    result = fn(self._store)
            except BaseException as exc:  # handed to the awaiting caller, whatever it is
                _hand_back(loop, _reject, future, exc)
            else:
                _hand_back(loop, _resolve, future, result)
            if fn is None:
                return

    async def _submit(self, fn: Callable[[AuditStore], Any] | None) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._jobs.put((fn, future, loop))
        return await future

    async def run(self, fn: Callable[[AuditStore], T]) -> T:
        return cast("T", await self._submit(fn))

    async def close(self) -> None:
        """Close the store after every job queued before, and end the thread."""
        await self._submit(None)


@dataclass(frozen=True, slots=True)
class EntryProof:
    """An entry with its inclusion proof in a signed checkpoint's tree."""

    index: int
    leaf: bytes
    """The record bytes hashed; empty when the record was pruned."""
    record: dict[str, Any]
    """Empty when an approved prune deleted the record (``leaf_hash`` is kept)."""
    tree_size: int
    inclusion: list[bytes]
    checkpoint: str
    leaf_hash: bytes = b""
    """The stored leaf hash, ``SHA-256(0x00 || leaf)``."""
    pruned: bool = False
    """Whether the record's bytes were pruned (retention); its leaf hash still proves it."""


class AuditService:
    """The gateway's audit log (implements ``AuditLog``)."""

    def __init__(
        self,
        *,
        data_dir: Path,
        postgres_dsn: str | None = None,
        gateway_id: str = "330500",
        origin: str | None = None,
        batch_max: int = 2000,
        checkpoint_interval_s: float = 1.0,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self.data_dir = data_dir
        self.postgres_dsn = postgres_dsn
        self.gateway_id = gateway_id
        self.origin = origin_for(gateway_id, origin)
        self._batch_max = max(1, batch_max)
        self._interval = checkpoint_interval_s
        self._clock_ms = clock_ms
        self._new_id = Uuid7Generator(clock_ms)
        self._tree = MerkleTree()
        self._frontier: Frontier | None = None  # the tree's right edge after the last batch
        self._rows: list[EntryRow] = []  # built, waiting for the writer
        self._waiters: list[_Waiter] = []  # their callers: rows each, future, kind
        self._wake = asyncio.Event()
        self._publish_lock = asyncio.Lock()
        self._closing = False
        self._started = False
        self._tasks: list[asyncio.Task[None]] = []
        self._writer_worker: _Worker | None = None
        self._reader_worker: _Worker | None = None
        self._signer: NoteSigner | None = None
        self._pseudonymiser: Pseudonymiser | None = None
        self._latest: StoredCheckpoint | None = None
        self._nodes_kept = 0  # chunk nodes written to audit-tree.nodes
        self._leaf_file: LeafFile | None = None  # audit-tree.leaves (_leaves)
        self._leaves_at = 0  # entry index of the first hash in _leaves_pending
        self._leaves_pending = bytearray()  # leaf hashes the tree has, the file may not yet
        self._leaves_held = 0  # what the file held at the last write
        self._leaf_fill: asyncio.Task[None] | None = None
        self._fill_worker: _Worker | None = None
        self._shared = False  # the last commit found other writers' entries (_writer_loop)
        self.commits = 0
        """Batches committed by this instance (one transaction and fsync each)."""
        self.committed = 0
        """Records committed by this instance."""
        self.skipped = 0
        """Other writers' entries the tree took by their kept chunk nodes (``_skip_ahead``)."""
        self.receipts_early = 0
        """Commits whose receipts were made while the commit waited for the disk
        (``_early``)."""

    def metric_families(self) -> list[MetricFamily]:
        """Commits and records written by this instance, for ``/metrics``: their ratio is
        the records one fsync (and one checkpoint signature) covers; the other writers'
        entries it followed by their kept nodes (``_skip_ahead``); and the commits whose
        receipts were made while they waited for the disk (``_early``)."""
        return [
            MetricFamily("ecert_audit_commits", "counter",
                         "Audit batches committed (one transaction and fsync each).",
                         [({}, self.commits)]),
            MetricFamily("ecert_audit_records", "counter", "Audit records committed.",
                         [({}, self.committed)]),
            MetricFamily("ecert_audit_followed_by_nodes", "counter",
                         "Other writers' audit entries this instance's tree took by their"
                         " kept chunk nodes, not leaf by leaf.",
                         [({}, self.skipped)]),
            MetricFamily("ecert_audit_receipts_early", "counter",
                         "Audit commits whose receipts were made while the commit waited"
                         " for the disk.",
                         [({}, self.receipts_early)]),
        ]

    @property
    def tree_size(self) -> int:
        """Entries this instance's tree holds."""
        return self._tree.size

    def tree_memory_bytes(self) -> int:
        """Bytes of hashes the in-memory tree holds."""
        return self._tree.memory_bytes()

    @property
    def verifier(self) -> NoteVerifier:
        """The log's public note key."""
        assert self._signer is not None, "service not started"
        return self._signer.verifier

    def vkey(self) -> str:
        """The verifier key in signed-note vkey form."""
        return self.verifier.to_vkey()

    def _open(self) -> AuditStore:
        return open_store(self.data_dir, self.postgres_dsn)

    async def _write(self, fn: Callable[[AuditStore], T]) -> T:
        assert self._writer_worker is not None, "service not started"
        return await self._writer_worker.run(fn)

    async def _read(self, fn: Callable[[AuditStore], T]) -> T:
        assert self._reader_worker is not None, "service not started"
        return await self._reader_worker.run(fn)

    async def start(self) -> None:
        """Open the store, check the log against its latest checkpoint, start the tasks."""
        loop = asyncio.get_running_loop()
        self._writer_worker = _Worker("audit-writer", self._open)
        self._reader_worker = _Worker("audit-reader", self._open)
        self._fill_worker = _Worker("audit-leaves", self._open)
        try:
            await loop.run_in_executor(None, _check_backend, self.data_dir, self.postgres_dsn)
            signing_key = await loop.run_in_executor(None, load_signing_key, self.data_dir)
            keyring = await loop.run_in_executor(None, HmacKeyring.load, self.data_dir)
            self._signer = NoteSigner(self.origin, signing_key)
            self._pseudonymiser = Pseudonymiser(keyring)
            verifier = self._signer.verifier
            await self._write(
                lambda s: check_log_identity(s, keyring, origin=self.origin, verifier=verifier)
            )
            backend = "postgres" if self.postgres_dsn else "sqlite"
            await loop.run_in_executor(None, _write_backend_marker, self.data_dir, backend)
            # The latest checkpoint first, then the entries: a checkpoint is committed with
            # or after the entries it covers, so the tree read after it holds them all even
            # while other writers commit (read the other way round, a checkpoint kept in
            # between looked like entries gone missing, and the start was refused).
            latest = await self._read(lambda s: s.latest_checkpoint())
            await self._load_tree(latest)
            self._latest = latest
        except AuditStoreError as exc:
            await self._close_workers()
            raise AuditUnavailableError(f"audit store unavailable: {exc}") from exc
        except BaseException:
            await self._close_workers()
            raise
        self._started = True
        self._tasks = [
            asyncio.create_task(self._writer_loop(), name="audit-writer"),
            asyncio.create_task(self._publisher_loop(), name="audit-checkpoints"),
        ]
        _log.info("audit log open", extra={"tree_size": self._tree.size, "origin": self.origin})

    def _new_tree(self) -> MerkleTree:
        # Enough recent chunks to prove a whole batch from memory (and its neighbours).
        return MerkleTree(TREE_CHUNK_BITS, recent_chunks=(self._batch_max >> TREE_CHUNK_BITS) + 4)

    async def _load_tree(self, latest: StoredCheckpoint | None) -> None:
        """Rebuild the tree and check it against the latest signed checkpoint.

        The chunk nodes kept in ``audit-tree.nodes`` are used for the chunks below the
        checkpoint (``n / 16`` hashes read instead of ``n``), the stored leaf hashes from
        there on. If the rebuilt tree does not hash to the signed root, the kept nodes are
        dropped and the tree is rebuilt from the stored leaf hashes alone, which must then
        hash to it (else ``LogIntegrityError``, as before).
        """
        loop = asyncio.get_running_loop()
        k = TREE_CHUNK_BITS
        self._tree = self._new_tree()
        self._frontier = None
        self._nodes_kept = 0
        self._leaf_file = leaf_file = LeafFile(self.data_dir)
        try:
            file_held = await loop.run_in_executor(None, leaf_file.held)
        except OSError as exc:
            _log.warning("%s not readable, proofs read the store: %s", LEAVES_FILE, exc)
            self._leaf_file, file_held = None, 0
        nodes = b""
        if latest is not None and latest.size >> k:
            self._open_checkpoint(latest)
            stored = await self._read(lambda s: s.size())
            if stored < latest.size:
                raise LogIntegrityError(
                    f"the log holds {stored} entries but a checkpoint of {latest.size}"
                    " was signed: entries are missing (run `audit verify`)"
                )
            nodes = await loop.run_in_executor(None, read_chunk_nodes, self.data_dir, k,
                                               latest.size >> k)
        if nodes:
            await loop.run_in_executor(None, self._tree.load_chunk_nodes, nodes)
            self._pend_leaves_from(self._tree.size)
            await self._catch_up()
            try:
                await self._check_against(latest)
            except LogIntegrityError as exc:
                _log.error("the kept tree nodes (%s) do not match the log's latest checkpoint;"
                           " rebuilding the tree from the stored leaf hashes: %s", NODES_FILE, exc)
                await loop.run_in_executor(None, reset_chunk_nodes, self.data_dir)
                self._tree = self._new_tree()
                nodes = b""
            else:
                self._nodes_kept = len(nodes) // HASH_SIZE
        if not nodes:
            self._pend_leaves_from(0)
            await self._catch_up()
            await self._check_against(latest)
        await self._keep_nodes()
        await self._check_leaf_file(min(file_held, len(nodes) // HASH_SIZE << k))
        await self._keep_leaves()

    def _pend_leaves_from(self, index: int) -> None:
        """The tree grows from ``index``: keep its leaf hashes for the file from there."""
        self._leaves_at = index
        self._leaves_pending = bytearray()

    async def _check_leaf_file(self, below: int) -> None:
        """Check the first chunk and the last one below ``below`` that ``audit-tree.leaves``
        held at start (and this start did not write) against the tree; empty the file if one
        does not match (another log's file, or a damaged one): it is filled again from the
        store. Other chunks are checked whenever a proof reads them."""
        leaf_file, size = self._leaf_file, self._tree.chunk_size
        complete = min(below, self._tree.size) // size
        if leaf_file is None or not complete:
            return
        loop = asyncio.get_running_loop()
        for chunk in sorted({0, complete - 1}):
            leaves = await loop.run_in_executor(
                None, _file_leaves, leaf_file, chunk * size, (chunk + 1) * size)
            try:
                self._tree.chunk_levels(chunk, leaves or [])
            except ChunkMismatchError as exc:
                _log.warning("%s does not match the log (%s): emptied, it is written again"
                             " from the stored leaf hashes", LEAVES_FILE, exc)
                try:
                    await loop.run_in_executor(None, leaf_file.reset)
                except OSError as err:
                    _log.warning("%s not emptied: %s", LEAVES_FILE, err)
                self._leaves_held = 0
                return

    async def _keep_leaves(self, *, fill: bool = True) -> None:
        """Write the leaf hashes the tree took since the last write to ``audit-tree.leaves``;
        when the file lags behind them (new, emptied, truncated, deleted), start filling the
        gap from the store (``fill``) and keep them until it is filled."""
        leaf_file = self._leaf_file
        if leaf_file is None or (self._leaf_fill is not None and not self._leaf_fill.done()):
            return
        at, data = self._leaves_at, bytes(self._leaves_pending)
        loop = asyncio.get_running_loop()
        try:
            held = await loop.run_in_executor(None, leaf_file.write, at, data)
        except OSError as exc:  # a cache: proofs read the store instead
            _log.warning("leaf hashes not kept in %s: %s", LEAVES_FILE, exc)
            return
        self._leaves_held = held
        if held < at:
            if fill and not self._closing:
                self._leaf_fill = asyncio.create_task(self._fill_leaves(), name="audit-leaves")
            return
        if self._leaves_at == at:  # not dropped meanwhile (_absorb)
            del self._leaves_pending[: len(data)]
            self._leaves_at = at + len(data) // HASH_SIZE

    async def _fill_leaves(self) -> None:
        """Write to ``audit-tree.leaves`` the stored leaf hashes it lacks before those kept
        for it, a slice at a time, on a connection of its own (proofs go on meanwhile,
        reading the store for what the file does not hold yet)."""
        leaf_file, worker = self._leaf_file, self._fill_worker
        assert leaf_file is not None
        assert worker is not None
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            held = await loop.run_in_executor(None, leaf_file.held)
            # One process fills at a time; the others wait for it (or its end) and re-check.
            while held < self._leaves_at and not await loop.run_in_executor(
                    None, leaf_file.try_fill_lock):
                if self._closing:
                    return
                await asyncio.sleep(_FILL_WAIT_S)
                held = await loop.run_in_executor(None, leaf_file.held)
            begin = held
            while held < self._leaves_at and not self._closing:
                end = min(held + _CATCH_UP_SLICE, self._leaves_at)
                hashes = await worker.run(partial(_leaf_hashes, held, end))
                if len(hashes) != end - held:
                    _log.warning("%s not filled: entries [%d, %d) are not all stored",
                                 LEAVES_FILE, held, end)
                    return
                written = await loop.run_in_executor(
                    None, leaf_file.write, held, b"".join(hashes))
                if written < end:  # another process emptied it meanwhile: start over
                    written = await loop.run_in_executor(None, leaf_file.held)
                held = max(written, await loop.run_in_executor(None, leaf_file.held))
            self._leaves_held = held
        except (AuditStoreError, OSError) as exc:
            _log.warning("%s not filled from the store: %s", LEAVES_FILE, exc)
            return
        finally:
            leaf_file.release_fill_lock()
        _log.info("%s filled from the store", LEAVES_FILE,
                  extra={"entries": held - begin, "seconds": time.perf_counter() - started})

    async def leaves_kept(self) -> int:
        """Wait until ``audit-tree.leaves`` holds every leaf hash the tree has (a fill from
        the store included, tried again twice if it stops short); return how many it holds."""
        for _ in range(3):
            fill = self._leaf_fill
            if fill is not None and not fill.done():
                await asyncio.shield(fill)
            await self._keep_leaves()
            fill = self._leaf_fill
            if fill is None or fill.done():
                break
        return self._leaves_held

    async def _keep_nodes(self) -> None:
        """Write the nodes of chunks completed since the last write to ``audit-tree.nodes``."""
        first, complete = self._nodes_kept, self._tree.size >> TREE_CHUNK_BITS
        if complete <= first:
            return
        nodes = self._tree.chunk_nodes(first, complete)
        loop = asyncio.get_running_loop()
        try:
            self._nodes_kept = await loop.run_in_executor(
                None, write_chunk_nodes, self.data_dir, TREE_CHUNK_BITS, first, nodes)
        except OSError as exc:  # a cache: the next start reads the stored leaf hashes instead
            _log.warning("tree nodes not kept in %s: %s", NODES_FILE, exc)

    def _open_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        """A kept checkpoint's note must verify and say what its row says."""
        try:
            body = open_checkpoint(checkpoint.note, self.verifier, origin=self.origin)
        except NoteError as exc:
            raise LogIntegrityError(
                f"the checkpoint of {checkpoint.size} entries does not verify: {exc}") from exc
        if body.size != checkpoint.size or body.root_hash != checkpoint.root:
            raise LogIntegrityError(f"the checkpoint row of {checkpoint.size} entries does not"
                                    " match its signed note")

    async def _check_against(self, latest: StoredCheckpoint | None) -> None:
        """The stored log must still contain the latest signed checkpoint's tree."""
        if latest is None:
            return
        self._open_checkpoint(latest)
        if self._tree.size < latest.size:
            raise LogIntegrityError(
                f"the log holds {self._tree.size} entries but a checkpoint of {latest.size}"
                " was signed: entries are missing (run `audit verify`)"
            )
        root = await self._with_leaves(lambda given: self._tree.root(latest.size, given))
        if root != latest.root:
            raise LogIntegrityError(
                f"the first {latest.size} entries no longer hash to the signed root"
                " (run `audit verify`)"
            )

    async def stop(self) -> None:
        """Write every queued record, publish a last checkpoint and close."""
        if not self._started:
            return
        self._started = False
        self._closing = True
        self._wake.set()
        writer, publisher = self._tasks
        await writer
        publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publisher
        if self._leaf_fill is not None:  # stops after its slice (_closing); the next start
            await self._leaf_fill          # fills on from what the file holds
        try:
            await self.publish()
        except (AuditUnavailableError, AuditStoreError):
            _log.exception("last checkpoint not published")
        await self._close_workers()

    async def _close_workers(self) -> None:
        for worker in (self._writer_worker, self._reader_worker, self._fill_worker):
            if worker is not None:
                await worker.close()
        self._writer_worker = self._reader_worker = self._fill_worker = None
        if self._leaf_file is not None:
            self._leaf_file.close()
            self._leaf_file = None

    async def __aenter__(self) -> AuditService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- writing ---------------------------------------------------------------

    async def append(self, event: AuditEvent) -> int:
        """Make the event's record durable and return its leaf index."""
        return cast("int", await self._enqueue([self._build_row(event)], _INDEX))

    async def append_proved(self, event: AuditEvent) -> LoggedEntry:
        """Make the event's record durable; return it with its inclusion proof in the
        tree its batch made, and that tree's signed checkpoint."""
        return cast("LoggedEntry", await self._enqueue([self._build_row(event)], _PROVED))

    async def append_many(self, events: Sequence[AuditEvent]) -> list[int]:
        """``append`` of several events at once: their records are committed together, in
        order (consecutive indices), with one future for all of them."""
        if not events:
            return []
        build = self._build_row
        return cast("list[int]", await self._enqueue([build(e) for e in events], _INDICES))

    async def append_proved_many(self, events: Sequence[AuditEvent]) -> list[LoggedEntry]:
        """``append_proved`` of several events at once (a batch of answers): committed
        together, in order, under one checkpoint, with one future for all of them."""
        if not events:
            return []
        build = self._build_row
        return cast("list[LoggedEntry]",
                    await self._enqueue([build(e) for e in events], _PROVED_MANY))

    def _build_row(self, event: AuditEvent) -> EntryRow:
        """The record of an event as the store keeps it: built, encoded and hashed once."""
        pseudonymiser = self._pseudonymiser
        if not self._started or self._closing or pseudonymiser is None:
            raise AuditUnavailableError("audit log is not running")
        try:
            record = build_record(event, event_id=self._new_id(), pseudonymiser=pseudonymiser,
                                  gateway=self.gateway_id)
            return _row(record, encode_record(record), event_time_ms(event.at))
        except (TypeError, ValueError) as exc:
            raise AuditUnavailableError(f"audit record cannot be built: {exc}") from exc

    def _enqueue(self, rows: list[EntryRow], kind: int) -> asyncio.Future[Any]:
        """Queue built rows with one future for all of them and wake the writer."""
        if len(self._rows) + len(rows) > _MAX_PENDING:
            raise AuditUnavailableError("audit log is overloaded")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._rows += rows
        self._waiters.append((len(rows), future, kind))
        self._wake.set()
        # No shield needed: a caller that goes away cancels only its own future, its records
        # are still written, and the writer skips futures that are already done.
        return future

    def _sealer(self, frontier: Frontier, ours: Frontier | None, rows: list[EntryRow],
                created_ms: int, sealed: list[tuple[StoredCheckpoint, Frontier]]) -> Seal:
        """What signs the tree a batch makes, inside its transaction, on the writer thread.

        The tree the batch makes when nobody else wrote first (``ours``: ``frontier``
        grown by the batch) is hashed on the loop; the thread then only signs. When
        entries of other writers came first, or ``ours`` is None (another writer is
        taking turns with this one, so its entries are all but sure to come first), the
        thread hashes it from its own copy of the right edge: never the loop's tree.
        ``sealed`` gets the checkpoint and the right edge it was signed for (the tree's
        once the batch is absorbed). Neither ``frontier`` nor ``ours`` is changed.
        """
        signer = self._signer
        assert signer is not None
        known = frontier.size
        edge = ours
        root = b"" if ours is None else ours.root()

        def seal(first: int, foreign: list[bytes]) -> StoredCheckpoint:
            nonlocal edge, root
            if edge is None or foreign or first != known:
                edge = frontier.copy()
                edge.extend(foreign)
                edge.extend(row.leaf_hash for row in rows)
                root = edge.root()
            size = edge.size
            if size != first + len(rows):
                raise AuditStoreError(f"the batch ends at {first + len(rows)}, its tree at"
                                      f" {size}")
            note = Checkpoint(self.origin, size, root).sign(signer)
            sealed[:] = [(StoredCheckpoint(size, root, note, created_ms), edge)]
            return sealed[0][0]

        return seal

    async def _writer_loop(self) -> None:
        while True:
            waiters = self._waiters
            if not waiters:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            contended = self._shared
            if contended:  # another writer commits in turn: wait for it to be done
                self._shared = False
                try:
                    await self._write(_wait_turn)
                except Exception:  # only a wait: the commit below meets the cause and says it
                    _log.debug("waiting for the other writer failed", exc_info=True)
            await self._settle()  # the requests the loop has ready add theirs first
            # Whole callers' groups, up to batch_max rows (a larger group goes alone).
            count = taken = 0
            for n, _, _ in waiters:
                if taken and count + n > self._batch_max:
                    break
                count += n
                taken += 1
            batch = waiters[:taken]
            del waiters[:taken]
            rows = self._rows[:count]
            del self._rows[:count]
            try:
                await self._commit(rows, batch, contended=contended)
            except Exception as exc:
                _log.error("audit batch not written: %s", exc)
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(
                            AuditUnavailableError(f"audit record not written: {exc}")
                        )

    async def _settle(self) -> None:
        """Let the loop run what it has ready, one turn at a time, while the turns add rows.

        Requests read while the last commit was on the thread (or in the turn that woke
        the writer) are answered in the turns after it, and most of them queue a record:
        taken at once, each commit would carry about half of the requests in flight, and
        pay its fsync and signature for them alone. A turn that adds no row means the loop
        has nothing more ready, and the writer takes what is queued at once."""
        for _ in range(_SETTLE_TURNS):
            queued = len(self._rows)
            if queued >= self._batch_max or self._closing:
                return
            await asyncio.sleep(0)
            if len(self._rows) == queued:
                return

    async def _commit(self, rows: list[EntryRow], batch: list[_Waiter], *,
                      contended: bool = False) -> None:
        """Commit one batch with its checkpoint (one hand-off), then answer its futures.
        ``contended``: the last commit found another writer's entries first."""
        known = self._tree.size
        if not any(kind & _PROVED for _, _, kind in batch):
            # Nobody waits for a proof (partner queries, operator acts ...): no tree head for
            # this batch; the publisher covers it within checkpoint_interval_s.
            first, foreign = await self._write(partial(_append, rows, known, None, None))
            self._shared = bool(foreign)
            self.commits += 1
            self.committed += len(rows)
            self._absorb(known, [*foreign, *(row.leaf_hash for row in rows)])
            index = first
            for n, future, kind in batch:
                if not future.done():
                    future.set_result(list(range(index, index + n)) if kind & _MANY
                                      else index)
                index += n
            return
        sealed: list[tuple[StoredCheckpoint, Frontier]] = []
        base = self._frontier
        if base is None or base.size != known:
            base = self._tree.frontier()  # O(log n) nodes and the last chunk's leaves again
        ours = None
        if not contended:  # else the thread hashes the tree, with the other's entries
            ours = base.copy()
            ours.extend(row.leaf_hash for row in rows)
        seal = self._sealer(base, ours, rows, self._clock_ms(), sealed)
        early: list[dict[int, LoggedEntry]] = []
        ready = None if ours is None else self._early(base, ours, rows, batch, sealed=sealed,
                                                      early=early)
        first, foreign = await self._write(partial(_append, rows, known, seal, ready))
        self._shared = bool(foreign)
        self.commits += 1
        self.committed += len(rows)
        self._absorb(known, [*foreign, *(row.leaf_hash for row in rows)])
        checkpoint, edge = sealed[0]
        self._frontier = None  # kept below, once the tree hashes to the root just signed
        size = checkpoint.size
        if self._latest is None or self._latest.size < size:
            self._latest = checkpoint
        if early and first == known:  # the receipts were made while the commit waited
            made = early[0]
            root = await self._with_leaves(partial(self._tree.root, size))
            self.receipts_early += 1
        else:
            root, made = await self._receipts(rows, batch, first, checkpoint)
        if root != checkpoint.root:  # the tree and the note must say the same: never a bad proof
            raise LogIntegrityError(f"the tree of {size} entries does not hash to the root"
                                    " just signed for it")
        # The right edge of the tree now held, for the next batch: the one just signed,
        # other writers' entries before this batch included (append-only: same size, same
        # edge); none when the tree is not at that size (a gap, or a catch-up meanwhile).
        if self._tree.size == edge.size:
            self._frontier = edge
        index = first
        for n, future, kind in batch:
            if future.done():
                pass
            elif not kind & _PROVED:
                future.set_result(list(range(index, index + n)) if kind & _MANY else index)
            else:
                entries = [made[i] for i in range(index, index + n)]
                future.set_result(entries if kind & _MANY else entries[0])
            index += n

    async def _receipts(self, rows: list[EntryRow], batch: list[_Waiter], first: int,
                        checkpoint: StoredCheckpoint) -> tuple[bytes, dict[int, LoggedEntry]]:
        """The root of the checkpoint's tree, and the receipts of a batch just committed at
        ``first`` that its callers still wait for, by index, from the tree."""
        wanted: list[int] = []
        index = first
        for n, future, kind in batch:
            if kind & _PROVED and not future.done():
                wanted.extend(range(index, index + n))
            index += n
        tree = self._tree
        size = checkpoint.size
        low = wanted[0] if wanted else first

        def prove(given: GivenChunks) -> tuple[bytes, list[list[bytes]]]:
            # The root and every proof of the batch's span in one descent of the tree.
            if not wanted:
                return tree.root(size, given), []
            return tree.range_proofs(low, wanted[-1] + 1, size, given)

        root, span = await self._with_leaves(prove)
        note = checkpoint.note
        return root, {i: LoggedEntry(i, rows[i - first].record, size, tuple(span[i - low]), note)
                      for i in wanted}

    def _early(self, base: Frontier, ours: Frontier, rows: list[EntryRow], batch: list[_Waiter],
               *, sealed: list[tuple[StoredCheckpoint, Frontier]],
               early: list[dict[int, LoggedEntry]]) -> Callable[[], None]:
        """What the writer's thread calls once a batch and its checkpoint are written, just
        before the commit: it has the loop make the batch's receipts while the commit waits
        for the disk, instead of after.

        Only when the thread signed ``ours`` (nobody else wrote first): the proofs are then
        made from ``base`` and the batch's leaf hashes alone (``Frontier.proofs_after``),
        and used only if they hash to the signed root. ``early`` gets the receipts by index;
        nobody gets one before the commit returns, and ``_commit`` still checks the tree
        against the signed root first. Left empty otherwise (the receipts are then made
        after the commit, from the tree).
        """
        loop = asyncio.get_running_loop()

        def prepare() -> None:  # on the loop
            if not sealed or sealed[0][1] is not ours:
                return
            checkpoint = sealed[0][0]
            first, size, note = base.size, checkpoint.size, checkpoint.note
            root, paths = base.proofs_after([row.leaf_hash for row in rows])
            if root != checkpoint.root:
                return  # not used: the receipts are made from the tree after the commit
            made: dict[int, LoggedEntry] = {}
            index = first
            for n, _, kind in batch:
                if kind & _PROVED:
                    for i in range(index, index + n):
                        record, path = rows[i - first].record, tuple(paths[i - first])
                        made[i] = LoggedEntry(i, record, size, path, note,
                                              receipt_json(i, record, size, path, note))
                index += n
            early.append(made)

        def ready() -> None:  # on the writer's thread, inside the transaction: never raises
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing is early
                loop.call_soon_threadsafe(prepare)

        return ready

    def _absorb(self, start: int, hashes: list[bytes]) -> None:
        """Grow the tree with stored leaf hashes of entries ``start...``; overlaps are skipped.
        They are kept for ``audit-tree.leaves`` too (``_keep_leaves``)."""
        size = self._tree.size
        if start > size:
            return  # a gap: the next catch-up reads it from the store
        new = hashes[size - start :]
        self._tree.extend(new)
        pending = self._leaves_pending
        if new and self._leaves_at + len(pending) // HASH_SIZE == size:
            pending += b"".join(new)
            if len(pending) > _LEAVES_PENDING_MAX * HASH_SIZE:
                # The file lags far behind (a fill runs): it reads these from the store too.
                self._pend_leaves_from(self._tree.size)

    async def _catch_up(self, *, lazy: bool = False) -> None:
        """Grow the tree with entries other writers added (at start: all), a slice at a time.

        While serving, first as far as ``_skip_ahead`` can. ``lazy`` (the publisher's
        tick): when it could, the entries after it are left for the next tick, when the
        writer that added them will have kept their nodes too."""
        loop = asyncio.get_running_loop()
        if self._started and await self._skip_ahead() and lazy:
            return
        while True:
            start = self._tree.size
            hashes = await self._read(partial(_leaf_hashes, start, start + _CATCH_UP_SLICE))
            if not self._started and len(hashes) > 1000:
                # Start-up only (no writer runs yet, so the tree has one user): hash a large
                # log off the event loop. Once serving, the tree is touched only from the loop.
                await loop.run_in_executor(None, self._absorb, start, hashes)
                await self._keep_leaves(fill=False)  # the leaf file, a slice at a time
            else:
                self._absorb(start, hashes)
            if len(hashes) < _CATCH_UP_SLICE:
                return

    async def _skip_ahead(self) -> bool:
        """Grow the tree by the chunk nodes another process sharing the data folder kept in
        ``audit-tree.nodes``, up to a signed checkpoint, instead of by every stored leaf hash.

        A gateway beside a busy one (the same SQLite log) would otherwise read and hash
        the leaf of every entry the other commits. Here it reads the stored leaf hashes
        of at most two partial chunks, one 32-byte node for each of the 16 entries
        between them, and the checkpoint of the largest tree the file covers; it grows
        the tree only when that checkpoint's signature verifies and the tree it makes
        hashes to the signed root (the trust start-up gives the same file). True when it
        grew the tree."""
        tree, leaf_file = self._tree, self._leaf_file
        if tree.chunk_size == 1:
            return False
        if self._leaves_pending:
            await self._keep_leaves(fill=False)  # its own entries' leaf hashes first
            if self._leaves_pending:
                return False  # not written: they must not be dropped (_pend_leaves_from)
        size, chunk = tree.size, tree.chunk_size
        loop = asyncio.get_running_loop()
        first = -(-size // chunk)
        try:
            limit = chunk * await loop.run_in_executor(
                None, chunk_nodes_held, self.data_dir, TREE_CHUNK_BITS)
            if limit >= (first + _SKIP_MIN_CHUNKS) * chunk and leaf_file is not None:
                # Never ahead of the leaf file: this instance would fill it from the store.
                limit = min(limit, await loop.run_in_executor(None, leaf_file.held))
        except OSError:
            return False
        if limit < (first + _SKIP_MIN_CHUNKS) * chunk:
            return False
        checkpoint, head, tail = await self._read(partial(_skip_reads, size, limit, chunk))
        if checkpoint is None:
            return False
        end = checkpoint.size // chunk
        if end < first + _SKIP_MIN_CHUNKS:
            return False
        try:
            nodes = await loop.run_in_executor(
                None, read_chunk_nodes, self.data_dir, TREE_CHUNK_BITS, end, first)
        except OSError:
            return False
        if (tree.size != size or self._leaves_pending or len(nodes) != (end - first) * HASH_SIZE
                or len(head) != first * chunk - size or len(tail) != checkpoint.size - end * chunk):
            return False  # the tree grew meanwhile, or the file or the store moved: next time
        edge = tree.frontier()
        edge.extend(head)
        edge.extend_subtrees(nodes, TREE_CHUNK_BITS)
        edge.extend(tail)
        try:
            self._open_checkpoint(checkpoint)
        except LogIntegrityError as exc:
            _log.error("%s; following the stored leaf hashes", exc)
            return False
        if edge.size != checkpoint.size or edge.root() != checkpoint.root:
            _log.warning("%s does not hash to the checkpoint of %d entries; following the"
                         " stored leaf hashes", NODES_FILE, checkpoint.size)
            return False
        tree.extend(head)
        tree.extend_chunks(nodes)
        tree.extend(tail)
        self._pend_leaves_from(tree.size)  # the leaf file holds those skipped (limit)
        if self._nodes_kept >= first:
            self._nodes_kept = max(self._nodes_kept, end)  # the file holds them
        self.skipped += checkpoint.size - size
        return True

    async def _with_leaves(
        self, compute: Callable[[GivenChunks], T], read: Mapping[int, Leaves] | None = None
    ) -> T:
        """Run a tree computation, reading the chunks of leaves it asks for.

        The tree keeps no leaf hashes below its chunks (see ``_tree``); the few
        an older root or a proof needs are read here (or were already ``read``
        by the caller, by chunk number), from ``audit-tree.leaves`` or else the
        store, and checked against the chunk's node before they are used.
        """
        given: dict[int, ChunkLevels] = {}
        for chunk, leaves in (read or {}).items():
            if chunk < self._tree.size // self._tree.chunk_size:  # complete: usable
                given[chunk] = await self._checked_chunk(chunk, leaves)
        while True:
            try:
                return compute(given)
            except MissingLeavesError as missing:
                chunk, start, end = missing.chunk, missing.start, missing.end
            if chunk in given:
                raise TreeError(f"chunk {chunk} was given and still asked for")
            leaves = await self._read(partial(_chunk_leaves, start, end, self._leaf_file))
            given[chunk] = await self._checked_chunk(chunk, leaves)

    async def _checked_chunk(self, chunk: int, leaves: Leaves) -> ChunkLevels:
        """A chunk's subtree over leaf hashes read for it. Those read from
        ``audit-tree.leaves`` that do not match its node (torn, changed) are read again
        from the store, which must match, and written again to the file."""
        hashes, from_file = leaves
        if not from_file:
            return self._chunk_levels(chunk, hashes)
        try:
            return self._tree.chunk_levels(chunk, hashes)
        except ChunkMismatchError:
            pass
        size = self._tree.chunk_size
        start = chunk * size
        stored = await self._read(partial(_leaf_hashes, start, start + size))
        levels = self._chunk_levels(chunk, stored)
        _log.warning("leaf hashes of entries [%d, %d) in %s do not match the log's tree:"
                     " read from the store, written again", start, start + size, LEAVES_FILE)
        leaf_file = self._leaf_file
        if leaf_file is not None:
            with contextlib.suppress(OSError):
                await asyncio.get_running_loop().run_in_executor(
                    None, leaf_file.write, start, b"".join(stored))
        return levels

    def _chunk_levels(self, chunk: int, leaves: list[bytes]) -> ChunkLevels:
        try:
            return self._tree.chunk_levels(chunk, leaves)
        except ChunkMismatchError as exc:
            size = self._tree.chunk_size
            raise LogIntegrityError(
                f"stored leaf hashes of entries [{chunk * size}, {(chunk + 1) * size}) no longer"
                f" match the log's tree (run `audit verify`): {exc}"
            ) from exc

    # -- checkpoints -----------------------------------------------------------

    async def _publisher_loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.publish(lazy=True)
            except Exception:
                _log.exception("checkpoint not published")

    async def publish(self, *, lazy: bool = False) -> StoredCheckpoint | None:
        """Sign and keep a checkpoint of the current tree if it grew; return the latest.
        Then write the chunk nodes completed since the last tick to ``audit-tree.nodes``.

        ``lazy`` (the publisher's tick): the tree may take other writers' entries by their
        kept nodes and leave the newest for the next tick (``_catch_up``). This instance's
        own entries are always in its tree; the others' are covered by their writer's
        checkpoints, and once no writer keeps nodes ahead of this tree (it stopped), the
        tick takes them from the store and covers them, as before."""
        async with self._publish_lock:
            latest = await self._publish(lazy=lazy)
            await self._keep_nodes()
            await self._keep_leaves()
            return latest

    async def _publish(self, *, lazy: bool = False) -> StoredCheckpoint | None:
        assert self._signer is not None, "service not started"
        await self._catch_up(lazy=lazy)
        latest = await self._read(lambda s: s.latest_checkpoint())
        size = self._tree.size
        if latest is not None and latest.size >= size:
            self._latest = latest
            return latest
        root = self._tree.root(size)
        # An empty tree gets one checkpoint of size 0, so there is always one to serve;
        # every tree extends the empty tree, so there is nothing to prove from it.
        if latest is not None and latest.size > 0:
            # tlog-checkpoint: never sign a tree inconsistent with one already signed.
            try:
                open_checkpoint(latest.note, self._signer.verifier, origin=self.origin)
                proof = await self._with_leaves(
                    lambda given: self._tree.consistency_proof(latest.size, size, given)
                )
                verify_consistency(latest.size, size, proof, latest.root, root)
            except (NoteError, MerkleProofError) as exc:
                _log.critical("refusing to sign checkpoint %d: %s", size, exc)
                raise LogIntegrityError(f"checkpoint {size} not signed: {exc}") from exc
        note = Checkpoint(self.origin, size, root).sign(self._signer)
        stored = StoredCheckpoint(size, root, note, self._clock_ms())
        previous = None if latest is None else latest.size
        if await self._write(lambda s: s.add_checkpoint(stored, previous)):
            self._latest = stored
            return stored
        # Another instance kept one first; ours is retried on the next tick.
        return await self._read(lambda s: s.latest_checkpoint())

    async def ping(self) -> None:
        """Raise if the service cannot write (readiness probe)."""
        if not self._started or self._closing:
            raise AuditUnavailableError("audit log is not running")
        await self._read(lambda s: s.size())

    async def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The latest kept checkpoint (from any instance)."""
        return await self._read(lambda s: s.latest_checkpoint())

    # -- reading ---------------------------------------------------------------

    async def entry(self, index: int) -> EntryProof | None:
        """An entry with its inclusion proof in the latest checkpoint covering it."""
        # One trip to the store: the record, the latest checkpoint, and the leaf hashes of
        # the chunks the proof will need (the entry's own, and the one the tree size ends in).
        found, checkpoint, read = await self._read(
            partial(_entry_with_chunks, index, self._tree.chunk_size,
                    self._tree.size // self._tree.chunk_size, self._leaf_file)
        )
        if found is None:
            return None
        record_bytes, stored_leaf = found
        if checkpoint is None or checkpoint.size <= index:
            checkpoint = await self.publish()
        if checkpoint is None or checkpoint.size <= index:
            raise AuditUnavailableError(f"entry {index} is not yet covered by a checkpoint")
        if self._tree.size < checkpoint.size:
            await self._catch_up()
        size = checkpoint.size
        leaf, inclusion = await self._with_leaves(
            lambda given: (self._tree.leaf(index, given),
                           self._tree.inclusion_proof(index, size, given)), read
        )
        if leaf != stored_leaf:  # the proof is of the tree's leaf: the row must hold it too
            raise LogIntegrityError(f"the stored leaf hash of entry {index} no longer matches"
                                    " the log's tree (run `audit verify`)")
        return EntryProof(
            index=index,
            leaf=record_bytes,
            record=orjson.loads(record_bytes) if record_bytes else {},
            tree_size=size,
            inclusion=inclusion,
            checkpoint=checkpoint.note,
            leaf_hash=stored_leaf,
            pruned=not record_bytes,
        )

    async def consistency(self, first: int, second: int) -> list[bytes]:
        """RFC 6962 consistency proof between two tree sizes (``0 < first <= second``)."""
        if self._tree.size < second:
            await self._catch_up()
        # The proof goes below the chunks only where a size ends inside one: read those
        # leaves in one trip (the tree holds its last, incomplete chunk itself).
        size, complete = self._tree.chunk_size, self._tree.size // self._tree.chunk_size
        chunks = [n // size for n in {first, second} if n % size and n // size < complete]
        if chunks and 0 < first <= second <= self._tree.size:
            read = await self._read(partial(_chunks_leaves, chunks, size, self._leaf_file))
        else:
            read = None
        return await self._with_leaves(
            lambda given: self._tree.consistency_proof(first, second, given), read
        )

    async def records(self, flt: RecordFilter) -> list[tuple[int, dict[str, Any]]]:
        """Records matching a filter, as stored (pseudonymised); ``{}`` for a pruned one."""
        rows = await self._read(lambda s: s.query(flt))
        return [(i, orjson.loads(r) if r else {}) for i, r in rows]

    async def stats(self, day: date) -> list[tuple[str | None, str | None, str, int]]:
        """Counts per partner x matter x outcome of one day in China Standard Time."""
        start, end = report_day_ms(day)
        return await self._read(lambda s: s.stats(start, end))


REPORT_TZ = CHINA_TZ
"""Daily statistics count Huzhou's calendar days (UTC+08:00), as its reports do."""


def report_today() -> date:
    """Today in China Standard Time."""
    return datetime.now(REPORT_TZ).date()


def report_day_ms(day: date) -> tuple[int, int]:
    """The Unix-millisecond bounds ``[start, end)`` of ``day`` in China Standard Time."""
    start = int(datetime(day.year, day.month, day.day, tzinfo=REPORT_TZ).timestamp() * 1000)
    return start, start + 86_400_000


def _append(
    rows: list[EntryRow], known: int, seal: Seal | None, ready: Callable[[], None] | None,
    store: AuditStore
) -> tuple[int, list[bytes]]:
    return store.append(rows, known, seal, ready)


def _wait_turn(store: AuditStore) -> None:
    store.wait_turn()


def _leaf_hashes(start: int, end: int, store: AuditStore) -> list[bytes]:
    return store.leaf_hashes(start, end)


def _skip_reads(size: int, limit: int, chunk: int, store: AuditStore
                ) -> tuple[StoredCheckpoint | None, list[bytes], list[bytes]]:
    """What ``_skip_ahead`` reads from the store: the checkpoint of the largest tree of at
    most ``limit`` entries, the leaf hashes from ``size`` to the next chunk boundary, and
    those of the checkpoint's last, partial chunk."""
    checkpoint = store.checkpoint_at_most(limit)
    if checkpoint is None or checkpoint.size <= size:
        return None, [], []
    boundary = min(-(-size // chunk) * chunk, checkpoint.size)
    head = store.leaf_hashes(size, boundary)
    tail = store.leaf_hashes(max(boundary, checkpoint.size - checkpoint.size % chunk),
                             checkpoint.size)
    return checkpoint, head, tail


Leaves = tuple[list[bytes], bool]
"""Leaf hashes read for a chunk, and whether they came from ``audit-tree.leaves`` (else the
store): those are read from the store again if they do not match (``_checked_chunk``)."""


def _file_leaves(leaf_file: LeafFile | None, start: int, end: int) -> list[bytes] | None:
    """Leaf hashes ``[start, end)`` from the leaf file, unchecked; None if it lacks them."""
    if leaf_file is None:
        return None
    try:
        return leaf_file.read(start, end)
    except OSError:
        return None


def _chunk_leaves(start: int, end: int, leaf_file: LeafFile | None, store: AuditStore) -> Leaves:
    """A complete chunk's leaf hashes: one ``pread`` of the leaf file, else the store."""
    leaves = _file_leaves(leaf_file, start, end)
    if leaves is not None:
        return leaves, True
    return store.leaf_hashes(start, end), False


def _chunks_leaves(chunks: list[int], size: int, leaf_file: LeafFile | None,
                   store: AuditStore) -> dict[int, Leaves]:
    return {chunk: _chunk_leaves(chunk * size, (chunk + 1) * size, leaf_file, store)
            for chunk in chunks}


def _entry_with_chunks(
    index: int, chunk_size: int, complete: int, leaf_file: LeafFile | None, store: AuditStore
) -> tuple[tuple[bytes, bytes] | None, StoredCheckpoint | None, dict[int, Leaves]]:
    """An entry, the latest checkpoint, and the leaf hashes of the chunks a proof may need
    (of the ``complete`` chunks the tree has: its last, incomplete one is in memory, and
    leaves read for it could not be checked against a node).

    The entry's chunk comes from the leaf file when it holds it (one ``pread``, and the
    entry's row alone from the store; a file lagging behind the log: from the store after
    the row), and without a leaf file with the entry in one range query. The file's read
    is asked of the kernel before the store is read (``LeafFile.prefetch``): on a cold
    disk the two reads overlap instead of following each other."""
    own_chunk = index // chunk_size
    first = own_chunk * chunk_size
    own_leaves: Leaves
    if own_chunk >= complete:  # the tree's last chunk: its leaves are in memory
        found, own_leaves = store.entry(index), ([], False)
    elif leaf_file is None:
        found, stored = store.entry_with_leaves(index, first, first + chunk_size)
        own_leaves = (stored, False)
    else:
        leaf_file.prefetch(first, first + chunk_size)
        found = store.entry(index)
        own = _file_leaves(leaf_file, first, first + chunk_size)
        # A file that lacks the chunk (it lags behind the log): the store has it.
        own_leaves = ((own, True) if own is not None
                      else (store.leaf_hashes(first, first + chunk_size), False))
    checkpoint = store.latest_checkpoint()
    read: dict[int, Leaves] = {}
    if found is not None:
        chunks = {own_chunk}
        if checkpoint is not None and checkpoint.size % chunk_size:
            chunks.add(checkpoint.size // chunk_size)
        for chunk in chunks:
            if chunk >= complete:
                continue
            leaves = own_leaves if chunk == own_chunk else _chunk_leaves(
                chunk * chunk_size, (chunk + 1) * chunk_size, leaf_file, store)
            if len(leaves[0]) == chunk_size:  # only complete chunks are read back
                read[chunk] = leaves
    return found, checkpoint, read
