"""The tree's chunk nodes kept on disk, so a start-up reads ``n / 16`` hashes, not ``n``.

``data_dir/audit-tree.nodes`` holds a 32-byte header (a magic string and the
chunk size) and then the root of every complete chunk of ``2**k`` leaves, 32
bytes each, in order: about 2 MB per million entries at ``k = 4``. It is a
cache of what the store's leaf hashes already determine, never a source of
truth: the service uses only the nodes of chunks below its latest signed
checkpoint, rebuilds the tree over them and compares its root at that
checkpoint's size with the signed root before it serves anything (a changed
or torn file is then found, reported and rebuilt from the stored leaf hashes).
Nodes are written at their fixed offsets (``pwrite``), so two processes that
share a data folder write the same bytes to the same places.
"""

from __future__ import annotations

import os
from pathlib import Path

from trust.merkle import HASH_SIZE

__all__ = ["NODES_FILE", "chunk_nodes_held", "read_chunk_nodes", "reset_chunk_nodes",
           "write_chunk_nodes"]

NODES_FILE = "audit-tree.nodes"
_MAGIC = b"ecert-gateway audit chunk nodes "


def _header(chunk_bits: int) -> bytes:
    header = _MAGIC[: HASH_SIZE - 1] + bytes([chunk_bits])
    assert len(header) == HASH_SIZE
    return header


def read_chunk_nodes(data_dir: Path, chunk_bits: int, limit: int, first: int = 0) -> bytes:
    """The chunk nodes kept from chunk ``first`` up to chunk ``limit`` (fewer when fewer
    are; none without a valid header), as one ``bytes`` of 32-byte roots."""
    path = data_dir / NODES_FILE
    try:
        with path.open("rb") as file:
            if file.read(HASH_SIZE) != _header(chunk_bits):
                return b""
            file.seek(HASH_SIZE * (1 + first))
            data = file.read(max(0, limit - first) * HASH_SIZE)
    except FileNotFoundError:
        return b""
    return data[: len(data) - len(data) % HASH_SIZE]


def chunk_nodes_held(data_dir: Path, chunk_bits: int) -> int:
    """How many chunk nodes the file holds (0 when it is missing or not for these chunks)."""
    try:
        with (data_dir / NODES_FILE).open("rb") as file:
            if file.read(HASH_SIZE) != _header(chunk_bits):
                return 0
            return max(0, os.fstat(file.fileno()).st_size // HASH_SIZE - 1)
    except FileNotFoundError:
        return 0


def write_chunk_nodes(data_dir: Path, chunk_bits: int, first: int, nodes: bytes) -> int:
    """Keep the roots of chunks ``first...`` (32 bytes each) at their places in the file.

    Returns how many chunks the file now holds from the first on. Nothing is written past
    a gap (a file shorter than ``first`` chunks, or a new or foreign one when ``first`` is
    not 0): the caller writes again from what the file holds.
    """
    fd = os.open(data_dir / NODES_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        header = _header(chunk_bits)
        if os.pread(fd, HASH_SIZE, 0) != header:
            os.ftruncate(fd, 0)
            os.pwrite(fd, header, 0)
        held = (os.fstat(fd).st_size - HASH_SIZE) // HASH_SIZE
        if first > held:
            return held
        os.pwrite(fd, nodes, HASH_SIZE * (1 + first))
        return max(held, first + len(nodes) // HASH_SIZE)
    finally:
        os.close(fd)


def reset_chunk_nodes(data_dir: Path) -> None:
    """Forget the kept nodes (they did not match the signed log)."""
    (data_dir / NODES_FILE).unlink(missing_ok=True)
