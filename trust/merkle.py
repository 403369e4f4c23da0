"""RFC 6962 / RFC 9162 Merkle tree hashing and proof verification.

Pure functions: bytes in, ``None`` or ``MerkleProofError`` out. Generation of
proofs lives with the log that owns the tree (``gateway.audit``); anybody
holding a checkpoint can check a proof with this module alone.

Edge rules follow the Go reference verifier (``transparency-dev/merkle``), so
the public vectors in ``tests/vectors/merkle`` give the same answers:

* a leaf hash must be exactly 32 bytes;
* a proof must have exactly the expected number of hashes;
* ``size1 > size2`` is an error, and so is ``size1 == 0`` (even ``0 -> 0``);
* ``size1 == size2`` needs an empty proof and ``root1 == root2``.

Errors::

    * TrustError
      x MerkleProofError    a proof does not prove what it claims
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from trust._errors import TrustError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MerkleProofError",
    "consistency_proof_size",
    "inclusion_proof_size",
    "leaf_hash",
    "node_hash",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""SHA-256 output length in bytes."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""RFC 6962 2.1: the hash of an empty list is the hash of an empty string."""


class MerkleProofError(TrustError):
    """An inclusion or consistency proof does not hold."""


def leaf_hash(entry: bytes) -> bytes:
    """RFC 6962 2.1: ``MTH({d0}) = SHA-256(0x00 || d0)``."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 2.1: an interior node is ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash over leaves whose leaf hashes are given, in order.

    Iterative and linear: it folds completed perfect subtrees on a stack, which
    gives the same tree as the recursive split of RFC 6962 2.1.
    """
    if not hashes:
        return EMPTY_ROOT
    # stack of (height, hash) of perfect subtrees, heights strictly decreasing
    stack: list[tuple[int, bytes]] = []
    for h in hashes:
        height, node = 0, h
        while stack and stack[-1][0] == height:
            _, left = stack.pop()
            node = node_hash(left, node)
            height += 1
        stack.append((height, node))
    # RFC 6962: the right-hand incomplete subtrees hang off the right edge.
    _, root = stack.pop()
    while stack:
        _, left = stack.pop()
        root = node_hash(left, root)
    return root


def inclusion_proof_size(index: int, size: int) -> int:
    """Number of hashes in the inclusion proof of leaf ``index`` in a tree of ``size``."""
    if not 0 <= index < size:
        raise MerkleProofError(f"leaf index {index} outside tree of size {size}")
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner + border


def consistency_proof_size(size1: int, size2: int) -> int:
    """Number of hashes in the consistency proof from ``size1`` to ``size2``."""
    if size1 <= 0 or size2 < size1:
        raise MerkleProofError(f"no consistency proof from size {size1} to size {size2}")
    if size1 == size2:
        return 0
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    border = ((size1 - 1) >> inner).bit_count()
    shift = (size1 & -size1).bit_length() - 1  # trailing zeros of size1
    # RFC 9162 2.1.4.2 step 2: the first hash is implied when size1 is a power of two.
    implied = 1 if size1 == 1 << shift else 0
    return inner - shift + border + (1 - implied)


def _check_hashes(proof: Sequence[bytes]) -> None:
    for i, item in enumerate(proof):
        if len(item) != HASH_SIZE:
            raise MerkleProofError(f"proof hash {i} is {len(item)} bytes, not {HASH_SIZE}")


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf`` (a leaf hash) is leaf ``index`` of the tree of ``size`` with ``root``.

    RFC 9162 2.1.3.2. Raises ``MerkleProofError`` when it is not.
    """
    if len(leaf) != HASH_SIZE:
        raise MerkleProofError(f"leaf hash is {len(leaf)} bytes, not {HASH_SIZE}")
    expected = inclusion_proof_size(index, size)
    if len(proof) != expected:
        raise MerkleProofError(f"inclusion proof has {len(proof)} hashes, expected {expected}")
    _check_hashes(proof)
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise MerkleProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                # Skip the levels where this node has no right sibling.
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MerkleProofError("inclusion proof is too short")
    if r != root:
        raise MerkleProofError("inclusion proof does not lead to the root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of ``size2`` with ``root2`` extends the tree of ``size1`` with ``root1``.

    RFC 9162 2.1.4.2, with the Go edge rules in the module docstring. Raises
    ``MerkleProofError`` when it does not.
    """
    if size2 < size1:
        raise MerkleProofError(f"size1 {size1} is larger than size2 {size2}")
    if size1 == 0:
        # An empty tree is consistent with anything; a proof of it proves nothing.
        raise MerkleProofError("consistency from an empty tree proves nothing")
    if size1 == size2:
        if proof:
            raise MerkleProofError("equal sizes need an empty proof")
        if root1 != root2:
            raise MerkleProofError("equal sizes but different roots")
        return
    if not proof:
        raise MerkleProofError("empty consistency proof")
    expected = consistency_proof_size(size1, size2)
    if len(proof) != expected:
        raise MerkleProofError(f"consistency proof has {len(proof)} hashes, expected {expected}")
    _check_hashes(proof)
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        # RFC 9162 2.1.4.2 step 2: size1 is a power of two, its root is the first node.
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise MerkleProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MerkleProofError("consistency proof is too short")
    if fr != root1:
        raise MerkleProofError("consistency proof does not lead to root1")
    if sr != root2:
        raise MerkleProofError("consistency proof does not lead to root2")
