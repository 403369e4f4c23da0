"""The trust list the gateway currently serves from, swapped atomically."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.infra.metrics import MetricFamily
from gateway.trustlist.alerts import StatusView, trust_alerts
from trust import TrustList, TrustListError, Verifier, canonical_json

__all__ = ["TrustSnapshot", "TrustState", "empty_trust_list"]


@dataclass(frozen=True, slots=True)
class TrustSnapshot:
    """One trust list and the verifier built on it; never changes once made."""

    trust_list: TrustList
    verifier: Verifier
    tag: str
    """The list's version and content: ``<version>.<first 128 bits of SHA-256 of its
    canonical JSON, hex>``. Two lists with one version but other content (two stores,
    a store set up again) have other tags; cached verdicts are filed under it."""

    @classmethod
    def of(cls, trust_list: TrustList, *, clock_skew_s: int) -> TrustSnapshot:
        """The snapshot of ``trust_list``: its verifier built, its tag computed."""
        digest = hashlib.sha256(canonical_json(trust_list.document)).hexdigest()[:32]
        return cls(trust_list, Verifier(trust_list, clock_skew_s=clock_skew_s),
                   f"{trust_list.version}.{digest}")


class TrustState:
    """Holds the current snapshot; a request takes one snapshot and keeps it."""

    def __init__(self, trust_list: TrustList, *, clock_skew_s: int = 0) -> None:
        self._skew = clock_skew_s
        self._snapshot = TrustSnapshot.of(trust_list, clock_skew_s=clock_skew_s)

    @property
    def snapshot(self) -> TrustSnapshot:
        """The current snapshot."""
        return self._snapshot

    def replace(self, trust_list: TrustList) -> None:
        """Serve from ``trust_list`` from now on; a lower version is refused (rollback)."""
        if trust_list.version < self._snapshot.trust_list.version:
            raise TrustListError(
                f"version {trust_list.version} is lower than the current "
                f"{self._snapshot.trust_list.version} (rollback refused)"
            )
        self._snapshot = TrustSnapshot.of(trust_list, clock_skew_s=self._skew)

    def metric_families(self, at: datetime, *, alert_days: int,
                        status: StatusView | None = None) -> list[MetricFamily]:
        """The version served and the open alerts by kind at ``at`` (``trust_alerts``:
        anchors ending within ``alert_days``, and what ``status`` holds), for
        ``/metrics``."""
        trust_list = self._snapshot.trust_list
        counts = Counter(alert["kind"] for alert in trust_alerts(trust_list, at, alert_days,
                                                                   status))
        return [
            MetricFamily("ecert_trust_list_version", "gauge", "The trust-list version served.",
                         [({}, trust_list.version)]),
            MetricFamily("ecert_alerts", "gauge", "Open trust-list alerts, by kind.",
                         [({"kind": kind}, n) for kind, n in sorted(counts.items())]),
        ]


def empty_trust_list(issuer: str, now: datetime) -> TrustList:
    """A list that trusts nobody, issued at ``now``: what a gateway without a configured
    list serves."""
    return TrustList.from_json({
        "version": 0,
        "issued_at": now.isoformat(),
        "next_update": (now + timedelta(days=3650)).isoformat(),
        "issuer": issuer,
        "partners": [],
    })
