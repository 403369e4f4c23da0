"""HTTP routes of the matter registry, for local systems.

* ``GET  /v1/catalogues``                  catalogues (and maps) held
* ``GET  /v1/catalogues/coverage?at=``     Huzhou's 跨省通办 matters by best match per partner
* ``GET  /v1/matters/{region}/{code}``     one matter's details (``?at=`` optional)
* ``POST /v1/matters/translate``           one translation
* ``POST /v1/matters/translate/batch``     many, in order

A malformed request is a 400 problem; a code not of its catalogue's shape is
a 400 naming the scheme; a region without a catalogue is a 404. A batch is
checked whole before anything is answered, so it is answered whole or
refused whole. A translation is a look-up of public catalogues and maps: it
is counted on ``/metrics`` (``ecert_translations_total`` by outcome), not
audited per call; it is audited as part of a verification or a partner query
(their records' ``matters_after``), which is where it handles a licence.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
from aiohttp import web

from gateway.matters.service import MatterService, load_service
from gateway.verification.service import utc_now
from gateway.web.appkeys import REGISTRY_KEY, SETTINGS_KEY
from gateway.web.auth import require_client
from gateway.web.httpjson import (
    bad_request,
    json_bytes_response,
    json_response,
    parse_json,
    read_batch_items,
    read_body,
)
from gateway.web.problems import error_problem
from registry import (
    Coverage,
    Period,
    RegistryError,
    Translation,
)

__all__ = ["setup_routes"]

MAX_CODE = 128
MAX_REGION = 16
MAX_CONDITIONS = 16
MAX_CONDITION_KEY = 64
MAX_CONDITION_VALUE = 256
BATCH_CHUNK = 64
"""Translations between two yields to the event loop in a batch."""

_DATE = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")


@dataclass(frozen=True, slots=True)
class _TranslateRequest:
    source_region: str
    code: str
    target_region: str
    at: date | None
    conditions: Mapping[str, str] | None


def _date(raw: object, what: str, *, index: int | None = None) -> date:
    if not isinstance(raw, str) or not _DATE.match(raw):
        raise bad_request(f"{what} must be a date YYYY-MM-DD", index=index)
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise bad_request(f"{what} is not a calendar date: {raw}", index=index) from exc


def _text(raw: object, what: str, limit: int, *, index: int | None) -> str:
    if not isinstance(raw, str) or not 0 < len(raw) <= limit:
        raise bad_request(f"{what} must be a string of 1 to {limit} characters", index=index)
    return raw


def _conditions(raw: object, *, index: int | None) -> Mapping[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or len(raw) > MAX_CONDITIONS:
        raise bad_request(f"conditions must be an object of at most {MAX_CONDITIONS} strings",
                   index=index)
    for key, value in raw.items():
        if not 0 < len(key) <= MAX_CONDITION_KEY:
            raise bad_request(f"condition names are 1 to {MAX_CONDITION_KEY} characters",
                              index=index)
        if not isinstance(value, str) or len(value) > MAX_CONDITION_VALUE:
            raise bad_request(f"conditions.{key} must be a string of at most "
                       f"{MAX_CONDITION_VALUE} characters", index=index)
    return {str(k): str(v) for k, v in raw.items()}


def parse_translate(item: object, index: int | None = None) -> _TranslateRequest:
    """Validate one translation request object (shape only)."""
    if not isinstance(item, dict):
        raise bad_request("a translation request must be a JSON object", index=index)
    source = item.get("source")
    if not isinstance(source, dict):
        raise bad_request("source must be an object {region, code}", index=index)
    region = _text(source.get("region"), "source.region", MAX_REGION, index=index)
    code = _text(source.get("code"), "source.code", MAX_CODE, index=index)
    target = _text(item.get("target_region"), "target_region", MAX_REGION, index=index)
    at_raw = item.get("at")
    at = None if at_raw is None else _date(at_raw, "at", index=index)
    return _TranslateRequest(region, code, target, at,
                             _conditions(item.get("conditions"), index=index))


def _service(request: web.Request) -> MatterService:
    return request.app[REGISTRY_KEY]


def _query_at(request: web.Request, service: MatterService) -> date:
    raw = request.query.get("at")
    return service.today() if raw is None else _date(raw, "at")


def _period(period: Period) -> dict[str, str | None]:
    return {"valid_from": None if period.start is None else period.start.isoformat(),
            "valid_until": None if period.end is None else period.end.isoformat()}


# ---------------------------------------------------------------- translation


def _translate_one(service: MatterService, req: _TranslateRequest, today: date,
                   index: int | None = None) -> tuple[date, Translation]:
    at = req.at or today
    try:
        return at, service.translate(req.source_region, req.code, req.target_region, at=at,
                                     conditions=req.conditions)
    except RegistryError as exc:
        service.count("invalid")
        if index is None:
            raise
        # One item of a batch: answered as the error is, saying which item.
        raise error_problem(exc, where=f"items[{index}]: ") from exc


def _outcome(translation: Translation) -> str:
    """What ``ecert_translations_total`` counts an answered translation as."""
    return "ok" if translation.result else "refused"


def _answer(service: MatterService, at: date, translation: Translation) -> dict[str, Any]:
    service.count(_outcome(translation))
    answer = translation.as_dict()
    answer["at"] = at.isoformat()
    return answer


async def translate(request: web.Request) -> web.Response:
    """POST /v1/matters/translate

    An answer is rendered once per request body and day (``MatterService.answers``):
    the same body asked again is answered with the same bytes, and counted again."""
    service = _service(request)
    await require_client(request)
    settings = request.app[SETTINGS_KEY]
    body = await read_body(request, settings.max_body_bytes)
    key = (body, service.today())
    known = service.answers.get(key)
    if known is not None:
        service.count(known[0])
        return json_bytes_response(known[1])
    req = parse_translate(parse_json(body))
    at, translation = _translate_one(service, req, key[1])
    answer = _answer(service, at, translation)
    rendered = orjson.dumps(answer, option=orjson.OPT_APPEND_NEWLINE)
    service.remember_answer(key, _outcome(translation), rendered)
    return json_bytes_response(rendered)


async def translate_batch(request: web.Request) -> web.Response:
    """POST /v1/matters/translate/batch"""
    service = _service(request)
    await require_client(request)
    settings = request.app[SETTINGS_KEY]
    items = await read_batch_items(request, limit=settings.max_batch_body_bytes,
                                   max_items=settings.max_batch_items, what="translation request")
    requests = [parse_translate(item, i) for i, item in enumerate(items)]
    today = service.today()
    done: list[tuple[date, Translation]] = []
    for i, req in enumerate(requests):
        done.append(_translate_one(service, req, today, i))
        if i % BATCH_CHUNK == BATCH_CHUNK - 1:
            await asyncio.sleep(0)  # cold translations are CPU work: let other requests in
    return json_response({"results": [_answer(service, at, translation)
                                      for at, translation in done]})


# ---------------------------------------------------------------- reading


async def catalogues(request: web.Request) -> web.Response:
    """GET /v1/catalogues: every catalogue version and concept map held."""
    await require_client(request)
    registry = _service(request).registry
    cats = sorted(registry.catalogues, key=lambda c: (c.kind.value, c.region, c.version))
    maps = sorted(registry.maps, key=lambda m: (m.url, m.version))
    return json_response({
        "catalogues": [
            {"region": c.region, "kind": c.kind.value, "url": c.url, "version": c.version,
             "title": c.title, "scheme": c.scheme.name, **_period(c.period),
             "code_count": len(c.concepts)}
            for c in cats],
        "maps": [
            {"url": m.url, "version": m.version, "status": m.status.value,
             "title": m.title, "source": m.source, "target": m.target,
             **_period(m.period), "reverse_reviewed": m.reverse_reviewed,
             "illustrative": m.illustrative}
            for m in maps],
    })


def coveragejson_response(coverage: Coverage) -> dict[str, Any]:
    """One partner's coverage counts as the API shows them."""
    return {"partner": coverage.partner, "total": coverage.total,
            "equivalent": coverage.equivalent,
            "narrower_or_broader": coverage.narrower_or_broader,
            "related": coverage.related, "none": coverage.none,
            "unmatched_codes": list(coverage.unmatched_codes)}


