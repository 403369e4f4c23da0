"""One table maps domain errors to HTTP answers (``gateway.web.problems.ERROR_STATUS``)."""

from __future__ import annotations

import ast
from collections.abc import Awaitable, Callable
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.audit._prune import PruneError, PruneRefusal
from gateway.audit._service import LogIntegrityError
from gateway.audit._tree import TreeError
from gateway.audit.event import AuditUnavailableError
from gateway.cases.service import CaseError, UnknownCaseError
from gateway.credentials.store import (
    CredentialError,
    CredentialRefusal,
    Identity,
    IdentityError,
    IdentityKind,
    IdentityRefusal,
    Role,
)
from gateway.infra.redislink import RedisUnavailableError
from gateway.licences.store import LicenceStoreError
from gateway.trustlist.service import (
    AdminError,
    AdminRefusal,
    StoreConflictError,
    TrustStoreError,
)
from gateway.web.middleware import request_middleware
from gateway.web.problems import ERROR_STATUS, PROBLEM_BASE
from registry import CodeFormatError, UnknownCodeError, UnknownRegionError
from trust import ChangeError, ImportRefusal, SignedListError

ROOT = Path(__file__).resolve().parents[2]
Client = TestClient[web.Request, web.Application]

_OLGA = Identity(IdentityKind.OPERATOR, "olga", Role.VIEWER)


Example = tuple[Exception, dict[str, Any]]


def _admin(refusal: AdminRefusal) -> Example:
    return AdminError(refusal, f"refused: {refusal.value}"), {"reason": refusal.value}


def _import(refusal: ImportRefusal) -> Example:
    return SignedListError(refusal, f"refused: {refusal.value}"), {"reason": refusal.value}


def _identity(refusal: IdentityRefusal) -> Example:
    return IdentityError(f"refused: {refusal.value}", refusal), {"reason": refusal.value}


def _prune(refusal: PruneRefusal) -> Example:
    return PruneError(refusal, f"refused: {refusal.value}"), {"reason": refusal.value}


def _credential(refusal: CredentialRefusal) -> Example:
    return CredentialError(refusal, "an operator token is required", identity=_OLGA,
                           roles=frozenset({Role.APPROVER})), {}


EXAMPLES: dict[type[Exception] | Enum, Callable[[], Example]] = {
    AuditUnavailableError: lambda: (AuditUnavailableError("audit record not written"), {}),
    TreeError: lambda: (TreeError("no tree of size 9; the log has 5"), {}),
    TrustStoreError: lambda: (TrustStoreError("database is locked"), {}),
    ChangeError: lambda: (ChangeError(["unknown region", "empty kid"]),
                          {"problems": ["unknown region", "empty kid"]}),
    CodeFormatError: lambda: (CodeFormatError("GB/T 1", "X-1", "too short"),
                              {"scheme": "GB/T 1", "code": "X-1"}),
    UnknownRegionError: lambda: (UnknownRegionError("999999", "matter"), {"region": "999999"}),
    UnknownCodeError: lambda: (UnknownCodeError("330500", "M-9"),
                               {"region": "330500", "code": "M-9"}),
    LicenceStoreError: lambda: (LicenceStoreError("the licence store is down"), {}),
    UnknownCaseError: lambda: (UnknownCaseError("unknown bundle open-bakery"), {}),
    CaseError: lambda: (CaseError("applicant.person must be an 18-character 身份证号"), {}),
    RedisUnavailableError: lambda: (RedisUnavailableError("console sessions unavailable"), {}),
    **{refusal: partial(_admin, refusal) for refusal in AdminRefusal},
    **{refusal: partial(_import, refusal) for refusal in ImportRefusal},
    **{refusal: partial(_identity, refusal) for refusal in IdentityRefusal},
    **{refusal: partial(_credential, refusal) for refusal in CredentialRefusal},
    **{refusal: partial(_prune, refusal) for refusal in PruneRefusal},
}
"""An error for every entry of the table, with the problem members its data gives."""


