"""RFC 6962 hashing and proof verification in ``trust.merkle``."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trust.merkle import (
    EMPTY_ROOT,
    MerkleProofError,
    consistency_proof_size,
    inclusion_proof_size,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "merkle"


def _files(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).rglob("*.json"))


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "", validate=True)


def _proof(value: list[str] | None) -> list[bytes]:
    return [_b64(p) for p in value or []]


def _id(path: Path) -> str:
    return str(path.relative_to(VECTORS))


def _reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 2.1 MTH, written recursively as the RFC states it."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(
        b"\x01" + _reference_root(leaves[:k]) + _reference_root(leaves[k:])
    ).digest()


class TestVectors:
    """The transparency-dev/merkle probes give the Go verifier's answers."""

    def test_vectors_present(self) -> None:
        """Both vector folders hold the 98 probes the sources list."""
        assert len(_files("inclusion")) == 98
        assert len(_files("consistency")) == 98

    @pytest.mark.parametrize("path", _files("inclusion"), ids=_id)
    def test_inclusion(self, path: Path) -> None:
        """An inclusion probe fails exactly when it says it should."""
        probe: dict[str, Any] = json.loads(path.read_text())
        try:
            verify_inclusion(
                probe["leafIdx"],
                probe["treeSize"],
                _b64(probe["leafHash"]),
                _proof(probe["proof"]),
                _b64(probe["root"]),
            )
        except MerkleProofError:
            failed = True
        else:
            failed = False
        assert probe["wantErr"] == failed, probe["desc"]

    @pytest.mark.parametrize("path", _files("consistency"), ids=_id)
    def test_consistency(self, path: Path) -> None:
        """A consistency probe fails exactly when it says it should."""
        probe: dict[str, Any] = json.loads(path.read_text())
        try:
            verify_consistency(
                probe["size1"],
                probe["size2"],
                _proof(probe["proof"]),
                _b64(probe["root1"]),
                _b64(probe["root2"]),
            )
        except MerkleProofError:
            failed = True
        else:
            failed = False
        assert probe["wantErr"] == failed, probe["desc"]


class TestHashing:
    """Leaf, node and root hashing follow RFC 6962 2.1."""

    def test_empty_root(self) -> None:
        """The empty tree hashes to SHA-256 of nothing."""
        assert hashlib.sha256(b"").digest() == EMPTY_ROOT == root_from_leaf_hashes([])

    def test_domain_separation(self) -> None:
        """Leaves and nodes are prefixed 0x00 and 0x01."""
        assert hashlib.sha256(b"\x00abc").digest() == leaf_hash(b"abc")
        assert hashlib.sha256(b"\x01" + b"l" * 32 + b"r" * 32).digest() == node_hash(
            b"l" * 32, b"r" * 32
        )

    @given(st.lists(st.binary(max_size=8), max_size=40))
    def test_root_matches_recursive_definition(self, leaves: list[bytes]) -> None:
        """The iterative root equals the RFC's recursive MTH for any leaf list."""
        assert _reference_root(leaves) == root_from_leaf_hashes([leaf_hash(x) for x in leaves])

    def test_proof_sizes_refuse_impossible_shapes(self) -> None:
        """Sizes of impossible proofs are errors, not numbers."""
        with pytest.raises(MerkleProofError):
            inclusion_proof_size(3, 3)
        with pytest.raises(MerkleProofError):
            consistency_proof_size(0, 3)
        assert consistency_proof_size(5, 5) == 0
