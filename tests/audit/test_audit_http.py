"""The audit HTTP API, checked by a verifier written here from RFC 6962 alone."""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import io
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from blockbuster import BlockBuster
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit import AuditService, EventType
from gateway.audit.routes import setup_routes
from gateway.credentials.store import IdentityKind, IdentityStore, Role, add_identity
from gateway.web.appkeys import AUDIT_KEY, IDENTITIES_KEY
from gateway.web.middleware import request_middleware
from tests.audit.conftest import HOLDER_CODE, EventFactory

# -- an independent RFC 6962 verifier: the recursive definitions of 2.1.1 and 2.1.2 ----


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def path_root(m: int, n: int, leaf: bytes, path: list[bytes]) -> bytes:
    """Rebuild MTH(D[n]) from PATH(m, D[n]) (deepest sibling first)."""
    if n == 1:
        assert not path, "proof too long"
        return leaf
    assert path, "proof too short"
    k, top, rest = _k(n), path[-1], path[:-1]
    if m < k:
        return _h(b"\x01" + path_root(m, k, leaf, rest) + top)
    return _h(b"\x01" + top + path_root(m - k, n - k, leaf, rest))


def subproof_roots(
    m: int, n: int, proof: list[bytes], complete: bool, old_root: bytes
) -> tuple[bytes, bytes]:
    """Rebuild (MTH(D[0:m]) part, MTH(D[0:n]) part) from SUBPROOF(m, D[n], b)."""
    if m == n:
        if complete:
            assert not proof, "proof too long"
            return old_root, old_root
        assert len(proof) == 1, "proof has the wrong length"
        return proof[0], proof[0]
    assert proof, "proof too short"
    k, top, rest = _k(n), proof[-1], proof[:-1]
    if m <= k:
        old, new = subproof_roots(m, k, rest, complete, old_root)
        return old, _h(b"\x01" + new + top)
    old, new = subproof_roots(m - k, n - k, rest, False, old_root)
    return _h(b"\x01" + top + old), _h(b"\x01" + top + new)


def open_checkpoint_note(note: str, vkey: str) -> tuple[str, int, bytes]:
    """Check a C2SP checkpoint's Ed25519 signature with cryptography; return its body."""
    name, key_hex, key_b64 = vkey.strip().split("+", 2)
    typed = base64.b64decode(key_b64)
    assert typed[0] == 1
    public = typed[1:]
    key_id = hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]
    assert key_id.hex() == key_hex
    text, _, signatures = note.rpartition("\n\n")
    text += "\n"
    line = signatures.splitlines()[0]
    assert line.startswith("\u2014 " + name + " ")
    raw = base64.b64decode(line.rsplit(" ", 1)[1])
    assert raw[:4] == key_id
    Ed25519PublicKey.from_public_bytes(public).verify(raw[4:], text.encode())
    origin, size, root = text.splitlines()[:3]
    return origin, int(size), base64.b64decode(root)


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture
def tokens(data_dir: Path) -> dict[str, str]:
    """Tokens of an auditor, a plain operator and a local system."""
    return {
        "auditor": add_identity(data_dir, IdentityKind.OPERATOR, "alice", Role.AUDITOR),
        "operator": add_identity(data_dir, IdentityKind.OPERATOR, "bob", Role.OPERATOR),
        "client": add_identity(data_dir, IdentityKind.CLIENT, "window-01"),
    }


