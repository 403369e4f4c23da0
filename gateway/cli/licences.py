"""``ecert-gateway licences import|demo``: fill Huzhou's licence library.

``licences import FILE --data-dir DIR [--postgres-dsn DSN] [--quiet]`` reads JSON
Lines (``.jsonl``, ``.ndjson``, ``.json``: one licence object a line) or CSV
(``.csv``, a header row with the same names), each row ``identifier`` + the
profile's ``lic`` keys + ``state`` (``valid`` | ``revoked`` | ``suspended``).

The file is streamed: read and checked row by row and written to the store
``BATCH`` rows at a time, so memory stays the same whatever its size. Every row
is checked (identifier shape and ISO 7064 check character, USCC issuer and
holder codes, 身份证号, dates, an identifier given twice); each bad row is
printed as ``FILE:LINE: reason`` as it is found and skipped, the good ones are
stored. The import is one transaction: the good rows are stored all together
or, when the store fails, the file turns out unreadable halfway (not UTF-8, a
line over ``MAX_LINE`` bytes) or the import is interrupted, not at all.
Importing the same file again changes nothing. One audit record describes the
import (counts and the file's SHA-256, no personal data). Exit status: 0 when
every row was good, 1 when any was rejected (the good ones are kept) or the
import failed.

In CSV, ``matters`` is a JSON array or codes separated by ``|``; ``fields`` is
a JSON object; an empty ``valid_until`` means 长期.

``licences demo --data-dir DIR [--count N] [--seed S] [--quiet]`` writes N
realistic Huzhou licences to ``DIR/demo-licences.jsonl`` and imports them.

Both draw their progress (tqdm) on standard error when it is a terminal and
``--quiet`` is not given: the part of the file read, the rows, their rate and
the time left.
"""

from __future__ import annotations

import argparse
import codecs
import csv
import hashlib
import random
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import orjson
from stdnum.cn import ric, uscc
from tqdm import tqdm

from gateway.audit.event import ActorKind, AuditEvent, EventType
from gateway.cli import CommandParser
from gateway.cli._progress import progress_bar, wanted
from gateway.licences.store import (
    LIC_KEYS,
    HolderKeyring,
    ImportCounts,
    LicenceError,
    LicenceRecord,
    LicenceRecordError,
    open_repository,
    record_from_mapping,
)
from gateway.settings import Settings
from trust import CHINA_TZ, iso7064_check_char

__all__ = [
    "BATCH",
    "ImportReport",
    "MAX_LINE",
    "demo_rows",
    "import_file",
    "read_rows",
    "register",
]

_JSONL = (".jsonl", ".ndjson", ".json")
_CSV = (".csv",)
_COLUMNS = ("identifier", *LIC_KEYS, "state")

BATCH = 2000
"""Rows written to the store at a time, inside the import's one transaction."""
MAX_LINE = 1 << 20
"""Longest line (bytes) an import file may hold; a licence row is a few hundred. A
longer line makes the whole file unreadable, so that no line can fill the memory."""
_AUDITED_LINES = 1000
"""Rejected line numbers kept for the audit record (the count is always exact)."""


@dataclass(slots=True)
class ImportReport:
    """What an import found and did."""

    path: Path
    sha256: str = ""
    """The file's SHA-256 (hex), known once the whole file has been read."""
    rows: int = 0
    rejected: int = 0
    rejected_lines: list[int] = field(default_factory=list)
    """The line numbers of the first ``_AUDITED_LINES`` rejected rows."""
    counts: ImportCounts = field(default_factory=ImportCounts)
    backend: str = "sqlite"

    def reject(self, line: int) -> None:
        """Count a rejected row."""
        self.rejected += 1
        if len(self.rejected_lines) < _AUDITED_LINES:
            self.rejected_lines.append(line)


# ----------------------------------------------------------------------- reading


def _csv_value(name: str, value: str | None) -> Any:
    if value is None or value.strip() == "":
        return None
    text = value.strip()
    if name == "matters":
        if text.startswith("["):
            return orjson.loads(text)
        return [part.strip() for part in text.split("|") if part.strip()]
    if name in ("fields", "components"):
        return orjson.loads(text)
    return text


