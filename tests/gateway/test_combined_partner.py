"""Huzhou's combined ship certificates (多证合一): imported with ``licences import`` and
answered to partners, whole or one component at a time."""

from __future__ import annotations

import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest

from gateway.licences.store import open_repository
from mocks import SHIP_COMBINED, SHIP_COMPONENT_TYPES, RunningFederation, b64url_decode
from tests.fakes import MemoryAudit
from tests.gateway.test_licences import run, write_jsonl
from tests.gateway.test_partner_api import (
    ORG_HOLDER,
    SH_MATTER,
    SHANGHAI,
    Start,
    _b64json,
    _events,
    _jwk,
    china_today,
    licence_row,
    partner,
    start,
)
from trust import iso7064_check_char

__all__ = ["start"]  # the fixture, imported to be found here

NATIONALITY, INSPECTION, OPERATION, MANNING = SHIP_COMPONENT_TYPES
TRANSPORT = "11100000000019713D"
_NAMES = {NATIONALITY: "船舶国籍证书", INSPECTION: "船舶检验证书",
          OPERATION: "船舶营业运输证", MANNING: "船舶最低安全配员证书"}


def _identifier(type_code: str, issuer: str, serial: int) -> str:
    serial_text = f"2026{serial:08d}"
    check = iso7064_check_char(f"{type_code}{issuer}{serial_text}001")
    return f"1.2.156.3005.2.{type_code}.{issuer}.{serial_text}.001.{check}"


def combined_row(serial: int, *, states: dict[str, str] | None = None,
                 types: tuple[str, ...] = SHIP_COMPONENT_TYPES) -> dict[str, Any]:
    """A Huzhou combined ship certificate as ``licences import`` takes it."""
    doc = licence_row(serial, type_code=SHIP_COMBINED, holder=ORG_HOLDER, holder_type="001")
    issuer = doc["issuer_code"]
    doc.update(identifier=_identifier(SHIP_COMBINED, issuer, serial),
               type_name="内河船舶证书（多证合一）", number=f"浙船证{serial:08d}",
               issuer_name="湖州市交通运输局", fields={"ship_name": "湖航货1001"})
    doc["components"] = [
        {"identifier": _identifier(code, issuer, serial * 100 + n),
         "type_code": code, "type_name": _NAMES.get(code, "船舶证书"),
         "number": f"湖{code[-3:]}-{serial:06d}", "issue_date": doc["issue_date"],
         "valid_from": doc["valid_from"], "valid_until": doc["valid_until"],
         "state": (states or {}).get(code, "valid")}
        for n, code in enumerate(types)]
    return doc


def _payload(token: str) -> dict[str, Any]:
    return _b64json(token.split(".")[1])


