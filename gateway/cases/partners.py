"""Huzhou querying a partner region for a licence: the outbound side of the partner API.

A partner serves the same query API Huzhou serves (docs/spec/http-api.md,
"Partner queries"), at the ``endpoints.query`` URL its trust-list entry names.
Huzhou authenticates each query as partners do with Huzhou: a fresh
``ecert-request+jwt`` signed with Huzhou's request-signing key (published at
``/.well-known/jwks.json``), ``iss`` the gateway id, ``aud`` the partner's
region code, ``htm``/``htu`` the method and the endpoint's path, and
``body_sha256`` over the exact body bytes.

A query never hangs or raises: it has one deadline for connecting, sending
and reading (``timeout_s``), a cap on the answer's size, and any failure (a
refused connection, a timeout, an HTTP error, a body that is not the API's)
is a ``PartnerReply`` with ``error`` set, which the case service turns into
"not met: partner unavailable".
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from gateway.infra.signing import SigningKey
from trust import Partner

__all__ = ["REQUEST_LIFETIME_S", "PartnerQueries", "PartnerReply"]

REQUEST_LIFETIME_S = 120
"""``exp - iat`` of Huzhou's request tokens (the API allows at most 300 s)."""

MAX_ANSWER_BYTES = 1 << 20
"""Largest answer read from a partner (1 MiB: a holder's licences, not a catalogue)."""

MAX_LICENCES = 20
"""Most licences taken from one answer (one holder, one type): each is verified."""


@dataclass(frozen=True, slots=True)
class PartnerReply:
    """What one partner answered to one query, or why it did not."""

    region: str
    type_code: str
    cn_status: int | None
    """The partner's national status code (0 found, 10 not found, 21 revoked ...)."""
    licences: tuple[str, ...]
    error: str | None
    """None when the partner answered; else why it is counted unavailable."""
    latency_ms: float

    def to_json(self) -> dict[str, Any]:
        """As the case answer shows it (the licences are shown as their verdicts)."""
        return {"region": self.region, "type_code": self.type_code,
                "cn_status": self.cn_status, "licences": len(self.licences),
                "error": self.error, "latency_ms": round(self.latency_ms, 3)}


class PartnerQueries:
    """Sends Huzhou's signed queries to partners' query endpoints (one client session)."""

    def __init__(self, *, key: SigningKey, gateway_id: str, timeout_s: float) -> None:
        self._sign = key.signer({"typ": "ecert-request+jwt"})
        self.gateway_id = gateway_id
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the client session."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            headers={"User-Agent": "ecert-gateway cases"})

    async def close(self) -> None:
        """Close the client session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def token(self, *, url: str, body: bytes, audience: str) -> str:
        """A request token binding ``POST``, the path of ``url`` and ``body``."""
        now = int(time.time())
        return self._sign({
            "iss": self.gateway_id, "aud": audience, "iat": now,
            "exp": now + REQUEST_LIFETIME_S, "jti": uuid.uuid4().hex, "htm": "POST",
            "htu": urlsplit(url).path or "/",
            "body_sha256": hashlib.sha256(body).hexdigest(),
        })

    async def by_holder(self, partner: Partner, *, holder_code: str, holder_code_type: str,
                        type_code: str, matter_code: str, use_cause: str) -> PartnerReply:
        """Ask ``partner`` for the licences of ``type_code`` its holder holds, for Huzhou's
        matter ``matter_code``; never raises, never waits past ``timeout_s``."""
        started = time.perf_counter()

        def reply(cn: int | None, licences: tuple[str, ...], error: str | None
                  ) -> PartnerReply:
            return PartnerReply(partner.region_code, type_code, cn, licences, error,
                                (time.perf_counter() - started) * 1000)

        url = partner.query_endpoint
        if not url:
            return reply(None, (), "the partner publishes no query endpoint")
        body = orjson.dumps({
            "holder_code": holder_code, "holder_code_type": holder_code_type,
            "type_code": type_code, "use_cause": use_cause,
            "matter": {"region": self.gateway_id, "code": matter_code}})
        token = self.token(url=url, body=body, audience=partner.region_code)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if self._session is None:
            return reply(None, (), "the partner client is not started")
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._session.post(url, data=body, headers=headers,
                                              allow_redirects=False) as response:
                    raw = await _read_capped(response)
                    status = response.status
        except TimeoutError:
            return reply(None, (), f"no answer within {self.timeout_s:g} s")
        except (aiohttp.ClientError, ValueError) as exc:  # ValueError: a URL aiohttp refuses
            return reply(None, (), f"unreachable: {type(exc).__name__}")
        if raw is None:
            return reply(None, (), "answer over 1 MiB")
        return reply(*_parse(status, raw))


async def _read_capped(response: aiohttp.ClientResponse) -> bytes | None:
    """The whole body, or None once it passes ``MAX_ANSWER_BYTES``."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(status: int, raw: bytes) -> tuple[int | None, tuple[str, ...], str | None]:
    """The status code, licences and error of a partner's answer."""
    try:
        parsed = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        parsed = None
    cn = parsed.get("cn_status") if isinstance(parsed, dict) else None
    cn = cn if isinstance(cn, int) and not isinstance(cn, bool) else None
    if status != 200:
        return cn, (), f"HTTP {status}"
    licences = parsed.get("licences", []) if isinstance(parsed, dict) else None
    if cn is None or not isinstance(licences, list) \
            or not all(isinstance(t, str) for t in licences):
        return None, (), "answer is not a partner query answer"
    if len(licences) > MAX_LICENCES:
        return None, (), f"answer holds over {MAX_LICENCES} licences"
    return cn, tuple(licences), None