def _is_csv(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix not in _JSONL + _CSV:
        raise LicenceRecordError(f"{path.name}: expected .jsonl, .ndjson, .json or .csv")
    return suffix in _CSV


class _Source:
    """An import file's lines, decoded, hashed and counted as they are read."""

    def __init__(self, path: Path, stream: BinaryIO) -> None:
        self._name = path.name
        self._stream = stream
        self._digest = hashlib.sha256()
        self.bytes_read = 0

    @property
    def sha256(self) -> str:
        """SHA-256 (hex) of the bytes read so far: the file's once every line is read."""
        return self._digest.hexdigest()

    def lines(self) -> Iterator[str]:
        """Each line with its line ending, the UTF-8 byte order mark dropped. Raises
        ``LicenceRecordError`` at a line that is not UTF-8 or longer than ``MAX_LINE``."""
        number = 0
        while raw := self._stream.readline(MAX_LINE + 1):
            number += 1
            self._digest.update(raw)
            self.bytes_read += len(raw)
            if len(raw) > MAX_LINE:
                raise LicenceRecordError(
                    f"{self._name}: line {number} is longer than {MAX_LINE} bytes")
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise LicenceRecordError(f"{self._name} is not UTF-8 (line {number})") from exc


def read_rows(path: Path, lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """``(line, row)`` for every row of the file whose ``lines`` are given (with their
    line endings), or ``(line, reason)`` for one that cannot be read. Raises
    ``LicenceRecordError`` when the file as a whole is unreadable."""
    if not _is_csv(path):
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                yield number, "not a JSON object"
                continue
            yield number, row if isinstance(row, dict) else "not a JSON object"
        return
    reader = csv.DictReader(lines)
    header = reader.fieldnames or []
    unknown = sorted(set(header) - set(_COLUMNS))
    if unknown:
        raise LicenceRecordError(f"{path.name}: unknown columns {unknown}")
    if "identifier" not in header:
        raise LicenceRecordError(f"{path.name}: no identifier column")
    for row in reader:
        if None in row:
            yield reader.line_num, "more cells than columns"
            continue
        try:
            yield reader.line_num, {name: _csv_value(name, value)
                                    for name, value in row.items()
                                    if _csv_value(name, value) is not None}
        except orjson.JSONDecodeError:
            yield reader.line_num, "matters, fields or components is not valid JSON"


class _FirstLines:
    """The line each identifier of an import was first seen on, kept in SQLite's private
    temporary database (a page cache of a few MB, the rest on disk) rather than in a
    dict that would grow with the file."""

    def __init__(self) -> None:
        try:
            self._db = sqlite3.connect("")  # "": a private temporary database
            self._db.execute("CREATE TABLE seen (identifier TEXT PRIMARY KEY, "
                             "line INTEGER NOT NULL) WITHOUT ROWID")
        except sqlite3.Error as exc:
            raise LicenceError(f"cannot make the import's scratch database: {exc}") from exc

    def __enter__(self) -> _FirstLines:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._db.close()

    def first(self, identifier: str, line: int) -> int | None:
        """None when ``identifier`` is new (``line`` is remembered), else its first line."""
        try:
            if self._db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?)",
                                (identifier, line)).rowcount == 1:
                return None
            row = self._db.execute("SELECT line FROM seen WHERE identifier = ?",
                                   (identifier,)).fetchone()
        except sqlite3.Error as exc:
            raise LicenceError(f"the import's scratch database failed: {exc}") from exc
        return int(row[0])


def _records(path: Path, source: _Source, report: ImportReport, seen: _FirstLines, *,
             on_reject: Callable[[int, str], None] | None,
             progress: Callable[[int, int], None] | None) -> Iterator[LicenceRecord]:
    """The good rows of the file, one at a time; bad ones go to the report."""
    for number, row in read_rows(path, source.lines()):
        report.rows += 1
        reason: str | None = None
        if isinstance(row, str):
            reason = row
        else:
            try:
                record = record_from_mapping(row)
            except LicenceRecordError as exc:
                reason = str(exc)
            else:
                # A combined certificate's components are licences of their own too.
                for part in (record, *record.components):
                    first = seen.first(part.identifier, number)
                    if first is not None:
                        reason = f"identifier repeats line {first}"
                        break
        if progress is not None:
            progress(source.bytes_read, report.rows)
        if reason is not None:
            report.reject(number)
            if on_reject is not None:
                on_reject(number, reason)
            continue
        yield record


# ----------------------------------------------------------------------- importing


