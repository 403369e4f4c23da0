"""C2SP transparency-log witnessing: cosignatures and the add-checkpoint judgement.

Pure: text, keys, sizes and roots in; text, a decision or ``WitnessError`` out.
Formats:

* ``tlog-cosignature`` (c2sp.org/tlog-cosignature): a witness signs, with
  Ed25519, ``"cosignature/v1\\ntime <t>\\n" + <checkpoint text>``, ``t`` the
  POSIX seconds of signing. Its note signature is ``8-byte big-endian t ||
  64-byte signature``, under a key id ``SHA-256(name || 0x0A || 0x04 ||
  public key)[:4]`` (signature type 0x04); its vkey is
  ``<name>+<hex key id>+<base64(0x04 || public key)>``.
* ``tlog-witness`` (c2sp.org/tlog-witness) ``add-checkpoint`` request body:
  ``old <size>\\n``, zero or more base64 consistency-proof hashes, one a line,
  an empty line, then the signed checkpoint. ``judge`` takes the witness's
  decision on one: cosign, or refuse with the protocol's status code.

Errors::

    * TrustError
      x NoteError           a cosignature line or witness key is malformed, or one does not verify
      x WitnessError        an add-checkpoint request is refused (``status``: the HTTP code)
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from trust._errors import TrustError
from trust.merkle import EMPTY_ROOT, HASH_SIZE, MerkleProofError, verify_consistency
from trust.note import (
    Checkpoint,
    NoteError,
    NoteVerifier,
    check_key_name,
    decode_base64,
    key_id,
    open_note,
    parse_vkey,
)

__all__ = [
    "ALG_COSIGNATURE_V1",
    "AddCheckpoint",
    "CosignatureSigner",
    "WitnessError",
    "WitnessKey",
    "cosignature_key_id",
    "cosignature_message",
    "cosignatures",
    "judge",
    "note_with_cosignatures",
    "signature_lines",
]

ALG_COSIGNATURE_V1 = 0x04
"""signed-note signature type of a cosignature/v1 (Ed25519) witness key."""

_DASH = "\u2014 "
_MAX_PROOF_LINES = 63
"""A consistency proof of a tree below 2**63 entries has fewer hashes."""
_MAX_BODY = 64 << 10


class WitnessError(TrustError):
    """An add-checkpoint request the witness refuses; ``status`` is the tlog-witness code."""

    def __init__(self, status: int, message: str, *, known_size: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """400 malformed, 403 not signed by the log's key, 404 unknown log, 409 stale old
        size (``known_size``: the size the witness cosigned), 422 the proof or root fails."""
        self.known_size = known_size


def cosignature_key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id of a cosignature/v1 key (type byte 0x04)."""
    return key_id(name, public_key, ALG_COSIGNATURE_V1)


def cosignature_message(checkpoint_text: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: the header lines, then the checkpoint's note text."""
    if not 0 <= timestamp < 1 << 63:
        raise NoteError("a cosignature timestamp is a non-negative 63-bit number")
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint_text}".encode()


