"""load_settings: one pure function from environment and TOML text to Settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from gateway.settings import (
    AuditSettings,
    PartnerSettings,
    RateLimit,
    RegistrySettings,
    SettingsError,
    TrustListSettings,
    load_settings,
)

ROOT = Path(__file__).resolve().parents[2]


class TestLoadSettings:
    """Precedence, types and refusals."""

    def test_defaults_need_only_a_data_dir(self) -> None:
        """With only a data folder, the embedded defaults apply."""
        settings = load_settings({}, None, {"data_dir": "/srv/ecert"})
        assert Path("/srv/ecert") == settings.data_dir
        assert "127.0.0.1:8080" == settings.listen
        assert settings.redis_url is None
        assert settings.postgres_dsn is None

    def test_environment_overrides_file_and_options_override_both(self) -> None:
        """Options beat ECERT_* variables, which beat the settings file."""
        toml = '[gateway]\nlisten = "0.0.0.0:1"\nclock_skew_s = 5\ndata_dir = "/a"\n'
        env = {"ECERT_LISTEN": "127.0.0.1:2", "ECERT_CLOCK_SKEW_S": "7", "HOME": "/root"}
        settings = load_settings(env, toml, {"listen": "127.0.0.1:3"})
        assert "127.0.0.1:3" == settings.listen
        assert 7 == settings.clock_skew_s
        assert Path("/a") == settings.data_dir

    def test_component_sections_are_kept(self) -> None:
        """Tables other than [gateway] are handed to their components, typed."""
        toml = '[gateway]\ndata_dir = "/a"\n[registry]\ndir = "/r"\n'
        assert RegistrySettings(dir=Path("/r")) == load_settings({}, toml).registry

    def test_example_file_loads(self) -> None:
        """config/gateway.example.toml is a valid settings file."""
        text = (ROOT / "config" / "gateway.example.toml").read_text(encoding="utf-8")
        assert 0 == load_settings({}, text).clock_skew_s

    @pytest.mark.parametrize(("env", "toml", "message"), [
        ({}, None, "data_dir is required"),
        ({"ECERT_DATA_DIR": "/a", "ECERT_CLOCK_SKEW_S": "301"}, None, "clock_skew_s"),
        ({"ECERT_DATA_DIR": "/a", "ECERT_CLOCK_SKEW_S": "x"}, None, "integer"),
        ({"ECERT_DATA_DIR": "/a"}, "lisen = 'x'", "unknown setting 'lisen'"),
        ({"ECERT_DATA_DIR": "/a"}, "[gateway\n", "settings file"),
        ({"ECERT_DATA_DIR": "/a", "ECERT_LISTEN": "8080"}, None, "HOST:PORT"),
        ({"ECERT_DATA_DIR": "/a", "ECERT_MAX_BODY_BYTES": "100"}, None, "at least 1 MiB"),
        ({"ECERT_DATA_DIR": "/a", "ECERT_STATUS_RETRY_AFTER_S": "-1"}, None,
         "status_retry_after_s"),
        ({"ECERT_DATA_DIR": "/a", "ECERT_STATUS_RETRY_AFTER_S": "301"}, None,
         "status_retry_after_s"),
        ({"ECERT_DATA_DIR": "/a", "ECERT_LOG_LEVEL": "LOUD"}, None,
         "log_level: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ])
    def test_refusals_name_the_setting(self, env: dict[str, str], toml: str | None,
                                       message: str) -> None:
        """A missing, unknown or out-of-range setting is an error that names it."""
        with pytest.raises(SettingsError, match=message):
            load_settings(env, toml)


class TestPublicUrl:
    """``public_url``: the URL partners reach, from the file or ECERT_PUBLIC_URL; by default
    derived from ``listen``."""

    @pytest.mark.parametrize(("listen", "expected", "wildcard"), [
        ("127.0.0.1:8080", "http://127.0.0.1:8080", False),
        ("10.1.2.3:9000", "http://10.1.2.3:9000", False),
        ("[::1]:8443", "http://[::1]:8443", False),
        ("0.0.0.0:8080", "http://127.0.0.1:8080", True),
        ("[::]:8080", "http://[::1]:8080", True),
    ])
    def test_default_is_derived_from_listen(self, listen: str, expected: str,
                                            wildcard: bool) -> None:
        """Unset, the public URL is http:// + listen, a wildcard host read as loopback
        (and flagged, so that start-up warns)."""
        settings = load_settings({"ECERT_DATA_DIR": "/a", "ECERT_LISTEN": listen})
        assert settings.public_url is None
        assert expected == settings.public_base_url
        assert wildcard == settings.public_url_derived

    def test_file_then_environment(self) -> None:
        """The file's public_url is used; ECERT_PUBLIC_URL overrides it; a trailing slash
        is dropped and the scheme lower-cased."""
        toml = '[gateway]\ndata_dir = "/a"\npublic_url = "HTTPS://gw.huzhou.example/ecert/"\n'
        assert "https://gw.huzhou.example/ecert" == load_settings({}, toml).public_base_url
        env = {"ECERT_PUBLIC_URL": "https://ecert.huzhou.example:8443"}
        settings = load_settings(env, toml)
        assert "https://ecert.huzhou.example:8443" == settings.public_url
        assert "https://ecert.huzhou.example:8443" == settings.public_base_url
        assert not settings.public_url_derived

    def test_partner_section_key_is_still_read(self) -> None:
        """``[partner] public_url``, where earlier releases read it, still sets it; given
        in both places it must agree."""
        toml = '[gateway]\ndata_dir = "/a"\n[partner]\npublic_url = "https://gw.example/"\n'
        assert "https://gw.example" == load_settings({}, toml).public_base_url
        both = toml.replace('[partner]', 'public_url = "https://gw.example"\n[partner]')
        assert "https://gw.example" == load_settings({}, both).public_base_url
        with pytest.raises(SettingsError, match="differ"):
            load_settings({}, toml.replace('[partner]', 'public_url = "https://x.example"\n'
                                                        '[partner]'))

    @pytest.mark.parametrize("url", [
        "gw.huzhou.example", "ftp://gw.huzhou.example", "https://", "https:///ecert",
        "https://gw.example/?x=1", "https://gw.example/#f", "https://user:pw@gw.example",
        "https://gw.example:99999", "https://gw.example:0", "https://gw.example/a/../b",
        "https://gw.example/%2e%2e/b", "https://gw ex.example", "https://gw.example/\tx",
        "https://gw.example\\x",
    ])
    def test_refused(self, url: str) -> None:
        """Anything but an absolute http(s) base URL with a host is refused by name."""
        with pytest.raises(SettingsError, match="public_url"):
            load_settings({"ECERT_DATA_DIR": "/a", "ECERT_PUBLIC_URL": url})


def test_log_level_in_any_case() -> None:
    """``debug`` is taken as ``DEBUG``, as the logging set-up always took it."""
    settings = load_settings({"ECERT_LOG_LEVEL": " debug"}, None, {"data_dir": "/a"})
    assert "DEBUG" == settings.log_level


JWK = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
       "kid": "320500-tl-1"}


class TestSections:
    """Each feature's table is one typed, frozen object, checked when the settings load."""

    def test_defaults(self) -> None:
        """Without tables, every section has its defaults."""
        settings = load_settings({}, None, {"data_dir": "/a"})
        expected = (RegistrySettings(), AuditSettings(), TrustListSettings(), PartnerSettings())
        assert expected == (settings.registry, settings.audit, settings.admin,
                            settings.partner)

    def test_file(self) -> None:
        """Every section key from the file, with its type; a rate limit's missing key takes
        the gateway-wide value."""
        toml = """
data_dir = "/a"
partner_rate_per_s = 7.5
[registry]
dir = "/srv/registry"
[audit]
origin = "huzhou.example/audit"
[admin]
expiry_alert_days = 60
[[admin.trust_list_signers]]
kty = "OKP"
crv = "Ed25519"
x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
kid = "320500-tl-1"
[partner.rate_limits]
"310000" = {per_s = 50, burst = 100}
"320500" = {burst = 3}
"""
        settings = load_settings({}, toml)
        assert RegistrySettings(dir=Path("/srv/registry")) == settings.registry
        assert AuditSettings(origin="huzhou.example/audit") == settings.audit
        assert TrustListSettings(expiry_alert_days=60, trust_list_signers=(JWK,)) \
            == settings.admin
        assert {"310000": RateLimit(per_s=50.0, burst=100),
                "320500": RateLimit(per_s=7.5, burst=3)} == settings.partner.rate_limits

    def test_environment_overrides_the_file(self) -> None:
        """``ECERT_<TABLE>_<KEY>`` sets a section's one-value key, over the file."""
        toml = '[registry]\ndir = "/file"\n[admin]\nexpiry_alert_days = 60\n'
        env = {"ECERT_DATA_DIR": "/a", "ECERT_REGISTRY_DIR": "/env",
               "ECERT_AUDIT_ORIGIN": "o.example/audit", "ECERT_ADMIN_EXPIRY_ALERT_DAYS": "7"}
        settings = load_settings(env, toml)
        assert (Path("/env"), "o.example/audit", 7) == (
            settings.registry.dir, settings.audit.origin, settings.admin.expiry_alert_days)

    def test_sections_are_frozen(self) -> None:
        """A section cannot be changed once loaded."""
        settings = load_settings({}, '[audit]\norigin = "x"\n', {"data_dir": "/a"})
        with pytest.raises(AttributeError):
            settings.audit.origin = "y"  # type: ignore[misc]

    @pytest.mark.parametrize(("env", "toml", "message"), [
        ({}, "[registy]\ndir = '/r'\n", r"unknown table \[registy\]"),
        ({}, "[registry]\ndri = '/r'\n", "unknown setting 'registry.dri'"),
        ({}, "[registry]\ndir = 5\n", "registry.dir: expected a string, got 5"),
        ({}, "[audit]\norigin = true\n", "audit.origin: expected a string, got True"),
        ({}, "[admin]\nexpiry_alert_days = '30'\n",
         "admin.expiry_alert_days: expected an integer, got '30'"),
        ({"ECERT_ADMIN_EXPIRY_ALERT_DAYS": "soon"}, None,
         "admin.expiry_alert_days: expected an integer, got 'soon'"),
        ({}, "[admin]\nexpiry_alert_days = 5000\n", "admin.expiry_alert_days"),
        ({}, "[admin]\ntrust_list_signers = 'k'\n", "admin.trust_list_signers: expected"),
        ({}, "[[admin.trust_list_signers]]\nkty = 'OKP'\n",
         r"admin.trust_list_signers\[0\]: a JWK needs a kid"),
        ({}, "[partner.rate_limits]\n'310000' = {per_s = 'fast'}\n",
         "partner.rate_limits.310000.per_s: expected a number, got 'fast'"),
        ({}, "[partner.rate_limits]\n'310000' = {burst = 1.5}\n",
         "partner.rate_limits.310000.burst: expected an integer"),
        ({}, "[partner.rate_limits]\n'310000' = {rate = 5}\n",
         "unknown setting 'partner.rate_limits.310000.rate'"),
        ({}, "[partner.rate_limits]\n'31000' = {per_s = 5}\n",
         "partner.rate_limits.31000: a region code is six digits"),
        ({}, "[partner.rate_limits]\n'310000' = {per_s = 0}\n",
         "partner.rate_limits.310000: per_s must be positive"),
        ({}, "[partner]\nrate_limits = 5\n", "partner.rate_limits: expected a table"),
        ({}, "registry = 5\n", "registry must be a table"),
    ])
    def test_refusals_name_the_key(self, env: dict[str, str], toml: str | None,
                                   message: str) -> None:
        """An unknown table or key, or a value of the wrong type, is refused by name; before,
        each was read ad hoc and a wrong type fell back to the default (or failed later,
        at start-up, without the key's name)."""
        with pytest.raises(SettingsError, match=message):
            load_settings({"ECERT_DATA_DIR": "/a", **env}, toml)


