"""HTTP endpoints of the audit log (spec: http-api.md, "Audit log").

Public: ``/v1/audit/checkpoint`` and ``/v1/audit/key``. Everything else needs
an operator token with the auditor role. Binary values are standard base64
with padding, as in C2SP.
"""

from __future__ import annotations

import base64
import csv
import io
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import orjson
from aiohttp import web

from gateway.audit._prune import AuditPruner, PruneProposal
from gateway.audit._service import AuditService, report_today
from gateway.audit._store import RecordFilter, open_store
from gateway.credentials.store import Identity, Role
from gateway.web.appkeys import AUDIT_KEY, SETTINGS_KEY
from gateway.web.auth import require_operator
from gateway.web.httpjson import read_json
from gateway.web.problems import Problem

__all__ = ["setup_routes"]

_MAX_LIMIT = 1000
_CSV_COLUMNS = (
    "index", "event_id", "time", "event_type", "actor_kind", "actor_id", "source_addr",
    "partner_region", "issuer_region", "matter_before", "matters_after", "use_cause",
    "licence_identifier", "licence_type", "outcome", "sub_indication", "cn_status",
    "trust_list_version", "cached", "latency_ms", "request_id", "personal",
)  # fmt: skip


def setup_routes(app: web.Application) -> None:
    """Add the audit endpoints to ``app``."""
    app.router.add_get("/v1/audit/checkpoint", get_checkpoint)
    app.router.add_get("/v1/audit/key", get_key)
    app.router.add_get("/v1/audit/entries/{index}", get_entry)
    app.router.add_get("/v1/audit/consistency", get_consistency)
    app.router.add_get("/v1/audit/records", get_records)
    app.router.add_get("/v1/audit/stats", get_stats)
    app.router.add_get("/v1/audit/export.csv", get_export)
    app.router.add_get("/v1/audit/prunes", get_prunes)
    app.router.add_post("/v1/audit/prunes", post_prune)
    app.router.add_get("/v1/audit/prunes/{id}", get_prune)
    app.router.add_post("/v1/audit/prunes/{id}/approve", post_prune_approval)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _json(body: Any) -> web.Response:
    return web.Response(body=orjson.dumps(body, option=orjson.OPT_APPEND_NEWLINE),
                        content_type="application/json")


async def _require_auditor(request: web.Request) -> Identity:
    """The caller's identity if it is an operator with the auditor role (401/403 otherwise)."""
    return await require_operator(request, {Role.AUDITOR})


def _service(request: web.Request) -> AuditService:
    service = request.app.get(AUDIT_KEY)
    if service is None:
        raise Problem(503, "Audit log unavailable", "this instance serves no audit log")
    return service


_MAX_INT = 2**62
"""Indices, sizes and cursors beyond this are refused (stores keep signed 64-bit integers)."""


def _int(request: web.Request, name: str, value: str | None, *, minimum: int = 0,
         maximum: int = _MAX_INT) -> int:
    if value is None:
        raise Problem(400, "Bad request", f"{name} is required")
    try:
        number = int(value) if len(value) <= 20 else maximum + 1
    except ValueError:
        raise Problem(400, "Bad request", f"{name} must be an integer") from None
    if not minimum <= number <= maximum:
        raise Problem(400, "Bad request", f"{name} must be an integer from {minimum} to {maximum}")
    return number


async def get_checkpoint(request: web.Request) -> web.Response:
    """The latest signed checkpoint, as a C2SP note."""
    service = _service(request)
    checkpoint = await service.latest_checkpoint() or await service.publish()
    if checkpoint is None:
        raise Problem(503, "Audit log unavailable", "no checkpoint has been published yet")
    return web.Response(text=checkpoint.note, content_type="text/plain", charset="utf-8")


async def get_key(request: web.Request) -> web.Response:
    """The log's verifier key (signed-note vkey)."""
    vkey = _service(request).vkey()
    return web.Response(text=vkey + "\n", content_type="text/plain", charset="utf-8")