def _app(error: Exception) -> web.Application:
    async def failing(_: web.Request) -> web.Response:
        raise error

    app = web.Application(middlewares=[request_middleware])
    app.router.add_get("/", failing)
    return app


Start = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
def start(aiohttp_client: Callable[..., Awaitable[Client]]) -> Start:
    """Serve an app in the test client."""
    return aiohttp_client


def test_every_entry_has_an_example() -> None:
    """The table and this test change together; every refusal of every enum is listed."""
    assert set(ERROR_STATUS) == set(EXAMPLES)


@pytest.mark.parametrize("key", list(EXAMPLES), ids=str)
async def test_each_error_answers_its_entry(key: type[Exception] | Enum, start: Start) -> None:
    """Raised by a handler, the error answers the table's status, title and problem type,
    with its data as members and its message as the detail (a fixed one for 401s)."""
    error, members = EXAMPLES[key]()
    answer = ERROR_STATUS[key]
    client = await start(_app(error))
    response = await client.get("/")
    body = await response.json(content_type="application/problem+json")
    assert (answer.status, answer.title, PROBLEM_BASE + answer.kind) \
        == (response.status, body["title"], body["type"])
    assert (answer.detail or str(error)) == body["detail"]
    assert members == {k: v for k, v in body.items()
                       if k not in {"type", "title", "status", "detail", "request_id"}}
    assert all(response.headers[name] == value for name, value in answer.headers.items())


@pytest.mark.parametrize(("error", "status"), [
    (LogIntegrityError("checkpoint does not verify"), 503),
    (StoreConflictError("the proposal changed meanwhile"), 503),
    (SignedListError(ImportRefusal.ROLLBACK, "version 2 is below 3"), 409),
    (CredentialError(CredentialRefusal.UNKNOWN, "not a token"), 401),
    (CredentialError(CredentialRefusal.ROLE, "olga is viewer", identity=_OLGA), 403),
    (IdentityError("schema 9", IdentityRefusal.SCHEMA), 503),
    (KeyError("a bug"), 500),
])
async def test_statuses_operators_rely_on(error: Exception, status: int, start: Start) -> None:
    """A subclass answers as its base; a refusal by its value; anything else is a 500."""
    client = await start(_app(error))
    assert status == (await client.get("/")).status


async def test_an_unknown_token_is_challenged(start: Start) -> None:
    """401 carries the Bearer challenge and never says why the token was refused."""
    client = await start(_app(CredentialError(CredentialRefusal.UNKNOWN, "olga is disabled")))
    response = await client.get("/")
    body = await response.json(content_type="application/problem+json")
    assert ('Bearer realm="ecert-gateway"', "an operator token is required") \
        == (response.headers["WWW-Authenticate"], body["detail"])


def _handlers_building_problems(path: Path) -> list[str]:
    """``except X: raise Problem(...)`` clauses: a domain error mapped by hand. Parsing
    errors of the request itself (``ValueError`` and the like) are the routes' to map."""
    parsing = {"ValueError", "JSONDecodeError", "AttributeError", "UnicodeDecodeError"}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for handler in ast.walk(tree):
        if not isinstance(handler, ast.ExceptHandler) or handler.type is None:
            continue
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        names = {t.attr if isinstance(t, ast.Attribute) else getattr(t, "id", "") for t in types}
        builds = any(isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Problem"
                     for node in ast.walk(handler))
        if builds and not names <= parsing:
            found.append(f"{path.relative_to(ROOT)}:{handler.lineno}")
    return found


# Partner queries answer with national status codes; their routes are reshaped on their own.
_ELSEWHERE = {"gateway/partner/routes.py"}


def test_routes_leave_domain_errors_to_the_table() -> None:
    """No route (nor the credential check) turns a domain error into a problem itself."""
    paths = [*ROOT.glob("gateway/*/routes.py"), ROOT / "gateway" / "web" / "auth.py"]
    offenders = [line for path in sorted(paths)
                 if str(path.relative_to(ROOT)) not in _ELSEWHERE
                 for line in _handlers_building_problems(path)]
    assert [] == offenders