@dataclass(frozen=True, slots=True)
class WitnessKey:
    """A witness's public cosignature/v1 key: name, key id, 32-byte Ed25519 key."""

    name: str
    key_id: bytes
    public_key: bytes

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> WitnessKey:
        """The key ``public_key`` under ``name``."""
        if len(public_key) != 32:
            raise NoteError("an Ed25519 public key is 32 bytes")
        return cls(name, cosignature_key_id(name, public_key), public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> WitnessKey:
        """Parse ``<name>+<hex key id>+<base64(0x04 || public key)>``."""
        name, public_key = parse_vkey(
            vkey, ALG_COSIGNATURE_V1, "a witness vkey is a cosignature/v1 key (type 0x04)")
        return cls.from_public_key(name, public_key)

    def to_vkey(self) -> str:
        """The vkey text of this key."""
        encoded = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def timestamp_of(self, checkpoint_text: str, signature: bytes) -> int:
        """The time a valid cosignature (``timestamp || Ed25519 signature``) states, or
        ``NoteError`` when it does not verify over ``checkpoint_text``."""
        if len(signature) != 8 + 64:
            raise NoteError(f"cosignature by {self.name} is not 72 bytes")
        timestamp = int.from_bytes(signature[:8], "big")
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(
                signature[8:], cosignature_message(checkpoint_text, timestamp))
        except (InvalidSignature, ValueError) as exc:
            raise NoteError(f"cosignature by {self.name} does not verify") from exc
        return timestamp


class CosignatureSigner:
    """A witness's cosignature/v1 signing key under its name."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key = WitnessKey.from_public_key(name, public)

    @property
    def name(self) -> str:
        """The witness's key name."""
        return self.key.name

    def cosign(self, checkpoint_text: str, timestamp: int) -> str:
        """The cosignature line (with its newline) over a checkpoint's note text."""
        signature = self._key.sign(cosignature_message(checkpoint_text, timestamp))
        raw = self.key.key_id + timestamp.to_bytes(8, "big") + signature
        return f"{_DASH}{self.name} {base64.b64encode(raw).decode('ascii')}\n"


def signature_lines(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """A signed note's text and its signature lines as ``(key name, decoded bytes)``.

    Only the form is checked here (signed-note), not any signature.
    """
    if not note.endswith("\n"):
        raise NoteError("a note ends with a newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no signature block")
    text, block = note[: split + 1], note[split + 2 :]
    lines = block.split("\n")[:-1]
    if not lines:
        raise NoteError("note has no signature lines")
    out: list[tuple[str, bytes]] = []
    for line in lines:
        if not line.startswith(_DASH):
            raise NoteError("malformed signature line")
        name, sep, encoded = line[len(_DASH) :].partition(" ")
        if not sep:
            raise NoteError("malformed signature line")
        check_key_name(name)
        raw = decode_base64(encoded)
        if len(raw) < 5:
            raise NoteError("signature too short")
        out.append((name, raw))
    return text, out


def cosignatures(note: str, witnesses: Sequence[WitnessKey]) -> dict[str, int]:
    """The witnesses of ``witnesses`` that cosigned the note's text, with their times.

    Lines of other keys are ignored; a line of a known witness (same name and key
    id) that does not verify rejects the note (``NoteError``), as signed-note
    advises for any known key.
    """
    text, lines = signature_lines(note)
    known = {(w.name, w.key_id): w for w in witnesses}
    found: dict[str, int] = {}
    for name, raw in lines:
        witness = known.get((name, raw[:4]))
        if witness is not None:
            found[name] = witness.timestamp_of(text, raw[4:])
    return found


def note_with_cosignatures(note: str, lines: Sequence[str]) -> str:
    """``note`` with the signature ``lines`` added (each ending in a newline), less any
    it holds already."""
    have = set(note[note.rfind("\n\n") + 2 :].splitlines(keepends=True))
    return note + "".join(line for line in dict.fromkeys(lines) if line not in have)


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    """One tlog-witness add-checkpoint request: the old size, the proof, the note."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str

    def to_body(self) -> bytes:
        """The request body."""
        lines = [f"old {self.old_size}"]
        lines += [base64.b64encode(h).decode("ascii") for h in self.proof]
        return ("\n".join(lines) + "\n\n" + self.note).encode("utf-8")

    @classmethod
    def from_body(cls, body: bytes) -> AddCheckpoint:
        """Parse a request body; ``WitnessError`` 400 when it is malformed."""
        if len(body) > _MAX_BODY:
            raise WitnessError(400, "request body too large")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise WitnessError(400, "request body is not UTF-8") from None
        head, sep, note = text.partition("\n\n")
        if not sep or not note:
            raise WitnessError(400, "no empty line before the checkpoint")
        lines = head.split("\n")
        first = lines[0]
        size_text = first[4:]
        if not first.startswith("old ") or not size_text.isascii() or not size_text.isdigit() \
                or size_text != str(int(size_text)) or len(size_text) > 19:
            raise WitnessError(400, "the first line is 'old <decimal size>'")
        if len(lines) - 1 > _MAX_PROOF_LINES:
            raise WitnessError(400, "too many proof lines")
        try:
            proof = tuple(decode_base64(line) for line in lines[1:])
        except NoteError:
            raise WitnessError(400, "a proof line is not canonical base64") from None
        if any(len(h) != HASH_SIZE for h in proof):
            raise WitnessError(400, "a proof hash is not 32 bytes")
        return cls(int(size_text), proof, note)


def judge(
    request: AddCheckpoint,
    logs: Mapping[str, NoteVerifier],
    cosigned: Mapping[str, tuple[int, bytes]],
) -> Checkpoint:
    """Whether a witness may cosign ``request`` (tlog-witness): its checkpoint, or
    ``WitnessError``.

    ``logs`` are the logs the witness serves, by origin, with their keys;
    ``cosigned`` the size and root it last cosigned per origin (an origin absent:
    never). The caller cosigns the checkpoint returned and keeps its size and root
    as the origin's latest before answering, atomically with the check.
    """
    origin = request.note.split("\n", 1)[0]
    log = logs.get(origin)
    if log is None:
        raise WitnessError(404, f"unknown log {origin!r}")
    try:
        checkpoint = Checkpoint.from_text(open_note(request.note, [log]))
    except NoteError as exc:
        raise WitnessError(403, f"checkpoint not signed by the log's key: {exc}") from exc
    if checkpoint.origin != origin:
        raise WitnessError(403, "checkpoint origin does not match")
    if request.old_size > checkpoint.size:
        raise WitnessError(400, "old size is larger than the checkpoint's")
    known_size, known_root = cosigned.get(origin, (0, EMPTY_ROOT))
    if request.old_size != known_size:
        raise WitnessError(409, f"this witness cosigned size {known_size}",
                           known_size=known_size)
    if checkpoint.size == 0 and checkpoint.root_hash != EMPTY_ROOT:
        raise WitnessError(422, "a checkpoint of size 0 must carry the empty tree's root")
    if request.old_size == 0:
        if request.proof:
            raise WitnessError(422, "a proof from size 0 must be empty")
        return checkpoint
    try:
        # Equal sizes: empty proof and the same root, or it is a fork.
        verify_consistency(known_size, checkpoint.size, request.proof, known_root,
                           checkpoint.root_hash)
    except MerkleProofError as exc:
        raise WitnessError(422, f"not consistent with size {known_size}: {exc}") from exc
    return checkpoint
