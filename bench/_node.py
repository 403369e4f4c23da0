"""The Node.js baseline (``bench/node/``): finding node, installing ``jose``, the command.

``bench/node/server.js`` verifies one ES256 licence per ``POST /`` with jose's
``compactVerify`` and one key, the Node.js counterpart of the naive aiohttp +
PyJWT endpoint. Its one dependency is pinned in ``bench/node/package-lock.json``;
the run installs it with ``npm ci`` when ``node_modules`` does not already hold
the locked version (so a second run needs no network), preferring npm's cache.
Without node (v20 or newer) or npm, or when the install fails, the run goes on
and the Node.js row says why it was not measured.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["NODE_DIR", "NodeBaseline", "ensure_node", "locked_jose"]

NODE_DIR: Final = Path(__file__).resolve().parent / "node"
MIN_MAJOR: Final = 20


@dataclass(frozen=True, slots=True)
class NodeBaseline:
    """A Node.js that can run the baseline, or the reason it cannot."""

    node: str | None
    version: str = ""
    jose: str = ""
    problem: str = ""
    """Empty when the baseline can run; else why not (shown in the row)."""

    def argv(self, port: int, jwk: Path) -> list[str]:
        """The server's command line."""
        assert self.node is not None
        return [self.node, str(NODE_DIR / "server.js"), "--port", str(port), "--jwk", str(jwk)]

    def describe(self) -> str:
        """One line for the output."""
        if self.problem:
            return f"not measured: {self.problem}"
        return f"Node.js {self.version}, jose {self.jose} (node:http, one process)"


def locked_jose(folder: Path = NODE_DIR) -> str:
    """The version of jose that ``package-lock.json`` pins."""
    lock = json.loads((folder / "package-lock.json").read_text(encoding="utf-8"))
    return str(lock["packages"]["node_modules/jose"]["version"])


def _installed_jose(folder: Path) -> str | None:
    try:
        meta = json.loads((folder / "node_modules" / "jose" / "package.json")
                          .read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(meta.get("version"))


def ensure_node(log: Callable[[str], None], folder: Path = NODE_DIR) -> NodeBaseline:
    """Check node and npm, run ``npm ci`` when needed; never raises for a missing tool."""
    node = shutil.which("node")
    if node is None:
        return NodeBaseline(None, problem=f"node not found on PATH (Node.js {MIN_MAJOR} or "
                                          f"newer is needed)")
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True,
                                 timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return NodeBaseline(None, problem=f"`node --version` failed: {exc}")
    match = re.match(r"v(\d+)\.", version)
    if match is None or int(match.group(1)) < MIN_MAJOR:
        return NodeBaseline(None, version=version,
                            problem=f"node {version} is older than v{MIN_MAJOR}")
    wanted = locked_jose(folder)
    if _installed_jose(folder) != wanted:
        npm = shutil.which("npm")
        if npm is None:
            return NodeBaseline(None, version=version,
                                problem=f"npm not found on PATH (needed once to install "
                                        f"jose {wanted} into bench/node/node_modules)")
        argv = [npm, "ci", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts"]
        log(f"node baseline: installing jose {wanted} ({' '.join(argv[1:])} in bench/node)")
        env = {**os.environ, "npm_config_update_notifier": "false"}
        try:
            done = subprocess.run([*argv], cwd=folder, env=env, capture_output=True,
                                  text=True, timeout=300, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            return NodeBaseline(None, version=version, problem=f"npm ci failed: {exc}")
        if done.returncode != 0 or _installed_jose(folder) != wanted:
            tail = " ".join((done.stderr or done.stdout).split())[-300:]
            return NodeBaseline(None, version=version,
                                problem=f"npm ci failed ({done.returncode}): {tail}")
    return NodeBaseline(node, version=version, jose=wanted)
