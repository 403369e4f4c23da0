"""JSON in and out of handlers: bounded bodies, problem bodies for bad input."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import hdrs, web
from multidict import CIMultiDict

from gateway.web.problems import Problem

__all__ = ["bad_request", "declared_json", "json_bytes_response", "json_response", "not_json",
           "parse_json", "read_batch_items", "read_body", "read_json"]


def bad_request(detail: str, *, index: int | None = None) -> Problem:
    """A 400 problem (national status 12, a required parameter missing or wrong)."""
    where = "" if index is None else f"items[{index}]: "
    return Problem(400, "Bad request", where + detail, kind="bad-request",
                   extra={"cn_status": 12})


def declared_json(request: web.Request) -> bool:
    """Whether the body is declared JSON: ``application/json`` or a ``+json`` type (RFC 6839)."""
    raw = request.headers.get(hdrs.CONTENT_TYPE)
    known = _declared.get(raw) if raw is not None else None
    if known is None:
        media = request.content_type.lower()
        known = media == "application/json" or (media.startswith("application/")
                                                and media.endswith("+json"))
        if raw is not None and len(raw) <= 200:
            if len(_declared) >= 256:
                _declared.clear()
            _declared[raw] = known
    return known


_declared: dict[str, bool] = {}
"""``declared_json`` by the ``Content-Type`` header as sent: a client sends the same one
with every request, and parsing it (media type and parameters) is a cost of each."""


def not_json(request: web.Request) -> Problem:
    """The 415 problem for a body not declared JSON."""
    sent = request.headers.get("Content-Type")
    return Problem(415, "Unsupported media type",
                   "the body must be declared JSON (Content-Type: application/json); "
                   + ("it had no Content-Type" if sent is None else f"it was {sent[:100]!r}"),
                   headers={"Accept-Post": "application/json"}, extra={"cn_status": 12})


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, declared JSON and at most ``limit`` bytes (415, 413), unparsed."""
    if not declared_json(request):
        raise not_json(request)
    content = request.content
    if content.is_eof() and not content.exception():
        # The whole body has arrived (a small request comes in one segment): take it as
        # it is, without ``read``'s loop of awaits and its copies, and measure it below.
        # The body is consumed: nothing reads it twice.
        body = content.read_nowait()
    else:
        if request.content_length is not None and request.content_length > limit:
            raise Problem(413, "Payload too large", f"request body exceeds {limit} bytes")
        body = await request.read()
    if len(body) > limit:
        raise Problem(413, "Payload too large", f"request body exceeds {limit} bytes")
    return body


def parse_json(body: bytes) -> Any:
    """``body`` parsed as JSON, or a 400 problem."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"body is not JSON: {exc}") from exc


async def read_json(request: web.Request, limit: int) -> Any:
    """The request body parsed as JSON.

    415 when the body is not declared JSON (``Content-Type``), 413 over ``limit``
    bytes, 400 when it is not JSON.
    """
    return parse_json(await read_body(request, limit))


async def read_batch_items(request: web.Request, *, limit: int, max_items: int,
                           what: str) -> list[Any]:
    """The ``items`` of a ``{"items": [...]}`` batch body, bounded in bytes and count."""
    body = await read_json(request, limit)
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise bad_request(f'body must be {{"items": [<{what}>, ...]}}')
    if len(items) > max_items:
        raise bad_request(f"at most {max_items} items per batch")
    return items


def json_response(data: Any, status: int = 200) -> web.Response:
    """An ``application/json`` response serialised by orjson."""
    return json_bytes_response(orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE), status)


_JSON_HEADERS = CIMultiDict({"Content-Type": "application/json"})
"""Copied into each response (``web.Response`` copies what it is given): a third cheaper
than ``content_type=``, which parses and sets the header per response."""


def json_bytes_response(body: bytes, status: int = 200) -> web.Response:
    """An ``application/json`` response of JSON already serialised."""
    return web.Response(body=body, status=status, headers=_JSON_HEADERS)
