"""Witnessing over HTTP: mock regions' witnesses cosign Huzhou's checkpoints (k of n), and
Huzhou's witness endpoint cosigns a mock region's log, refusing forks and stale sizes."""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.__main__ import main, run_command
from gateway.audit import AuditService
from gateway.audit.routes import setup_routes
from gateway.audit.witness_routes import setup as setup_witness
from gateway.cli import command_settings
from gateway.cli.audit import register
from gateway.settings import Settings, load_settings
from gateway.web.appkeys import AUDIT_KEY, SETTINGS_KEY, WITNESSING_KEY
from gateway.web.middleware import request_middleware
from mocks import ADD_CHECKPOINT_PATH, MockLog, MockWitness, create_witness_app
from mocks._witness import LogPublisher
from tests.audit.conftest import EventFactory
from trust.witness import AddCheckpoint, WitnessKey, cosignatures

Client = TestClient[web.Request, web.Application]
PARTNER_LOG = "shanghai.ecert-gateway/audit"


def independent_cosigners(note: str, witnesses: list[MockWitness]) -> set[str]:
    """Witnesses whose cosignature/v1 over the note verifies, checked here from the spec:
    Ed25519 over ``cosignature/v1\\ntime <t>\\n<text>``, signature = key id, 8-byte t, sig."""
    text, block = note.split("\n\n", 1)
    found = set()
    for line in block.splitlines():
        name, encoded = line.removeprefix("\u2014 ").split(" ")
        raw = base64.b64decode(encoded)
        for witness in witnesses:
            if witness.name != name:
                continue
            timestamp = int.from_bytes(raw[4:12], "big")
            message = f"cosignature/v1\ntime {timestamp}\n{text}\n".encode()
            Ed25519PublicKey.from_public_bytes(witness.public_key).verify(raw[12:], message)
            found.add(name)
    return found


@dataclass
class Setup:
    client: Client
    service: AuditService
    witnesses: list[MockWitness]
    partner: MockLog
    settings: Settings
    restart: Callable[[], Awaitable[Client]]


def _toml(urls: list[str], witnesses: list[MockWitness], partner: MockLog, k: int) -> str:
    lines = [f"[witness]\nk = {k}\ninterval_s = 3600\ntimeout_s = 0.3\nalert_after_s = 0.05\n"]
    for witness, url in zip(witnesses, urls, strict=True):
        lines.append(f'[[witness.witnesses]]\nname = "{witness.name}"\n'
                     f'vkey = "{witness.vkey}"\nurl = "{url}"\n')
    lines.append(f'[[witness.logs]]\norigin = "{partner.origin}"\n'
                 f'vkey = "{partner.vkey}"\n')
    return "\n".join(lines)


@pytest.fixture
async def setup(aiohttp_client: Any, service: AuditService, data_dir: Path
                ) -> AsyncIterator[Setup]:
    """Huzhou's audit log with three mock regions' witnesses (k = 2) and one partner log."""
    witnesses = [MockWitness(f"{code}.ecert-gateway/witness", seed=int(code))
                 for code in ("310000", "320500", "330100")]
    servers = []
    for witness in witnesses:
        witness.trust(service.vkey())
        server = TestServer(create_witness_app(witness))
        await server.start_server()
        servers.append(server)
    partner = MockLog(PARTNER_LOG, seed=7)
    urls = [str(server.make_url(ADD_CHECKPOINT_PATH)) for server in servers]
    settings = load_settings({}, _toml(urls, witnesses, partner, 2), {"data_dir": data_dir})
    clients: list[Client] = []

    async def start() -> Client:
        app = web.Application(middlewares=[request_middleware])
        app[SETTINGS_KEY] = settings
        app[AUDIT_KEY] = service
        setup_routes(app)
        setup_witness(app)
        client: Client = await aiohttp_client(app)
        clients.append(client)
        return client

    async def restart() -> Client:
        await clients[-1].close()
        return await start()

    yield Setup(await start(), service, witnesses, partner, settings, restart)
    for server in servers:
        await server.close()


