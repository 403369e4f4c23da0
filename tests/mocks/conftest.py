"""Fixtures for the mocks tests: fresh regions, and a seeded standard federation."""

from __future__ import annotations

import pytest

from mocks import Federation, MockRegion


@pytest.fixture
def region() -> MockRegion:
    """A fresh, unseeded Shanghai region whose status list no other test touches."""
    return MockRegion("310000", "上海市", ("yrd", "g60"), id_prefixes=("310101", "310115"))


@pytest.fixture
def federation() -> Federation:
    """The standard federation, seeded so failures reproduce."""
    return Federation.standard(seed=2026)
