
"""The public surface of ``mocks``: a sorted facade, and no dependency on the gateway."""

from __future__ import annotations

import ast
from pathlib import Path

import mocks

PACKAGE = Path(mocks.__file__).parent


class TestFacade:
    """The facade lists what it exports, in order."""

    def test_all_is_sorted(self) -> None:
        """``__all__`` is in plain sorted order so that additions are easy to review."""
        assert sorted(mocks.__all__) == mocks.__all__

    def test_all_names_exist(self) -> None:
        """Every name in ``__all__`` is an attribute of the package."""
        assert [] == [name for name in mocks.__all__ if not hasattr(mocks, name)]

    def test_py_typed_is_shipped(self) -> None:
        """The package carries the PEP 561 marker."""
        assert (PACKAGE / "py.typed").is_file()


class TestImports:
    """Mocks stay independent of the code they are used to test."""

    def test_no_gateway_or_trust_import(self) -> None:
        """No module of ``mocks`` imports ``gateway`` or ``trust``."""
        found = []
        for path in sorted(PACKAGE.glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                found += [
                    f"{path.name}: {n}" for n in names if n.split(".")[0] in {"gateway", "trust"}
                ]
        assert [] == found
