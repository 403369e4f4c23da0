"""Fixtures for the console: a real gateway (real audit log) with operators of every role."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.credentials.store import IdentityKind, Role, add_identity
from gateway.settings import load_settings
from gateway.web.app import create_app
from mocks import Federation, RunningFederation, serve_federation
from tests.gateway.conftest import trust_document

Client = TestClient[web.Request, web.Application]

OPERATORS = {"olga": Role.OPERATOR, "adam": Role.APPROVER, "alice": Role.APPROVER,
             "vera": Role.VIEWER, "audrey": Role.AUDITOR, "mark": Role.METRICS}
"""The gateway's operators in these tests, by name."""

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: str) -> str:
    """The CSRF token in a console page's forms."""
    found = _CSRF.search(page)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


@dataclass
class Gateway:
    """A running gateway, its base URL and every operator's token."""

    client: Client
    base: str
    tokens: dict[str, str]
    federation: RunningFederation

    def api(self, name: str) -> dict[str, str]:
        """The Authorization header of an operator (or ``client``)."""
        return {"Authorization": f"Bearer {self.tokens[name]}"}


class Browserless:
    """One person's console session over plain HTTP (its own cookie jar)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def close(self) -> None:
        """Close the session's connections."""
        await self.http.close()

    async def get(self, path: str) -> tuple[int, str]:
        """GET a console page (redirects not followed): status and text."""
        async with self.http.get(self.base + path, allow_redirects=False) as resp:
            text = await resp.text()
            if "csrf" in text:
                self.csrf = csrf_of(text)
            return resp.status, text

    async def post(self, path: str, form: dict[str, str], *, csrf: str | None = None,
                   ) -> tuple[int, str, str | None]:
        """POST a form with the session's CSRF token: status, text, Location."""
        data = {"csrf": self.csrf if csrf is None else csrf, **form}
        async with self.http.post(self.base + path, data=data, allow_redirects=False) as resp:
            return resp.status, await resp.text(), resp.headers.get("Location")

    async def sign_in(self, token: str) -> aiohttp.ClientResponse:
        """Open the sign-in form and sign in with ``token``."""
        await self.get("/console/login")
        async with self.http.post(self.base + "/console/login",
                                  data={"csrf": self.csrf, "token": token},
                                  allow_redirects=False) as resp:
            await resp.read()
        if resp.status == 303:
            await self.get("/console/")
        return resp


PersonFactory = Callable[[], Awaitable[Browserless]]


async def _add(data_dir: Path, name: str, role: Role | None, kind: IdentityKind) -> str:
    return await asyncio.to_thread(add_identity, data_dir, kind, name, role)


@pytest.fixture
async def federation() -> AsyncIterator[RunningFederation]:
    """Shanghai, Hefei and Bijie served on loopback ports."""
    async with serve_federation(Federation.standard(seed=7, codes=["310000", "340100",
                                                                    "520500"])) as served:
        yield served


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def start_gateway(aiohttp_client: Callable[..., Awaitable[Client]], tmp_path: Path,
                  federation: RunningFederation) -> GatewayFactory:
    """Start a gateway with its real audit log on ``tmp_path``; some verifications done."""

    async def _start(toml: str | None = None, **overrides: Any) -> Gateway:
        tokens = {name: await _add(tmp_path, name, role, IdentityKind.OPERATOR)
                  for name, role in OPERATORS.items()}
        tokens["client"] = await _add(tmp_path, "window-01", None, IdentityKind.CLIENT)
        path = tmp_path / "tl.json"
        await asyncio.to_thread(path.write_bytes,
                                orjson.dumps(trust_document(federation.federation)))
        settings = load_settings({}, toml, {"data_dir": tmp_path, "trust_list_file": path,
                                            **overrides})
        client = await aiohttp_client(create_app(settings))
        gateway = Gateway(client, str(client.make_url("")).rstrip("/"), tokens, federation)
        regions = federation.federation
        licences = [regions["310000"].issue().token, regions["310000"].issue().token,
                    regions["340100"].issue().token, regions["340100"].issue(state="revoked").token,
                    regions["520500"].issue().token]
        for licence in licences:
            resp = await client.post("/v1/verifications", headers=gateway.api("client"),
                                     json={"credential": licence})
            assert 200 == resp.status, await resp.text()
        return gateway

    return _start


@pytest.fixture
async def person(start_gateway: GatewayFactory) -> AsyncIterator[Callable[[Gateway],
                                                                          Browserless]]:
    """Make console users of a gateway; their HTTP sessions are closed after the test."""
    made: list[Browserless] = []

    def _make(gateway: Gateway) -> Browserless:
        one = Browserless(gateway.base)
        made.append(one)
        return one

    yield _make
    for one in made:
        await one.close()