@pytest.fixture
async def client(
    aiohttp_client: Any,
    service: AuditService,
    data_dir: Path,
    tokens: dict[str, str],
    blocking_guard: BlockBuster | None,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """A test client of an app with the audit routes."""
    app = web.Application(middlewares=[request_middleware])
    identities = IdentityStore(data_dir)
    await identities.open()
    app[IDENTITIES_KEY] = identities
    app[AUDIT_KEY] = service
    setup_routes(app)
    yield await aiohttp_client(app)
    # SqliteDB.close() joins its worker thread on the loop, which the guard rightly flags;
    # that is the identity store's matter, not the audit log's.
    if blocking_guard is not None:
        blocking_guard.deactivate()
    await identities.close()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _fill(service: AuditService, make_event: EventFactory, n: int) -> None:
    await asyncio.gather(
        *(
            service.append(
                make_event(
                    partner_region="310000" if i % 2 else "320000",
                    event_type=EventType.PARTNER_QUERY if i % 3 == 0 else EventType.VERIFICATION,
                    outcome="ok" if i % 3 == 0 else "TOTAL_PASSED",
                )
            )
            for i in range(n)
        )
    )
    await service.publish()


class TestPublic:
    """Checkpoint and key need no credential."""

    async def test_checkpoint_and_key(
        self, client: TestClient[web.Request, web.Application], service: AuditService,
        make_event: EventFactory,
    ) -> None:  # fmt: skip
        """The checkpoint is a signed C2SP note the published key verifies."""
        await _fill(service, make_event, 9)
        key = await client.get("/v1/audit/key")
        assert key.content_type == "text/plain"
        resp = await client.get("/v1/audit/checkpoint")
        assert resp.content_type == "text/plain"
        origin, size, _root = open_checkpoint_note(await resp.text(), await key.text())
        assert ("huzhou.ecert-gateway/audit", 9) == (origin, size)


class TestAuditorEndpoints:
    """Proofs and records for auditors only."""

    async def test_entries_prove_inclusion(
        self, client: TestClient[web.Request, web.Application], service: AuditService,
        make_event: EventFactory, tokens: dict[str, str],
    ) -> None:  # fmt: skip
        """Every entry's proof leads to the signed root its checkpoint names."""
        await _fill(service, make_event, 11)
        vkey = await (await client.get("/v1/audit/key")).text()
        for index in range(11):
            resp = await client.get(f"/v1/audit/entries/{index}", headers=_auth(tokens["auditor"]))
            assert 200 == resp.status
            body = await resp.json()
            leaf = base64.b64decode(body["leaf"], validate=True)
            assert body["record"]["event_id"].encode() in leaf
            _, size, root = open_checkpoint_note(body["checkpoint"], vkey)
            assert size == body["tree_size"]
            proof = [base64.b64decode(p, validate=True) for p in body["inclusion"]]
            assert root == path_root(index, size, _h(b"\x00" + leaf), proof)

    async def test_consistency(
        self, client: TestClient[web.Request, web.Application], service: AuditService,
        make_event: EventFactory, tokens: dict[str, str],
    ) -> None:  # fmt: skip
        """Consistency proofs between signed checkpoints rebuild both roots."""
        vkey = await (await client.get("/v1/audit/key")).text()
        notes = []
        for n in (3, 4, 6):
            await _fill(service, make_event, n)
            notes.append(await (await client.get("/v1/audit/checkpoint")).text())
        heads = [open_checkpoint_note(note, vkey) for note in notes]
        for (_, size1, root1), (_, size2, root2) in itertools.pairwise(heads):
            resp = await client.get(
                f"/v1/audit/consistency?first={size1}&second={size2}",
                headers=_auth(tokens["auditor"]),
            )
            body = await resp.json()
            proof = [base64.b64decode(p) for p in body["proof"]]
            assert (root1, root2) == subproof_roots(size1, size2, proof, True, root1)

    async def test_records_stats_export(
        self, client: TestClient[web.Request, web.Application], service: AuditService,
        make_event: EventFactory, tokens: dict[str, str],
    ) -> None:  # fmt: skip
        """Records filter and page; stats count; the CSV holds masks, not raw data."""
        await _fill(service, make_event, 12)
        headers = _auth(tokens["auditor"])
        seen: list[int] = []
        cursor = ""
        while True:
            resp = await client.get(
                f"/v1/audit/records?partner=310000&limit=4{cursor}", headers=headers
            )
            body = await resp.json()
            seen += [r["index"] for r in body["records"]]
            assert all(r["record"]["partner_region"] == "310000" for r in body["records"])
            if body["next_cursor"] is None:
                break
            cursor = f"&cursor={body['next_cursor']}"
        assert [i for i in range(12) if i % 2] == seen
        resp = await client.get("/v1/audit/stats?day=2026-11-26", headers=headers)
        stats = await resp.json()
        assert 12 == stats["total"]
        assert {"310000", "320000"} == {c["partner"] for c in stats["counts"]}
        resp = await client.get("/v1/audit/export.csv?event_type=partner-query", headers=headers)
        assert resp.content_type == "text/csv"
        text = await resp.text()
        rows = list(csv.DictReader(io.StringIO(text)))
        assert 4 == len(rows)
        assert HOLDER_CODE not in text
        assert "3305**********1234" in text

    @pytest.mark.parametrize(
        ("who", "status"), [(None, 401), ("bogus", 401), ("client", 401), ("operator", 403)]
    )
    async def test_refusals(
        self, client: TestClient[web.Request, web.Application], tokens: dict[str, str],
        who: str | None, status: int,
    ) -> None:  # fmt: skip
        """No, unknown or local-system credentials are 401; a non-auditor is 403."""
        headers = {} if who is None else _auth(tokens.get(who, "ecg_o_nope"))
        resp = await client.get("/v1/audit/records", headers=headers)
        assert status == resp.status
        assert resp.content_type == "application/problem+json"

    @pytest.mark.parametrize("limit", ["0", "-1", "1001", "100000", "x"])
    async def test_limit_outside_the_page_size_is_refused(
        self, client: TestClient[web.Request, web.Application], tokens: dict[str, str],
        limit: str,
    ) -> None:  # fmt: skip
        """A limit outside 1..1000 is a 400 that names that range, never cut short silently."""
        resp = await client.get(f"/v1/audit/records?limit={limit}",
                                headers=_auth(tokens["auditor"]))
        body = await resp.json(content_type=None)
        assert 400 == resp.status
        if limit != "x":
            assert "limit must be an integer from 1 to 1000" == body["detail"]

    async def test_bad_parameters(
        self, client: TestClient[web.Request, web.Application], tokens: dict[str, str],
    ) -> None:  # fmt: skip
        """Bad indices and sizes are 400/404 problems."""
        headers = _auth(tokens["auditor"])
        assert 404 == (await client.get("/v1/audit/entries/99", headers=headers)).status
        assert 400 == (await client.get("/v1/audit/entries/x", headers=headers)).status
        url = "/v1/audit/consistency?first=0&second=1"
        assert 400 == (await client.get(url, headers=headers)).status
        url = "/v1/audit/consistency?first=1&second=99"
        assert 400 == (await client.get(url, headers=headers)).status
        huge = "9" * 30
        for url in (f"/v1/audit/entries/{huge}", f"/v1/audit/consistency?first=1&second={huge}",
                    f"/v1/audit/records?cursor={huge}", f"/v1/audit/records?limit={huge}",
                    "/v1/audit/records?from=9999-12-31T23:59:59-23:59",
                    "/v1/audit/records?from=0001-01-01T00:00:00%2B14:00",
                    f"/v1/audit/export.csv?cursor={huge}", "/v1/audit/stats?day=9999-12-31",
                    "/v1/audit/stats?day=0001-01-01"):
            resp = await client.get(url, headers=headers)
            assert resp.status in (200, 400, 404), url
            if resp.status != 200:
                assert resp.content_type == "application/problem+json", url