async def _grow(service: AuditService, make_event: EventFactory, n: int) -> int:
    await asyncio.gather(*(service.append(make_event()) for _ in range(n)))
    checkpoint = await service.publish()
    assert checkpoint is not None
    return checkpoint.size


async def _round(client: Client) -> None:
    await client.app[WITNESSING_KEY].round()


class TestHuzhouWitnessed:
    """Huzhou's checkpoints sent to the mock regions' witnesses."""

    async def test_three_witnesses_k2(self, setup: Setup, make_event: EventFactory) -> None:
        """All three cosign; the witnessed note verifies independently and grows with the log."""
        size = await _grow(setup.service, make_event, 5)
        await _round(setup.client)
        response = await setup.client.get("/v1/audit/checkpoint/witnessed")
        assert 200 == response.status
        note = await response.text()
        assert note.startswith(f"huzhou.ecert-gateway/audit\n{size}\n")
        assert {w.name for w in setup.witnesses} == independent_cosigners(
            note, setup.witnesses)
        bigger = await _grow(setup.service, make_event, 4)
        await _round(setup.client)  # from the size each cosigned, with a consistency proof
        note = await (await setup.client.get("/v1/audit/checkpoint/witnessed")).text()
        assert note.startswith(f"huzhou.ecert-gateway/audit\n{bigger}\n")
        assert 3 == len(independent_cosigners(note, setup.witnesses))

    async def test_one_down_still_witnessed(self, setup: Setup,
                                            make_event: EventFactory) -> None:
        """One witness down: k = 2 is still met, and the down one is counted as failing."""
        setup.witnesses[2].available = False
        size = await _grow(setup.service, make_event, 3)
        await _round(setup.client)
        note = await (await setup.client.get("/v1/audit/checkpoint/witnessed")).text()
        assert note.startswith(f"huzhou.ecert-gateway/audit\n{size}\n")
        assert {w.name for w in setup.witnesses[:2]} == independent_cosigners(
            note, setup.witnesses)
        families = {f.name: f for f in setup.client.app[WITNESSING_KEY].metric_families()}
        failures = {labels["witness"]: value
                    for labels, value in families["ecert_audit_witness_failures"].samples}
        assert 1.0 == failures[setup.witnesses[2].name]
        assert [({}, 0.0)] == list(families["ecert_audit_witness_alert"].samples)

    async def test_bad_cosignature_not_counted(self, setup: Setup,
                                               make_event: EventFactory) -> None:
        """A witness answering with a cosignature that does not verify under its configured
        key (right name and key id, a changed byte) is counted as failing and its line is
        neither kept nor served."""
        impostor = setup.witnesses[0]
        impostor.tamper = True
        await _grow(setup.service, make_event, 3)
        await _round(setup.client)
        witnessing = setup.client.app[WITNESSING_KEY]
        assert (1, 0) == (witnessing.statuses[0].failures, witnessing.statuses[0].cosigned_size)
        note = await (await setup.client.get("/v1/audit/checkpoint/witnessed")).text()
        assert impostor.name not in note
        assert 2 == len(independent_cosigners(note, setup.witnesses[1:]))

    async def test_two_hanging_not_witnessed_and_answers_stay_fast(
            self, setup: Setup, make_event: EventFactory) -> None:
        """Two witnesses hang: no witnessed checkpoint, the alert is raised, and requests are
        answered at once while a round waits for them."""
        for witness in setup.witnesses[1:]:
            witness.delay_s = 5.0
        await _grow(setup.service, make_event, 3)
        pending = asyncio.create_task(_round(setup.client))
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        response = await setup.client.get("/v1/audit/checkpoint")
        appended = await setup.service.append(make_event())
        elapsed = time.perf_counter() - started
        assert 200 == response.status
        assert appended >= 0
        assert elapsed < 0.25, elapsed
        started = time.perf_counter()
        await pending
        assert time.perf_counter() - started < 2.0  # bounded by the timeout, not the witness
        assert 404 == (await setup.client.get("/v1/audit/checkpoint/witnessed")).status
        await asyncio.sleep(0.06)
        await _round(setup.client)  # both are backing off: nothing sent, the alert stands
        witnessing = setup.client.app[WITNESSING_KEY]
        assert witnessing.alerting
        assert [1, 1] == [s.failures for s in witnessing.statuses[1:]]

    async def test_witness_that_saw_a_bigger_size(self, setup: Setup,
                                                  make_event: EventFactory) -> None:
        """A witness answering 409 with the size it cosigned is asked again from that size
        (here: this instance lost what it knew), and one ahead of the log waits, unfailed."""
        size = await _grow(setup.service, make_event, 4)
        await _round(setup.client)
        witnessing = setup.client.app[WITNESSING_KEY]
        witnessing.statuses[0].known_size = 0
        witnessing.statuses[0].cosigned_size = 0
        before = setup.witnesses[0].requests
        bigger = await _grow(setup.service, make_event, 3)
        await _round(setup.client)
        assert 2 == setup.witnesses[0].requests - before  # 409, then the proof from `size`
        assert (bigger, 0) == (witnessing.statuses[0].cosigned_size,
                               witnessing.statuses[0].failures)
        assert size < bigger
        ahead = setup.witnesses[1]
        ahead.cosigned[witnessing.audit.origin] = (bigger + 100, b"\x00" * 32)
        witnessing.statuses[1].known_size = 0
        newest = await _grow(setup.service, make_event, 1)
        await _round(setup.client)
        status = witnessing.statuses[1]
        assert (True, 0, bigger) == (status.ahead, status.failures, status.cosigned_size)
        assert newest == witnessing.witnessed_size  # the two others still make k


