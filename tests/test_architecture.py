"""The architecture holds: pure packages stay pure, facades stay tidy."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import typing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_PURE = {"aiohttp", "redis", "asyncio", "gateway", "psycopg", "sqlite3", "mocks"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", ["trust", "registry"])
def test_pure_packages_import_no_io(package: str) -> None:
    """trust/ and registry/ import neither aiohttp, redis, asyncio, databases nor gateway."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & FORBIDDEN_IN_PURE)
        for path in (ROOT / package).rglob("*.py")
        if _imports(path) & FORBIDDEN_IN_PURE
    }
    assert {} == offenders


def test_mocks_do_not_import_gateway() -> None:
    """Mock partner regions stand apart from the gateway they are used to test."""
    offenders = [str(p) for p in (ROOT / "mocks").rglob("*.py") if "gateway" in _imports(p)]
    assert [] == offenders


@pytest.mark.parametrize("package", ["trust", "registry", "mocks", "gateway", "gateway.trustlist"])
def test_facade_all_is_sorted_and_resolves(package: str) -> None:
    """Each package's __all__ is sorted and every name in it exists."""
    module = importlib.import_module(package)
    names = list(module.__all__)
    assert sorted(names) == names
    missing = [name for name in names if not hasattr(module, name)]
    assert [] == missing


_TREE_LINE = re.compile(r"^(?P<indent>\s*)[*x]\s+(?P<name>[A-Z]\w*Error)\b")
"""A line of an error tree as STYLE.md draws it: ``* RootError`` then ``x ChildError``,
nested by indentation."""


def _documented_tree(doc: str) -> dict[str, str | None]:
    """The error tree drawn in a docstring: each name -> the name it is drawn under."""
    parents: dict[str, str | None] = {}
    open_: list[tuple[int, str]] = []  # the ancestors of the next line, by indentation
    for line in doc.splitlines():
        found = _TREE_LINE.match(line)
        if found is None:
            continue
        depth = len(found["indent"])
        while open_ and open_[-1][0] >= depth:
            open_.pop()
        parents[found["name"]] = open_[-1][1] if open_ else None
        open_.append((depth, found["name"]))
    return parents


@pytest.mark.parametrize(("package", "root"), [("trust", "TrustError"),
                                               ("registry", "RegistryError")])
def test_error_tree_is_drawn_as_it_is(package: str, root: str) -> None:
    """Every exception the package exports derives from its one root error and is drawn in
    its docstring's tree under its real parent (httpx's manner: the tree is the docs)."""
    module = importlib.import_module(package)
    exported = {name: getattr(module, name) for name in module.__all__
                if isinstance(getattr(module, name), type)
                and issubclass(getattr(module, name), BaseException)}
    base = exported[root]
    assert [] == sorted(name for name, cls in exported.items() if not issubclass(cls, base))
    drawn = _documented_tree(module.__doc__ or "")

    def parent(cls: type[BaseException]) -> str | None:
        """The nearest exported error the class derives from."""
        return next((c.__name__ for c in cls.__mro__[1:] if c in exported.values()), None)

    assert {name: parent(cls) for name, cls in exported.items()} == drawn


_FIGURE = re.compile(r"\d\s?(?:µs|us|ms)\b.*(?:against|measured)|measured .*\d\s?(?:µs|ms)")


def test_benchmark_figures_live_in_the_results() -> None:
    """The gateway's code says why it is built as it is; what a benchmark measured belongs
    in bench/RESULTS.md, beside the run that measured it, not in a docstring."""
    offenders = [f"{path.relative_to(ROOT)}:{number}"
                 for path in sorted((ROOT / "gateway").rglob("*.py"))
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if "µs" in line or _FIGURE.search(line)]
    assert [] == offenders


@pytest.mark.parametrize("package", ["trust", "registry", "mocks", "gateway"])
def test_packages_ship_py_typed(package: str) -> None:
    """Every package is marked as typed (PEP 561)."""
    assert (ROOT / package / "py.typed").exists()


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    skip = ("tests/vectors/", "docs/spec/", "docs/reference/", "uv.lock", "LICENSE")
    return [ROOT / name for name in listed
            if name and not name.startswith(skip) and (ROOT / name).is_file()]


@pytest.mark.allow_blocking
def test_repository_stands_alone() -> None:
    """No tracked file reaches outside the clone: not the shared folder, no machine path."""
    outside = re.compile(r"\.\.[/]shared|[/]work[/]|[/]root[/]")
    offenders = []
    for path in _tracked_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        offenders += [f"{path.relative_to(ROOT)}:{number}"
                      for number, line in enumerate(text.splitlines(), 1)
                      if outside.search(line)]
    assert [] == offenders


def test_trust_list_face_holds_no_store_and_no_step() -> None:
    """``gateway.trustlist`` (all the trust CLI may import, by import-linter) exports the
    service, its outcomes and errors: no store class, nothing that opens or takes a store."""
    service = importlib.import_module("gateway.trustlist.service")
    face = importlib.import_module("gateway.trustlist")
    store_methods = {name for name in dir(service.TrustListStore) if not name.startswith("_")}
    offenders = []
    for name in face.__all__:
        exported = getattr(face, name)
        if inspect.isclass(exported) and store_methods <= set(dir(exported)):
            offenders.append(name)  # the store protocol or one of its adapters
        elif inspect.isfunction(exported):
            hints = typing.get_type_hints(exported)
            if service.TrustListStore in hints.values():
                offenders.append(name)  # opens the store, or is a step run on it
    assert [] == offenders
    assert "TrustListService" in face.__all__
