"""The log's Merkle tree in memory: complete nodes from one level up, leaves kept in the store.

With ``chunk_bits = k`` the tree keeps, level by level from level ``k`` up,
the hashes of the complete subtrees of ``2**k`` leaves or more (each level one
``bytearray`` of 32-byte hashes), and the leaf hashes of the last, incomplete
chunk of ``2**k`` leaves. Nodes below level ``k`` inside a complete chunk are
recomputed from that chunk's leaf hashes, which the caller reads from the
store when an operation asks for them (``MissingLeavesError``); the tree
rebuilds the chunk's subtree from them (``chunk_levels``) and checks it against
the chunk's node before it is used. The gateway runs with
``k = 4``: about 4 bytes of memory per entry (1M entries: 4 MB) instead of the
64 bytes of keeping every level (``k = 0``, what ``audit verify`` uses).

The tree also keeps the subtrees (leaf hashes up) of its most recently
completed chunks (``recent_chunks`` of them), so that the inclusion proofs of a batch just
committed are made without reading the store.

``Frontier`` is a tree's right edge alone (the roots of its perfect subtrees,
largest first: O(log n) hashes): enough to append leaves and compute the new
root, without the tree, on another thread.

Appending is amortised O(1); the root of any prefix, inclusion proofs and
consistency proofs (RFC 6962 2.1.1, 2.1.2) need O(log n) complete nodes,
O(log n) right-edge folds and at most a few chunks of leaves each.

A subtree that is not perfect (its width not a power of two) is the right edge of
some tree size: every proof against that size needs the same few of them, and
each costs one hash per perfect subtree it folds. The tree is append-only, so the
hash of leaves ``[start, end)`` never changes once they exist: the tree remembers
the most recent of these folds (``_FOLDS_MAX``), and proofs against one checkpoint
hash its right edge once.

Verification lives in ``trust.merkle``.

Not thread-safe: the audit service touches it only from the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from hashlib import sha256

from trust.merkle import EMPTY_ROOT, HASH_SIZE, leaf_hash, node_hash, root_from_leaf_hashes

__all__ = [
    "ChunkLevels", "ChunkMismatchError", "Frontier", "GivenChunks", "MerkleTree",
    "MissingLeavesError", "TreeError",
]

ChunkLevels = Sequence[Sequence[bytes]]
"""A complete chunk's subtree level by level: its leaf hashes first, its root last."""
GivenChunks = Mapping[int, ChunkLevels]
"""Complete chunks' subtrees by chunk number, made by ``chunk_levels`` from stored leaves."""


_FOLDS_MAX = 4096
"""Hashes of non-perfect subtrees remembered (``MerkleTree._hash``): about 20 per tree
size asked for, so proofs against a few hundred recent sizes; forgotten all at once."""


class TreeError(ValueError):
    """A proof was asked for sizes or indices the tree cannot answer."""


class MissingLeavesError(LookupError):
    """The operation needs the leaf hashes of a complete chunk the caller did not give."""

    def __init__(self, chunk: int, start: int, end: int) -> None:
        super().__init__(f"leaf hashes [{start}, {end}) of chunk {chunk} are needed")
        self.chunk = chunk
        self.start = start
        self.end = end


class ChunkMismatchError(TreeError):
    """Leaf hashes given for a chunk do not hash to the node the tree holds for it."""


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """The subtree over a power-of-two run of leaf hashes, level by level (root last)."""
    levels = [list(leaves)]
    below = levels[0]
    while len(below) > 1:
        below = [node_hash(below[i], below[i + 1]) for i in range(0, len(below), 2)]
        levels.append(below)
    return levels