class TestTypes:
    """The file's values must have their setting's type; the environment's are text."""

    @pytest.mark.parametrize(("toml", "message"), [
        ("clock_skew_s = '5'", "clock_skew_s: expected an integer, got '5'"),
        ("cache_enabled = 'yes'", "cache_enabled: expected a boolean, got 'yes'"),
        ("status_fetch_timeout_s = 'slow'", "status_fetch_timeout_s: expected a number"),
        ("redis_url = 6379", "redis_url: expected a string, got 6379"),
        ("approvals_required = 1.5", "approvals_required: expected an integer, got 1.5"),
        ("partner_rate_burst = 0", "partner_rate_burst at least 1"),
    ])
    def test_wrong_type_in_the_file(self, toml: str, message: str) -> None:
        """A quoted number or a number where a string belongs is named, not coerced."""
        with pytest.raises(SettingsError, match=message):
            load_settings({"ECERT_DATA_DIR": "/a"}, toml)

    def test_environment_text_is_parsed(self) -> None:
        """``ECERT_*`` values are text, read as the setting's type; an integer where a
        number belongs is taken."""
        env = {"ECERT_DATA_DIR": "/a", "ECERT_CACHE_ENABLED": "off",
               "ECERT_STATUS_FETCH_TIMEOUT_S": "2", "ECERT_REDIS_URL": ""}
        settings = load_settings(env, "status_retry_after_s = 1\n")
        assert (False, 2.0, 1.0, None) == (settings.cache_enabled,
                                           settings.status_fetch_timeout_s,
                                           settings.status_retry_after_s, settings.redis_url)

    def test_a_key_given_twice_is_refused(self) -> None:
        """At the top of the file and again in ``[gateway]``: which one counts is unclear."""
        with pytest.raises(SettingsError, match="listen is given twice"):
            load_settings({}, 'listen = "127.0.0.1:1"\n[gateway]\nlisten = "127.0.0.1:2"\n'
                              'data_dir = "/a"\n')


