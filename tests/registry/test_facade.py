"""The package surface: docstrings and purity of imports (sorting: tests/test_architecture.py)."""

# STYLE.md: tests assert `expected == actual`, expected first

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import registry

PACKAGE = Path(registry.__file__).parent
FORBIDDEN = {"asyncio", "aiohttp", "redis", "gateway", "socket", "urllib", "http", "time",
             "os", "pathlib", "subprocess", "io.open"}


class TestFacade:
    """registry/__init__.py is a small, documented facade over private modules."""

    def test_every_public_name_resolves_and_is_documented(self) -> None:
        """Each public class and function has a docstring."""
        missing = [n for n in registry.__all__
                   if (inspect.isclass(getattr(registry, n)) or inspect.isfunction(
                       getattr(registry, n))) and not inspect.getdoc(getattr(registry, n))]
        assert [] == missing

    def test_modules_behind_the_facade_are_private(self) -> None:
        """Every module other than __init__ starts with an underscore."""
        names = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
        assert [n for n in names if n.startswith("_")] == names

    def test_py_typed_is_shipped(self) -> None:
        """The package carries the py.typed marker."""
        assert (PACKAGE / "py.typed").is_file()

    def test_no_io_or_async_imports(self) -> None:
        """No registry module imports asyncio, aiohttp, redis, gateway, os, time or networking."""
        found = []
        for path in PACKAGE.glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found += [(path.name, a.name) for a in node.names
                              if a.name.split(".")[0] in FORBIDDEN]
                elif (isinstance(node, ast.ImportFrom) and node.module
                      and node.module.split(".")[0] in FORBIDDEN):
                    found.append((path.name, node.module))
        assert [] == found

    def test_no_clock_calls(self) -> None:
        """No registry module reads the clock (today(), now())."""
        calls = [p.name for p in PACKAGE.glob("*.py")
                 if ".today(" in p.read_text(encoding="utf-8")
                 or ".now(" in p.read_text(encoding="utf-8")]
        assert [] == calls