def _span_proofs(start: int, end: int, size: int, node: Callable[[int, int], bytes]
                 ) -> tuple[bytes, list[list[bytes]]]:
    """The root of a tree of ``size`` leaves and the RFC 6962 inclusion proof of every leaf
    in ``[start, end)``, in one descent.

    RFC 6962's split is walked once from the root, only into the subtrees that hold
    leaves of the span; every node met on the way is hashed once, and its hash is the
    sibling its neighbour's leaves need. ``node(lo, hi)`` gives the hash of a leaf of the
    span (``hi == lo + 1``) and of every subtree wholly outside it that is met.
    """
    paths: list[list[bytes]] = [[] for _ in range(end - start)]

    def walk(lo: int, hi: int) -> bytes:
        # [lo, hi) holds at least one leaf of the span.
        if hi - lo == 1:
            return node(lo, hi)
        mid = lo + _split(hi - lo)
        left = walk(lo, mid) if start < mid else node(lo, mid)
        right = walk(mid, hi) if end > mid else node(mid, hi)
        for i in range(max(start, lo) - start, min(end, mid) - start):
            paths[i].append(right)
        for i in range(max(start, mid) - start, min(end, hi) - start):
            paths[i].append(left)
        return node_hash(left, right)

    return walk(0, size), paths


