"""``ecert-gateway registry import|coverage``, as ``__main__`` calls them."""

# STYLE.md: tests assert `expected == actual`, expected first

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from gateway.__main__ import run_command
from gateway.cli import command_settings
from gateway.cli.registry import register
from gateway.infra.datafolder import create_data_folder
from gateway.matters.service import DEFAULT_REGISTRY_DIR, MatterService, read_registry_files

# The import writes an audit record through the CLI's synchronous appender.
pytestmark = pytest.mark.allow_blocking

HEADER = ("source_code,source_display,target_code,target_display,relationship,depends_on,"
          "valid_from,valid_until,comment")
META = """#url,urn:test:map:330500-520500
#version,1
#status,active
#source,urn:ecert:catalogue:330500:matter
#target,urn:ecert:catalogue:520500:matter
"""


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ecert-gateway")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return run_command(args, command_settings(args, os.environ))


def _crosswalk(path: Path, *rows: str) -> Path:
    path.write_text(META + HEADER + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty data folder, as ``ecert-gateway init`` makes it."""
    path = tmp_path / "data"
    create_data_folder(path)
    return path


GOOD_ROW = "公共服务-00512-002,,GG0090300Y,,source-is-narrower-than-target,,,,"


def _coverage_rows(out: str) -> dict[str, tuple[int, ...]]:
    rows = {}
    for line in out.splitlines():
        cells = line.split()
        if cells and cells[0].isdigit():
            rows[cells[0]] = tuple(int(c) for c in cells[1:])
    return rows


class TestImport:
    """registry import."""

    def test_good_csv_is_copied_and_loaded(self, tmp_path: Path, data_dir: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
        """A clean crosswalk lands in DIR/registry/ and the gateway's loader picks it up."""
        source = _crosswalk(tmp_path / "330500-520500.csv", GOOD_ROW)
        code = _run("registry", "import", str(source), "--data-dir", str(data_dir))
        copied = data_dir / "registry" / "330500-520500.csv"
        service, report = MatterService.from_files(
            read_registry_files(DEFAULT_REGISTRY_DIR, data_dir / "registry"))
        links = service.partner_codes("330500", "公共服务-00512-002", "520500")
        expected = (0, True, source.read_bytes(), True, frozenset(
            {"公共服务-00512-002", "GG0090300Y"}), True)
        actual = (code, copied.exists(), copied.read_bytes(), report.ok, links,
                  "imported" in capsys.readouterr().out)
        assert expected == actual

    def test_import_is_audited(self, tmp_path: Path, data_dir: Path) -> None:
        """The import leaves a record in the data folder's audit log."""
        source = _crosswalk(tmp_path / "330500-520500.csv", GOOD_ROW)
        assert 0 == _run("registry", "import", str(source), "--data-dir", str(data_dir))
        assert (data_dir / "audit.db").exists()

    def test_good_fhir_catalogue(self, tmp_path: Path, data_dir: Path) -> None:
        """A FHIR R5 CodeSystem for a new region is accepted."""
        doc = json.loads((DEFAULT_REGISTRY_DIR / "catalogues" / "310000-matters.codesystem.json")
                         .read_text(encoding="utf-8"))
        doc["url"] = "urn:test:catalogue:320500:matter"
        for ext in doc["extension"]:
            if ext["url"].endswith(":region"):
                ext["valueCode"] = "320500"
        source = tmp_path / "320500-matters.codesystem.json"
        source.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
        assert 0 == _run("registry", "import", str(source), "--data-dir", str(data_dir))
        service, _ = MatterService.from_files(
            read_registry_files(DEFAULT_REGISTRY_DIR, data_dir / "registry"))
        assert "320500" in service.partner_regions()

    def test_bad_csv_reports_its_row_and_imports_nothing(
            self, tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """An R4 word on line 8 and an unknown target on line 9 are both named; exit 1."""
        source = _crosswalk(tmp_path / "bad.csv", GOOD_ROW,
                            "公共服务-00901-002,,GG0090100Y,,wider,,,,",
                            "许可-00906-001,,XX9999999Y,,equivalent,,,,")
        code = _run("registry", "import", str(source), "--data-dir", str(data_dir))
        err = capsys.readouterr().err
        expected = (1, True, True, True, False)
        actual = (code, f"{source}:8" in err, f"{source}:9" in err,
                  err.strip().splitlines()[-1].endswith("nothing imported"),
                  (data_dir / "registry" / "bad.csv").exists())
        assert expected == actual

    def test_a_second_copy_of_a_loaded_map_is_refused(
            self, tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A map already loaded (same url and version) under another name is a problem."""
        original = DEFAULT_REGISTRY_DIR / "maps" / "330500-340100.crosswalk.csv"
        copy = tmp_path / "g60-again.csv"
        copy.write_bytes(original.read_bytes())
        assert 1 == _run("registry", "import", str(copy), "--data-dir", str(data_dir))
        assert "loaded twice" in capsys.readouterr().err

    def test_a_file_of_the_same_name_replaces_the_sample(
            self, tmp_path: Path, data_dir: Path) -> None:
        """An edited edition of a sample map, imported under its name, takes its place."""
        original = DEFAULT_REGISTRY_DIR / "maps" / "330500-340100.crosswalk.csv"
        edited = tmp_path / original.name
        edited.write_text(original.read_text(encoding="utf-8")
                          .replace("#version,2024.1", "#version,2024.2"), encoding="utf-8")
        assert 0 == _run("registry", "import", str(edited), "--data-dir", str(data_dir))
        service, _ = MatterService.from_files(
            read_registry_files(DEFAULT_REGISTRY_DIR, data_dir / "registry"))
        versions = [m.version for m in service.registry.maps
                    if m.url == "urn:ecert:map:330500-340100"]
        assert ["2024.2"] == versions

    def test_not_json_or_csv(self, tmp_path: Path, data_dir: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
        """A file of another kind is refused with a one-line reason."""
        source = tmp_path / "map.xlsx"
        source.write_bytes(b"PK")
        assert 1 == _run("registry", "import", str(source), "--data-dir", str(data_dir))
        assert "not a .json or .csv file" in capsys.readouterr().err


class TestCoverage:
    """registry coverage."""

    def test_table(self, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """One row per partner: total, equivalent, narrower/broader, related, none."""
        assert 0 == _run("registry", "coverage", "--data-dir", str(data_dir),
                         "--at", "2025-03-01")
        out = capsys.readouterr().out
        expected = {"310000": (13, 5, 7, 1, 0), "330100": (13, 12, 1, 0, 0),
                    "340100": (13, 4, 2, 1, 6), "520500": (13, 2, 5, 1, 5)}
        assert (expected, True) == (_coverage_rows(out),
                                    "partner  total  equivalent  narrower/broader" in out)

    def test_import_changes_coverage(self, tmp_path: Path, data_dir: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
        """A direct Huzhou-Bijie row turns one unmatched matter into a narrower one."""
        source = _crosswalk(tmp_path / "330500-520500.csv", GOOD_ROW)
        assert 0 == _run("registry", "import", str(source), "--data-dir", str(data_dir))
        capsys.readouterr()
        assert 0 == _run("registry", "coverage", "--data-dir", str(data_dir),
                         "--at", "2025-03-01")
        assert (13, 2, 6, 1, 4) == _coverage_rows(capsys.readouterr().out)["520500"]

    def test_bad_date(self, data_dir: Path) -> None:
        """A malformed --at is refused by the parser."""
        with pytest.raises(SystemExit):
            _run("registry", "coverage", "--data-dir", str(data_dir), "--at", "2025-3-1")

    def test_through_main(self, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """``ecert-gateway registry coverage`` is wired into the command line."""
        from gateway.__main__ import build_parser, main

        if "registry" not in build_parser().format_usage():
            pytest.skip("gateway/__main__.py does not call gateway.cli.registry.register yet")
        assert 0 == main(["registry", "coverage", "--data-dir", str(data_dir)])
        assert "520500" in capsys.readouterr().out
