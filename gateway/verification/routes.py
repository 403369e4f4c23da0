"""HTTP routes of verification: ``/v1/verifications`` and its batch form."""

from __future__ import annotations

import re

from aiohttp import web

from gateway.verification.service import VerificationRequest
from gateway.web.appkeys import SETTINGS_KEY, VERIFICATION_KEY
from gateway.web.auth import require_client
from gateway.web.httpjson import bad_request, json_response, read_batch_items, read_json
from gateway.web.logs import request_id_of

__all__ = ["setup_routes"]

MAX_USE_CAUSE = 200
_REGION = re.compile(r"\A[0-9]{6}\Z")


def parse_item(item: object, index: int | None = None) -> VerificationRequest:
    """Validate one verification request object."""
    if not isinstance(item, dict):
        raise bad_request("a verification request must be a JSON object", index=index)
    credential = item.get("credential")
    if not isinstance(credential, str):
        raise bad_request("credential is required and must be a string", index=index)
    use_cause = item.get("use_cause")
    if use_cause is not None:
        if not isinstance(use_cause, str):
            raise bad_request("use_cause must be a string", index=index)
        if len(use_cause) > MAX_USE_CAUSE:
            raise bad_request(f"use_cause is longer than {MAX_USE_CAUSE} characters", index=index)
    matter = item.get("matter")
    region = code = None
    if matter is not None:
        if not isinstance(matter, dict):
            raise bad_request("matter must be an object {region, code}", index=index)
        region = matter.get("region", "330500")
        code = matter.get("code")
        if not isinstance(region, str) or not _REGION.match(region):
            raise bad_request("matter.region must be a 6-digit region code", index=index)
        if not isinstance(code, str) or not 0 < len(code) <= 64:
            raise bad_request("matter.code must be a string of 1 to 64 characters", index=index)
    return VerificationRequest(credential=credential, use_cause=use_cause,
                               matter_region=region, matter_code=code)


async def verify(request: web.Request) -> web.Response:
    """POST /v1/verifications"""
    identity = await require_client(request)
    settings = request.app[SETTINGS_KEY]
    req = parse_item(await read_json(request, settings.max_body_bytes))
    service = request.app[VERIFICATION_KEY]
    answer = await service.verify(req, actor=identity.name, source=request.remote,
                                  request_id=request_id_of(request))
    return json_response(answer)


async def verify_batch(request: web.Request) -> web.Response:
    """POST /v1/verifications/batch"""
    identity = await require_client(request)
    settings = request.app[SETTINGS_KEY]
    items = await read_batch_items(request, limit=settings.max_batch_body_bytes,
                                   max_items=settings.max_batch_items, what="verification request")
    requests = [parse_item(item, i) for i, item in enumerate(items)]
    service = request.app[VERIFICATION_KEY]
    results = await service.verify_batch(requests, actor=identity.name, source=request.remote,
                                         request_id=request_id_of(request))
    return json_response({"results": results})


def setup_routes(app: web.Application) -> None:
    """Add the verification routes."""
    app.router.add_post("/v1/verifications", verify)
    app.router.add_post("/v1/verifications/batch", verify_batch)