def import_file(path: Path, data_dir: Path, *, postgres_dsn: str | None = None,
                on_reject: Callable[[int, str], None] | None = None,
                progress: Callable[[int, int], None] | None = None) -> ImportReport:
    """Stream ``path`` into the licence library: every row read and checked in turn, the
    good ones stored in one transaction, ``BATCH`` at a time (module docstring).

    ``on_reject(line, reason)`` is told each bad row when it is found;
    ``progress(bytes_read, rows_read)`` after each row. Raises ``LicenceError`` (the
    file or the store failed), and then nothing of the file is stored. Blocking (files
    and the store): the CLI's, or an executor's.
    """
    _is_csv(path)
    keyring = HolderKeyring.load(data_dir)
    report = ImportReport(path=path)
    with path.open("rb") as stream, _FirstLines() as seen, \
            open_repository(data_dir, postgres_dsn) as repo:
        source = _Source(path, stream)
        report.backend = repo.backend
        report.counts = repo.import_records(
            _records(path, source, report, seen, on_reject=on_reject,
                     progress=progress), keyring, batch=BATCH)
        report.sha256 = source.sha256
    return report


def _audit(report: ImportReport, settings: Settings) -> None:
    from gateway.audit import append_cli_event  # noqa: PLC0415 - keeps this module light

    imported = report.counts.added + report.counts.updated
    outcome = "refused" if report.rejected and report.rows == report.rejected else "ok"
    append_cli_event(settings.data_dir, AuditEvent(
        event_type=EventType.LICENCE_IMPORT,
        actor_kind=ActorKind.CLI,
        actor_id="cli",
        at=datetime.now(UTC),
        outcome=outcome,
        issuer_region="330500",
        details={"file_name": report.path.name, "file_sha256": report.sha256,
                 "rows": report.rows, "added": report.counts.added,
                 "updated": report.counts.updated, "unchanged": report.counts.unchanged,
                 "rekeyed": report.counts.rekeyed, "rejected": report.rejected,
                 "rejected_lines": report.rejected_lines,
                 "imported": imported, "store": report.backend},
    ), postgres_dsn=settings.postgres_dsn, gateway_id=settings.gateway_id)


class _ImportProgress:
    """An import's progress line on standard error: the part of the file read (so the
    percentage and the time left), the rows read and their rate."""

    def __init__(self, path: Path, *, enabled: bool) -> None:
        self._bar = progress_bar(
            total=path.stat().st_size, desc=path.name, unit="B", unit_scale=True,
            enabled=enabled, bar_format="{desc}: {percentage:3.0f}%|{bar}| "
                                        "{n_fmt}B/{total_fmt}B [{elapsed}<{remaining}{postfix}]")
        self._started = time.monotonic()

    def __call__(self, bytes_read: int, rows: int) -> None:
        bar = self._bar
        if not bar.disable:
            # The text is set on every row (a plain assignment), so that whenever tqdm
            # redraws, at most ten times a second, it shows the rows of that moment.
            rate = rows / max(time.monotonic() - self._started, 1e-3)
            bar.set_postfix_str(f"{rows:,} rows, {rate:,.0f}/s", refresh=False)
            bar.update(bytes_read - bar.n)

    def finish(self, rows: int) -> None:
        """Show the final count (an import that went through)."""
        if not self._bar.disable:
            self(int(self._bar.n), rows)
            self._bar.refresh()

    def close(self) -> None:
        """End the line."""
        self._bar.close()


def _run_import(path: Path, args: argparse.Namespace, settings: Settings) -> int:

    def reject(line: int, reason: str) -> None:
        tqdm.write(f"{path}:{line}: {reason}", file=sys.stderr)

    progress = _ImportProgress(path, enabled=wanted(args.quiet))
    try:
        report = import_file(path, settings.data_dir, postgres_dsn=settings.postgres_dsn,
                             on_reject=reject, progress=progress)
        progress.finish(report.rows)
    finally:
        progress.close()
    _audit(report, settings)
    counts = report.counts
    print(f"{path.name}: {report.rows} rows; added {counts.added}, updated {counts.updated}, "
          f"unchanged {counts.unchanged}, rejected {report.rejected} "
          f"(store: {report.backend}, sha256 {report.sha256[:16]}...)")
    if report.rejected:
        print(f"ecert-gateway licences {args.action}: {report.rejected} rows rejected "
              "(the good rows were imported)", file=sys.stderr)
        return 1
    return 0


def _import(args: argparse.Namespace, settings: Settings) -> int:
    return _run_import(Path(args.file), args, settings)


# ----------------------------------------------------------------------- demo data

