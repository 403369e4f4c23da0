"""Real Redis and PostgreSQL for tests: the environment's, or a private one started here.

Order of preference: ``ECERT_TEST_REDIS_URL`` / ``ECERT_TEST_POSTGRES_DSN``; else a
private server on a free port from binaries found on PATH (PostgreSQL also
under /usr/lib/postgresql/*/bin); else the test is skipped with a reason that
says what is missing, or fails when ``ECERT_REQUIRE_SERVICES=1`` (as in CI).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["free_port", "postgres_server", "redis_server", "unavailable"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unavailable(reason: str) -> None:
    """Skip, or fail when the run requires real services."""
    if os.environ.get("ECERT_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def _wait_port(port: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@contextmanager
def redis_server() -> Iterator[str]:
    """A Redis URL: the environment's, or a private server for this session."""
    url = os.environ.get("ECERT_TEST_REDIS_URL")
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("no ECERT_TEST_REDIS_URL and no redis-server on PATH "
                    "(install Debian's redis-server or set ECERT_TEST_REDIS_URL)")
        return
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ecert-redis-") as folder:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", folder],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            if not _wait_port(port):
                unavailable(f"private redis-server did not start on port {port}")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL DSN: the environment's, or a private cluster for this session."""
    dsn = os.environ.get("ECERT_TEST_POSTGRES_DSN")
    if dsn:
        yield dsn
        return
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        unavailable("no ECERT_TEST_POSTGRES_DSN and no initdb/pg_ctl on PATH or under "
                    "/usr/lib/postgresql (install Debian's postgresql or set the DSN)")
        return
    run_as: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: run the private cluster as an unprivileged user.
        for name in ("postgres", "nobody"):
            try:
                owner = pwd.getpwnam(name)
                break
            except KeyError:
                continue
        runuser = shutil.which("runuser")
        if owner is None or runuser is None:
            unavailable("running as root without a 'postgres' or 'nobody' user and runuser")
            return
        run_as = [runuser, "-u", owner.pw_name, "--"]
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="ecert-pg-"))
    data = folder / "data"
    try:
        if owner is not None:
            os.chown(folder, owner.pw_uid, owner.pw_gid)
        subprocess.run(
            [*run_as, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        subprocess.run(
            [*run_as, pg_ctl, "-D", str(data), "-w", "-l", str(folder / "log"), "-o",
             f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=on", "start"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        unavailable(f"private PostgreSQL did not start: {exc.stderr.decode(errors='replace')}")
        return
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "fast", "stop"],
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(folder, ignore_errors=True)
