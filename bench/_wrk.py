"""``wrk`` as the load generator: finding (or installing) it, its Lua script, its output.

The Lua script reads a pool file (one JSON body a line) in ``init``, POSTs
the next line on every request (cycling, from an offset), and in ``done``
writes one ``BENCH-RESULT`` line with the totals and the p50/p99 latency.
With a third script argument ``auth`` each line is ``<Authorization
value>\t<body>``, and every request gets its own ``Authorization`` header
(``wrk.format`` with a per-request header table; the partner queries'
one-use request tokens).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

__all__ = ["LUA", "command", "ensure_wrk", "parse"]

LUA: Final = r"""
-- POST bodies cycled from a file of pre-built JSON documents (one a line).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local bodies = {}
local auths = {}
local with_auth = false
local count = 0
local position = 0

function init(args)
  with_auth = args[3] == "auth"
  for line in io.lines(args[1]) do
    if #line > 0 then
      count = count + 1
      if with_auth then
        local tab = string.find(line, "\t", 1, true)
        if tab == nil then
          error("no tab in an auth line of " .. args[1])
        end
        auths[count] = string.sub(line, 1, tab - 1)
        bodies[count] = string.sub(line, tab + 1)
      else
        bodies[count] = line
      end
    end
  end
  if count == 0 then
    error("no bodies in " .. args[1])
  end
  position = tonumber(args[2] or "0") % count
end

function request()
  position = position + 1
  if position > count then
    position = 1
  end
  if with_auth then
    local headers = {}
    for name, value in pairs(wrk.headers) do
      headers[name] = value
    end
    headers["Authorization"] = auths[position]
    return wrk.format(nil, nil, headers, bodies[position])
  end
  return wrk.format(nil, nil, nil, bodies[position])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH-RESULT %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def ensure_wrk(log: Any) -> str | None:
    """The path of ``wrk``, installing it with apt-get when missing and allowed; else None."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        log("wrk not found, and apt-get is not usable here (not root or no apt-get)")
        return None
    log("wrk not found; installing it: apt-get install -y wrk")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run([apt, "install", "-y", "-q", "wrk"], env=env, timeout=300,
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log("apt-get install failed; trying apt-get update first")
            subprocess.run([apt, "update", "-q"], env=env, timeout=300, capture_output=True,
                           check=False)
            done = subprocess.run([apt, "install", "-y", "-q", "wrk"], env=env, timeout=300,
                                  capture_output=True, text=True, check=False)
    except subprocess.TimeoutExpired:
        log("apt-get took longer than 300 s; giving up on wrk")
        return None
    if done.returncode != 0:
        log(f"apt-get install wrk failed: {done.stderr.strip()[-300:]}")
        return None
    return shutil.which("wrk")


def command(
    wrk: str, script: Path, url: str, bodies: Path, *, offset: int, connections: int,
    duration: float, headers: dict[str, str], auth_lines: bool = False,
) -> list[str]:
    """The wrk command line: one thread (a C client needs no more to saturate one core)."""
    args = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "60s",
            "-s", str(script)]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    return [*args, url, "--", str(bodies), str(offset), *(["auth"] if auth_lines else [])]


def parse(output: str) -> dict[str, Any]:
    """The summary from wrk's output, in the load generator's JSON shape."""
    for line in output.splitlines():
        if line.startswith("BENCH-RESULT "):
            fields = [float(x) for x in line.split()[1:]]
            requests, duration_us, connect, read, write, status, timeout, p50, p99 = fields
            return {
                "requests": int(requests),
                "seconds": duration_us / 1e6,
                "errors": int(connect + read + write + status + timeout),
                "statuses": {},
                "p50_ms": p50 / 1000,
                "p99_ms": p99 / 1000,
            }
    raise ValueError(f"no BENCH-RESULT line in wrk output: {output[-500:]!r}")
