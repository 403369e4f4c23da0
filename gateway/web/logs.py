"""Structured JSON logs with a request id on every line."""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import secrets
import sys
from datetime import UTC, datetime

import orjson
from aiohttp import web

__all__ = [
    "REQUEST_ID_KEY",
    "JsonFormatter",
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

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as JSON."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        entry.update({key: value for key, value in record.__dict__.items()
                      if key not in _STANDARD and not key.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str) -> None:
    """Send JSON lines to standard error."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
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


def _next_request_id() -> str:
    return _ids.next()


def request_id_of(request: web.Request) -> str | None:
    """The id ``gateway.web.middleware`` gave this request."""
    return request.get(REQUEST_ID_KEY)


def new_request_id(request: web.BaseRequest) -> str:
    """The caller's ``X-Request-Id`` when it is sane (1..64 printable ASCII), else a new id."""
    given = request.headers.get("X-Request-Id", "")
    if 0 < len(given) <= 64 and given.isascii() and given.isprintable():
        return given
    return _next_request_id()
