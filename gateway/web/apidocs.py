"""The described API: ``GET /openapi.json`` and a page for people at ``GET /docs/``.

The OpenAPI 3.1 document is written by hand beside this module (``openapi.json``)
and read once at start-up; ``tests/gateway/test_openapi.py`` fails when it and the
router drift apart, and ``tests/gateway/test_openapi_fuzz.py`` runs schemathesis
against a running gateway to hold every answer to it.

The page is rendered here, on the server, from the same document: plain HTML and
one stylesheet shipped in this package (``apidocs.css``), no script, nothing
fetched from elsewhere (the gateway runs offline). A bundled JavaScript viewer
(Swagger UI, Redoc) would weigh about a megabyte of third-party code to keep
current for a page that only has to list some forty operations.
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

__all__ = [
    "DOCS_PATH",
    "OPENAPI_PATH",
    "UNDOCUMENTED",
    "UNDOCUMENTED_PREFIXES",
    "ApiDocs",
    "load_docs",
    "setup",
]

OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs/"
_CSS_PATH = "/docs/apidocs.css"
_HERE = Path(__file__).resolve().parent

UNDOCUMENTED: Mapping[str, str] = {
    DOCS_PATH: "the page for people that renders this document: HTML, not an API",
    "/docs": "a redirect to /docs/ for a URL typed without its slash",
    _CSS_PATH: "the stylesheet of that page, shipped in the package",
}
"""Routes deliberately absent from the document, each with its reason. (aiohttp
also answers ``HEAD`` on every ``GET`` route; the document lists the ``GET``.)"""

UNDOCUMENTED_PREFIXES: Mapping[str, str] = {
    "/console": "the operators' and auditors' console: HTML pages and form posts for "
                "people (docs/console.md), each action a call of the API's own services",
}
"""Route prefixes deliberately absent from the document, each with its reason."""

_HEADERS = {
    # The page runs no script and loads only its own stylesheet.
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "public, max-age=300",
}
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@dataclass(frozen=True, slots=True)
class ApiDocs:
    """What the two routes serve, made once at start-up."""

    document: Mapping[str, Any]
    document_json: bytes
    page: str
    css: bytes


def load_docs(folder: Path = _HERE) -> ApiDocs:
    """Read ``openapi.json`` and ``apidocs.css`` from ``folder`` and render the page
    (blocking file I/O: call it outside the event loop)."""
    raw = (folder / "openapi.json").read_bytes()
    document = orjson.loads(raw)
    if not isinstance(document, dict) or not str(document.get("openapi", "")).startswith("3.1"):
        raise ValueError("openapi.json is not an OpenAPI 3.1 document")
    return ApiDocs(document=document,
                   document_json=orjson.dumps(document, option=orjson.OPT_APPEND_NEWLINE),
                   page=render_page(document), css=(folder / "apidocs.css").read_bytes())


DOCS_KEY = web.AppKey("apidocs", ApiDocs)


async def openapi_json(request: web.Request) -> web.Response:
    """GET /openapi.json: the OpenAPI 3.1 document."""
    return web.Response(body=request.app[DOCS_KEY].document_json,
                        content_type="application/json",
                        headers={"Cache-Control": "public, max-age=300"})


async def docs_page(request: web.Request) -> web.Response:
    """GET /docs/: the document as a page for people."""
    return web.Response(text=request.app[DOCS_KEY].page, content_type="text/html",
                        charset="utf-8", headers=_HEADERS)


async def docs_redirect(_: web.Request) -> web.Response:
    """GET /docs: on to /docs/ (relative, so that it holds behind a path prefix)."""
    return web.Response(status=308, headers={"Location": "docs/"})


async def docs_css(request: web.Request) -> web.Response:
    """GET /docs/apidocs.css: the page's stylesheet."""
    return web.Response(body=request.app[DOCS_KEY].css, content_type="text/css",
                        charset="utf-8", headers=_HEADERS)


