"""HTTP endpoints of witnessing (docs/audit.md, *Witnesses*), and its start and stop.

* ``GET /v1/audit/checkpoint/witnessed``: the largest checkpoint of Huzhou's log that
  ``k`` of the policy's witnesses cosigned, as a note with Huzhou's signature and
  their cosignatures (``text/plain``); 404 while there is none.
* ``POST /v1/witness/add-checkpoint``: Huzhou's witness (c2sp.org/tlog-witness).
* ``GET /v1/witness/key``: Huzhou's witness vkey (cosignature/v1).

All public: the checkpoint and the cosignatures are for anyone to hold Huzhou to,
and a witness judges by the log's signature, not by who calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.audit._service import origin_for
from gateway.audit.witness import (
    HuzhouWitness,
    Witnessing,
    load_witness_signer,
    witness_key_name,
)
from gateway.audit.witness_store import WitnessStore, witness_database
from gateway.infra.sql import Worker
from gateway.web.appkeys import AUDIT_KEY, SETTINGS_KEY, WITNESS_KEY, WITNESSING_KEY
from gateway.web.problems import Problem

__all__ = ["setup"]

_MAX_BODY = 64 << 10


async def witness_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` entry: open the witness store, Huzhou's witness, and (when the
    audit log runs here and witnesses are named) the witnessing task."""
    settings = app[SETTINGS_KEY]
    database = witness_database(settings.data_dir, settings.postgres_dsn)
    store: Worker[WitnessStore] = Worker(lambda: WitnessStore(database), name="witness",
                                         reopen=lambda s: s.closed)
    origin = origin_for(settings.gateway_id, settings.audit.origin)
    loop = asyncio.get_running_loop()
    signer = await loop.run_in_executor(
        None, load_witness_signer, settings.data_dir, witness_key_name(settings, origin))
    app[WITNESS_KEY] = HuzhouWitness(signer, settings.witness, store)
    witnessing = None
    audit = app.get(AUDIT_KEY)
    if audit is not None:
        witnessing = Witnessing(audit, settings.witness, store)
        await witnessing.start()
        app[WITNESSING_KEY] = witnessing
    try:
        yield
    finally:
        if witnessing is not None:
            await witnessing.stop()
        await store.close()


async def get_witnessed(request: web.Request) -> web.Response:
    """The latest witnessed checkpoint, with its cosignatures."""
    witnessing = request.app.get(WITNESSING_KEY)
    note = None if witnessing is None else await witnessing.witnessed_note()
    if note is None:
        # Not an outage: the resource does not exist yet (no policy, or too few
        # cosignatures so far), so 404, as for any entry that is not there.
        raise Problem(404, "Not witnessed yet",
                      "no checkpoint has been cosigned by enough witnesses yet")
    return web.Response(text=note, content_type="text/plain", charset="utf-8")


async def post_add_checkpoint(request: web.Request) -> web.Response:
    """tlog-witness add-checkpoint: a cosignature line, or the protocol's refusal."""
    from trust.witness import WitnessError  # noqa: PLC0415 - keeps the facade's imports few

    if (request.content_length or 0) > _MAX_BODY:
        return web.Response(status=400, text="request body too large\n")
    body = await request.content.read(_MAX_BODY + 1)
    try:
        line = await request.app[WITNESS_KEY].add_checkpoint(body)
    except WitnessError as exc:
        if exc.status == 409 and exc.known_size is not None:
            return web.Response(status=409, body=f"{exc.known_size}\n".encode(),
                                headers={"Content-Type": "text/x.tlog.size"})
        return web.Response(status=exc.status, text=f"{exc}\n")
    return web.Response(text=line, content_type="text/plain", charset="utf-8")


async def get_witness_key(request: web.Request) -> web.Response:
    """Huzhou's witness vkey."""
    return web.Response(text=request.app[WITNESS_KEY].vkey + "\n", content_type="text/plain",
                        charset="utf-8")


def setup(app: web.Application) -> None:
    """Add witnessing to ``app`` (after the audit log's ``cleanup_ctx``)."""
    app.cleanup_ctx.append(witness_ctx)
    app.router.add_get("/v1/audit/checkpoint/witnessed", get_witnessed)
    app.router.add_post("/v1/witness/add-checkpoint", post_add_checkpoint)
    app.router.add_get("/v1/witness/key", get_witness_key)