# Huzhou (330500) and its districts and counties (GB/T 2260).
_DIVISIONS = {"330500": "湖州市", "330502": "吴兴区", "330503": "南浔区", "330521": "德清县",
              "330522": "长兴县", "330523": "安吉县"}
_BIRTH_PLACES = ("330502", "330503", "330521", "330522", "330523")
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True, slots=True)
class _DemoType:
    code: str
    name: str
    person: bool
    department: str
    years: int | None
    """Validity in years; None for 长期."""
    number: str
    fields: tuple[tuple[str, str], ...] = ()
    city_only: bool = False


# Codes and names from docs/reference/licence_types.csv (real 证照类型代码).
_TYPES = (
    _DemoType("11100000000013338W032", "建筑施工特种作业人员操作资格证书", True,
              "住房和城乡建设局", 2, "浙A{digits}", (("operation_category", "建筑电工"),),
              city_only=True),
    _DemoType("11100000000013338W011", "建筑施工企业安全生产管理人员考核合格证书", True,
              "住房和城乡建设局", 3, "浙建安C（{year}）{seq}",
              (("category", "专职安全生产管理人员（C类）"),), city_only=True),
    _DemoType("11100000000013338W001", "中华人民共和国二级建造师注册证书", True,
              "住房和城乡建设局", 3, "浙2{digits}", (("specialty", "建筑工程"),), city_only=True),
    _DemoType("11100000000019713D071", "道路运输从业人员从业资格证", True, "交通运输局", 6,
              "{holder}", (("qualification", "道路货物运输驾驶员"),)),
    _DemoType("11100000000019713D075", "巡游出租汽车驾驶员证", True, "交通运输局", 6,
              "{holder}"),
    _DemoType("11100000MB03271699001", "中华人民共和国不动产权证（书）", True,
              "自然资源和规划局", None, "浙（{year}）{place}不动产权第{seq}号",
              (("usage", "城镇住宅用地/住宅"),)),
    _DemoType("111000000000131433001", "结婚证", True, "民政局", None,
              "J{division}-{year}-{seq}"),
    _DemoType("11100000MB0143028R001", "营业执照", False, "市场监督管理局", None, "{holder}",
              (("enterprise_type", "有限责任公司（自然人投资或控股）"),
               ("registered_capital", "500万元人民币"))),
    _DemoType("11100000000013338W050", "建筑施工企业安全生产许可证", False,
              "住房和城乡建设局", 3, "（浙）JZ安许证字[{year}]{seq}",
              (("permitted_scope", "建筑施工"),), city_only=True),
    _DemoType("11100000000019713D008", "道路运输经营许可证", False, "交通运输局", 4,
              "浙交运管许可湖字{division}{seq}号", (("business_scope", "道路普通货物运输"),)),
)
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾沈钱沈姚"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰涛明超秀霞平刚桂英华建国志红文博宇浩然子涵欣怡"
_ORG_WORDS = ("恒达", "鼎盛", "华源", "嘉禾", "瑞丰", "宏泰", "新锐", "信诚", "安澜", "德润",
              "太湖", "南太湖", "竹乡", "丝府")
_INDUSTRIES = ("建筑工程", "建材", "物流", "科技", "运输", "商贸", "竹木制品", "机电安装")


