"""Structured JSON logs with a request id on every line.

The lines go to standard error through ``JsonLinesHandler``, which writes them in
batches: a line waits at most ``FLUSH_INTERVAL_S`` (a warning or worse is written at
once), so a busy gateway makes one write for many access-log lines instead of one
system call per request. Pending lines are written at exit (``logging.shutdown``), at
the end of ``gateway.web.runner.serve`` (a forked worker leaves with ``os._exit``) and
before a fork. A process killed outright loses at most the last ``FLUSH_INTERVAL_S`` of
lines; the audit log, not this one, is the record of what was verified.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import secrets
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple, TextIO, cast

import orjson
from aiohttp import web

__all__ = [
    "FLUSH_INTERVAL_S",
    "AccessLine",
    "REQUEST_ID_KEY",
    "JsonFormatter",
    "JsonLinesHandler",
    "StaticFields",
    "log_access",
    "flush_logs",
    "configure_logging",
    "new_request_id",
    "request_id_of",
    "request_id_var",
]

REQUEST_ID_KEY = web.RequestKey("request_id", str)

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request id, extras."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def format_time(self, created: float) -> str:
        # datetime.isoformat(timespec="milliseconds") of the time, UTC, with the text of
        # the second kept: a busy second renders only its milliseconds. Microseconds are
        # rounded as datetime.fromtimestamp rounds them, then cut to milliseconds.
        second = int(created)
        micros = round((created - second) * 1_000_000)
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        if second != self._second:
            self._stamp = datetime.fromtimestamp(second, UTC).isoformat()[:-6]  # no "+00:00"
            self._second = second
        return f"{self._stamp}.{micros // 1000:03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as JSON."""
        fields = {key: value for key, value in record.__dict__.items()
                  if key not in _STANDARD and not key.startswith("_")}
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return self.render(record.created, record.levelname, record.name,
                           record.getMessage(), fields)

    def render(self, created: float, level: str, logger: str, message: str,
               fields: dict[str, object]) -> str:
        """One line: time, level, logger, message, the request id in context, ``fields``."""
        entry: dict[str, object] = {"time": self.format_time(created), "level": level,
                                    "logger": logger, "message": message}
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        entry.update(fields)
        return orjson.dumps(entry, default=str).decode()


FLUSH_INTERVAL_S = 0.05
"""How long a line below WARNING may wait in ``JsonLinesHandler``'s buffer."""

_MAX_PENDING = 512
"""Lines a buffer holds before it is written whatever the time."""

_handlers: weakref.WeakSet[JsonLinesHandler] = weakref.WeakSet()


class JsonLinesHandler(logging.Handler):
    """JSON lines (``JsonFormatter``) to ``stream``, written in batches (module doc).

    ``emit`` runs under the handler's lock (``logging.Handler.handle``) and only appends
    the formatted line; a daemon thread of the handler writes what is pending
    ``FLUSH_INTERVAL_S`` after the first line of a batch arrived. A record at WARNING or
    above, or the ``_MAX_PENDING``-th pending line, writes the batch at once.
    """

    def __init__(self, stream: TextIO, *, interval: float = FLUSH_INTERVAL_S) -> None:
        super().__init__()
        self.stream = stream
        self.interval = interval
        self.setFormatter(JsonFormatter())
        self._pending: list[str | _QueuedAccess] = []
        self._wake = threading.Event()
        self._flusher_pid = 0  # the process whose flusher thread runs (none after a fork)
        _handlers.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        """Format the record and queue its line (under the handler's lock)."""
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._queue(line, record.levelno)

    def queue_access(self, logger: str, lines: Sequence[AccessLine]) -> None:
        """Queue access lines of ``logger`` at INFO (``log_access``): rendered when their
        batch is written, with this handler's filters and formatter as they are now."""
        formatter = cast("JsonFormatter", self.formatter)
        filters = cast("list[StaticFields]", self.filters[:])  # log_access checked them
        with self.lock:  # type: ignore[union-attr] # made by Handler.__init__
            for line in lines:
                self._queue((logger, filters, formatter, line), logging.INFO)

    def _queue(self, line: str | _QueuedAccess, level: int) -> None:
        pending = self._pending
        pending.append(line)
        if level >= logging.WARNING or len(pending) >= _MAX_PENDING:
            self._write()
        elif len(pending) == 1:
            if self._flusher_pid != os.getpid():
                self._start_flusher()
            self._wake.set()

    def flush(self) -> None:
        """Write every pending line now."""
        with self.lock:  # type: ignore[union-attr] # made by Handler.__init__
            self._write()

    def _write(self) -> None:
        if not self._pending:
            return
        try:
            text = "\n".join([line if isinstance(line, str) else _access_text(line)
                              for line in self._pending]) + "\n"
        except Exception:
            self._pending.clear()
            self.handleError(logging.makeLogRecord({"msg": "log lines not rendered"}))
            return
        self._pending.clear()
        if getattr(self.stream, "closed", False):
            return  # nothing can be written to it any more (nor would a StreamHandler)
        try:
            self.stream.write(text)
            self.stream.flush()
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": "log write failed"}))

    def close(self) -> None:
        """Write what is pending, then close as every handler does."""
        self.flush()
        super().close()

    def _start_flusher(self) -> None:
        self._flusher_pid = os.getpid()
        self._wake.clear()
        threading.Thread(target=self._flush_loop, args=(weakref.ref(self),),
                         name="log-flusher", daemon=True).start()

    @staticmethod
    def _flush_loop(ref: weakref.ref[JsonLinesHandler]) -> None:
        while (handler := ref()) is not None:
            wake, interval = handler._wake, handler.interval
            del handler  # hold no reference while waiting
            if not wake.wait(timeout=1.0):
                continue
            time.sleep(interval)
            wake.clear()  # a line queued from here on is written by this flush or sets it again
            if (handler := ref()) is not None:
                handler.flush()
                del handler


