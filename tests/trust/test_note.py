"""C2SP signed notes and checkpoints in ``trust.note``."""

from __future__ import annotations

import base64
import contextlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from trust.note import (
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    key_id,
    open_checkpoint,
    open_note,
    sign_note,
)

# golang.org/x/mod/sumdb/note documentation example (the signed-note reference).
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT
    + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqd"
    "ngotpRZb6KE6RyyBwJnAM=\n"
)


def _go_signer() -> NoteSigner:
    raw = base64.b64decode(GO_SKEY.split("+", 4)[4])
    assert raw[0] == 1
    return NoteSigner("PeterNeumann", Ed25519PrivateKey.from_private_bytes(raw[1:]))


@pytest.fixture
def signer() -> NoteSigner:
    """A fresh log key named like the gateway's."""
    return NoteSigner("huzhou.ecert-gateway/audit", Ed25519PrivateKey.generate())


class TestGoVector:
    """The Go sumdb/note example is reproduced byte for byte."""

    def test_vkey_parses_and_round_trips(self) -> None:
        """The published vkey parses and prints back unchanged."""
        verifier = NoteVerifier.from_vkey(GO_VKEY)
        assert bytes.fromhex("c74f20a3") == verifier.key_id
        assert verifier.to_vkey() == GO_VKEY

    def test_sign_reproduces_published_note(self) -> None:
        """Ed25519 is deterministic, so our note equals the published one."""
        signer = _go_signer()
        assert signer.verifier.to_vkey() == GO_VKEY
        assert sign_note(GO_TEXT, [signer]) == GO_NOTE

    def test_open_returns_text(self) -> None:
        """Opening the published note yields its text."""
        assert open_note(GO_NOTE, [NoteVerifier.from_vkey(GO_VKEY)]) == GO_TEXT

    def test_modified_text_is_rejected(self) -> None:
        """One changed letter fails the known key's signature."""
        with pytest.raises(NoteError):
            open_note(
                GO_NOTE.replace("cryptography", "cryptographY"), [NoteVerifier.from_vkey(GO_VKEY)]
            )


class TestOpen:
    """open_note follows the signed-note acceptance rules."""

    def test_unknown_key_only_is_rejected(self, signer: NoteSigner) -> None:
        """A note signed only by keys we do not know is not accepted."""
        note = sign_note("hello\n", [signer])
        with pytest.raises(NoteError, match="no signature by a known key"):
            open_note(note, [NoteVerifier.from_vkey(GO_VKEY)])

    def test_unknown_signatures_are_ignored(self, signer: NoteSigner) -> None:
        """An extra signature by another key does not matter."""
        note = sign_note("hello\n", [_go_signer(), signer])
        assert open_note(note, [signer.verifier]) == "hello\n"

    def test_same_name_other_id_is_ignored(self, signer: NoteSigner) -> None:
        """A key sharing the name but not the id is an unknown key (signed-note)."""
        other = NoteSigner(signer.name, Ed25519PrivateKey.generate())
        note = sign_note("hello\n", [other, signer])
        assert open_note(note, [signer.verifier]) == "hello\n"

    def test_bad_signature_by_known_key_rejects(self, signer: NoteSigner) -> None:
        """A failing signature by a known key rejects the note."""
        good = sign_note("hello\n", [signer])
        sig = base64.b64decode(good.rsplit(" ", 1)[1])
        bad = sig[:4] + bytes(64)
        note = "hello\n\n\u2014 " + signer.name + " " + base64.b64encode(bad).decode() + "\n"
        with pytest.raises(NoteError):
            open_note(note, [signer.verifier])

    @pytest.mark.parametrize(
        "note",
        [
            "",
            "hello\n",
            "hello\n\n",
            "hello\n\n- x AAAA\n",
            "hello\n\n\u2014 x AAAAAA==",
            "a\tb\n\n",
        ],
    )
    def test_malformed_notes(self, note: str, signer: NoteSigner) -> None:
        """Notes without a well-formed signature block are errors."""
        with pytest.raises(NoteError):
            open_note(note, [signer.verifier])

    def test_signing_refuses_exactly_the_control_characters(self, signer: NoteSigner) -> None:
        """Below U+0020 only the newline may appear in a note's text; every other
        character (U+007F and non-ASCII included, as before) is signed and opens again."""
        for code in [*range(0x80), 0x85, 0xA0, 0x2028, 0x4E2D]:
            text = f"a{chr(code)}b\n"
            if code < 0x20 and code != 0x0A:
                with pytest.raises(NoteError, match="control character"):
                    sign_note(text, [signer])
            else:
                assert open_note(sign_note(text, [signer]), [signer.verifier]) == text

    @given(st.binary(max_size=300))
    def test_any_bytes_raise_only_note_error(self, data: bytes) -> None:
        """Parsing arbitrary bytes raises NoteError or returns, never anything else."""
        verifier = NoteVerifier.from_vkey(GO_VKEY)
        with contextlib.suppress(NoteError):
            open_note(data, [verifier])


class TestKeys:
    """Key ids and vkeys."""

    def test_vkey_with_plus_in_key(self) -> None:
        """A vkey whose base64 holds a '+' parses (transparency-dev/formats test key)."""
        vkey = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"
        assert vkey == NoteVerifier.from_vkey(vkey).to_vkey()

    def test_key_id_definition(self, signer: NoteSigner) -> None:
        """The key id is SHA-256(name || LF || 0x01 || key)[:4]."""
        import hashlib

        pub = signer.verifier.public_key
        want = hashlib.sha256(signer.name.encode() + b"\n\x01" + pub).digest()[:4]
        assert want == key_id(signer.name, pub)

    @pytest.mark.parametrize(
        "vkey",
        [
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+AhpjZHcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3",
        ],
    )
    def test_bad_vkeys(self, vkey: str) -> None:
        """Wrong id, wrong type, spaced name or missing key are refused."""
        with pytest.raises(NoteError):
            NoteVerifier.from_vkey(vkey)


class TestCheckpoint:
    """tlog-checkpoint bodies."""

    def test_round_trip(self, signer: NoteSigner) -> None:
        """A signed checkpoint opens to the same body."""
        checkpoint = Checkpoint(signer.name, 12, bytes(range(32)))
        note = checkpoint.sign(signer)
        assert note.startswith(
            f"{signer.name}\n12\n{base64.b64encode(bytes(range(32))).decode()}\n\n"
        )
        assert checkpoint == open_checkpoint(note, signer.verifier)

    def test_origin_must_match(self, signer: NoteSigner) -> None:
        """A checkpoint of another origin is refused."""
        other = NoteSigner("elsewhere", Ed25519PrivateKey.generate())
        note = Checkpoint("elsewhere", 1, bytes(32)).sign(other)
        with pytest.raises(NoteError):
            open_checkpoint(note, other.verifier, origin=signer.name)

    @pytest.mark.parametrize(
        "text",
        [
            "o\n012\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
            "o\n-1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
            "o\n1\nAAAA\n",
            "o\n1\n",
            "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\nx\n",
        ],
    )
    def test_bad_bodies(self, text: str) -> None:
        """Leading zeroes, short roots, missing lines and empty extensions are refused."""
        with pytest.raises(NoteError):
            Checkpoint.from_text(text)
