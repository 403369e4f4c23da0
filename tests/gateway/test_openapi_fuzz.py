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

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core import NotSet

from gateway.web.apidocs import load_docs
from mocks import Federation
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.allow_blocking]

MAX_EXAMPLES = 25
"""Generated requests per operation and mode: about 40 operations, two modes, bounded
to a minute or two on a 2-core machine."""

ROLE_PREFERENCE = ("approver", "auditor", "operator", "viewer", "metrics")
"""The token sent to an operator operation: the first role here that its x-roles admit."""

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
"""What every answer is held to. Not schemathesis's ``negative_data_rejection`` (invalid
input must be refused): a query parameter given twice is read by its first value, as
aiohttp's ``request.query.get`` does, so ``?days=&days=x`` is answered as ``?days=``;
that check counts it as invalid input accepted. Invalid requests are still sent (the
negative mode) and their answers held to the checks above."""


SEED = 24
"""The mock federation's seed: the test process rebuilds the same partners (keys
included) to sign partner request tokens."""
PARTNER = "310000"
"""The partner region whose request tokens sign the partner queries."""


@dataclass(frozen=True, slots=True)
class Gateway:
    """A running gateway, the credentials made for it, and licences to send it."""

    base: str
    client_key: str
    tokens: dict[str, str]
    partner_licences: list[dict[str, Any]]
    """Partner licences the mock federation issued (``token``, ``state``, ...)."""
    huzhou_licences: list[dict[str, Any]]
    """Huzhou's demo licences, as imported (``identifier``, ``state``, ...)."""


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
        [sys.executable, "-m", "mocks", "--seed", str(SEED), "--trust-list-out", str(trust),
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
        yield Gateway(base, client_key, tokens,
                      [orjson.loads(line) for line in samples.read_text("utf-8").splitlines()],
                      [orjson.loads(line) for line in
                       (data / "demo-licences.jsonl").read_text("utf-8").splitlines()])
    finally:
        if gateway_proc is not None:
            _stop(gateway_proc)
        _stop(mocks)


@pytest.fixture(scope="module")
def api_schema(gateway: Gateway) -> schemathesis.BaseSchema:
    """The document as the running gateway serves it."""
    schema = schemathesis.openapi.from_url(f"{gateway.base}/openapi.json")
    schema.config.update(base_url=gateway.base)
    return schema


_PARTNERS = Federation.standard(seed=SEED, codes=[PARTNER])


def _body_bytes(case: schemathesis.Case[Any]) -> bytes | None:
    """The exact bytes of the case's JSON body (None: no body), as they will be sent."""
    if isinstance(case.body, NotSet):
        return None
    if isinstance(case.body, bytes):
        return case.body
    return json.dumps(case.body).encode()


def _send(gateway: Gateway, case: schemathesis.Case[Any]) -> dict[str, Any]:
    """The keyword arguments that send ``case`` with the credential its operation's
    ``security`` names: a local system's key; an operator token of the first role in
    ``ROLE_PREFERENCE`` that ``x-roles`` admits; a partner request token signed over
    the method, path and exact body, as a partner region would; none when public."""
    operation = case.operation.definition.raw
    names = {name for requirement in operation.get("security", []) for name in requirement}
    if "localSystemKey" in names:
        return {"headers": {"Authorization": f"Bearer {gateway.client_key}"}}
    if "operatorToken" in names:
        role = next(r for r in ROLE_PREFERENCE if r in operation["x-roles"])
        return {"headers": {"Authorization": f"Bearer {gateway.tokens[role]}"}}
    if "partnerRequestToken" in names:
        body = _body_bytes(case)
        token = _PARTNERS[PARTNER].request_token(body=body or b"", path=case.formatted_path,
                                                 method=case.method.upper())
        sent: dict[str, Any] = {"headers": {"Authorization": f"Bearer {token}"}}
        if body is not None:
            sent["data"] = body
        return sent
    return {}


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

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    def run(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(checks=CHECKS, timeout=30, **_send(gateway, case))

    run()


def test_real_licences_answer_as_documented(api_schema: schemathesis.BaseSchema,
                                            gateway: Gateway) -> None:
    """Partner licences of every state (valid, revoked, suspended, lenient identifier)
    verified one by one and in a batch, and partner queries of Huzhou licences of every
    state, are answered as the document says (the fuzzer's licences are rarely genuine)."""
    verify = api_schema["/v1/verifications"]["post"]
    items: list[Any] = [{"credential": sample["token"], "use_cause": "办理跨省通办事项",
                         "matter": {"region": "330500", "code": "许可-00393-002"}}
                        for sample in gateway.partner_licences]
    states = set()
    for item, sample in zip(items, gateway.partner_licences, strict=True):
        case = verify.Case(body=item, media_type="application/json")
        response = case.call_and_validate(checks=CHECKS, timeout=30, **_send(gateway, case))
        states.add((sample["state"], response.json()["indication"]))
    assert ("valid", "TOTAL_PASSED") in states
    batch = api_schema["/v1/verifications/batch"]["post"].Case(
        body={"items": items}, media_type="application/json")
    batch.call_and_validate(checks=CHECKS, timeout=60, **_send(gateway, batch))
    query = api_schema["/v1/partner/licences/query"]["post"]
    found = set()
    by_state = {row["state"]: row for row in gateway.huzhou_licences}
    for state, row in sorted(by_state.items()):
        case = query.Case(body={"identifier": row["identifier"], "use_cause": "办理跨省通办事项",
                                "matter": {"region": PARTNER, "code": "310000-20-SFJ-0001"}},
                          media_type="application/json")
        response = case.call_and_validate(checks=CHECKS, timeout=30, **_send(gateway, case))
        found.add((state, response.status_code, response.json().get("cn_status")))
    assert any(status == 200 and cn == 0 for _, status, cn in found), found


def test_refusals_answer_as_documented(api_schema: schemathesis.BaseSchema,
                                       gateway: Gateway) -> None:
    """Every operation that needs a credential, asked without one, with one that is no
    credential of ours, and (operator operations) with a role its x-roles leaves out,
    answers 401 or 403 as the document says (the fuzz above always sends the right one)."""
    refused = 0
    for method, path, _ in [c for c in _cases() if c[2] is GenerationMode.POSITIVE]:
        operation = api_schema[path][method]
        raw = operation.definition.raw
        if not raw.get("security"):
            continue
        examples = {p["name"]: p["example"] for p in raw.get("parameters", [])
                    if p["in"] == "path"}
        wrong = [{}, {"Authorization": "Bearer ecg_c_not-a-key"}]
        if "x-roles" in raw:
            wrong += [{"Authorization": f"Bearer {gateway.tokens[role]}"}
                      for role in ROLE_PREFERENCE if role not in raw["x-roles"]]
        for headers in wrong:
            # A body declared JSON: the partner endpoint judges the Content-Type and size
            # before the token, whose body_sha256 it checks against the bytes read.
            case = (operation.Case(path_parameters=examples, body={},
                                   media_type="application/json")
                    if "requestBody" in raw else operation.Case(path_parameters=examples))
            response = case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)
            assert response.status_code in (401, 403), (method, path, response.status_code)
            refused += 1
    assert refused > 60