class TestHuzhouWitness:
    """Huzhou's witness endpoint cosigns a mock region's log."""

    async def test_cosigns_grows_and_refuses(self, setup: Setup) -> None:
        """First sight, growth with a proof, then stale 409, fork 422, unknown 404, bad key
        403; the state survives a restart."""
        log = setup.partner
        for i in range(5):
            log.append(f"shanghai {i}".encode())
        key = (await (await setup.client.get("/v1/witness/key")).text()).strip()
        huzhou = WitnessKey.from_vkey(key)
        response = await setup.client.post("/v1/witness/add-checkpoint",
                                            data=AddCheckpoint(0, (), log.checkpoint()).to_body())
        assert 200 == response.status
        line = await response.text()
        assert "huzhou.ecert-gateway/witness" in cosignatures(log.checkpoint() + line, [huzhou])
        log.append(b"shanghai 5")
        grown = AddCheckpoint(5, tuple(log.consistency(5)), log.checkpoint()).to_body()
        assert 200 == (await setup.client.post("/v1/witness/add-checkpoint", data=grown)).status
        stale = await setup.client.post("/v1/witness/add-checkpoint", data=grown)
        assert (409, "text/x.tlog.size", "6\n") == (stale.status, stale.content_type,
                                                    await stale.text())
        client = await setup.restart()
        fork = log.fork(2, b"rewritten")
        forked = AddCheckpoint(6, (), fork.checkpoint()).to_body()
        assert 422 == (await client.post("/v1/witness/add-checkpoint", data=forked)).status
        stranger = MockLog("other.example/log", seed=3)
        stranger.append(b"x")
        body = AddCheckpoint(0, (), stranger.checkpoint()).to_body()
        assert 404 == (await client.post("/v1/witness/add-checkpoint", data=body)).status
        impostor = MockLog(PARTNER_LOG, seed=99)
        impostor.append(b"x")
        body = AddCheckpoint(6, (), impostor.checkpoint()).to_body()
        assert 403 == (await client.post("/v1/witness/add-checkpoint", data=body)).status
        assert 400 == (await client.post("/v1/witness/add-checkpoint", data=b"old x")).status

    async def test_mock_witness_refuses_a_fork_of_huzhous_log(
            self, setup: Setup, aiohttp_client: Any) -> None:
        """A mock region's witness, over HTTP, refuses a second root at a size it cosigned."""
        log = MockLog("fork.example/log", seed=5)
        for i in range(4):
            log.append(bytes([i]))
        witness = MockWitness("w.example/witness", seed=1)
        witness.trust(log.vkey)
        client = await aiohttp_client(create_witness_app(witness))
        ok = await client.post(ADD_CHECKPOINT_PATH, data=AddCheckpoint(0, (), log.checkpoint())
                               .to_body())
        assert 200 == ok.status
        fork = log.fork(1, b"other")
        refused = await client.post(ADD_CHECKPOINT_PATH,
                                    data=AddCheckpoint(4, (), fork.checkpoint()).to_body())
        assert 422 == refused.status


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ecert-gateway")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return run_command(args, command_settings(args, os.environ))


