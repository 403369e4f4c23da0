"""``make run`` (scripts/demo.py) starts every time: again, after Ctrl-C, after a failure."""

from __future__ import annotations

import base64
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.allow_blocking]
RUNNING = "=== Huzhou e-licence gateway is running ==="


class Demo:
    """One ``scripts/demo.py`` process whose output is collected in a file."""

    def __init__(self, data: Path, port: int, log: Path, *extra: str) -> None:
        self.log = log
        self.port = port
        self.handle = log.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "scripts/demo.py", "--data-dir", str(data), "--licences", "200",
             *extra],
            cwd=ROOT, stdout=self.handle, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "ECERT_LISTEN": f"127.0.0.1:{port}", "ECERT_LOG_LEVEL": "WARNING"},
        )

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8")

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not seen; demo output:\n{self.output()}")

    def interrupt(self, timeout: float = 40) -> int:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=timeout)
        self.handle.close()
        return code


def _get(url: str, token: str | None = None) -> dict[str, object]:
    request = urllib.request.Request(url)  # noqa: S310 - loopback URL built here
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
        return dict(json.loads(resp.read()))


def _post(url: str, token: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(  # noqa: S310 - loopback URL built here
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
        return dict(json.loads(resp.read()))


def _served_version(port: int, token: str) -> int:
    return int(str(_get(f"http://127.0.0.1:{port}/v1/admin/trust-list", token)["version"]))


def _check_sm2_example(output: str) -> None:
    """The demo prints a verification of an SM2SM3 licence, and that command passes."""
    line = next(line for line in output.splitlines() if "signed SM2SM3" in line)
    words = shlex.split(line.partition("#")[0])
    headers = dict(h.split(": ", 1) for h in words[words.index("-H") + 1::2][:2])
    body = words[words.index("-d") + 1]
    assert "SM2SM3" == json.loads(base64.urlsafe_b64decode(
        json.loads(body)["credential"].split(".")[0] + "==").decode())["alg"]
    request = urllib.request.Request(  # noqa: S310 - loopback URL printed by the demo
        words[-1], data=body.encode(), method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
        answer = json.loads(resp.read())
    assert "TOTAL_PASSED" == answer["indication"], answer


def test_demo_starts_again_after_interrupt_stop_failure_and_operator_change(
        tmp_path: Path) -> None:
    """Ctrl-C during set-up, a clean run, an operator change, a busy port: every next run works."""
    data = tmp_path / "demo-data"
    port = free_port()

    # 1. Ctrl-C in the middle of the one-time set-up.
    first = Demo(data, port, tmp_path / "1.log")
    first.wait_for("filling Huzhou's demo licence library")
    assert 130 == first.interrupt()  # the shell's code for a run ended by Ctrl-C
    assert not (data / ".demo-ready").exists()

    # 2. A whole run: set-up starts again and the gateway serves.
    second = Demo(data, port, tmp_path / "2.log")
    second.wait_for(RUNNING)
    _check_sm2_example(second.output())
    operator = (data / "demo-operator.key").read_text(encoding="utf-8").strip()
    approver = (data / "demo-approver.key").read_text(encoding="utf-8").strip()
    version = _served_version(port, operator)

    # 3. An operator change the demo invites (suspend a partner), applied, then a clean stop.
    base = f"http://127.0.0.1:{port}/v1/admin"
    proposal = _post(f"{base}/proposals", operator,
                     {"changes": [{"kind": "suspend-partner", "region_code": "520500"}]})
    _post(f"{base}/proposals/{proposal['id']}/approve", approver, {})
    assert version + 1 == _served_version(port, operator)
    assert 0 == second.interrupt()

    # 4. A start that fails (the port is taken) fails fast, and leaves nothing broken.
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        busy.bind(("127.0.0.1", port))
        busy.listen()
        started = time.monotonic()
        third = Demo(data, port, tmp_path / "3.log")
        code = third.proc.wait(timeout=90)
        third.handle.close()
        assert 0 != code
        assert time.monotonic() - started < 60
        assert "did not start" in third.output()

    # 5. And the next start works again, on the next trust-list version.
    fourth = Demo(data, port, tmp_path / "4.log")
    fourth.wait_for(RUNNING)
    assert version + 1 < _served_version(port, operator)
    health = _get(f"http://127.0.0.1:{port}/healthz")
    assert health
    assert 0 == fourth.interrupt()
    for log in ("2.log", "4.log"):
        text = (tmp_path / log).read_text(encoding="utf-8")
        assert "Traceback" not in text


def test_full_federation_demo_serves_43_partners(tmp_path: Path) -> None:
    """``--federation full`` (``make run FEDERATION=full``) runs the 43 partners of the full
    federation: each is listed, the gateway serves their trust list, the SM2 example passes."""
    data = tmp_path / "demo-data"
    port = free_port()
    demo = Demo(data, port, tmp_path / "full.log", "--federation", "full")
    demo.wait_for(RUNNING)
    output = demo.output()
    _check_sm2_example(output)
    listed = output.partition("partner regions (mock):\n")[2].partition("\nTry:")[0]
    assert 43 == len(listed.split("\n")) - 1  # one line a region, then a blank line
    assert "330500" not in listed
    operator = (data / "demo-operator.key").read_text(encoding="utf-8").strip()
    served = _get(f"http://127.0.0.1:{port}/v1/admin/trust-list", operator)
    assert isinstance(served["partners"], list)
    assert 43 == len(served["partners"])
    assert 0 == demo.interrupt()


def test_make_run_passes_the_federation_on_and_stays_as_it_was_without() -> None:
    """``make run`` runs the demo exactly as before; ``FEDERATION=full`` adds the flag."""
    def command(*args: str) -> str:
        # --no-print-directory: under `make test` this make is a sub-make, which would
        # otherwise print "make[1]: Leaving directory ..." after the command.
        done = subprocess.run(["make", "--no-print-directory", "-n", "run", *args], cwd=ROOT,
                              capture_output=True, text=True, check=True)
        return done.stdout.strip().splitlines()[-1]

    assert ".venv/bin/python scripts/demo.py" == command()
    assert ".venv/bin/python scripts/demo.py --federation full" == command("FEDERATION=full")
