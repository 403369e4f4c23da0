"""Registry.translate: direct maps, chains, validity, conditions and reverse use."""

# STYLE.md: tests assert `expected == actual`, expected first

from __future__ import annotations

from datetime import date

import pytest

from registry import (
    NATIONAL,
    MapStatus,
    MatterCode,
    Period,
    RegionCode,
    Registry,
    Relationship,
    UnknownCodeError,
    UnknownRegionError,
    compose,
)
from tests.registry.factories import catalogue, concept_map, day, to

EQ = Relationship.EQUIVALENT
NW = Relationship.NARROWER
BR = Relationship.BROADER
RT = Relationship.RELATED
NR = Relationship.NOT_RELATED
A, B = RegionCode("310000"), RegionCode("330500")
AT = date(2025, 1, 1)

CAT_A = catalogue("310000", ["a1", "a2", "a3"])
CAT_N = catalogue("national", ["n1", "n2", "n3"])
CAT_B = catalogue("330500", ["b1", "b2", "b3", "b4"])


def _pairs(registry: Registry, src: RegionCode, code: str, tgt: RegionCode, *,
           at: date = AT, conditions: dict[str, str] | None = None
           ) -> list[tuple[str, Relationship]]:
    answer = registry.translate(src, MatterCode(code), tgt, at=at, conditions=conditions)
    return [(m.code, m.relationship) for m in answer.matches]


def _chain(first: Relationship, second: Relationship) -> Registry:
    up = concept_map("a-n", CAT_A, CAT_N, [("a1", to("n1", first))])
    down = concept_map("n-b", CAT_N, CAT_B, [("n1", to("b1", second))])
    return Registry([CAT_A, CAT_N, CAT_B], [up, down])


class TestChain:
    """Without a direct map the code is chained through the national catalogue."""

    @pytest.mark.parametrize("first", list(Relationship))
    @pytest.mark.parametrize("second", list(Relationship))
    def test_composition_of_every_pair(self, first: Relationship,
                                       second: Relationship) -> None:
        """A chain a1 -> n1 -> b1 carries compose(first, second), or nothing when it stops."""
        expected = [] if compose(first, second) is None else [("b1", compose(first, second))]
        assert expected == _pairs(_chain(first, second), A, "a1", B)

    def test_chain_path_and_maps(self) -> None:
        """A chained match lists the three hops and both maps."""
        match = _chain(EQ, EQ).translate(A, MatterCode("a1"), B, at=AT).matches[0]
        expected = (("310000:a1", "national:n1", "330500:b1"),
                    ("urn:test:map:a-n|1", "urn:test:map:n-b|1"))
        assert expected == (match.path, match.maps)

    def test_chain_stops_on_not_related_to(self) -> None:
        """A not-related-to first step stops the chain and says so."""
        answer = _chain(NR, EQ).translate(A, MatterCode("a1"), B, at=AT)
        assert (False, True) == (answer.result, "stops at not-related-to" in answer.message)

    @pytest.mark.parametrize("cache_size", [0, 100])
    def test_chain_stop_is_said_on_the_days_the_step_applies(self, cache_size: int) -> None:
        """The message names the not-related-to stop while that step is valid and not
        after it, whichever day is asked first, with the answer memo on or off; a map
        that runs the other way is named on both days."""
        stop = to("n1", NR, period=Period(day("2025-01-01"), day("2025-06-30")))
        up = concept_map("a-n", CAT_A, CAT_N, [("a1", stop)])
        down = concept_map("n-b", CAT_N, CAT_B, [("n1", to("b1", EQ))])
        back = concept_map("b-a", CAT_B, CAT_A, [("b2", to("a2", EQ))])
        registry = Registry([CAT_A, CAT_N, CAT_B], [up, down, back], cache_size=cache_size)
        other_way = ("; map(s) urn:test:map:b-a|1 run the other way and are not reviewed "
                     "for reverse use")
        expected = [
            "no map leads from 310000:a1 to 330500 on 2025-07-01" + other_way,
            "no map leads from 310000:a1 to 330500 on 2025-03-01; the chain through the "
            "national catalogue stops at not-related-to" + other_way,
            "no map leads from 310000:a1 to 330500 on 2025-07-01" + other_way,
        ]
        actual = [registry.translate(A, MatterCode("a1"), B, at=day(at)).message
                  for at in ("2025-07-01", "2025-03-01", "2025-07-01")]
        assert expected == actual

    def test_direct_map_is_preferred(self) -> None:
        """A direct map's answer is used even when a chain exists."""
        up = concept_map("a-n", CAT_A, CAT_N, [("a1", to("n1", EQ))])
        down = concept_map("n-b", CAT_N, CAT_B, [("n1", to("b1", EQ))])
        direct = concept_map("a-b", CAT_A, CAT_B, [("a1", to("b2", RT))])
        registry = Registry([CAT_A, CAT_N, CAT_B], [up, down, direct])
        assert [("b2", RT)] == _pairs(registry, A, "a1", B)


