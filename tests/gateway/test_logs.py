"""The JSON-lines log handler: batched writes that lose no line, and the cheap access record."""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from gateway.web.logs import (
    AccessLine,
    JsonFormatter,
    JsonLinesHandler,
    StaticFields,
    flush_logs,
    log_access,
    request_id_var,
)


class _Stream:
    """A text stream that keeps each write apart (a write is one system call on stderr)."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def lines(self) -> list[dict[str, object]]:
        with self.lock:
            return [orjson.loads(line) for text in self.writes for line in text.splitlines()]


def _logger(handler: logging.Handler, name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def _wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def test_lines_are_written_together_within_the_interval() -> None:
    """A burst of lines is one write, made within the interval, every line in order."""
    stream = _Stream()
    handler = JsonLinesHandler(stream, interval=0.1)  # type: ignore[arg-type]
    log = _logger(handler, "test.logs.burst")
    started = time.monotonic()
    for i in range(200):
        log.info("line", extra={"n": i})
    assert [] == stream.writes  # nothing yet: the burst waits for the flusher
    _wait_for(lambda: stream.writes)
    assert time.monotonic() - started < 2.0
    assert 1 == len(stream.writes)
    assert list(range(200)) == [line["n"] for line in stream.lines()]


def test_a_warning_is_written_at_once_after_what_waited() -> None:
    """A warning does not wait, and the lines queued before it come first."""
    stream = _Stream()
    handler = JsonLinesHandler(stream, interval=60.0)  # type: ignore[arg-type]
    log = _logger(handler, "test.logs.warning")
    log.info("first")
    log.warning("second")
    assert ["first", "second"] == [line["message"] for line in stream.lines()]
    assert ["INFO", "WARNING"] == [line["level"] for line in stream.lines()]


def test_flush_logs_writes_what_is_pending() -> None:
    """``flush_logs`` (the end of ``serve``) writes every handler's pending lines."""
    stream = _Stream()
    handler = JsonLinesHandler(stream, interval=60.0)  # type: ignore[arg-type]
    log = _logger(handler, "test.logs.flush")
    log.info("pending")
    assert [] == stream.writes
    flush_logs()
    assert ["pending"] == [line["message"] for line in stream.lines()]


def test_a_full_buffer_is_written_without_waiting() -> None:
    """However long the interval, the buffer holds a bounded number of lines."""
    stream = _Stream()
    handler = JsonLinesHandler(stream, interval=60.0)  # type: ignore[arg-type]
    log = _logger(handler, "test.logs.full")
    for i in range(2000):
        log.info("line", extra={"n": i})
    written = len(stream.lines())
    assert 1500 <= written < 2000
    flush_logs()
    assert list(range(2000)) == [line["n"] for line in stream.lines()]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_writes_its_lines_once_and_the_parents_never(tmp_path: Path) -> None:
    """Lines pending at a fork are written before it (not by parent and child both); the
    child's own lines are written by its own flush."""
    out = tmp_path / "log.jsonl"
    with out.open("a", encoding="utf-8") as file:
        handler = JsonLinesHandler(file, interval=60.0)
        log = _logger(handler, "test.logs.fork")
        log.info("parent before fork")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                log.info("child line")
                time.sleep(0.2)  # the child's flusher thread is a new one: it must run
                log.info("child last line")
                flush_logs()
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert 0 == status
        log.info("parent after fork")
        flush_logs()
    messages = [orjson.loads(line)["message"] for line in out.read_text().splitlines()]
    assert sorted(messages) == sorted(
        ["parent before fork", "child line", "child last line", "parent after fork"])
    assert "parent before fork" == messages[0]


@pytest.mark.parametrize("stamp", [0.0, 1.0005, 1_765_000_000.123456, 1_765_000_000.999,
                                   1_765_000_059.5, 1_765_000_059.9999996, 1_765_000_001.0009995])
