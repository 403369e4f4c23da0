"""``scripts/partner_query.py``, the demo's partner: a bad option or no gateway is one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.allow_blocking


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "scripts/partner_query.py", *argv], cwd=ROOT,
                          capture_output=True, text=True, encoding="utf-8", check=False,
                          timeout=120)


def test_unknown_region_is_one_line_naming_the_known_ones() -> None:
    """``--region 999999`` printed a ValueError traceback."""
    done = _run("--region", "999999", "--identifier", "x")
    assert 1 == done.returncode
    assert "" == done.stdout
    assert [("partner_query.py: --region 999999 is not one of the demo's partner regions: "
            "310000 上海市, 320500 苏州市, 330100 杭州市, 340100 合肥市, 320100 南京市, "
            "520500 毕节市, 220600 白山市, 652929 柯坪县")] == done.stderr.splitlines()


def test_no_gateway_is_one_line() -> None:
    """Nothing listening at --gateway printed an aiohttp traceback."""
    url = f"http://127.0.0.1:{free_port()}"
    done = _run("--gateway", url, "--identifier", "x")
    assert 1 == done.returncode
    [line] = done.stderr.splitlines()
    assert line.startswith(f"partner_query.py: cannot reach the gateway at {url} (")
    assert line.endswith("is it running (make run)?")


def test_gateway_without_a_scheme_is_one_line() -> None:
    """``--gateway 127.0.0.1:8080`` (no http://) is named as the problem."""
    done = _run("--gateway", "127.0.0.1:8080", "--identifier", "x")
    assert 1 == done.returncode
    assert ["partner_query.py: --gateway '127.0.0.1:8080' is not an http:// or https:// URL"
            ] == done.stderr.splitlines()
