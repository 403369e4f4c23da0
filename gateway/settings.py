"""Gateway settings: one frozen dataclass, built once by a pure function.

``load_settings(environ, toml_text, overrides)`` is the only way settings are
made; it reads nothing itself. ``__main__`` reads the environment and the
``--config`` file and passes their contents in.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["LOG_LEVELS", "Settings", "SettingsError", "load_settings"]

ENV_PREFIX = "ECERT_"
WILDCARD_HOSTS: Mapping[str, str] = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104
"""Listen hosts that mean every address, and the address ``public_base_url`` uses instead."""
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
    public_url: str | None = None
    """The URL partners reach this gateway at (``https://gw.example/ecert``: scheme, host,
    port, any path prefix; no trailing slash). What Huzhou signs names it (its status
    list's ``sub``, the status URI of the licences it hands out), never a request's Host.
    None: ``http://`` + ``listen`` (``public_base_url``)."""
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
    status_retry_after_s: float = 5.0
    """After a failed status-list fetch the URI is not tried again for this long (0..300;
    0: tried again at once); meanwhile its licences answer from the last good list, if
    any, else TRY_LATER."""
    cache_enabled: bool = True
    cache_max_entries: int = 100_000
    cache_max_ttl_s: float = 300.0
    """No cached verdict lives longer than this, whatever its licence allows."""
    redis_timeout_s: float = 0.25
    """A Redis call slower than this counts as a miss (and an error)."""
    audit_checkpoint_interval_s: float = 1.0
    audit_batch_max: int = 2000
    shutdown_timeout_s: float = 10.0
    access_log: bool = True
    """One JSON line per request on the ``gateway.access`` logger (``web.observability``)."""
    partner_rate_per_s: float = 20.0
    partner_rate_burst: int = 40
    licence_cache_max_entries: int = 20_000
    """Huzhou licences found by identifier kept in memory (0: none; a few KB each);
    dropped within about a second of any change to the licence library
    (``gateway.licences.store``)."""
    crypto_thread: bool = True
    """Check partners' request-token signatures and sign licences on a thread beside the
    event loop, in batches (``gateway.infra.crypto_thread``); false: on the loop."""
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

    @property
    def public_base_url(self) -> str:
        """``public_url``, or else ``http://`` + ``listen``, a wildcard host (``0.0.0.0``,
        ``::``) read as the loopback address of its family."""
        if self.public_url:
            return self.public_url
        host = WILDCARD_HOSTS.get(self.host, self.host)
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def public_url_derived(self) -> bool:
        """True when ``public_base_url`` was derived from a wildcard ``listen`` address,
        which no partner can reach by that name."""
        return not self.public_url and self.host in WILDCARD_HOSTS


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
        _legacy_public_url(extra, values)
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
    if not 0 <= settings.status_retry_after_s <= 300:
        raise SettingsError("status_retry_after_s must be between 0 and 300 seconds")
    if settings.approvals_required < 1:
        raise SettingsError("approvals_required must be at least 1")
    if settings.public_url is not None:
        settings = replace(settings, public_url=_public_url(settings.public_url))
    return settings


def _legacy_public_url(extra: Mapping[str, Any], values: dict[str, object]) -> None:
    """``[partner] public_url``, where earlier releases read it, stands for ``public_url``
    in the same file; the two must agree when both are given."""
    section = extra.get("partner")
    legacy = section.get("public_url") if isinstance(section, Mapping) else None
    if legacy is None:
        return
    given = values.get("public_url")
    if given is not None and str(given).rstrip("/") != str(legacy).rstrip("/"):
        raise SettingsError("settings file: public_url and [partner] public_url differ; "
                            "keep only public_url")
    values["public_url"] = legacy


def _public_url(raw: str) -> str:
    """``raw`` as a public base URL without its trailing slash; ``SettingsError`` unless it
    is an absolute http(s) URL with a host and nothing a base cannot carry."""
    text = raw.strip()
    # Before urlsplit, which drops tabs and newlines silently.
    if not text.isprintable() or " " in text or "\\" in text:
        raise SettingsError(f"public_url may not contain spaces, backslashes or control "
                            f"characters, got {raw!r}")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise SettingsError(f"public_url: not a URL: {raw!r}") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or port == 0:
        raise SettingsError(f"public_url must be an http(s) URL with a host, got {raw!r}")
    if parts.username is not None or parts.password is not None or parts.query \
            or parts.fragment or "?" in text or "#" in text:
        raise SettingsError(f"public_url may not carry credentials, a query or a fragment, "
                            f"got {raw!r}")
    if any(unquote(segment) in (".", "..") for segment in parts.path.split("/")):
        raise SettingsError(f"public_url may not contain dot segments, got {raw!r}")
    return f"{parts.scheme.lower()}://{parts.netloc}{parts.path.rstrip('/')}"
