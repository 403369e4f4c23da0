"""The log's Merkle tree in memory: every complete node, level by level.

Level ``k`` holds the hashes of the complete subtrees of ``2**k`` leaves, in
order, as one ``bytearray`` of 32-byte hashes (1M leaves: about 64 MB in all).
Appending is amortised O(1); the root of any prefix, inclusion proofs and
consistency proofs (RFC 6962 2.1.1, 2.1.2) need O(log n) complete nodes plus
O(log n) right-edge folds each. Verification lives in ``trust.merkle``.

Not thread-safe: the audit service touches it only from the event loop.
"""

from __future__ import annotations

from collections.abc import Iterable

from trust.merkle import EMPTY_ROOT, HASH_SIZE, leaf_hash, node_hash

__all__ = ["MerkleTree", "TreeError"]


class TreeError(ValueError):
    """A proof was asked for sizes or indices the tree cannot answer."""


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only RFC 6962 tree over leaf hashes."""

    def __init__(self) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0

    @property
    def size(self) -> int:
        """Number of leaves."""
        return self._size

    @classmethod
    def from_entries(cls, entries: Iterable[bytes]) -> MerkleTree:
        """A tree over the leaf hashes of raw entries."""
        tree = cls()
        for entry in entries:
            tree.append(leaf_hash(entry))
        return tree

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash."""
        if len(leaf) != HASH_SIZE:
            raise TreeError("a leaf hash is 32 bytes")
        levels = self._levels
        levels[0] += leaf
        self._size += 1
        count, level = self._size, 0
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

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        if not 0 <= index < self._size:
            raise TreeError(f"no leaf {index} in a tree of {self._size}")
        return bytes(self._levels[0][index * 32 : index * 32 + 32])

    def _node(self, level: int, index: int) -> bytes:
        start = index * 32
        return bytes(self._levels[level][start : start + 32])

    def _hash(self, start: int, end: int) -> bytes:
        """MTH of leaves ``[start, end)``; ``start`` is aligned as RFC 6962 splits make it."""
        n = end - start
        if n & (n - 1) == 0:
            level = n.bit_length() - 1
            return self._node(level, start >> level)
        k = _split(n)
        return node_hash(self._hash(start, start + k), self._hash(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        """The root of the first ``size`` leaves (all of them by default)."""
        size = self._size if size is None else size
        if not 0 <= size <= self._size:
            raise TreeError(f"no tree of size {size}; the log has {self._size}")
        return EMPTY_ROOT if size == 0 else self._hash(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 6962 2.1.1 PATH(index, D[0:size])."""
        size = self._size if size is None else size
        if not 0 <= index < size <= self._size:
            raise TreeError(f"no leaf {index} in a tree of size {size}")
        proof: list[bytes] = []
        start, end, m = 0, size, index
        while end - start > 1:
            k = _split(end - start)
            if m < k:
                proof.append(self._hash(start + k, end))
                end = start + k
            else:
                proof.append(self._hash(start, start + k))
                start, m = start + k, m - k
        proof.reverse()
        return proof

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
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
                    proof.append(self._hash(start, end))
                break
            k = _split(n)
            if m <= k:
                proof.append(self._hash(start + k, end))
                end = start + k
            else:
                proof.append(self._hash(start, start + k))
                start, m, complete = start + k, m - k, False
        proof.reverse()
        return proof
