"""Mock regions' transparency: a witness each can run, and a log each can keep.

* :class:`MockWitness` is a C2SP tlog-witness (``POST /witness/add-checkpoint``)
  with its own cosignature/v1 key; it keeps, in memory, the size and root it
  last cosigned per log origin, and refuses stale sizes (409), bad proofs and
  forks (422), unsigned checkpoints (403) and logs it does not know (404).
  ``available = False`` makes it answer 503, as a witness that is down.
* :class:`MockLog` is a small append-only RFC 6962 log with an Ed25519 note
  key: checkpoints, and consistency proofs to submit to a witness (Huzhou's);
  :class:`LogPublisher` grows it and submits each checkpoint, as a region would.
* ``POST /admin/witness`` (``{"log_vkey": ..., "submit_to": ...}``) tells a running
  region which log key its witness trusts and where its log is to be witnessed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import time
from collections.abc import AsyncIterator
from typing import Final

import aiohttp
import orjson
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from trust.merkle import leaf_hash, root_from_leaf_hashes
from trust.note import Checkpoint, NoteError, NoteSigner, NoteVerifier
from trust.witness import AddCheckpoint, CosignatureSigner, WitnessError, WitnessKey, judge

__all__ = [
    "ADD_CHECKPOINT_PATH",
    "PUBLISHER_KEY",
    "WITNESS_KEY",
    "LogPublisher",
    "MockLog",
    "MockWitness",
    "add_transparency",
    "create_witness_app",
]

ADD_CHECKPOINT_PATH: Final = "/witness/add-checkpoint"
"""Where a mock region's witness takes add-checkpoint requests."""


def _key(seed: int | None, label: str) -> Ed25519PrivateKey:
    if seed is None:
        return Ed25519PrivateKey.generate()
    rng = random.Random(f"{seed}:{label}")  # reproducible test keys
    return Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))


class MockWitness:
    """A witness run by a mock region; its state lives in memory only."""

    def __init__(self, name: str, *, seed: int | None = None,
                 logs: dict[str, NoteVerifier] | None = None) -> None:
        self.signer = CosignatureSigner(name, _key(seed, "witness:" + name))
        self.logs: dict[str, NoteVerifier] = dict(logs or {})
        """The logs it witnesses, by origin."""
        self.cosigned: dict[str, tuple[int, bytes]] = {}
        """The size and root it last cosigned, per origin."""
        self.available = True
        """False: it answers 503, as a witness that is down."""
        self.delay_s = 0.0
        """Seconds it waits before answering (a witness that hangs)."""
        self.requests = 0
        self.tamper = False
        """True: its cosignatures carry a changed byte (a witness that lies, or a bit flip)."""

    @property
    def key(self) -> WitnessKey:
        """Its public key."""
        return self.signer.key

    @property
    def vkey(self) -> str:
        """Its vkey text."""
        return self.signer.key.to_vkey()

    def trust(self, verifier: NoteVerifier) -> None:
        """Witness the log whose key (and origin) is ``verifier``."""
        self.logs[verifier.name] = verifier

    def add_checkpoint(self, body: bytes, now: int | None = None) -> str:
        """Judge a request; its cosignature line, or ``WitnessError``."""
        request = AddCheckpoint.from_body(body)
        checkpoint = judge(request, self.logs, self.cosigned)
        self.cosigned[checkpoint.origin] = (checkpoint.size, checkpoint.root_hash)
        line = self.signer.cosign(checkpoint.to_text(), int(time.time()) if now is None else now)
        if self.tamper:
            prefix, encoded = line.rsplit(" ", 1)
            raw = bytearray(base64.b64decode(encoded))
            raw[-1] ^= 1
            line = f"{prefix} {base64.b64encode(bytes(raw)).decode()}\n"
        return line


async def _add_checkpoint(request: web.Request) -> web.Response:
    witness = request.app[WITNESS_KEY]
    witness.requests += 1
    if witness.delay_s:
        await asyncio.sleep(witness.delay_s)
    if not witness.available:
        raise web.HTTPServiceUnavailable
    try:
        line = witness.add_checkpoint(await request.read())
    except WitnessError as exc:
        if exc.status == 409 and exc.known_size is not None:
            return web.Response(status=409, body=f"{exc.known_size}\n".encode(),
                                headers={"Content-Type": "text/x.tlog.size"})
        return web.Response(status=exc.status, text=str(exc) + "\n")
    return web.Response(text=line, content_type="text/plain")


WITNESS_KEY: Final = web.AppKey("witness", MockWitness)


def create_witness_app(witness: MockWitness, app: web.Application | None = None
                       ) -> web.Application:
    """An app (or ``app``, a region's) with the witness's add-checkpoint route."""
    app = app or web.Application()
    app[WITNESS_KEY] = witness
    app.router.add_post(ADD_CHECKPOINT_PATH, _add_checkpoint)
    return app


