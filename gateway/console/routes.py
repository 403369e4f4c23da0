"""``/console/``: the operators' and auditors' web console, server-rendered.

Every page and every action takes the API's decision: the operator token held by
the session is checked on each request by ``require_operator_token`` (the
function behind the API's ``require_operator``) against the same role sets the
API routes use (``READERS``, ``PROPOSERS``, ``APPROVERS`` of the trust list,
``CREDENTIAL_READERS`` and ``CREDENTIAL_MANAGERS``, the auditor role of the audit
log). Actions call the same service methods the API handlers call, so dual
control is the service's and the audit records are the same ones.

Pages (role sets as in docs/console.md):

* ``/console/login`` (GET, POST), ``/console/logout`` (POST);
* ``/console/trust-list``, ``proposals``, ``proposals/{id}``, ``versions``,
  ``alerts``: any role that reads the trust list; ``POST proposals``: proposers;
  ``POST proposals/{id}/approve|reject``: approvers;
* ``/console/credentials``: credential readers; ``POST .../disable``: managers;
* ``/console/audit``, ``audit/entries/{index}``, ``stats``, ``report``: auditors.

Every POST carries the session's CSRF token. Answers are ``no-store`` and carry a
Content-Security-Policy that allows scripts from ``/console/static/`` only.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from aiohttp import web

from gateway.audit import AuditService, RecordFilter
from gateway.console.html import Nav, esc, frame, json_block, table
from gateway.console.sessions import COOKIE, RedisSessionStore, Session, SessionStore
from gateway.credentials.store import (
    CREDENTIAL_MANAGERS,
    CREDENTIAL_READERS,
    CredentialAction,
    CredentialError,
    CredentialRefusal,
    CredentialRequest,
    Identity,
    IdentityError,
    IdentityKind,
    Role,
)
from gateway.infra.keyfiles import keys_dir, load_or_create_secret
from gateway.infra.redislink import redis_client
from gateway.trustlist.alerts import trust_alerts
from gateway.trustlist.service import (
    APPROVERS,
    PROPOSERS,
    READERS,
    AdminError,
    Proposal,
    ProposalStatus,
    TrustListService,
    TrustStoreError,
)
from gateway.web.appkeys import (
    AUDIT_KEY,
    AUDIT_PORT_KEY,
    IDENTITIES_KEY,
    SETTINGS_KEY,
    TRUSTLISTS_KEY,
    VERIFICATION_KEY,
)
from gateway.web.auth import require_operator_token
from gateway.web.logs import REQUEST_ID_KEY
from gateway.web.problems import Problem, problem_for
from trust import (
    CHINA_TZ,
    AnchorStatus,
    ChangeError,
    PartnerStatus,
    TrustList,
    apply_changes,
    diff_documents,
    parse_changes,
)

__all__ = ["CONSOLE_SESSIONS_KEY", "setup"]

AUDITORS = {Role.AUDITOR}
"""Who reads the audit log (``gateway.audit.routes``: the auditor role only)."""
ANY_ROLE = set(Role)
"""Who may sign in: any operator token the API accepts (``/metrics`` takes every role)."""

PAGE_SIZE = 50
MAX_STATS_DAYS = 184
STATIC_DIR = Path(__file__).parent / "static"

CONSOLE_SESSIONS_KEY = web.AppKey("console_sessions", SessionStore)

_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'")

PROPOSAL_KINDS = {
    "suspend-partner": "暂停合作地区 Suspend partner",
    "resume-partner": "恢复合作地区 Resume partner",
    "suspend-anchor": "暂停信任锚 Suspend anchor",
    "resume-anchor": "恢复信任锚 Resume anchor",
}
_NEEDS_KID = {"suspend-anchor", "resume-anchor"}
_PROPOSAL_ID = re.compile(r"[0-9A-Za-z-]{1,64}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- sessions, roles, answers ---------------------------------------------------------------


def _sessions(request: web.Request) -> SessionStore:
    return request.app[CONSOLE_SESSIONS_KEY]


def _secure(request: web.Request) -> bool:
    """Whether the console is reached over https (directly, or as the public URL says)."""
    return request.secure or request.app[SETTINGS_KEY].public_base_url.startswith("https://")


def _headers(response: web.StreamResponse) -> web.StreamResponse:
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    return response


def _set_cookie(request: web.Request, response: web.StreamResponse, session: Session) -> None:
    response.set_cookie(COOKIE, session.id, path="/console", httponly=True, samesite="Strict",
                        secure=_secure(request))


def _redirect(location: str) -> web.Response:
    response = web.Response(status=303, headers={"Location": location})
    _headers(response)
    return response


@dataclass(frozen=True, slots=True)
class Caller:
    """A signed-in request: its session and the identity its token stands for now."""

    session: Session
    identity: Identity

    @property
    def role(self) -> Role | None:
        """The identity's role."""
        return self.identity.role


class _SignIn(Exception):  # noqa: N818 - control flow: the answer is a redirect
    """No live session: go to the sign-in page."""


def _nav(role: Role | None) -> Nav:
    links: list[tuple[str, str]] = [("/console/", "首页 Home")]
    if role in READERS:
        links += [("/console/trust-list", "信任列表 Trust list"),
                  ("/console/proposals", "变更提案 Proposals"),
                  ("/console/versions", "版本历史 Versions"),
                  ("/console/alerts", "告警 Alerts")]
    if role in CREDENTIAL_READERS:
        links.append(("/console/credentials", "凭据 Credentials"))
    if role in AUDITORS:
        links += [("/console/audit", "审计记录 Audit log"),
                  ("/console/stats", "跨省通办统计 Statistics"),
                  ("/console/report", "半年度报告 Report")]
    return links


def _page(caller: Caller, title: str, body: str, *, status: int = 200,
          scripts: tuple[str, ...] = ()) -> web.Response:
    session = caller.session
    flash, session.flash = session.flash, []
    who = f"{caller.identity.name} ({caller.role})"
    response = web.Response(
        text=frame(title, body, nav=_nav(caller.role), who=who, csrf=session.csrf, flash=flash,
                   scripts=scripts),
        content_type="text/html", status=status)
    _headers(response)
    return response