class TestImport:
    """``licences import`` stores a combined certificate and each component."""

    def test_components_are_stored_as_licences(self, tmp_path: Path) -> None:
        """The document and its four components are five licences, each with its own
        state and status index; the components hold the document's holder."""
        row = combined_row(1, states={OPERATION: "revoked"})
        path = write_jsonl(tmp_path / "ships.jsonl", [row])
        assert 0 == run("import", str(path), "--data-dir", str(tmp_path / "data"))
        with open_repository(tmp_path / "data") as repo:
            assert 5 == repo.count()
            document = repo.by_identifier(row["identifier"])
            assert document is not None
            assert [c["identifier"] for c in row["components"]] == [
                c["identifier"] for c in document.lic["components"]]
            parts = [repo.by_identifier(c["identifier"]) for c in row["components"]]
        assert all(p is not None for p in parts)
        assert ["valid", "valid", "revoked", "valid"] == [p.state.value for p in parts if p]
        assert len({p.status_idx for p in parts if p} | {document.status_idx}) == 5
        assert all(p.lic["holder_code"] == ORG_HOLDER for p in parts if p)

    def test_too_many_components_are_refused(self, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
        """A row with 17 components is rejected; nothing of it is stored."""
        types = tuple(f"{TRANSPORT}{901 + n:03d}" for n in range(17))
        path = write_jsonl(tmp_path / "ships.jsonl", [combined_row(2, types=types)])
        assert 1 == run("import", str(path), "--data-dir", str(tmp_path / "data"))
        assert "at most 16" in capsys.readouterr().err
        with open_repository(tmp_path / "data") as repo:
            assert 0 == repo.count()


class TestPartnerQuery:
    """A partner asks for one component of a combined certificate."""

    async def test_one_component_by_type_code(self, start: Start, running: RunningFederation,
                                              audit: MemoryAudit) -> None:
        """The component alone, signed by Huzhou, with its own identifier, type and status
        entry and the document's holder; the audit record names the component."""
        row = combined_row(3)
        client = await start([row])
        sh = partner(client, running)
        body = sh.by_identifier(row["identifier"], matter_code=SH_MATTER)
        body["component"] = {"type_code": INSPECTION}
        answer = await sh.query(body)
        assert (200, 0) == (answer.status, answer.cn_status)
        [token] = answer.body["licences"]
        header = _b64json(token.split(".")[0])
        key = await _jwk(client, header["kid"])
        claims = jwt.decode(token, key.key, algorithms=["ES256"])
        wanted = row["components"][1]
        assert wanted["identifier"] == claims["jti"]
        assert (INSPECTION, wanted["number"], ORG_HOLDER) == (
            claims["lic"]["type_code"], claims["lic"]["number"], claims["lic"]["holder_code"])
        assert "components" not in claims["lic"]
        idx = claims["status"]["status_list"]["idx"]
        status = _payload(await (await client.get("/v1/status/licences")).text())
        data = zlib.decompress(b64url_decode(status["status_list"]["lst"]))
        assert 0 == (data[idx * 2 // 8] >> (idx * 2 % 8)) & 3
        event = _events(audit)[-1]
        assert wanted["identifier"] == event.licence_identifier
        assert {"by": "type_code", "type_code": INSPECTION,
                "identifier": wanted["identifier"]} == event.details["component"]

    async def test_one_component_by_number(self, start: Start,
                                           running: RunningFederation) -> None:
        """A component asked for by its number; a number the document lacks is cn 10."""
        row = combined_row(4)
        client = await start([row])
        sh = partner(client, running)
        body = sh.by_identifier(row["identifier"], matter_code=SH_MATTER)
        body["component"] = {"number": row["components"][3]["number"]}
        answer = await sh.query(body)
        assert (200, 0) == (answer.status, answer.cn_status)
        assert MANNING == _payload(answer.body["licences"][0])["lic"]["type_code"]
        body["component"] = {"number": "湖999-000000"}
        answer = await sh.query(body)
        assert (200, 10, []) == (answer.status, answer.cn_status, answer.body["licences"])

    async def test_component_type_outside_the_agreement_is_refused(
            self, start: Start, running: RunningFederation) -> None:
        """An agreement covering the combined certificate and the nationality certificate
        only: the operation certificate is refused 403 / 100 (by type and by number), the
        nationality certificate answered."""
        running.federation[SHANGHAI].recognised_licence_types = (SHIP_COMBINED, NATIONALITY)
        row = combined_row(5)
        client = await start([row])
        sh = partner(client, running)
        body = sh.by_identifier(row["identifier"], matter_code=SH_MATTER)
        body["component"] = {"type_code": OPERATION}
        assert (403, 100) == ((a := await sh.query(body)).status, a.cn_status)
        body["component"] = {"number": row["components"][2]["number"]}
        assert (403, 100) == ((a := await sh.query(body)).status, a.cn_status)
        body["component"] = {"type_code": NATIONALITY}
        assert (200, 0) == ((a := await sh.query(body)).status, a.cn_status)

    async def test_agreement_on_the_component_type_alone(
            self, start: Start, running: RunningFederation) -> None:
        """A partner recognising the nationality certificate but not the combined type gets
        that component, and is refused the whole document (403 / 100)."""
        running.federation[SHANGHAI].recognised_licence_types = (NATIONALITY,)
        row = combined_row(10)
        client = await start([row])
        sh = partner(client, running)
        body = sh.by_identifier(row["identifier"], matter_code=SH_MATTER)
        assert (403, 100) == ((a := await sh.query(body)).status, a.cn_status)
        body["component"] = {"type_code": NATIONALITY}
        assert (200, 0) == ((a := await sh.query(body)).status, a.cn_status)

    async def test_revoked_component_is_cn_21(self, start: Start,
                                              running: RunningFederation) -> None:
        """A component revoked in Huzhou's library answers 21 and is not handed out; the
        others still are."""
        row = combined_row(6, states={OPERATION: "revoked"})
        client = await start([row])
        sh = partner(client, running)
        body = sh.by_identifier(row["identifier"], matter_code=SH_MATTER)
        body["component"] = {"type_code": OPERATION}
        answer = await sh.query(body)
        assert (200, 21, []) == (answer.status, answer.cn_status, answer.body["licences"])
        body["component"] = {"type_code": MANNING}
        assert 0 == (await sh.query(body)).cn_status

    async def test_component_needs_the_document_identifier(
            self, start: Start, running: RunningFederation) -> None:
        """``component`` with a holder query, or malformed, is 400 / 12."""
        client = await start([combined_row(7)])
        sh = partner(client, running)
        body = sh.by_holder(ORG_HOLDER, SHIP_COMBINED, matter_code=SH_MATTER,
                            holder_code_type="001")
        body["component"] = {"type_code": NATIONALITY}
        assert (400, 12) == ((a := await sh.query(body)).status, a.cn_status)
        body = sh.by_identifier(combined_row(7)["identifier"], matter_code=SH_MATTER)
        body["component"] = {"type_code": NATIONALITY, "number": "x"}
        assert (400, 12) == ((a := await sh.query(body)).status, a.cn_status)

    async def test_whole_document_carries_component_status_entries(
            self, start: Start, running: RunningFederation) -> None:
        """The combined certificate asked for whole follows the profile: each component
        carries its own entry in Huzhou's status list."""
        row = combined_row(8, states={INSPECTION: "suspended"})
        client = await start([row])
        sh = partner(client, running)
        answer = await sh.query(sh.by_identifier(row["identifier"], matter_code=SH_MATTER))
        assert (200, 0) == (answer.status, answer.cn_status)
        parts = _payload(answer.body["licences"][0])["lic"]["components"]
        assert [c["identifier"] for c in row["components"]] == [c["identifier"] for c in parts]
        status = _payload(await (await client.get("/v1/status/licences")).text())
        assert all(c["status"]["status_list"]["uri"] == status["sub"] for c in parts)
        data = zlib.decompress(b64url_decode(status["status_list"]["lst"]))
        indices = [c["status"]["status_list"]["idx"] for c in parts]
        assert [0, 2, 0, 0] == [(data[i * 2 // 8] >> (i * 2 % 8)) & 3 for i in indices]

    async def test_component_of_an_expired_document_is_not_handed_out(
            self, start: Start, running: RunningFederation) -> None:
        """Components end with their document: past the document's valid_until, cn 22."""
        issued = china_today() - timedelta(days=800)
        row = combined_row(9)
        row.update(issue_date=issued.isoformat(), valid_from=issued.isoformat(),
                   valid_until=(issued + timedelta(days=700)).isoformat())
        for part in row["components"]:
            part.update(issue_date=row["issue_date"], valid_from=row["valid_from"],
                        valid_until=row["valid_until"])
        client = await start([row])
        sh = partner(client, running)
        body = sh.by_identifier(row["identifier"], matter_code=SH_MATTER)
        body["component"] = {"type_code": NATIONALITY}
        answer = await sh.query(body)
        assert (200, 22) == (answer.status, answer.cn_status)