class TestValidity:
    """Validity periods are inclusive and checked one day either side."""

    @pytest.mark.parametrize(("at", "expected"), [
        ("2024-12-31", []), ("2025-01-01", [("b1", EQ)]),
        ("2025-06-30", [("b1", EQ)]), ("2025-07-01", [])])
    def test_target_period(self, at: str, expected: list[tuple[str, Relationship]]) -> None:
        """A target valid 2025-01-01..2025-06-30 applies on both ends and not beyond."""
        period = Period(day("2025-01-01"), day("2025-06-30"))
        cmap = concept_map("a-b", CAT_A, CAT_B, [("a1", to("b1", EQ, period=period))])
        assert expected == _pairs(Registry([CAT_A, CAT_B], [cmap]), A, "a1", B, at=day(at))

    @pytest.mark.parametrize(("at", "expected"), [
        ("2024-12-31", []), ("2025-01-01", [("b1", EQ)])])
    def test_map_period(self, at: str, expected: list[tuple[str, Relationship]]) -> None:
        """A map effective from 2025-01-01 is not used the day before."""
        cmap = concept_map("a-b", CAT_A, CAT_B, [("a1", to("b1", EQ))],
                           period=Period(day("2025-01-01"), None))
        assert expected == _pairs(Registry([CAT_A, CAT_B], [cmap]), A, "a1", B, at=day(at))

    @pytest.mark.parametrize(("at", "expected"), [
        ("2025-03-31", [("b1", EQ)]), ("2025-04-01", [])])
    def test_target_catalogue_period(self, at: str,
                                     expected: list[tuple[str, Relationship]]) -> None:
        """A match into a catalogue version that has ended is not returned."""
        old_b = catalogue("330500", ["b1"], period=Period(None, day("2025-03-31")))
        cmap = concept_map("a-b", CAT_A, old_b, [("a1", to("b1", EQ))])
        assert expected == _pairs(Registry([CAT_A, old_b], [cmap]), A, "a1", B, at=day(at))

    def test_expired_direct_map_falls_back_to_chain(self) -> None:
        """When the direct target has expired, the chain through national answers."""
        ended = Period(None, day("2024-12-31"))
        direct = concept_map("a-b", CAT_A, CAT_B, [("a1", to("b2", EQ, period=ended))])
        up = concept_map("a-n", CAT_A, CAT_N, [("a1", to("n1", EQ))])
        down = concept_map("n-b", CAT_N, CAT_B, [("n1", to("b1", NW))])
        registry = Registry([CAT_A, CAT_N, CAT_B], [direct, up, down])
        assert [("b1", NW)] == _pairs(registry, A, "a1", B)


class TestConditions:
    """One-to-many targets are chosen by dependsOn conditions."""

    @pytest.fixture
    def registry(self) -> Registry:
        """a1 maps to b1 for enterprises and to b2 for persons."""
        cmap = concept_map("a-b", CAT_A, CAT_B, [
            ("a1", to("b1", BR, depends_on={"applicant_type": "enterprise"})),
            ("a1", to("b2", BR, depends_on={"applicant_type": "person"})),
        ])
        return Registry([CAT_A, CAT_B], [cmap])

    @pytest.mark.parametrize(("applicant", "expected"), [
        ("enterprise", [("b1", BR)]), ("person", [("b2", BR)]), ("other", [])])
    def test_condition_selects_target(self, registry: Registry, applicant: str,
                                      expected: list[tuple[str, Relationship]]) -> None:
        """The stated applicant type selects its target only."""
        assert expected == _pairs(registry, A, "a1", B,
                                  conditions={"applicant_type": applicant})

    def test_without_conditions_all_targets_return_with_their_conditions(
            self, registry: Registry) -> None:
        """Unstated conditions return every target, each naming what it depends on."""
        matches = registry.translate(A, MatterCode("a1"), B, at=AT).matches
        expected = [("b1", (("applicant_type", "enterprise"),)),
                    ("b2", (("applicant_type", "person"),))]
        assert expected == [(m.code, m.depends_on) for m in matches]

    def test_conditions_apply_across_a_chain(self) -> None:
        """Contradictory conditions on the two steps of a chain drop that path."""
        up = concept_map("a-n", CAT_A, CAT_N, [
            ("a1", to("n1", EQ, depends_on={"applicant_type": "person"}))])
        down = concept_map("n-b", CAT_N, CAT_B, [
            ("n1", to("b1", EQ, depends_on={"applicant_type": "enterprise"})),
            ("n1", to("b2", EQ, depends_on={"applicant_type": "person"}))])
        registry = Registry([CAT_A, CAT_N, CAT_B], [up, down])
        assert [("b2", EQ)] == _pairs(registry, A, "a1", B)