class TestAuditVerify:
    """audit verify checks the kept cosignatures against a witness policy."""

    @pytest.mark.allow_blocking
    async def test_good_then_tampered_cosignature(
            self, setup: Setup, make_event: EventFactory, data_dir: Path, tmp_path: Path,
            capsys: pytest.CaptureFixture[str]) -> None:
        """Good cosignatures: ok, naming who cosigned and k; one changed byte: exit 1."""
        setup.witnesses[1].available = False
        size = await _grow(setup.service, make_event, 6)
        await _round(setup.client)
        policy = tmp_path / "policy.toml"
        witnesses = setup.settings.witness.witnesses
        policy.write_text("[witness]\nk = 2\n" + "".join(
            f'[[witness.witnesses]]\nname = "{w.name}"\nvkey = "{w.vkey}"\nurl = "{w.url}"\n'
            for w in witnesses), encoding="utf-8")
        assert 0 == _run("audit", "verify", "--data-dir", str(data_dir), "--quiet",
                         "--witness-policy", str(policy))
        out = capsys.readouterr().out
        names = sorted(w.name for w in witnesses)
        assert (f"witnesses: checkpoint {size} witnessed: 2 of 3 cosigned (k = 2):"
                f" {names[0]}, {names[2]}; 2 cosignatures verified") in out
        conn = sqlite3.connect(data_dir / "witness.db")
        conn.execute("DROP TRIGGER audit_cosignatures_no_update")
        (line,) = conn.execute("SELECT line FROM audit_cosignatures WHERE witness = ?",
                               (names[0],)).fetchone()
        name, encoded = line.removeprefix("\u2014 ").split(" ")
        raw = bytearray(base64.b64decode(encoded))
        raw[20] ^= 1
        bad = f"\u2014 {name} {base64.b64encode(bytes(raw)).decode()}\n"
        conn.execute("UPDATE audit_cosignatures SET line = ? WHERE witness = ?", (bad, names[0]))
        conn.commit()
        conn.close()
        assert 1 == _run("audit", "verify", "--data-dir", str(data_dir), "--quiet",
                         "--witness-policy", str(policy))
        err = capsys.readouterr().err
        assert f"cosignature by {names[0]} does not verify" in err


