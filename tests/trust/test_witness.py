"""C2SP cosignatures and the tlog-witness judgement (trust.witness), against mock logs."""

from __future__ import annotations

import base64
import contextlib
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from mocks import MockLog, MockWitness
from mocks._witness import WitnessRefusal
from trust.merkle import root_from_leaf_hashes, verify_consistency
from trust.note import NoteError, NoteVerifier
from trust.witness import (
    AddCheckpoint,
    CosignatureSigner,
    WitnessError,
    WitnessKey,
    cosignatures,
    judge,
    note_with_cosignatures,
)


def _log(n: int = 7) -> MockLog:
    log = MockLog("example.org/log", seed=1)
    for i in range(n):
        log.append(f"entry {i}".encode())
    return log


class TestCosignature:
    def test_key_id_uses_type_0x04(self) -> None:
        """The key id hashes the name, a newline, 0x04 and the public key (tlog-cosignature)."""
        signer = CosignatureSigner("w.example", Ed25519PrivateKey.generate())
        expected = hashlib.sha256(b"w.example\n\x04" + signer.key.public_key).digest()[:4]
        assert expected == signer.key.key_id
        assert signer.key == WitnessKey.from_vkey(signer.key.to_vkey())

    def test_cosignature_verifies_and_tamper_fails(self) -> None:
        """A cosignature verifies over its note; a flipped bit in it is an error, not ignored."""
        log = _log()
        signer = CosignatureSigner("w.example", Ed25519PrivateKey.generate())
        note = log.checkpoint()
        text = note[: note.index("\n\n") + 1]
        line = signer.cosign(text, 1_790_000_000)
        witnessed = note_with_cosignatures(note, [line])
        assert {"w.example": 1_790_000_000} == cosignatures(witnessed, [signer.key])
        raw = bytearray(base64.b64decode(line.split(" ")[2]))
        raw[-1] ^= 1
        bad = note + f"\u2014 w.example {base64.b64encode(bytes(raw)).decode()}\n"
        with pytest.raises(NoteError):
            cosignatures(bad, [signer.key])

    def test_log_proofs_verify(self) -> None:
        """The mock log's consistency proofs verify with trust.merkle for every pair of sizes."""
        log = _log(13)
        for m in range(1, 14):
            for n in range(m, 14):
                verify_consistency(m, n, log.consistency(m, n),
                                   root_from_leaf_hashes(log.leaves[:m]),
                                   root_from_leaf_hashes(log.leaves[:n]))


class _Witness:
    """trust.judge with its state, as a witness service keeps it."""

    def __init__(self, *logs: MockLog) -> None:
        self.logs = {log.origin: NoteVerifier.from_vkey(log.vkey) for log in logs}
        self.state: dict[str, tuple[int, bytes]] = {}
        self.signer = CosignatureSigner("w.example", Ed25519PrivateKey.generate())

    def add_checkpoint(self, body: bytes) -> str:
        checkpoint = judge(AddCheckpoint.from_body(body), self.logs, self.state)
        self.state[checkpoint.origin] = (checkpoint.size, checkpoint.root_hash)
        return self.signer.cosign(checkpoint.to_text(), 1_790_000_000)


def _status(witness: _Witness | MockWitness, body: bytes) -> int | tuple[int, int | None]:
    """200, or the refusal's status (with the known size for a 409)."""
    try:
        witness.add_checkpoint(body)
    except (WitnessError, WitnessRefusal) as exc:
        return (409, exc.known_size) if exc.status == 409 else exc.status
    return 200


class TestJudge:
    """trust.judge, and the mocks' own witness (written apart from it) answering alike."""

    def test_grows_then_refuses_stale_fork_and_strangers(self) -> None:
        """First sight from 0, growth with a proof; stale old size 409, fork 422, bad key 403,
        unknown log 404, malformed 400; the mock witness gives every answer the same."""
        log = _log(5)
        mock = MockWitness("m.example", seed=2)
        mock.trust(log.vkey)
        ours = _Witness(log)
        bodies: list[tuple[bytes, int | tuple[int, int | None]]] = [
            (AddCheckpoint(0, (), log.checkpoint()).to_body(), 200)]
        log.append(b"more")
        log.append(b"more again")
        grown = AddCheckpoint(5, tuple(log.consistency(5)), log.checkpoint()).to_body()
        bodies += [(grown, 200), (grown, (409, 7))]
        forked = log.fork(3, b"rewritten")
        bodies.append((AddCheckpoint(7, (), forked.checkpoint()).to_body(), 422))
        forked.append(b"x")
        bodies.append((AddCheckpoint(7, tuple(forked.consistency(7)),
                                     forked.checkpoint()).to_body(), 422))
        impostor = MockLog("example.org/log", seed=99)
        impostor.append(b"a")
        bodies.append((AddCheckpoint(7, (), impostor.checkpoint()).to_body(), 403))
        bodies.append((AddCheckpoint(0, (), MockLog("other/log").checkpoint()).to_body(), 404))
        bodies += [(body, 400) for body in (b"old 01\n\n" + log.checkpoint().encode(),
                                            b"old 1\nnot-base64\n\nx", b"nothing")]
        for body, expected in bodies:
            assert (expected, expected) == (_status(ours, body), _status(mock, body)), body

    def test_cosignature_line_verifies_under_the_witness_key(self) -> None:
        """What the judge's caller signs is a cosignature the witness's vkey accepts."""
        log = _log(3)
        ours = _Witness(log)
        line = ours.add_checkpoint(AddCheckpoint(0, (), log.checkpoint()).to_body())
        key = WitnessKey.from_vkey(ours.signer.key.to_vkey())
        assert {"w.example": 1_790_000_000} == cosignatures(log.checkpoint() + line, [key])


class TestParsersOnAnyInput:
    """The request parser and the cosignature reader raise only their own errors."""

    @given(st.binary(max_size=300))
    def test_add_checkpoint_body(self, body: bytes) -> None:
        """Any bytes: a request, or WitnessError 400."""
        status = 200
        try:
            AddCheckpoint.from_body(body)
        except WitnessError as exc:
            status = exc.status
        assert status in (200, 400)

    @given(st.text(max_size=300))
    def test_cosignatures_of_any_note(self, note: str) -> None:
        """Any text: the witnesses found, or NoteError."""
        key = CosignatureSigner("w.example", Ed25519PrivateKey.from_private_bytes(
            b"\x01" * 32)).key
        with contextlib.suppress(NoteError):
            cosignatures(note, [key])
