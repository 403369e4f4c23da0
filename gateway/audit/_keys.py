"""The audit log's keys, kept in ``data_dir/keys`` and never in the log.

* ``audit-ed25519.key``: the 32-byte Ed25519 seed that signs checkpoints.
* ``audit-hmac-v<N>.key``: 32-byte HMAC-SHA256 keys that pseudonymise personal
  data; the highest version present is used for new records, older ones stay
  so that old pseudonyms can still be matched.

Files are made on first use with mode 0600. Creation is atomic across
processes: the key is written to a private temporary file and hard-linked into
place, so two processes starting together end up with the same key.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

__all__ = ["HmacKeyring", "keys_dir", "load_or_create_secret", "load_signing_key"]

SIGNING_KEY_FILE = "audit-ed25519.key"
_HMAC_FILE = re.compile(r"\Aaudit-hmac-v([1-9][0-9]*)\.key\Z")


def keys_dir(data_dir: Path) -> Path:
    """Where a data folder keeps its keys."""
    return data_dir / "keys"


def load_or_create_secret(path: Path, size: int = 32) -> bytes:
    """Read a secret key file, making a random one (0600) if there is none."""
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


def load_signing_key(data_dir: Path) -> Ed25519PrivateKey:
    """The checkpoint signing key of a data folder, made on first use."""
    seed = load_or_create_secret(keys_dir(data_dir) / SIGNING_KEY_FILE)
    return Ed25519PrivateKey.from_private_bytes(seed)


def signing_key_bytes(key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte seed (for tests and key export)."""
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


class HmacKeyring:
    """Versioned HMAC keys; the newest signs new pseudonyms."""

    def __init__(self, keys: dict[int, bytes]) -> None:
        if not keys:
            raise ValueError("an HMAC keyring needs at least one key")
        self._keys = dict(keys)
        self.current = max(keys)

    def key(self, version: int) -> bytes:
        """The key of a version."""
        return self._keys[version]

    @classmethod
    def load(cls, data_dir: Path) -> HmacKeyring:
        """Every ``audit-hmac-v<N>.key`` of the data folder; makes v1 if there is none."""
        folder = keys_dir(data_dir)
        keys: dict[int, bytes] = {}
        if folder.is_dir():
            for path in folder.iterdir():
                match = _HMAC_FILE.match(path.name)
                if match:
                    keys[int(match.group(1))] = load_or_create_secret(path)
        if not keys:
            keys[1] = load_or_create_secret(folder / "audit-hmac-v1.key")
        return cls(keys)