def test_time_field_is_iso_8601_utc_to_the_millisecond(stamp: float) -> None:
    """The time text kept per second renders as ``datetime.isoformat`` does (ms, UTC)."""
    record = logging.makeLogRecord({"msg": "x", "created": stamp})
    shown = orjson.loads(JsonFormatter().format(record))["time"]
    expected = datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds")
    assert expected == shown


def test_log_access_writes_the_line_logging_would(tmp_path: Path) -> None:
    """``log_access`` renders the line itself when one ``JsonLinesHandler`` would get it:
    the same line ``Logger.info`` with those fields writes, a worker's field and the
    request id in context included; with any other arrangement (a second handler) every
    handler gets a record."""

    def access(given: dict[str, object]) -> None:
        log_access(log, [AccessLine(at=time.time(), **given)])  # type: ignore[arg-type]

    fields = {"request_id": "req-9", "method": "GET", "route": "/healthz", "status": 200,
              "duration_ms": 0.5, "caller": None}
    parent = logging.getLogger("test.direct")
    parent.handlers[:] = []
    parent.propagate = False
    log = logging.getLogger("test.direct.access")
    log.setLevel(logging.INFO)
    stream = _Stream()
    handler = JsonLinesHandler(stream, interval=60.0)  # type: ignore[arg-type]
    handler.addFilter(StaticFields(worker=1))
    parent.addHandler(handler)
    try:
        token = request_id_var.set("in-context")
        try:
            access(fields)
            log.info("request", extra=fields)
        finally:
            request_id_var.reset(token)
        handler.flush()
        direct, via_logging = stream.lines()
        made = [datetime.fromisoformat(str(line.pop("time"))) for line in (direct, via_logging)]
        assert 0 <= (made[1] - made[0]).total_seconds() < 1.0
        assert {**fields, "worker": 1, "level": "INFO", "logger": log.name,
                "message": "request"} == direct
        assert list(via_logging.items()) == list(direct.items())
        # The line is cut from a rendered one and filled in: an id with JSON's special
        # characters, another route, status, caller and duration give the same text too.
        odd = {"request_id": 'a"b\\c d', "method": "POST", "route": "/v1/verifications",
               "status": 503, "duration_ms": 1234.5, "caller": "window"}
        access(odd)
        log.info("request", extra=odd)
        handler.flush()
        direct, via_logging = stream.lines()[2:]
        for line in (direct, via_logging):
            line.pop("time")
        assert {**odd, "worker": 1, "level": "INFO", "logger": log.name,
                "message": "request"} == direct
        assert list(via_logging.items()) == list(direct.items())

        captured: list[logging.LogRecord] = []

        class _Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                captured.append(record)

        parent.addHandler(_Keep())
        access(fields)
        handler.flush()
        assert [("req-9", 1)] == [(r.request_id, r.worker) for r in captured]  # type: ignore[attr-defined]
        assert 5 == len(stream.lines())
        # Another worker's filter in place of the first: its fields, never the text made
        # with the first filter's (kept by their content, not by the filter's identity).
        parent.handlers[:] = [handler]
        handler.filters[:] = [StaticFields(worker=2)]
        access(fields)
        handler.flush()
        assert 2 == stream.lines()[-1]["worker"]
    finally:
        parent.handlers[:] = []


def test_a_closed_stream_is_not_written_and_a_replaced_handler_flushes(
        tmp_path: Path) -> None:
    """Lines pending when the stream closed are dropped without an error report (the
    stream can take nothing more); closing the handler writes what is pending first."""
    out = tmp_path / "log.jsonl"
    file = out.open("a", encoding="utf-8")
    handler = JsonLinesHandler(file, interval=60.0)
    log = _logger(handler, "test.logs.closed")
    log.info("kept")
    handler.close()
    log.info("after close")
    file.close()
    reported: list[logging.LogRecord] = []
    handler.handleError = reported.append  # type: ignore[assignment]
    flush_logs()
    handler.flush()
    assert ["kept"] == [orjson.loads(line)["message"] for line in out.read_text().splitlines()]
    assert [] == reported
