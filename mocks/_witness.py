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
import binascii
import contextlib
import hashlib
import random
import time
from collections.abc import AsyncIterator
from typing import Final

import aiohttp
import orjson
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "ADD_CHECKPOINT_PATH",
    "PUBLISHER_KEY",
    "WITNESS_KEY",
    "LogPublisher",
    "MockLog",
    "MockWitness",
    "WitnessRefusal",
    "add_transparency",
    "create_witness_app",
]

ADD_CHECKPOINT_PATH: Final = "/witness/add-checkpoint"
"""Where a mock region's witness takes add-checkpoint requests."""

# Written from the C2SP texts and RFC 6962/9162 directly: mocks never use the gateway's
# trust core, so a mock witness is a second, independent reading of the specifications.
_DASH = "\u2014 "
_ED25519_NOTE = 0x01
_COSIGNATURE_V1 = 0x04
_EMPTY_ROOT = hashlib.sha256(b"").digest()


class WitnessRefusal(Exception):  # noqa: N818 - named after the protocol's answer
    """An add-checkpoint request the mock witness refuses, with its HTTP status."""

    def __init__(self, status: int, message: str, known_size: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.known_size = known_size


def _key(seed: int | None, label: str) -> Ed25519PrivateKey:
    if seed is None:
        return Ed25519PrivateKey.generate()
    rng = random.Random(f"{seed}:{label}")  # reproducible test keys
    return Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _key_id(name: str, kind: int, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + public).digest()[:4]


def _vkey(name: str, kind: int, public: bytes) -> str:
    return (f"{name}+{_key_id(name, kind, public).hex()}+"
            f"{base64.b64encode(bytes([kind]) + public).decode()}")


def _leaf(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 2.1 MTH over leaf hashes, by its recursive definition."""
    if not leaves:
        return _EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return _node(_mth(leaves[:k]), _mth(leaves[k:]))


def _consistent(m: int, n: int, proof: list[bytes], root_m: bytes, root_n: bytes) -> bool:
    """RFC 9162 2.1.4.2: does ``proof`` show the tree of ``n`` extends that of ``m``?"""
    if m == n:
        return not proof and root_m == root_n
    if not 0 < m < n or not proof:
        return False
    path = [root_m, *proof] if m & (m - 1) == 0 else list(proof)
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = _node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == root_m and sr == root_n


def _parse_request(body: bytes) -> tuple[int, list[bytes], str]:
    try:
        head, note = body.decode().split("\n\n", 1)
        first, *lines = head.split("\n")
        proof = [base64.b64decode(line, validate=True) for line in lines]
    except (UnicodeDecodeError, ValueError, binascii.Error) as exc:
        raise WitnessRefusal(400, f"malformed request: {exc}") from None
    size_text = first.removeprefix("old ")
    if not first.startswith("old ") or not size_text.isdigit() \
            or size_text != str(int(size_text)):
        raise WitnessRefusal(400, "the first line is 'old <size>'")
    if any(len(h) != 32 for h in proof) or not note:
        raise WitnessRefusal(400, "malformed request")
    return int(size_text), proof, note


def _checkpoint_text(note: str, name: str, public: bytes) -> tuple[int, bytes, str] | None:
    """The size, root and text of ``note`` when ``name``'s key signed it (else None)."""
    text, _, block = note.partition("\n\n")
    text += "\n"
    wanted = _key_id(name, _ED25519_NOTE, public)
    signed = False
    for line in block.splitlines():
        who, _, encoded = line.removeprefix(_DASH).partition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            return None
        if who == name and raw[:4] == wanted:
            try:
                Ed25519PublicKey.from_public_bytes(public).verify(raw[4:], text.encode())
            except InvalidSignature:
                return None
            signed = True
    lines = text.split("\n")
    if not signed or len(lines) < 4 or lines[0] != name or not lines[1].isdigit():
        return None
    try:
        root = base64.b64decode(lines[2], validate=True)
    except binascii.Error:
        return None
    return int(lines[1]), root, text


class MockWitness:
    """A witness run by a mock region; its state lives in memory only."""

    def __init__(self, name: str, *, seed: int | None = None) -> None:
        self.name = name
        self._private = _key(seed, "witness:" + name)
        self.public_key = _raw(self._private)
        self.logs: dict[str, bytes] = {}
        """The logs it witnesses: origin -> Ed25519 public key."""
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
    def vkey(self) -> str:
        """Its cosignature/v1 vkey text."""
        return _vkey(self.name, _COSIGNATURE_V1, self.public_key)

    def trust(self, log_vkey: str) -> None:
        """Witness the log of ``log_vkey`` (an Ed25519 note vkey; its name is the origin)."""
        name, _, encoded = log_vkey.strip().split("+", 2)
        raw = base64.b64decode(encoded, validate=True)
        if len(raw) != 33 or raw[0] != _ED25519_NOTE:
            raise ValueError("not an Ed25519 note vkey")
        self.logs[name] = raw[1:]

    def cosign(self, text: str, timestamp: int) -> str:
        """The cosignature/v1 line over a checkpoint's note text."""
        message = f"cosignature/v1\ntime {timestamp}\n{text}".encode()
        raw = bytearray(_key_id(self.name, _COSIGNATURE_V1, self.public_key)
                        + timestamp.to_bytes(8, "big") + self._private.sign(message))
        if self.tamper:
            raw[-1] ^= 1
        return f"{_DASH}{self.name} {base64.b64encode(bytes(raw)).decode()}\n"

    def add_checkpoint(self, body: bytes, now: int | None = None) -> str:
        """Judge a request as c2sp.org/tlog-witness says; its cosignature line, or
        ``WitnessRefusal``."""
        old, proof, note = _parse_request(body)
        origin = note.split("\n", 1)[0]
        public = self.logs.get(origin)
        if public is None:
            raise WitnessRefusal(404, f"unknown log {origin!r}")
        found = _checkpoint_text(note, origin, public)
        if found is None:
            raise WitnessRefusal(403, "not signed by the log's key")
        size, root, text = found
        if old > size:
            raise WitnessRefusal(400, "old size beyond the checkpoint")
        known_size, known_root = self.cosigned.get(origin, (0, _EMPTY_ROOT))
        if old != known_size:
            raise WitnessRefusal(409, "stale old size", known_size)
        if old == 0:
            if proof or (size == 0 and root != _EMPTY_ROOT):
                raise WitnessRefusal(422, "bad proof from size 0")
        elif not _consistent(known_size, size, proof, known_root, root):
            raise WitnessRefusal(422, "not consistent with what this witness cosigned")
        self.cosigned[origin] = (size, root)
        return self.cosign(text, int(time.time()) if now is None else now)


async def _add_checkpoint(request: web.Request) -> web.Response:
    witness = request.app[WITNESS_KEY]
    witness.requests += 1
    if witness.delay_s:
        await asyncio.sleep(witness.delay_s)
    if not witness.available:
        raise web.HTTPServiceUnavailable
    try:
        line = witness.add_checkpoint(await request.read())
    except WitnessRefusal as exc:
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
        return [] if complete else [_mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), _mth(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), _mth(leaves[:k])]


class MockLog:
    """A mock region's append-only log, signed with its own Ed25519 note key."""

    def __init__(self, origin: str, *, seed: int | None = None) -> None:
        self.origin = origin
        self._private = _key(seed, "log:" + origin)
        self.public_key = _raw(self._private)
        self.leaves: list[bytes] = []

    @property
    def vkey(self) -> str:
        """Its note vkey text (the origin is the key name)."""
        return _vkey(self.origin, _ED25519_NOTE, self.public_key)

    def append(self, entry: bytes) -> int:
        """Add an entry; its index."""
        self.leaves.append(_leaf(entry))
        return len(self.leaves) - 1

    def root(self, size: int | None = None) -> bytes:
        """The root of the tree of ``size`` (default: all) entries."""
        return _mth(self.leaves[: len(self.leaves) if size is None else size])

    def checkpoint(self, size: int | None = None) -> str:
        """The signed checkpoint (c2sp.org/tlog-checkpoint) of ``size`` entries."""
        size = len(self.leaves) if size is None else size
        text = f"{self.origin}\n{size}\n{base64.b64encode(self.root(size)).decode()}\n"
        raw = _key_id(self.origin, _ED25519_NOTE, self.public_key) + self._private.sign(
            text.encode())
        return f"{text}\n{_DASH}{self.origin} {base64.b64encode(raw).decode()}\n"

    def consistency(self, first: int, second: int | None = None) -> list[bytes]:
        """RFC 6962 consistency proof from ``first`` to ``second`` entries."""
        second = len(self.leaves) if second is None else second
        if not 0 <= first <= second <= len(self.leaves):
            raise ValueError(f"no consistency proof from {first} to {second} entries in a log"
                             f" of {len(self.leaves)}")
        if first in (0, second):
            return []
        return _subproof(first, self.leaves[:second], True)

    def fork(self, at: int, entry: bytes) -> MockLog:
        """A copy whose entry ``at`` is ``entry`` instead (same key: a split view)."""
        other = MockLog.__new__(MockLog)
        other.origin, other._private, other.public_key = (self.origin, self._private,
                                                          self.public_key)
        other.leaves = [*self.leaves[:at], _leaf(entry), *self.leaves[at + 1 :]]
        return other


def _request_body(old: int, proof: list[bytes], note: str) -> bytes:
    lines = [f"old {old}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode()


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
            if self.witnessed_size > size:
                # The witness cosigned a larger tree of this origin than this log holds:
                # the log was made afresh under the same key (a demo started again with
                # its data folder kept). No proof can join the two; the witness's 409
                # stands until this log has grown past that size.
                return self.last_status or 0
            body = _request_body(self.witnessed_size,
                                 self.log.consistency(self.witnessed_size, size),
                                 self.log.checkpoint(size))
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
            request.app[WITNESS_KEY].trust(str(vkey))
    except (orjson.JSONDecodeError, AttributeError, KeyError, ValueError,
            binascii.Error) as exc:
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
