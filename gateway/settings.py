"""Gateway settings: one frozen dataclass, built once by a pure function.

``load_settings(environ, toml_text, overrides)`` is the only way settings are
made; it reads nothing itself. ``__main__`` reads the environment and the
``--config`` file and passes their contents in.

The gateway's own settings sit in ``[gateway]`` (or at the top of the file);
each feature that has settings of its own has a table and a typed, frozen
section object (``RegistrySettings``, ``AuditSettings``, ``TrustListSettings``,
``PartnerSettings``). A scalar setting of a table can also be given as
``ECERT_<TABLE>_<KEY>`` (``ECERT_AUDIT_ORIGIN``). An unknown key or table, or a
value of the wrong type, is a ``SettingsError`` naming the key, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from trust.note import NoteError, NoteVerifier
from trust.witness import WitnessKey

__all__ = [
    "LOG_LEVELS",
    "RECEIPT_FORMS",
    "RECORD_KINDS",
    "RETENTION_DEFAULT_DAYS",
    "RETENTION_MIN_DAYS",
    "AuditSettings",
    "ConsoleSettings",
    "PartnerSettings",
    "RateLimit",
    "RegistrySettings",
    "Settings",
    "SettingsError",
    "TrustListSettings",
    "WitnessEntry",
    "WitnessSettings",
    "WitnessedLog",
    "load_settings",
]

ENV_PREFIX = "ECERT_"
WILDCARD_HOSTS: Mapping[str, str] = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104
"""Listen hosts that mean every address, and the address ``public_base_url`` uses instead."""
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
"""The values ``log_level`` takes (any case)."""
RECEIPT_FORMS = ("log", "jws")
"""The values ``receipt_form`` takes."""


class SettingsError(ValueError):
    """A setting is missing, unknown or of the wrong type; the message names it."""


# -- sections ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class RegistrySettings:
    """``[registry]``: where the matter registry's files are (``gateway.matters``)."""

    dir: Path | None = None
    """The base folder of catalogues and maps (``ECERT_REGISTRY_DIR``); None: the samples
    shipped in ``config/registry``. ``registry import`` adds files under the data folder."""


RECORD_KINDS: Final = (
    "verification", "translation", "partner-query", "operator-change", "identity-change",
    "licence-import", "trust-list-loaded", "audit-prune", "case",
)
"""The audit log's record kinds (``gateway.audit.EventType`` values; a test keeps them equal)."""

RETENTION_MIN_DAYS: Final = 184
"""The shortest retention a kind may be given. The Cybersecurity Law (art. 21) asks that
network logs be kept for no less than six months; six consecutive calendar months are up to
184 days long (July to December), so 180 days would fall short of it in some half-years."""

RETENTION_DEFAULT_DAYS: Final[Mapping[str, int]] = {
    # Handling acts (pseudonymised personal data): one year and a day, above the legal
    # minimum with a margin for a late prune; PIPL art. 19 asks for no longer than needed.
    "verification": 366, "translation": 366, "partner-query": 366, "licence-import": 366,
    "case": 366,
    # Acts on trust, identities and the log itself explain why later answers were given:
    # five years.
    "operator-change": 1827, "identity-change": 1827, "trust-list-loaded": 1827,
    "audit-prune": 1827,
}
"""Days each kind of record is kept before ``audit prune`` may delete its body."""


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditSettings:
    """``[audit]``: the audit log (``gateway.audit``)."""

    origin: str | None = None
    """The log's origin line (``ECERT_AUDIT_ORIGIN``); None: derived from ``gateway_id``."""
    retention: Mapping[str, int] = field(default_factory=lambda: dict(RETENTION_DEFAULT_DAYS))
    """Days each record kind is kept before its body may be pruned (``[audit.retention]``
    ``verification = 400``; a kind left out keeps its default, ``RETENTION_DEFAULT_DAYS``;
    at least ``RETENTION_MIN_DAYS``). In the file only."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ConsoleSettings:
    """``[console]``: the operators' web console (``gateway.console``)."""

    session_idle_minutes: int = 30
    """A console session ends after this long without a request (1 to 1440)."""
    session_hours: int = 8
    """A console session ends this long after sign-in, however active (1 to 24)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TrustListSettings:
    """``[admin]``: the trust list's administration, over HTTP and the CLI
    (``gateway.trustlist``)."""

    expiry_alert_days: int = 30
    """``GET /v1/admin/alerts`` and ``/metrics`` count anchors whose window ends within
    this many days (``ECERT_ADMIN_EXPIRY_ALERT_DAYS``; 0 to 3650)."""
    trust_list_signers: tuple[Mapping[str, Any], ...] = ()
    """Public JWKs (each with a ``kid``) of other gateways whose signed trust-list exports
    may be imported, besides this instance's own key and the data folder's
    ``trust-list-signers.json``. In the file only (an array of tables)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RateLimit:
    """One partner region's token bucket: filled at ``per_s``, holding at most ``burst``."""

    per_s: float
    burst: int


