"""Progress bars of the long CLI jobs (tqdm), drawn on standard error for a person watching.

A bar is drawn only when standard error is a terminal and the command was not given
``--quiet``: piped or logged output stays free of carriage returns.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from tqdm import tqdm

__all__ = ["progress_bar", "wanted"]


def wanted(quiet: bool) -> bool:
    """Whether to draw progress: on a terminal, unless ``--quiet``."""
    return not quiet and sys.stderr.isatty()


def _shape() -> tuple[int | None, int | None]:
    """``(columns, rows)`` for tqdm: None, None (tqdm measures the terminal), or 80 x 24
    for a terminal that reports no size (a pseudo-terminal nobody sized), where tqdm
    would draw nothing at all."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError):
        return None, None
    return (None, None) if size.columns > 0 and size.lines > 0 else (80, 24)


def progress_bar(*, total: int, desc: str, unit: str, enabled: bool,
                 unit_scale: bool = False, bar_format: str | None = None) -> tqdm[NoReturn]:
    """A bar on standard error, drawn at once (so from the job's first moment) and at most
    ten times a second after; a disabled one costs nothing and draws nothing."""
    columns, rows = _shape() if enabled else (None, None)
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale,
                bar_format=bar_format, file=sys.stderr, disable=not enabled,
                ncols=columns, nrows=rows)
