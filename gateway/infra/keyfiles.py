"""Secret key files in a data folder: made once, 0600, never overwritten.

Blocking file I/O: call these at start-up, from the CLI, or in an executor.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

__all__ = ["keys_dir", "load_or_create_secret", "load_versioned_secrets"]


def keys_dir(data_dir: Path) -> Path:
    """Where a data folder keeps its keys."""
    return data_dir / "keys"


def load_or_create_secret(path: Path, size: int = 32) -> bytes:
    """Read a secret key file, making a random one (0600) if there is none.

    Safe against two processes racing to make it: the loser reads the winner's key.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(size))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process won the race; we then use its key
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        data = path.read_bytes()
    if len(data) != size:
        raise ValueError(f"{path} does not hold a {size}-byte key")
    return data


def load_versioned_secrets(data_dir: Path, stem: str) -> dict[int, bytes]:
    """Every ``<stem>-v<N>.key`` under ``keys/``, making ``v1`` when there is none."""
    pattern = re.compile(rf"\A{re.escape(stem)}-v([1-9][0-9]*)\.key\Z")
    folder = keys_dir(data_dir)
    keys: dict[int, bytes] = {}
    if folder.is_dir():
        for path in folder.iterdir():
            match = pattern.match(path.name)
            if match:
                keys[int(match.group(1))] = load_or_create_secret(path)
    if not keys:
        keys[1] = load_or_create_secret(folder / f"{stem}-v1.key")
    return keys
