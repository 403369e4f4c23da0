"""Relationship semantics: inversion, composition and R4 equivalence words."""

# STYLE.md: tests assert `expected == actual`, expected first

from __future__ import annotations

import pytest

from registry import R4_EQUIVALENCE, Relationship, compose

EQ = Relationship.EQUIVALENT
NW = Relationship.NARROWER
BR = Relationship.BROADER
RT = Relationship.RELATED
NR = Relationship.NOT_RELATED

# Every pair, first step down, second step across; None means the chain stops.
COMPOSITION = {
    (EQ, EQ): EQ, (EQ, NW): NW, (EQ, BR): BR, (EQ, RT): RT, (EQ, NR): None,
    (NW, EQ): NW, (NW, NW): NW, (NW, BR): RT, (NW, RT): RT, (NW, NR): None,
    (BR, EQ): BR, (BR, NW): RT, (BR, BR): BR, (BR, RT): RT, (BR, NR): None,
    (RT, EQ): RT, (RT, NW): RT, (RT, BR): RT, (RT, RT): RT, (RT, NR): None,
    (NR, EQ): None, (NR, NW): None, (NR, BR): None, (NR, RT): None, (NR, NR): None,
}


class TestCompose:
    """compose() follows the table of DOMAIN.md section 4."""

    def test_table_covers_every_pair(self) -> None:
        """The expected table has all 25 pairs of the five relationships."""
        assert 25 == len(COMPOSITION)

    @pytest.mark.parametrize(("pair", "expected"), COMPOSITION.items())
    def test_pair(self, pair: tuple[Relationship, Relationship],
                  expected: Relationship | None) -> None:
        """Each pair composes as the table says."""
        assert expected == compose(*pair)


class TestInverse:
    """Reading a map backwards swaps narrower and broader only."""

    @pytest.mark.parametrize(("forward", "backward"), [
        (EQ, EQ), (NW, BR), (BR, NW), (RT, RT), (NR, NR)])
    def test_inverse(self, forward: Relationship, backward: Relationship) -> None:
        """The inverse of each relationship is as FHIR's source/target wording implies."""
        assert backward == forward.inverse()


class TestR4Equivalence:
    """R4 words describe the target; R5 words describe the source."""

    def test_wider_means_source_is_narrower(self) -> None:
        """R4 'wider' (the target is wider) reads as R5 source-is-narrower-than-target."""
        assert NW == R4_EQUIVALENCE["wider"]

    @pytest.mark.parametrize(("word", "expected"), [
        ("relatedto", RT), ("inexact", RT), ("equivalent", EQ), ("equal", EQ),
        ("wider", NW), ("subsumes", NW), ("narrower", BR), ("specializes", BR),
        ("unmatched", NR), ("disjoint", NR)])
    def test_every_word(self, word: str, expected: Relationship) -> None:
        """Every R4 equivalence word converts as HL7's R4B-to-R5 transform does."""
        assert expected == R4_EQUIVALENCE[word]