class TestReverse:
    """A map is read backwards only when reviewed both ways."""

    def _registry(self, *, reviewed: bool) -> Registry:
        cmap = concept_map("b-a", CAT_B, CAT_A, [("b1", to("a1", NW))], reviewed=reviewed)
        return Registry([CAT_A, CAT_B], [cmap])

    def test_reverse_refused_unless_reviewed(self) -> None:
        """An unreviewed B->A map does not translate A->B, and the message names it."""
        answer = self._registry(reviewed=False).translate(A, MatterCode("a1"), B, at=AT)
        expected = (False, True)
        assert expected == (answer.result, "urn:test:map:b-a|1" in answer.message)

    def test_reviewed_map_reverses_relationship(self) -> None:
        """Read backwards, b1 narrower than a1 becomes a1 broader than b1."""
        assert [("b1", BR)] == _pairs(self._registry(reviewed=True), A, "a1", B)

    def test_reverse_chain_needs_review_of_the_national_leg(self) -> None:
        """A -> national -> B uses B's map to national backwards only when it is reviewed."""
        up = concept_map("a-n", CAT_A, CAT_N, [("a1", to("n1", EQ))])
        b_up = concept_map("b-n", CAT_B, CAT_N, [("b1", to("n1", EQ))])
        b_up_reviewed = concept_map("b-n", CAT_B, CAT_N, [("b1", to("n1", EQ))],
                                    reviewed=True)
        expected: tuple[list[tuple[str, Relationship]], ...] = ([], [("b1", EQ)])
        actual = (_pairs(Registry([CAT_A, CAT_N, CAT_B], [up, b_up]), A, "a1", B),
                  _pairs(Registry([CAT_A, CAT_N, CAT_B], [up, b_up_reviewed]), A, "a1", B))
        assert expected == actual


class TestAnswers:
    """Edge cases of translate and lookup."""

    def test_unknown_code_is_a_false_result(self) -> None:
        """A code the source catalogue lacks gives result false with a message."""
        answer = Registry([CAT_A, CAT_B], []).translate(A, MatterCode("zz"), B, at=AT)
        assert (False, True) == (answer.result, "not in the matter catalogue" in answer.message)

    def test_unknown_region_raises(self) -> None:
        """A region without a catalogue raises UnknownRegionError."""
        with pytest.raises(UnknownRegionError):
            Registry([CAT_A], []).translate(A, MatterCode("a1"), B, at=AT)

    def test_retired_maps_are_not_used(self) -> None:
        """A retired map answers nothing."""
        cmap = concept_map("a-b", CAT_A, CAT_B, [("a1", to("b1", EQ))],
                           status=MapStatus.RETIRED)
        assert [] == _pairs(Registry([CAT_A, CAT_B], [cmap]), A, "a1", B)

    def test_same_region_is_identity(self) -> None:
        """Translating within one region returns the code itself, equivalent."""
        assert [("a1", EQ)] == _pairs(Registry([CAT_A], []), A, "a1", A)

    def test_warm_call_returns_the_cached_answer(self) -> None:
        """A repeated call is answered from the cache (same object)."""
        registry = _chain(EQ, EQ)
        first = registry.translate(A, MatterCode("a1"), B, at=AT)
        assert first is registry.translate(A, MatterCode("a1"), B, at=AT)

    def test_lookup_unknown_code_raises(self) -> None:
        """lookup of a missing code raises UnknownCodeError."""
        with pytest.raises(UnknownCodeError):
            Registry([CAT_A], []).lookup(A, MatterCode("zz"))

    def test_national_region_constant(self) -> None:
        """The national region is spelled 'national' in paths."""
        assert "national" == NATIONAL