def _subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    # RFC 6962 2.1.2 SUBPROOF(m, D[n], b).
    n = len(leaves)
    if m == n:
        return [] if complete else [root_from_leaf_hashes(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), root_from_leaf_hashes(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root_from_leaf_hashes(leaves[:k])]


class MockLog:
    """A mock region's append-only log, signed with its own note key."""

    def __init__(self, origin: str, *, seed: int | None = None) -> None:
        self.signer = NoteSigner(origin, _key(seed, "log:" + origin))
        self.origin = origin
        self.leaves: list[bytes] = []

    @property
    def verifier(self) -> NoteVerifier:
        """Its public note key."""
        return self.signer.verifier

    def append(self, entry: bytes) -> int:
        """Add an entry; its index."""
        self.leaves.append(leaf_hash(entry))
        return len(self.leaves) - 1

    def checkpoint(self, size: int | None = None) -> str:
        """The signed checkpoint of the tree of ``size`` (default: all) entries."""
        size = len(self.leaves) if size is None else size
        body = Checkpoint(self.origin, size, root_from_leaf_hashes(self.leaves[:size]))
        return body.sign(self.signer)

    def consistency(self, first: int, second: int | None = None) -> list[bytes]:
        """RFC 6962 consistency proof from ``first`` to ``second`` entries."""
        second = len(self.leaves) if second is None else second
        if first in (0, second):
            return []
        return _subproof(first, self.leaves[:second], True)

    def fork(self, at: int, entry: bytes) -> MockLog:
        """A copy whose entry ``at`` is ``entry`` instead (same key: a split view)."""
        other = MockLog.__new__(MockLog)
        other.signer, other.origin = self.signer, self.origin
        other.leaves = [*self.leaves[:at], leaf_hash(entry), *self.leaves[at + 1 :]]
        return other



class LogPublisher:
    """Sends a mock region's log checkpoints to a witness (Huzhou's) as the log grows:
    every ``interval_s`` one entry is added and the new checkpoint submitted, from the size
    the witness last cosigned (a 409 names it)."""

    def __init__(self, log: MockLog, *, interval_s: float = 2.0) -> None:
        self.log = log
        self.interval_s = interval_s
        self.url: str | None = None
        """The witness's add-checkpoint URL; None: nothing is sent."""
        self.witnessed_size = 0
        self.cosignatures: list[str] = []
        self.last_status: int | None = None

    async def submit(self, session: aiohttp.ClientSession) -> int:
        """Submit the current checkpoint once (again after a 409); the last status."""
        assert self.url is not None
        for _ in range(2):
            size = len(self.log.leaves)
            body = AddCheckpoint(self.witnessed_size,
                                 tuple(self.log.consistency(self.witnessed_size, size)),
                                 self.log.checkpoint(size)).to_body()
            async with session.post(self.url, data=body) as response:
                text = await response.text()
                self.last_status = response.status
                if response.status == 409 and text.strip().isdigit():
                    self.witnessed_size = int(text.strip())
                    continue
                if response.status == 200:
                    self.witnessed_size = size
                    self.cosignatures = text.splitlines()
                return response.status
        return self.last_status or 0

    async def run(self) -> None:
        """Grow and submit until cancelled; failures are only counted."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            while True:
                await asyncio.sleep(self.interval_s)
                self.log.append(f"entry {len(self.log.leaves)} at {int(time.time())}".encode())
                if self.url is None:
                    continue
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                    await self.submit(session)


PUBLISHER_KEY: Final = web.AppKey("log_publisher", LogPublisher)


async def _trust_log(request: web.Request) -> web.Response:
    """``POST /admin/witness`` with ``{"log_vkey": ..., "submit_to": ...}`` (either): the
    region's witness trusts a log's key; the region's log is sent to a witness URL."""
    try:
        body = orjson.loads(await request.read())
        vkey, submit_to = body.get("log_vkey"), body.get("submit_to")
        if vkey is not None:
            request.app[WITNESS_KEY].trust(NoteVerifier.from_vkey(vkey))
    except (orjson.JSONDecodeError, AttributeError, KeyError, NoteError) as exc:
        raise web.HTTPBadRequest(text=f"bad request: {exc}") from None
    publisher = request.app.get(PUBLISHER_KEY)
    if submit_to is not None and publisher is not None:
        publisher.url = str(submit_to)
    return web.json_response({"ok": True})


def add_transparency(app: web.Application, witness: MockWitness | None,
                     publisher: LogPublisher | None) -> None:
    """Give a region's app its witness route, its log's publisher, and the admin route."""
    if witness is not None:
        create_witness_app(witness, app)
    if publisher is not None:
        app[PUBLISHER_KEY] = publisher

        async def publishing(_: web.Application) -> AsyncIterator[None]:
            task = asyncio.create_task(publisher.run())
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        app.cleanup_ctx.append(publishing)
        app.router.add_get("/log/checkpoint", _log_checkpoint)
    if witness is not None or publisher is not None:
        app.router.add_post("/admin/witness", _trust_log)


async def _log_checkpoint(request: web.Request) -> web.Response:
    """The region's log's latest checkpoint with the cosignatures it was given."""
    publisher = request.app[PUBLISHER_KEY]
    note = publisher.log.checkpoint(publisher.witnessed_size)
    return web.Response(text=note + "".join(line + "\n" for line in publisher.cosignatures),
                        content_type="text/plain")
