"""What a service reports about itself on ``/metrics``: families of labelled samples.

Each service has a ``metrics()`` method returning its families, read when ``/metrics``
is scraped (``gateway.web.app``); nothing is copied per request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["MetricFamily", "Sample"]

Sample = tuple[Mapping[str, str], float]
"""One value and its labels."""


@dataclass(frozen=True, slots=True)
class MetricFamily:
    """One metric: its name (without ``_total``), kind, help text and samples."""

    name: str
    kind: Literal["counter", "gauge"]
    help: str
    samples: Sequence[Sample]
