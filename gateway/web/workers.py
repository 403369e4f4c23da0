"""Several worker processes on one port: what ``ecert-gateway serve --workers N`` runs.

The supervising process binds the listening socket once and forks N workers
that inherit it; each worker builds its own application (stores, audit writer,
caches, event loop) and accepts connections from the one shared socket. Why one
inherited socket rather than N sockets bound with ``SO_REUSEPORT``:

* one accept queue: a worker that crashes or restarts strands no connection in
  a queue of its own (with ``SO_REUSEPORT`` the kernel hashes each connection to
  one socket's queue, and those queued on a closing socket are reset), and an
  idle worker takes the next connection rather than a hashed one;
* the port is bound once, by the supervisor: a port in use is one error at
  start-up, and no other process of the same user can join the port's group
  and receive a share of the gateway's connections;
* it behaves the same where ``SO_REUSEPORT`` does not balance (macOS, BSDs).

What the workers share and how (docs/operators.md, "Workers and scaling"): the
data folder's or PostgreSQL's stores (the audit log serialises its writers
across processes and each learns what the others committed; the trust list,
identities and licences are polled for others' changes), and Redis for the
verdict cache, the replay cache of partner request tokens, the partners' rate
limits, console sessions and trust-list announcements. Without ``redis_url``
those would be per process, so more than one worker is refused
(``WorkersError``).

What each worker answers: ``/healthz`` and ``/readyz`` speak for the worker that
accepted the connection (a load balancer's probe checks one at a time; every
worker serves the same stores); ``/metrics`` shows every worker's counters with
a ``worker`` label (``gateway.web.workermetrics``). Log lines carry ``worker``.

Start-up. The first worker starts alone: it reconciles ``--trust-list`` with
the store (an import is audited once, not once per worker) and makes what a new
data folder lacks; the others start once it serves, and serve the store's list.

Connections. The workers keep their shares of the open connections even (each
stops accepting while it holds more than the least loaded, and closes its excess
after an answer): ``gateway.web.balance``; ``worker_balance = false`` turns it off.

Supervision. SIGTERM or SIGINT to the supervisor stops every worker gracefully
(SIGTERM to each; a worker still running ``shutdown_timeout_s`` + 5 s later is
killed) and the supervisor exits 0 once all have stopped cleanly. A worker that
fails to start stops the serve with exit status 1 (started again, it would fail
the same way). A worker that exits on its own after it served is started again
in its place; more than ``MAX_RESTARTS`` restarts within ``RESTART_WINDOW_S``
stop the whole serve with exit status 1. A worker whose supervisor vanished
(killed with SIGKILL) stops by itself within a second. Workers ignore SIGINT, so
that Ctrl-C in a terminal (sent to the whole process group) stops them once,
through the supervisor.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from pathlib import Path

from aiohttp import web

from gateway.settings import Settings
from gateway.web.app import METRICS_REGISTRY_KEY
from gateway.web.balance import Slots, clear_slot, new_slots
from gateway.web.logs import StaticFields
from gateway.web.runner import STOP_SIGNALS, serve
from gateway.web.workermetrics import WORKER_KEY, Worker, snapshots_ctx

__all__ = ["MAX_RESTARTS", "RESTART_WINDOW_S", "WorkersError", "check_workers",
           "listening_socket", "supervise"]

_log = logging.getLogger("gateway.workers")

MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
_KILL_GRACE_S = 5.0
_BACKLOG = 1024


class WorkersError(ValueError):
    """``workers`` cannot be honoured with these settings; the message says why."""


def check_workers(settings: Settings) -> None:
    """Refuse ``workers > 1`` without Redis (module doc)."""
    if settings.workers > 1 and not settings.redis_url:
        raise WorkersError(
            f"workers = {settings.workers} needs redis_url: the replay cache of partner "
            "request tokens, the partners' rate limits and console sessions are shared "
            "between workers through Redis (without it a token spent at one worker would "
            "be accepted at another); set redis_url (ECERT_REDIS_URL) or run one worker")


def listening_socket(settings: Settings) -> socket.socket:
    """A TCP socket bound to ``settings.listen`` and listening (``OSError`` if it cannot)."""
    host = settings.host or None
    family, kind, proto, _, address = socket.getaddrinfo(
        host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _worker_main(make_app: Callable[[Settings], web.Application], settings: Settings, *,
                 sock: socket.socket, index: int, parent_pid: int, wakeup: tuple[int, int],
                 metrics: Path, serving: Event, slots: Slots | None) -> None:
    """A worker process (forked): build the application and serve on the inherited socket."""
    signal.set_wakeup_fd(-1)  # the supervisor's, inherited with the fork
    for fd in wakeup:
        os.close(fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops us (module doc)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for handler in logging.getLogger().handlers:
        handler.addFilter(StaticFields(worker=index))  # on every line of the worker
    app = make_app(settings)
    app[WORKER_KEY] = Worker(index, metrics)
    app.cleanup_ctx.append(snapshots_ctx(app[METRICS_REGISTRY_KEY]))
    serve(app, settings, sock=sock, stop_signals=(signal.SIGTERM,),
          parent_pid=parent_pid, on_serving=serving.set,
          balance=None if slots is None else (slots, index, settings.workers))


def _describe(code: int | None) -> str:
    if code is None:
        return "running"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


def supervise(make_app: Callable[[Settings], web.Application], settings: Settings) -> int:
    """Serve with ``settings.workers`` processes until SIGTERM or SIGINT (module doc).

    ``make_app(settings)`` is called in each worker. A worker that ends before it
    serves (its stores, keys or ``--trust-list`` refused) stops the serve: starting it
    again would fail the same way. A worker started in place of one that ended after it
    served gets the settings without ``trust_list_file``: that worker had reconciled
    the file with the store, which may hold newer versions since (applied through any
    worker); read again, the file would be a rollback, refused, and the replacement
    would never start. Returns the exit status: 0 when every worker stopped cleanly, 1
    when one did not, one failed to start, or restarts ran away.
    """
    check_workers(settings)
    sock = listening_socket(settings)
    metrics = Path(tempfile.mkdtemp(prefix="ecert-gateway-metrics-"))
    # The workers' connection counts, shared (gateway.web.balance); inherited with the fork.
    slots = new_slots(settings.workers) if settings.worker_balance else None
    context = multiprocessing.get_context("fork")
    received: list[int] = []
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    os.set_blocking(read_fd, False)
    previous_wakeup = signal.set_wakeup_fd(write_fd)

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    parent_pid = os.getpid()

    def start(index: int, *, again: bool = False) -> BaseProcess:
        """Start worker ``index``; ``again``: the store already holds --trust-list."""
        given = replace(settings, trust_list_file=None) if again else settings
        serving[index] = context.Event()
        if slots is not None:
            clear_slot(slots, index)  # what a worker that ended left there counts no more
        process = context.Process(
            target=_worker_main, name=f"ecert-worker-{index}",
            args=(make_app, given),
            kwargs={"sock": sock, "index": index, "parent_pid": parent_pid,
                    "wakeup": (read_fd, write_fd), "metrics": metrics,
                    "serving": serving[index], "slots": slots})
        process.start()
        _log.info("worker started", extra={"worker": index, "pid": process.pid})
        return process

    workers: dict[int, BaseProcess] = {}
    serving: dict[int, Event] = {}  # index -> what its worker sets once it serves
    restarts: deque[float] = deque()
    ended: set[int] = set()  # indexes whose worker ended while stopping (told once)
    failed = False
    stopping_since: float | None = None
    # The first worker starts alone: it reconciles --trust-list with the store (an import
    # is audited once, not once per worker) and makes whatever a new data folder lacks;
    # the others start once it serves, from the store.
    waiting = list(range(1, settings.workers))
    try:
        workers[0] = start(0)
        while True:
            if waiting and serving[0].is_set() and stopping_since is None:
                for index in waiting:
                    workers[index] = start(index, again=True)
                waiting = []
                _log.info("serving", extra={"listen": settings.listen,
                                            "workers": settings.workers})
            if received and stopping_since is None:
                _log.info("%s: stopping %d workers", signal.Signals(received[0]).name,
                          len(workers))
                stopping_since = time.monotonic()
                _signal_all(workers, signal.SIGTERM)
            elif len(received) > 1 and stopping_since is not None:
                _log.warning("signal again: already stopping; the stop under way continues")
                del received[1:]
            live = [p for p in workers.values() if p.exitcode is None]
            if stopping_since is not None:
                if not live:
                    break
                if time.monotonic() - stopping_since > settings.shutdown_timeout_s + _KILL_GRACE_S:
                    _log.error("workers still running after the shutdown timeout: killed",
                               extra={"pids": [p.pid for p in live]})
                    _signal_all(workers, signal.SIGKILL)
                    failed = True
                    for process in live:
                        process.join()
                    break
            multiprocessing.connection.wait([p.sentinel for p in live] + [read_fd],
                                            timeout=0.05 if waiting else 1.0)
            _drain(read_fd)
            for index, process in list(workers.items()):
                code = process.exitcode
                if code is None or index in ended:
                    continue
                if slots is not None:
                    clear_slot(slots, index)
                if stopping_since is not None:
                    ended.add(index)
                    if code != 0:
                        failed = True
                        _log.error("worker stopped badly", extra={
                            "worker": index, "pid": process.pid, "how": _describe(code)})
                    continue
                if not serving[index].is_set():
                    _log.critical("worker failed to start: stopping", extra={
                        "worker": index, "pid": process.pid, "how": _describe(code)})
                    failed = True
                    ended.add(index)
                    received.append(signal.SIGTERM)
                    continue
                now = time.monotonic()
                restarts.append(now)
                while restarts and now - restarts[0] > RESTART_WINDOW_S:
                    restarts.popleft()
                _log.error("worker ended; restarting it", extra={
                    "worker": index, "pid": process.pid, "how": _describe(code)})
                if len(restarts) > MAX_RESTARTS:
                    _log.critical("more than %d worker restarts in %.0f s: stopping",
                                  MAX_RESTARTS, RESTART_WINDOW_S)
                    failed = True
                    received.append(signal.SIGTERM)
                    continue
                workers[index] = start(index, again=True)
    finally:
        if stopping_since is None:  # an error in the supervisor itself: leave no orphans
            _signal_all(workers, signal.SIGTERM)
        sock.close()
        shutil.rmtree(metrics, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(previous_wakeup)
        os.close(read_fd)
        os.close(write_fd)
    _log.info("stopped", extra={"workers": settings.workers, "clean": not failed})
    return 1 if failed else 0


def _signal_all(workers: dict[int, BaseProcess], sig: signal.Signals) -> None:
    for process in workers.values():
        if process.exitcode is None and process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, sig)


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 512):
            pass