async def coverage(request: web.Request) -> web.Response:
    """GET /v1/catalogues/coverage?at=YYYY-MM-DD"""
    await require_client(request)
    service = _service(request)
    at = _query_at(request, service)
    found = service.coverage(at=at)
    return json_response({"at": at.isoformat(), "huzhou_region": service.huzhou_region,
                  "partners": [coveragejson_response(c) for c in found.values()]})


async def matter(request: web.Request) -> web.Response:
    """GET /v1/matters/{region}/{code}[?at=YYYY-MM-DD]"""
    await require_client(request)
    service = _service(request)
    region = request.match_info["region"]
    code = request.match_info["code"]
    if len(region) > MAX_REGION or len(code) > MAX_CODE:
        raise bad_request("region or code is too long")
    at = None if "at" not in request.query else _query_at(request, service)
    details = service.lookup(region, code, at=at)
    matter_type = details.matter_type
    return json_response({
        "region": details.region, "code": details.code, "name": details.name,
        "catalogue": details.catalogue, "scheme": details.scheme,
        "parts": dict(details.parts),
        "matter_type": None if matter_type is None else matter_type.value,
        **_period(details.period),
        "illustrative": details.illustrative, "cross_province": details.cross_province,
        "properties": dict(details.properties),
    })


def setup_routes(app: web.Application) -> None:
    """Add the matter registry routes."""
    app.router.add_get("/v1/catalogues", catalogues)
    app.router.add_get("/v1/catalogues/coverage", coverage)
    app.router.add_get("/v1/matters/{region}/{code}", matter)
    app.router.add_post("/v1/matters/translate", translate)
    app.router.add_post("/v1/matters/translate/batch", translate_batch)


def setup(app: web.Application, *, clock: Callable[[], datetime] | None = None) -> None:
    """Add the registry's start-up context and the matter routes to ``app``; ``clock`` is
    the app's (None: the system clock)."""

    async def matters_ctx(app: web.Application) -> AsyncIterator[None]:
        """Load the registry from ``app[SETTINGS_KEY]`` into ``REGISTRY_KEY``."""
        app[REGISTRY_KEY] = await load_service(app[SETTINGS_KEY], clock or utc_now)
        yield

    app.cleanup_ctx.append(matters_ctx)
    setup_routes(app)