async def get_entry(request: web.Request) -> web.Response:
    """One entry, the exact bytes hashed, and its inclusion proof in a signed tree."""
    await _require_auditor(request)
    index = _int(request, "index", request.match_info["index"])
    proof = await _service(request).entry(index)
    if proof is None:
        raise Problem(404, "Not found", f"no audit entry {index}")
    if proof.pruned:
        # Retention: the record is gone, its leaf hash stays in the tree and proves the entry.
        return _json({
            "index": proof.index,
            "pruned": True,
            "leaf_hash": _b64(proof.leaf_hash),
            "tree_size": proof.tree_size,
            "inclusion": [_b64(h) for h in proof.inclusion],
            "checkpoint": proof.checkpoint,
        })
    return _json(
        {
            "index": proof.index,
            "leaf": _b64(proof.leaf),
            "record": proof.record,
            "tree_size": proof.tree_size,
            "inclusion": [_b64(h) for h in proof.inclusion],
            "checkpoint": proof.checkpoint,
        }
    )


async def get_consistency(request: web.Request) -> web.Response:
    """RFC 6962 consistency proof between two tree sizes."""
    await _require_auditor(request)
    first = _int(request, "first", request.query.get("first"), minimum=1)
    second = _int(request, "second", request.query.get("second"), minimum=1)
    service = _service(request)
    if first > second:
        raise Problem(400, "Bad request", "first must not exceed second")
    proof = await service.consistency(first, second)
    return _json({"first": first, "second": second, "proof": [_b64(h) for h in proof]})


