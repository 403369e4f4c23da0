"""Command-line subcommands, one module per group; each exposes ``register(subparsers)``."""

from __future__ import annotations

__all__ = ["os_error_text"]


def os_error_text(exc: OSError) -> str:
    """An OS error as a user reads it: ``FILE: reason``, without ``[Errno N]``."""
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return reason
    if exc.filename2 is not None:
        return f"{exc.filename} -> {exc.filename2}: {reason}"
    return f"{exc.filename}: {reason}"