class TestWitnessPolicy:
    """``[witness]``: witnesses by name, vkey and URL, k of n, partner logs; validated."""

    @staticmethod
    def _toml(k: int = 2, name: str | None = None, vkey: str | None = None,
              extra: str = "") -> str:
        from mocks import MockLog, MockWitness

        witnesses = [MockWitness(f"w{i}.example/witness", seed=i) for i in range(3)]
        log = MockLog("partner.example/log", seed=1)
        text = f"[witness]\nk = {k}\n{extra}"
        for i, w in enumerate(witnesses):
            text += (f'[[witness.witnesses]]\nname = "{name if i == 0 and name else w.name}"'
                     f'\nvkey = "{vkey if i == 0 and vkey else w.vkey}"\n'
                     f'url = "http://127.0.0.1:{9000 + i}/witness/add-checkpoint"\n')
        return text + (f'[[witness.logs]]\norigin = "{log.origin}"\n'
                       f'vkey = "{log.vkey}"\n')

    def test_policy_loads(self, tmp_path: Path) -> None:
        """Three witnesses, k = 2 and one partner log are read as given."""
        settings = load_settings({}, self._toml(), {"data_dir": tmp_path})
        assert 2 == settings.witness.k
        assert ["w0.example/witness", "w1.example/witness", "w2.example/witness"] == [
            w.name for w in settings.witness.witnesses]
        assert ("partner.example/log",) == tuple(log.origin for log in settings.witness.logs)

    @pytest.mark.parametrize(("kwargs", "message"), [
        ({"k": 4}, "witness.k must be between 1 and the 3"),
        ({"k": 0}, "witness.k must be between 1 and the 3"),
        ({"name": "other/witness"}, "the vkey is of 'w0.example/witness'"),
        ({"vkey": "w0.example/witness+00000000+AAAA"}, "witness.witnesses[0].vkey"),
        ({"extra": "interval_s = 0\n"}, "witness.interval_s"),
        ({"extra": "colour = 1\n"}, "unknown setting 'witness.colour'"),
    ])
    def test_bad_policies_refused(self, tmp_path: Path, kwargs: dict[str, Any],
                                  message: str) -> None:
        """k outside 1..n, a vkey of another name or malformed, a bad interval, a typo."""
        with pytest.raises(SettingsError, match=re.escape(message)):
            load_settings({}, self._toml(**kwargs), {"data_dir": tmp_path})
