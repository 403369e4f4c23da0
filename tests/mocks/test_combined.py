"""Mock regions issue inland-ship combined certificates (多证合一)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

import aiohttp
import orjson
import pytest

from mocks import (
    SHIP_COMBINED,
    SHIP_COMPONENT_TYPES,
    Federation,
    RunningFederation,
    b64url_decode,
    serve_federation,
    strict_check_char,
)

NANJING = "320100"


@pytest.fixture
async def running() -> AsyncIterator[RunningFederation]:
    """Nanjing (a Yangtze river port, which issues them) and Shanghai, served."""
    federation = Federation.standard(seed=4, codes=["310000", NANJING])
    async with serve_federation(federation) as served:
        yield served


class TestIssue:
    """``MockRegion.issue_combined`` follows docs/combined-certificates.md."""

    def test_four_components_each_with_own_status_entry(self) -> None:
        """The default document carries the four ship certificates, each with its own
        identifier (correct check character), issuer, status entry and state."""
        nj = Federation.standard(seed=4, codes=[NANJING])[NANJING]
        issued = nj.issue_combined(states={SHIP_COMPONENT_TYPES[2]: "revoked"})
        lic = issued.claims["lic"]
        assert SHIP_COMBINED == lic["type_code"]
        assert list(SHIP_COMPONENT_TYPES) == [c["type_code"] for c in lic["components"]]
        assert len({c.status_idx for c in issued.components} | {issued.status_idx}) == 5
        for part in issued.components:
            pieces = part.identifier.split(".")
            assert strict_check_char("".join(pieces[5:9])) == pieces[9]
            assert part.type_code == pieces[5]
            assert part.claims["issuer_code"] == pieces[6]
        assert [0, 0, 1, 0] == [nj.status_of(c.status_idx) for c in issued.components]
        assert lic["valid_until"] == max(c["valid_until"] for c in lic["components"])

    def test_component_validity_and_long_term(self) -> None:
        """A 长期 component makes the document 长期; a shorter one leaves it at the latest."""
        nj = Federation.standard(seed=4, codes=[NANJING])[NANJING]
        forever = nj.issue_combined(component_valid_until={SHIP_COMPONENT_TYPES[0]: None})
        assert forever.claims["lic"]["valid_until"] is None
        assert "exp" not in forever.claims
        short = nj.issue_combined(
            component_valid_until={SHIP_COMPONENT_TYPES[1]: date(2027, 1, 31)})
        assert "2027-01-31" == short.claims["lic"]["components"][1]["valid_until"]
        assert short.claims["lic"]["valid_until"] > "2027-01-31"

    def test_only_nanjing_of_the_standard_partners_issues_them(self) -> None:
        """The standard federation marks the river port as an issuer of combined
        certificates, and no other partner."""
        federation = Federation.standard(seed=4)
        assert [NANJING] == [r.region_code for r in federation if r.combined_certificates]


class TestServer:
    """``GET /combined/{n}`` where the region issues them."""

    async def test_demo_combined_served(self, running: RunningFederation) -> None:
        """Nanjing serves demo combined certificates with their components; Shanghai 404."""
        async with aiohttp.ClientSession() as session:
            async with session.get(running.url(NANJING) + "/combined/0") as resp:
                assert 200 == resp.status
                body = await resp.json()
            async with session.get(running.url(NANJING) + "/combined/0") as again:
                assert body == await again.json()
            async with session.get(running.url("310000") + "/combined/0") as other:
                assert 404 == other.status
        claims = orjson.loads(b64url_decode(body["token"].split(".")[1]))
        assert [c["identifier"] for c in claims["lic"]["components"]] == [
            c["identifier"] for c in body["components"]]
        assert all(c["status"]["status_list"]["uri"].startswith(running.url(NANJING))
                   for c in claims["lic"]["components"])
