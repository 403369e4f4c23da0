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

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from gateway.infra.keyfiles import keys_dir, load_or_create_secret, load_versioned_secrets

__all__ = ["HmacKeyring", "keys_dir", "load_or_create_secret", "load_signing_key"]

SIGNING_KEY_FILE = "audit-ed25519.key"


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
        return cls(load_versioned_secrets(data_dir, "audit-hmac"))
