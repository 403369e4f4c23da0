"""Serving the application: what ``ecert-gateway serve`` runs, in place of ``web.run_app``.

Two things are done differently from ``run_app``:

* **Stop signals.** The first SIGTERM or SIGINT starts one graceful stop: the
  listening socket closes, requests in flight finish (up to
  ``shutdown_timeout_s``), then the cleanup contexts close, last opened first.
  A signal that comes while stopping is logged and changes nothing. Under
  ``run_app`` a second signal raised ``GracefulExit`` again, and its exit path
  then cancelled every task, the stop under way among them: cleanup contexts
  were cut off half-way (the licence store closing, the audit writer draining),
  requests in flight went unanswered, and the process ended with
  ``CleanupError('Multiple errors on cleanup stage', [CancelledError(), ...])``
  and exit status 1.
* **Requests the HTTP parser refuses** (a header field over
  ``gateway.web.app.MAX_HEADER_FIELD_BYTES``, a request line over 8,190 bytes, a
  malformed message) never reach the application and its middleware. aiohttp
  answered them with a text/plain 400 quoting the first 100 bytes of the
  offending line (the secret of an ``Authorization`` header, say) and logged an
  ERROR with a traceback quoting them again. Here the answer is a problem body
  that echoes nothing of the request (431 for a line over the limit, else 400),
  and the log gets one WARNING line that names the error's class, never its
  bytes.

* **The lane** (``gateway.web.lane``): a simple request to one of its routes that
  arrives on an idle connection is answered by the lane rather than by
  aiohttp's per-request machinery, with the same middleware and handler.

The event loop is uvloop's when it is installed and ``uvloop`` is on (the
default), else asyncio's own; the start-up log line ``event loop`` names it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http import RawRequestMessage
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.streams import StreamReader
from aiohttp.web_request import BaseRequest

from gateway.settings import Settings
from gateway.web.balance import BALANCE_KEY, BalancedSockSite, ConnectionBalance, Slots
from gateway.web.lane import Lane, LaneRequest, lanes_of
from gateway.web.logs import flush_logs, new_request_id, request_id_var
from gateway.web.problems import Problem, problem_response

__all__ = ["STOP_SIGNALS", "GatewayRunner", "loop_factory", "serve"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

WorkerSlot = tuple[Slots, int, int]
"""A worker's place in the connection balance: the shared slots, its index, how many."""

_log = logging.getLogger("gateway.http")

PARENT_CHECK_S = 1.0
"""How often a worker looks whether its supervisor is still there."""


def _refusal(exc: HttpProcessingError) -> Problem:
    """The problem a request refused by the parser is answered with: nothing of its bytes."""
    if isinstance(exc, LineTooLong):
        return Problem(431, "Request header fields too large",
                       "the request line or a header field is longer than the gateway accepts")
    return Problem(400, "Bad request", "the request is not well-formed HTTP/1.1")