async def _docs_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: read and render the document once, off the event loop."""
    app[DOCS_KEY] = await asyncio.get_running_loop().run_in_executor(None, load_docs)
    yield


def setup(app: web.Application) -> None:
    """Add ``/openapi.json``, ``/docs/`` (and ``/docs``, a redirect to it) and the page's
    stylesheet to ``app``. The page names both by relative URLs, so that it works behind
    a proxy that adds a path prefix."""
    app.cleanup_ctx.append(_docs_ctx)
    app.router.add_get(OPENAPI_PATH, openapi_json)
    app.router.add_get(DOCS_PATH, docs_page)
    app.router.add_get("/docs", docs_redirect)
    app.router.add_get(_CSS_PATH, docs_css)


# ---------------------------------------------------------------- the page

_CODE = re.compile(r"`([^`]+)`")
_REF = re.compile(r"&quot;#/components/(schemas|responses)/([A-Za-z0-9_]+)&quot;")


def _text(value: object) -> str:
    """Escaped prose, with `code` spans."""
    return _CODE.sub(r"<code>\1</code>", html.escape(str(value or "")))


def _anchor(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", "-".join(parts)).strip("-")


def _json_block(value: object) -> str:
    """Pretty JSON, escaped, its ``$ref`` targets made links."""
    text = html.escape(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())
    return "<pre>" + _REF.sub(
        lambda m: f'<a href="#{_anchor(m.group(1), m.group(2))}">&quot;#/components/'
                  f'{m.group(1)}/{m.group(2)}&quot;</a>', text) + "</pre>"


def _security(document: Mapping[str, Any], operation: Mapping[str, Any]) -> str:
    requirements = operation.get("security", document.get("security", []))
    names = [name for requirement in requirements for name in requirement]
    if not names:
        return "<p class=auth>Public: no credential.</p>"
    roles = operation.get("x-roles")
    who = "" if not roles else " (roles: " + ", ".join(
        f"<code>{html.escape(r)}</code>" for r in roles) + ")"
    links = ", ".join(f'<a href="#{_anchor("security", n)}"><code>{html.escape(n)}</code></a>'
                      for n in names)
    return f"<p class=auth>Credential: {links}{who}.</p>"


def _parameters(operation: Mapping[str, Any]) -> str:
    params = operation.get("parameters", [])
    if not params:
        return ""
    rows = "".join(
        f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{html.escape(p['in'])}</td>"
        f"<td>{'yes' if p.get('required') else 'no'}</td>"
        f"<td><code>{html.escape(orjson.dumps(p.get('schema', {})).decode())}</code></td>"
        f"<td>{_text(p.get('description'))}</td></tr>" for p in params)
    return ("<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>required</th>"
            f"<th>schema</th><th>description</th></tr>{rows}</table>")


def _content(content: Mapping[str, Any]) -> str:
    out = []
    for media, spec in content.items():
        out.append(f"<p class=media><code>{html.escape(media)}</code></p>")
        if "schema" in spec:
            out.append(_json_block(spec["schema"]))
        if "example" in spec:
            out.append("<p class=label>Example</p>" + _json_block(spec["example"]))
    return "".join(out)


def _operation(document: Mapping[str, Any], path: str, method: str,
               operation: Mapping[str, Any]) -> str:
    anchor = _anchor("op", method, path)
    parts = [(f'<section class=op id="{anchor}"><h3><span class="method {method}">'
              f"{method.upper()}</span> <code>{html.escape(path)}</code> "
              f'<a class=self href="#{anchor}">#</a></h3>'),
             f"<p class=summary>{_text(operation.get('summary'))}</p>",
             f"<p>{_text(operation.get('description'))}</p>",
             _security(document, operation), _parameters(operation)]
    body = operation.get("requestBody")
    if body:
        required = "required" if body.get("required") else "optional"
        parts.append(f"<h4>Request body ({required})</h4>" + _content(body.get("content", {})))
    parts.append("<h4>Answers</h4><dl>")
    for status, answer in operation.get("responses", {}).items():
        if "$ref" in answer:
            name = answer["$ref"].rsplit("/", 1)[-1]
            target = document["components"]["responses"][name]
            parts.append(f"<dt>{html.escape(status)}</dt><dd>{_text(target.get('description'))}"
                         f' (<a href="#{_anchor("responses", name)}">problem</a>)</dd>')
        else:
            parts.append(f"<dt>{html.escape(status)}</dt><dd>{_text(answer.get('description'))}"
                         f"{_content(answer.get('content', {}))}</dd>")
    parts.append("</dl></section>")
    return "".join(parts)


def render_page(document: Mapping[str, Any]) -> str:
    """The whole document as one HTML page (no script)."""
    info = document.get("info", {})
    by_tag: dict[str, list[tuple[str, str, Mapping[str, Any]]]] = {
        tag["name"]: [] for tag in document.get("tags", [])}
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            if method in item:
                tag = (item[method].get("tags") or ["other"])[0]
                by_tag.setdefault(tag, []).append((path, method, item[method]))
    tags = {tag["name"]: tag.get("description", "") for tag in document.get("tags", [])}
    nav = "".join(
        f'<li><a href="#{_anchor("tag", tag)}">{html.escape(tag)}</a><ul>' + "".join(
            f'<li><a href="#{_anchor("op", m, p)}"><span class="method {m}">{m.upper()}</span> '
            f"{html.escape(p)}</a></li>" for p, m, _ in ops) + "</ul></li>"
        for tag, ops in by_tag.items() if ops)
    sections = "".join(
        f'<section id="{_anchor("tag", tag)}"><h2>{html.escape(tag)}</h2>'
        f"<p>{_text(tags.get(tag))}</p>"
        + "".join(_operation(document, p, m, op) for p, m, op in ops) + "</section>"
        for tag, ops in by_tag.items() if ops)
    components = document.get("components", {})
    schemes = "".join(
        f'<section id="{_anchor("security", name)}"><h3><code>{html.escape(name)}</code></h3>'
        f"<p>{_text(scheme.get('description'))}</p>{_json_block(scheme)}</section>"
        for name, scheme in components.get("securitySchemes", {}).items())
    reference = "".join(
        f'<section id="{_anchor(kind, name)}"><h3><code>{html.escape(name)}</code></h3>'
        f"{_json_block(value)}</section>"
        for kind in ("responses", "schemas")
        for name, value in components.get(kind, {}).items())
    title = html.escape(str(info.get("title", "API")))
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f'<title>{title}</title><link rel=stylesheet href="apidocs.css"></head><body>'
        f"<nav><p><a href=\"#top\">{title}</a></p><ul>{nav}</ul>"
        '<p><a href="#security">Credentials</a> · <a href="#reference">Schemas</a></p></nav>'
        f'<main id="top"><h1>{title} <small>{html.escape(str(info.get("version", "")))}</small>'
        f"</h1><p>{_text(info.get('description'))}</p>"
        f'<p>The machine-readable document: <a href="..{OPENAPI_PATH}"><code>{OPENAPI_PATH}'
        f"</code></a> (OpenAPI {html.escape(str(document.get('openapi')))}).</p>"
        f'{sections}<section id="security"><h2>Credentials</h2>{schemes}</section>'
        f'<section id="reference"><h2>Problem answers and schemas</h2>{reference}</section>'
        "</main></body></html>\n")
