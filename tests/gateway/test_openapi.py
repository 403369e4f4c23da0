"""The described API: the OpenAPI document is valid, in step with the router and with the
roles the server enforces, and served at /openapi.json and /docs/."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.credentials.store import IdentityKind, Role, add_identity
from gateway.settings import load_settings
from gateway.web.apidocs import (
    DOCS_PATH,
    OPENAPI_PATH,
    UNDOCUMENTED,
    UNDOCUMENTED_PREFIXES,
    load_docs,
)
from gateway.web.app import create_app
from tests.gateway.conftest import AppFactory

Client = TestClient[web.Request, web.Application]
METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")


_DOCUMENT = load_docs().document
"""Read once, at collection (the tests that use it run in the event loop)."""


def _document() -> dict[str, Any]:
    assert isinstance(_DOCUMENT, dict)
    return _DOCUMENT


def _documented() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in _document()["paths"].items()
            for method in METHODS if method in item}


def _routed(app: web.Application) -> set[tuple[str, str]]:
    """(method, canonical path) of every route, less the HEAD aiohttp adds to each GET."""
    routes = {(route.method, route.resource.canonical)
              for route in app.router.routes() if route.resource is not None}
    return {(method, path) for method, path in routes
            if not (method == "HEAD" and ("GET", path) in routes)}


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, item[method]) for path, item in _document()["paths"].items()
            for method in METHODS if method in item]


def _example_path(path: str, operation: dict[str, Any]) -> str:
    """``path`` with each parameter replaced by its documented example."""
    examples = {p["name"]: str(p["example"]) for p in operation.get("parameters", [])
                if p["in"] == "path"}
    return re.sub(r"\{([^}]+)\}", lambda m: examples[m.group(1)], path)


class TestDocumentAndRouter:
    """Every route is documented, every documented operation is routed."""

    def test_every_route_in_the_document_and_every_operation_in_the_router(
            self, tmp_path: Path) -> None:
        """The router's (method, path) pairs are the document's, less the listed exceptions."""
        app = create_app(load_settings({}, None, {"data_dir": tmp_path}))
        routed = {(method, path) for method, path in _routed(app)
                  if not any(path == prefix or path.startswith(prefix + "/")
                             for prefix in UNDOCUMENTED_PREFIXES)}
        left_out = {("GET", path) for path in UNDOCUMENTED}
        assert left_out <= routed, "an exception names a route that no longer exists"
        assert set() == (routed - left_out) - _documented(), "routes missing from the document"
        assert set() == _documented() - routed, "documented operations the router lacks"

    def test_document_is_valid_openapi_3_1(self) -> None:
        """The document validates against the OpenAPI 3.1 schema (schemathesis's copy)."""
        document = _document()
        assert document["openapi"].startswith("3.1")
        schemathesis.openapi.from_dict(document).validate()

    def test_every_operation_is_described(self) -> None:
        """Each operation has a unique id, a summary, its own security and a 2xx answer."""
        ids = [op["operationId"] for _, _, op in _operations()]
        assert len(ids) == len(set(ids))
        schemes = set(_document()["components"]["securitySchemes"])
        for method, path, op in _operations():
            assert op.get("summary"), (method, path)
            assert "security" in op, (method, path)
            assert {name for req in op["security"] for name in req} <= schemes
            assert any(code.startswith("2") for code in op["responses"]), (method, path)
            if op["security"] == [{"operatorToken": []}]:
                assert set(op["x-roles"]) <= {role.value for role in Role}, (method, path)


class TestDocumentAndRoles:
    """The credentials and roles the document names are the ones the server enforces."""

    async def test_operator_roles_are_the_documented_ones(
            self, gateway_client: AppFactory, tmp_path: Path) -> None:
        """For every operator operation, each role is refused (403) exactly when the
        document's ``x-roles`` leaves it out; a local system's key is 401."""
        tokens = {role: await asyncio.to_thread(add_identity, tmp_path, IdentityKind.OPERATOR,
                                                f"who-{role.value}", role) for role in Role}
        key = await asyncio.to_thread(add_identity, tmp_path, IdentityKind.CLIENT, "w-1")
        client = await gateway_client()
        checked = 0
        for method, path, op in _operations():
            if op["security"] != [{"operatorToken": []}]:
                continue
            url = _example_path(path, op)
            for role, token in tokens.items():
                response = await client.request(method.upper(), url,
                                                headers={"Authorization": f"Bearer {token}"})
                await response.read()
                expected_refused = role.value not in op["x-roles"]
                assert expected_refused == (403 == response.status), (method, path, role)
                checked += 1
            response = await client.request(method.upper(), url,
                                            headers={"Authorization": f"Bearer {key}"})
            assert 401 == response.status, (method, path)
        assert checked > 0

    async def test_local_system_operations_take_the_key_alone(
            self, gateway_client: AppFactory, tmp_path: Path) -> None:
        """Operations documented for local systems refuse an operator's token (401) and
        admit a local system's key (not 401)."""
        operator = await asyncio.to_thread(add_identity, tmp_path, IdentityKind.OPERATOR,
                                           "who-approver", Role.APPROVER)
        key = await asyncio.to_thread(add_identity, tmp_path, IdentityKind.CLIENT, "w-1")
        client = await gateway_client()
        for method, path, op in _operations():
            if op["security"] != [{"localSystemKey": []}]:
                continue
            url = _example_path(path, op)
            refused = await client.request(method.upper(), url,
                                           headers={"Authorization": f"Bearer {operator}"})
            assert 401 == refused.status, (method, path)
            admitted = await client.request(method.upper(), url,
                                            headers={"Authorization": f"Bearer {key}"})
            assert 401 != admitted.status, (method, path)

    async def test_public_operations_need_no_credential(self, gateway_client: AppFactory) -> None:
        """Operations documented as public answer without a credential (never 401 or 403)."""
        client = await gateway_client()
        for method, path, op in _operations():
            if op["security"] != [] or method != "get":
                continue
            response = await client.get(_example_path(path, op))
            assert response.status not in (401, 403), (method, path)


class TestServed:
    """The document and the page, as served."""

    async def test_openapi_json_is_the_document(self, gateway_client: AppFactory) -> None:
        """GET /openapi.json answers the document, as JSON."""
        client = await gateway_client()
        response = await client.get(OPENAPI_PATH)
        assert 200 == response.status
        assert "application/json" == response.content_type
        assert _document() == orjson.loads(await response.read())

    async def test_docs_page_lists_every_operation_and_loads_only_its_own_css(
            self, gateway_client: AppFactory) -> None:
        """GET /docs/ is HTML naming every operation, with no script and no outside URL;
        its stylesheet is served from the package."""
        client = await gateway_client()
        response = await client.get(DOCS_PATH)
        assert 200 == response.status
        assert "text/html" == response.content_type
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        page = await response.text()
        for method, path, _ in _operations():
            assert f">{method.upper()}</span> <code>{path}</code>" in page, (method, path)
        assert "<script" not in page
        ids = re.findall(r'id="([^"]+)"', page)
        assert len(ids) == len(set(ids)), "two sections share an anchor"
        for target in re.findall(r'href="#([^"]+)"', page):
            assert target in ids, target
        assert re.search(r"""(?:src|href)=["']?(?:https?:)?//""", page) is None
        css = await client.get(DOCS_PATH + "apidocs.css")
        assert 200 == css.status
        assert "text/css" == css.content_type
        assert (await css.read()).startswith(b"/*")
        assert 'href="../openapi.json"' in page

    async def test_docs_without_slash_redirects(self, gateway_client: AppFactory) -> None:
        """GET /docs is a permanent redirect to docs/, relative to it (so /docs/)."""
        client = await gateway_client()
        response = await client.get("/docs", allow_redirects=False)
        assert (308, "docs/") == (response.status, response.headers["Location"])
        followed = await client.get("/docs")
        assert (200, "/docs/") == (followed.status, followed.url.path)

    async def test_the_page_escapes_the_document(self, tmp_path: Path) -> None:
        """Text from the document is escaped, not read as markup."""
        folder = tmp_path / "docs"
        folder.mkdir()
        document = {"openapi": "3.1.0", "info": {"title": "<b>x</b>", "version": "1"},
                    "paths": {"/a": {"get": {"summary": "<script>alert(1)</script>",
                                             "responses": {"200": {"description": "ok"}}}}}}
        await asyncio.to_thread((folder / "openapi.json").write_bytes, orjson.dumps(document))
        await asyncio.to_thread((folder / "apidocs.css").write_bytes, b"/* */")
        page = (await asyncio.to_thread(load_docs, folder)).page
        assert "<script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "&lt;b&gt;x&lt;/b&gt;" in page

    def test_assets_ship_in_the_package(self) -> None:
        """The document and the stylesheet are package files (the wheel carries gateway/)."""
        import gateway.web

        folder = Path(gateway.web.__file__).parent
        assert (folder / "openapi.json").is_file()
        assert (folder / "apidocs.css").is_file()


class TestUndocumentedMethods:
    """A documented path asked with a method the document does not list."""

    async def test_is_a_405_problem(self, gateway_client: AppFactory) -> None:
        """It is refused with 405 and a problem body, as ``MethodNotAllowed`` documents."""
        client = await gateway_client()
        for path, item in _document()["paths"].items():
            method = next(m for m in ("delete", "put", "patch") if m not in item)
            response = await client.request(method.upper(), _example_path(path, item[
                next(m for m in METHODS if m in item)]))
            assert 405 == response.status, (method, path)
            assert "application/problem+json" == response.content_type
            assert 405 == (await response.json())["status"]

    async def test_names_the_allowed_methods(self, gateway_client: AppFactory) -> None:
        """The 405 carries ``Allow`` naming the methods the document lists for the path."""
        client = await gateway_client()
        for path, item in _document()["paths"].items():
            method = next(m for m in ("delete", "put", "patch") if m not in item)
            response = await client.request(method.upper(), _example_path(path, item[
                next(m for m in METHODS if m in item)]))
            allowed = {m.strip() for m in response.headers.get("Allow", "").split(",")}
            documented = {m.upper() for m in METHODS if m in item}
            assert documented <= allowed, (path, response.headers.get("Allow"))


@pytest.mark.parametrize("path", sorted(UNDOCUMENTED))
def test_left_out_routes_have_a_reason(path: str) -> None:
    """Each route left out of the document says why."""
    assert len(UNDOCUMENTED[path]) > 10


def _examples() -> list[tuple[str, Any, dict[str, Any]]]:
    """(where, example, schema) of every example the document gives."""
    found: list[tuple[str, Any, dict[str, Any]]] = []

    def content(where: str, media: dict[str, Any]) -> None:
        for media_type, spec in media.items():
            if "example" in spec and "schema" in spec:
                found.append((f"{where} {media_type}", spec["example"], spec["schema"]))

    for method, path, op in _operations():
        found.extend((f"{method} {path} {param['name']}", param["example"], param["schema"])
                     for param in op.get("parameters", []) if "example" in param)
        content(f"{method} {path} request", op.get("requestBody", {}).get("content", {}))
        for status, answer in op["responses"].items():
            content(f"{method} {path} {status}", answer.get("content", {}))
    for name, answer in _document()["components"]["responses"].items():
        content(f"responses/{name}", answer.get("content", {}))
    return found


@pytest.mark.parametrize(("where", "example", "schema"), _examples(),
                         ids=[where for where, _, _ in _examples()])
def test_examples_match_their_schemas(where: str, example: Any, schema: dict[str, Any]) -> None:
    """Every example in the document is valid against the schema beside it (JSON Schema
    2020-12, references resolved in the document, formats checked)."""
    # The document's references are JSON pointers from its root ("#/components/..."):
    # resolved when the schema is checked beside the document's components.
    validator = jsonschema_rs.Draft202012Validator(
        {**schema, "components": _document()["components"]}, validate_formats=True)
    errors = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(example)]
    assert [] == errors, where
