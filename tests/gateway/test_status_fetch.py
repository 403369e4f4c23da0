"""StatusFetcher: bounded, cached by ttl, single-flight, failures never become passes.

The later tests go through ``POST /v1/verifications`` (and its batch) with a
partner whose status server hangs, drips a large list in small chunks, or
counts requests a licence's status URI must never cause.
"""

from __future__ import annotations

import asyncio
import io
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import gateway.verification.status as status_module
from gateway.verification.service import VerificationRequest
from gateway.verification.status import StatusFetcher
from gateway.web.appkeys import VERIFICATION_KEY
from mocks import Federation, MockRegion, RunningFederation
from tests.gateway.conftest import AppFactory, trust_document, verified_alone
from trust import StatusList, StatusUnavailable, TrustList


class Partner:
    """A Shanghai mock whose status endpoint can be slowed, bloated or counted."""

    def __init__(self) -> None:
        self.region: MockRegion = Federation.standard(seed=3, codes=["310000"])["310000"]
        self.hits = 0
        self.delay = 0.0
        self.padding = b""

    async def handle(self, _: web.Request) -> web.Response:
        self.hits += 1
        await asyncio.sleep(self.delay)
        token = self.region.status_list_token(ttl=60).encode()
        return web.Response(body=token + self.padding)


