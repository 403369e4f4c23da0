"""Run the gateway with the mock partner regions, on embedded defaults.

Starts ``python -m mocks`` (seven-plus partner regions on loopback ports, each
with its keys, status list and JWKS), writes their trust list into the data
folder, makes a demo local-system key, starts ``ecert-gateway serve`` and prints
commands to try. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _wait_http(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback URL we built
                if resp.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def main() -> int:
    """Run the demo until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=str(ROOT / "demo-data"))
    parser.add_argument("--listen", default="127.0.0.1:8080")
    parser.add_argument("--seed", default="2026")
    args = parser.parse_args()
    data = Path(args.data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    trust_list = data / "trust-list.json"
    samples = data / "sample-licences.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    mocks = subprocess.Popen(
        [python, "-m", "mocks", "--seed", args.seed, "--trust-list-out", str(trust_list),
         "--licences-out", str(samples)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env,
    )
    regions: list[tuple[str, str, str]] = []
    assert mocks.stdout is not None
    for line in mocks.stdout:
        if line.strip() == "ready":
            break
        code, name, url = line.split()
        regions.append((code, name, url))
    else:
        print("mock regions failed to start", file=sys.stderr)
        return 1

    def secret(name: str, *command: str) -> str:
        """A credential made once by the CLI and kept in the demo data folder."""
        path = data / f"demo-{name}.key"
        if not path.exists():
            made = subprocess.run(
                [python, "-m", "gateway", *command, "--data-dir", str(data)],
                cwd=ROOT, capture_output=True, text=True, check=True, env=env,
            )
            path.write_text(made.stdout.strip().splitlines()[-1] + "\n", encoding="utf-8")
            path.chmod(0o600)
        return path.read_text(encoding="utf-8").strip()

    key = secret("client", "clients", "add", "demo-window")
    operator = secret("operator", "operators", "add", "demo-operator", "--role", "operator")
    approver = secret("approver", "operators", "add", "demo-approver", "--role", "approver")
    auditor = secret("auditor", "operators", "add", "demo-auditor", "--role", "auditor")
    library = data / "demo-licences.jsonl"
    if not library.exists():
        print("filling Huzhou's demo licence library (10,000 licences) ...", flush=True)
        subprocess.run(
            [python, "-m", "gateway", "licences", "demo", "--count", "10000",
             "--data-dir", str(data)], cwd=ROOT, check=True, env=env,
            stdout=subprocess.DEVNULL,
        )
    today = time.strftime("%Y-%m-%d")
    huzhou_licence = next(
        row for row in map(json.loads, library.read_text(encoding="utf-8").splitlines())
        if row.get("state") == "valid" and (row.get("valid_until") or "9999") >= today)
    base = f"http://{args.listen}"
    config = data / "gateway.toml"
    # The demo lets one approver apply a change; production keeps the default of two.
    # The licences and the status list the gateway signs name the URL printed below.
    config.write_text(f"[gateway]\napprovals_required = 1\npublic_url = {json.dumps(base)}\n",
                      encoding="utf-8")

    gateway = subprocess.Popen(
        [python, "-m", "gateway", "serve", "--listen", args.listen, "--data-dir", str(data),
         "--trust-list", str(trust_list), "--config", str(config)],
        cwd=ROOT, env=env,
    )
    python_cmd = os.path.relpath(python, ROOT) if python.startswith(str(ROOT)) else python
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        if not _wait_http(f"{base}/healthz", 30):
            print("the gateway did not start; see its log above", file=sys.stderr)
            return 1
        sample = json.loads(samples.read_text(encoding="utf-8").splitlines()[0])
        body = shlex.quote(json.dumps({"credential": sample["token"],
                                       "use_cause": "办理跨省通办事项"}, ensure_ascii=False))
        _, first_name, first_url = regions[0]
        print("\n=== Huzhou e-licence gateway is running ===")
        print(f"gateway:  {base}   data folder: {data}")
        print("partner regions (mock):")
        for code, name, url in regions:
            print(f"  {code} {name:<6} {url}")
        print("\nTry:")
        print(f"  curl -s {base}/healthz")
        print(f"  curl -s {base}/readyz")
        print(f"  curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' "
              f"-d {body} {base}/v1/verifications")
        print(f"  curl -s {base}/.well-known/jwks.json")
        print(f"  curl -s {base}/v1/audit/checkpoint")
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
        while not stopping and gateway.poll() is None and mocks.poll() is None:
            time.sleep(0.3)
    finally:
        for proc in (gateway, mocks):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (gateway, mocks):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