async def _caller(request: web.Request, roles: AbstractSet[Role]) -> Caller:
    """The signed-in caller, if its token passes the API's check for ``roles``.

    No session (or one past its time): ``_SignIn``. A token the API no longer
    accepts (401) ends the session. A role the API refuses (403): ``Problem``.
    """
    store = _sessions(request)
    session = await store.get(request.cookies.get(COOKIE))
    if session is None or session.token is None:
        raise _SignIn
    try:
        identity = await require_operator_token(request, session.token, roles)
    except CredentialError as exc:
        if exc.refusal is not CredentialRefusal.ROLE:  # the API's 401: no longer a credential
            await store.end(session.id)
            raise _SignIn from exc
        raise
    return Caller(session, identity)


async def _form(request: web.Request, caller: Caller) -> dict[str, str]:
    """The POSTed form, after its CSRF token was checked (403 otherwise)."""
    data = await request.post()
    form = {k: v for k, v in data.items() if isinstance(v, str)}
    if not caller.session.csrf_ok(form.get("csrf")):
        raise Problem(403, "Forbidden", "the form's CSRF token does not match this session")
    return form


def _guard(roles: AbstractSet[Role]) -> Callable[[Callable[[web.Request, Caller],
                                                    Awaitable[web.StreamResponse]]], Handler]:
    """A console handler for callers with one of ``roles``: sign-in and refusals as pages."""

    def wrap(handler: Callable[[web.Request, Caller], Awaitable[web.StreamResponse]]
             ) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                caller = await _caller(request, roles)
            except _SignIn:
                return _redirect("/console/login")
            except (Problem, CredentialError) as exc:
                refused = problem_for(exc)  # the API's one table decides the status
                assert refused is not None
                return await _refusal(request, refused)
            try:
                return await handler(request, caller)
            except Exception as exc:
                problem = problem_for(exc)
                if problem is None or problem.status >= 500:
                    raise
                return _page(caller, f"{problem.status} {problem.title}",
                             f'<p class="refusal">{esc(problem.detail)}</p>',
                             status=problem.status)
            finally:
                # The messages the handler left, or the page took (a shared store keeps
                # them for the browser's next request, whichever worker it reaches).
                await _sessions(request).save(caller.session)

        wrapped.__doc__ = handler.__doc__
        return wrapped

    return wrap


async def _refusal(request: web.Request, problem: Problem) -> web.Response:
    """A refused role as a page (with the navigation the caller's own role allows)."""
    session = await _sessions(request).get(request.cookies.get(COOKIE))
    assert session is not None
    assert session.token is not None
    identity = await require_operator_token(request, session.token, ANY_ROLE)
    return _page(Caller(session, identity), f"{problem.status} {problem.title}",
                 f'<p class="refusal">{esc(problem.detail)}</p>', status=problem.status)


def _when(value: datetime | str | None) -> str:
    """A time for people: China Standard Time, to the minute."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return esc(value)
    return esc(value.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M"))


def _trust(request: web.Request) -> TrustListService:
    return request.app[TRUSTLISTS_KEY]


def _hidden(caller: Caller) -> str:
    return f'<input type="hidden" name="csrf" value="{esc(caller.session.csrf)}">'


# -- sign-in -----------------------------------------------------------------------------------


def _login_page(request: web.Request, session: Session, error: str | None = None,
                status: int = 200) -> web.Response:
    message = [("error", error)] if error else []
    body = f"""<form method="post" action="/console/login" class="card login">
