"""The matter registry in the gateway: the MatterResolver port and the /v1/matters routes."""

# STYLE.md: tests assert `expected == actual`, expected first

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.audit.event import EventType
from gateway.credentials.store import IdentityKind, add_identity
from gateway.matters.routes import setup
from gateway.matters.service import (
    DEFAULT_REGISTRY_DIR,
    MatterService,
    china_today,
    load_service,
    read_registry_files,
)
from gateway.settings import load_settings
from gateway.verification.service import MatterLink, MatterResolver
from gateway.web.app import create_app
from gateway.web.appkeys import REGISTRY_KEY
from registry import LoadError
from tests.fakes import MemoryAudit
from tests.gateway.conftest import metric_value, scrape_metrics
from trust import CHINA_TZ

AT = "2025-03-01"
SH_MAP = "urn:ecert:map:310000-national|2024.1"
HZ_MAP = "urn:ecert:map:330500-national|2024.1"
G60_MAP = "urn:ecert:map:330500-340100|2024.1"
HF_MAP = "urn:ecert:map:340100-national|2024.1"

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
def audit() -> MemoryAudit:
    """The audit double the app writes to."""
    return MemoryAudit()


@pytest.fixture
def token(tmp_path: Path) -> str:
    """A local system's API key (made outside the event loop, as the CLI would)."""
    return add_identity(tmp_path, IdentityKind.CLIENT, "window-01")


def _wired(app: web.Application) -> bool:
    return any(r.resource is not None and r.resource.canonical == "/v1/matters/translate"
               for r in app.router.routes())


@pytest.fixture
def app(tmp_path: Path, audit: MemoryAudit) -> web.Application:
    """The gateway app with the matter registry wired in (by create_app or here)."""
    settings = load_settings({}, None, {"data_dir": tmp_path})
    application = create_app(settings, audit=audit)
    if not _wired(application):
        setup(application)
    return application


@pytest.fixture
async def client(app: web.Application, aiohttp_client: ClientFactory) -> Client:
    """A test client of the app."""
    return await aiohttp_client(app)


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    """The Authorization header of window-01."""
    return {"Authorization": f"Bearer {token}"}


