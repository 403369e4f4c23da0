"""The gateway's data folder: made only on purpose, refused when it is not one.

Every store and key of an instance lives in one folder. Only ``ecert-gateway
init`` and the first ``serve`` make one; every other command refuses a path
that is not a gateway data folder, so a mistyped ``--data-dir`` fails loudly
instead of quietly starting an empty instance.

A folder is a data folder when it holds the marker file, or (folders made
before the marker existed) one of the stores a gateway writes.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["MARKER", "DataFolderError", "create_data_folder", "is_data_folder",
           "require_data_folder"]

MARKER = "ecert-gateway.json"
"""Written into a data folder when it is made."""
_STORES = ("identity.db", "trustlist.db", "audit.db", "licences.db", "audit-backend")
"""Files a gateway writes into its folder (``audit-backend``: the audit log is in PostgreSQL)."""
FORMAT = 1


class DataFolderError(Exception):
    """The path given as a data folder is not one (or cannot be made one)."""


def is_data_folder(path: Path) -> bool:
    """Whether ``path`` is a gateway data folder."""
    return path.is_dir() and any((path / name).exists() for name in (MARKER, *_STORES))


def require_data_folder(path: Path) -> None:
    """Raise DataFolderError unless ``path`` is a gateway data folder."""
    if is_data_folder(path):
        return
    if not path.exists():
        raise DataFolderError(f"{path} does not exist; make a new instance with "
                              f"`ecert-gateway init --data-dir {path}` (or check the path)")
    raise DataFolderError(f"{path} is not a gateway data folder (no {MARKER}); make a new "
                          f"instance with `ecert-gateway init --data-dir {path}`")


def create_data_folder(path: Path) -> bool:
    """Make ``path`` a data folder (readable by its owner only); False if it already was one."""
    if is_data_folder(path):
        if not (path / MARKER).exists():
            _write_marker(path)
        return False
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise DataFolderError(_cannot_make(path, exc)) from exc
    _write_marker(path)
    return True


def _cannot_make(path: Path, exc: OSError) -> str:
    """Why ``path`` cannot be made a folder, naming what is in the way and what to do."""
    for where in (path, *path.parents):
        if where.is_symlink() and not where.exists():
            return (f"{where} is a link to {os.readlink(where)}, which does not exist; "
                    "make that folder first, or give another --data-dir")
        if where.exists() and not where.is_dir():
            what = "exists" if where == path else f"(in the path of {path}) exists"
            return (f"{where} {what} and is a file, not a folder; "
                    "give another --data-dir, or move the file away")
    return f"cannot make the data folder {path}: {exc.strerror or exc}"


def _write_marker(path: Path) -> None:
    partial = path / f".{MARKER}.partial"
    partial.write_text(json.dumps({"format": FORMAT,
                                   "created_at": datetime.now(UTC).isoformat(timespec="seconds")})
                       + "\n", encoding="utf-8")
    os.replace(partial, path / MARKER)