<input type="hidden" name="csrf" value="{esc(session.csrf)}">
<label for="token">操作员令牌 Operator token</label>
<input id="token" name="token" type="password" autocomplete="off" required maxlength="256">
<button type="submit" id="sign-in">登录 Sign in</button>
<p class="hint">令牌由 <code>ecert-gateway operators add</code> 生成；演示环境见
<code>demo-data/demo-*.key</code>。</p>
</form>"""
    response = web.Response(text=frame("登录 Sign in", body, flash=message),
                            content_type="text/html", status=status)
    _set_cookie(request, response, session)
    _headers(response)
    return response


async def get_login(request: web.Request) -> web.Response:
    """GET /console/login: the sign-in form (an anonymous session carries its CSRF token)."""
    store = _sessions(request)
    session = await store.get(request.cookies.get(COOKIE))
    if session is not None and session.token is not None:
        return _redirect("/console/")
    return _login_page(request, session or await store.anonymous())


async def post_login(request: web.Request) -> web.Response:
    """POST /console/login: a token the API accepts becomes a new session."""
    store = _sessions(request)
    previous = await store.get(request.cookies.get(COOKIE))
    data = await request.post()
    sent = data.get("csrf")
    token = data.get("token")
    if previous is None or not previous.csrf_ok(sent if isinstance(sent, str) else None):
        return _login_page(request, await store.anonymous(),
                           "表单已过期，请重新登录 (the form expired: sign in again)", 403)
    try:
        identity = await require_operator_token(
            request, token.strip() if isinstance(token, str) else None, ANY_ROLE)
    except Problem:
        return _login_page(request, previous, "令牌无效 (the token is not accepted)", 401)
    session = await store.sign_in(previous, token.strip() if isinstance(token, str) else "",
                            identity.name, str(identity.role))
    response = _redirect("/console/")
    _set_cookie(request, response, session)
    return response


async def post_logout(request: web.Request) -> web.Response:
    """POST /console/logout: the session ends."""
    store = _sessions(request)
    session = await store.get(request.cookies.get(COOKIE))
    data = await request.post()
    sent = data.get("csrf")
    if session is not None and session.csrf_ok(sent if isinstance(sent, str) else None):
        await store.end(session.id)
    response = _redirect("/console/login")
    response.del_cookie(COOKIE, path="/console")
    return response


@_guard(ANY_ROLE)
async def get_home(request: web.Request, caller: Caller) -> web.Response:
    """GET /console/: what this role may do."""
    items = "".join(f'<li><a href="{esc(href)}">{esc(label)}</a></li>'
                    for href, label in _nav(caller.role)[1:])
    idle_minutes = int(_sessions(request).idle.total_seconds() // 60)
    body = (f"<p>已登录：<strong>{esc(caller.identity.name)}</strong>，角色 "
            f"<code>{esc(caller.role)}</code>。会话空闲 {idle_minutes} 分钟后失效。"
            "</p>"
            + (f"<ul class='links'>{items}</ul>" if items else
               "<p>此角色在控制台中没有可用页面 (this role has no console pages).</p>"))
    return _page(caller, "控制台 Console", body)


# -- the trust list ----------------------------------------------------------------------------


def _alert_days(request: web.Request) -> int:
    return request.app[SETTINGS_KEY].admin.expiry_alert_days


def _propose_button(caller: Caller, kind: str, region: str, kid: str | None = None) -> str:
    kid_field = "" if kid is None else f'<input type="hidden" name="kid" value="{esc(kid)}">'
    return (f'<form method="post" action="/console/proposals" class="inline">{_hidden(caller)}'
            f'<input type="hidden" name="kind" value="{esc(kind)}">'
            f'<input type="hidden" name="region_code" value="{esc(region)}">{kid_field}'
            f'<button type="submit" class="propose" data-kind="{esc(kind)}" '
            f'data-region="{esc(region)}">{esc(PROPOSAL_KINDS[kind])}</button></form>')


@_guard(READERS)
async def get_trust_list(request: web.Request, caller: Caller) -> web.Response:
    """GET /console/trust-list: partners, anchors, what expires soon, what is suspended."""
    row = await _trust(request).current()
    trust_list = TrustList.from_json(row.document)
    now = _trust(request).clock()
    horizon = now + timedelta(days=_alert_days(request))
    controls = caller.role in PROPOSERS
    partners, anchors, soon, suspended = [], [], [], []
    for partner in sorted(trust_list.partners.values(), key=lambda p: p.region_code):
        state = partner.status.value
        action = ""
        if controls:
            action = _propose_button(caller, "resume-partner" if partner.status is
                                     PartnerStatus.SUSPENDED else "suspend-partner",
                                     partner.region_code)
        partners.append([esc(partner.region_code), esc(partner.name),
                         f'<span class="status {esc(state)}">{esc(state)}</span>',
                         esc(len(partner.anchors)), action])
        if partner.status is PartnerStatus.SUSPENDED:
            suspended.append([esc(partner.region_code), esc(partner.name), "合作地区 partner", ""])
        for anchor in partner.anchors:
            days_left = (anchor.valid_until - now).days
            expiring = anchor.status is not AnchorStatus.REVOKED and now <= anchor.valid_until \
                <= horizon
            action = ""
            if controls and anchor.status is not AnchorStatus.REVOKED:
                action = _propose_button(caller, "resume-anchor" if anchor.status is
                                         AnchorStatus.SUSPENDED else "suspend-anchor",
                                         partner.region_code, anchor.kid)
            cells = [esc(partner.region_code), f"<code>{esc(anchor.kid)}</code>",
                     esc(anchor.use.value), _when(anchor.valid_from), _when(anchor.valid_until),
                     esc(days_left) + (' <span class="tag warn">即将到期</span>' if expiring
                                       else ""),
                     (f'<span class="status {esc(anchor.status.value)}">'
                     f"{esc(anchor.status.value)}</span>"), action]
            anchors.append(cells)
            if expiring:
                soon.append([esc(partner.region_code), f"<code>{esc(anchor.kid)}</code>",
                             esc(anchor.use.value), _when(anchor.valid_until), esc(days_left)])
            if anchor.status is AnchorStatus.SUSPENDED:
                suspended.append([esc(partner.region_code), esc(partner.name),
                                  "信任锚 anchor", f"<code>{esc(anchor.kid)}</code>"])
    form = ""
    if controls:
        kinds = "".join(f'<option value="{esc(k)}">{esc(v)}</option>'
                        for k, v in PROPOSAL_KINDS.items())
        regions = "".join(f'<option value="{esc(p.region_code)}">{esc(p.region_code)} '
                          f"{esc(p.name)}</option>"
                          for p in sorted(trust_list.partners.values(),
                                          key=lambda p: p.region_code))
        form = f"""<section class="card" id="propose">
<h2>提出变更 Propose a change</h2>
<form method="post" action="/console/proposals">{_hidden(caller)}
<label>变更 Change <select name="kind" id="propose-kind">{kinds}</select></label>
<label>地区 Region <select name="region_code" id="propose-region">{regions}</select></label>
<label>信任锚 kid (anchors only) <input name="kid" id="propose-kid" maxlength="200"></label>
<label>说明 Note <input name="note" id="propose-note" maxlength="2000"></label>
<button type="submit" id="propose-submit">提交提案 Propose</button>
</form>
<p class="hint">提案需要 {esc(_trust(request).approvals_required)} 名其他审批人批准后生效
(dual control).</p></section>"""
    version = esc(trust_list.version)
    body = f"""<p class="meta">版本 version <strong id="tl-version">{version}</strong>
· 签发 issued {_when(trust_list.issued_at)} · 下次更新 next update {_when(trust_list.next_update)}
· SHA-256 <code>{esc(row.sha256[:16])}…</code></p>
{form}
<h2>合作地区 Partners</h2>
{table(["地区码 Region", "名称 Name", "状态 Status", "信任锚 Anchors", ""], partners,
       cls="partners")}
