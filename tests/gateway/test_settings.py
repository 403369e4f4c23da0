"""load_settings: one pure function from environment and TOML text to Settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import SettingsError, load_settings

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
        """Tables other than [gateway] are handed to their components."""
        toml = '[gateway]\ndata_dir = "/a"\n[registry]\ndir = "/r"\n'
        assert {"registry": {"dir": "/r"}} == dict(load_settings({}, toml).extra)

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
