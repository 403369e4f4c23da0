"""schemathesis against a running gateway: no 5xx, and every answer is as the OpenAPI
document says (status code, content type, headers, body schema).

The gateway is the real command (``python -m gateway serve``) on a free port, on SQLite
in a temporary data folder, trusting the mock federation of ``python -m mocks``, with
Huzhou's demo licence library, a local system's key and an operator token of each role
made by the CLI. Each operation gets a few generated requests (``MAX_EXAMPLES``),
valid and invalid, sent with the credential its ``security`` names (for an operator
operation, a token of a role its ``x-roles`` admits), so the checks reach past 401.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.web.apidocs import load_docs
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.allow_blocking]

MAX_EXAMPLES = 12
"""Generated requests per operation and mode: about 40 operations, two modes, bounded
to a minute or two on a 2-core machine."""

ROLE_PREFERENCE = ("approver", "auditor", "operator", "viewer", "metrics")
"""The token sent to an operator operation: the first role here that its x-roles admit."""

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection]


@dataclass(frozen=True, slots=True)
class Gateway:
    """A running gateway and the credentials made for it."""

    base: str
    client_key: str
    tokens: dict[str, str]


def _cli(data: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "gateway", *args, "--data-dir", str(data)],
                          cwd=ROOT, check=True, capture_output=True, text=True, timeout=120)
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def _wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as resp:  # noqa: S310 - loopback
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the gateway did not come up")


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.stdout is not None:
        proc.stdout.close()
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The real gateway serving on a free port, with the mock federation running."""
    tmp = tmp_path_factory.mktemp("fuzz")
    data, trust, samples = tmp / "data", tmp / "trust.json", tmp / "samples.jsonl"
    env = {**os.environ, "ECERT_LOG_LEVEL": "WARNING"}
    mocks = subprocess.Popen(
        [sys.executable, "-m", "mocks", "--seed", "24", "--trust-list-out", str(trust),
         "--licences-out", str(samples)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    gateway_proc: subprocess.Popen[bytes] | None = None
    try:
        assert mocks.stdout is not None
        for line in mocks.stdout:
            if line.strip() == "ready":
                break
        else:
            raise AssertionError("the mock federation did not start")
        _cli(data, "init")
        client_key = _cli(data, "clients", "add", "fuzz-window")
        tokens = {role: _cli(data, "operators", "add", f"fuzz-{role}", "--role", role)
                  for role in ROLE_PREFERENCE}
        _cli(data, "licences", "demo", "--count", "20", "--quiet")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        gateway_proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--listen", f"127.0.0.1:{port}",
             "--data-dir", str(data), "--trust-list", str(trust)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        _wait_ready(base, gateway_proc)
        yield Gateway(base, client_key, tokens)
    finally:
        if gateway_proc is not None:
            _stop(gateway_proc)
        _stop(mocks)


@pytest.fixture(scope="module")
def api_schema(gateway: Gateway) -> schemathesis.BaseSchema:
    """The document as the running gateway serves it."""
    schema = schemathesis.openapi.from_url(f"{gateway.base}/openapi.json")
    schema.config.update(base_url=gateway.base)
    # Query parameters the document does not name are ignored, as HTTP APIs do; a request
    # that adds some is not "invalid" in a sense the gateway should refuse.
    schema.config.generation.update(allow_extra_parameters=False)
    return schema


def _credential(gateway: Gateway, operation: dict[str, Any]) -> str | None:
    """The credential the operation's ``security`` names (None: public, or a partner's
    request token, which a fuzzer cannot sign)."""
    names = {name for requirement in operation.get("security", []) for name in requirement}
    if "localSystemKey" in names:
        return gateway.client_key
    if "operatorToken" in names:
        role = next(r for r in ROLE_PREFERENCE if r in operation["x-roles"])
        return gateway.tokens[role]
    return None


def _cases() -> list[tuple[str, str, GenerationMode]]:
    """(method, path, mode) of every documented operation, read at collection: positive
    requests for each, and invalid ones for each that takes any input."""
    cases = []
    for path, item in load_docs().document["paths"].items():
        for method, operation in item.items():
            cases.append((method, path, GenerationMode.POSITIVE))
            if operation.get("parameters") or operation.get("requestBody"):
                cases.append((method, path, GenerationMode.NEGATIVE))
    return sorted(cases)


@pytest.mark.parametrize(("method", "path", "mode"), _cases())
def test_answers_match_the_document(api_schema: schemathesis.BaseSchema, gateway: Gateway,
                                    method: str, path: str, mode: GenerationMode) -> None:
    """Every generated request, valid or not, is answered without a 5xx and as documented."""
    operation = api_schema[path][method]
    token = _credential(gateway, operation.definition.raw)
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    def run(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)

    run()
