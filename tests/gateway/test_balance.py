"""Connections balanced between workers (gateway.web.balance).

The policy is tested on its own, then two workers' sites are served in one event loop
on one listening socket, as two forked workers share theirs: which one accepts, and
which answers close their connection, are then the balance's doing alone.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from gateway.web.balance import (
    BALANCE_KEY,
    RECHECK_S,
    STALE_S,
    BalancedSockSite,
    BalanceHolder,
    ConnectionBalance,
    Slots,
    accepts,
    clear_slot,
    new_slots,
    share_of,
)
from gateway.web.middleware import make_request_middleware
from gateway.web.runner import GatewayRunner, _balanced_site

# -- the policy ---------------------------------------------------------------


def test_only_the_least_loaded_accept() -> None:
    assert accepts(3, [])  # alone: always
    assert accepts(3, [3, 5])
    assert accepts(2, [3])
    assert not accepts(4, [3])
    assert not accepts(4, [9, 3])


def test_share_is_the_total_over_the_live_workers_rounded_up() -> None:
    assert share_of(22, [10]) == 16
    assert share_of(17, [16]) == 17  # 33 over 2: nothing to shed for one more
    assert share_of(5, [0, 0]) == 2
    assert share_of(0, []) == 0


class _Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def slots() -> Slots:
    """Three workers' slots (made outside the event loop, as the supervisor makes them:
    shared memory is a file of its own)."""
    return new_slots(3)


async def _behind(slots: Slots, clock: _Clock, gates: list[bool], *, mine: int,
                  other: int) -> tuple[ConnectionBalance, ConnectionBalance]:
    """Worker 0 (its gate's calls in ``gates``) opened ``mine`` connections after worker 1
    beat with ``other``; worker 2 never beats."""
    first = ConnectionBalance(slots, 0, 3, gate=gates.append, clock_ms=clock)
    second = ConnectionBalance(slots, 1, 3, gate=lambda _: None, clock_ms=clock)
    second.connections = other
    second.tick()
    for _ in range(mine):
        first.opened()
    await asyncio.sleep(0)  # the check after the changes runs once, a turn later
    return first, second


async def test_balance_gates_sheds_and_leaves_out_stale_workers(slots: Slots) -> None:
    clock = _Clock()
    gates: list[bool] = []

    def gate() -> bool:
        return gates[-1]

    mine, other = await _behind(slots, clock, gates, mine=6, other=2)
    assert gates == [False]  # 6 against 2: no more accepts
    assert mine.others() == [2]  # worker 2 never beat: not live
    mine.tick()
    assert not gate()
    # Its share of 8 over 2 live workers is 4; one over it is let be: one answer closes
    # its connection.
    assert [mine.should_shed() for _ in range(3)] == [True, False, False]
    assert mine.shed == 1
    mine.closed()
    await asyncio.sleep(0)
    other.connections = 3  # the client came back, to the other worker
    other.tick()
    mine.tick()
    assert not mine.should_shed()  # 5 and 3: one over the share
    mine.closed()
    other.connections = 4
    other.tick()
    mine.tick()
    assert gate()  # 4 and 4
    mine.opened()
    mine.opened()
    mine.tick()
    assert not gate()  # 6 against 4
    # The other worker stops beating (hung, or ended): after STALE_S it no longer counts,
    # and this one accepts again and keeps all it holds.
    clock.ms += int(STALE_S * 1000) + 1
    mine.tick()
    assert mine.others() == []
    assert gate()
    assert not mine.should_shed()
    # A worker that leaves (or that the supervisor cleared) is not counted at once.
    other.tick()
    assert mine.others() == [4]
    other.leave()
    assert mine.others() == []
    clear_slot(slots, 0)
    assert other.others() == []


async def test_a_worker_that_stopped_accepting_looks_again_soon(slots: Slots) -> None:
    """Two workers that each took a burst can each find the other ahead and both stop;
    the one that is in fact behind must accept again well before its next heartbeat."""
    gates: list[bool] = []
    await _behind(slots, _Clock(), gates, mine=5, other=4)
    assert gates == [False]  # 5 against 4
    slots[2] = 8  # worker 1's count: it took a burst meanwhile; no heartbeat of either yet
    await asyncio.sleep(RECHECK_S * 4)
    assert gates == [False, True]


# -- two workers' sites on one socket ----------------------------------------------


async def _hello(_: web.Request) -> web.Response:
    return web.Response(text="hello")


class _Workers:
    """Two workers' applications and sites on one listening socket, in this event loop."""

    def __init__(self, slots: Slots) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.slots = slots
        self.apps: list[web.Application] = []
        self.runners: list[GatewayRunner] = []
        self.sites: list[BalancedSockSite] = []

    async def add(self) -> None:
        holder = BalanceHolder()
        app = web.Application(middlewares=[make_request_middleware(None, holder)])
        app.router.add_get("/", _hello)
        app[BALANCE_KEY] = holder
        runner = GatewayRunner(app)
        await runner.setup()
        self.apps.append(app)
        self.runners.append(runner)
        self.sites.append(await self.serve(len(self.sites)))

    async def serve(self, index: int) -> BalancedSockSite:
        """Worker ``index`` accepting (again) on the shared socket."""
        app = self.apps[index]
        site = _balanced_site(app, self.runners[index], self.sock, (self.slots, index, 2))
        await site.start()
        assert app[BALANCE_KEY].current is site.balance
        return site


@pytest.fixture
async def two_workers(slots: Slots) -> AsyncIterator[_Workers]:
    workers = _Workers(slots)
    await workers.add()
    await workers.add()
    try:
        yield workers
    finally:
        for runner in workers.runners:
            await runner.cleanup()
        workers.sock.close()


async def _ask(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A new connection and one request on it; the head of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = await _get(reader, writer)
    return reader, writer, head


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    await reader.readexactly(length)
    return head


async def test_new_connections_go_to_the_worker_with_fewer(two_workers: _Workers) -> None:
    sites, port = two_workers.sites, two_workers.port
    opened = []
    for _ in range(10):
        _, writer, head = await _ask(port)
        assert b"Connection: close" not in head
        opened.append(writer)
        await asyncio.sleep(0.01)  # the gate follows the counts a turn or two later
    assert [site.balance.connections for site in sites] == [5, 5]
    for writer in opened:
        writer.close()
        await writer.wait_closed()


async def test_a_worker_over_its_share_closes_the_excess_after_an_answer(
        two_workers: _Workers) -> None:
    sites, port = two_workers.sites, two_workers.port
    # As a burst the kernel gave one worker: worker 1 does not accept for a while.
    await sites[1].stop()
    opened = [await asyncio.open_connection("127.0.0.1", port) for _ in range(6)]
    await asyncio.sleep(0.05)
    assert sites[0].balance.connections == 6
    restarted = await two_workers.serve(1)
    sites[0].balance.tick()  # worker 0 sees worker 1 again
    heads = [await _get(reader, writer) for reader, writer in opened]
    closing = [b"Connection: close" in head for head in heads]
    assert closing.count(True) == 2  # 6 against 0: its share is 3, and one over is let be
    assert sites[0].balance.shed == 2
    # The clients that were asked to go come back, to the worker that accepts.
    again = [await _ask(port) for _ in range(2)]
    await asyncio.sleep(0.05)
    assert sites[0].balance.connections == 4
    assert restarted.balance.connections == 2
    for writer in [w for _, w in opened] + [w for _, w, _ in again]:
        writer.close()
        await writer.wait_closed()
    await restarted.stop()