@dataclass(frozen=True, kw_only=True, slots=True)
class PartnerSettings:
    """``[partner]``: partner regions' queries (``gateway.partner``)."""

    rate_limits: Mapping[str, RateLimit] = field(default_factory=dict)
    """Per region code, the limits that replace ``partner_rate_per_s`` and
    ``partner_rate_burst`` (``[partner.rate_limits] "310000" = {per_s = 50, burst = 100}``;
    a key left out takes the gateway-wide value). In the file only."""


@dataclass(frozen=True, kw_only=True, slots=True)
class WitnessEntry:
    """One witness of Huzhou's audit log: its key name, vkey and add-checkpoint URL."""

    name: str
    vkey: str
    """Its cosignature/v1 vkey (``<name>+<key id>+<base64(0x04 || key)>``)."""
    url: str
    """Its add-checkpoint endpoint (the full URL, ``.../add-checkpoint``)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class WitnessedLog:
    """A partner's log that Huzhou's witness cosigns: its origin and note vkey."""

    origin: str
    vkey: str


@dataclass(frozen=True, kw_only=True, slots=True)
class WitnessSettings:
    """``[witness]``: who cosigns Huzhou's checkpoints, and whose Huzhou cosigns
    (``gateway.audit.witness``; docs/audit.md, *Witnesses*)."""

    witnesses: tuple[WitnessEntry, ...] = ()
    """The witnesses checkpoints are sent to (``[[witness.witnesses]]``; file only)."""
    k: int = 1
    """How many of them must cosign before a checkpoint counts as witnessed (1..n)."""
    interval_s: float = 5.0
    """How often the latest checkpoint is sent to the witnesses (0.05 to 3600)."""
    timeout_s: float = 2.0
    """One add-checkpoint call gives up after this long (0.05 to 60)."""
    alert_after_s: float = 600.0
    """Alert (``/metrics``, log) when the latest checkpoint has gone this long unwitnessed."""
    key_name: str | None = None
    """The key name of Huzhou's own witness; None: ``<gateway origin host>/witness``."""
    logs: tuple[WitnessedLog, ...] = ()
    """Partners' logs Huzhou witnesses (``[[witness.logs]]``; file only)."""