<h2>即将到期 Expiring within {esc(_alert_days(request))} days</h2>
{table(["地区码 Region", "kid", "用途 Use", "到期 Valid until", "剩余天数 Days left"], soon)}
<h2>已暂停 Suspended</h2>
{table(["地区码 Region", "名称 Name", "类型 What", "kid"], suspended, cls="suspended")}
<h2>信任锚 Anchors</h2>
{table(["地区码 Region", "kid", "用途 Use", "生效 Valid from", "到期 Valid until",
        "剩余天数 Days left", "状态 Status", ""], anchors, cls="anchors")}"""
    return _page(caller, "信任列表 Trust list", body)


def _proposal_errors(caller: Caller, exc: Exception) -> None:
    if isinstance(exc, ChangeError):
        caller.session.flash.append(("error", "变更被拒绝 Change refused: "
                                     + "; ".join(exc.problems)))
    elif isinstance(exc, AdminError):
        caller.session.flash.append(("error", f"拒绝 Refused ({exc.refusal.value}): {exc}"))
    else:
        caller.session.flash.append(("error", f"信任列表存储不可用 Store unavailable: {exc}"))


@_guard(PROPOSERS)
async def post_proposal(request: web.Request, caller: Caller) -> web.Response:
    """POST /console/proposals: one change, proposed as ``POST /v1/admin/proposals`` does."""
    form = await _form(request, caller)
    kind = form.get("kind", "")
    if kind not in PROPOSAL_KINDS:
        raise Problem(400, "Bad request", f"kind must be one of {sorted(PROPOSAL_KINDS)}")
    change: dict[str, Any] = {"kind": kind, "region_code": form.get("region_code", "").strip()}
    if kind in _NEEDS_KID:
        change["kid"] = form.get("kid", "").strip()
    note = form.get("note", "").strip()[:2000] or None
    try:
        proposal = await _trust(request).propose(caller.identity.name, [change], note)
    except (ChangeError, AdminError, TrustStoreError) as exc:
        _proposal_errors(caller, exc)
        return _redirect("/console/trust-list")
    caller.session.flash.append(("ok", f"已提交提案 Proposal {proposal.id} created: pending"))
    return _redirect(f"/console/proposals/{proposal.id}")


def _votes(proposal: Proposal, approve: bool) -> str:
    return ", ".join(f"{v.operator} ({_when(v.at)})" for v in proposal.votes
                     if v.approve is approve)


@_guard(READERS)
async def get_proposals(request: web.Request, caller: Caller) -> web.Response:
    """GET /console/proposals[?status=]: proposals, newest first."""
    raw = request.query.get("status") or None
    try:
        status = ProposalStatus(raw) if raw else None
    except ValueError as exc:
        raise Problem(400, "Bad request", f"status {raw!r} is not a proposal status") from exc
    found = await _trust(request).proposals(status)
    rows = [[f'<a href="/console/proposals/{esc(p.id)}">{esc(p.id[:8])}</a>',
             _when(p.created_at), esc(p.author),
             "<br>".join(esc(_change_text(c)) for c in p.changes),
             f'<span class="status {esc(p.status.value)}">{esc(p.status.value)}</span>',
             esc(_votes(p, True)), esc(p.result_version)] for p in found]
    filters = " · ".join(f'<a href="/console/proposals?status={s.value}">{s.value}</a>'
                         for s in ProposalStatus)
    body = (f'<p class="filters">按状态 By status: <a href="/console/proposals">all</a> · '
            f"{filters}</p>"
            + table(["提案 Id", "提出 Created", "提出人 Author", "变更 Changes", "状态 Status",
                     "批准 Approvals", "版本 Version"], rows, cls="proposals"))
    return _page(caller, "变更提案 Proposals", body)


def _change_text(change: dict[str, Any]) -> str:
    parts = [str(change.get(k)) for k in ("kind", "region_code", "kid") if change.get(k)]
    return " ".join(parts)


def _diff_table(old: dict[str, Any], new: dict[str, Any]) -> str:
    rows = []
    for entry in diff_documents(old, new):
        if not entry.fields:
            rows.append([esc(entry.op), esc(entry.region_code), f"<code>{esc(entry.kid)}</code>",
                         "", "", ""])
        for name, (before, after) in entry.fields.items():
            rows.append([esc(entry.op), esc(entry.region_code),
                         f"<code>{esc(entry.kid)}</code>", esc(name),
                         f'<del>{esc(_short(before))}</del>', f"<ins>{esc(_short(after))}</ins>"])
    return table(["变化 Op", "地区 Region", "kid", "字段 Field", "之前 Before", "之后 After"], rows,
                 cls="diff")


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= 120 else text[:117] + "…"


@_guard(READERS)
async def get_proposal(request: web.Request, caller: Caller) -> web.Response:
    """GET /console/proposals/{id}: the change, its diff, its votes; vote forms for approvers."""
    service = _trust(request)
    proposal = await service.proposal(_proposal_id(request))  # unknown: 404 by ERROR_STATUS
    if proposal.result_version is not None and proposal.result_version > 0:
        old = await service.version(proposal.result_version - 1)
        new = await service.version(proposal.result_version)
        diff = (f"<p>已生效：版本 {esc(old.version)} → {esc(new.version)} "
                f"(applied)</p>" + _diff_table(old.document, new.document))
    elif proposal.status is ProposalStatus.PENDING:
        current = await service.current()
        try:
            after = apply_changes(current.document, parse_changes(proposal.changes),
                                  at=service.clock())
            diff = (f"<p>若批准，相对当前版本 {esc(current.version)} 的变化 "
                    f"(against the current version):</p>"
                    + _diff_table(current.document, after))
        except ChangeError as exc:
            problems = esc("; ".join(exc.problems))
            diff = f'<p class="refusal">不再适用 No longer applies: {problems}</p>'
    else:
        diff = "<p>未生效 (not applied).</p>"
    controls = ""
    if caller.role in APPROVERS and proposal.status is ProposalStatus.PENDING:
        if proposal.author == caller.identity.name:
            controls = ('<p class="hint" id="own-proposal">这是您本人的提案：须由其他审批人批准 '
                        "(dual control: another approver decides).</p>")
        else:
            pid = esc(proposal.id)
            controls = f"""<section class="card" id="vote">
<form method="post" action="/console/proposals/{pid}/approve" class="inline">{_hidden(caller)}
<input name="comment" placeholder="意见 comment" maxlength="2000">
<button type="submit" id="approve">批准 Approve</button></form>
<form method="post" action="/console/proposals/{pid}/reject" class="inline">{_hidden(caller)}
<input name="reason" placeholder="理由 reason" maxlength="2000">
<button type="submit" id="reject" class="danger">驳回 Reject</button></form></section>"""
    changes = "".join(f"<li><code>{esc(orjson.dumps(c).decode())}</code></li>"
                      for c in proposal.changes)
    body = f"""<dl class="facts">
