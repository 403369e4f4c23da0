"""What operators should act on: a trust list near or past its ``next_update``, anchors
whose window ends soon, partners' status lists gone stale or unreachable.

Read by ``GET /v1/admin/alerts`` and counted on ``/metrics``; a pure function of the
list, the time and what the status fetcher holds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from trust import AnchorStatus, StatusList, TrustList

__all__ = ["StatusView", "trust_alerts"]


class StatusView(Protocol):
    """What the alerts read of the status-list fetcher
    (``gateway.verification.status.StatusFetcher``)."""

    failing: dict[str, tuple[float, str]]
    """URIs whose last fetch failed: Unix time and reason."""

    def held_lists(self) -> list[StatusList]:
        """The status lists held now."""
        ...


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def trust_alerts(trust_list: TrustList, now: datetime, days: int,
                 status: StatusView | None = None) -> list[dict[str, Any]]:
    """What operators should act on: stale or expiring trust data, failing partners."""
    horizon = now + timedelta(days=days)
    alerts: list[dict[str, Any]] = []
    if trust_list.is_stale(now):
        alerts.append({"kind": "trust-list-stale", "version": trust_list.version,
                       "next_update": _iso(trust_list.next_update),
                       "detail": "past next_update: verifications answer TRY_LATER"})
    elif trust_list.next_update <= horizon:
        alerts.append({"kind": "trust-list-expiring", "version": trust_list.version,
                       "next_update": _iso(trust_list.next_update),
                       "days_left": (trust_list.next_update - now).days})
    for partner in trust_list.partners.values():
        for anchor in partner.anchors:
            if anchor.status is AnchorStatus.REVOKED or not now <= anchor.valid_until <= horizon:
                continue
            alerts.append({"kind": "anchor-expiring", "region_code": partner.region_code,
                           "kid": anchor.kid, "use": anchor.use.value,
                           "valid_until": _iso(anchor.valid_until),
                           "days_left": (anchor.valid_until - now).days})
    if status is not None:
        for held in status.held_lists():
            owner = trust_list.partner(held.region)
            max_age = 86400 if owner is None else owner.status_max_age_s
            if held.fresh_until(max_age) < now:
                alerts.append({"kind": "status-list-stale", "region_code": held.region,
                               "uri": held.uri, "issued_at": _iso(held.issued_at)})
        for uri, (when, reason) in sorted(status.failing.items()):
            alerts.append({"kind": "partner-endpoint-failing", "uri": uri,
                           "since": _iso(datetime.fromtimestamp(when, UTC)),
                           "detail": reason})
    return alerts