class StaticFields(logging.Filter):
    """Adds the same fields to every record a handler writes (a worker's index)."""

    def __init__(self, **fields: object) -> None:
        super().__init__()
        self.fields = fields
        self.key = orjson.dumps(fields, default=str)
        """The fields' content, naming the access-line text made with them (``log_access``):
        an identity could be reused by another filter once this one is gone."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Set the fields on the record; never drops it."""
        record.__dict__.update(self.fields)
        return True


def _direct_handler(logger: logging.Logger) -> JsonLinesHandler | None:
    # The one handler a record of ``logger`` reaches, when that is a JsonLinesHandler with
    # its own JsonFormatter, enabled at INFO, with StaticFields filters at most, and the
    # logger has no filter: then rendering the line here is what logging would do. Any
    # other arrangement (a test's capturing handler, a filter, a second handler) is None.
    if logger.filters:
        return None
    handler: logging.Handler | None = None
    current: logging.Logger | None = logger
    while current is not None:  # no list made: this runs for every batch of access lines
        handlers = current.handlers
        if handlers:
            if handler is not None or len(handlers) != 1:
                return None
            handler = handlers[0]
        if not current.propagate:
            break
        current = current.parent
    if (type(handler) is not JsonLinesHandler or type(handler.formatter) is not JsonFormatter
            or handler.level > logging.INFO):
        return None
    for static in handler.filters:
        if type(static) is not StaticFields:
            return None
    return handler


class AccessLine(NamedTuple):
    """One answered request as its access-log line tells it."""

    at: float
    """``time.time()`` when it was answered."""
    request_id: str
    method: str
    route: str
    status: int
    duration_ms: float
    caller: str | None


def log_access(logger: logging.Logger, lines: Sequence[AccessLine]) -> None:
    """The access-log lines of some answered requests, at INFO on ``logger``.

    When they would reach one ``JsonLinesHandler`` alone (``configure_logging``'s
    arrangement, a worker's ``StaticFields`` included), they are queued on that handler
    as they are, and each line is rendered when its batch is written (``_access_text``):
    the line ``JsonFormatter`` would write for the record, without a ``LogRecord``.
    Otherwise each is logged with ``Logger.info``, so every filter and handler sees its
    record.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    direct = _direct_handler(logger)
    if direct is not None:
        direct.queue_access(logger.name, lines)
        return
    for line in lines:
        logger.info("request", extra={"request_id": line.request_id, "method": line.method,
                                      "route": line.route, "status": line.status,
                                      "duration_ms": line.duration_ms, "caller": line.caller})


_QueuedAccess = tuple[str, list[StaticFields], JsonFormatter, AccessLine]
"""An access line as queued (``JsonLinesHandler.queue_access``): its logger's name, and
the handler's filters (``StaticFields``) and formatter when it was queued."""