<dt>状态 Status</dt><dd><span class="status {esc(proposal.status.value)}" id="proposal-status">
{esc(proposal.status.value)}</span> {esc(proposal.reason or "")}</dd>
<dt>提出人 Author</dt><dd>{esc(proposal.author)} · {_when(proposal.created_at)}</dd>
<dt>基于版本 Base version</dt><dd>{esc(proposal.base_version)}</dd>
<dt>说明 Note</dt><dd>{esc(proposal.note or "")}</dd>
<dt>批准 Approvals</dt><dd>{esc(len(proposal.approvals))} / {esc(service.approvals_required)}:
{esc(_votes(proposal, True))}</dd>
<dt>驳回 Rejections</dt><dd>{esc(_votes(proposal, False))}</dd>
<dt>结果版本 Result version</dt><dd>{esc(proposal.result_version)}</dd>
</dl>
<h2>变更 Changes</h2><ul>{changes}</ul>
{controls}
<h2>差异 Diff</h2>
{diff}"""
    return _page(caller, f"提案 Proposal {proposal.id[:8]}", body)


def _proposal_id(request: web.Request) -> str:
    """The proposal id of the path (a UUID's characters; anything else is no proposal)."""
    proposal_id = request.match_info["id"]
    if _PROPOSAL_ID.fullmatch(proposal_id) is None:
        raise Problem(404, "Not found", "no such proposal")
    return proposal_id


async def _vote(request: web.Request, caller: Caller, *, approve: bool) -> web.Response:
    proposal_id = _proposal_id(request)
    form = await _form(request, caller)
    comment = (form.get("comment" if approve else "reason") or "").strip()[:2000] or None
    try:
        proposal = await _trust(request).vote(caller.identity.name, proposal_id,
                                              approve=approve, comment=comment)
    except (AdminError, TrustStoreError) as exc:
        _proposal_errors(caller, exc)
        return _redirect(f"/console/proposals/{proposal_id}")
    text = {ProposalStatus.APPLIED: f"已生效 Applied as version {proposal.result_version}",
            ProposalStatus.PENDING: "已批准，等待其他审批人 Approved: waiting for another approver",
            ProposalStatus.REJECTED: "已驳回 Rejected",
            ProposalStatus.FAILED: f"未能生效 Failed: {proposal.reason}"}[proposal.status]
    caller.session.flash.append(("ok" if proposal.status is not ProposalStatus.FAILED
                                 else "error", text))
    return _redirect(f"/console/proposals/{proposal_id}")


@_guard(APPROVERS)
async def post_approve(request: web.Request, caller: Caller) -> web.Response:
    """POST /console/proposals/{id}/approve: as ``POST /v1/admin/proposals/{id}/approve``."""
    return await _vote(request, caller, approve=True)


@_guard(APPROVERS)
async def post_reject(request: web.Request, caller: Caller) -> web.Response:
    """POST /console/proposals/{id}/reject: as ``POST /v1/admin/proposals/{id}/reject``."""
    return await _vote(request, caller, approve=False)


@_guard(READERS)
async def get_versions(request: web.Request, caller: Caller) -> web.Response:
    """GET /console/versions: every version, newest first, with who proposed and approved."""
    service = _trust(request)
    rows = []
    for row in reversed(await service.history()):
        author = approvers = ""
        link = ""
        if row.proposal_id:
            try:
                proposal = await service.proposal(row.proposal_id)
                author, approvers = proposal.author, ", ".join(proposal.approvals)
            except AdminError:
                author = "?"
            link = (f'<a href="/console/proposals/{esc(row.proposal_id)}">'
                    f"{esc(row.proposal_id[:8])}</a>")
        rows.append([esc(row.version), _when(row.created_at), esc(row.source), esc(row.actor),
                     link, esc(author), esc(approvers), f"<code>{esc(row.sha256[:16])}…</code>"])
    body = table(["版本 Version", "时间 Created", "来源 Source", "执行人 Actor", "提案 Proposal",
                  "提出人 Proposed by", "批准人 Approved by", "SHA-256"], rows, cls="versions")
    return _page(caller, "版本历史 Versions", body)


@_guard(READERS)
async def get_alerts(request: web.Request, caller: Caller) -> web.Response:
    """GET /console/alerts: what ``GET /v1/admin/alerts`` answers, as a table."""
    service = _trust(request)
    assert service.state is not None
    now = service.clock()
    verification = request.app.get(VERIFICATION_KEY)
    alerts = trust_alerts(service.state.snapshot.trust_list, now, _alert_days(request),
                          None if verification is None else verification.status)
    pending = await service.proposals(ProposalStatus.PENDING)
    if pending:
        alerts.append({"kind": "proposals-pending", "count": len(pending),
                       "ids": [p.id for p in pending]})
    rows = [[f'<span class="tag warn">{esc(a["kind"])}</span>',
             esc(a.get("region_code") or a.get("uri") or ""), esc(a.get("kid") or ""),
             esc(a.get("valid_until") or a.get("next_update") or a.get("since") or ""),
             esc(a.get("days_left", a.get("count", ""))), esc(a.get("detail") or "")]
            for a in alerts]
    body = (f"<p>{esc(_alert_days(request))} 天内 (within days), {_when(now)}</p>"
            + table(["类型 Kind", "对象 Subject", "kid", "时间 When", "天数/数量 Days/Count",
                     "说明 Detail"], rows, cls="alerts"))
    return _page(caller, "告警 Alerts", body)


# -- credentials -------------------------------------------------------------------------------


_KINDS = {"clients": IdentityKind.CLIENT, "operators": IdentityKind.OPERATOR}


@_guard(CREDENTIAL_READERS)
async def get_credentials(request: web.Request, caller: Caller) -> web.Response:
    """GET /console/credentials: every credential (never a secret); revoke for managers."""
    found = await request.app[IDENTITIES_KEY].credentials(None)
    manage = caller.role in CREDENTIAL_MANAGERS
    rows = []
    for c in found:
        action = ""
        kinds = "clients" if c.kind is IdentityKind.CLIENT else "operators"
        if manage and c.state.value != "disabled":
            action = (f'<form method="post" action="/console/credentials/{kinds}/'
                      f'{esc(quote(c.name, safe=""))}/disable" class="inline">{_hidden(caller)}'
                      f'<input name="reason" placeholder="理由 reason" maxlength="500" required>'
                      f'<button type="submit" class="danger revoke" data-name="{esc(c.name)}">'
                      f"吊销 Revoke</button></form>")
        rows.append([esc(c.kind.value), esc(c.name), esc(c.role.value if c.role else ""),
                     f'<span class="status {esc(c.state.value)}">{esc(c.state.value)}</span>',
                     _when(c.created_at), _when(c.expires_at),
                     esc(f"{c.disabled_by or ''} {c.disabled_reason or ''}".strip()), action])
    body = table(["类型 Kind", "名称 Name", "角色 Role", "状态 State", "创建 Created",
                  "到期 Expires", "吊销 Disabled by / why", ""], rows, cls="credentials")
    return _page(caller, "凭据 Credentials", body)


@_guard(CREDENTIAL_MANAGERS)
async def post_disable(request: web.Request, caller: Caller) -> web.Response:
    """POST /console/credentials/{kinds}/{name}/disable: as the API's ``.../disable``."""
    form = await _form(request, caller)
    kind = _KINDS.get(request.match_info["kinds"])
    if kind is None:
        raise Problem(404, "Not found", "credentials are under clients/ or operators/")
    name = request.match_info["name"]
    change = CredentialRequest(action=CredentialAction.DISABLE, kind=kind, name=name,
                               reason=(form.get("reason") or "").strip()[:500] or None,
                               expires=None, overlap=None)
    try:
        await request.app[IDENTITIES_KEY].change(
            change, audit=request.app[AUDIT_PORT_KEY], actor=caller.identity.name,
            request_id=request.get(REQUEST_ID_KEY), source=request.remote)
    except IdentityError as exc:
        caller.session.flash.append(("error", f"拒绝 Refused ({exc.refusal.value}): {exc}"))
    else:
        caller.session.flash.append(("ok", f"已吊销 {kind.value} {name} disabled"))
    return _redirect("/console/credentials")


# -- the audit log -----------------------------------------------------------------------------


def _audit(request: web.Request) -> AuditService:
    service = request.app.get(AUDIT_KEY)
    if service is None:
        raise Problem(503, "Audit log unavailable", "this instance serves no audit log")
    return service


def _day_ms(text: str, *, end: bool) -> int | None:
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError as exc:
        raise Problem(400, "Bad request", "dates must be YYYY-MM-DD") from exc
    start = datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ)
    return int(((start + timedelta(days=1)) if end else start).timestamp() * 1000)


