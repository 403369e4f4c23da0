"""Run the gateway with the mock partner regions, on embedded defaults.

Starts ``python -m mocks`` (the eight standard partner regions, or with
``--federation full`` the 43 of the full federation, on loopback ports, each
with its keys, status list and JWKS), writes their trust list into the data
folder as the next trust-list version, makes demo credentials and a licence
library on the first run, starts ``ecert-gateway serve`` and prints commands
to try. Ctrl-C stops everything, at any moment. A run that stopped during the
one-time set-up makes the next one start the set-up again; every later run
reuses it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READY = ".demo-ready"
"""Written once the demo's one-time set-up (credentials, licence library) is complete."""
OWNED = ".demo-owned"
"""Marks a data folder this script created, so that it may start its set-up again."""


class DemoError(Exception):
    """The demo could not start; the message says why and what to do."""


def _wait_http(url: str, timeout: float, alive: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback URL we built
                if resp.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def _prepare_folder(data: Path) -> None:
    """Make the data folder; start the one-time set-up again if an earlier run stopped in it."""
    if data.exists() and not (data / READY).exists():
        if not (data / OWNED).exists() and any(data.iterdir()):
            raise DemoError(f"{data} is not empty and was not made by the demo; "
                            "pass another --data-dir")
        # An interrupted or failed first run: its half-made credentials are of no use.
        shutil.rmtree(data)
    data.mkdir(parents=True, exist_ok=True)
    (data / OWNED).touch()


class Gateway:
    """Runs ``python -m gateway`` commands against the demo's data folder."""

    def __init__(self, python: str, data: Path, env: dict[str, str]) -> None:
        self.python, self.data, self.env = python, data, env

    def run(self, *command: str, quiet: bool = False) -> str:
        """Run one CLI command; its standard output, or DemoError with its message."""
        done = subprocess.run(
            [self.python, "-m", "gateway", *command, "--data-dir", str(self.data)],
            cwd=ROOT, capture_output=True, text=True, check=False, env=self.env)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            raise DemoError(f"`ecert-gateway {command[0]} {command[1]}` failed: {reason}")
        if not quiet:
            sys.stdout.write(done.stderr)
        return done.stdout

    def stored_version(self) -> int:
        """The trust-list version the data folder serves, 0 before the first start."""
        if not (self.data / READY).exists():
            return 0
        try:
            return int(json.loads(self.run("trust", "show", quiet=True))["version"])
        except DemoError as exc:
            if "no trust list yet" in str(exc):
                return 0
            raise

    def secret(self, name: str, *command: str) -> str:
        """A credential made once by the CLI and kept in the demo data folder."""
        path = self.data / f"demo-{name}.key"
        if not path.exists():
            made = self.run(*command).strip().splitlines()[-1]
            partial = path.with_suffix(".partial")
            partial.write_text(made + "\n", encoding="utf-8")
            partial.chmod(0o600)
            partial.replace(path)
        return path.read_text(encoding="utf-8").strip()


def _start_mocks(python: str, env: dict[str, str], *, seed: str, version: int,
                 trust_list: Path, samples: Path, transparency: Path,
                 federation: str = "standard"
                 ) -> tuple[subprocess.Popen[str], list[tuple[str, str, str]]]:
    mocks = subprocess.Popen(
        [python, "-m", "mocks", "--seed", seed, "--version", str(version),
         "--federation", federation,
         "--trust-list-out", str(trust_list), "--licences-out", str(samples),
         "--transparency-out", str(transparency)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env,
    )
    regions: list[tuple[str, str, str]] = []
    assert mocks.stdout is not None
    for line in mocks.stdout:
        if line.strip() == "ready":
            return mocks, regions
        code, name, url = line.split()
        regions.append((code, name, url))
    mocks.wait()
    raise DemoError("the mock partner regions failed to start; see their log above")


def _stop(*procs: subprocess.Popen[str] | None) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        if proc is None:
            continue
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    """Run the demo until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=str(ROOT / "demo-data"))
    parser.add_argument("--listen", default=os.environ.get("ECERT_LISTEN", "127.0.0.1:8080"),
                        help="HOST:PORT for the gateway (default: $ECERT_LISTEN or "
                             "127.0.0.1:8080)")
    parser.add_argument("--seed", default="2026")
    parser.add_argument("--federation", choices=("standard", "full"), default="standard",
                        help="the mock partners: the eight standard ones (default), or the 43 "
                             "of the full federation (every delta city but Huzhou, and the "
                             "three far partners, with retired keys)")
    parser.add_argument("--licences", type=int, default=10_000,
                        help="size of Huzhou's demo licence library on first run")
    args = parser.parse_args()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    # From the first moment: Ctrl-C during start-up stops cleanly, never half-way.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        return _run(args, lambda: stopping)
    except DemoError as exc:
        if stopping:
            print("make run: interrupted during start-up", file=sys.stderr)
            return 130
        print(f"make run: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, stopping: Callable[[], bool]) -> int:
    """Set up (once), start the mocks and the gateway, serve until stopped; stop them all."""
    data = Path(args.data_dir).resolve()
    _prepare_folder(data)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cli = Gateway(sys.executable, data, env)
    started: list[subprocess.Popen[str]] = []
    try:
        return _serve(args, cli, stopping, started)
    finally:
        _stop(*reversed(started))


def _serve(args: argparse.Namespace, cli: Gateway, stopping: Callable[[], bool],
           started: list[subprocess.Popen[str]]) -> int:
    python, data, env = cli.python, cli.data, cli.env
    trust_list = data / "trust-list.json"
    samples = data / "sample-licences.jsonl"
    if not (data / READY).exists():
        cli.run("init", quiet=True)
    # The mock regions take new ports (and list dates) on every start, so their trust
    # list is imported as the next version, as an operator's re-import would be; the
    # versions of earlier runs, and any change an operator made in them, stay in history.
    version = cli.stored_version() + 1
    transparency = data / "mock-transparency.json"
    mocks, regions = _start_mocks(python, env, seed=args.seed, version=version,
                                  trust_list=trust_list, samples=samples,
                                  federation=args.federation,
                                  transparency=transparency)
    started.append(mocks)
    if stopping():
        return 130
    key = cli.secret("client", "clients", "add", "demo-window")
    operator = cli.secret("operator", "operators", "add", "demo-operator", "--role", "operator")
    approver = cli.secret("approver", "operators", "add", "demo-approver", "--role", "approver")
    auditor = cli.secret("auditor", "operators", "add", "demo-auditor", "--role", "auditor")
    library = data / "demo-licences.jsonl"
    if not (data / READY).exists():
        print(f"filling Huzhou's demo licence library ({args.licences:,} licences) ...",
              flush=True)
        cli.run("licences", "demo", "--count", str(args.licences), quiet=True)
        if stopping():
            return 130
        (data / READY).touch()
    today = time.strftime("%Y-%m-%d")
    huzhou_licence = next(
        row for row in map(json.loads, library.read_text(encoding="utf-8").splitlines())
        if row.get("state") == "valid" and (row.get("valid_until") or "9999") >= today)
    base = f"http://{args.listen}"
    config = data / "gateway.toml"
    # The demo lets one approver apply a change; production keeps the default of two.
    # The licences and the status list the gateway signs name the URL printed below.
    # Three mock regions witness Huzhou's log (two must cosign); Huzhou witnesses 上海's.
    marks = json.loads(transparency.read_text(encoding="utf-8"))
    config.write_text(f"[gateway]\napprovals_required = 1\npublic_url = {json.dumps(base)}\n"
                      + _witness_config(marks), encoding="utf-8")

    gateway = subprocess.Popen(
        [python, "-m", "gateway", "serve", "--listen", args.listen, "--data-dir", str(data),
         "--trust-list", str(trust_list), "--config", str(config)],
        cwd=ROOT, env=env, text=True,
    )
    started.append(gateway)
    python_cmd = os.path.relpath(python, ROOT) if python.startswith(str(ROOT)) else python
    if not _wait_http(f"{base}/healthz", 60,
                      lambda: gateway.poll() is None and not stopping()):
        if stopping():
            return 130
        raise DemoError(f"the gateway did not start on {args.listen}; see its log above "
                        "(another port: ECERT_LISTEN=127.0.0.1:8090 make run)")
    _introduce_witnesses(base, marks)
    sample_lines = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines()]

    def body_of(sample: dict[str, str]) -> str:
        return shlex.quote(json.dumps({"credential": sample["token"],
                                       "use_cause": "办理跨省通办事项"}, ensure_ascii=False))

    body = body_of(sample_lines[0])
    # One licence signed SM2SM3 (国密), by a region that signs that way (毕节, 白山).
    sm2 = next(s for s in sample_lines if s.get("alg") == "SM2SM3")
    sm2_name = next(name for code, name, _ in regions if code == sm2["region_code"])
    _, first_name, first_url = regions[0]
    print("\n=== Huzhou e-licence gateway is running ===")
    print(f"gateway:  {base}   data folder: {data}   trust list: version {version}")
    print(f"console:  {base}/console/   sign in with the token in {data}/demo-operator.key, "
          "demo-approver.key or demo-auditor.key")
    print("partner regions (mock):")
    for code, name, url in regions:
        print(f"  {code} {name:<6} {url}")
    print("\nTry:")
    print(f"  curl -s {base}/healthz")
    print(f"  curl -s {base}/readyz")
    print(f"  curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' "
          f"-d {body} {base}/v1/verifications")
    print(f"  curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' "
          f"-d {body_of(sm2)} {base}/v1/verifications   # {sm2_name}'s licence, signed SM2SM3")
    print(f"  curl -s {base}/.well-known/jwks.json")
    print(f"  curl -s {base}/v1/audit/checkpoint")
    print(f"  curl -s {base}/v1/audit/checkpoint/witnessed   # cosigned by mock regions' "
          "witnesses (k = 2 of 3)")
    for log in marks["logs"]:
        print(f"  curl -s {log['checkpoint']}   # {log['origin']}, cosigned by Huzhou's witness")
    print(f"  curl -s -H 'Authorization: Bearer {auditor}' {base}/v1/audit/entries/0")
    print(f"  curl -s -H 'Authorization: Bearer {operator}' {base}/v1/admin/trust-list")
    print(f"  curl -s -H 'Authorization: Bearer {approver}' {base}/v1/admin/alerts")
    print(f"  curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' "
          f"-d '{{\"source\": {{\"region\": \"310000\", \"code\": \"310000-20-SFJ-0001\"}}, "
          f"\"target_region\": \"330500\"}}' {base}/v1/matters/translate")
    print(f"  {python_cmd} scripts/partner_query.py --gateway {base} --region 310000 "
          f"--identifier {huzhou_licence['identifier']}   # 上海 queries a Huzhou licence")
    print(f"  curl -s {first_url}/jwks.json            # {first_name}'s published keys")
    print(f"  curl -s {first_url}/status/lic-2026      # {first_name}'s status list")
    print(f"  curl -s {first_url}/licences/0           # one of {first_name}'s licences")
    print(f"\nMore sample licences (valid, revoked, suspended, lenient): {samples}")
    print("Ctrl-C stops the gateway and the mock regions.\n", flush=True)
    while not stopping() and gateway.poll() is None and mocks.poll() is None:
        time.sleep(0.3)
    if not stopping():
        raise DemoError("the gateway or the mock regions stopped; see the log above")
    return 0


def _witness_config(marks: dict[str, list[dict[str, str]]]) -> str:
    """The [witness] table naming the mock regions' witnesses and logs."""
    text = "[witness]\nk = 2\ninterval_s = 2\nalert_after_s = 60\n"
    for witness in marks["witnesses"]:
        text += (f"[[witness.witnesses]]\nname = {json.dumps(witness['name'])}\n"
                 f"vkey = {json.dumps(witness['vkey'])}\nurl = {json.dumps(witness['url'])}\n")
    for log in marks["logs"]:
        text += (f"[[witness.logs]]\norigin = {json.dumps(log['origin'])}\n"
                 f"vkey = {json.dumps(log['vkey'])}\n")
    return text


def _post(url: str, body: dict[str, str]) -> None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",  # noqa: S310 - loopback URL the mocks printed
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5):  # noqa: S310 - as above
        pass


def _introduce_witnesses(base: str, marks: dict[str, list[dict[str, str]]]) -> None:
    """Tell the mock witnesses Huzhou's log key, and the mock logs Huzhou's witness URL."""
    with urllib.request.urlopen(f"{base}/v1/audit/key", timeout=5) as response:  # noqa: S310 - loopback
        vkey = response.read().decode().strip()
    for witness in marks["witnesses"]:
        _post(witness["url"].rsplit("/witness/", 1)[0] + "/admin/witness", {"log_vkey": vkey})
    for log in marks["logs"]:
        _post(log["admin"], {"submit_to": f"{base}/v1/witness/add-checkpoint"})


if __name__ == "__main__":
    sys.exit(main())