class Frontier:
    """The right edge of a tree: the roots of its perfect subtrees, largest first.

    RFC 6962 splits a tree of ``n`` leaves at the largest power of two below
    ``n``, so its root is these subtree roots folded from the right. Appending
    a leaf merges equal subtrees, as a binary counter carries.
    """

    __slots__ = ("_nodes", "size")

    def __init__(self, size: int = 0, nodes: Sequence[tuple[int, bytes]] = ()) -> None:
        self.size = size
        self._nodes = list(nodes)  # (height, root), heights strictly decreasing

    def copy(self) -> Frontier:
        """An independent copy."""
        return Frontier(self.size, self._nodes)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash."""
        nodes = self._nodes
        height, node = 0, leaf
        while nodes and nodes[-1][0] == height:
            node = node_hash(nodes.pop()[1], node)
            height += 1
        nodes.append((height, node))
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Add leaf hashes in order."""
        for leaf in leaves:
            self.append(leaf)

    def extend_subtrees(self, roots: bytes, height: int) -> None:
        """Add perfect subtrees of ``2**height`` leaves each, by their roots (32 bytes each,
        in order); the edge must end on such a subtree's boundary."""
        if self.size % (1 << height) or len(roots) % HASH_SIZE:
            raise TreeError(f"no subtrees of height {height} after {self.size} leaves")
        nodes = self._nodes
        for offset in range(0, len(roots), HASH_SIZE):
            level, node = height, roots[offset : offset + HASH_SIZE]
            while nodes and nodes[-1][0] == level:
                node = node_hash(nodes.pop()[1], node)
                level += 1
            nodes.append((level, node))
        self.size += (len(roots) // HASH_SIZE) << height

    def root(self) -> bytes:
        """The tree's root (RFC 6962 2.1 MTH)."""
        if not self._nodes:
            return EMPTY_ROOT
        root = self._nodes[-1][1]
        for _, node in reversed(self._nodes[:-1]):
            root = node_hash(node, root)
        return root

    def proofs_after(self, leaves: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
        """The root of this edge grown by ``leaves``, and the RFC 6962 inclusion proof of
        each of them in that tree (``MerkleTree.range_proofs`` of the new leaves), from
        the edge alone; the edge itself is not changed.

        Every node a new leaf's path needs left of the edge is one of the edge's
        subtrees: it is a perfect subtree left of ``size`` whose parent reaches past it,
        which is what the edge holds. The rest is hashed from ``leaves``.
        """
        first = self.size
        if not leaves:
            raise TreeError("no new leaves to prove")
        held: dict[int, tuple[int, bytes]] = {}
        start = 0
        for height, root in self._nodes:
            held[start] = (1 << height, root)
            start += 1 << height

        def node(lo: int, hi: int) -> bytes:
            if lo >= first:
                return leaves[lo - first]
            width, root = held.get(lo, (0, b""))
            if width != hi - lo:
                raise TreeError(f"the edge of {first} leaves holds no subtree [{lo}, {hi})")
            return root

        end = first + len(leaves)
        return _span_proofs(first, end, end, node)


class MerkleTree:
    """An append-only RFC 6962 tree over leaf hashes."""

    def __init__(self, chunk_bits: int = 0, *, recent_chunks: int = 0) -> None:
        if not 0 <= chunk_bits <= 16:
            raise ValueError("chunk_bits must be between 0 and 16")
        self._k = chunk_bits
        self._chunk = 1 << chunk_bits
        self._levels: list[bytearray] = [bytearray()]  # level k + i at index i
        self._tail: list[bytes] = []  # leaf hashes of the incomplete last chunk
        self._size = 0
        self._recent_max = recent_chunks if chunk_bits else 0
        self._recent: dict[int, ChunkLevels] = {}  # chunk -> its subtree, oldest first
        self._folds: dict[tuple[int, int], bytes] = {}  # (start, end) -> MTH, not perfect

    @property
    def size(self) -> int:
        """Number of leaves."""
        return self._size

    @property
    def chunk_size(self) -> int:
        """Leaves per chunk (the span of the lowest level kept)."""
        return self._chunk

    def memory_bytes(self) -> int:
        """Bytes of hashes held: the complete nodes, the last chunk's leaves, the recent chunks."""
        nodes = sum(len(level) for level in self._levels)
        recent = sum(len(level) for levels in self._recent.values() for level in levels)
        return nodes + HASH_SIZE * (len(self._tail) + recent)

    def load_chunk_nodes(self, nodes: bytes) -> None:
        """Start an empty tree from the roots of its first complete chunks (32 bytes each).

        The levels above are hashed here (one hash per two nodes, about ``size / 2**k``
        in all): a tree of 10,000,000 leaves starts from 20 MB instead of its 320 MB of
        leaf hashes. Nothing is checked: the caller compares a root with a signed one.
        """
        if self._size or self._chunk == 1:
            raise TreeError("chunk nodes load only into an empty tree of chunks")
        if len(nodes) % HASH_SIZE:
            raise TreeError("chunk nodes are 32 bytes each")
        level = bytearray(nodes)
        levels = [level]
        while len(level) >= 2 * HASH_SIZE:
            above = bytearray()
            pair = 2 * HASH_SIZE
            for i in range(0, len(level) - pair + 1, pair):
                above += sha256(b"\x01" + level[i : i + pair]).digest()  # node_hash(left, right)
            levels.append(above)
            level = above
        self._levels = levels
        self._size = (len(nodes) // HASH_SIZE) << self._k

    def extend_chunks(self, nodes: bytes) -> None:
        """Grow a tree that ends on a chunk boundary by whole chunks, from their roots
        (32 bytes each, in order). Their leaves are not held (proofs inside them ask for
        them, as for any older chunk). Nothing is checked: the caller compares a root
        with a signed one first (``Frontier.extend_subtrees``)."""
        if self._tail or self._chunk == 1:
            raise TreeError("chunk nodes extend only a tree that ends on a chunk boundary")
        if len(nodes) % HASH_SIZE:
            raise TreeError("chunk nodes are 32 bytes each")
        for offset in range(0, len(nodes), HASH_SIZE):
            self._size += self._chunk
            self._push(nodes[offset : offset + HASH_SIZE])

    def chunk_nodes(self, start: int, end: int) -> bytes:
        """The roots of complete chunks ``[start, end)``, 32 bytes each, in order."""
        if not 0 <= start <= end <= self._size >> self._k or self._chunk == 1:
            raise TreeError(f"chunks [{start}, {end}) are not complete in a tree of {self._size}")
        return bytes(self._levels[0][start * HASH_SIZE : end * HASH_SIZE])

    @classmethod
    def from_entries(cls, entries: Iterable[bytes], chunk_bits: int = 0) -> MerkleTree:
        """A tree over the leaf hashes of raw entries."""
        tree = cls(chunk_bits)
        tree.extend(leaf_hash(entry) for entry in entries)
        return tree

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash."""
        if len(leaf) != HASH_SIZE:
            raise TreeError("a leaf hash is 32 bytes")
        self._size += 1
        if self._chunk == 1:
            self._push(leaf)
            return
        self._tail.append(leaf)
        if len(self._tail) == self._chunk:
            if self._recent_max:
                # Keep the chunk's whole subtree: proofs inside it are then lookups.
                levels = _levels(self._tail)
                node = levels[-1][0]
                recent = self._recent
                recent[(self._size >> self._k) - 1] = levels
                if len(recent) > self._recent_max:
                    del recent[next(iter(recent))]
            else:
                node = root_from_leaf_hashes(self._tail)
            self._tail = []
            self._push(node)

    def _push(self, node: bytes) -> None:
        levels = self._levels
        levels[0] += node
        count, level = self._size >> self._k, 0
        # A new complete node appears at each level where the count becomes even.
        while count % 2 == 0:
            below = levels[level]
            end = len(below)
            parent = node_hash(bytes(below[end - 64 : end - 32]), bytes(below[end - 32 : end]))
            level += 1
            if level == len(levels):
                levels.append(bytearray())
            levels[level] += parent
            count //= 2

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Add leaf hashes in order."""
        for leaf in leaves:
            self.append(leaf)

    def frontier(self) -> Frontier:
        """The tree's right edge, to grow and hash apart from the tree."""
        nodes: list[tuple[int, bytes]] = []
        count, covered = self._size >> self._k, 0
        for i in reversed(range(len(self._levels))):
            if count >> i & 1:
                nodes.append((self._k + i, self._node(i, covered >> i)))
                covered += 1 << i
        frontier = Frontier(covered << self._k, nodes)
        frontier.extend(self._tail)
        return frontier

    def chunk_node(self, chunk: int) -> bytes:
        """The root of complete chunk ``chunk`` (what its leaf hashes must hash to)."""
        if not 0 <= chunk < self._size >> self._k:
            raise TreeError(f"chunk {chunk} is not complete in a tree of {self._size}")
        return self._node(0, chunk)

    def chunk_levels(self, chunk: int, leaves: Sequence[bytes]) -> ChunkLevels:
        """The subtree of complete chunk ``chunk`` over ``leaves``, checked against its node.

        Raises ``ChunkMismatchError`` unless ``leaves`` hash to the node the tree holds.
        """
        expected = self.chunk_node(chunk)
        if len(leaves) != self._chunk or any(len(leaf) != HASH_SIZE for leaf in leaves):
            raise ChunkMismatchError(f"the leaf hashes given for chunk {chunk} do not match")
        levels = _levels(leaves)
        if levels[-1][0] != expected:
            raise ChunkMismatchError(f"the leaf hashes given for chunk {chunk} do not match")
        return levels

    def _node(self, level: int, index: int) -> bytes:
        start = index * 32
        return bytes(self._levels[level][start : start + 32])

    def _low_node(self, level: int, start: int, given: GivenChunks | None) -> bytes:
        """The node over leaves ``[start, start + 2**level)``, a subtree inside one chunk."""
        chunk = start >> self._k
        offset = start - (chunk << self._k)
        if chunk == self._size >> self._k:  # the incomplete chunk, held in memory
            return root_from_leaf_hashes(self._tail[offset : offset + (1 << level)])
        levels = None if given is None else given.get(chunk)
        if levels is None:
            levels = self._recent.get(chunk)  # a chunk completed lately: still held
            if levels is not None:
                return bytes(levels[level][offset >> level])
            first = chunk << self._k
            raise MissingLeavesError(chunk, first, first + self._chunk)
        return bytes(levels[level][offset >> level])

    def _hash(self, start: int, end: int, given: GivenChunks | None) -> bytes:
        """MTH of leaves ``[start, end)``; ``start`` is aligned as RFC 6962 splits make it."""
        n = end - start
        if n & (n - 1) == 0:
            level = n.bit_length() - 1
            if level >= self._k:
                return self._node(level - self._k, start >> level)
            return self._low_node(level, start, given)
        folds = self._folds
        found = folds.get((start, end))
        if found is not None:
            return found
        k = _split(n)
        node = node_hash(self._hash(start, start + k, given), self._hash(start + k, end, given))
        if len(folds) >= _FOLDS_MAX:
            folds.clear()
        folds[(start, end)] = node
        return node

    def leaf(self, index: int, given: GivenChunks | None = None) -> bytes:
        """The leaf hash at ``index``."""
        if not 0 <= index < self._size:
            raise TreeError(f"no leaf {index} in a tree of {self._size}")
        return self._hash(index, index + 1, given)

    def root(self, size: int | None = None, given: GivenChunks | None = None) -> bytes:
        """The root of the first ``size`` leaves (all of them by default)."""
        size = self._size if size is None else size
        if not 0 <= size <= self._size:
            raise TreeError(f"no tree of size {size}; the log has {self._size}")
        return EMPTY_ROOT if size == 0 else self._hash(0, size, given)

    def inclusion_proof(
        self, index: int, size: int | None = None, given: GivenChunks | None = None
    ) -> list[bytes]:
        """RFC 6962 2.1.1 PATH(index, D[0:size])."""
        size = self._size if size is None else size
        if not 0 <= index < size <= self._size:
            raise TreeError(f"no leaf {index} in a tree of size {size}")
        proof: list[bytes] = []
        start, end, m = 0, size, index
        while end - start > 1:
            k = _split(end - start)
            if m < k:
                proof.append(self._hash(start + k, end, given))
                end = start + k
            else:
                proof.append(self._hash(start, start + k, given))
                start, m = start + k, m - k
        proof.reverse()
        return proof

    def inclusion_proofs(
        self, indices: Sequence[int], size: int, given: GivenChunks | None = None
    ) -> list[list[bytes]]:
        """``inclusion_proof(i, size)`` of each index, sharing work between neighbours.

        RFC 6962 narrows the range holding a leaf at powers of two, so it reaches the
        leaf's chunk (cut at ``size`` when the chunk is the last): a leaf's path is its
        path inside that range followed by the range's path in the tree, which every
        leaf of the chunk shares. That upper part is made once per chunk; the lower
        part comes from the chunk's subtree (or a small tree of the last chunk's leaves).
        """
        k = self._k
        upper: dict[int, list[bytes]] = {}
        lower_trees: dict[int, MerkleTree] = {}
        proofs: list[list[bytes]] = []
        for index in indices:
            chunk = index >> k
            start = chunk << k
            width = min(size, start + self._chunk) - start
            levels = given.get(chunk) if given is not None else None
            if levels is None:
                levels = self._recent.get(chunk)
            offset = index - start
            if width == self._chunk and levels is not None:
                lower = [bytes(levels[level][(offset >> level) ^ 1]) for level in range(k)]
            else:
                small = lower_trees.get(chunk)
                if small is None:
                    if chunk == self._size >> k:
                        leaves: Sequence[bytes] | None = self._tail[:width]
                    else:
                        leaves = None if levels is None else levels[0][:width]
                    if not k or leaves is None or len(leaves) != width:
                        proofs.append(self.inclusion_proof(index, size, given))
                        continue
                    small = lower_trees[chunk] = MerkleTree()
                    small.extend(leaves)
                lower = small.inclusion_proof(offset, width)
            shared = upper.get(chunk)
            if shared is None:
                shared = upper[chunk] = self.inclusion_proof(index, size, given)[len(lower):]
            proofs.append(lower + shared)
        return proofs

    def consistency_proof(
        self, size1: int, size2: int | None = None, given: GivenChunks | None = None
    ) -> list[bytes]:
        """RFC 6962 2.1.2 PROOF(size1, D[0:size2]); empty when the sizes are equal."""
        size2 = self._size if size2 is None else size2
        if not 0 < size1 <= size2 <= self._size:
            raise TreeError(f"no consistency proof from {size1} to {size2}")
        proof: list[bytes] = []
        start, end, m, complete = 0, size2, size1, True
        while True:
            n = end - start
            if m == n:
                if not complete:
                    proof.append(self._hash(start, end, given))
                break
            k = _split(n)
            if m <= k:
                proof.append(self._hash(start + k, end, given))
                end = start + k
            else:
                proof.append(self._hash(start, start + k, given))
                start, m, complete = start + k, m - k, False
        proof.reverse()
        return proof

    def range_proofs(
        self, start: int, end: int, size: int, given: GivenChunks | None = None
    ) -> tuple[bytes, list[list[bytes]]]:
        """The root of the first ``size`` leaves and ``inclusion_proof(i, size)`` of every
        ``i`` in ``[start, end)``, in one descent (a batch just committed).

        RFC 6962's split is walked once from the root, only into the subtrees that hold
        leaves of the range; every node met on the way is hashed once, and its hash is the
        sibling its neighbour's leaves need. Subtrees outside the range are whole nodes
        (``_hash``: kept complete nodes, or a chunk's leaves).
        """
        if not 0 <= start < end <= size <= self._size:
            raise TreeError(f"no leaves [{start}, {end}) in a tree of size {size}")
        return _span_proofs(start, end, size, lambda lo, hi: self._hash(lo, hi, given))