class TestReceiptAgainstWitnessed:
    """receipt verify --witnessed: a receipt's checkpoint on the witnessed history."""

    @pytest.mark.allow_blocking
    async def test_receipt_on_witnessed_history(
            self, setup: Setup, make_event: EventFactory, tmp_path: Path,
            capsys: pytest.CaptureFixture[str]) -> None:
        """An older receipt is a prefix of the later witnessed tree (proof from the API);
        a changed proof hash, or too few cosignatures for the policy, fails."""
        await _grow(setup.service, make_event, 3)
        entry = await setup.service.append_proved(make_event())
        receipt = tmp_path / "receipt.json"
        receipt.write_bytes(orjson.dumps(entry.to_json()))
        size = await _grow(setup.service, make_event, 5)
        await _round(setup.client)
        witnessed = tmp_path / "witnessed.txt"
        witnessed.write_text(await (await setup.client.get("/v1/audit/checkpoint/witnessed"))
                             .text(), encoding="utf-8")
        proof = await setup.service.consistency(entry.tree_size, size)
        consistency = tmp_path / "consistency.json"
        encoded = [base64.b64encode(h).decode() for h in proof]
        answer: dict[str, Any] = {"first": entry.tree_size, "second": size, "proof": encoded}
        consistency.write_bytes(orjson.dumps(answer))
        policy = tmp_path / "policy.toml"
        policy.write_text(_toml([w.url for w in setup.settings.witness.witnesses],
                                setup.witnesses, setup.partner, 3), encoding="utf-8")
        argv = ["receipt", "verify", str(receipt), "--vkey", setup.service.vkey(),
                "--witnessed", str(witnessed), "--consistency", str(consistency),
                "--witness-policy", str(policy)]
        assert 0 == main(argv)
        out = capsys.readouterr().out
        assert (f"ok: its tree of {entry.tree_size} entries and the witnessed tree of {size}"
                " are one history; cosigned by 3 of 3 witnesses (k = 3)") in out
        consistency.write_bytes(orjson.dumps(
            {**answer, "proof": [base64.b64encode(b"\x00" * 32).decode(), *encoded[1:]]}))
        assert 1 == main(argv)
        assert "not on the witnessed checkpoint's history" in capsys.readouterr().err
        consistency.write_bytes(orjson.dumps(answer))
        note = witnessed.read_text(encoding="utf-8")
        witnessed.write_text(note[: note.rindex("\u2014 ")], encoding="utf-8")  # drop one
        assert 1 == main(argv)
        assert "2 of the 3 cosignatures" in capsys.readouterr().err


class TestMockRegionLog:
    """A mock region's log, published to Huzhou's witness as the region does under make run."""

    async def test_publisher_gets_cosigned_and_recovers_from_409(self, setup: Setup) -> None:
        """Each submission is cosigned by Huzhou's key; a publisher that lost track of
        Huzhou's size takes it from the 409 and is cosigned on the retry."""
        publisher = LogPublisher(setup.partner)
        publisher.url = str(setup.client.make_url("/v1/witness/add-checkpoint"))
        key = WitnessKey.from_vkey(await (await setup.client.get("/v1/witness/key")).text())
        async with aiohttp.ClientSession() as session:
            for i in range(3):
                setup.partner.append(f"sh {i}".encode())
                assert 200 == await publisher.submit(session)
            assert 3 == publisher.witnessed_size
            publisher.witnessed_size = 0
            setup.partner.append(b"sh 3")
            assert 200 == await publisher.submit(session)
        assert 4 == publisher.witnessed_size
        note = setup.partner.checkpoint(4) + "".join(f"{line}\n" for line in
                                                     publisher.cosignatures)
        assert key.name in cosignatures(note, [key])

    async def test_publisher_of_a_log_made_afresh_stops_at_the_409(self, setup: Setup) -> None:
        """A log made again under the same key (a demo started again, its data folder
        kept) is shorter than the tree Huzhou cosigned: submitting answers the witness's
        409 and raises nothing (it used to fail on a proof from 3 entries to 1)."""
        publisher = LogPublisher(setup.partner)
        publisher.url = str(setup.client.make_url("/v1/witness/add-checkpoint"))
        async with aiohttp.ClientSession() as session:
            for i in range(3):
                setup.partner.append(f"sh {i}".encode())
                assert 200 == await publisher.submit(session)
            setup.partner.leaves = setup.partner.leaves[:1]
            again = LogPublisher(setup.partner)
            again.url = publisher.url
            assert 409 == await again.submit(session)
            assert 3 == again.witnessed_size
        with pytest.raises(ValueError, match="no consistency proof from 3 to 1"):
            setup.partner.consistency(3, 1)
