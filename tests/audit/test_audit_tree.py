"""The in-memory tree's proofs, checked with ``trust.merkle``, for every chunk size."""

from __future__ import annotations

import pytest

from gateway.audit._tree import (
    ChunkLevels,
    ChunkMismatchError,
    Frontier,
    MerkleTree,
    MissingLeavesError,
    TreeError,
)
from trust.merkle import (
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

N = 33
LEAVES = [leaf_hash(str(i).encode()) for i in range(N)]
CHUNK_BITS = (0, 1, 2, 3, 4, 6)


def _given(tree: MerkleTree) -> dict[int, ChunkLevels]:
    """Every complete chunk's subtree, from the leaf hashes the store would give."""
    c = tree.chunk_size
    return {i: tree.chunk_levels(i, LEAVES[i * c : (i + 1) * c]) for i in range(tree.size // c)}


@pytest.fixture(scope="module", params=CHUNK_BITS, ids=lambda k: f"chunk_bits={k}")
def tree(request: pytest.FixtureRequest) -> MerkleTree:
    """A tree of 33 leaves (crosses several powers of two and chunk edges)."""
    return MerkleTree.from_entries((str(i).encode() for i in range(N)), request.param)


class TestMerkleTree:
    """Roots and proofs of every prefix agree with the RFC 6962 verifier."""

    def test_roots_of_every_prefix(self, tree: MerkleTree) -> None:
        """root(n) equals the recursive MTH of the first n leaves."""
        given = _given(tree)
        for n in range(N + 1):
            assert root_from_leaf_hashes(LEAVES[:n]) == tree.root(n, given)

    def test_every_inclusion_proof_verifies(self, tree: MerkleTree) -> None:
        """Every leaf of every prefix has a proof the verifier accepts."""
        given = _given(tree)
        for size in range(1, N + 1):
            root = tree.root(size, given)
            for index in range(size):
                proof = tree.inclusion_proof(index, size, given)
                verify_inclusion(index, size, tree.leaf(index, given), proof, root)

    def test_every_consistency_proof_verifies(self, tree: MerkleTree) -> None:
        """Every pair of prefixes has a consistency proof the verifier accepts."""
        given = _given(tree)
        for size2 in range(1, N + 1):
            for size1 in range(1, size2 + 1):
                proof = tree.consistency_proof(size1, size2, given)
                verify_consistency(size1, size2, proof, tree.root(size1, given),
                                   tree.root(size2, given))

    def test_out_of_range(self, tree: MerkleTree) -> None:
        """Sizes beyond the tree are refused."""
        with pytest.raises(TreeError):
            tree.inclusion_proof(0, N + 1)
        with pytest.raises(TreeError):
            tree.consistency_proof(0, 3)
        with pytest.raises(TreeError):
            tree.root(N + 1)


class TestGrowingTree:
    """The hashes of subtrees that are not perfect are remembered (``_hash``'s folds):
    proofs asked between appends, of the sizes the tree had and has, stay right."""

    @pytest.mark.parametrize("chunk_bits", [0, 2, 4])
    def test_proofs_between_appends(self, chunk_bits: int) -> None:
        """After every append, the root, every inclusion proof and the consistency proofs
        of the sizes so far verify against roots made from the leaves alone."""
        tree = MerkleTree(chunk_bits, recent_chunks=64)
        for size in range(1, N + 1):
            tree.append(LEAVES[size - 1])
            for older in range(1, size + 1):
                root = root_from_leaf_hashes(LEAVES[:older])
                assert tree.root(older) == root
                for index in range(older):
                    verify_inclusion(index, older, LEAVES[index],
                                     tree.inclusion_proof(index, older), root)
                verify_consistency(older, size, tree.consistency_proof(older, size), root,
                                   root_from_leaf_hashes(LEAVES[:size]))

    def test_folds_are_bounded(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Past its bound the memory of folds is emptied, and the proofs stay right."""
        monkeypatch.setattr("gateway.audit._tree._FOLDS_MAX", 4)
        tree = MerkleTree(0)
        tree.extend(LEAVES)
        for size in range(1, N + 1):
            root = root_from_leaf_hashes(LEAVES[:size])
            for index in range(size):
                verify_inclusion(index, size, LEAVES[index],
                                 tree.inclusion_proof(index, size), root)
            assert len(tree._folds) <= 4


class TestChunks:
    """What a tree that keeps no leaves below its chunks asks of the store."""

    def test_current_root_needs_no_stored_leaves(self) -> None:
        """The whole tree's root: complete nodes and the incomplete chunk held in memory."""
        for n in range(N + 1):
            tree = MerkleTree(2)
            tree.extend(LEAVES[:n])
            assert tree.root() == root_from_leaf_hashes(LEAVES[:n])

    def test_an_older_prefix_asks_for_its_chunk(self) -> None:
        """A prefix ending inside a complete chunk names exactly the leaves it needs."""
        tree = MerkleTree(2)
        tree.extend(LEAVES)
        with pytest.raises(MissingLeavesError) as caught:
            tree.root(10)
        assert (caught.value.chunk, caught.value.start, caught.value.end) == (2, 8, 12)
        assert tree.root(8) == root_from_leaf_hashes(LEAVES[:8])  # chunk edge: no leaves

    def test_a_proof_asks_for_the_leaf_chunk(self) -> None:
        """An inclusion proof needs the siblings inside its leaf's chunk."""
        tree = MerkleTree(3)
        tree.extend(LEAVES)
        with pytest.raises(MissingLeavesError) as caught:
            tree.inclusion_proof(5, 32)
        assert caught.value.chunk == 0
        proof = tree.inclusion_proof(5, 32, {0: tree.chunk_levels(0, LEAVES[:8])})
        verify_inclusion(5, 32, LEAVES[5], proof, root_from_leaf_hashes(LEAVES[:32]))

    def test_given_leaves_are_checked_against_the_tree(self) -> None:
        """Leaf hashes that do not hash to the chunk's node are refused."""
        tree = MerkleTree(2)
        tree.extend(LEAVES)
        levels = tree.chunk_levels(1, LEAVES[4:8])
        assert [list(level) for level in levels] == [
            LEAVES[4:8],
            [root_from_leaf_hashes(LEAVES[4:6]), root_from_leaf_hashes(LEAVES[6:8])],
            [root_from_leaf_hashes(LEAVES[4:8])],
        ]
        with pytest.raises(ChunkMismatchError):
            tree.chunk_levels(1, [LEAVES[4], LEAVES[4], LEAVES[6], LEAVES[7]])
        with pytest.raises(ChunkMismatchError):
            tree.chunk_levels(1, LEAVES[4:7])
        with pytest.raises(TreeError):
            tree.chunk_levels(8, LEAVES[32:33])  # the incomplete chunk is not a stored chunk

    def test_memory_is_kept_per_chunk(self) -> None:
        """Chunks of 64 keep one node per 64 leaves at the lowest level."""
        tree = MerkleTree(6)
        tree.extend(leaf_hash(i.to_bytes(4, "big")) for i in range(64 * 40 + 5))
        assert len(tree._levels[0]) == 40 * 32
        assert len(tree._tail) == 5


class TestFrontier:
    """The right edge alone grows and hashes as the tree does."""

    @pytest.mark.parametrize("chunk_bits", CHUNK_BITS)
    def test_frontier_of_every_size_extends_to_the_same_roots(self, chunk_bits: int) -> None:
        """From any tree, its frontier grown by the next leaves has the grown tree's root."""
        for n in range(N + 1):
            tree = MerkleTree(chunk_bits)
            tree.extend(LEAVES[:n])
            frontier = tree.frontier()
            assert (n, root_from_leaf_hashes(LEAVES[:n])) == (frontier.size, frontier.root())
            grown = frontier.copy()
            grown.extend(LEAVES[n:])
            assert (N, root_from_leaf_hashes(LEAVES)) == (grown.size, grown.root())
            assert frontier.size == n  # the copy grew, not the original

    def test_empty(self) -> None:
        """No leaves: the empty tree's root."""
        assert root_from_leaf_hashes([]) == Frontier().root()

    @pytest.mark.parametrize("chunk_bits", [0, 2])
    def test_proofs_after_the_edge_are_the_grown_trees_proofs(self, chunk_bits: int) -> None:
        """From the edge of every size, the next leaves of every count are proved in the
        grown tree: its root, and paths that RFC 6962 verifies and that equal the tree's
        own range_proofs. The edge itself is not changed."""
        for first in range(N):
            tree = MerkleTree(chunk_bits)
            tree.extend(LEAVES[:first])
            edge = tree.frontier()
            for end in range(first + 1, N + 1):
                root, paths = edge.proofs_after(LEAVES[first:end])
                assert root_from_leaf_hashes(LEAVES[:end]) == root
                for i, path in enumerate(paths, start=first):
                    verify_inclusion(i, end, LEAVES[i], path, root)
                grown = MerkleTree(chunk_bits)
                grown.extend(LEAVES[:end])
                assert grown.range_proofs(first, end, end, _given(grown)) == (root, paths)
            assert (first, root_from_leaf_hashes(LEAVES[:first])) == (edge.size, edge.root())

    def test_proofs_after_need_leaves_and_a_whole_edge(self) -> None:
        """Nothing to prove is refused; so is an edge without the subtree a path needs
        (an edge of 5 leaves that holds only the first 4)."""
        with pytest.raises(TreeError):
            Frontier().proofs_after([])
        with pytest.raises(TreeError):
            Frontier(5, [(2, root_from_leaf_hashes(LEAVES[:4]))]).proofs_after(LEAVES[5:6])


class TestRecentChunks:
    """A tree keeps the leaves of its last completed chunks: proofs of recent entries need
    nothing from the store."""

    def test_recent_entries_are_proved_from_memory(self) -> None:
        """Every entry of the last two complete chunks is proved without given leaves; an
        older one still asks for its chunk."""
        tree = MerkleTree(2, recent_chunks=2)
        tree.extend(LEAVES)  # chunks 0..7 complete, leaf 32 in the tail
        root = root_from_leaf_hashes(LEAVES)
        for index in range(24, N):
            verify_inclusion(index, N, LEAVES[index], tree.inclusion_proof(index, N), root)
        assert tree.root(30) == root_from_leaf_hashes(LEAVES[:30])
        with pytest.raises(MissingLeavesError) as caught:
            tree.inclusion_proof(23, N)
        assert caught.value.chunk == 5

    @pytest.mark.parametrize("chunk_bits", CHUNK_BITS)
    def test_batch_of_proofs_is_every_single_proof(self, chunk_bits: int) -> None:
        """inclusion_proofs, which shares each chunk's upper path, gives what
        inclusion_proof gives for every index and size, from recent or given chunks."""
        tree = MerkleTree(chunk_bits, recent_chunks=3)
        tree.extend(LEAVES)
        given = _given(tree)
        for size in range(1, N + 1):
            indices = list(range(size))
            expected = [tree.inclusion_proof(i, size, given) for i in indices]
            assert expected == tree.inclusion_proofs(indices, size, given)
            recent = [i for i in indices if (i >> chunk_bits) >= (N >> chunk_bits) - 3]
            assert [expected[i] for i in recent] == tree.inclusion_proofs(recent, size)

    @pytest.mark.parametrize("chunk_bits", CHUNK_BITS)
    def test_range_proofs_are_the_root_and_every_single_proof(self, chunk_bits: int) -> None:
        """range_proofs (one descent for a batch's span) gives root(size) and what
        inclusion_proof gives for every index of every span of every size; a span in
        recent chunks needs no given leaves, an older one asks for its chunk."""
        tree = MerkleTree(chunk_bits, recent_chunks=3)
        tree.extend(LEAVES)
        given = _given(tree)
        for size in range(1, N + 1):
            expected = [tree.inclusion_proof(i, size, given) for i in range(size)]
            for start in range(size):
                for end in range(start + 1, size + 1):
                    root, paths = tree.range_proofs(start, end, size, given)
                    assert root_from_leaf_hashes(LEAVES[:size]) == root
                    assert expected[start:end] == paths
        first_recent = max(0, (N >> chunk_bits) - 3) << chunk_bits
        if chunk_bits:  # (chunks of one leaf keep every node: nothing is ever missing)
            root, paths = tree.range_proofs(first_recent, N, N)
            assert root == root_from_leaf_hashes(LEAVES)
            assert paths == [tree.inclusion_proof(i, N, given) for i in range(first_recent, N)]
        if chunk_bits and first_recent:
            with pytest.raises(MissingLeavesError):
                tree.range_proofs(0, N, N)
        with pytest.raises(TreeError):
            tree.range_proofs(3, 3, N)
        with pytest.raises(TreeError):
            tree.range_proofs(0, N + 1, N + 1)