# -- the settings --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """Gateway settings, built once at start-up and passed explicitly."""

    data_dir: Path
    """Every store, key and default file of an instance lives under it."""
    listen: str = "127.0.0.1:8080"
    workers: int = 1
    """``serve`` runs this many worker processes on ``listen`` (``--workers``; 1 to 256).
    More than one needs ``redis_url``: the replay cache of partner request tokens, the
    partners' rate limits and console sessions are shared through it
    (``gateway.web.runner``, docs/operators.md "Workers and scaling")."""
    worker_balance: bool = True
    """With several workers, each keeps its share of the open connections even: it stops
    accepting while it holds more than the least loaded worker and closes its excess
    after an answer (``gateway.web.balance``); false (``ECERT_WORKER_BALANCE=0``): the
    kernel's split stands."""
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
    partner_query_timeout_s: float = 3.0
    """Deadline of one query Huzhou sends a partner for a licence (``POST /v1/cases``):
    connecting, sending and reading; past it the requirement is not met, partner
    unavailable."""
    cases_file: Path | None = None
    """The case book of ``POST /v1/cases`` (None: ``config/cases/huzhou-cases.json``)."""
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
    receipt_form: str = "log"
    """What a verification answer's ``receipt`` is (docs/receipts.md): ``log``, the
    answer's audit entry with its inclusion proof and the checkpoint signed when it was
    committed; or ``jws``, an ``ecert-receipt+jwt`` signed for each answer."""
    shutdown_timeout_s: float = 10.0
    uvloop: bool = True
    """``serve`` runs on uvloop when it is installed; false (``ECERT_UVLOOP=0``): on
    asyncio's own event loop. The log says which loop runs."""
    http_lane: bool = True
    """``serve`` answers simple requests to the lane's routes without aiohttp's
    per-request machinery (``gateway.web.lane``); false (``ECERT_HTTP_LANE=0``): every
    request goes aiohttp's way. The answers are the same."""
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
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    """``[registry]``."""
    audit: AuditSettings = field(default_factory=AuditSettings)
    """``[audit]``."""
    admin: TrustListSettings = field(default_factory=TrustListSettings)
    """``[admin]``: the trust list's administration."""
    partner: PartnerSettings = field(default_factory=PartnerSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    """``[partner]``."""
    witness: WitnessSettings = field(default_factory=WitnessSettings)
    """``[witness]``: the audit log's witnesses."""

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


# -- values --------------------------------------------------------------------------------
#
# The file's values must have their setting's type already (TOML has strings, integers,
# floats, booleans); an environment variable is always text, and is read as the type.

Parse = Callable[[str, object, bool], object]
"""``(name, raw, from_text) -> value``; ``from_text`` for an environment variable."""


def _wrong(name: str, expected: str, raw: object) -> SettingsError:
    return SettingsError(f"{name}: expected {expected}, got {raw!r}")


def _text(name: str, raw: object, from_text: bool = False) -> str:
    if not isinstance(raw, str):
        raise _wrong(name, "a string", raw)
    return raw


def _path(name: str, raw: object, from_text: bool = False) -> Path:
    return raw if isinstance(raw, Path) else Path(_text(name, raw))


def _boolean(name: str, raw: object, from_text: bool = False) -> bool:
    if isinstance(raw, bool):
        return raw
    if from_text and isinstance(raw, str):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
    raise _wrong(name, "a boolean", raw)


def _integer(name: str, raw: object, from_text: bool = False) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if from_text and isinstance(raw, str):
        try:
            return int(raw)
        except ValueError:
            pass
    raise _wrong(name, "an integer", raw)


def _number(name: str, raw: object, from_text: bool = False) -> float:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if from_text and isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            pass
    raise _wrong(name, "a number", raw)


def _optional(parse: Parse) -> Parse:
    """``parse``, with an empty string read as unset (None)."""

    def parse_optional(name: str, raw: object, from_text: bool) -> object:
        return None if raw == "" else parse(name, raw, from_text)

    return parse_optional


_PARSERS: Final[Mapping[str, Parse]] = {
    "str": _text, "Path": _path, "bool": _boolean, "int": _integer, "float": _number,
    "str | None": _optional(_text), "Path | None": _optional(_path),
}
"""How a setting of each annotation is read (annotations are text: ``from __future__``)."""

_SECTIONS: Final[Mapping[str, type]] = {
    "registry": RegistrySettings, "audit": AuditSettings, "admin": TrustListSettings,
    "partner": PartnerSettings, "console": ConsoleSettings, "witness": WitnessSettings,
}
"""The tables of the settings file besides ``[gateway]``, each with its section's class."""

_FILE_ONLY: Final = frozenset({("admin", "trust_list_signers"), ("partner", "rate_limits"),
                               ("witness", "witnesses"), ("witness", "logs"),
                               ("audit", "retention")})
"""Section keys holding arrays or tables: given in the file only, never the environment."""


def _scalars(cls: type, *, skip: frozenset[tuple[str, str]] = frozenset(),
             section: str = "") -> dict[str, Parse]:
    return {f.name: _PARSERS[str(f.type)] for f in fields(cls)
            if f.name not in _SECTIONS and (section, f.name) not in skip}


_GATEWAY: Final = _scalars(Settings)
"""The keys of ``[gateway]``, with their parsers."""
_SECTION_SCALARS: Final = {name: _scalars(cls, skip=_FILE_ONLY, section=name)
                           for name, cls in _SECTIONS.items()}
"""The one-value keys of each section, with their parsers (also ``ECERT_<TABLE>_<KEY>``)."""
_ENV_SECTION_KEYS: Final = {f"{section}_{key}": (section, key)
                            for section, keys in _SECTION_SCALARS.items() for key in keys}


# -- the file ------------------------------------------------------------------------------


def _split(doc: Mapping[str, Any]) -> tuple[dict[str, object], dict[str, Mapping[str, Any]]]:
    """A parsed file's ``[gateway]`` keys and its section tables, unknown ones refused.

    ``[gateway]``'s keys may also sit at the top of the file, before any table, and a
    section may sit inside ``[gateway]`` (``[gateway.registry]``); a key or a section
    given in both places is refused.
    """
    gateway = doc.get("gateway", {})
    if not isinstance(gateway, dict):
        raise SettingsError("settings file: gateway must be a table ([gateway])")
    top: dict[str, object] = {}
    tables: dict[str, Mapping[str, Any]] = {}
    for where in (doc, gateway):
        for key, value in where.items():
            if where is doc and key == "gateway":
                continue
            if key in _SECTIONS:
                if not isinstance(value, dict):
                    raise SettingsError(f"settings file: {key} must be a table ([{key}])")
                if key in tables:
                    raise SettingsError(f"settings file: [{key}] is given twice")
                tables[key] = value
            elif key in _GATEWAY:
                if key in top:
                    raise SettingsError(f"settings file: {key} is given twice")
                top[key] = value
            elif isinstance(value, dict):
                raise SettingsError(f"settings file: unknown table [{key}]")
            else:
                raise SettingsError(f"settings file: unknown setting {key!r}")
    return top, tables


def _legacy_public_url(tables: Mapping[str, Mapping[str, Any]], values: dict[str, object]
                       ) -> None:
    """``[partner] public_url``, where earlier releases read it, stands for ``public_url``
    in the same file; the two must agree when both are given."""
    legacy = tables.get("partner", {}).get("public_url")
    if legacy is None:
        return
    legacy = _text("partner.public_url", legacy)
    given = values.get("public_url")
    if given is not None and str(given).rstrip("/") != legacy.rstrip("/"):
        raise SettingsError("settings file: public_url and [partner] public_url differ; "
                            "keep only public_url")
    values["public_url"] = legacy


def _signers(raw: object) -> tuple[Mapping[str, Any], ...]:
    """``[admin] trust_list_signers``: an array of JWK tables, each with a ``kid``."""
    name = "admin.trust_list_signers"
    if not isinstance(raw, list) or not all(isinstance(jwk, dict) for jwk in raw):
        raise _wrong(name, "an array of JWK tables ([[admin.trust_list_signers]])", raw)
    for n, jwk in enumerate(raw):
        if not isinstance(jwk.get("kid"), str):
            raise SettingsError(f"{name}[{n}]: a JWK needs a kid (a string)")
    return tuple(raw)


def _table_array(name: str, raw: object, keys: tuple[str, ...]) -> list[dict[str, str]]:
    """An array of tables whose every key is one of ``keys``, each a string, all given."""
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise _wrong(name, f"an array of tables ([[{name}]])", raw)
    for n, item in enumerate(raw):
        for key in item:
            if key not in keys:
                raise SettingsError(f"settings file: unknown setting '{name}[{n}].{key}'")
        for key in keys:
            if not isinstance(item.get(key), str) or not item[key]:
                raise SettingsError(f"{name}[{n}].{key}: a non-empty string is required")
    return raw


def _witnesses(raw: object) -> tuple[WitnessEntry, ...]:
    """``[[witness.witnesses]]``: name, cosignature vkey (of that name) and http(s) URL."""
    entries = []
    for n, item in enumerate(_table_array("witness.witnesses", raw, ("name", "vkey", "url"))):
        where = f"witness.witnesses[{n}]"
        try:
            key = WitnessKey.from_vkey(item["vkey"])
        except NoteError as exc:
            raise SettingsError(f"{where}.vkey: {exc}") from exc
        if key.name != item["name"]:
            raise SettingsError(f"{where}: the vkey is of {key.name!r}, not {item['name']!r}")
        if urlsplit(item["url"]).scheme not in ("http", "https") or not urlsplit(
                item["url"]).hostname:
            raise SettingsError(f"{where}.url: an http(s) URL is required")
        entries.append(WitnessEntry(name=item["name"], vkey=item["vkey"], url=item["url"]))
    if len({e.name for e in entries}) != len(entries):
        raise SettingsError("witness.witnesses: a witness is named twice")
    return tuple(entries)


def _witnessed_logs(raw: object) -> tuple[WitnessedLog, ...]:
    """``[[witness.logs]]``: a partner log's origin and its Ed25519 note vkey (same name)."""
    logs = []
    for n, item in enumerate(_table_array("witness.logs", raw, ("origin", "vkey"))):
        where = f"witness.logs[{n}]"
        try:
            key = NoteVerifier.from_vkey(item["vkey"])
        except NoteError as exc:
            raise SettingsError(f"{where}.vkey: {exc}") from exc
        if key.name != item["origin"]:
            raise SettingsError(f"{where}: the vkey is of {key.name!r}, not {item['origin']!r}")
        logs.append(WitnessedLog(origin=item["origin"], vkey=item["vkey"]))
    if len({log.origin for log in logs}) != len(logs):
        raise SettingsError("witness.logs: an origin is given twice")
    return tuple(logs)


def _check_witness(witness: WitnessSettings) -> None:
    n = len(witness.witnesses)
    if n and not 1 <= witness.k <= n:
        raise SettingsError(f"witness.k must be between 1 and the {n} witnesses named")
    if not 0.05 <= witness.interval_s <= 3600 or not 0.05 <= witness.timeout_s <= 60:
        raise SettingsError("witness.interval_s must be 0.05..3600 and witness.timeout_s"
                            " 0.05..60 seconds")
    if witness.alert_after_s <= 0:
        raise SettingsError("witness.alert_after_s must be positive")
    if witness.key_name is not None and (not witness.key_name or "+" in witness.key_name
                                         or any(c.isspace() for c in witness.key_name)):
        raise SettingsError("witness.key_name: a note key name has no spaces and no '+'")


def _rate_limits(raw: object, default: RateLimit) -> dict[str, RateLimit]:
    """``[partner.rate_limits]``: region code -> its limits, a key left out taking
    ``default``'s."""
    name = "partner.rate_limits"
    if not isinstance(raw, dict):
        raise _wrong(name, 'a table of regions ("310000" = {per_s = 50, burst = 100})', raw)
    limits: dict[str, RateLimit] = {}
    for region, entry in raw.items():
        where = f"{name}.{region}"
        if len(region) != 6 or not region.isascii() or not region.isdigit():
            raise SettingsError(f"{where}: a region code is six digits")
        if not isinstance(entry, dict):
            raise _wrong(where, "a table {per_s = ..., burst = ...}", entry)
        for key in entry:
            if key not in ("per_s", "burst"):
                raise SettingsError(f"settings file: unknown setting '{where}.{key}'")
        limit = RateLimit(
            per_s=_number(f"{where}.per_s", entry["per_s"]) if "per_s" in entry
            else default.per_s,
            burst=_integer(f"{where}.burst", entry["burst"]) if "burst" in entry
            else default.burst)
        if limit.per_s <= 0 or limit.burst < 1:
            raise SettingsError(f"{where}: per_s must be positive and burst at least 1")
        limits[region] = limit
    return limits


def _retention(raw: object) -> dict[str, int]:
    """``[audit.retention]``: record kind -> days kept, over the defaults; a kind that does
    not exist, a value that is not a whole number of days, or one under the legal minimum
    is refused by name."""
    name = "audit.retention"
    if not isinstance(raw, dict):
        raise _wrong(name, "a table of record kinds (verification = 400)", raw)
    days = dict(RETENTION_DEFAULT_DAYS)
    for kind, value in raw.items():
        where = f"{name}.{kind}"
        if kind not in RECORD_KINDS:
            raise SettingsError(f"settings file: unknown record kind '{where}' (kinds: "
                                f"{', '.join(RECORD_KINDS)})")
        days[kind] = _integer(where, value)
        if days[kind] < RETENTION_MIN_DAYS:
            raise SettingsError(
                f"{where}: {days[kind]} days is under the minimum of {RETENTION_MIN_DAYS} "
                "(Cybersecurity Law art. 21: logs are kept no less than six months)")
    return days


def _sections(tables: Mapping[str, Mapping[str, Any]], environ: Mapping[str, str],
              gateway: Settings) -> dict[str, object]:
    """The section objects: each table's keys, then ``ECERT_<TABLE>_<KEY>`` over them."""
    given: dict[str, dict[str, object]] = {name: {} for name in _SECTIONS}
    for section, table in tables.items():
        known = {f.name for f in fields(_SECTIONS[section])}
        for key, raw in table.items():
            if section == "partner" and key == "public_url":
                continue  # read by _legacy_public_url
            if key not in known:
                raise SettingsError(f"settings file: unknown setting '{section}.{key}'")
            parse = _SECTION_SCALARS[section].get(key)
            given[section][key] = raw if parse is None else parse(f"{section}.{key}", raw,
                                                                    False)
    for env_key, raw in environ.items():
        found = _ENV_SECTION_KEYS.get(env_key[len(ENV_PREFIX):].lower()) \
            if env_key.startswith(ENV_PREFIX) else None
        if found is not None:
            section, key = found
            given[section][key] = _SECTION_SCALARS[section][key](f"{section}.{key}", raw, True)
    if "trust_list_signers" in given["admin"]:
        given["admin"]["trust_list_signers"] = _signers(given["admin"]["trust_list_signers"])
    if "retention" in given["audit"]:
        given["audit"]["retention"] = _retention(given["audit"]["retention"])
    if "rate_limits" in given["partner"]:
        given["partner"]["rate_limits"] = _rate_limits(
            given["partner"]["rate_limits"],
            RateLimit(per_s=gateway.partner_rate_per_s, burst=gateway.partner_rate_burst))
    if "witnesses" in given["witness"]:
        given["witness"]["witnesses"] = _witnesses(given["witness"]["witnesses"])
    if "logs" in given["witness"]:
        given["witness"]["logs"] = _witnessed_logs(given["witness"]["logs"])
    built = {name: cls(**given[name]) for name, cls in _SECTIONS.items()}
    witness = built["witness"]
    assert isinstance(witness, WitnessSettings)
    _check_witness(witness)
    admin = built["admin"]
    assert isinstance(admin, TrustListSettings)
    if not 0 <= admin.expiry_alert_days <= 3650:
        raise SettingsError("admin.expiry_alert_days must be between 0 and 3650")
    console = built["console"]
    assert isinstance(console, ConsoleSettings)
    if not 1 <= console.session_idle_minutes <= 1440:
        raise SettingsError("console.session_idle_minutes must be between 1 and 1440")
    if not 1 <= console.session_hours <= 24:
        raise SettingsError("console.session_hours must be between 1 and 24")
    return built


# -- loading -------------------------------------------------------------------------------


def load_settings(
    environ: Mapping[str, str],
    toml_text: str | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Build settings from a TOML document, ``ECERT_*`` variables and overrides.

    Precedence, lowest first: defaults, the TOML file (``[gateway]`` or its top level,
    and the feature tables), the environment, then ``overrides`` (command-line options,
    for ``[gateway]`` keys). An unknown key or table, or a value of the wrong type, is a
    ``SettingsError`` naming it, so a typo never silently falls back to a default.
    Environment variables are read as text (``ECERT_CLOCK_SKEW_S=5``); the file's values
    and overrides must have their setting's type (a path may be a ``Path``).
    """
    values: dict[str, object] = {}
    tables: dict[str, Mapping[str, Any]] = {}
    if toml_text:
        try:
            doc = tomllib.loads(toml_text)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"settings file: {exc}") from exc
        top, tables = _split(doc)
        values.update({key: _GATEWAY[key](key, raw, False) for key, raw in top.items()})
        _legacy_public_url(tables, values)
    for env_key, raw in environ.items():
        if not env_key.startswith(ENV_PREFIX) or env_key.startswith(ENV_PREFIX + "TEST_"):
            continue
        key = env_key[len(ENV_PREFIX) :].lower()
        if key in _GATEWAY:
            values[key] = _GATEWAY[key](key, raw, True)
    for key, given in (overrides or {}).items():
        if given is None:
            continue
        if key not in _GATEWAY:
            raise SettingsError(f"unknown setting {key!r}")
        values[key] = _GATEWAY[key](key, given, False)
    if values.get("data_dir") is None:
        raise SettingsError("data_dir is required (--data-dir or ECERT_DATA_DIR)")
    if "log_level" in values:
        level = str(values["log_level"]).strip().upper()
        if level not in LOG_LEVELS:
            raise SettingsError(f"log_level: expected one of {', '.join(LOG_LEVELS)} "
                                f"(any case), got {values['log_level']!r}")
        values["log_level"] = level
    settings = Settings(**values)  # type: ignore[arg-type]
    _check(settings)
    settings = replace(settings, **_sections(tables, environ, settings))  # type: ignore[arg-type]
    if settings.public_url is not None:
        settings = replace(settings, public_url=_public_url(settings.public_url))
    return settings


def _check(settings: Settings) -> None:
    """Refuse values of the right type that are out of range."""
    if not 0 <= settings.clock_skew_s <= 300:
        raise SettingsError("clock_skew_s must be between 0 and 300 seconds")
    if ":" not in settings.listen:
        raise SettingsError(f"listen must be HOST:PORT, got {settings.listen!r}")
    if settings.max_body_bytes < 1 << 20 or settings.max_batch_body_bytes < 8 << 20:
        raise SettingsError("body limits must be at least 1 MiB (single) and 8 MiB (batch)")
    if not 0 < settings.partner_query_timeout_s <= 60:
        raise SettingsError("partner_query_timeout_s must be over 0 and at most 60 seconds")
    if not 0 <= settings.status_retry_after_s <= 300:
        raise SettingsError("status_retry_after_s must be between 0 and 300 seconds")
    if not 1 <= settings.workers <= 256:
        raise SettingsError("workers must be between 1 and 256")
    if settings.receipt_form not in RECEIPT_FORMS:
        raise SettingsError(f"receipt_form: expected one of {', '.join(RECEIPT_FORMS)},"
                            f" got {settings.receipt_form!r}")
    if settings.approvals_required < 1:
        raise SettingsError("approvals_required must be at least 1")
    if settings.partner_rate_per_s <= 0 or settings.partner_rate_burst < 1:
        raise SettingsError("partner_rate_per_s must be positive and partner_rate_burst "
                            "at least 1")


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
