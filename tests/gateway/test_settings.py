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
        ({"ECERT_DATA_DIR": "/a", "ECERT_LOG_LEVEL": "LOUD"}, None,
         "log_level: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ])
    def test_refusals_name_the_setting(self, env: dict[str, str], toml: str | None,
                                       message: str) -> None:
        """A missing, unknown or out-of-range setting is an error that names it."""
        with pytest.raises(SettingsError, match=message):
            load_settings(env, toml)


def test_log_level_in_any_case() -> None:
    """``debug`` is taken as ``DEBUG``, as the logging set-up always took it."""
    settings = load_settings({"ECERT_LOG_LEVEL": " debug"}, None, {"data_dir": "/a"})
    assert "DEBUG" == settings.log_level
