"""Fixtures for the pure trust core: a seeded mock federation and a fixed clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mocks import Federation, MockRegion
from trust import TrustList

NOW = datetime(2026, 11, 26, 6, 0, 0, tzinfo=UTC)
"""The verification time of these tests (14:00 in Huzhou)."""
T = int(NOW.timestamp())

Mutator = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="module")
def federation() -> Federation:
    """Shanghai and Bijie, seeded so a failure reproduces."""
    return Federation.standard(seed=36, codes=["310000", "520500"])


@pytest.fixture
def sh(federation: Federation) -> MockRegion:
    """Shanghai, the issuing partner of most tests."""
    return federation["310000"]


@pytest.fixture
def trust_list(federation: Federation) -> Callable[..., TrustList]:
    """Build the federation's trust list, optionally edited first."""

    def build(mutate: Mutator | None = None, *, next_update: datetime | None = None,
              version: int = 12) -> TrustList:
        doc = federation.trust_list(version=version, issued_at=NOW - timedelta(days=1),
                                    next_update=next_update or NOW + timedelta(days=6))
        if mutate is not None:
            mutate(doc)
        return TrustList.from_json(doc)

    return build


def partner(doc: dict[str, Any], region: str) -> dict[str, Any]:
    """The partner entry of ``region`` in a trust-list document."""
    found: dict[str, Any] = next(p for p in doc["partners"] if p["region_code"] == region)
    return found


def anchor(doc: dict[str, Any], kid: str) -> dict[str, Any]:
    """The anchor entry with ``kid`` in a trust-list document."""
    for entry in doc["partners"]:
        for item in entry["anchors"]:
            if item["kid"] == kid:
                found: dict[str, Any] = item
                return found
    raise KeyError(kid)
