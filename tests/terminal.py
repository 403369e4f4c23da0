"""A pseudo-terminal for tests of what the CLI draws on a terminal (progress bars)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import termios
import threading
import time

__all__ = ["Terminal"]


class Terminal:
    """A pseudo-terminal of 100 x 24 to stand in for standard error: a thread reads what
    is drawn on it, with the time each piece came."""

    def __init__(self) -> None:
        self._master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        self.stream = os.fdopen(slave, "w", encoding="utf-8")
        self._pieces: list[tuple[float, bytes]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not data:
                break
            self._pieces.append((time.monotonic(), data))
        os.close(self._master)

    def close(self) -> None:
        """Close the terminal and wait for everything drawn on it."""
        self.stream.close()
        self._reader.join(10)

    def frames(self) -> list[tuple[float, str]]:
        """Each line or redrawn line (what a carriage return or a newline ends), and the
        time its last byte came."""
        frames: list[tuple[float, str]] = []
        pending, pending_at = b"", 0.0
        for at, data in self._pieces:
            carried, text, start = len(pending), pending + data, 0
            for end in re.finditer(rb"[\r\n]", text):
                if end.start() > start:
                    frames.append((pending_at if end.start() <= carried else at,
                                   text[start:end.start()].decode()))
                start = end.end()
            pending, pending_at = text[start:], at
        if pending:
            frames.append((pending_at, pending.decode()))
        return frames
