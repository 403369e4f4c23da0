"""``/v1/admin/credentials``: local systems' API keys and operators' tokens, over HTTP.

Roles (docs/operators.md, "Credentials"):

* GET credentials[?kind=client|operator], credentials/{kinds}/{name}: operator,
  approver, auditor (not viewer: who holds which door, and which are disabled,
  is more than a trust-list reader needs);
* POST credentials/{kinds}/{name}/disable, .../enable: approver (the security
  officer's act);
* POST credentials/{kinds}/{name}/rotate: approver, for a local system's key
  or the approver's own token. Another operator's token is refused (403):
  the new secret would go to the caller, who could then act under that
  operator's name and so defeat dual control.

``{kinds}`` is ``clients`` or ``operators``. No answer ever holds a secret or a
hash, except the rotation's, which holds the new secret once. Adding a
credential, and changing its expiry alone, are done with the CLI.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Any

from aiohttp import web

from gateway.credentials.store import (
    CREDENTIAL_MANAGERS,
    CREDENTIAL_READERS,
    CredentialAction,
    CredentialRequest,
    IdentityKind,
    Role,
)
from gateway.web.appkeys import AUDIT_PORT_KEY, IDENTITIES_KEY, SETTINGS_KEY
from gateway.web.auth import require_operator
from gateway.web.httpjson import json_response, read_json
from gateway.web.logs import REQUEST_ID_KEY
from gateway.web.problems import Problem

__all__ = ["setup_routes"]


_KINDS = {"clients": IdentityKind.CLIENT, "operators": IdentityKind.OPERATOR}

def _target(request: web.Request) -> tuple[IdentityKind, str]:
    kind = _KINDS.get(request.match_info["kinds"])
    if kind is None:
        raise Problem(404, "Not found", "credentials are under clients/ or operators/",
                      kind="credential-not-found", extra={"reason": "not-found"})
    return kind, request.match_info["name"]


async def _body(request: web.Request) -> dict[str, Any]:
    """The optional JSON object body of a change (none: ``{}``)."""
    if not request.can_read_body:
        return {}
    body = await read_json(request, request.app[SETTINGS_KEY].max_body_bytes)
    if not isinstance(body, dict):
        raise Problem(400, "Bad request", "body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str, limit: int = 500) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise Problem(400, "Bad request", f"{name} must be a string of at most {limit} characters")
    return value


async def list_credentials(request: web.Request) -> web.Response:
    """GET /v1/admin/credentials[?kind=client|operator]: every credential, by kind and name."""
    await require_operator(request, CREDENTIAL_READERS)
    raw = request.query.get("kind")
    try:
        kind = IdentityKind(raw) if raw else None
    except ValueError as exc:
        raise Problem(400, "Bad request", "kind must be client or operator") from exc
    found = await request.app[IDENTITIES_KEY].credentials(kind)
    return json_response({"credentials": [c.to_json() for c in found]})


async def get_credential(request: web.Request) -> web.Response:
    """GET /v1/admin/credentials/{kinds}/{name}: one credential."""
    await require_operator(request, CREDENTIAL_READERS)
    kind, name = _target(request)
    found = await request.app[IDENTITIES_KEY].credential(kind, name)
    return json_response(found.to_json())


async def _change(request: web.Request, action: CredentialAction, roles: AbstractSet[Role],
                  ) -> web.Response:
    caller = await require_operator(request, roles)
    kind, name = _target(request)
    body = await _body(request)
    change_request = CredentialRequest(
        action=action, kind=kind, name=name, reason=_text(body, "reason"),
        expires=_text(body, "expires", 64), overlap=_text(body, "overlap", 64))
    store = request.app[IDENTITIES_KEY]
    audit = request.app[AUDIT_PORT_KEY]
    request_id = request.get(REQUEST_ID_KEY)
    if (action is CredentialAction.ROTATE and kind is IdentityKind.OPERATOR
            and name != caller.name):
        detail = ("an approver rotates local systems' keys and their own token only: the "
                  "new secret would be yours, under another operator's name. They rotate "
                  "their own, or the data folder's keeper uses the CLI")
        await store.audit_refusal(audit, change_request, detail, actor=caller.name,
                                  at=store.now(), request_id=request_id,
                                  source=request.remote, refusal="other-operator")
        raise Problem(403, "Forbidden", detail, kind="credential-other-operator",
                      extra={"reason": "other-operator"})
    change, after = await store.change(change_request, audit=audit, actor=caller.name,
                                       request_id=request_id, source=request.remote)
    answer: dict[str, Any] = {"credential": after.to_json()}
    if change.secret is None:
        return json_response(answer)
    answer["secret"] = change.secret
    response = json_response(answer)
    response.headers["Cache-Control"] = "no-store"
    return response


async def post_disable(request: web.Request) -> web.Response:
    """POST .../disable ``{"reason": ...}``: refused at once, on every instance within 250 ms."""
    return await _change(request, CredentialAction.DISABLE, CREDENTIAL_MANAGERS)


async def post_enable(request: web.Request) -> web.Response:
    """POST .../enable: a disabled credential works again (if unexpired)."""
    return await _change(request, CredentialAction.ENABLE, CREDENTIAL_MANAGERS)


async def post_rotate(request: web.Request) -> web.Response:
    """POST .../rotate ``{"expires": ..., "overlap": ...}``: a new secret, in the answer once."""
    return await _change(request, CredentialAction.ROTATE, CREDENTIAL_MANAGERS)


def setup_routes(app: web.Application) -> None:
    """Add the ``/v1/admin/credentials`` routes."""
    base = "/v1/admin/credentials"
    app.router.add_get(base, list_credentials)
    app.router.add_get(f"{base}/{{kinds}}/{{name}}", get_credential)
    app.router.add_post(f"{base}/{{kinds}}/{{name}}/disable", post_disable)
    app.router.add_post(f"{base}/{{kinds}}/{{name}}/enable", post_enable)
    app.router.add_post(f"{base}/{{kinds}}/{{name}}/rotate", post_rotate)