def _req(region: str, code: str, target: str, *, at: str | None = AT,
         conditions: dict[str, str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"source": {"region": region, "code": code}, "target_region": target}
    if at is not None:
        body["at"] = at
    if conditions is not None:
        body["conditions"] = conditions
    return body


async def _translate(client: Client, auth: dict[str, str], body: object,
                     status: int = 200) -> dict[str, Any]:
    resp = await client.post("/v1/matters/translate", json=body, headers=auth)
    assert status == resp.status, await resp.text()
    answer: dict[str, Any] = await resp.json(content_type=None)
    return answer


# ------------------------------------------------------------------ the resolver port


@pytest.fixture(scope="module")
def service() -> MatterService:
    """The sample registry with today fixed at 2025-03-01."""
    files = read_registry_files(DEFAULT_REGISTRY_DIR)
    built, report = MatterService.from_files(
        files, clock=lambda: datetime(2025, 3, 1, 12, tzinfo=CHINA_TZ))
    assert report.ok, str(report)
    return built


def test_today_on_the_system_clock_is_the_day_in_china(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the system clock ``today`` keeps the day with its bounds: it turns at midnight
    in China (16:00 UTC), and a clock set back is followed."""
    files = read_registry_files(DEFAULT_REGISTRY_DIR)
    built, _ = MatterService.from_files(files)
    moments = [datetime(2026, 3, 1, 15, 59, 59, 999_000, tzinfo=UTC),
               datetime(2026, 3, 1, 16, tzinfo=UTC), datetime(2026, 3, 2, 15, 59, tzinfo=UTC),
               datetime(2026, 2, 27, 23, tzinfo=UTC), datetime(2026, 3, 1, 16, tzinfo=UTC)]
    seen = []
    for moment in moments:
        monkeypatch.setattr("gateway.matters.service.time.time", moment.timestamp)
        seen.append(built.today().isoformat())
    assert ["2026-03-01", "2026-03-02", "2026-03-02", "2026-02-28", "2026-03-02"] == seen


class TestResolver:
    """MatterService as verification's MatterResolver."""

    def test_is_a_matter_resolver(self, service: MatterService) -> None:
        """The service fits the port VerificationService takes as ``matters=``."""
        resolver: MatterResolver = service
        assert resolver is service

    def test_partner_codes_include_the_code_and_its_translations(
            self, service: MatterService) -> None:
        """A Huzhou matter stands for itself and its equivalent in Hefei."""
        expected = frozenset({"许可-00906-001", "AH-3401-XK00101"})
        assert expected == service.partner_codes("330500", "许可-00906-001", "340100")

    def test_partner_codes_of_unknown_region_is_the_code_alone(
            self, service: MatterService) -> None:
        """A region the registry lacks never raises: the code stands for itself."""
        assert frozenset({"X-1"}) == service.partner_codes("330500", "X-1", "999999")

    def test_huzhou_matters_of_a_licence(self, service: MatterService) -> None:
        """A Shanghai licence's matter chains to Huzhou; junk codes add nothing."""
        expected = [MatterLink("330500", "公共服务-00901-001", "equivalent",
                               f"{SH_MAP} {HZ_MAP}")]
        assert expected == service.huzhou_matters("310000", ["310000-20-SFJ-0001", "junk"])

    def test_huzhou_matters_of_unknown_issuer_is_empty(self, service: MatterService) -> None:
        """An issuer region without a catalogue yields nothing, not an exception."""
        assert [] == service.huzhou_matters("999999", ["310000-20-SFJ-0001"])


class TestLoading:
    """Where the registry is read from at start-up."""

    async def test_configured_folder_replaces_the_default(self, tmp_path: Path) -> None:
        """``[registry] dir`` names the base folder; only its files load."""
        base = tmp_path / "reg"
        base.mkdir()
        for name in ("330500-matters.codesystem.json", "310000-matters.codesystem.json"):
            shutil.copy(DEFAULT_REGISTRY_DIR / "catalogues" / name, base / name)
        settings = load_settings({}, f'[registry]\ndir = "{base}"\n',
                                 {"data_dir": tmp_path / "data"})
        loaded = await load_service(settings)
        assert ["310000"] == loaded.partner_regions()

    async def test_a_broken_file_stops_start_up(self, tmp_path: Path) -> None:
        """A registry with problems raises LoadError rather than serving part of it."""
        overlay = tmp_path / "registry"
        overlay.mkdir()
        (overlay / "broken.json").write_bytes(b"{not json")
        with pytest.raises(LoadError):
            await load_service(load_settings({}, None, {"data_dir": tmp_path}))


# ------------------------------------------------------------------ translate


class TestTranslate:
    """POST /v1/matters/translate."""

    async def test_direct_map(self, client: Client, auth: dict[str, str]) -> None:
        """Huzhou to Hefei uses the G60 crosswalk directly."""
        answer = await _translate(client, auth, _req("330500", "许可-00906-001", "340100"))
        expected = {"result": True, "at": AT, "matches": [{
            "code": "AH-3401-XK00101", "name": "内资企业设立登记", "relationship": "equivalent",
            "path": ["330500:许可-00906-001", "340100:AH-3401-XK00101"], "maps": [G60_MAP]}]}
        assert expected == answer

    async def test_chain_through_national(self, client: Client, auth: dict[str, str]) -> None:
        """Shanghai to Huzhou goes through the national basic code, both maps listed."""
        answer = await _translate(client, auth, _req("310000", "310000-20-SFJ-0001", "330500"))
        match = answer["matches"][0]
        expected = (True, "公共服务-00901-001", "equivalent",
                    ["310000:310000-20-SFJ-0001", "national:002090001000",
                     "330500:公共服务-00901-001"], [SH_MAP, HZ_MAP])
        assert expected == (answer["result"], match["code"], match["relationship"],
                            match["path"], match["maps"])

    @pytest.mark.parametrize(("conditions", "expected"), [
        (None, [("310000-01-SCJ-0002", {"applicant_type": "person"})]),
        ({"applicant_type": "person"}, [("310000-01-SCJ-0002", {"applicant_type": "person"})]),
        ({"applicant_type": "enterprise"}, []),
    ])
    async def test_conditions(self, client: Client, auth: dict[str, str],
                              conditions: dict[str, str] | None,
                              expected: list[tuple[str, dict[str, str]]]) -> None:
        """The applicant type selects the target; unstated, the match names its condition."""
        answer = await _translate(client, auth, _req("330500", "许可-00906-002", "310000",
                                                     conditions=conditions))
        assert expected == [(m["code"], m.get("depends_on")) for m in answer["matches"]]

    async def test_reverse_use_of_unreviewed_map_is_refused(
            self, client: Client, auth: dict[str, str]) -> None:
        """Hefei's map to national is not read backwards; the message names it."""
        answer = await _translate(client, auth, _req("330500", "确认-00907-001", "340100"))
        expected: tuple[object, ...] = (False, [], True, True)
        assert expected == (answer["result"], answer["matches"], HF_MAP in answer["message"],
                            "not reviewed for reverse use" in answer["message"])

    @pytest.mark.parametrize(("at", "result"), [("2024-06-30", False), ("2024-07-01", True)])
    async def test_at_selects_valid_rows(self, client: Client, auth: dict[str, str], at: str,
                                         result: bool) -> None:
        """A crosswalk row valid from 2024-07-01 is not used the day before."""
        answer = await _translate(client, auth, _req("330500", "公共服务-00902-001", "340100",
                                                     at=at))
        assert result == answer["result"]

    async def test_at_defaults_to_today_in_china(self, client: Client,
                                                 auth: dict[str, str]) -> None:
        """Without ``at`` the translation is made for today's date in UTC+8."""
        answer = await _translate(client, auth, _req("330500", "许可-00906-001", "340100",
                                                     at=None))
        assert china_today().isoformat() == answer["at"]

    async def test_unknown_code_is_counted_untranslated(
            self, client: Client, auth: dict[str, str], audit: MemoryAudit) -> None:
        """A well-shaped code the catalogue lacks is result false, counted as refused on
        /metrics, and not audited (a translation on its own is a catalogue look-up)."""
        answer = await _translate(client, auth, _req("310000", "310000-20-SFJ-9999", "330500"))
        metrics = await scrape_metrics(client)
        assert (False, [], 1.0, None) == (
            answer["result"], audit.of(EventType.TRANSLATION),
            metric_value(metrics, "ecert_translations_total", outcome="refused"),
            metric_value(metrics, "ecert_translations_total", outcome="ok"))

    async def test_wrong_shape_is_400(self, client: Client, auth: dict[str, str],
                                      audit: MemoryAudit) -> None:
        """A code not of Shanghai's scheme is a 400 naming the scheme; nothing is audited;
        /metrics counts it invalid."""
        resp = await client.post("/v1/matters/translate", json=_req("310000", "bad", "330500"),
                                 headers=auth)
        body = await resp.json(content_type=None)
        expected: tuple[object, ...] = (400, "application/problem+json", "sh-item", True, [])
        assert expected == (resp.status, resp.content_type, body["scheme"],
                            "is not a valid sh-item code" in body["detail"],
                            audit.of(EventType.TRANSLATION))
        assert 1.0 == metric_value(await scrape_metrics(client), "ecert_translations_total",
                                   outcome="invalid")

    @pytest.mark.parametrize(("source", "target"), [("999999", "330500"), ("310000", "999999")])
    async def test_unknown_region_is_404(self, client: Client, auth: dict[str, str],
                                         source: str, target: str) -> None:
        """A source or target region without a catalogue is a 404 problem."""
        body = await _translate(client, auth, _req(source, "310000-20-SFJ-0001", target),
                                status=404)
        assert "999999" == body["region"]

    async def test_bad_json_is_400(self, client: Client, auth: dict[str, str]) -> None:
        """A body declared JSON that is not JSON is a 400 problem, not a 500."""
        resp = await client.post("/v1/matters/translate", data=b"{nope",
                                 headers={**auth, "Content-Type": "application/json"})
        body = await resp.json(content_type=None)
        assert (400, "Bad request") == (resp.status, body["title"])

    @pytest.mark.parametrize("content_type", [
        None, "text/plain", "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x", "application/jsonx"])
    @pytest.mark.parametrize("path", ["/v1/matters/translate", "/v1/matters/translate/batch",
                                      "/v1/verifications", "/v1/verifications/batch"])
    async def test_body_not_declared_json_is_415(self, client: Client, auth: dict[str, str],
                                                 path: str, content_type: str | None) -> None:
        """A JSON body sent under another media type is refused 415 with a problem body."""
        headers = dict(auth)
        if content_type is not None:
            headers["Content-Type"] = content_type
        resp = await client.post(path, data=b'{"items": []}', headers=headers)
        body = await resp.json(content_type=None)
        assert (415, "application/problem+json") == (resp.status, resp.content_type)
        assert "application/json" in body["detail"]
        assert "application/json" == resp.headers["Accept-Post"]

    @pytest.mark.parametrize("content_type", ["application/json; charset=utf-8",
                                              "Application/JSON", "application/fhir+json"])
    async def test_json_media_types_are_taken(self, client: Client, auth: dict[str, str],
                                              content_type: str) -> None:
        """application/json with parameters, in any case, and +json types (RFC 6839) are JSON."""
        resp = await client.post("/v1/matters/translate", data=b"{nope",
                                 headers={**auth, "Content-Type": content_type})
        assert 400 == resp.status

    @pytest.mark.parametrize("body", [
        [], {"target_region": "330500"},
        {"source": {"region": "310000"}, "target_region": "330500"},
        {"source": {"region": 310000, "code": "x"}, "target_region": "330500"},
        {"source": {"region": "310000", "code": "x"}},
        _req("310000", "310000-20-SFJ-0001", "330500", at="2025-02-30"),
        _req("310000", "310000-20-SFJ-0001", "330500", at="20250301"),
        {**_req("310000", "310000-20-SFJ-0001", "330500"), "conditions": ["a"]},
        {**_req("310000", "310000-20-SFJ-0001", "330500"), "conditions": {"a": 1}},
    ])
    async def test_malformed_request_is_400(self, client: Client, auth: dict[str, str],
                                            body: object) -> None:
        """Every malformed request shape is a 400 problem body."""
        answer = await _translate(client, auth, body, status=400)
        assert "bad-request" == answer["type"].rsplit("/", 1)[1]

    @pytest.mark.parametrize("header", [None, "Bearer not-a-key", "Basic abc"])
    async def test_missing_or_wrong_credential_is_401(
            self, client: Client, header: str | None) -> None:
        """Without a local system's key the answer is 401."""
        headers = {} if header is None else {"Authorization": header}
        resp = await client.post("/v1/matters/translate",
                                 json=_req("330500", "许可-00906-001", "340100"), headers=headers)
        assert 401 == resp.status

    async def test_translation_does_not_depend_on_the_audit_log(
            self, client: Client, auth: dict[str, str], audit: MemoryAudit) -> None:
        """A translation on its own writes no audit record, so a failing audit log does not
        stop it (before, it was a 503: every call was audited)."""
        audit.failing = True
        resp = await client.post("/v1/matters/translate",
                                 json=_req("330500", "许可-00906-001", "340100"), headers=auth)
        assert (200, []) == (resp.status, audit.of(EventType.TRANSLATION))


class TestCounted:
    """A translation on its own is a look-up of public catalogues: counted on /metrics by
    outcome, never audited per call (verifications and partner queries audit the
    translations they make, in ``matters_after``)."""

    async def test_translation_is_counted_not_audited(
            self, client: Client, auth: dict[str, str], audit: MemoryAudit) -> None:
        """The answer names the matches and the maps; no audit record is written; /metrics
        counts one ``ok`` translation."""
        answer = await _translate(client, auth, _req("310000", "310000-20-GJJ-0001", "330500"))
        metrics = await scrape_metrics(client)
        expected: tuple[object, ...] = (
            True, ["公共服务-00904-001", "公共服务-00904-002"], [SH_MAP, HZ_MAP], [], 1.0)
        actual = (answer["result"], [m["code"] for m in answer["matches"]],
                  answer["matches"][0]["maps"], audit.of(EventType.TRANSLATION),
                  metric_value(metrics, "ecert_translations_total", outcome="ok"))
        assert expected == actual

    async def test_request_id_is_echoed_and_nothing_recorded(
            self, client: Client, auth: dict[str, str], audit: MemoryAudit) -> None:
        """The caller's X-Request-Id comes back on the answer; no record carries it."""
        resp = await client.post("/v1/matters/translate",
                                 json=_req("330500", "许可-00906-001", "340100"),
                                 headers={**auth, "X-Request-Id": "req-42"})
        assert ("req-42", []) == (resp.headers["X-Request-Id"], audit.of(EventType.TRANSLATION))

    @pytest.mark.parametrize("path", ["/v1/matters/translate", "/v1/matters/translate/batch"])
    async def test_made_at_the_apps_clock(
            self, path: str, tmp_path: Path, audit: MemoryAudit, auth: dict[str, str],
            aiohttp_client: ClientFactory) -> None:
        """Without ``at`` a translation is for the app clock's day in Huzhou (before, the
        system clock's); it is counted, and no record is written."""
        received = datetime(2025, 2, 28, 20, 0, tzinfo=UTC)  # 2025-03-01 04:00 in Huzhou
        settings = load_settings({}, None, {"data_dir": tmp_path})
        client = await aiohttp_client(create_app(settings, audit=audit,
                                                 clock=lambda: received))
        body = _req("330500", "许可-00906-001", "340100", at=None)
        batch = path.endswith("batch")
        resp = await client.post(path, json={"items": [body]} if batch else body, headers=auth)
        answer = await resp.json()
        assert "2025-03-01" == (answer["results"][0] if batch else answer)["at"]
        assert [] == audit.of(EventType.TRANSLATION)
        assert 1.0 == metric_value(await scrape_metrics(client), "ecert_translations_total",
                                   outcome="ok")


    async def test_an_answer_asked_again_is_the_same_and_counted_again(
            self, tmp_path: Path, audit: MemoryAudit, auth: dict[str, str],
            aiohttp_client: ClientFactory) -> None:
        """A body asked again is answered with the same bytes (rendered once that day) and
        counted each time; on the next day in Huzhou the same body (no ``at``) is made
        for that day; a refused code is kept as refused, a malformed body and a code of the
        wrong shape are never kept (each is refused, and counted, every time)."""
        now = [datetime(2025, 2, 28, 15, 0, tzinfo=UTC)]  # 2025-02-28 23:00 in Huzhou
        settings = load_settings({}, None, {"data_dir": tmp_path})
        app = create_app(settings, audit=audit, clock=lambda: now[0])
        client = await aiohttp_client(app)
        body = _req("330500", "许可-00906-001", "340100", at=None)
        refused = _req("310000", "310000-20-SFJ-9999", "330500")

        async def ask(sent: object) -> tuple[int, bytes]:
            resp = await client.post("/v1/matters/translate", json=sent, headers=auth)
            return resp.status, await resp.read()

        first, second = await ask(body), await ask(body)
        assert (200, first[1]) == second
        assert "2025-02-28" == orjson.loads(first[1])["at"]
        now[0] = datetime(2025, 2, 28, 16, 30, tzinfo=UTC)  # 00:30 on 03-01 in Huzhou
        third = await ask(body)
        assert "2025-03-01" == orjson.loads(third[1])["at"]
        for _ in range(2):
            assert 200 == (await ask(refused))[0]
            assert 400 == (await ask({"source": "x"}))[0]
            assert 400 == (await ask(_req("310000", "bad", "330500")))[0]
        metrics = await scrape_metrics(client)
        assert (3.0, 2.0, 2.0) == tuple(
            metric_value(metrics, "ecert_translations_total", outcome=o)
            for o in ("ok", "refused", "invalid"))
        assert [] == audit.of(EventType.TRANSLATION)
        kept = app[REGISTRY_KEY].answers
        assert [("ok", third[1])] == [v for k, v in kept.items() if b"9999" not in k[0]]
        padded = {**body, "note": "x" * 2000}  # an ignored member: answered, never kept
        assert (200, third[1]) == await ask(padded)
        assert [] == [k for k in kept if b"xxxx" in k[0]]


# ------------------------------------------------------------------ batch


class TestBatch:
    """POST /v1/matters/translate/batch."""

    async def test_results_keep_order_and_each_is_counted(
            self, client: Client, auth: dict[str, str], audit: MemoryAudit) -> None:
        """Answers come back in request order; /metrics counts each item by outcome; no
        audit record is written."""
        items = [_req("310000", "310000-20-SFJ-0001", "330500"),
                 _req("330500", "许可-00906-001", "340100"),
                 _req("310000", "310000-20-SFJ-9999", "330500")]
        resp = await client.post("/v1/matters/translate/batch", json={"items": items},
                                 headers=auth)
        body = await resp.json()
        metrics = await scrape_metrics(client)
        expected: tuple[object, ...] = (
            [True, True, False], [["公共服务-00901-001"], ["AH-3401-XK00101"], []], [], 2.0, 1.0)
        actual = ([r["result"] for r in body["results"]],
                  [[m["code"] for m in r["matches"]] for r in body["results"]],
                  audit.of(EventType.TRANSLATION),
                  metric_value(metrics, "ecert_translations_total", outcome="ok"),
                  metric_value(metrics, "ecert_translations_total", outcome="refused"))
        assert expected == actual

    async def test_one_bad_item_refuses_the_batch(
            self, client: Client, auth: dict[str, str], audit: MemoryAudit) -> None:
        """A wrong-shaped code in item 1 is a 400 naming it; nothing is answered or audited,
        and /metrics counts no translation but the invalid one."""
        items = [_req("310000", "310000-20-SFJ-0001", "330500"),
                 _req("310000", "bad", "330500")]
        resp = await client.post("/v1/matters/translate/batch", json={"items": items},
                                 headers=auth)
        body = await resp.json(content_type=None)
        assert (400, True, []) == (resp.status, body["detail"].startswith("items[1]: "),
                                   audit.of(EventType.TRANSLATION))
        metrics = await scrape_metrics(client)
        assert (None, 1.0) == (metric_value(metrics, "ecert_translations_total", outcome="ok"),
                               metric_value(metrics, "ecert_translations_total",
                                            outcome="invalid"))

    @pytest.mark.parametrize("body", [{}, {"items": {}}, [1], {"items": [1]}])
    async def test_malformed_batch_is_400(self, client: Client, auth: dict[str, str],
                                          body: object) -> None:
        """A batch body without a list of request objects is a 400 problem."""
        resp = await client.post("/v1/matters/translate/batch", json=body, headers=auth)
        assert 400 == resp.status


# ------------------------------------------------------------------ reading


class TestCatalogues:
    """GET /v1/catalogues, /v1/catalogues/coverage and /v1/matters/{region}/{code}."""

    async def test_catalogue_list(self, client: Client, auth: dict[str, str]) -> None:
        """Each catalogue version is listed with its scheme, validity and code count."""
        resp = await client.get("/v1/catalogues", headers=auth)
        body = await resp.json()
        huzhou = next(c for c in body["catalogues"]
                      if c["region"] == "330500" and c["kind"] == "matter")
        expected = {"region": "330500", "kind": "matter",
                    "url": "urn:ecert:catalogue:330500:matter", "version": "2024.1",
                    "scheme": "zj-power-basic", "valid_from": "2024-01-01",
                    "valid_until": None, "code_count": 30}
        assert expected == {k: v for k, v in huzhou.items() if k != "title"}

    async def test_coverage_numbers(self, client: Client, auth: dict[str, str]) -> None:
        """Huzhou's 13 跨省通办 matters counted by best match in each partner's catalogue."""
        resp = await client.get("/v1/catalogues/coverage", params={"at": AT}, headers=auth)
        body = await resp.json()
        expected = {"310000": (13, 5, 7, 1, 0), "330100": (13, 12, 1, 0, 0),
                    "340100": (13, 4, 2, 1, 6), "520500": (13, 2, 5, 1, 5)}
        assert expected == {p["partner"]: (p["total"], p["equivalent"],
                                           p["narrower_or_broader"], p["related"], p["none"])
                            for p in body["partners"]}

    async def test_coverage_bad_date_is_400(self, client: Client, auth: dict[str, str]) -> None:
        """A malformed ``at`` is a 400 problem."""
        resp = await client.get("/v1/catalogues/coverage", params={"at": "soon"}, headers=auth)
        assert 400 == resp.status

    async def test_matter_details(self, client: Client, auth: dict[str, str]) -> None:
        """A Huzhou matter's name, parts and flags."""
        resp = await client.get("/v1/matters/330500/许可-00906-001", headers=auth)
        body = await resp.json()
        expected = ("内资企业及分支机构设立登记", {"category": "许可", "main": "00906",
                                                    "sub": "001"}, True, True)
        assert expected == (body["name"], body["parts"], body["cross_province"],
                            body["illustrative"])

    @pytest.mark.parametrize(("path", "status"), [
        ("/v1/matters/330500/许可-99999-001", 404),
        ("/v1/matters/999999/许可-00906-001", 404),
        ("/v1/matters/330500/nonsense", 400),
    ])
    async def test_matter_lookup_failures(self, client: Client, auth: dict[str, str],
                                          path: str, status: int) -> None:
        """Unknown code or region is 404, a code of the wrong shape 400."""
        resp = await client.get(path, headers=auth)
        assert (status, "application/problem+json") == (resp.status, resp.content_type)

    async def test_reading_needs_a_key(self, client: Client) -> None:
        """The catalogue list is for authenticated local systems."""
        resp = await client.get("/v1/catalogues")
        assert 401 == resp.status

    async def test_registry_is_in_the_app(self, client: Client) -> None:
        """The loaded service sits under REGISTRY_KEY."""
        app = client.app
        assert app is not None
        assert "330500" == app[REGISTRY_KEY].huzhou_region
