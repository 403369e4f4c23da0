"""A partner region querying Huzhou's licences: signs each request and sends it.

``PartnerClient(region, base_url)`` builds the body of a query (by identifier
or by holder), signs an ``ecert-request+jwt`` over the exact bytes it sends
(``MockRegion.request_token``), posts it to ``/v1/partner/licences/query`` and
returns the status, headers and JSON body. Every step can be bent for negative
tests: send a given token, sign one body and send another, set token claims.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

import aiohttp
import orjson

from mocks._region import MockRegion

__all__ = ["QUERY_PATH", "PartnerAnswer", "PartnerClient"]

QUERY_PATH: Final = "/v1/partner/licences/query"
"""Huzhou's partner query endpoint (http-api.md)."""


@dataclass(frozen=True, slots=True)
class PartnerAnswer:
    """What Huzhou answered."""

    status: int
    headers: Mapping[str, str]
    body: dict[str, Any] = field(repr=False)

    @property
    def cn_status(self) -> int | None:
        """The national-style status code of the answer or problem body."""
        value = self.body.get("cn_status")
        return value if isinstance(value, int) else None


class PartnerClient:
    """A partner region's client for Huzhou's partner API.

    ``session`` may be shared (an aiohttp test client's); otherwise one is
    opened by ``async with`` and closed on exit.
    """

    def __init__(
        self,
        region: MockRegion,
        base_url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        path: str = QUERY_PATH,
        audience: str = "330500",
    ) -> None:
        self.region = region
        self.base_url = base_url.rstrip("/")
        self.path = path
        self.audience = audience
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> PartnerClient:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client opened it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- bodies ----------------------------------------------------------------------------

    def by_identifier(self, identifier: str, *, matter_code: str,
                      use_cause: str = "办理跨省通办事项") -> dict[str, Any]:
        """The body of a query by 证照标识, for a matter in the partner's own catalogue."""
        return {"identifier": identifier, "use_cause": use_cause,
                "matter": {"region": self.region.region_code, "code": matter_code}}

    def by_holder(self, holder_code: str, type_code: str, *, matter_code: str,
                  holder_code_type: str = "111",
                  use_cause: str = "办理跨省通办事项") -> dict[str, Any]:
        """The body of a query by holder and licence type."""
        return {"holder_code": holder_code, "holder_code_type": holder_code_type,
                "type_code": type_code, "use_cause": use_cause,
                "matter": {"region": self.region.region_code, "code": matter_code}}

    # -- sending ---------------------------------------------------------------------------

    def sign(self, body: bytes, **token_args: Any) -> str:
        """A request token binding this client's path and ``body`` (``MockRegion.request_token``
        arguments such as ``iat``, ``lifetime``, ``jti``, ``kid``, ``claims_override``)."""
        args: dict[str, Any] = {"aud": self.audience, **token_args}
        return self.region.request_token(body=body, path=self.path, **args)

    async def query(
        self,
        body: Mapping[str, Any] | bytes,
        *,
        token: str | None = None,
        signed_body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        **token_args: Any,
    ) -> PartnerAnswer:
        """Sign ``body`` (or ``signed_body``, to test a body changed after signing) unless
        ``token`` is given, send ``body``, and return the answer."""
        if self._session is None:
            raise RuntimeError("use the client inside 'async with', or give it a session")
        raw = body if isinstance(body, bytes) else orjson.dumps(dict(body))
        if token is None:
            token = self.sign(raw if signed_body is None else signed_body, **token_args)
        sent = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                **(headers or {})}
        async with self._session.post(self.base_url + self.path, data=raw,
                                      headers=sent) as response:
            data = await response.read()
            try:
                parsed = orjson.loads(data) if data else {}
            except orjson.JSONDecodeError:
                parsed = {"raw": data.decode("utf-8", "replace")}
            return PartnerAnswer(status=response.status, headers=dict(response.headers),
                                 body=parsed if isinstance(parsed, dict) else {"raw": parsed})
