"""The console in a real browser: Debian's Chromium driven by Playwright.

Each page visited is kept as a screenshot under ``test-artifacts/console/`` (ignored by
git) for a reviewer to look at. Without ``/usr/bin/chromium`` these tests skip, and
fail when the run requires its services (``ECERT_REQUIRE_SERVICES=1``, as ``.ci/run``).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from playwright.async_api import Browser, Page, Route, async_playwright, expect

from tests.conftest import REPO
from tests.console.conftest import Gateway, GatewayFactory
from tests.services import unavailable
from trust import CHINA_TZ

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
SHOTS = REPO / "test-artifacts" / "console"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless (Playwright cannot download its own builds here)."""
    if shutil.which(CHROMIUM) is None:
        unavailable(f"{CHROMIUM} is missing: apt-get install chromium fonts-noto-cjk")
    async with async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def _sign_in(browser: Browser, gateway: Gateway, name: str) -> Page:
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    await page.goto(gateway.base + "/console/trust-list")
    await expect(page).to_have_url(gateway.base + "/console/login")
    await page.fill("#token", gateway.tokens[name])
    await page.click("#sign-in")
    await expect(page.locator(".who")).to_contain_text(name)
    page.set_default_timeout(15_000)
    setattr(page, "console_errors", errors)  # noqa: B010 - read back by the tests
    return page


async def test_propose_approve_in_force(browser: Browser, start_gateway: GatewayFactory
                                        ) -> None:
    """An approver proposes a suspension; a second approver approves; it is in force."""
    gateway = await start_gateway(approvals_required=1)
    adam = await _sign_in(browser, gateway, "adam")
    await _shot(adam, "01-home-approver")
    await adam.click("text=信任列表 Trust list")
    await expect(adam.locator("#tl-version")).to_have_text("3")
    await _shot(adam, "02-trust-list")
    await adam.click('button.propose[data-kind="suspend-partner"][data-region="310000"]')
    await expect(adam.locator("#proposal-status")).to_have_text("pending")
    await expect(adam.locator("#own-proposal")).to_be_visible()
    await expect(adam.locator("#approve")).to_have_count(0)
    await _shot(adam, "03-proposal-pending")
    proposal_url = adam.url
    await adam.click("#sign-out")
    await expect(adam).to_have_url(gateway.base + "/console/login")

    alice = await _sign_in(browser, gateway, "alice")
    await alice.goto(proposal_url)
    await expect(alice.locator("table.diff")).to_contain_text("suspended")
    await alice.fill('input[name="comment"]', "同意暂停")
    await alice.click("#approve")
    await expect(alice.locator("#proposal-status")).to_have_text("applied")
    await _shot(alice, "04-proposal-applied")
    await alice.click("text=信任列表 Trust list")
    await expect(alice.locator("#tl-version")).to_have_text("4")
    await expect(alice.locator("table.suspended")).to_contain_text("310000")
    await _shot(alice, "05-trust-list-suspended")
    await alice.click("text=版本历史 Versions")
    row = alice.locator("table.versions tbody tr").first
    await expect(row).to_contain_text("adam")
    await expect(row).to_contain_text("alice")
    await _shot(alice, "06-versions")
    await alice.click("text=告警 Alerts")
    await _shot(alice, "07-alerts")
    await alice.click("text=凭据 Credentials")
    await expect(alice.locator("table.credentials")).to_contain_text("window-01")
    await _shot(alice, "08-credentials")
    row = alice.locator("table.credentials tr", has_text="window-01")
    await row.locator('input[name="reason"]').fill("窗口停用")
    await row.locator("button.revoke").click()
    await expect(alice.locator("table.credentials tr", has_text="window-01")
                 ).to_contain_text("disabled")
    await _shot(alice, "09-credential-revoked")
    resp = await gateway.client.get("/v1/admin/credentials/clients/window-01",
                                    headers=gateway.api("audrey"))
    assert ("disabled", "alice") == ((body := await resp.json())["state"], body["disabled_by"])
    # The server says the same over the API: version 4 is served, Shanghai suspended.
    resp = await gateway.client.get("/v1/admin/trust-list", headers=gateway.api("vera"))
    document = await resp.json()
    assert 4 == document["version"]
    assert "suspended" == next(p["status"] for p in document["partners"]
                               if p["region_code"] == "310000")
    assert [] == adam.console_errors + alice.console_errors  # type: ignore[attr-defined]


