"""Balancing connections between workers: what ``serve --workers N`` does with them.

The workers accept from one inherited listening socket (``gateway.web.workers``),
and whichever worker the kernel wakes first takes every connection queued at that
moment. Clients that open their keep-alive connections together (a load balancer's
pool, a load generator) are therefore split unevenly: 10 and 22 connections, even 2
and 30, were seen with two workers and 32 connections. A worker's cost per request
grows as it has fewer requests in flight (an audit commit, a loop turn and a group of
verifications are shared by fewer requests), so an uneven split wastes the machine
where the workers share its CPUs: with two workers on two CPUs, 10/22 served about
a tenth fewer requests a second than 13/19.

So each worker keeps the others' connection counts in view (one shared-memory slot
per worker: its open connections and a heartbeat) and, like a proxy's "exact"
connection balance, does two things:

* **it stops accepting while it holds more connections than the least loaded live
  worker** (its server on the shared socket is closed and opened again; the socket
  stays listening, and what arrives meanwhile waits in its queue for a worker that
  accepts). The least loaded worker always accepts, so some worker always does;
* **it sheds its excess**: when, at a heartbeat, it holds more than one connection
  over its share of all the workers' connections (the total divided by the live
  workers, rounded up), that many of the next answers on its connections, less
  one, carry ``Connection: close`` (``should_shed``, asked by the request
  middleware). The client reconnects, and the connection lands on a worker that
  accepts. A burst that was split unevenly is even again, within one connection,
  after one answer on each shed connection.

A worker counts as live while its heartbeat (every ``TICK_S``) is younger than
``STALE_S``: a worker that hangs or ends is left out within that time, and the
supervisor clears the slot of a worker that ended or is started again. With one
worker, or ``worker_balance = false``, none of this runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import math
import multiprocessing.sharedctypes
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from aiohttp import web
from aiohttp.web_runner import BaseRunner

__all__ = ["BALANCE_KEY", "RECHECK_S", "STALE_S", "TICK_S", "BalanceHolder", "BalancedSockSite",
           "ConnectionBalance", "Slots", "accepts", "clear_slot", "new_slots", "share_of"]

_log = logging.getLogger("gateway.http")

TICK_S: Final = 0.1
"""How often a worker writes its heartbeat and looks at the others' counts."""
STALE_S: Final = 2.0
"""A worker whose heartbeat is older than this is not counted (hung, ended)."""
RECHECK_S: Final = 0.005
"""How often a worker that does not accept looks at the others' counts again. Each
worker accepts a burst of connections before it looks (the event loop accepts all
that are queued at once), so two workers can each find the other ahead and both stop;
the one that is in fact behind accepts again within this time."""

Slots = Any
"""The shared array: per worker, its open connections and its heartbeat (monotonic ms)."""
_FIELDS: Final = 2


def new_slots(workers: int) -> Slots:
    """The shared slots of ``workers`` workers, all clear (made before the workers fork)."""
    return multiprocessing.sharedctypes.RawArray(ctypes.c_int64, workers * _FIELDS)


def clear_slot(slots: Slots, index: int) -> None:
    """Worker ``index`` is not live: no connections, no heartbeat."""
    slots[index * _FIELDS] = 0
    slots[index * _FIELDS + 1] = 0


def _now_ms() -> int:
    return time.monotonic_ns() // 1_000_000  # CLOCK_MONOTONIC: the same in every process


def accepts(mine: int, others: Sequence[int]) -> bool:
    """Whether a worker with ``mine`` connections accepts more, the live others holding
    ``others``: only while no live worker holds fewer."""
    return not others or mine <= min(others)


def share_of(mine: int, others: Sequence[int]) -> int:
    """A worker's share of all live workers' connections: the total over the live workers,
    rounded up (so that a total that does not divide evenly sheds nothing)."""
    return math.ceil((mine + sum(others)) / (len(others) + 1))


