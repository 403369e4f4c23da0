"""The full federation: every delta city but Huzhou and the far partners, with key histories."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import hashes

from mocks import (
    COMPROMISED_REGION,
    FULL_REGIONS,
    HOME_REGION,
    KEYS_VALID_FROM,
    SM2_ALG,
    STANDARD_PARTNERS,
    Federation,
)
from tests.conftest import REPO

REFERENCE = REPO / "docs" / "reference"


@pytest.fixture(scope="module")
def full() -> Federation:
    """The full federation, seeded (built once: its keys are only read here)."""
    return Federation.full(seed=2026)


def _rows(name: str) -> list[dict[str, str]]:
    with (REFERENCE / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _anchors(federation: Federation, region_code: str) -> dict[str, dict[str, Any]]:
    entry = federation[region_code].trust_list_entry()
    return {anchor["kid"]: anchor for anchor in entry["anchors"]}


class TestRegions:
    """Who is in the full federation, and under which name and groups."""

    def test_table_is_the_reference_data(self) -> None:
        """The packaged table holds the reference CSVs' codes, names and G60 membership."""
        yrd = [(r["region_code"], r["name_zh"], ("yrd", "g60") if r["g60"] == "yes" else ("yrd",))
               for r in _rows("yrd_cities.csv")]
        far = [(r["region_code"], r["partner_zh"], ("kstb",)) for r in _rows("kstb_partners.csv")]
        assert 41 == len(yrd)
        assert [*yrd, *far] == [(s.region_code, s.name, s.groups) for s in FULL_REGIONS]

    def test_every_city_but_home_and_the_far_partners(self, full: Federation) -> None:
        """43 partners: the 41 delta cities without Huzhou, then 柯坪, 白山, 毕节."""
        expected = [s.region_code for s in FULL_REGIONS if s.region_code != HOME_REGION]
        assert (43, expected) == (len(full), list(full.codes))
        assert 44 == len(Federation.full(seed=1, home=None))

    def test_standard_partners_keep_their_keys(self, full: Federation) -> None:
        """With one seed, the eight standard partners have the same keys in both federations."""
        standard = Federation.standard(seed=2026)
        assert {s.region_code for s in STANDARD_PARTNERS} <= set(full.codes)
        for region in standard:
            assert region.public_jwk(region.licence_kid) == full[
                region.region_code].public_jwk(region.licence_kid)

    def test_each_region_has_its_own_root_and_sm2_where_it_signs_sm2(
            self, full: Federation) -> None:
        """Roots differ region by region; 毕节 and 白山 sign licences and status with SM2."""
        roots = {region.root_certificate.fingerprint(hashes.SHA256()) for region in full}
        assert len(full) == len(roots)
        sm2 = sorted(r.region_code for r in full if r.licence_alg == SM2_ALG)
        assert (["220600", "520500"], SM2_ALG) == (sm2, full["520500"].root_alg)

    def test_named(self) -> None:
        """``named`` builds either federation, and refuses any other name."""
        assert 8 == len(Federation.named("standard", seed=1))
        with pytest.raises(ValueError, match="no federation"):
            Federation.named("huge", seed=1)  # type: ignore[arg-type]


class TestKeyHistory:
    """Retired keys stay in the trust list, revoked the way each rotation left them."""

    def test_superseded_keys_in_every_region(self, full: Federation) -> None:
        """Every region lists lic-2022a, lic-2024a and status-2024a revoked as superseded
        (蚌埠's lic-2024a as compromised), beside its active 2026 keys, all of its algorithm."""
        for region in full:
            code = region.region_code
            anchors = _anchors(full, code)
            lic_2024 = (("key-compromise", "2025-09-01T00:00:00Z") if code == COMPROMISED_REGION
                        else ("superseded", "2026-01-01T00:00:00Z"))
            assert {
                f"{code}-lic-2022a": ("revoked", "superseded", "2024-01-01T00:00:00Z"),
                f"{code}-lic-2024a": ("revoked", *lic_2024),
                f"{code}-status-2024a": ("revoked", "superseded", "2026-01-01T00:00:00Z"),
                f"{code}-lic-2026a": ("active", None, None),
                f"{code}-status-2026a": ("active", None, None),
            } == {kid: (anchors[kid]["status"], anchors[kid]["revocation_reason"],
                        anchors[kid]["revoked_at"])
                  for kid in (f"{code}-lic-2022a", f"{code}-lic-2024a", f"{code}-status-2024a",
                              f"{code}-lic-2026a", f"{code}-status-2026a")}
            assert {region.licence_alg} == {
                anchors[kid]["jwk"]["alg"] for kid in anchors if "-lic-" in kid}

    def test_one_compromised_key(self, full: Federation) -> None:
        """One key of the federation is compromised, and its region rotated at once."""
        compromised = [k for k in full.retired if k.reason == "key-compromise"]
        assert [(COMPROMISED_REGION, f"{COMPROMISED_REGION}-lic-2024a")] == [
            (k.region_code, k.kid) for k in compromised]
        anchors = _anchors(full, COMPROMISED_REGION)
        at = compromised[0].retired_at
        assert "2025-09-01T00:00:00Z" == anchors[f"{COMPROMISED_REGION}-lic-2024a"]["revoked_at"]
        replacement = anchors[f"{COMPROMISED_REGION}-lic-2025a"]
        assert (at.strftime("%Y-%m-%dT%H:%M:%SZ"), "superseded") == (
            replacement["valid_from"], replacement["revocation_reason"])

    def test_retired_key_lookup(self, full: Federation) -> None:
        """``retired_key`` names a region's superseded and compromised licence keys."""
        superseded = full.retired_key("220600", "superseded")
        assert ("220600-lic-2022a", datetime(2024, 1, 1, tzinfo=UTC)) == (
            superseded.kid, superseded.retired_at)
        assert KEYS_VALID_FROM == full.retired[1].retired_at
        with pytest.raises(ValueError, match="retired no licence key"):
            full.retired_key("220600", "key-compromise")

    def test_default_licence_key_is_the_current_one(self, full: Federation) -> None:
        """A licence issued without a kid is signed with the 2026 key, whatever was retired."""
        assert "341800-lic-2026a" == full["341800"].issue().header["kid"]


class TestMain:
    """``python -m mocks --federation full`` starts quickly and serves every region."""

    def test_full_federation_runs_in_one_process(self, tmp_path: Path) -> None:
        """One process serves 43 regions and writes their trust list, within seconds."""
        trust_list = tmp_path / "trust.json"
        command = [sys.executable, "-m", "mocks", "--federation", "full", "--seed", "1",
                   "--trust-list-out", str(trust_list)]
        started = time.monotonic()
        with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True) as process:
            try:
                assert process.stdout is not None
                lines = [process.stdout.readline().strip() for _ in range(44)]
                elapsed = time.monotonic() - started
            finally:
                process.send_signal(signal.SIGTERM)
                code = process.wait(timeout=10)
        assert ("ready", 0) == (lines[-1], code)
        # About one second of CPU; the bound leaves room for a busy shared machine.
        assert elapsed < 20
        document = orjson.loads(trust_list.read_bytes())
        assert 43 == len(document["partners"])
        assert {line.split()[0] for line in lines[:-1]} == {
            p["region_code"] for p in document["partners"]}
        now = datetime.now(UTC)
        assert now - timedelta(minutes=5) < datetime.fromisoformat(document["issued_at"]) <= now
