"""Gateway settings: one frozen dataclass, built once by a pure function.

``load_settings(environ, toml_text, overrides)`` is the only way settings are
made; it reads nothing itself. ``__main__`` reads the environment and the
``--config`` file and passes their contents in.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["LOG_LEVELS", "Settings", "SettingsError", "load_settings"]

ENV_PREFIX = "ECERT_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
"""The values ``log_level`` takes (any case)."""


class SettingsError(ValueError):
    """A setting is missing, unknown or of the wrong type."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """Gateway settings, built once at start-up and passed explicitly."""

    data_dir: Path
    """Every store, key and default file of an instance lives under it."""
    listen: str = "127.0.0.1:8080"
    gateway_id: str = "330500"
    """The issuer name of receipts and the audience partners address."""
    trust_list_file: Path | None = None
    """Plain or signed trust list loaded at start-up (``--trust-list``)."""
    redis_url: str | None = None
    """None: in-process cache only."""
    postgres_dsn: str | None = None
    """None: SQLite files under ``data_dir``."""
    log_level: str = "INFO"
    clock_skew_s: int = 0
    """Allowance when comparing licence times (verdicts.md: default 0, at most 300)."""
    max_body_bytes: int = 1 << 20
    max_batch_body_bytes: int = 16 << 20
    max_batch_items: int = 1000
    status_fetch_timeout_s: float = 3.0
    status_max_bytes: int = 1 << 20
    cache_enabled: bool = True
    cache_max_entries: int = 100_000
    cache_max_ttl_s: float = 300.0
    """No cached verdict lives longer than this, whatever its licence allows."""
    redis_timeout_s: float = 0.25
    """A Redis call slower than this counts as a miss (and an error)."""
    audit_checkpoint_interval_s: float = 1.0
    audit_batch_max: int = 2000
    shutdown_timeout_s: float = 10.0
    partner_rate_per_s: float = 20.0
    partner_rate_burst: int = 40
    licence_cache_max_entries: int = 20_000
    """Huzhou licences found by identifier kept in memory (0: none; a few KB each);
    dropped within about a second of any change to the licence library
    (``gateway.licences``)."""
    crypto_thread: bool = True
    """Check partners' request-token signatures and sign licences on a thread beside the
    event loop, in batches (``gateway.crypto_thread``); false: on the loop."""
    approvals_required: int = 2
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Sections of the settings file that belong to a component (``[registry]`` ...)."""

    @property
    def host(self) -> str:
        """Host part of ``listen``."""
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        """Port part of ``listen``."""
        return int(self.listen.rsplit(":", 1)[1])


def _coerce(name: str, raw: object, target: object) -> object:
    """Convert a TOML or environment value to the type of field ``name``."""
    text = str(target)
    if raw is None:
        return None
    if "Path" in text:
        return Path(str(raw))
    if text in ("bool", "<class 'bool'>"):
        if isinstance(raw, bool):
            return raw
        lowered = str(raw).strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name}: expected a boolean, got {raw!r}")
    if text in ("int", "<class 'int'>"):
        if isinstance(raw, bool):
            raise SettingsError(f"{name}: expected an integer, got {raw!r}")
        try:
            return int(str(raw))
        except ValueError as exc:
            raise SettingsError(f"{name}: expected an integer, got {raw!r}") from exc
    if text in ("float", "<class 'float'>"):
        try:
            return float(str(raw))
        except ValueError as exc:
            raise SettingsError(f"{name}: expected a number, got {raw!r}") from exc
    if isinstance(raw, str) and raw == "" and "None" in text:
        return None
    return str(raw)


def load_settings(
    environ: Mapping[str, str],
    toml_text: str | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Build settings from a TOML document, ``ECERT_*`` variables and overrides.

    Precedence, lowest first: defaults, the TOML file's ``[gateway]`` table (or
    its top level), the environment, then ``overrides`` (command-line options).
    Unknown keys are an error, so a typo never silently falls back to a default.
    """
    known = {f.name: f.type for f in fields(Settings) if f.name != "extra"}
    values: dict[str, object] = {}
    extra: dict[str, Any] = {}
    if toml_text:
        try:
            doc = tomllib.loads(toml_text)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"settings file: {exc}") from exc
        top = doc.get("gateway", doc)
        for key, value in top.items():
            if key == "gateway":
                continue
            if isinstance(value, dict) and key not in known:
                extra[key] = value
                continue
            if key not in known:
                raise SettingsError(f"settings file: unknown setting {key!r}")
            values[key] = value
        if "gateway" in doc:
            extra.update({key: value for key, value in doc.items()
                          if key != "gateway" and isinstance(value, dict)})
    for env_key, raw in environ.items():
        if not env_key.startswith(ENV_PREFIX) or env_key.startswith(ENV_PREFIX + "TEST_"):
            continue
        key = env_key[len(ENV_PREFIX) :].lower()
        if key in known:
            values[key] = raw
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in known:
            raise SettingsError(f"unknown setting {key!r}")
        values[key] = value
    if "data_dir" not in values:
        raise SettingsError("data_dir is required (--data-dir or ECERT_DATA_DIR)")
    coerced = {key: _coerce(key, value, known[key]) for key, value in values.items()}
    if "log_level" in coerced:
        level = str(coerced["log_level"]).strip().upper()
        if level not in LOG_LEVELS:
            raise SettingsError(f"log_level: expected one of {', '.join(LOG_LEVELS)} "
                                f"(any case), got {coerced['log_level']!r}")
        coerced["log_level"] = level
    settings = Settings(**coerced, extra=extra)  # type: ignore[arg-type]
    if not 0 <= settings.clock_skew_s <= 300:
        raise SettingsError("clock_skew_s must be between 0 and 300 seconds")
    if ":" not in settings.listen:
        raise SettingsError(f"listen must be HOST:PORT, got {settings.listen!r}")
    if settings.max_body_bytes < 1 << 20 or settings.max_batch_body_bytes < 8 << 20:
        raise SettingsError("body limits must be at least 1 MiB (single) and 8 MiB (batch)")
    if settings.approvals_required < 1:
        raise SettingsError("approvals_required must be at least 1")
    return settings