class ConnectionBalance:
    """One worker's side of the balance (module doc), on its event loop.

    ``opened``/``closed`` follow this worker's connections (the server's
    ``connection_made`` and ``connection_lost``); ``gate`` is called with whether it
    should accept now (``BalancedSockSite`` closes and makes its server again)."""

    def __init__(self, slots: Slots, index: int, workers: int, *,
                 gate: Callable[[bool], None],
                 clock_ms: Callable[[], int] = _now_ms) -> None:
        self._slots = slots
        self._index = index
        self._workers = workers
        self._gate = gate
        self._clock_ms = clock_ms
        self.connections = 0
        self._to_shed = 0  # answers still to mark Connection: close until the next tick
        self._others: list[int] = []
        self._accepting = True
        self._check_pending = False
        self.shed = 0
        """Connections this worker asked its clients to close (a counter)."""

    def others(self) -> list[int]:
        """The open connections of every other live worker."""
        slots, now = self._slots, self._clock_ms()
        found = []
        for worker in range(self._workers):
            if worker == self._index:
                continue
            beat = slots[worker * _FIELDS + 1]
            if beat and now - beat <= STALE_S * 1000:
                found.append(slots[worker * _FIELDS])
        return found

    def tick(self) -> None:
        """The heartbeat: this worker's count and time written, the others read again, the
        gate told again what it should be (a failed change is retried here), and how many
        connections to shed until the next tick worked out from these counts."""
        base = self._index * _FIELDS
        self._slots[base] = self.connections
        self._slots[base + 1] = self._clock_ms()
        others = self._others = self.others()
        self._accepting = accepts(self.connections, others)
        self._gate(self._accepting)
        # From one view of the counts, not after each close: until the shed clients are
        # back (at another worker), this worker's count falls and the total with it. One
        # connection over the share is let be: shedding it would only move the one extra
        # to another worker, and then back.
        self._to_shed = (max(0, self.connections - share_of(self.connections, others) - 1)
                         if others else 0)

    def leave(self) -> None:
        """This worker stops: the others no longer count it."""
        clear_slot(self._slots, self._index)

    def opened(self) -> None:
        """A connection was accepted (its protocol made)."""
        self.connections += 1
        self._changed()

    def closed(self) -> None:
        """A connection ended."""
        self.connections = max(0, self.connections - 1)
        self._changed()

    def _changed(self) -> None:
        self._slots[self._index * _FIELDS] = self.connections
        if not self._check_pending:  # once per loop turn, however many changed in it
            self._check_pending = True
            asyncio.get_running_loop().call_soon(self._check)

    def _check(self) -> None:
        self._check_pending = False
        self._others = self.others()
        self._apply()

    def _apply(self) -> None:
        accepting = accepts(self.connections, self._others)
        if accepting != self._accepting:
            self._accepting = accepting
            self._gate(accepting)
        if not accepting and not self._check_pending:
            self._check_pending = True
            asyncio.get_running_loop().call_later(RECHECK_S, self._check)

    def should_shed(self) -> bool:
        """Whether the answer being made should close its connection: at the last tick this
        worker held more than its share, and not that many answers have closed theirs
        since (module doc)."""
        if not self._to_shed:
            return False
        self._to_shed -= 1
        self.shed += 1
        return True


class BalanceHolder:
    """Where the request middleware finds the worker's balance (set once it serves;
    None: no balance, nothing is shed)."""

    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current: ConnectionBalance | None = None


BALANCE_KEY = web.AppKey("connection_balance", BalanceHolder)
"""The application's ``BalanceHolder`` (``create_app`` makes it, the worker fills it)."""


class BalancedSockSite(web.BaseSite):
    """A site serving a listening socket shared with other workers, that stops and starts
    accepting as ``ConnectionBalance`` says. The event loop's server is made on a
    duplicate of the socket, so that closing it leaves the socket itself listening."""

    __slots__ = ("_accepting", "_balance", "_changing", "_name", "_sock", "_stopped",
                 "_ticker")

    def __init__(self, runner: BaseRunner, sock: socket.socket, *, slots: Slots,
                 index: int, workers: int) -> None:
        super().__init__(runner)
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self._name = f"http://{host}:{port}"
        self._balance = ConnectionBalance(slots, index, workers, gate=self._gate)
        self._accepting = True
        self._changing: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def balance(self) -> ConnectionBalance:
        """This worker's side of the balance."""
        return self._balance

    async def start(self) -> None:
        """Serve the socket and start the heartbeat."""
        await super().start()
        await self._serve()
        self._balance.tick()
        self._ticker = asyncio.create_task(self._tick(), name="connection-balance")

    async def _serve(self) -> None:
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            server, sock=self._sock.dup(), backlog=self._backlog)

    async def _tick(self) -> None:
        while not self._stopped:
            await asyncio.sleep(TICK_S)
            self._balance.tick()

    def _gate(self, accepting: bool) -> None:
        self._accepting = accepting
        if (self._server is not None) == accepting:
            return  # already so (each heartbeat says it again); a change under way follows
        if self._changing is None or self._changing.done():
            self._changing = asyncio.create_task(self._follow(), name="connection-gate")

    async def _follow(self) -> None:
        # Until the server matches the last decision (it may change while one is applied).
        while not self._stopped:
            serving = self._server is not None
            if serving == self._accepting:
                return
            if serving:
                server, self._server = self._server, None
                assert server is not None
                server.close()  # the duplicate closes; the socket listens on
            else:
                try:
                    await self._serve()
                except OSError as exc:  # never left not accepting: tried again next tick
                    _log.error("could not accept again on the shared socket: %s", exc)
                    return

    async def stop(self) -> None:
        """Stop accepting for good (the runner's clean-up)."""
        self._stopped = True
        self._balance.leave()
        for task in (self._ticker, self._changing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await super().stop()
