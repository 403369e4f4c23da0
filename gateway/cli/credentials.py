"""How a CLI write proves which operator runs it: that operator's own token.

A command that changes the trust list takes the credential ``/v1/admin/``
takes: the token ``operators add`` printed. It is read from ``--token-file
FILE`` or else from the ``ECERT_OPERATOR_TOKEN`` environment variable, never
from an argument (``ps`` and the shell history would show it), and checked by
``authorize_operator`` against the data folder's identity store, as the admin
API checks a bearer token. The acting operator is the token's owner, so two
approvals take two operators' tokens; ``--as NAME``, kept for old scripts,
only has to agree with it.
"""

from __future__ import annotations

import argparse
from collections.abc import Collection, Mapping
from pathlib import Path

from gateway.credentials.store import (
    CredentialError,
    CredentialRefusal,
    Identity,
    Role,
    authorize_operator,
    lookup_token,
)

__all__ = ["TOKEN_ENV", "acting_operator", "add_credential_arguments", "read_token"]

TOKEN_ENV = "ECERT_OPERATOR_TOKEN"  # noqa: S105 - a variable's name, not a secret
"""The environment variable holding the acting operator's token."""

_MISSING = f"a change needs the operator's own token: --token-file FILE or {TOKEN_ENV}"


def add_credential_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--token-file`` and ``--as`` to a command that writes."""
    parser.add_argument(
        "--token-file", type=Path,
        help=f"file holding the acting operator's token, alone (default: ${TOKEN_ENV})")
    parser.add_argument(
        "--as", dest="as_name",
        help="optional: the operator the token must belong to (the token names the actor)")


def read_token(token_file: Path | None, environ: Mapping[str, str]) -> str | None:
    """The presented token: ``token_file``'s content, else ``environ[TOKEN_ENV]``, else None.

    The file must hold the token alone (surrounding white space is ignored).
    Raises ``CredentialError`` (``MISSING``) when the file cannot be read or
    holds something else.
    """
    if token_file is None:
        return environ.get(TOKEN_ENV, "").strip() or None
    try:
        text = token_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise CredentialError(CredentialRefusal.MISSING,
                              f"cannot read the token file {str(token_file)!r}: {reason}") from exc
    token = text.strip()
    if not token or any(c.isspace() for c in token):
        raise CredentialError(CredentialRefusal.MISSING,
                              f"the token file {str(token_file)!r} must hold the token alone")
    return token


def acting_operator(data_dir: Path, token: str | None, roles: Collection[Role], *,
                    claimed: str | None = None, postgres_dsn: str | None = None) -> Identity:
    """The operator ``token`` belongs to, when enabled and holding one of ``roles``.

    ``claimed`` (``--as``), when given, must be that operator's name. The
    identities looked in are the data folder's, or PostgreSQL's when
    ``postgres_dsn`` is set, as the gateway's. Raises ``CredentialError``:
    ``MISSING`` (no token), ``UNKNOWN`` (not an enabled operator's token),
    ``ROLE``, ``MISMATCH``.
    """
    if token is None:
        raise CredentialError(CredentialRefusal.MISSING, _MISSING, roles=frozenset(roles))
    found = lookup_token(data_dir, token, postgres_dsn=postgres_dsn)
    try:
        identity = authorize_operator(found, roles)
    except CredentialError as exc:
        if exc.refusal is CredentialRefusal.UNKNOWN:
            raise CredentialError(
                CredentialRefusal.UNKNOWN,
                "the token is not an enabled operator's token in this data folder",
                roles=exc.roles) from exc
        raise
    if claimed is not None and claimed != identity.name:
        raise CredentialError(
            CredentialRefusal.MISMATCH,
            f"--as {claimed} does not match the token, which is {identity.name}'s",
            identity=identity, roles=frozenset(roles))
    return identity