_FILTERS = ("from", "to", "partner", "matter", "event_type", "outcome")


@_guard(AUDITORS)
async def get_audit(request: web.Request, caller: Caller) -> web.Response:
    """GET /console/audit: records with filters (days in China Standard Time), a page at a time."""
    q = {name: request.query.get(name, "").strip()[:100] for name in (*_FILTERS, "cursor")}
    try:
        after = int(q["cursor"]) if q["cursor"] else -1
    except ValueError as exc:
        raise Problem(400, "Bad request", "cursor must be an integer") from exc
    flt = RecordFilter(start_ms=_day_ms(q["from"], end=False), end_ms=_day_ms(q["to"], end=True),
                       partner=q["partner"] or None, matter=q["matter"] or None,
                       event_type=q["event_type"] or None, outcome=q["outcome"] or None,
                       after_index=after, limit=PAGE_SIZE)
    found = [(i, r or {"event_type": "(pruned)"}) for i, r in await _audit(request).records(flt)]
    rows = [[f'<a href="/console/audit/entries/{esc(i)}" class="entry">{esc(i)}</a>',
             _when(r.get("time")), esc(r.get("event_type")),
             esc(f"{r.get('actor_kind') or ''} {r.get('actor_id') or ''}"),
             esc(r.get("partner_region")), esc(r.get("matter_before")), esc(r.get("outcome")),
             esc((r.get("details") or {}).get("action") if isinstance(r.get("details"), dict)
                 else "")] for i, r in found]
    inputs = "".join(
        f'<label>{esc(label)} <input name="{name}" value="{esc(q[name])}" '
        f'{"type=date" if name in ("from", "to") else "maxlength=100"}></label>'
        for name, label in (("from", "从 From"), ("to", "到 To"), ("partner", "地区 Partner"),
                            ("matter", "事项 Matter"), ("event_type", "事件 Event type"),
                            ("outcome", "结果 Outcome")))
    more = ""
    if len(found) == PAGE_SIZE:
        params = urlencode([*((k, q[k]) for k in _FILTERS if q[k]),
                            ("cursor", str(found[-1][0]))])
        more = (f'<p><a id="next-page" href="/console/audit?{esc(params)}">'
                "下一页 Next page →</a></p>")
    body = (f'<form method="get" action="/console/audit" class="card filters">{inputs}'
            f'<button type="submit" id="filter">筛选 Filter</button></form>'
            + table(["序号 Index", "时间 Time", "事件 Event", "执行者 Actor", "地区 Partner",
                     "事项 Matter", "结果 Outcome", "操作 Action"], rows, cls="records") + more)
    return _page(caller, "审计记录 Audit log", body)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@_guard(AUDITORS)
async def get_entry(request: web.Request, caller: Caller) -> web.Response:
    """GET /console/audit/entries/{index}: the record; the browser checks its inclusion proof."""
    try:
        index = int(request.match_info["index"])
    except ValueError as exc:
        raise Problem(400, "Bad request", "index must be an integer") from exc
    proof = await _audit(request).entry(index) if 0 <= index < 2**62 else None
    if proof is None:
        raise Problem(404, "Not found", f"no audit entry {index}")
    if proof.pruned:
        body = (f"<p>记录已按保留期删除 The record was pruned (retention); its leaf hash"
                f" stays in the tree.</p><pre>leaf hash {esc(_b64(proof.leaf_hash))}</pre>"
                f"<h2>检查点 Checkpoint</h2><pre class=\"note\">{esc(proof.checkpoint)}</pre>")
        return _page(caller, f"审计条目 Entry {proof.index}", body)
    data = {"index": proof.index, "leaf": _b64(proof.leaf), "tree_size": proof.tree_size,
            "inclusion": [_b64(h) for h in proof.inclusion], "checkpoint": proof.checkpoint}
    record = orjson.dumps(proof.record, option=orjson.OPT_INDENT_2).decode()
    body = f"""{json_block("proof-data", data)}
<section class="card" id="proof">
<h2>包含证明 Inclusion proof (RFC 6962), checked in this browser</h2>
<ol id="proof-steps" class="steps"></ol>
<p id="proof-result" data-state="pending">正在验证… (checking)</p>
<p class="hint">叶哈希 SHA-256(0x00 ‖ leaf) 沿 {esc(len(proof.inclusion))} 个兄弟节点折叠为
树大小 {esc(proof.tree_size)} 的根，与检查点中签名的根比对；检查点的 Ed25519 签名用
<a href="/v1/audit/key">/v1/audit/key</a> 公布的公钥验证，并与
<a href="/v1/audit/checkpoint">/v1/audit/checkpoint</a> 当前公布的检查点比较。</p>
</section>
<h2>记录 Record #{esc(proof.index)}</h2>
<pre class="record">{esc(record)}</pre>
<h2>检查点 Checkpoint</h2>
<pre class="note">{esc(proof.checkpoint)}</pre>"""
    return _page(caller, f"审计条目 Entry {proof.index}", body, scripts=("proof.js",))