def _access_text(queued: _QueuedAccess) -> str:
    """The line ``JsonFormatter`` would write for the access record: the constant text
    kept per logger, method, route, status, caller and filters' fields, filled in."""
    logger, filters, formatter, line = queued
    full = (logger, line.method, line.route, line.status, line.caller,
            *(f.key for f in filters))
    parts = _access_parts.get(full)
    if parts is None:
        parts = _access_parts_for(full, filters, formatter)
    request_id = line.request_id
    if '"' in request_id or "\\" in request_id:  # printable ASCII: nothing else to escape
        quoted = orjson.dumps(request_id).decode()
    else:
        quoted = f'"{request_id}"'
    return (f'{{"time":"{formatter.format_time(line.at)}"{parts[0]}{quoted}'
            f'{parts[1]}{line.duration_ms!r}{parts[2]}')


_access_parts: dict[tuple[object, ...], tuple[str, str, str]] = {}
"""The constant text of access lines around their time, request id and duration, per
logger, method, route, status, caller and handler filters' fields (``StaticFields``,
whose fields are set once)."""


def _access_parts_for(key: tuple[object, ...], filters: list[StaticFields],
                      formatter: JsonFormatter) -> tuple[str, str, str]:
    """Cut the line ``JsonFormatter.render`` makes for an access record into its constant
    parts, with markers where the time, the request id and the duration go; rendered by
    ``render`` itself, so the fast line is the same text."""
    name, method, route, status, caller = key[:5]
    fields: dict[str, object] = {"request_id": _MARK_ID, "method": method, "route": route,
                                 "status": status, "duration_ms": _MARK_DURATION,
                                 "caller": caller}
    for static in filters:
        fields.update(static.fields)
    token = request_id_var.set(None)  # the id is a field here, never the context's
    try:
        line = formatter.render(0.0, "INFO", str(name), "request", fields)
    finally:
        request_id_var.reset(token)
    head = '{"time":"' + formatter.format_time(0.0) + '"'
    if not line.startswith(head):
        raise AssertionError("access line that does not start with its time")
    before_id, found_id, after_id = line[len(head):].partition(f'"{_MARK_ID}"')
    middle, found_duration, tail = after_id.partition(f'"{_MARK_DURATION}"')
    if not (found_id and found_duration):
        raise AssertionError("access line without its request id or duration")
    if len(_access_parts) >= 4096:
        _access_parts.clear()
    parts = _access_parts[key] = (before_id, middle, tail)
    return parts


_MARK = secrets.token_hex(8)
_MARK_ID, _MARK_DURATION = f"id-{_MARK}", f"duration-{_MARK}"
"""Stand-ins no name or route can hold by chance: JSON renders them as they are."""


def flush_logs() -> None:
    """Write every ``JsonLinesHandler``'s pending lines (before a process leaves)."""
    for handler in list(_handlers):
        handler.flush()


def _reset_after_fork() -> None:
    for handler in list(_handlers):
        handler._flusher_pid = 0  # the flusher thread did not survive the fork


os.register_at_fork(before=flush_logs, after_in_child=_reset_after_fork)


def configure_logging(level: str) -> None:
    """Send JSON lines to standard error, in batches (``JsonLinesHandler``)."""
    handler = JsonLinesHandler(sys.stderr)
    root = logging.getLogger()
    for replaced in root.handlers:
        replaced.close()  # its pending lines are written while its stream is still open
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class _RequestIds:
    """A random prefix per process and a counter: unique across instances, workers and
    restarts in practice, and cheap (uuid4 costs a system call for randomness on every
    request). A forked worker draws a prefix of its own (``os.register_at_fork``), or
    every worker of one supervisor would number its requests from the same prefix."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = secrets.token_hex(6)
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter):010x}"


_ids = _RequestIds()
os.register_at_fork(after_in_child=_ids.reset)


def request_id_of(request: web.Request) -> str | None:
    """The id ``gateway.web.middleware`` gave this request."""
    return request.get(REQUEST_ID_KEY)


def new_request_id(request: web.BaseRequest) -> str:
    """The caller's ``X-Request-Id`` when it is sane (1..64 printable ASCII), else a new id."""
    given = request.headers.get("X-Request-Id", "")
    if 0 < len(given) <= 64 and given.isascii() and given.isprintable():
        return given
    return _ids.next()
