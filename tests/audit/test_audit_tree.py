"""The in-memory tree's proofs, checked with ``trust.merkle``."""

from __future__ import annotations

import pytest

from gateway.audit._tree import MerkleTree, TreeError
from trust.merkle import (
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

N = 33


@pytest.fixture(scope="module")
def tree() -> MerkleTree:
    """A tree of 33 leaves (crosses several powers of two)."""
    return MerkleTree.from_entries(str(i).encode() for i in range(N))


class TestMerkleTree:
    """Roots and proofs of every prefix agree with the RFC 6962 verifier."""

    def test_roots_of_every_prefix(self, tree: MerkleTree) -> None:
        """root(n) equals the recursive MTH of the first n leaves."""
        leaves = [leaf_hash(str(i).encode()) for i in range(N)]
        for n in range(N + 1):
            assert root_from_leaf_hashes(leaves[:n]) == tree.root(n)

    def test_every_inclusion_proof_verifies(self, tree: MerkleTree) -> None:
        """Every leaf of every prefix has a proof the verifier accepts."""
        for size in range(1, N + 1):
            root = tree.root(size)
            for index in range(size):
                proof = tree.inclusion_proof(index, size)
                verify_inclusion(index, size, tree.leaf(index), proof, root)

    def test_every_consistency_proof_verifies(self, tree: MerkleTree) -> None:
        """Every pair of prefixes has a consistency proof the verifier accepts."""
        for size2 in range(1, N + 1):
            for size1 in range(1, size2 + 1):
                proof = tree.consistency_proof(size1, size2)
                verify_consistency(size1, size2, proof, tree.root(size1), tree.root(size2))

    def test_out_of_range(self, tree: MerkleTree) -> None:
        """Sizes beyond the tree are refused."""
        with pytest.raises(TreeError):
            tree.inclusion_proof(0, N + 1)
        with pytest.raises(TreeError):
            tree.consistency_proof(0, 3)
        with pytest.raises(TreeError):
            tree.root(N + 1)