@pytest.fixture
async def partner() -> AsyncIterator[tuple[Partner, TrustList, str]]:
    """A served status list and the trust list naming its region."""
    mock = Partner()
    app = web.Application()
    app.router.add_get("/status/lic-2026", mock.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    mock.region.base_url = str(server.make_url("")).rstrip("/")
    now = datetime.now(UTC)
    tl = TrustList.from_json(Federation([mock.region]).trust_list(
        version=1, issued_at=now - timedelta(hours=1), next_update=now + timedelta(days=1)))
    yield mock, tl, mock.region.status_uri
    await server.close()


async def _fetcher(limit_s: float = 2.0, max_bytes: int = 1 << 20,
                   **options: Any) -> StatusFetcher:
    fetcher = StatusFetcher(timeout_s=limit_s, max_bytes=max_bytes, **options)
    await fetcher.start()
    return fetcher


async def test_cached_by_ttl_and_single_flight(partner: tuple[Partner, TrustList, str]) -> None:
    """Ten concurrent look-ups and ten later ones cost one fetch while the ttl runs."""
    mock, tl, uri = partner
    fetcher = await _fetcher()
    try:
        p = tl.partner("310000")
        assert p is not None
        first = await asyncio.gather(*(fetcher.get(uri, p, tl) for _ in range(10)))
        later = [await fetcher.get(uri, p, tl) for _ in range(10)]
        assert all(isinstance(s, StatusList) for s in first + later)
        assert 1 == mock.hits
    finally:
        await fetcher.close()


async def test_a_list_without_a_licences_entry_is_fetched_again(
        partner: tuple[Partner, TrustList, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A held, fresh list too short for the index asked (a licence issued after the list
    was fetched) is fetched again before its ttl, but not within SHORT_LIST_REFETCH_S of
    the last fetch; a list that has the entry is answered as held."""
    mock, tl, uri = partner
    mock.region.status_list_size = 0  # the list encodes the licences issued so far
    p = tl.partner("310000")
    assert p is not None
    fetcher = await _fetcher()
    try:
        for _ in range(4):  # indices 0-3: one byte of 2-bit entries
            mock.region.issue()
        held = await fetcher.get(uri, p, tl, 3)
        assert isinstance(held, StatusList)
        assert held.value(3) is not None
        assert held.value(4) is None
        newer = mock.region.issue()
        assert newer.status_idx == 4
        # Fetched just now: the short list is answered as held, the partner not asked.
        assert held is await fetcher.get(uri, p, tl, 4)
        assert held is fetcher.answer_now(uri, p, tl, 4)
        assert 1 == mock.hits
        monkeypatch.setattr(status_module, "SHORT_LIST_REFETCH_S", 0.0)
        assert fetcher.answer_now(uri, p, tl, 4) is None  # would fetch
        assert held is fetcher.answer_now(uri, p, tl, 3)  # has the entry: held
        again = await asyncio.gather(*(fetcher.get(uri, p, tl, 4) for _ in range(5)))
        assert 2 == mock.hits  # one fetch for the five
        assert all(isinstance(s, StatusList) and s.value(4) is not None for s in again)
        assert again[0] is await fetcher.get(uri, p, tl, 4)  # now held with the entry
        assert again[0] is await fetcher.get(uri, p, tl)  # no index asked: as held
        assert 2 == mock.hits
    finally:
        await fetcher.close()


async def test_timeout_is_unavailable(partner: tuple[Partner, TrustList, str]) -> None:
    """A partner slower than the timeout yields StatusUnavailable, not a hang."""
    mock, tl, uri = partner
    mock.delay = 1.0
    fetcher = await _fetcher(limit_s=0.2)
    try:
        p = tl.partner("310000")
        assert p is not None
        result = await fetcher.get(uri, p, tl)
        assert isinstance(result, StatusUnavailable)
    finally:
        await fetcher.close()


async def test_oversized_list_is_unavailable(partner: tuple[Partner, TrustList, str]) -> None:
    """A body over the size limit is refused unread beyond the limit."""
    mock, tl, uri = partner
    mock.padding = b" " * 5000
    fetcher = await _fetcher(max_bytes=2000)
    try:
        p = tl.partner("310000")
        assert p is not None
        result = await fetcher.get(uri, p, tl)
        assert isinstance(result, StatusUnavailable)
        assert "larger than" in result.reason
    finally:
        await fetcher.close()


async def test_new_trust_list_version_refetches(partner: tuple[Partner, TrustList, str]) -> None:
    """A list verified under an older trust list is not reused under a newer one."""
    mock, tl, uri = partner
    fetcher = await _fetcher()
    try:
        p = tl.partner("310000")
        assert p is not None
        await fetcher.get(uri, p, tl)
        newer = TrustList.from_json({**tl.document, "version": 2})
        await fetcher.get(uri, p, newer)
        assert 2 == mock.hits
    finally:
        await fetcher.close()


async def test_a_caller_giving_up_leaves_the_shared_fetch_running(
        partner: tuple[Partner, TrustList, str]) -> None:
    """The first caller of a shared fetch is cancelled; the others still get the list."""
    mock, tl, uri = partner
    mock.delay = 1.0  # far longer than the 0.1 s below, on a loaded machine too
    fetcher = await _fetcher()
    try:
        p = tl.partner("310000")
        assert p is not None
        first = asyncio.create_task(fetcher.get(uri, p, tl))
        await asyncio.sleep(0.1)  # the fetch is under way
        others = [asyncio.create_task(fetcher.get(uri, p, tl)) for _ in range(3)]
        await asyncio.sleep(0)
        first.cancel()
        results = await asyncio.gather(*others)
        assert all(isinstance(r, StatusList) for r in results), results
        assert first.cancelled()
        assert 1 == mock.hits
    finally:
        await fetcher.close()


async def test_a_failure_is_remembered_for_a_while(
        partner: tuple[Partner, TrustList, str]) -> None:
    """After a failed fetch the URI rests for retry_after_s, then is tried again."""
    mock, tl, uri = partner
    mock.padding = b" " * 5000  # too large: refused after one request
    fetcher = await _fetcher(max_bytes=2000, retry_after_s=2.0)
    try:
        p = tl.partner("310000")
        assert p is not None
        for _ in range(5):
            result = await fetcher.get(uri, p, tl)
            assert isinstance(result, StatusUnavailable)
            assert "larger than" in result.reason
        assert 1 == mock.hits
        assert uri in fetcher.failing
        await asyncio.sleep(2.2)
        mock.padding = b""
        assert isinstance(await fetcher.get(uri, p, tl), StatusList)
        assert 2 == mock.hits
        assert uri not in fetcher.failing
    finally:
        await fetcher.close()


async def test_a_remembered_failure_ends_with_the_trust_list_version(
        partner: tuple[Partner, TrustList, str]) -> None:
    """A newer trust list (a key or prefix fixed) tries the URI again at once."""
    mock, tl, uri = partner
    mock.padding = b" " * 5000
    fetcher = await _fetcher(max_bytes=2000, retry_after_s=300)
    try:
        p = tl.partner("310000")
        assert p is not None
        assert isinstance(await fetcher.get(uri, p, tl), StatusUnavailable)
        mock.padding = b""
        assert isinstance(await fetcher.get(uri, p, tl), StatusUnavailable)
        assert 1 == mock.hits
        newer = TrustList.from_json({**tl.document, "version": 2})
        newer_partner = newer.partner("310000")
        assert newer_partner is not None
        assert isinstance(await fetcher.get(uri, newer_partner, newer), StatusList)
        assert 2 == mock.hits
    finally:
        await fetcher.close()


async def test_remembered_failures_are_bounded(
        partner: tuple[Partner, TrustList, str]) -> None:
    """Only the latest max_failures failed URIs are remembered; the oldest is tried again."""
    _, tl, uri = partner
    fetcher = await _fetcher(retry_after_s=300, max_failures=3)
    try:
        p = tl.partner("310000")
        assert p is not None
        missing = [f"{uri}-gone-{n}" for n in range(5)]  # 404: each fails
        for each in missing:
            assert isinstance(await fetcher.get(each, p, tl), StatusUnavailable)
        assert 5 == fetcher.fetches
        assert missing[2:] == list(fetcher.failing)
        await fetcher.get(missing[-1], p, tl)  # remembered: not fetched
        assert 5 == fetcher.fetches
        await fetcher.get(missing[0], p, tl)  # forgotten: fetched again
        assert 6 == fetcher.fetches
    finally:
        await fetcher.close()


async def test_a_uri_outside_the_prefixes_is_never_fetched(
        partner: tuple[Partner, TrustList, str]) -> None:
    """The fetcher checks the prefixes itself: an escaping URI is refused unfetched."""
    mock, tl, uri = partner
    fetcher = await _fetcher()
    try:
        p = tl.partner("310000")
        assert p is not None
        escaping = uri.replace("/status/", "/status/%2e%2e/")
        result = await fetcher.get(escaping, p, tl)
        assert isinstance(result, StatusUnavailable)
        assert "outside partner 310000's registered prefixes" in result.reason
        assert (0, 0) == (mock.hits, fetcher.fetches)
    finally:
        await fetcher.close()


# -- through the HTTP API ------------------------------------------------------------------


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _json(key: str) -> dict[str, str]:
    return {**_auth(key), "Content-Type": "application/json"}


class StatusServer:
    """A partner's HTTP server that records every request; its status list can hang or drip."""

    def __init__(self, region: MockRegion) -> None:
        self.region = region
        self.requests: list[str] = []
        self.asked = asyncio.Event()
        """Set once a request has arrived."""
        self.hang = False
        self.released = asyncio.Event()
        self.chunk_bytes = 0
        """When set, the list is written in chunks of this size with a pause after each."""
        self.chunk_pause_s = 0.005
        self.declare_length = True

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.raw_path)
        self.asked.set()
        if self.hang:
            await self.released.wait()
        if request.path != f"/status/{self.region.status_list_name}":
            raise web.HTTPNotFound
        token = self.region.status_list_token(ttl=60).encode()
        if not self.chunk_bytes:
            return web.Response(body=token, content_type="application/statuslist+jwt")
        response = web.StreamResponse(headers={"Content-Type": "application/statuslist+jwt"})
        if self.declare_length:
            response.content_length = len(token)
        await response.prepare(request)
        for start in range(0, len(token), self.chunk_bytes):
            await response.write(token[start:start + self.chunk_bytes])  # drains as it writes
            await asyncio.sleep(self.chunk_pause_s)
        await response.write_eof()
        return response


@pytest.fixture
async def hefei(running: RunningFederation) -> AsyncIterator[StatusServer]:
    """Hefei of the running federation, its status list served by a StatusServer instead."""
    server_state = StatusServer(running.federation["340100"])
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server_state.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    server_state.region.base_url = str(server.make_url("")).rstrip("/")
    yield server_state
    server_state.released.set()
    await server.close()


def _trust_list(running: RunningFederation, **endpoints: Any) -> TrustList:
    """The federation's trust list; ``endpoints`` replace Hefei's (340100)."""
    doc = trust_document(running.federation)
    if endpoints:
        for entry in doc["partners"]:
            if entry["region_code"] == "340100":
                entry["endpoints"] = {**entry["endpoints"], **endpoints}
    return TrustList.from_json(doc)


async def test_batch_against_a_hanging_status_server_takes_one_timeout(
        gateway_client: AppFactory, running: RunningFederation, client_key: str,
        hefei: StatusServer) -> None:
    """1,000 licences naming 10 lists of a hanging server cost one 1 s timeout, not 980."""
    hefei.hang = True
    client = await gateway_client(_trust_list(running), status_fetch_timeout_s=1.0,
                                  status_retry_after_s=120)
    base = hefei.region.base_url
    hanging = [hefei.region.issue(claims_override={"status": {"status_list": {
        "idx": n, "uri": f"{base}/status/lic-2026-{n % 10}"}}}).token for n in range(980)]
    healthy = [running.federation["310000"].issue().token for _ in range(20)]
    items = [{"credential": token} for token in [*hanging, *healthy]]
    started = time.monotonic()
    async with asyncio.timeout(10):  # before the fix: 980 timeouts one after another
        resp = await client.post("/v1/verifications/batch", headers=_json(client_key),
                                 data=io.BytesIO(orjson.dumps({"items": items})))
        results = (await resp.json())["results"]
    elapsed = time.monotonic() - started
    assert 200 == resp.status
    assert elapsed < 10, f"the batch took {elapsed:.1f} s"
    assert [("INDETERMINATE", "TRY_LATER", 99)] * 980 == [
        (r["indication"], r["sub_indication"], r["cn_status"]) for r in results[:980]]
    assert ["TOTAL_PASSED"] * 20 == [r["indication"] for r in results[980:]]
    assert not any(r["cached"] for r in results[:980])
    assert 10 == len(hefei.requests) == len(set(hefei.requests)), "one fetch per list"
    # The failures are remembered: the same batch again answers at once, fetching nothing.
    started = time.monotonic()
    async with asyncio.timeout(10):
        again = await client.post("/v1/verifications/batch", headers=_json(client_key),
                                  data=io.BytesIO(orjson.dumps({"items": items[:980]})))
        again_results = (await again.json())["results"]
    elapsed = time.monotonic() - started
    assert 200 == again.status
    assert elapsed < 5, f"the second batch took {elapsed:.1f} s"
    assert {"TRY_LATER"} == {r["sub_indication"] for r in again_results}
    assert 10 == len(hefei.requests)


async def test_a_hanging_partner_does_not_starve_the_others(
        gateway_client: AppFactory, running: RunningFederation, client_key: str,
        hefei: StatusServer) -> None:
    """300 lists on one hanging server hold few connections: Shanghai's list still arrives."""
    hefei.hang = True
    client = await gateway_client(_trust_list(running), status_fetch_timeout_s=1.0)
    base = hefei.region.base_url
    hanging = [hefei.region.issue(claims_override={"status": {"status_list": {
        "idx": n, "uri": f"{base}/status/lic-2026-{n}"}}}).token for n in range(300)]
    healthy = [running.federation["310000"].issue().token for _ in range(5)]
    async with asyncio.timeout(10):
        resp = await client.post("/v1/verifications/batch", headers=_auth(client_key), json={
            "items": [{"credential": token} for token in [*hanging, *healthy]]})
        results = (await resp.json())["results"]
    assert {"TRY_LATER"} == {r["sub_indication"] for r in results[:300]}
    assert ["TOTAL_PASSED"] * 5 == [r["indication"] for r in results[300:]], [
        next(c["detail"] for c in r["checks"] if c["name"] == "status") for r in results[300:]]
    # Without a per-host bound Hefei would hold the whole pool (100 connections).
    assert len(hefei.requests) < 50


async def test_single_requests_share_a_fetch_and_remember_its_failure(
        gateway_client: AppFactory, running: RunningFederation, client_key: str,
        hefei: StatusServer) -> None:
    """Concurrent requests wait for one fetch; later ones do not try a failed URI again."""
    hefei.hang = True
    client = await gateway_client(_trust_list(running), status_fetch_timeout_s=1.0,
                                  status_retry_after_s=120)
    tokens = [hefei.region.issue().token for _ in range(30)]

    async def verify(token: str) -> dict[str, Any]:
        resp = await client.post("/v1/verifications", headers=_auth(client_key),
                                 json={"credential": token})
        assert 200 == resp.status
        body: dict[str, Any] = await resp.json()
        return body

    started = time.monotonic()
    together = await asyncio.gather(*(verify(token) for token in tokens[:20]))
    one_after_another = [await verify(token) for token in tokens[20:]]
    elapsed = time.monotonic() - started
    assert {("INDETERMINATE", "TRY_LATER")} == {
        (b["indication"], b["sub_indication"]) for b in [*together, *one_after_another]}
    assert 1 == len(hefei.requests)
    assert elapsed < 8, f"30 requests took {elapsed:.1f} s"


@pytest.mark.parametrize("declare_length", [True, False])
async def test_a_large_list_served_slowly_is_read_whole(
        gateway_client: AppFactory, running: RunningFederation, client_key: str,
        hefei: StatusServer, declare_length: bool) -> None:
    """A correctly signed list of over 300 KB, dripped in 4 KB chunks, is used."""
    region = hefei.region
    valid = region.issue()
    revoked = region.issue()
    assert revoked.status_idx is not None
    region.revoke(revoked.status_idx)
    # A region with about a million licences: a list of some 335 KB even compressed.
    rng = random.Random(19)
    last = 1_000_000
    for idx in range(1000, last):
        draw = rng.random()
        if draw < 0.25:
            region.revoke(idx)
        elif draw < 0.5:
            region.suspend(idx)
    region.suspend(last)
    at_the_end = region.issue(claims_override={
        "status": {"status_list": {"idx": last, "uri": region.status_uri}}})
    assert 300_000 < len(region.status_list_token(ttl=60)) < 1 << 20
    hefei.chunk_bytes = 4096
    hefei.declare_length = declare_length
    client = await gateway_client(_trust_list(running), status_fetch_timeout_s=30.0)
    resp = await client.post("/v1/verifications/batch", headers=_auth(client_key), json={
        "items": [{"credential": lic.token} for lic in (valid, revoked, at_the_end)]})
    assert 200 == resp.status
    results = (await resp.json())["results"]
    assert [("TOTAL_PASSED", None), ("TOTAL_FAILED", "REVOKED"),
            ("INDETERMINATE", "SUSPENDED")] == [
        (r["indication"], r["sub_indication"]) for r in results], results
    assert 1 == len(hefei.requests)


# Each passes a string prefix test on "{base}/status/" and is fetched elsewhere by an
# HTTP client that removes dot segments (yarl does, in any percent-encoding).
ESCAPES = ["../admin", "%2e%2e/admin", ".%2e/admin", "%2E%2e/admin", "%2e./admin",
           "lic-2026/../../admin", "./../admin"]


@pytest.mark.parametrize("escape", ESCAPES)
async def test_status_uri_escaping_the_prefix_is_never_fetched(
        gateway_client: AppFactory, running: RunningFederation, client_key: str,
        hefei: StatusServer, escape: str) -> None:
    """A licence whose status URI leaves the registered prefix answers TRY_LATER unfetched."""
    region = hefei.region
    uri = f"{region.base_url}/status/{escape}"
    issued = region.issue(claims_override={"status": {"status_list": {"idx": 0, "uri": uri}}})
    client = await gateway_client(_trust_list(running))
    resp = await client.post("/v1/verifications", headers=_auth(client_key),
                             json={"credential": issued.token})
    assert 200 == resp.status
    body = await resp.json()
    assert [] == hefei.requests
    assert ("INDETERMINATE", "TRY_LATER", 99) == (body["indication"], body["sub_indication"],
                                                 body["cn_status"])
    status = next(c for c in body["checks"] if c["name"] == "status")
    assert "dot segment" in status["detail"], status
    assert status["detail"].endswith("not fetched"), status


async def test_prefix_without_slash_does_not_admit_a_sibling(
        gateway_client: AppFactory, running: RunningFederation, client_key: str,
        hefei: StatusServer) -> None:
    """A prefix registered as ``…/status`` admits ``…/status/…`` and never ``…/statusX``."""
    region = hefei.region
    base = region.base_url
    sibling = region.issue(claims_override={
        "status": {"status_list": {"idx": 0, "uri": f"{base}/statusX/lic-2026"}}})
    beneath = region.issue()
    client = await gateway_client(_trust_list(running, status_uri_prefixes=[f"{base}/status"]))
    resp = await client.post("/v1/verifications/batch", headers=_auth(client_key), json={
        "items": [{"credential": sibling.token}, {"credential": beneath.token}]})
    results = (await resp.json())["results"]
    assert [f"/status/{region.status_list_name}"] == hefei.requests
    assert [("INDETERMINATE", "TRY_LATER"), ("TOTAL_PASSED", None)] == [
        (r["indication"], r["sub_indication"]) for r in results], results
    assert "outside the partner's registered prefixes" in next(
        c["detail"] for c in results[0]["checks"] if c["name"] == "status")


async def test_batch_of_escaping_status_uris_contacts_nothing(
        gateway_client: AppFactory, running: RunningFederation, client_key: str,
        hefei: StatusServer) -> None:
    """Every escaping form in one batch: each TRY_LATER, the partner's server never asked."""
    region = hefei.region
    tokens = [region.issue(claims_override={"status": {"status_list": {
        "idx": 0, "uri": f"{region.base_url}/status/{escape}"}}}).token for escape in ESCAPES]
    client = await gateway_client(_trust_list(running))
    resp = await client.post("/v1/verifications/batch", headers=_auth(client_key),
                             json={"items": [{"credential": t} for t in tokens]})
    results = (await resp.json())["results"]
    assert [] == hefei.requests
    assert {("INDETERMINATE", "TRY_LATER")} == {
        (r["indication"], r["sub_indication"]) for r in results}


async def test_a_single_request_waiting_for_a_status_list_holds_up_no_other(
        gateway_client: AppFactory, running: RunningFederation, hefei: StatusServer) -> None:
    """Single verifications made in one turn of the loop are verified together, but one
    whose status list must first be fetched is verified by itself: the others made with
    it are answered while its partner still hangs."""
    client = await gateway_client(_trust_list(running), status_fetch_timeout_s=30.0)
    service = client.app[VERIFICATION_KEY]
    shanghai = running.federation["310000"]
    first = await service.verify(VerificationRequest(shanghai.issue().token), actor="w")
    assert "TOTAL_PASSED" == first["indication"]  # Shanghai's list is now held
    hefei.hang = True
    waiting = asyncio.ensure_future(service.verify(
        VerificationRequest(hefei.region.issue().token), actor="w"))
    others = [asyncio.ensure_future(service.verify(
        VerificationRequest(shanghai.issue().token), actor="w")) for _ in range(3)]
    async with asyncio.timeout(10):
        answers = await asyncio.gather(*others)
    assert ["TOTAL_PASSED"] * 3 == [a["indication"] for a in answers]
    async with asyncio.timeout(10):  # its partner has the fetch and holds it
        await hefei.asked.wait()
    assert [f"/status/{hefei.region.status_list_name}"] == hefei.requests
    assert not waiting.done()
    hefei.released.set()
    async with asyncio.timeout(10):
        assert "TOTAL_PASSED" == (await waiting)["indication"]


async def test_a_failed_fetch_not_yet_due_again_is_answered_with_the_others(
        gateway_client: AppFactory, running: RunningFederation, hefei: StatusServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A status list whose fetch failed and is not yet due again is answered at once (the
    failure remembered): its requests stay in their turn's group, none is verified a
    second time by itself, and the partner is not asked again."""
    client = await gateway_client(_trust_list(running), status_fetch_timeout_s=5.0,
                                  status_retry_after_s=120)
    service = client.app[VERIFICATION_KEY]
    shanghai = running.federation["310000"]
    base = hefei.region.base_url

    def unlisted() -> str:  # its list is not on the server: the fetch fails (404)
        return hefei.region.issue(claims_override={"status": {"status_list": {
            "idx": 1, "uri": f"{base}/status/not-there"}}}).token

    first = await service.verify(VerificationRequest(unlisted()), actor="w")
    assert ("INDETERMINATE", "TRY_LATER") == (first["indication"], first["sub_indication"])
    await service.verify(VerificationRequest(shanghai.issue().token), actor="w")
    asked = len(hefei.requests)
    alone = verified_alone(service, monkeypatch)
    answers = await asyncio.gather(*(service.verify(VerificationRequest(token), actor="w")
                                     for token in (unlisted(), shanghai.issue().token,
                                                   unlisted())))
    assert [("INDETERMINATE", "TRY_LATER"), ("TOTAL_PASSED", None),
            ("INDETERMINATE", "TRY_LATER")] == [
        (a["indication"], a["sub_indication"]) for a in answers]
    assert [] == alone
    assert asked == len(hefei.requests)


async def test_a_licence_newer_than_the_held_list_passes_once_it_is_fetched_again(
        gateway_client: AppFactory, running: RunningFederation, client_key: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A partner's list grows as it issues. A licence whose entry the held, fresh list
    lacks is answered TRY_LATER within SHORT_LIST_REFETCH_S of the list's fetch (the
    partner not asked again), and after it the list is fetched again, once for a single
    request, a batch or a turn's group, and the licence passes."""
    shanghai = running.federation["310000"]
    shanghai.status_list_size = 0
    client = await gateway_client(_trust_list(running))
    service = client.app[VERIFICATION_KEY]

    async def verify(*tokens: str) -> list[tuple[str, str | None]]:
        answers = await asyncio.gather(*(
            service.verify(VerificationRequest(token), actor="w") for token in tokens))
        return [(a["indication"], a["sub_indication"]) for a in answers]

    def beyond_the_held_list(count: int) -> list[str]:
        """``count`` new licences, the first one past the entries of the list held."""
        held = service.status.held(shanghai.status_uri)
        assert held is not None
        issued = shanghai.issue()
        while issued.status_idx is None or held.value(issued.status_idx) is not None:
            issued = shanghai.issue()  # entries fill whole bytes
        return [issued.token, *(shanghai.issue().token for _ in range(count - 1))]

    passed = ("TOTAL_PASSED", None)
    assert [passed] == await verify(shanghai.issue().token)
    fetched = service.status.fetches
    [newer] = beyond_the_held_list(1)
    assert [("INDETERMINATE", "TRY_LATER")] == await verify(newer)
    assert fetched == service.status.fetches
    monkeypatch.setattr(status_module, "SHORT_LIST_REFETCH_S", 0.0)
    assert [passed] == await verify(newer)
    assert fetched + 1 == service.status.fetches
    group = beyond_the_held_list(3)
    assert [passed] * 4 == await verify(newer, *group)  # one turn's group
    assert fetched + 2 == service.status.fetches
    batch = beyond_the_held_list(3)
    resp = await client.post("/v1/verifications/batch", headers=_auth(client_key),
                             json={"items": [{"credential": t} for t in [*batch, newer]]})
    assert 200 == resp.status
    body = await resp.json()
    assert [passed] * 4 == [(r["indication"], r["sub_indication"]) for r in body["results"]]
    assert fetched + 3 == service.status.fetches


async def test_a_combined_certificates_newer_components_have_the_list_fetched_again(
        gateway_client: AppFactory, running: RunningFederation,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The entries a combined certificate's components name count too: a document whose
    own entry the held list has, but whose components' entries it lacks, has the list
    fetched again, and its components pass (docs/combined-certificates.md)."""
    shanghai = running.federation["310000"]
    shanghai.status_list_size = 0
    client = await gateway_client(_trust_list(running))
    service = client.app[VERIFICATION_KEY]
    first = await service.verify(VerificationRequest(shanghai.issue().token), actor="w")
    assert "TOTAL_PASSED" == first["indication"]
    held = service.status.held(shanghai.status_uri)
    assert held is not None
    fetched = service.status.fetches
    combined = shanghai.issue_combined(claims_override={
        "status": {"status_list": {"idx": 0, "uri": shanghai.status_uri}}})
    assert held.value(0) is not None  # the document's own entry is held
    assert any(held.value(c.status_idx) is None for c in combined.components)
    monkeypatch.setattr(status_module, "SHORT_LIST_REFETCH_S", 0.0)
    answer = await service.verify(VerificationRequest(combined.token), actor="w")
    assert fetched + 1 == service.status.fetches
    assert ("TOTAL_PASSED", None) == (answer["indication"], answer["sub_indication"])
    assert {"TOTAL_PASSED"} == {c["indication"] for c in answer["components"]}