def _organisation_code(body8: str) -> str:
    """GB 11714: the organisation code with its check character."""
    weights = (3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(_ALNUM.index(c) * w for c, w in zip(body8, weights, strict=True))
    check = 11 - total % 11
    return body8 + {10: "X", 11: "0"}.get(check, str(check))


def _uscc(kind: str, division: str, body8: str) -> str:
    first17 = f"{kind}{division}{_organisation_code(body8)}"
    code = first17 + str(uscc.calc_check_digit(first17))
    if not uscc.is_valid(code):
        raise ValueError("generated USCC does not validate")
    return code


@cache  # the same few agencies on every row
def _agency(division: str, department: str) -> tuple[str, str]:
    name = f"{_DIVISIONS[division]}{department}"
    digest = hashlib.sha256(name.encode()).digest()
    return (name if division == "330500" else f"湖州市{name}",
            _uscc("11", division, f"{int.from_bytes(digest[:8], 'big') % 10**8:08d}"))


def _resident_id(rng: random.Random) -> str:
    for _ in range(1000):
        born = date(rng.randint(1960, 2004), rng.randint(1, 12), rng.randint(1, 28))
        first17 = f"{rng.choice(_BIRTH_PLACES)}{born:%Y%m%d}{rng.randrange(1000):03d}"
        number = first17 + str(ric.calc_check_digit(first17 + "0"))
        if ric.is_valid(number):
            return number
    raise ValueError("no valid 身份证号 could be made")


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def demo_rows(count: int, *, seed: int = 330500, today: date | None = None
              ) -> Iterator[dict[str, Any]]:
    """``count`` realistic Huzhou licences: about 3% revoked, 1% suspended, 3% expired."""
    rng = random.Random(seed)  # noqa: S311 - demo data, reproducible on purpose
    today = today or datetime.now(CHINA_TZ).date()
    for n in range(count):
        kind = _TYPES[n % len(_TYPES)]
        division = "330500" if kind.city_only else rng.choice(tuple(_DIVISIONS))
        issuer_name, issuer_code = _agency(division, kind.department)
        roll = rng.random()
        state = "revoked" if roll < 0.03 else "suspended" if roll < 0.04 else "valid"
        expired = kind.years is not None and 0.04 <= roll < 0.07
        span = 365 * (kind.years or 8)
        if expired:
            issued = today - timedelta(days=span + rng.randint(2, 700))
        else:
            issued = today - timedelta(days=rng.randint(1, max(2, span - 30)))
        valid_until = None if kind.years is None else (
            _add_years(issued, kind.years) - timedelta(days=1))
        if kind.person:
            holder_code, holder_type = _resident_id(rng), "111"
            holder_name = rng.choice(_SURNAMES) + "".join(
                rng.choice(_GIVEN) for _ in range(rng.choice((1, 2))))
        else:
            org_division = rng.choice(tuple(_DIVISIONS))
            holder_code = _uscc("91", org_division, f"{rng.randrange(10**8):08d}")
            holder_type = "001"
            holder_name = (f"湖州{rng.choice(_ORG_WORDS)}{rng.choice(_INDUSTRIES)}有限公司")
        seq = f"{n:07d}"
        number = kind.number.format(digits=f"{rng.randrange(10**12):012d}", year=issued.year,
                                    seq=seq, holder=holder_code, division=division,
                                    place=_DIVISIONS[division])
        serial = f"{issued.year}{n:08d}"
        body = f"{kind.code}{issuer_code}{serial}001"
        identifier = (f"1.2.156.3005.2.{kind.code}.{issuer_code}.{serial}.001."
                      f"{iso7064_check_char(body)}")
        row: dict[str, Any] = {
            "identifier": identifier, "type_code": kind.code, "type_name": kind.name,
            "number": number, "issuer_name": issuer_name, "issuer_code": issuer_code,
            "issue_date": issued.isoformat(), "holder_name": holder_name,
            "holder_code": holder_code, "holder_code_type": holder_type,
            "valid_from": issued.isoformat(),
            "valid_until": None if valid_until is None else valid_until.isoformat(),
        }
        if kind.fields:
            row["fields"] = dict(kind.fields)
        row["state"] = state
        yield row


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    if args.count < 1:
        print("ecert-gateway licences demo: --count must be at least 1", file=sys.stderr)
        return 1
    path = settings.data_dir / "demo-licences.jsonl"
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out, progress_bar(total=args.count, desc="generating",
                                             unit=" licences",
                                             enabled=wanted(args.quiet)) as bar:
        for row in demo_rows(args.count, seed=args.seed):
            out.write(orjson.dumps(row) + b"\n")
            bar.update()
    tmp.replace(path)
    print(f"wrote {args.count} demo licences to {path}")
    return _run_import(path, args, settings)


# ----------------------------------------------------------------------- parser


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``licences import`` and ``licences demo`` to the command line."""
    licences = subparsers.add_parser("licences", help="Huzhou's licence library")
    sub = licences.add_subparsers(dest="action", required=True,
                                  parser_class=CommandParser)
    imp = sub.add_parser("import", help="import licences from JSON Lines or CSV")
    imp.add_argument("file")
    imp.add_argument("--quiet", "--no-progress", action="store_true",
                     help="no progress bar (there is none when stderr is not a terminal)")
    imp.set_defaults(func=_import)
    demo = sub.add_parser("demo", help="generate and import realistic Huzhou licences")
    demo.add_argument("--count", type=int, default=10_000)
    demo.add_argument("--seed", type=int, default=330500)
    demo.add_argument("--quiet", "--no-progress", action="store_true",
                      help="no progress bars (there are none when stderr is not a terminal)")
    demo.set_defaults(func=_demo)
