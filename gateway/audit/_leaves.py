"""The stored leaf hashes again, in a flat file, so a proof reads 512 bytes, not 16 records.

``data_dir/audit-tree.leaves`` holds a 32-byte header (a magic string and a
version) and then the leaf hash of entry ``i`` at offset ``32 * (1 + i)``: 32
MB per million entries. The 16 leaf hashes of a chunk (what a proof goes down
into) are one ``pread`` of 512 bytes, where the store would read the chunk's
16 rows, record bodies and all (about 20 KB, from a file of gigabytes).

Like ``audit-tree.nodes`` it is a cache of what the store holds, never a
source of truth. The service checks every chunk it reads from the file against
that chunk's node in its tree (which it checked against the latest signed
checkpoint) before it uses it; a chunk the file does not hold yet (a short
file: the tail not yet written, or lost in a crash), or holds torn or changed
(another process writing it, a damaged disk, tampering), is read from the
store instead, and written again. So the file needs no fsync and no commit of
its own, nothing in it can make a wrong proof, and a reader in another process
may read it while a writer appends.

Writes are contiguous: a write that would start past the file's end is refused
and the caller fills the gap from the store first. Every writer (each worker of
``serve --workers N`` keeps its tree, and so the file, from the same stored leaf
hashes) takes an exclusive ``flock`` of the file for the time of its write, so
a header check, a truncation and an append never interleave; writers in
different processes write the same bytes to the same places. Readers take no lock.
Filling the file from the store (a new, emptied or cut file) is done by one process at a
time (``try_fill_lock``: an exclusive ``flock`` of ``audit-tree.leaves-fill``); the others
wait for it rather than read the whole table again each.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from trust.merkle import HASH_SIZE

__all__ = ["LEAVES_FILE", "LeafFile"]

LEAVES_FILE = "audit-tree.leaves"
_HEADER = b"ecert-gateway audit leaf hashes\x01"
assert len(_HEADER) == HASH_SIZE


class LeafFile:
    """``audit-tree.leaves`` of one data folder, held open (one descriptor, used from any
    thread: reads and writes are ``pread``/``pwrite`` at fixed offsets)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LEAVES_FILE
        self._fd = -1
        self._ino = -1
        self._fill_fd = -1

    def _descriptor(self) -> int:
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._ino = os.fstat(self._fd).st_ino
        return self._fd

    def _reopen_if_replaced(self) -> int:
        """The descriptor of the file now at the path (it may have been deleted or replaced
        since it was opened: writes must go where the next start reads)."""
        fd = self._descriptor()
        try:
            if os.stat(self.path).st_ino == self._ino:
                return fd
        except FileNotFoundError:
            pass
        self.close()
        return self._descriptor()

    def close(self) -> None:
        """Release the descriptors (and the fill lock)."""
        self.release_fill_lock()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def try_fill_lock(self) -> bool:
        """Take the fill lock unless another process (or file object) holds it."""
        if self._fill_fd >= 0:
            return True
        fd = os.open(self.path.with_name(self.path.name + "-fill"), os.O_RDWR | os.O_CREAT,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fill_fd = fd
        return True

    def release_fill_lock(self) -> None:
        """Let another process fill (closing the descriptor drops the lock)."""
        if self._fill_fd >= 0:
            os.close(self._fill_fd)
            self._fill_fd = -1

    def held(self) -> int:
        """How many leaf hashes the file holds (0 without a valid header)."""
        fd = self._reopen_if_replaced()
        if os.pread(fd, HASH_SIZE, 0) != _HEADER:
            return 0
        return max(0, os.fstat(fd).st_size // HASH_SIZE - 1)

    def prefetch(self, start: int, end: int) -> None:
        """Ask the kernel to start reading the leaf hashes of ``[start, end)`` now, without
        waiting (``POSIX_FADV_WILLNEED``), so that a ``read`` of them after other reads finds
        them arriving or arrived. A hint only: where it is refused, nothing happens."""
        count = end - start
        with contextlib.suppress(OSError, AttributeError):  # no posix_fadvise here
            os.posix_fadvise(self._descriptor(), HASH_SIZE * (1 + start), count * HASH_SIZE,
                             os.POSIX_FADV_WILLNEED)

    def read(self, start: int, end: int) -> list[bytes] | None:
        """Leaf hashes of entries ``[start, end)`` as the file holds them, unchecked; None
        when it holds fewer. One ``pread``."""
        count = end - start
        data = os.pread(self._descriptor(), count * HASH_SIZE, HASH_SIZE * (1 + start))
        if len(data) != count * HASH_SIZE:
            return None
        return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]

    def write(self, first: int, hashes: bytes) -> int:
        """Keep the leaf hashes of entries ``first...`` (32 bytes each) at their places.

        Returns how many the file holds from entry 0 on. Nothing is written past a gap
        (a file holding fewer than ``first``): the caller writes from what it holds.
        """
        if len(hashes) % HASH_SIZE:
            raise ValueError("leaf hashes are 32 bytes each")
        fd = self._reopen_if_replaced()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.pread(fd, HASH_SIZE, 0) != _HEADER:
                os.ftruncate(fd, 0)
                os.pwrite(fd, _HEADER, 0)
            held = os.fstat(fd).st_size // HASH_SIZE - 1
            if first > held:
                return held
            if hashes:
                os.pwrite(fd, hashes, HASH_SIZE * (1 + first))
            return max(held, first + len(hashes) // HASH_SIZE)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def reset(self) -> None:
        """Empty the file (it did not match the signed log); it is written again from 0."""
        fd = self._reopen_if_replaced()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, _HEADER, 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