# -- statistics and the half-year report -----------------------------------------------------


Counts = dict[tuple[str, str, str], int]


async def _days(request: web.Request, first: date, last: date) -> dict[date, Counts]:
    """The audit service's daily counts (partner, matter, outcome) for each day first..last."""
    service = _audit(request)
    out: dict[date, Counts] = {}
    day = first
    while day <= last:
        counts: Counts = {}
        for partner, matter, outcome, n in await service.stats(day):
            key = (partner or "-", matter or "-", outcome)
            counts[key] = counts.get(key, 0) + n
        out[day] = counts
        day += timedelta(days=1)
    return out


def _series(days: dict[date, Counts], bucket: Callable[[date], str]) -> dict[str, Any]:
    """Chart data: totals per bucket (day or month) by outcome, and by partner."""
    labels: list[str] = []
    by_outcome: dict[str, dict[str, int]] = defaultdict(dict)
    by_partner: dict[str, dict[str, int]] = defaultdict(dict)
    for day, counts in sorted(days.items()):
        label = bucket(day)
        if not labels or labels[-1] != label:
            labels.append(label)
        for (partner, _matter, outcome), n in counts.items():
            by_outcome[outcome][label] = by_outcome[outcome].get(label, 0) + n
            by_partner[partner][label] = by_partner[partner].get(label, 0) + n

    def rows(groups: dict[str, dict[str, int]]) -> dict[str, list[int]]:
        return {k: [v.get(lbl, 0) for lbl in labels] for k, v in sorted(groups.items())}

    return {"labels": labels, "outcomes": rows(by_outcome), "partners": rows(by_partner)}


def _matrix(days: dict[date, Counts]) -> str:
    """Partner x matter x outcome over the whole period, as a table."""
    total: Counts = defaultdict(int)
    for counts in days.values():
        for key, n in counts.items():
            total[key] += n
    outcomes = sorted({o for _, _, o in total})
    pairs = sorted({(p, m) for p, m, _ in total})
    rows = [[esc(p), esc(m), *(esc(total.get((p, m, o), 0)) for o in outcomes),
             f"<strong>{esc(sum(total.get((p, m, o), 0) for o in outcomes))}</strong>"]
            for p, m in pairs]
    return table(["地区 Partner", "事项 Matter", *(esc(o) for o in outcomes), "合计 Total"], rows,
                 cls="matrix")


def _today() -> date:
    return datetime.now(UTC).astimezone(CHINA_TZ).date()


@_guard(AUDITORS)
async def get_stats(request: web.Request, caller: Caller) -> web.Response:
    """GET /console/stats[?days=]: 跨省通办 requests per partner x matter x outcome, charted."""
    try:
        span = min(max(int(request.query.get("days", "30")), 1), MAX_STATS_DAYS)
    except ValueError as exc:
        raise Problem(400, "Bad request", "days must be an integer") from exc
    last = _today()
    days = await _days(request, last - timedelta(days=span - 1), last)
    daily = _series(days, lambda d: d.isoformat())
    monthly = _series(days, lambda d: f"{d.year}-{d.month:02d}")
    grand = sum(sum(c.values()) for c in days.values())
    body = f"""{json_block("stats-data", {"daily": daily, "monthly": monthly})}
<p class="filters">时段 Period: {esc(span)} 天 (China Standard Time, to {esc(last)}) ·
<a href="/console/stats?days=7">7</a> · <a href="/console/stats?days=30">30</a> ·
<a href="/console/stats?days=90">90</a> · <a href="/console/stats?days=184">184</a> ·
合计 total <strong id="stats-total">{esc(grand)}</strong></p>
<section class="charts">
<figure><figcaption>每日请求（按结果） Requests per day by outcome</figcaption>
<canvas id="chart-daily-outcome" role="img" aria-label="daily by outcome"></canvas></figure>
<figure><figcaption>每日请求（按地区） Requests per day by partner</figcaption>
<canvas id="chart-daily-partner" role="img" aria-label="daily by partner"></canvas></figure>
<figure><figcaption>每月请求（按结果） Requests per month by outcome</figcaption>
<canvas id="chart-monthly-outcome" role="img" aria-label="monthly by outcome"></canvas></figure>
</section>
<h2>地区 × 事项 × 结果 Partner × matter × outcome</h2>
{_matrix(days)}"""
    return _page(caller, "跨省通办统计 Statistics", body, scripts=("chart.umd.min.js", "stats.js"))


def _half(text: str | None) -> tuple[date, date, str]:
    """The half-year ``YYYY-H1`` or ``YYYY-H2`` (default: the one before today's)."""
    today = _today()
    if not text:
        year, half = (today.year, 1) if today.month > 6 else (today.year - 1, 2)
    else:
        try:
            year_text, half_text = text.split("-H")
            year, half = int(year_text), int(half_text)
        except ValueError:
            raise Problem(400, "Bad request", "half must be YYYY-H1 or YYYY-H2") from None
        if half not in (1, 2) or not 2000 <= year <= 9999:
            raise Problem(400, "Bad request", "half must be YYYY-H1 or YYYY-H2")
    first = date(year, 1 if half == 1 else 7, 1)
    last = date(year, 6, 30) if half == 1 else date(year, 12, 31)
    return first, min(last, today), f"{year}-H{half}"


