"""A status list as in the IETF Token Status List draft (draft-ietf-oauth-status-list).

Entry ``idx`` occupies ``bits`` bits starting at the least significant bit
of byte ``idx * bits // 8``; the byte array is zlib-compressed (RFC 1950)
and base64url-encoded into ``status_list.lst``.
"""

from __future__ import annotations

import zlib
from enum import IntEnum

__all__ = ["LicenceState", "StatusList"]


class LicenceState(IntEnum):
    """Status values of the draft's registry used by the profile."""

    VALID = 0
    INVALID = 1
    SUSPENDED = 2


class StatusList:
    """The statuses of one region's licences, by index."""

    def __init__(self, *, size: int = 16384) -> None:
        """Start with every entry valid; ``size`` entries are always encoded (herd privacy)."""
        self.size = size
        """Entries always encoded, however few are allocated; more are as they are."""
        self._values: dict[int, LicenceState] = {}
        self._next = 0

    def allocate(self) -> int:
        """Return the next unused index."""
        idx = self._next
        self._next += 1
        return idx

    def set(self, idx: int, state: LicenceState) -> None:
        """Record ``state`` for entry ``idx``."""
        if idx < 0:
            raise ValueError("a status index is not negative")
        if state is LicenceState.VALID:
            self._values.pop(idx, None)
        else:
            self._values[idx] = state

    def get(self, idx: int) -> LicenceState:
        """Return the state of entry ``idx``."""
        return self._values.get(idx, LicenceState.VALID)

    def encode(self, bits: int) -> bytes:
        """Return the uncompressed byte array with ``bits`` bits per entry."""
        if bits not in (1, 2, 4, 8):
            raise ValueError("bits is one of 1, 2, 4, 8")
        highest = max([self._next, self.size, *(i + 1 for i in self._values)])
        data = bytearray((highest * bits + 7) // 8)
        for idx, state in self._values.items():
            if state >= 1 << bits:
                raise ValueError(f"entry {idx} is {state.name}, which {bits} bit(s) cannot hold")
            offset = idx * bits
            data[offset // 8] |= int(state) << (offset % 8)
        return bytes(data)

    def compressed(self, bits: int) -> bytes:
        """Return the zlib-compressed byte array."""
        return zlib.compress(self.encode(bits), 9)