def _time_ms(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise Problem(400, "Bad request", f"{name} must be an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise Problem(400, "Bad request", f"{name} must carry a time zone (e.g. Z)")
    return int(parsed.timestamp() * 1000)


def _filter(request: web.Request, *, limit: int | None = None) -> RecordFilter:
    q = request.query
    if limit is None:
        # Over the page size is refused, not cut short silently: the caller pages with cursor.
        limit = _int(request, "limit", q.get("limit", "100"), minimum=1, maximum=_MAX_LIMIT)
    cursor = q.get("cursor")
    return RecordFilter(
        start_ms=_time_ms("from", q.get("from")),
        end_ms=_time_ms("to", q.get("to")),
        partner=q.get("partner"),
        matter=q.get("matter"),
        event_type=q.get("event_type"),
        outcome=q.get("outcome"),
        after_index=-1 if cursor is None else _int(request, "cursor", cursor),
        limit=limit,
    )


async def get_records(request: web.Request) -> web.Response:
    """Records matching filters, oldest first, a page at a time."""
    await _require_auditor(request)
    flt = _filter(request)
    rows = await _service(request).records(flt)
    next_cursor = str(rows[-1][0]) if len(rows) == flt.limit else None
    return _json(
        {
            "records": [{"index": i, "record": r} if r
                        else {"index": i, "record": None, "pruned": True} for i, r in rows],
            "next_cursor": next_cursor,
        }
    )


async def get_stats(request: web.Request) -> web.Response:
    """Counts per partner x matter x outcome of one day (China Standard Time)."""
    await _require_auditor(request)
    text = request.query.get("day")
    try:
        day = date.fromisoformat(text) if text else report_today()
    except ValueError:
        raise Problem(400, "Bad request", "day must be YYYY-MM-DD") from None
    rows = await _service(request).stats(day)
    return _json(
        {
            "day": day.isoformat(),
            "timezone": "+08:00",
            "counts": [
                {"partner": p, "matter": m, "outcome": o, "count": c} for p, m, o, c in rows
            ],
            "total": sum(r[3] for r in rows),
        }
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    # Keep spreadsheets from running cells as formulas (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_rows(rows: list[tuple[int, dict[str, Any]]]) -> str:
    """CSV lines (no header) for records; a pruned record is its index alone."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for index, record in rows:
        if not record:
            writer.writerow([str(index)] + [""] * (len(_CSV_COLUMNS) - 1))
            continue
        writer.writerow([str(index)] + [_cell(record.get(column)) for column in _CSV_COLUMNS[1:]])
    return out.getvalue()


def csv_header() -> str:
    """The CSV header line."""
    return ",".join(_CSV_COLUMNS) + "\r\n"


async def get_export(request: web.Request) -> web.StreamResponse:
    """Matching records as CSV (UTF-8), streamed a page at a time."""
    await _require_auditor(request)
    flt = _filter(request, limit=_MAX_LIMIT)
    service = _service(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="audit.csv"',
        }
    )
    await response.prepare(request)
    await response.write(csv_header().encode())
    after = flt.after_index
    while True:
        rows = await service.records(replace(flt, after_index=after))
        if rows:
            await response.write(csv_rows(rows).encode())
            after = rows[-1][0]
        if len(rows) < flt.limit:
            break
    await response.write_eof()
    return response


# -- retention: prunes under dual control ---------------------------------------------------


def _pruner(request: web.Request) -> AuditPruner:
    settings = request.app[SETTINGS_KEY]
    return AuditPruner(
        audit=_service(request),
        open_store=lambda: open_store(settings.data_dir, settings.postgres_dsn),
        retention=settings.audit.retention, clock=lambda: datetime.now(UTC))


def _proposal_json(proposal: PruneProposal) -> dict[str, Any]:
    return proposal.to_json()


async def get_prunes(request: web.Request) -> web.Response:
    """Every prune proposal, oldest first, and the retention policy in force."""
    await _require_auditor(request)
    proposals = await _pruner(request).proposals()
    return _json({"proposals": [_proposal_json(p) for p in proposals],
                  "retention_days": dict(sorted(
                      request.app[SETTINGS_KEY].audit.retention.items()))})


async def get_prune(request: web.Request) -> web.Response:
    """One prune proposal."""
    await _require_auditor(request)
    proposal_id = _int(request, "id", request.match_info["id"])
    return _json({"proposal": _proposal_json(await _pruner(request).proposal(proposal_id))})


async def post_prune(request: web.Request) -> web.Response:
    """Propose a prune: ``{"before": RFC 3339, "kinds": [...], "through": index}``, each
    optional (default: every kind, by its policy, up to the log's current size)."""
    caller = await _require_auditor(request)
    body = await read_json(request, request.app[SETTINGS_KEY].max_body_bytes)
    if not isinstance(body, dict) or set(body) - {"before", "kinds", "through"}:
        raise Problem(400, "Bad request",
                      "the body is an object of before, kinds and through (each optional)")
    kinds = body.get("kinds")
    if kinds is not None and (not isinstance(kinds, list)
                              or not all(isinstance(k, str) for k in kinds) or not kinds):
        raise Problem(400, "Bad request", "kinds must be a non-empty array of record kinds")
    through = body.get("through")
    if through is not None and (not isinstance(through, int) or isinstance(through, bool)
                                or not 0 <= through <= _MAX_INT):
        raise Problem(400, "Bad request", "through must be a log index (an integer)")
    before_text = body.get("before")
    before_ms = None
    if before_text is not None:
        if not isinstance(before_text, str):
            raise Problem(400, "Bad request", "before must be an RFC 3339 time")
        before_ms = _time_ms("before", before_text)
    before = None if before_ms is None else datetime.fromtimestamp(before_ms / 1000, UTC)
    proposal = await _pruner(request).propose(caller.name, before=before, kinds=kinds,
                                              through=through)
    return web.Response(body=orjson.dumps({"proposal": _proposal_json(proposal)},
                                          option=orjson.OPT_APPEND_NEWLINE),
                        status=201, content_type="application/json",
                        headers={"Location": f"/v1/audit/prunes/{proposal.id}"})


async def post_prune_approval(request: web.Request) -> web.Response:
    """Approve another auditor's proposal; the prune runs before the answer."""
    caller = await _require_auditor(request)
    proposal_id = _int(request, "id", request.match_info["id"])
    outcome = await _pruner(request).approve(caller.name, proposal_id)
    return _json({"proposal": _proposal_json(outcome.proposal), "pruned": outcome.pruned})
