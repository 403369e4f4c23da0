"""Code schemes: national lengths, USCC checks, local patterns and errors."""

# STYLE.md: tests assert `expected == actual`, expected first

from __future__ import annotations

import pytest

from registry import BUILTIN_SCHEMES, CodeFormatError, CodeScheme, SchemeError
from tests.registry.factories import catalogue


class TestNationalSchemes:
    """The GB/T 39554.1 schemes split codes into their parts."""

    def test_basic_code_splits_into_region_type_main_sub(self) -> None:
        """A 12-char basic code splits into region, matter type, main and sub item."""
        parsed = BUILTIN_SCHEMES["gb-basic-12"].parse("000115035000")
        expected = {"region": "00", "matter_type": "01", "main": "15035", "sub": "000"}
        assert expected == dict(parsed.parts)

    def test_public_service_matter_type_twenty_is_accepted(self) -> None:
        """Matter type 20 (公共服务) is a valid basic-code type."""
        assert "20" == BUILTIN_SCHEMES["gb-basic-12"].parse("002072098000")["matter_type"]

    def test_matter_type_eleven_is_rejected(self) -> None:
        """Matter type 11 is not in GB/T 39046 A.1, so the code is refused."""
        with pytest.raises(CodeFormatError):
            BUILTIN_SCHEMES["gb-basic-12"].parse("001115035000")

    def test_handling_item_code_carries_uscc_level_basic_and_item(self) -> None:
        """A real 33-char NMPA handling-item code splits into its four parts."""
        parsed = BUILTIN_SCHEMES["gb-handling-33"].parse("11100000MB0341032Y100017214300101")
        expected = ("11100000MB0341032Y", "1", "000172143001", "01")
        assert expected == (parsed["uscc"], parsed["level"], parsed["basic"], parsed["item"])

    def test_implementation_code_with_bad_uscc_check_is_refused(self) -> None:
        """A 31-char code whose USCC check character is wrong is refused, naming the USCC."""
        with pytest.raises(CodeFormatError, match="USCC 11100000MB03271698"):
            BUILTIN_SCHEMES["gb-implementation-31"].parse("11100000MB032716981000115035000")

    def test_implementation_level_eight_is_refused(self) -> None:
        """Level digits run 1..7 only."""
        with pytest.raises(CodeFormatError):
            BUILTIN_SCHEMES["gb-implementation-31"].parse("11100000MB032716998000115035000")


class TestSchemeErrors:
    """Wrong shapes raise CodeFormatError naming scheme and code."""

    def test_error_names_scheme_and_code(self) -> None:
        """The message says which scheme refused which code."""
        with pytest.raises(CodeFormatError) as caught:
            BUILTIN_SCHEMES["zj-power-basic"].parse("XK0010100Y")
        assert ("zj-power-basic", "XK0010100Y") == (caught.value.scheme, caught.value.code)

    def test_pattern_without_named_parts_is_a_scheme_error(self) -> None:
        """A local scheme must name its parts."""
        with pytest.raises(SchemeError):
            CodeScheme(name="bad", pattern=r"\d+")

    def test_pattern_that_does_not_compile_is_a_scheme_error(self) -> None:
        """A broken regex is reported as a SchemeError, not re.error."""
        with pytest.raises(SchemeError):
            CodeScheme(name="bad", pattern=r"(?P<x>[)")


class TestLocalSchemes:
    """Local schemes declared by pattern parse their own examples."""

    @pytest.mark.parametrize(("scheme", "code"), [
        ("zj-power-basic", "许可-00393-002"),
        ("zj-power-basic", "许可-00344-001-01"),
        ("gz-item", "XK0010100Y"),
        ("sh-item", "310000-01-SCJ-0012"),
        ("ah-item", "AH-3401-XK00123"),
        ("gb-licence-type-21", "11100000000013338W032"),
    ])
    def test_examples_parse(self, scheme: str, code: str) -> None:
        """Each scheme accepts its documented example."""
        assert code == BUILTIN_SCHEMES[scheme].parse(code).code

    def test_illustrative_schemes_are_marked(self) -> None:
        """The Shanghai and Anhui schemes this project defined say they are illustrative."""
        expected = (True, True, False)
        actual = tuple(BUILTIN_SCHEMES[n].illustrative
                       for n in ("sh-item", "ah-item", "gb-basic-12"))
        assert expected == actual


class TestSchemePerCatalogueVersion:
    """Code length is decided by the catalogue version's scheme, not hard-coded."""

    def test_ten_char_codes_load_in_a_legacy_version(self) -> None:
        """A catalogue version on the legacy 10-char scheme holds 10-char codes."""
        legacy = catalogue("national", ["2090001000"], version="2017",
                           scheme=BUILTIN_SCHEMES["gb-basic-10"])
        assert "90001" == legacy.parts("2090001000")["main"]

    def test_ten_char_code_is_refused_by_the_current_scheme(self) -> None:
        """The same 10-char code does not fit the 12-char scheme of a later version."""
        with pytest.raises(CodeFormatError):
            catalogue("national", ["2090001000"], version="2024",
                      scheme=BUILTIN_SCHEMES["gb-basic-12"])
