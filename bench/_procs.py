"""Child processes of a benchmark run: started pinned, waited for, always stopped.

Every server is started through :class:`Children`, which remembers it and
stops it (SIGTERM, then SIGKILL after a grace period) when the run ends, on
an error or on Ctrl-C. Only loopback addresses are used.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = [
    "Children",
    "Pinning",
    "free_port",
    "http_get",
    "http_post",
    "cpu_seconds",
    "peak_memory_kib",
    "tree_cpu_seconds",
    "resident_memory_kib",
]

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Pinning:
    """Which CPUs the servers and the load generator run on (empty: not pinned)."""

    server: str = ""
    load: str = ""

    @classmethod
    def detect(cls) -> Pinning:
        """Servers on the first allowed CPU, load on the second, when taskset exists."""
        cpus = sorted(os.sched_getaffinity(0))
        if shutil.which("taskset") is None or len(cpus) < 2:
            return cls()
        return cls(server=str(cpus[0]), load=str(cpus[1]))

    def describe(self) -> str:
        """One line for the output."""
        if not self.server:
            return "not pinned (taskset missing or fewer than 2 CPUs)"
        return (f"taskset: servers (gateway, baselines, in-process loops) on CPU {self.server}, "
                f"load generator on CPU {self.load}")

    def prefix(self, role: str) -> list[str]:
        """The ``taskset -c N`` prefix for a ``server`` or ``load`` process; none for any
        other role (``free``: the workers scenarios, where the servers and the load
        generator share every CPU)."""
        cpu = {"server": self.server, "load": self.load}.get(role, "")
        return ["taskset", "-c", cpu] if cpu else []

    def move(self, pid: int, role: str) -> bool:
        """Pin every thread of running process ``pid`` to the CPU of ``role`` (``server``
        or ``load``); False when not pinned or the process is gone."""
        cpu = {"server": self.server, "load": self.load}.get(role, "")
        if not cpu:
            return False
        try:
            threads = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
            for tid in threads:
                os.sched_setaffinity(tid, {int(cpu)})
        except (OSError, ValueError):
            return False
        return True


def free_port() -> int:
    """A port free on loopback now (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env() -> dict[str, str]:
    """The environment for children: unbuffered, no ``ECERT_*`` settings leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECERT_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(ROOT)
    return env


def http_get(url: str, timeout: float = 2.0,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Status and body of a GET to a loopback URL (any status, no exception on 4xx/5xx)."""
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback URL
    return _http(request, timeout)


def http_post(url: str, body: bytes, headers: dict[str, str] | None = None,
              timeout: float = 10.0) -> tuple[int, bytes]:
    """Status and body of a JSON POST to a loopback URL."""
    request = urllib.request.Request(  # noqa: S310 - loopback URL we built
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    return _http(request, timeout)


def _http(request: urllib.request.Request, timeout: float) -> tuple[int, bytes]:
    if not request.full_url.startswith(f"http://{HOST}:"):
        raise ValueError(f"the benchmark only talks to {HOST}: {request.full_url}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def _status_kib(pid: int, name: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    return None


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, every thread) a running process has used so far."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may hold spaces:
    # state is field 3, utime field 14 and stime field 15 (proc(5)).
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children, their children, ...) running now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii")
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = list(children.get(pid, ()))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, ()))
    return found


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU time of ``pid`` and every process below it that is running now (a server
    with worker processes: the supervisor and its workers, all their threads)."""
    own = cpu_seconds(pid)
    if own is None:
        return None
    return own + sum(cpu_seconds(child) or 0.0 for child in _descendants(pid))


def peak_memory_kib(pid: int) -> int | None:
    """VmHWM (peak resident set) of a running process, in KiB."""
    return _status_kib(pid, "VmHWM")


def resident_memory_kib(pid: int) -> int | None:
    """VmRSS (resident set now) of a running process, in KiB."""
    return _status_kib(pid, "VmRSS")


class Children:
    """The servers of one run; ``stop_all`` ends every one still running."""

    def __init__(self, pinning: Pinning, log_dir: Path) -> None:
        self.pinning = pinning
        self.log_dir = log_dir
        self._procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, name: str, argv: Sequence[str], *, role: str = "server",
              env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` pinned for ``role``, its output in ``<log_dir>/<name>.log``;
        ``env`` adds variables (such as ``ECERT_*`` settings) to the clean environment."""
        log = (self.log_dir / f"{name}.log").open("wb")
        proc = subprocess.Popen([*self.pinning.prefix(role), *argv], cwd=ROOT,
                                env={**clean_env(), **(env or {})},
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._procs.append((name, proc, log))
        return proc

    def stop(self, name: str, grace: float = 10.0) -> None:
        """Stop one child (SIGTERM, then SIGKILL after ``grace``) and forget it."""
        for entry in [e for e in self._procs if e[0] == name]:
            _, proc, log = entry
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            log.close()
            self._procs.remove(entry)

    def log_tail(self, name: str, lines: int = 20) -> str:
        """The last lines of a child's log."""
        path = self.log_dir / f"{name}.log"
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        """Raise if a server died."""
        for name, proc, _ in self._procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def wait_http(self, name: str, url: str, timeout: float = 60.0) -> None:
        """Wait until ``url`` answers 200 (or raise, showing the child's log)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if http_get(url, timeout=1.0)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not answer {url} in {timeout:.0f} s:\n"
                           f"{self.log_tail(name)}")

    def wait_file(self, name: str, path: Path, timeout: float) -> None:
        """Wait until ``path`` exists (or raise, showing the child's log)."""
        deadline = time.monotonic() + timeout
        while not path.exists():
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not write {path.name} in {timeout:.0f} s:\n"
                                   f"{self.log_tail(name)}")
            time.sleep(0.1)

    def stop_all(self, grace: float = 10.0) -> None:
        """SIGTERM every child still running, then SIGKILL what is left after ``grace``;
        then the same for processes a child started and left behind (a server's workers)."""
        below: list[int] = []
        for _, proc, _ in self._procs:
            if proc.poll() is None:
                below += _descendants(proc.pid)
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for _, proc, log in self._procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            log.close()
        self._procs.clear()
        _end_leftovers(below, grace)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def _end_leftovers(pids: Sequence[int], grace: float) -> None:
    """SIGTERM, then SIGKILL, the given descendants of our children still running."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [pid for pid in pids if _alive(pid)]
        if not alive:
            return
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(pid) for pid in alive):
            time.sleep(0.1)


def run_bounded(argv: Sequence[str], timeout: float, *, stdin: Any = subprocess.DEVNULL,
                ) -> subprocess.CompletedProcess[str]:
    """Run a short-lived child (load generator, in-process loop) with a hard time limit."""
    proc = subprocess.Popen(list(argv), cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=stdin, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def python() -> str:
    """The interpreter running the benchmark (the project's virtual environment)."""
    return sys.executable
