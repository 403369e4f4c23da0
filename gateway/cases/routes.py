"""HTTP route of cases (免证办): ``POST /v1/cases``.

``setup(app)`` adds the route and a ``cleanup_ctx`` entry that reads the case
book (``config/cases/huzhou-cases.json`` unless ``[cases] file`` says
otherwise), checks it against the loaded registry, opens Huzhou's
request-signing key (published at ``/.well-known/jwks.json``, so partners can
authenticate Huzhou's queries) and the partner client, and builds the
``CaseService``. It must run after the trust context (it reads
``VERIFICATION_KEY``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.cases.partners import PartnerQueries
from gateway.cases.service import CaseRequest, CaseService
from gateway.infra.signing import published_keys
from gateway.settings import Settings
from gateway.verification.service import Clock, utc_now
from gateway.web.appkeys import (
    AUDIT_PORT_KEY,
    JWKS_KEY,
    REGISTRY_KEY,
    SETTINGS_KEY,
    TRUST_KEY,
    VERIFICATION_KEY,
)
from gateway.web.auth import require_client
from gateway.web.httpjson import bad_request, json_response, read_json
from gateway.web.logs import request_id_of
from registry import CaseBook, CatalogueKind

__all__ = ["CASES_KEY", "DEFAULT_CASE_BOOK", "load_case_book", "parse_case", "setup"]

CASES_KEY = web.AppKey("cases", CaseService)

DEFAULT_CASE_BOOK = Path(__file__).resolve().parents[2] / "config" / "cases" / "huzhou-cases.json"
"""The case book shipped with the repository."""

MAX_USE_CAUSE = 200
MAX_LICENCES = 50
"""Most licences one case may present."""
_REGION = re.compile(r"\A[0-9]{6}\Z")
_NAME = re.compile(r"\A[a-z][a-z0-9_]{0,39}\Z")


def parse_case(body: object) -> CaseRequest:
    """Validate a case request's shape (roles and codes are the service's to judge)."""
    if not isinstance(body, dict):
        raise bad_request("a case request must be a JSON object")
    bundle, matter = body.get("bundle"), body.get("matter")
    if (bundle is None) == (matter is None):
        raise bad_request("name exactly one of bundle and matter")
    if bundle is not None and (not isinstance(bundle, str) or not 0 < len(bundle) <= 64):
        raise bad_request("bundle must be a string of 1 to 64 characters")
    if matter is not None:
        if not isinstance(matter, dict) or not isinstance(matter.get("code"), str) \
                or not 0 < len(matter["code"]) <= 64:
            raise bad_request("matter must be an object {region, code}")
        if matter.get("region", "330500") != "330500":
            raise bad_request("matter.region must be Huzhou's (330500)")
    applicant = body.get("applicant")
    if not isinstance(applicant, dict) or not applicant \
            or not all(isinstance(k, str) and _NAME.match(k) and isinstance(v, str)
                       for k, v in applicant.items()):
        raise bad_request("applicant must be an object of role names to holder codes")
    licences = body.get("licences", [])
    if not isinstance(licences, list) or not all(isinstance(t, str) for t in licences):
        raise bad_request("licences must be a list of ecert+jwt strings")
    if len(licences) > MAX_LICENCES:
        raise bad_request(f"at most {MAX_LICENCES} licences per case")
    use_cause = body.get("use_cause")
    if not isinstance(use_cause, str) or not 0 < len(use_cause) <= MAX_USE_CAUSE:
        raise bad_request(f"use_cause is required, 1 to {MAX_USE_CAUSE} characters")
    partners = body.get("partners")
    if partners is not None and (not isinstance(partners, list) or len(partners) > 10
                                 or not all(isinstance(p, str) and _REGION.match(p)
                                            for p in partners)):
        raise bad_request("partners must be a list of at most 10 6-digit region codes")
    return CaseRequest(
        bundle=bundle, matter=None if matter is None else matter["code"],
        applicant=dict(applicant), licences=tuple(licences),
        use_cause=use_cause, partners=None if partners is None else tuple(partners))


async def check_case(request: web.Request) -> web.Response:
    """POST /v1/cases"""
    identity = await require_client(request)
    body: Any = await read_json(request, request.app[SETTINGS_KEY].max_body_bytes)
    answer = await request.app[CASES_KEY].check(
        parse_case(body), actor=identity.name, source=request.remote,
        request_id=request_id_of(request))
    return json_response(answer)


def load_case_book(settings: Settings, app: web.Application) -> CaseBook:
    """Read the case book (blocking) and check it against the loaded registry."""
    registry = app[REGISTRY_KEY].registry
    types = {c.code for cat in registry.catalogues if cat.kind is CatalogueKind.LICENCE_TYPE
             for c in cat.concepts}
    matters = {c.code for cat in registry.catalogues
               if cat.kind is CatalogueKind.MATTER and cat.region == settings.gateway_id
               for c in cat.concepts}
    path = settings.cases_file or DEFAULT_CASE_BOOK
    return CaseBook.from_json(path.read_bytes(), licence_types=types, matters=matters)


def setup(app: web.Application, *, clock: Clock | None = None) -> None:
    """Add ``POST /v1/cases`` and the context that builds its service (after the trust
    context)."""

    async def cases_ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS_KEY]
        loop = asyncio.get_running_loop()
        book = await loop.run_in_executor(None, load_case_book, settings, app)
        keys = await loop.run_in_executor(None, lambda: published_keys(
            settings.data_dir, "request-signing", alg="ES256",
            kid_prefix=f"{settings.gateway_id}-req"))
        app[JWKS_KEY].extend(keys)
        partners = PartnerQueries(key=keys[0], gateway_id=settings.gateway_id,
                                  timeout_s=settings.partner_query_timeout_s)
        await partners.start()
        app[CASES_KEY] = CaseService(
            book=book, verification=app[VERIFICATION_KEY], matters=app[REGISTRY_KEY],
            trust=app[TRUST_KEY], partners=partners, audit=app[AUDIT_PORT_KEY],
            clock=clock or utc_now)
        yield
        await partners.close()

    app.cleanup_ctx.append(cases_ctx)
    app.router.add_post("/v1/cases", check_case)
