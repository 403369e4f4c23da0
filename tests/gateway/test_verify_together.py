"""Single verifications made in one turn of the event loop are verified together.

``VerificationService.verify`` gathers the requests of a turn and verifies them as a
batch is verified (each step over all of them, their records handed to the audit log
as one group; a tier-1 hit is answered as found), yet each caller gets the answer and
the record a request verified by itself gets.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.audit.event import AuditUnavailableError, EventType
from gateway.verification.service import VerificationRequest, VerificationService
from gateway.web.appkeys import TRUST_KEY, VERIFICATION_KEY
from mocks import RunningFederation
from tests.fakes import MemoryAudit
from tests.gateway.conftest import AppFactory, trust_document, verified_alone
from trust import TrustList


class _Ticks:
    """A clock one millisecond later at every reading: each request has its own time."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def _sizes(service: VerificationService, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of requests in each group the service verifies together, as it goes."""
    sizes: list[int] = []
    real = service._verify_items

    async def counted(items: list[Any], **options: Any) -> list[dict[str, Any] | None]:
        sizes.append(len(items))
        return await real(items, **options)

    monkeypatch.setattr(service, "_verify_items", counted)
    return sizes


def _without_receipt(answer: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in answer.items() if key != "receipt"}


async def test_each_request_verified_together_keeps_its_own_answer_and_record(
        gateway_client: AppFactory, running: RunningFederation, audit: MemoryAudit,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Five requests of one turn make one group; each record names its own caller,
    source, request id, use cause, time and credential, and each answer is the one the
    same request verified by itself gets."""
    clock = _Ticks()
    client = await gateway_client(clock=clock, cache_enabled=False)
    service = client.app[VERIFICATION_KEY]
    tokens = [running.federation["310000"].issue().token for _ in range(4)]
    tokens.append(running.federation["340100"].issue().token)
    await service.verify(VerificationRequest(tokens[0]), actor="warm")  # lists held
    sizes = _sizes(service, monkeypatch)
    before = len(audit.of(EventType.VERIFICATION))
    first_time = clock.now + timedelta(milliseconds=1)

    def request(i: int) -> VerificationRequest:
        return VerificationRequest(tokens[i], use_cause=f"跨省通办 {i}")

    together = await asyncio.gather(*(
        service.verify(request(i), actor=f"window-{i}", source=f"10.0.0.{i}",
                       request_id=f"req-{i}", case_id=None if i else "case-0")
        for i in range(5)))
    assert [5] == sizes
    assert ["TOTAL_PASSED"] * 5 == [a["indication"] for a in together]
    events = audit.of(EventType.VERIFICATION)[before:]
    assert [(f"window-{i}", f"10.0.0.{i}", f"req-{i}", f"跨省通办 {i}") for i in range(5)] == [
        (e.actor_id, e.source_addr, e.request_id, e.use_cause) for e in events]
    assert [first_time + timedelta(milliseconds=i) for i in range(5)] == [e.at for e in events]
    assert [hashlib.sha256(t.encode()).hexdigest() for t in tokens] == [
        e.details["credential_sha256"] for e in events]
    assert ["case-0", None, None, None, None] == [e.details.get("case_id") for e in events]
    assert all(a["receipt"]["type"] == "ecert-log-receipt" for a in together)

    service.coalesce = False
    alone = [await service.verify(request(i), actor=f"window-{i}") for i in range(5)]
    assert [_without_receipt(a) for a in alone] == [_without_receipt(a) for a in together]
    assert [5] == sizes  # by itself: no group


async def test_a_request_that_fails_fails_alone(
        gateway_client: AppFactory, running: RunningFederation, audit: MemoryAudit,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """When the group fails, each request is verified again by itself: only the one that
    fails alone fails, and every other caller gets its answer and one record."""
    client = await gateway_client(cache_enabled=False)
    service = client.app[VERIFICATION_KEY]
    shanghai = running.federation["310000"]
    await service.verify(VerificationRequest(shanghai.issue().token), actor="warm")
    real_core = service._core

    def core(verdict: Any, req: VerificationRequest) -> Any:
        if req.use_cause == "boom":
            raise RuntimeError("a defect met by one request")
        return real_core(verdict, req)

    monkeypatch.setattr(service, "_core", core)
    sizes = _sizes(service, monkeypatch)
    before = len(audit.of(EventType.VERIFICATION))
    tokens = [shanghai.issue().token for _ in range(4)]
    results = await asyncio.gather(
        *(service.verify(VerificationRequest(t, use_cause="boom" if i == 1 else None),
                         actor=f"window-{i}") for i, t in enumerate(tokens)),
        return_exceptions=True)
    assert isinstance(results[1], RuntimeError)
    assert ["TOTAL_PASSED"] * 3 == [r["indication"] for i, r in enumerate(results)  # type: ignore[index]
                                    if i != 1]
    assert [4] == sizes  # the group once; then each by itself, not in a group
    events = audit.of(EventType.VERIFICATION)[before:]
    assert ["window-0", "window-2", "window-3"] == sorted(e.actor_id for e in events)


async def test_a_caller_gone_away_leaves_the_others_answered(
        gateway_client: AppFactory, running: RunningFederation, audit: MemoryAudit) -> None:
    """A caller cancelled while its group is verified gets its cancellation; the others
    their answers. Its verification was done, so its record is written too."""
    client = await gateway_client(cache_enabled=False)
    service = client.app[VERIFICATION_KEY]
    shanghai = running.federation["310000"]
    await service.verify(VerificationRequest(shanghai.issue().token), actor="warm")
    before = len(audit.of(EventType.VERIFICATION))
    calls = [asyncio.ensure_future(service.verify(
        VerificationRequest(shanghai.issue().token), actor=f"window-{i}")) for i in range(3)]
    await asyncio.sleep(0)  # each call has joined the turn's group
    calls[0].cancel()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert ["TOTAL_PASSED"] * 2 == [r["indication"] for r in results[1:]]  # type: ignore[index]
    await asyncio.sleep(0)
    events = audit.of(EventType.VERIFICATION)[before:]
    assert ["window-0", "window-1", "window-2"] == sorted(e.actor_id for e in events)


async def test_a_group_the_audit_log_refuses_is_refused_to_each_caller_once(
        gateway_client: AppFactory, running: RunningFederation, audit: MemoryAudit,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """When the audit log cannot keep the group's records, each caller gets that failure
    (a 503 over HTTP), and nothing is verified again alone: no record is written twice."""
    client = await gateway_client(cache_enabled=False)
    service = client.app[VERIFICATION_KEY]
    shanghai = running.federation["310000"]
    await service.verify(VerificationRequest(shanghai.issue().token), actor="warm")
    alone = verified_alone(service, monkeypatch)
    before = len(audit.events)
    audit.failing = True
    results = await asyncio.gather(
        *(service.verify(VerificationRequest(shanghai.issue().token), actor=f"window-{i}")
          for i in range(3)), return_exceptions=True)
    assert [AuditUnavailableError] * 3 == [type(r) for r in results]
    assert [] == alone
    assert before == len(audit.events)


async def test_tier1_hits_join_the_group_and_are_answered_as_found(
        gateway_client: AppFactory, running: RunningFederation, audit: MemoryAudit,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Tier-1 hits of a turn join its group: their records go with the others' as one
    group, they are answered as found (cached, nothing looked up or verified again), and
    only the fresh request is verified."""
    client = await gateway_client()
    service = client.app[VERIFICATION_KEY]
    shanghai = running.federation["310000"]
    seen = [shanghai.issue().token for _ in range(2)]
    for token in seen:
        await service.verify(VerificationRequest(token), actor="warm")  # kept in tier 1
    sizes = _sizes(service, monkeypatch)
    looked_up: list[int] = []
    real = service._batch_outcomes

    async def batch_outcomes(snapshot: Any, items: list[Any], *args: Any,
                             **options: Any) -> Any:
        looked_up.append(len(items))
        return await real(snapshot, items, *args, **options)

    monkeypatch.setattr(service, "_batch_outcomes", batch_outcomes)
    before = len(audit.of(EventType.VERIFICATION))
    tokens = [*seen, shanghai.issue().token]
    answers = await asyncio.gather(*(
        service.verify(VerificationRequest(t), actor=f"window-{i}", request_id=f"req-{i}")
        for i, t in enumerate(tokens)))
    assert [3] == sizes
    assert [1] == looked_up  # the fresh one alone
    assert [True, True, False] == [a["cached"] for a in answers]
    assert ["TOTAL_PASSED"] * 3 == [a["indication"] for a in answers]
    events = audit.of(EventType.VERIFICATION)[before:]
    assert [("window-0", "req-0", True), ("window-1", "req-1", True),
            ("window-2", "req-2", False)] == [
        (e.actor_id, e.request_id, e.cached) for e in events]
    assert [hashlib.sha256(t.encode()).hexdigest() for t in tokens] == [
        e.details["credential_sha256"] for e in events]


async def test_a_hit_on_a_trust_list_replaced_before_its_group_is_judged_again(
        gateway_client: AppFactory, running: RunningFederation) -> None:
    """A tier-1 hit found on a trust list that is replaced before its group runs is not
    answered as found: it is judged again on the list now served."""
    client = await gateway_client()
    service = client.app[VERIFICATION_KEY]
    token = running.federation["310000"].issue().token
    first = await service.verify(VerificationRequest(token), actor="warm")
    call = asyncio.ensure_future(service.verify(VerificationRequest(token), actor="window"))
    await asyncio.sleep(0)  # the hit has joined the turn's group, which has not run yet
    client.app[TRUST_KEY].replace(TrustList.from_json(trust_document(running.federation,
                                                                     version=7)))
    answer = await call
    assert 7 == answer["trust_list_version"] != first["trust_list_version"]
    assert False is answer["cached"]
    assert "TOTAL_PASSED" == answer["indication"]