async def test_auditor_log_proof_stats_report(browser: Browser, start_gateway: GatewayFactory
                                              ) -> None:
    """An auditor browses the log, checks a proof in the browser, opens charts and report."""
    gateway = await start_gateway()
    page = await _sign_in(browser, gateway, "audrey")
    await page.click("text=审计记录 Audit log")
    await expect(page.locator("table.records tbody tr").first).to_be_visible()
    await _shot(page, "10-audit-log")
    await page.fill('input[name="outcome"]', "TOTAL_PASSED")
    await page.click("#filter")
    await expect(page.locator("table.records")).to_contain_text("TOTAL_PASSED")
    await expect(page.locator("table.records")).not_to_contain_text("TOTAL_FAILED")
    await page.locator("a.entry").nth(1).click()
    await expect(page.locator('#proof-result[data-state="verified"]')).to_be_visible()
    await expect(page.locator("#proof-steps li.fail")).to_have_count(0)
    await _shot(page, "11-entry-proof-verified")
    await page.click("text=跨省通办统计 Statistics")
    await expect(page.locator('#chart-daily-outcome[data-drawn="true"]')).to_be_attached()
    resp = await gateway.client.get("/v1/audit/stats", headers=gateway.api("audrey"))
    today = await resp.json()
    assert today["total"] >= 5  # the five verifications of the fixture, at least
    await expect(page.locator("#stats-total")).to_have_text(str(today["total"]))
    await expect(page.locator("table.matrix")).to_contain_text("310000")
    await _shot(page, "12-statistics")
    await page.click("text=半年度报告 Report")
    await expect(page.locator("h1")).to_contain_text("半年度分析报告")
    await _shot(page, "13-report")
    await page.goto(gateway.base + "/console/report?half=" + _this_half())
    await expect(page.locator("#report-total")).to_have_text(str(today["total"]))
    await page.emulate_media(media="print")
    await expect(page.locator("header.top")).to_be_hidden()
    await _shot(page, "14-report-print")
    assert [] == page.console_errors  # type: ignore[attr-defined]


def _this_half() -> str:
    today = datetime.now(UTC).astimezone(CHINA_TZ).date()
    return f"{today.year}-H{1 if today.month <= 6 else 2}"


async def test_tampered_proof_fails_in_the_browser(browser: Browser,
                                                   start_gateway: GatewayFactory) -> None:
    """The browser's check is a check: a leaf changed in the page is not verified."""
    gateway = await start_gateway()
    page = await _sign_in(browser, gateway, "audrey")
    await page.route("**/console/audit/entries/1", _tamper)
    await page.goto(gateway.base + "/console/audit/entries/1")
    await expect(page.locator('#proof-result[data-state="failed"]')).to_be_visible()
    await _shot(page, "15-entry-proof-tampered")


async def _tamper(route: Route) -> None:
    response = await route.fetch()
    body = await response.text()
    marker = '"leaf":"'
    at = body.index(marker) + len(marker)
    flipped = "B" if body[at] != "B" else "C"
    await route.fulfill(response=response, body=body[:at] + flipped + body[at + 1:])


@pytest.mark.parametrize("name", ["vera", "audrey"])
async def test_viewer_and_auditor_see_no_trust_list_controls(
        browser: Browser, start_gateway: GatewayFactory, name: str) -> None:
    """A viewer changes nothing; an auditor sees no trust-list controls."""
    gateway = await start_gateway()
    resp = await gateway.client.post("/v1/admin/proposals", headers=gateway.api("olga"),
                                     json={"changes": [{"kind": "suspend-partner",
                                                        "region_code": "520500"}]})
    proposal_id = (await resp.json())["id"]
    page = await _sign_in(browser, gateway, name)
    await page.goto(gateway.base + "/console/trust-list")
    await expect(page.locator("table.partners")).to_contain_text("310000")
    await expect(page.locator("button.propose")).to_have_count(0)
    await expect(page.locator("#propose")).to_have_count(0)
    await _shot(page, f"20-trust-list-{name}")
    await page.goto(gateway.base + f"/console/proposals/{proposal_id}")
    await expect(page.locator("#proposal-status")).to_have_text("pending")
    await expect(page.locator("#approve")).to_have_count(0)
    await expect(page.locator("#reject")).to_have_count(0)
    await _shot(page, f"21-proposal-{name}")
    response = await page.goto(gateway.base + "/console/credentials")
    assert response is not None
    expected = (await gateway.client.get("/v1/admin/credentials",
                                         headers=gateway.api(name))).status
    assert expected == response.status
    await expect(page.locator("button.revoke")).to_have_count(0)
    await _shot(page, f"22-credentials-{name}")


def test_screenshot_folder_is_ignored() -> None:
    """The screenshots never reach a commit."""
    assert "/test-artifacts/" in (REPO / ".gitignore").read_text().splitlines()

