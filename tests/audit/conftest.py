"""Fixtures of the audit tests: events, data folders, running services."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.audit import ActorKind, AuditEvent, AuditService, EventType

HOLDER_CODE = "330502199001011234"
HOLDER_NAME = "张三丰"

EventFactory = Callable[..., AuditEvent]


def event(**overrides: Any) -> AuditEvent:
    """A verification event with personal data; keywords override fields."""
    fields: dict[str, Any] = {
        "event_type": EventType.VERIFICATION,
        "actor_kind": ActorKind.LOCAL_SYSTEM,
        "actor_id": "window-01",
        "at": datetime(2026, 11, 26, 8, 30, 1, 234567, tzinfo=UTC),
        "source_addr": "10.0.0.7",
        "outcome": "TOTAL_PASSED",
        "cn_status": 0,
        "use_cause": "办理营业执照变更",
        "matter_before": {"region": "330500", "code": "M-001"},
        "matters_after": ({"region": "310000", "code": "S-9"},),
        "licence_identifier": "1.2.156.3005.2.11100000000013338W.0001",
        "licence_type": "11100000000013338W",
        "issuer_region": "310000",
        "trust_list_version": 12,
        "latency_ms": 12.3456,
        "personal": {"holder_code": HOLDER_CODE, "holder_name": HOLDER_NAME},
    }
    fields.update(overrides)
    return AuditEvent(**fields)


@pytest.fixture
def make_event() -> EventFactory:
    """The event factory."""
    return event


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty data folder."""
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
async def service(data_dir: Path) -> AsyncIterator[AuditService]:
    """A running SQLite-backed service that checkpoints every 50 ms."""
    svc = AuditService(data_dir=data_dir, checkpoint_interval_s=0.05, batch_max=64)
    await svc.start()
    yield svc
    await svc.stop()