@_guard(AUDITORS)
async def get_report(request: web.Request, caller: Caller) -> web.Response:
    """GET /console/report[?half=YYYY-H1|H2]: the printable half-year report."""
    first, last, name = _half(request.query.get("half"))
    days = await _days(request, first, last) if first <= last else {}
    monthly = _series(days, lambda d: f"{d.year}-{d.month:02d}")
    rows = [[esc(label), *(esc(monthly["outcomes"][o][i]) for o in monthly["outcomes"]),
             (f"<strong>{esc(sum(monthly['outcomes'][o][i] for o in monthly['outcomes']))}"
             "</strong>")] for i, label in enumerate(monthly["labels"])]
    grand = sum(sum(c.values()) for c in days.values())
    partners = {p: sum(v) for p, v in monthly["partners"].items()}
    partner_total = sum(n for p, n in partners.items() if p != "-")
    this_year = int(name[:4])
    choices = " · ".join(f'<a href="/console/report?half={y}-H{h}">{y}-H{h}</a>'
                         for y in (this_year - 1, this_year) for h in (1, 2))
    body = f"""{json_block("stats-data", {"monthly": monthly})}
<p class="filters no-print">报告期 Periods: {choices} ·
<button type="button" id="print" class="no-print">打印 Print</button></p>
<section class="report">
<p class="meta">湖州市电子证照跨省互认网关 · 跨省通办运行情况半年度分析报告<br>
报告期 {esc(first)} 至 {esc(last)} (UTC+08:00) · 生成 {_when(datetime.now(UTC))} ·
依据审计日志统计 (from the audit log's statistics)</p>
<h2>一、总体情况 Overview</h2>
<p>报告期内审计日志共记录 <strong id="report-total">{esc(grand)}</strong> 笔，其中涉及合作地区的
跨省通办请求 <strong id="report-partner-total">{esc(partner_total)}</strong> 笔，涉及合作地区
{esc(len([p for p in partners if p != "-"]))} 个（“-”为不涉及合作地区的记录，如操作员变更）。</p>
<figure><figcaption>每月请求（按结果） Requests per month by outcome</figcaption>
<canvas id="chart-monthly-outcome" role="img" aria-label="monthly by outcome"></canvas></figure>
<h2>二、按月统计 By month</h2>
{table(["月份 Month", *(esc(o) for o in monthly["outcomes"]), "合计 Total"], rows, cls="months")}
<h2>三、按地区统计 By partner</h2>
{table(["地区 Partner", "请求 Requests"], [[esc(p), esc(n)] for p, n in sorted(partners.items())])}
<h2>四、地区 × 事项 × 结果 Partner × matter × outcome</h2>
{_matrix(days)}
</section>"""
    return _page(caller, f"半年度分析报告 {name}", body,
                 scripts=("chart.umd.min.js", "stats.js"))


# -- wiring ------------------------------------------------------------------------------------


async def get_bare(_: web.Request) -> web.Response:
    """GET /console: to /console/."""
    return _redirect("/console/")


_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".md": "text/markdown"}
STATIC_FILES_KEY: web.AppKey[dict[str, bytes]] = web.AppKey("console_static")


def _read_static() -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(STATIC_DIR.iterdir())
            if path.suffix in _STATIC_TYPES}


async def static_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: read the console's few static files once, off the event loop."""
    app[STATIC_FILES_KEY] = await asyncio.get_running_loop().run_in_executor(None, _read_static)
    yield


async def sessions_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: with ``redis_url``, console sessions in Redis, shared by every worker
    and instance (``gateway.console.sessions``); else in this process."""
    settings = app[SETTINGS_KEY]
    memory = app[CONSOLE_SESSIONS_KEY]
    if not settings.redis_url:
        yield
        return
    seal_key = await asyncio.get_running_loop().run_in_executor(
        None, load_or_create_secret, keys_dir(settings.data_dir) / "console-sessions.key")
    store = RedisSessionStore(redis_client(settings.redis_url, timeout_s=1.0), seal_key,
                              memory.clock, idle=memory.idle, lifetime=memory.lifetime)
    app[CONSOLE_SESSIONS_KEY] = store
    try:
        yield
    finally:
        await store.close()


async def get_static(request: web.Request) -> web.Response:
    """GET /console/static/{name}: a bundled script, stylesheet or licence (no CDN)."""
    name = request.match_info["name"]
    body = request.app[STATIC_FILES_KEY].get(name)
    if body is None:
        raise web.HTTPNotFound()
    response = web.Response(body=body, content_type=_STATIC_TYPES[Path(name).suffix],
                            charset="utf-8", headers={"Cache-Control": "public, max-age=3600"})
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def setup(app: web.Application) -> None:
    """Add the console's pages, its static files and its session store."""
    settings = app[SETTINGS_KEY]
    idle = timedelta(minutes=settings.console.session_idle_minutes)
    lifetime = timedelta(hours=settings.console.session_hours)
    app[CONSOLE_SESSIONS_KEY] = SessionStore(lambda: datetime.now(UTC), idle=idle,
                                             lifetime=lifetime)
    app.cleanup_ctx.extend([static_ctx, sessions_ctx])
    r = app.router
    r.add_get("/console", get_bare)
    r.add_get("/console/", get_home)
    r.add_get("/console/login", get_login)
    r.add_post("/console/login", post_login)
    r.add_post("/console/logout", post_logout)
    r.add_get("/console/trust-list", get_trust_list)
    r.add_get("/console/proposals", get_proposals)
    r.add_post("/console/proposals", post_proposal)
    r.add_get("/console/proposals/{id}", get_proposal)
    r.add_post("/console/proposals/{id}/approve", post_approve)
    r.add_post("/console/proposals/{id}/reject", post_reject)
    r.add_get("/console/versions", get_versions)
    r.add_get("/console/alerts", get_alerts)
    r.add_get("/console/credentials", get_credentials)
    r.add_post("/console/credentials/{kinds}/{name}/disable", post_disable)
    r.add_get("/console/audit", get_audit)
    r.add_get("/console/audit/entries/{index}", get_entry)
    r.add_get("/console/stats", get_stats)
    r.add_get("/console/report", get_report)
    r.add_get("/console/static/{name}", get_static)
