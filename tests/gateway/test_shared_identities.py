"""Credentials in PostgreSQL: instances on one database share them, whichever folder made them.

With ``postgres_dsn`` set, the gateway and the CLI keep local systems' keys and operators'
tokens in PostgreSQL, as every other store: a key added on one instance's folder works on
another, and a revocation through one is honoured by the other within the bound. A folder
whose instance moves to PostgreSQL keeps its credentials.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path

import orjson
import pytest

from gateway.__main__ import main
from gateway.credentials.store import IdentityKind, Role, add_identity
from gateway.infra.datafolder import create_data_folder
from mocks import RunningFederation
from tests.gateway.conftest import AppFactory, trust_document
from tests.gateway.test_credentials_api import (
    REVOCATION_BOUND_S,
    Client,
    _as_client,
    _cli,
    _list,
    _post,
    _until_refused,
)
from trust import TrustList

pytestmark = [pytest.mark.asyncio, pytest.mark.postgres]


async def _added(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``clients|operators add`` and return the secret it printed (its last line)."""
    capsys.readouterr()
    assert 0 == await _cli(*argv)
    return capsys.readouterr().out.strip().splitlines()[-1]


async def _until_accepted(client: Client, key: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < 5.0:
        if await _as_client(client, key) == 200:
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    pytest.fail("still refused 5 s after the change")


async def _folders(tmp_path: Path, *names: str) -> list[Path]:
    folders = [tmp_path / name for name in names]
    for folder in folders:
        await asyncio.to_thread(create_data_folder, folder)
    return folders


async def _share_keys(source: Path, target: Path) -> None:
    """Instances on one PostgreSQL write one audit log, so they hold the same ``keys/``
    (docs/audit.md): copy them, as an operator would."""
    await asyncio.to_thread(shutil.copytree, source / "keys", target / "keys",
                            dirs_exist_ok=True)


class TestOnePostgres:
    """Two instances, two data folders, one PostgreSQL."""

    async def test_credentials_and_revocations_are_shared(
            self, postgres_dsn: str, gateway_client: AppFactory, tmp_path: Path,
            running: RunningFederation, capsys: pytest.CaptureFixture[str]) -> None:
        """A key and an approver added with the CLI on A's folder work on B; a key disabled
        through A's API is 401 on B within the bound; the CLI on B's folder enables it again
        for A, and disables an operator A then refuses within the bound."""
        a_dir, b_dir = await _folders(tmp_path, "a", "b")
        dsn = ("--postgres-dsn", postgres_dsn)
        key = await _added(capsys, "clients", "add", "window-01", "--data-dir", str(a_dir), *dsn)
        adam = await _added(capsys, "operators", "add", "adam", "--role", "approver",
                            "--data-dir", str(a_dir), *dsn)
        await _share_keys(a_dir, b_dir)
        trust = TrustList.from_json(trust_document(running.federation))
        a = await gateway_client(trust, data_dir=a_dir, postgres_dsn=postgres_dsn)
        b = await gateway_client(trust, data_dir=b_dir, postgres_dsn=postgres_dsn)
        assert (200, 200) == (await _as_client(b, key), await _list(b, adam))

        status, _ = await _post(a, adam, "clients/window-01/disable", {"reason": "stolen"})
        assert 200 == status
        assert await _until_refused(lambda: _as_client(b, key)) < REVOCATION_BOUND_S

        assert 0 == await _cli("clients", "enable", "window-01", "--data-dir", str(b_dir), *dsn)
        assert await _until_accepted(a, key) < REVOCATION_BOUND_S
        assert 0 == await _cli("operators", "disable", "adam", "--data-dir", str(b_dir), *dsn)
        assert await _until_refused(lambda: _list(a, adam)) < REVOCATION_BOUND_S
        capsys.readouterr()
        assert 0 == await _cli("operators", "list", "--json", "--data-dir", str(b_dir), *dsn)
        listed = orjson.loads(capsys.readouterr().out)
        assert [("adam", "disabled")] == [(c["name"], c["state"]) for c in listed]

    async def test_the_trust_cli_takes_a_token_kept_in_postgres(
            self, postgres_dsn: str, gateway_client: AppFactory, tmp_path: Path,
            running: RunningFederation, capsys: pytest.CaptureFixture[str]) -> None:
        """An operator added on A's folder proposes a change with the CLI on B's folder: the
        CLI looks the token up where the gateway does."""
        a_dir, b_dir = await _folders(tmp_path, "a", "b")
        dsn = ("--postgres-dsn", postgres_dsn)
        token = await _added(capsys, "operators", "add", "olga", "--role", "operator",
                             "--data-dir", str(a_dir), *dsn)
        await _share_keys(a_dir, b_dir)
        token_file = tmp_path / "olga.token"
        await asyncio.to_thread(token_file.write_text, token + "\n", encoding="ascii")
        trust = TrustList.from_json(trust_document(running.federation))
        await gateway_client(trust, data_dir=a_dir, postgres_dsn=postgres_dsn)
        change = orjson.dumps({"kind": "suspend-partner", "region_code": "310000"}).decode()
        capsys.readouterr()
        code = await _cli("trust", "propose", "--change", change, "--token-file",
                          str(token_file), "--data-dir", str(b_dir), *dsn)
        assert 0 == code, capsys.readouterr().err

    async def test_a_folder_moving_to_postgres_keeps_its_credentials(
            self, postgres_dsn: str, gateway_client: AppFactory, tmp_path: Path,
            running: RunningFederation, caplog: pytest.LogCaptureFixture) -> None:
        """Keys made in a folder's identity.db before postgres_dsn was set keep working once it
        is, and a disabled one stays refused; a second folder's key of the same name with
        another secret does not displace the first (it is refused, and a warning says so)."""
        a_dir, b_dir = await _folders(tmp_path, "a", "b")
        key = await asyncio.to_thread(add_identity, a_dir, IdentityKind.CLIENT, "window-01")
        kiosk = await asyncio.to_thread(add_identity, a_dir, IdentityKind.CLIENT, "kiosk")
        vera = await asyncio.to_thread(add_identity, a_dir, IdentityKind.OPERATOR, "vera",
                                       Role.AUDITOR)
        assert 0 == await _cli("clients", "disable", "kiosk", "--data-dir", str(a_dir))
        other = await asyncio.to_thread(add_identity, b_dir, IdentityKind.CLIENT, "window-01")
        trust = TrustList.from_json(trust_document(running.federation))

        a = await gateway_client(trust, data_dir=a_dir, postgres_dsn=postgres_dsn)
        assert [200, 401, 200] == [await _as_client(a, key), await _as_client(a, kiosk),
                                   await _list(a, vera)]
        with caplog.at_level(logging.WARNING, logger="gateway.credentials.store"):
            b = await gateway_client(trust, data_dir=b_dir, postgres_dsn=postgres_dsn)
        assert [200, 401] == [await _as_client(b, key), await _as_client(b, other)]
        warned = [r.getMessage() for r in caplog.records
                  if r.name == "gateway.credentials.store" and r.levelno == logging.WARNING]
        assert 1 == len(warned)
        assert "'window-01'" in warned[0]
        assert 200 == await _as_client(a, key)  # moved once: a restart copies nothing again
        assert 0 == await asyncio.to_thread(
            main, ["clients", "list", "--data-dir", str(a_dir), "--postgres-dsn", postgres_dsn])
