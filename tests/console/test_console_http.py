"""The console over plain HTTP: sessions, CSRF, roles and audit as the API has them."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from gateway.audit import EventType, RecordFilter
from gateway.console.routes import CONSOLE_SESSIONS_KEY
from gateway.web.appkeys import AUDIT_KEY
from tests.console.conftest import Browserless, Gateway, GatewayFactory

pytestmark = pytest.mark.asyncio

Person = Callable[[Gateway], Browserless]


async def _proposals(gateway: Gateway) -> list[dict[str, Any]]:
    resp = await gateway.client.get("/v1/admin/proposals", headers=gateway.api("vera"))
    assert 200 == resp.status
    return list((await resp.json())["proposals"])


async def _actions(gateway: Gateway) -> list[tuple[str, str | None, str]]:
    """(action, actor, outcome) of the trust-list and credential records in the audit log."""
    rows = await gateway.client.app[AUDIT_KEY].records(
        RecordFilter(event_type=EventType.OPERATOR_CHANGE.value, limit=1000))
    return [(r["details"].get("action"), r.get("actor_id"), r["outcome"]) for _, r in rows]


class TestSignIn:
    """A token the API accepts becomes a server-side session with a hardened cookie."""

    async def test_cookie_flags_and_new_session_id(self, start_gateway: GatewayFactory,
                                                   person: Person) -> None:
        gateway = await start_gateway()
        olga = person(gateway)
        await olga.get("/console/login")
        before = {c.key: c.value for c in olga.http.cookie_jar}
        resp = await olga.sign_in(gateway.tokens["olga"])
        assert 303 == resp.status
        cookie = resp.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert "Path=/console" in cookie
        assert "Secure" not in cookie  # served over http here
        after = {c.key: c.value for c in olga.http.cookie_jar}
        assert before["ecert_console"] != after["ecert_console"]  # no session fixation
        status, page = await olga.get("/console/")
        assert 200 == status
        assert "olga" in page

    async def test_secure_cookie_behind_https(self, start_gateway: GatewayFactory,
                                              person: Person) -> None:
        gateway = await start_gateway(public_url="https://gateway.example")
        async with person(gateway).http.get(gateway.base + "/console/login") as resp:
            assert 200 == resp.status
            assert "Secure" in resp.headers["Set-Cookie"]
            assert "HttpOnly" in resp.headers["Set-Cookie"]

    async def test_unknown_token_and_client_key_refused(self, start_gateway: GatewayFactory,
                                                        person: Person) -> None:
        gateway = await start_gateway()
        for token in ("ecert-op-nonsense", gateway.tokens["client"], "x" * 300):
            one = person(gateway)
            resp = await one.sign_in(token)
            assert 401 == resp.status
            assert 303 == (await one.get("/console/"))[0]

    async def test_sign_in_needs_the_form_csrf_token(self, start_gateway: GatewayFactory,
                                                     person: Person) -> None:
        gateway = await start_gateway()
        one = person(gateway)
        await one.get("/console/login")
        status, _, _ = await one.post("/console/login", {"token": gateway.tokens["olga"]},
                                      csrf="forged")
        assert 403 == status
        assert 303 == (await one.get("/console/"))[0]

    async def test_sign_out_ends_the_session(self, start_gateway: GatewayFactory,
                                             person: Person) -> None:
        gateway = await start_gateway()
        one = person(gateway)
        await one.sign_in(gateway.tokens["olga"])
        stale = {c.key: c.value for c in one.http.cookie_jar}["ecert_console"]
        status, _, where = await one.post("/console/logout", {})
        assert (303, "/console/login") == (status, where)
        one.http.cookie_jar.update_cookies({"ecert_console": stale})
        assert 303 == (await one.get("/console/trust-list"))[0]

    async def test_idle_session_expires(self, start_gateway: GatewayFactory,
                                        person: Person) -> None:
        gateway = await start_gateway()
        one = person(gateway)
        await one.sign_in(gateway.tokens["olga"])
        store = gateway.client.app[CONSOLE_SESSIONS_KEY]
        now = store.clock()
        store.clock = lambda: now + store.idle + timedelta(seconds=1)
        status, _ = await one.get("/console/trust-list")
        assert 303 == status

    async def test_session_ends_after_its_lifetime_even_when_active(
            self, start_gateway: GatewayFactory, person: Person) -> None:
        gateway = await start_gateway(
            "[console]\nsession_idle_minutes = 600\nsession_hours = 1\n")
        one = person(gateway)
        await one.sign_in(gateway.tokens["olga"])
        store = gateway.client.app[CONSOLE_SESSIONS_KEY]
        start = store.clock()
        store.clock = lambda: start + timedelta(minutes=59)
        assert 200 == (await one.get("/console/trust-list"))[0]
        store.clock = lambda: start + timedelta(minutes=61)
        assert 303 == (await one.get("/console/trust-list"))[0]

    async def test_home_page_states_the_configured_idle_limit(
            self, start_gateway: GatewayFactory, person: Person) -> None:
        """The idle limit the home page tells the operator is the one configured."""
        gateway = await start_gateway("[console]\nsession_idle_minutes = 7\n")
        one = person(gateway)
        await one.sign_in(gateway.tokens["olga"])
        status, page = await one.get("/console/")
        assert 200 == status
        assert "会话空闲 7 分钟后失效" in page

    async def test_disabled_token_ends_the_session(self, start_gateway: GatewayFactory,
                                                   person: Person) -> None:
        gateway = await start_gateway()
        olga = person(gateway)
        await olga.sign_in(gateway.tokens["olga"])
        assert 200 == (await olga.get("/console/trust-list"))[0]
        resp = await gateway.client.post("/v1/admin/credentials/operators/olga/disable",
                                         headers=gateway.api("adam"), json={"reason": "left"})
        assert 200 == resp.status
        assert 303 == (await olga.get("/console/trust-list"))[0]


class TestRolesAsTheApi:
    """Each page and action takes the API's role decision."""

    @pytest.mark.parametrize(("name", "path", "api"), [
        ("vera", "/console/credentials", "/v1/admin/credentials"),
        ("olga", "/console/audit", "/v1/audit/records"),
        ("adam", "/console/stats", "/v1/audit/stats"),
        ("audrey", "/console/trust-list", "/v1/admin/trust-list"),
        ("mark", "/console/trust-list", "/v1/admin/trust-list"),
        ("vera", "/console/trust-list", "/v1/admin/trust-list"),
    ])
    async def test_page_status_is_the_api_status(self, start_gateway: GatewayFactory,
                                                 person: Person, name: str, path: str,
                                                 api: str) -> None:
        gateway = await start_gateway()
        one = person(gateway)
        await one.sign_in(gateway.tokens[name])
        expected = (await gateway.client.get(api, headers=gateway.api(name))).status
        assert (await one.get(path))[0] == expected

    async def test_viewer_and_auditor_see_no_controls_and_cannot_propose(
            self, start_gateway: GatewayFactory, person: Person) -> None:
        gateway = await start_gateway()
        for name in ("vera", "audrey"):
            one = person(gateway)
            await one.sign_in(gateway.tokens[name])
            status, page = await one.get("/console/trust-list")
            assert 200 == status
            assert 'action="/console/proposals"' not in page
            status, page, _ = await one.post("/console/proposals",
                                             {"kind": "suspend-partner", "region_code": "310000"})
            assert 403 == status
        assert [] == await _proposals(gateway)

    async def test_post_without_the_session_csrf_token_changes_nothing(
            self, start_gateway: GatewayFactory, person: Person) -> None:
        gateway = await start_gateway()
        olga = person(gateway)
        await olga.sign_in(gateway.tokens["olga"])
        status, _, _ = await olga.post("/console/proposals",
                                       {"kind": "suspend-partner", "region_code": "310000"},
                                       csrf="not-the-token")
        assert 403 == status
        assert [] == await _proposals(gateway)

    async def test_dual_control_and_the_same_audit_records(
            self, start_gateway: GatewayFactory, person: Person) -> None:
        gateway = await start_gateway()
        adam, alice = person(gateway), person(gateway)
        await adam.sign_in(gateway.tokens["adam"])
        await adam.get("/console/trust-list")
        status, _, where = await adam.post("/console/proposals",
                                           {"kind": "suspend-partner", "region_code": "310000",
                                            "note": "test"})
        assert 303 == status
        assert where is not None
        proposal_id = where.rsplit("/", 1)[1]
        # The author's own approval: refused by the service, as over the API.
        _, page = await adam.get(where)
        assert 'id="approve"' not in page
        await adam.post(f"{where}/approve", {})
        _, page = await adam.get(where)
        assert "own-proposal" in page
        assert "pending" == (await _proposals(gateway))[0]["status"]
        await alice.sign_in(gateway.tokens["alice"])
        await alice.get(where)
        await alice.post(f"{where}/approve", {"comment": "ok"})
        proposals = await _proposals(gateway)
        assert ("pending", ["alice"]) == (proposals[0]["status"],
                                          [a["operator"] for a in proposals[0]["approvals"]])
        assert proposal_id == proposals[0]["id"]
        console_records = await _actions(gateway)
        assert [("trust-list-proposal-created", "adam", "ok"),
                ("trust-list-vote-refused", "adam", "refused"),
                ("trust-list-proposal-approved", "alice", "ok")] == console_records
        # The same steps over the API leave the same records.
        resp = await gateway.client.post("/v1/admin/proposals", headers=gateway.api("adam"),
                                         json={"changes": [{"kind": "suspend-partner",
                                                            "region_code": "340100"}],
                                               "note": "test"})
        second = (await resp.json())["id"]
        for name in ("adam", "alice"):
            await gateway.client.post(f"/v1/admin/proposals/{second}/approve",
                                      headers=gateway.api(name))
        assert console_records == (await _actions(gateway))[len(console_records):]