class _RequestHandler(web.RequestHandler):
    """aiohttp's connection protocol, answering parser refusals as problems and simple
    requests to the lane's routes through the lane (module doc)."""

    def __init__(self, manager: web.Server, *, lanes: Mapping[tuple[str, str], Lane],
                 **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._lanes = lanes
        self._lane_task: asyncio.Task[None] | None = None  # the request the lane answers

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if not self._lanes or waiter is None or waiter.done():
            # aiohttp is on a request of this connection (or about to be): its way.
            super().data_received(data)
            return
        # Idle: the requests parsed now are looked at before aiohttp's loop is woken.
        self._waiter = None
        try:
            super().data_received(data)
        finally:
            self._waiter = waiter
        if self._force_close or self._close:
            waiter.cancel()
            return
        self._dispatch()

    def _dispatch(self) -> None:
        """Give the next queued request to the lane when it may take it, else wake aiohttp's
        loop for the queue (never while the lane answers: answers leave in order)."""
        if self._lane_task is not None or not self._messages:
            return
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        message, payload = self._messages[0]
        lane = self._lane_for(message, payload)
        if lane is None or not isinstance(message, RawRequestMessage):
            waiter.set_result(None)
            return
        self._messages.popleft()
        if self._parser is not None:  # as aiohttp's loop does for a request it takes
            self._parser.message_consumed()
        if isinstance(self._manager, _Server):
            self._manager.requests_count += 1
            self._manager.lane_taken += 1
        self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout
        self._lane_task = self._loop.create_task(self._answer(lane, message, payload))
        if self._buffer_paused and len(self._messages) <= self._msg_queue_resume_size:
            # A full queue paused reading; drained enough, read on, as aiohttp's loop does
            # (what is parsed meanwhile waits in the queue: the lane is busy).
            self._resume_reading_if_drained()

    def _lane_for(self, message: object, payload: object) -> Lane | None:
        if (not isinstance(message, RawRequestMessage) or not isinstance(payload, StreamReader)
                or message.upgrade or self._upgraded or self._payload_parser is not None):
            return None
        lane = self._lanes.get((message.method, message.path))
        if lane is None or payload.exception() is not None or hdrs.EXPECT in message.headers:
            return None  # (aiohttp answers an expectation before the body is sent)
        return lane

    async def _answer(self, lane: Lane, message: RawRequestMessage,
                      payload: StreamReader) -> None:
        keep = False
        try:
            answer, keep = await lane.answer(message, payload, self._peername, self._lane_error)
            if self.transport is not None and not self._force_close:
                self.transport.write(answer)
        except asyncio.CancelledError:
            self.force_close()
            raise
        except Exception as exc:  # writing the answer failed: as aiohttp's loop would
            self.log_exception("Unhandled exception", exc_info=exc)
            keep = False
        finally:
            if payload.is_eof() or self._force_close:
                self._lane_task = None
        if not payload.is_eof() and not self._force_close:
            await self._linger(payload)
            self._lane_task = None
        if not keep or self._close or not payload.is_eof():
            self.force_close()
            return
        loop = self._loop
        self._next_keepalive_close_time = loop.time() + self._keepalive_timeout
        if self._keepalive_handle is None and self._keepalive_timeout > 0:
            self._keepalive_handle = loop.call_at(self._next_keepalive_close_time,
                                                  self._process_keepalive)
        self._dispatch()

    async def _linger(self, payload: StreamReader) -> None:
        """Read and drop the rest of a body the answer came before, for up to the lingering
        time, as aiohttp's loop does: closing with unread bytes would reset the connection
        and could lose the answer on its way to the client."""
        end = self._loop.time() + self._lingering_time
        try:
            while not payload.is_eof() and self._loop.time() < end:
                async with asyncio.timeout(end - self._loop.time()):
                    await payload.readany()
        except TimeoutError:
            pass

    def _peername(self) -> object:
        return None if self.transport is None else self.transport.get_extra_info("peername")

    def _lane_error(self, request: LaneRequest, exc: BaseException) -> web.StreamResponse:
        return self.handle_error(request, 500, exc)  # type: ignore[arg-type]

    async def shutdown(self, timeout: float | None = 15.0) -> None:  # noqa: ASYNC109 - aiohttp's
        """Let the request the lane answers finish (up to ``timeout``), then aiohttp's."""
        task = self._lane_task
        if task is not None:
            await asyncio.wait({task}, timeout=timeout)
        await super().shutdown(timeout)

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """A problem body for a request the parser refused; aiohttp's answer otherwise."""
        if not isinstance(exc, HttpProcessingError) or status >= 500:
            return super().handle_error(request, status, exc, message)
        problem = _refusal(exc)
        request_id = new_request_id(request)  # a new one: the refused request keeps no headers
        context = request_id_var.set(request_id)
        try:
            # A bad method is what TLS or other non-HTTP traffic to the port looks like:
            # noise, as aiohttp also judges it.
            level = logging.DEBUG if isinstance(exc, BadHttpMethod) else logging.WARNING
            _log.log(level, "request refused by the HTTP parser",
                     extra={"status": problem.status, "error": type(exc).__name__,
                            "remote": request.remote})
        finally:
            request_id_var.reset(context)
        if request.writer.output_size > 0:
            raise ConnectionError("a response was sent already; cannot answer the error")
        response = problem_response(problem, request_id)
        response.headers["X-Request-Id"] = request_id
        response.force_close()
        return response


class _Server(web.Server):
    """The low-level server, making a ``_RequestHandler`` for each connection."""

    def __init__(self, *args: Any, lanes: Mapping[tuple[str, str], Lane], **kwargs: Any
                 ) -> None:
        super().__init__(*args, **kwargs)
        self.lanes = lanes
        self.lane_taken = 0
        """Requests the lane answered, of ``requests_count`` (all requests served)."""
        self.balance: ConnectionBalance | None = None
        """The worker's connection balance, told of every connection (``gateway.web.balance``)."""

    def __call__(self) -> web.RequestHandler:
        return _RequestHandler(self, loop=self._loop, lanes=self.lanes, **self._kwargs)

    def connection_made(self, handler: web.RequestHandler,
                        transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if self.balance is not None:
            self.balance.opened()

    def connection_lost(self, handler: web.RequestHandler,
                        exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        if self.balance is not None:
            self.balance.closed()


class GatewayRunner(web.AppRunner):
    """``web.AppRunner`` serving through ``_Server``: parser refusals as problems, and the
    lane when ``lane`` is on (module doc). ``serve`` runs one; tests run one too."""

    def __init__(self, app: web.Application, *, lane: bool = True, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._lane = lane

    async def _make_server(self) -> web.Server:
        # aiohttp builds its Server in Application._make_handler, with no hook for the
        # protocol class: the same server is built again as a _Server, same arguments.
        made = await super()._make_server()  # starts the application, then builds its server
        return _Server(made.request_handler, request_factory=made.request_factory,
                       handler_cancellation=made.handler_cancellation,
                       loop=asyncio.get_running_loop(),
                       lanes=lanes_of(self.app) if self._lane else {}, **made._kwargs)


async def _watch_parent(parent_pid: int, stopping: asyncio.Event) -> None:
    """Stop when the process that started this one is gone (a worker whose supervisor was
    killed outright is re-parented): a worker never outlives its supervisor for long."""
    while not stopping.is_set():
        await asyncio.sleep(PARENT_CHECK_S)
        if os.getppid() != parent_pid:
            _log.warning("supervisor gone: stopping")
            stopping.set()


async def _serve(app: web.Application, settings: Settings, *, sock: socket.socket | None,
                 stop_signals: tuple[signal.Signals, ...], parent_pid: int | None,
                 on_serving: Callable[[], object] | None,
                 balance: WorkerSlot | None) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if stopping.is_set():
            _log.warning("%s again: already stopping; the stop under way continues", sig.name)
            return
        _log.info("%s: stopping", sig.name)
        stopping.set()

    for sig in stop_signals:  # before start-up: a signal then stops once start-up is done
        loop.add_signal_handler(sig, on_signal, sig)
    watch = None
    if parent_pid is not None:
        watch = asyncio.create_task(_watch_parent(parent_pid, stopping), name="parent-watch")
    runner = GatewayRunner(app, access_log=None, shutdown_timeout=settings.shutdown_timeout_s,
                           lane=settings.http_lane)
    await runner.setup()
    try:
        if not stopping.is_set():
            site: web.BaseSite
            if sock is None:
                site = web.TCPSite(runner, settings.host, settings.port)
            elif balance is None:
                site = web.SockSite(runner, sock)
            else:
                site = _balanced_site(app, runner, sock, balance)
            await site.start()
            if on_serving is not None:
                on_serving()
            await stopping.wait()
    finally:
        if watch is not None:
            watch.cancel()
        await runner.cleanup()
        _log.info("stopped")
        # Stopped: from here a signal could only turn a clean exit into a kill. (Removing
        # the loop's handler gives a signal its default action back; replaced at once.)
        for sig in stop_signals:
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)


def _balanced_site(app: web.Application, runner: GatewayRunner, sock: socket.socket,
                   slot: WorkerSlot) -> BalancedSockSite:
    slots, index, workers = slot
    site = BalancedSockSite(runner, sock, slots=slots, index=index, workers=workers)
    server = runner.server
    if isinstance(server, _Server):
        server.balance = site.balance
    holder = app.get(BALANCE_KEY)
    if holder is not None:
        holder.current = site.balance
    return site


def loop_factory(settings: Settings) -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The event loop to serve on, by name: uvloop's when ``settings.uvloop`` is on and it
    is installed, else asyncio's own."""
    if settings.uvloop:
        try:
            import uvloop  # noqa: PLC0415 - optional: absent, the standard loop serves
        except ImportError:
            _log.info("uvloop is not installed: serving on the asyncio event loop")
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop


def serve(app: web.Application, settings: Settings, *, sock: socket.socket | None = None,
          stop_signals: tuple[signal.Signals, ...] = STOP_SIGNALS,
          parent_pid: int | None = None,
          on_serving: Callable[[], object] | None = None,
          balance: WorkerSlot | None = None) -> None:
    """Serve ``app`` on ``settings.listen`` until SIGTERM or SIGINT, then stop gracefully:
    stop accepting, let requests in flight finish (``shutdown_timeout_s``), close every
    cleanup context. Signals repeated while stopping are logged and ignored.

    A worker of ``gateway.web.workers`` passes the listening socket it inherited
    (``sock``, instead of binding ``listen``), the signals that stop it, and its
    supervisor's pid (it stops when that process is gone), and ``on_serving`` is called
    once the application started and the socket is served. ``balance``: the workers'
    shared slots, this worker's index and the number of workers; the worker then
    balances its connections with the others' (``gateway.web.balance``)."""
    name, new_loop = loop_factory(settings)
    _log.info("event loop", extra={"loop": name})
    try:
        with asyncio.Runner(loop_factory=new_loop) as runner:
            runner.run(_serve(app, settings, sock=sock, stop_signals=stop_signals,
                              parent_pid=parent_pid, on_serving=on_serving,
                              balance=balance))
    finally:
        flush_logs()  # a forked worker leaves with os._exit: no logging.shutdown