class TestActionsAsTheApi:
    """Reject, revoke and the audit pages do what the API does."""

    async def test_reject_ends_the_proposal(self, start_gateway: GatewayFactory,
                                            person: Person) -> None:
        gateway = await start_gateway()
        resp = await gateway.client.get("/v1/admin/trust-list", headers=gateway.api("vera"))
        hefei = next(p for p in (await resp.json())["partners"] if p["region_code"] == "340100")
        kid = next(a["kid"] for a in hefei["anchors"] if a["use"] == "licence-signing")
        olga, adam = person(gateway), person(gateway)
        await olga.sign_in(gateway.tokens["olga"])
        _, _, where = await olga.post("/console/proposals",
                                      {"kind": "suspend-anchor", "region_code": "340100",
                                       "kid": kid})
        assert where is not None
        assert where.startswith("/console/proposals/")
        await adam.sign_in(gateway.tokens["adam"])
        _, page = await adam.get(where)
        assert 'id="reject"' in page
        assert kid in page  # the diff names the anchor
        status, _, back = await adam.post(f"{where}/reject", {"reason": "不需要"})
        assert (303, where) == (status, back)
        proposal = (await _proposals(gateway))[0]
        assert ("rejected", "adam", "不需要") == (
            proposal["status"], proposal["rejections"][0]["operator"],
            proposal["rejections"][0]["comment"])
        assert ("trust-list-proposal-rejected", "adam", "ok") == (await _actions(gateway))[-1]

    async def test_unknown_or_malformed_proposal_is_not_found(
            self, start_gateway: GatewayFactory, person: Person) -> None:
        gateway = await start_gateway()
        adam = person(gateway)
        await adam.sign_in(gateway.tokens["adam"])
        assert 404 == (await adam.get("/console/proposals/no-such-id"))[0]
        assert 404 == (await adam.get("/console/proposals/a%0D%0Ab"))[0]
        status, _, _ = await adam.post("/console/proposals/a%0D%0Ab/approve", {})
        assert 404 == status

    async def test_revoke_is_the_api_disable(self, start_gateway: GatewayFactory,
                                             person: Person) -> None:
        gateway = await start_gateway()
        olga, adam = person(gateway), person(gateway)
        await olga.sign_in(gateway.tokens["olga"])
        _, page = await olga.get("/console/credentials")
        assert "window-01" in page
        assert "/disable" not in page  # an operator reads, an approver revokes
        status, _, _ = await olga.post("/console/credentials/clients/window-01/disable",
                                       {"reason": "x"})
        assert 403 == status
        await adam.sign_in(gateway.tokens["adam"])
        await adam.get("/console/credentials")
        status, _, where = await adam.post("/console/credentials/clients/window-01/disable",
                                           {"reason": "窗口停用"})
        assert (303, "/console/credentials") == (status, where)
        resp = await gateway.client.post("/v1/verifications", headers=gateway.api("client"),
                                         json={"credential": "x"})
        assert 401 == resp.status
        resp = await gateway.client.get("/v1/admin/credentials/clients/window-01",
                                        headers=gateway.api("audrey"))
        body = await resp.json()
        assert ("disabled", "adam", "窗口停用") == (body["state"], body["disabled_by"],
                                                 body["disabled_reason"])
        rows = await gateway.client.app[AUDIT_KEY].records(RecordFilter(limit=1000))
        index, record = rows[-1]
        api = await gateway.client.get(f"/v1/audit/entries/{index}",
                                       headers=gateway.api("audrey"))
        assert record == (await api.json())["record"]
        assert ("adam", "ok") == (record["actor_id"], record["outcome"])

    async def test_audit_pages_follow_the_cursor(self, start_gateway: GatewayFactory,
                                                 person: Person) -> None:
        gateway = await start_gateway()
        for _ in range(50):
            await gateway.client.post("/v1/verifications", headers=gateway.api("client"),
                                      json={"credential": "not-a-licence"})
        audrey = person(gateway)
        await audrey.sign_in(gateway.tokens["audrey"])
        status, page = await audrey.get("/console/audit?event_type=verification")
        assert 200 == status
        first = set(re.findall(r'href="/console/audit/entries/(\d+)"', page))
        assert 50 == len(first)
        link = re.search(r'id="next-page" href="([^"]+)"', page)
        assert link is not None
        status, page = await audrey.get(html.unescape(link.group(1)))
        rest = set(re.findall(r'href="/console/audit/entries/(\d+)"', page))
        api = await gateway.client.get("/v1/audit/records?event_type=verification&limit=1000",
                                       headers=gateway.api("audrey"))
        expected = {str(r["index"]) for r in (await api.json())["records"]}
        assert first.isdisjoint(rest)
        assert expected == first | rest
